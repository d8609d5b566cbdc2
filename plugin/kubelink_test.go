package kubelink

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"

	"github.com/kubelink/kubelink/api/mesh"
	"github.com/kubelink/kubelink/api/watch"
)

const meshSOA = "kubelink.	5	IN	SOA	ns.dns.kubelink. hostmaster.kubelink. 0 7200 1800 86400 5"

// checkCase runs one case through the plugin and compares like CoreDNS's
// own plugin tests (SOA serials are ignored by comparing text without them).
func checkCase(t *testing.T, k *Kubelink, tc test.Case) *dns.Msg {
	t.Helper()
	m := tc.Msg()
	if tc.Do {
		m.SetEdns0(4096, true)
	}
	resp, _, err := ask(t, k, m, false)
	if err != nil {
		t.Fatalf("%s %s: %v", tc.Qname, dns.TypeToString[tc.Qtype], err)
	}
	if resp == nil {
		t.Fatalf("%s %s: no reply written", tc.Qname, dns.TypeToString[tc.Qtype])
	}
	for _, sec := range [][]dns.RR{resp.Ns, resp.Answer} {
		for _, r := range sec {
			if s, ok := r.(*dns.SOA); ok {
				s.Serial = 0
			}
		}
	}
	if err := test.SortAndCheck(resp, tc); err != nil {
		t.Errorf("%s %s: %v\n%s", tc.Qname, dns.TypeToString[tc.Qtype], err, resp)
	}
	noLeak(t, resp)
	if len(resp.Question) != 1 || resp.Question[0].Name != tc.Qname {
		t.Errorf("%s: reply question %v, want the client's", tc.Qname, resp.Question)
	}
	return resp
}

func TestLocalAnswers(t *testing.T) {
	f := startFakeDNS(t)
	k, _ := newTestPlugin(t, f.port, exampleLinks(), mesh.Options{})
	cases := []test.Case{
		{Qname: "kubelink.", Qtype: dns.TypeSOA, Answer: []dns.RR{test.SOA(meshSOA)}},
		{Qname: "kubelink.", Qtype: dns.TypeNS, Answer: []dns.RR{test.NS("kubelink. 5 IN NS ns.dns.kubelink.")}},
		{Qname: "kubelink.", Qtype: dns.TypeA, Ns: []dns.RR{test.SOA(meshSOA)}},
		{Qname: "kubelink2.kubelink.", Qtype: dns.TypeA, Answer: []dns.RR{test.A("kubelink2.kubelink. 5 IN A 192.168.0.12")}},
		{Qname: "KubeLink2.Kubelink.", Qtype: dns.TypeA, Answer: []dns.RR{test.A("KubeLink2.Kubelink. 5 IN A 192.168.0.12")}},
		{Qname: "kubelink1.kubelink.", Qtype: dns.TypeA, Answer: []dns.RR{test.A("kubelink1.kubelink. 5 IN A 192.168.0.11")}},
		// A Down link's own address is still known.
		{Qname: "down.kubelink.", Qtype: dns.TypeA, Answer: []dns.RR{test.A("down.kubelink. 5 IN A 192.168.0.16")}},
		{Qname: "kubelink2.kubelink.", Qtype: dns.TypeAAAA, Ns: []dns.RR{test.SOA(meshSOA)}},
		{Qname: "12.0.168.192.in-addr.arpa.", Qtype: dns.TypePTR, Answer: []dns.RR{test.PTR("12.0.168.192.in-addr.arpa. 5 IN PTR kubelink2.kubelink.")}},
		{Qname: "11.0.168.192.in-addr.arpa.", Qtype: dns.TypePTR, Answer: []dns.RR{test.PTR("11.0.168.192.in-addr.arpa. 5 IN PTR kubelink1.kubelink.")}},
		{Qname: "2.0.9.10.in-addr.arpa.", Qtype: dns.TypePTR, Answer: []dns.RR{test.PTR("2.0.9.10.in-addr.arpa. 5 IN PTR kubelink2.blue.example.")}},
		{Qname: "kubelink2.blue.example.", Qtype: dns.TypeA, Answer: []dns.RR{test.A("kubelink2.blue.example. 5 IN A 10.9.0.2")}},
		// Unknown clusters are NXDOMAIN, authoritatively.
		{Qname: "nosuch.kubelink.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: []dns.RR{test.SOA(meshSOA)}},
		{Qname: "x.nosuch.kubelink.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: []dns.RR{test.SOA(meshSOA)}},
		// blue has no global DNS: NXDOMAIN.
		{Qname: "x.global.blue.example.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError,
			Ns: []dns.RR{test.SOA("blue.example. 5 IN SOA ns.dns.blue.example. hostmaster.blue.example. 0 7200 1800 86400 5")}},
	}
	for _, tc := range cases {
		resp := checkCase(t, k, tc)
		if !resp.Authoritative {
			t.Errorf("%s: not authoritative", tc.Qname)
		}
	}
	if _, q, _ := f.lastQuery(); q != "" {
		t.Errorf("local answers asked the upstream (%s)", q)
	}
}

func TestForwardRewrite(t *testing.T) {
	f := startFakeDNS(t)
	k, _ := newTestPlugin(t, f.port, exampleLinks(), mesh.Options{})
	soa := []dns.RR{test.SOA(meshSOA)}
	cases := []test.Case{
		{Qname: "web.default.svc.kubelink2.kubelink.", Qtype: dns.TypeA,
			Answer: []dns.RR{test.A("web.default.svc.kubelink2.kubelink. 30 IN A 100.64.16.20")}},
		// The client's letter case comes back in the question and owner.
		{Qname: "Web.Default.svc.KUBELINK2.kubelink.", Qtype: dns.TypeA,
			Answer: []dns.RR{test.A("Web.Default.svc.KUBELINK2.kubelink. 30 IN A 100.64.16.20")}},
		{Qname: "_http._tcp.web.default.svc.kubelink2.kubelink.", Qtype: dns.TypeSRV,
			Answer: []dns.RR{test.SRV("_http._tcp.web.default.svc.kubelink2.kubelink. 30 IN SRV 0 100 80 web.default.svc.kubelink2.kubelink.")},
			Extra:  []dns.RR{test.A("web.default.svc.kubelink2.kubelink. 30 IN A 100.64.16.20")}},
		{Qname: "alias.default.svc.kubelink2.kubelink.", Qtype: dns.TypeA,
			Answer: []dns.RR{
				test.CNAME("alias.default.svc.kubelink2.kubelink. 30 IN CNAME web.default.svc.kubelink2.kubelink."),
				test.A("web.default.svc.kubelink2.kubelink. 30 IN A 100.64.16.20"),
			}},
		// An ExternalName-like chain leaves the cluster's domain: kept.
		{Qname: "ext.default.svc.kubelink2.kubelink.", Qtype: dns.TypeA,
			Answer: []dns.RR{
				test.CNAME("ext.default.svc.kubelink2.kubelink. 30 IN CNAME www.example.org."),
				test.A("www.example.org. 30 IN A 192.0.2.1"),
			}},
		{Qname: "mx.kubelink2.kubelink.", Qtype: dns.TypeMX,
			Answer: []dns.RR{test.MX("mx.kubelink2.kubelink. 30 IN MX 10 mail.kubelink2.kubelink.")}},
		{Qname: "ns.kubelink2.kubelink.", Qtype: dns.TypeNS,
			Answer: []dns.RR{test.NS("ns.kubelink2.kubelink. 30 IN NS ns.dns.kubelink2.kubelink.")},
			Extra:  []dns.RR{test.A("ns.dns.kubelink2.kubelink. 30 IN A 100.64.16.10")}},
		{Qname: "dname.kubelink2.kubelink.", Qtype: dns.TypeDNAME,
			Answer: []dns.RR{test.DNAME("dname.kubelink2.kubelink. 30 IN DNAME other.kubelink2.kubelink.")}},
		{Qname: "ptr.kubelink2.kubelink.", Qtype: dns.TypePTR,
			Answer: []dns.RR{test.PTR("ptr.kubelink2.kubelink. 30 IN PTR web.default.svc.kubelink2.kubelink.")}},
		// NXDOMAIN and NODATA carry the mesh SOA, not the cluster's.
		{Qname: "nope.default.svc.kubelink2.kubelink.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: soa},
		{Qname: "web.default.svc.kubelink2.kubelink.", Qtype: dns.TypeTXT, Ns: soa},
		// The local cluster: the same names against the local cluster DNS.
		{Qname: "web.default.svc.kubelink1.kubelink.", Qtype: dns.TypeA,
			Answer: []dns.RR{test.A("web.default.svc.kubelink1.kubelink. 30 IN A 100.64.16.20")}},
		// Idle and not-yet-reported links are forwarded.
		{Qname: "web.default.svc.idle.kubelink.", Qtype: dns.TypeA,
			Answer: []dns.RR{test.A("web.default.svc.idle.kubelink. 30 IN A 100.64.16.20")}},
		{Qname: "web.default.svc.fresh.kubelink.", Qtype: dns.TypeA,
			Answer: []dns.RR{test.A("web.default.svc.fresh.kubelink. 30 IN A 100.64.16.20")}},
		{Qname: "web.default.svc.kubelink2.blue.example.", Qtype: dns.TypeA,
			Answer: []dns.RR{test.A("web.default.svc.kubelink2.blue.example. 30 IN A 100.64.16.20")}},
	}
	for _, tc := range cases {
		checkCase(t, k, tc)
	}
	// The upstream saw the cluster-domain name with the client's spelling.
	_, _, _ = ask(t, k, query("Web.Default.svc.KUBELINK2.kubelink.", dns.TypeA), false)
	last, _, _ := f.lastQuery()
	if got := last.Question[0].Name; got != "Web.Default.svc.cluster.local." {
		t.Errorf("upstream asked %q", got)
	}
}

func TestGlobalForwardedUnchanged(t *testing.T) {
	f := startFakeDNS(t)
	objs := exampleLinks()
	objs[0].Spec.DNS.DNSIP = "127.0.0.1" // kubelink1's LocalLink names the global DNS
	k, _ := newTestPlugin(t, f.port, objs, mesh.Options{})
	checkCase(t, k, test.Case{Qname: "svc.global.kubelink.", Qtype: dns.TypeA,
		Answer: []dns.RR{test.A("svc.global.kubelink. 30 IN A 10.0.0.1")}})
	last, _, _ := f.lastQuery()
	if got := last.Question[0].Name; got != "svc.global.kubelink." {
		t.Errorf("global DNS asked %q, want the name unchanged", got)
	}
}

func TestFallthroughOutside(t *testing.T) {
	f := startFakeDNS(t)
	k, _ := newTestPlugin(t, f.port, exampleLinks(), mesh.Options{})
	for _, q := range []*dns.Msg{
		query("example.org.", dns.TypeA),
		query("web.default.svc.cluster.local.", dns.TypeA),
		query("notkubelink.", dns.TypeA),
		query("xkubelink.", dns.TypeA),
		query("99.0.168.192.in-addr.arpa.", dns.TypePTR), // not a link address
		query("12.0.168.192.in-addr.arpa.", dns.TypeA),   // only PTR is ours there
	} {
		resp, rcode, err := ask(t, k, q, false)
		if err != nil || rcode != dns.RcodeRefused || resp != nil {
			t.Errorf("%s: rcode %d err %v reply %v, want the next plugin", q.Question[0].Name, rcode, err, resp)
		}
	}
	// fallthrough for a mesh zone hands its NXDOMAINs on.
	k.Fall.SetZonesFromArgs([]string{"kubelink."})
	if _, rcode, _ := ask(t, k, query("nosuch.kubelink.", dns.TypeA), false); rcode != dns.RcodeRefused {
		t.Errorf("fallthrough: rcode %d, want the next plugin", rcode)
	}
}

func mustPrefix(t *testing.T, s string) netip.Prefix {
	t.Helper()
	p, err := netip.ParsePrefix(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func ede(m *dns.Msg) *dns.EDNS0_EDE {
	if o := m.IsEdns0(); o != nil {
		for _, opt := range o.Option {
			if e, ok := opt.(*dns.EDNS0_EDE); ok {
				return e
			}
		}
	}
	return nil
}

func TestUnhealthyLinksFailFast(t *testing.T) {
	f := startFakeDNS(t)
	k, _ := newTestPlugin(t, f.port, exampleLinks(), mesh.Options{})
	for _, c := range []struct{ cluster, state string }{
		{"down", "Down"}, {"broken", "Error"}, {"stalelink", "Stale"}, {"clash", "Invalid"},
	} {
		start := time.Now()
		resp, _, err := ask(t, k, queryEDNS("web.default.svc."+c.cluster+".kubelink.", dns.TypeA, 1232), false)
		if d := time.Since(start); d > 50*time.Millisecond {
			t.Errorf("%s: took %v", c.cluster, d)
		}
		if err != nil || resp == nil || resp.Rcode != dns.RcodeServerFailure {
			t.Fatalf("%s: err %v reply %v, want SERVFAIL", c.cluster, err, resp)
		}
		e := ede(resp)
		if e == nil || e.InfoCode != dns.ExtendedErrorCodeNoReachableAuthority || !strings.Contains(e.ExtraText, c.state) {
			t.Errorf("%s: EDE %v, want code 22 naming %s", c.cluster, e, c.state)
		}
	}
	// The invalid link's own A is not served either; its message says why.
	resp, _, _ := ask(t, k, queryEDNS("clash.kubelink.", dns.TypeA, 1232), false)
	if resp.Rcode != dns.RcodeServerFailure || !strings.Contains(ede(resp).ExtraText, "overlaps") {
		t.Errorf("invalid link's A: %v", resp)
	}
	if _, _, n := f.lastQuery(); n != 0 {
		t.Errorf("unhealthy links asked the upstream %d times", n)
	}
}

func TestEDNSAndTruncation(t *testing.T) {
	f := startFakeDNS(t)
	k, _ := newTestPlugin(t, f.port, exampleLinks(), mesh.Options{})

	// EDNS0 passes through: buffer size, DO and options reach the upstream.
	q := queryEDNS("web.default.svc.kubelink2.kubelink.", dns.TypeA, 3000)
	q.IsEdns0().SetDo()
	q.IsEdns0().Option = append(q.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0123456789abcdef"})
	resp, _, err := ask(t, k, q, false)
	if err != nil || resp.IsEdns0() == nil {
		t.Fatalf("no EDNS0 in the reply: %v %v", err, resp)
	}
	last, _, _ := f.lastQuery()
	o := last.IsEdns0()
	if o == nil || o.UDPSize() != 3000 || !o.Do() || len(o.Option) != 1 {
		t.Errorf("upstream got OPT %v", o)
	}

	// A reply too big for UDP: the upstream truncates, the plugin asks
	// again over TCP, and CoreDNS's scrubbing truncates it for the client.
	resp, _, err = ask(t, k, queryEDNS("big.kubelink2.kubelink.", dns.TypeTXT, 1232), false)
	if err != nil {
		t.Fatal(err)
	}
	if _, proto, _ := f.lastQuery(); proto != "tcp" {
		t.Errorf("truncated UDP reply not retried over TCP (last %s)", proto)
	}
	if !resp.Truncated || resp.Len() > 1232 || len(resp.Answer) == 0 {
		t.Errorf("client reply: TC=%v len=%d answers=%d, want truncated to 1232", resp.Truncated, resp.Len(), len(resp.Answer))
	}
	noLeak(t, resp)
	// Over TCP the client gets everything.
	resp, _, err = ask(t, k, query("big.kubelink2.kubelink.", dns.TypeTXT), true)
	if err != nil || resp.Truncated || len(resp.Answer) != 40 {
		t.Errorf("TCP client: err %v TC=%v answers=%d", err, resp.Truncated, len(resp.Answer))
	}
}

func TestDeadUpstreamBounded(t *testing.T) {
	f := startFakeDNS(t)
	// A socket that never answers, on the port all upstreams use.
	hole, err := net.ListenPacket("udp", "127.0.0.9:"+f.port)
	if err != nil {
		t.Skipf("cannot bind 127.0.0.9: %v", err)
	}
	t.Cleanup(func() { hole.Close() })
	k, _ := newTestPlugin(t, f.port, exampleLinks(), mesh.Options{})
	start := time.Now()
	resp, _, err := ask(t, k, queryEDNS("web.default.svc.kubelink9.kubelink.", dns.TypeA, 1232), false)
	d := time.Since(start)
	if err == nil || resp == nil || resp.Rcode != dns.RcodeServerFailure {
		t.Fatalf("dead upstream: reply %v err %v, want SERVFAIL and an error", resp, err)
	}
	if e := ede(resp); e == nil || !strings.Contains(e.ExtraText, "did not answer") {
		t.Errorf("dead upstream: EDE %v", e)
	}
	if d > 2500*time.Millisecond || d < 900*time.Millisecond {
		t.Errorf("dead upstream took %v, want about 2s (at most 2.5s)", d)
	}
}

func TestLiveUpdate(t *testing.T) {
	f := startFakeDNS(t)
	objs := exampleLinks()
	k, ctl := newTestPlugin(t, f.port, objs, mesh.Options{})
	// kubelink2 goes Down: the very next query fails fast.
	objs[1].Status.State = "Down"
	ctl.update(watch.Snapshot{KubeLinks: objs})
	resp, _, _ := ask(t, k, queryEDNS("web.default.svc.kubelink2.kubelink.", dns.TypeA, 1232), false)
	if resp.Rcode != dns.RcodeServerFailure {
		t.Errorf("after Down: %v", resp)
	}
	// Deleted: NXDOMAIN, and its PTR is gone.
	ctl.update(watch.Snapshot{KubeLinks: append(objs[:1:1], objs[2:]...)})
	resp, _, _ = ask(t, k, query("kubelink2.kubelink.", dns.TypeA), false)
	if resp.Rcode != dns.RcodeNameError {
		t.Errorf("after delete: %v", resp)
	}
	if _, rcode, _ := ask(t, k, query("12.0.168.192.in-addr.arpa.", dns.TypePTR), false); rcode != dns.RcodeRefused {
		t.Errorf("PTR of a deleted link still served")
	}
}

func TestReadyAndDefaultMesh(t *testing.T) {
	k := &Kubelink{Next: test.NextHandler(dns.RcodeRefused, nil)}
	if k.Ready() {
		t.Fatal("ready before the first sync")
	}
	if _, rcode, _ := ask(t, k, query("kubelink2.kubelink.", dns.TypeA), false); rcode != dns.RcodeRefused {
		t.Errorf("before sync the query must go to the next plugin")
	}
	f := startFakeDNS(t)
	// No LocalLink: the default mesh comes from the options.
	opts := mesh.Options{ClusterName: "home", LinkAddress: mustPrefix(t, "192.168.0.11/24"), Domain: "Mesh.Example."}
	k2, _ := newTestPlugin(t, f.port, exampleLinks()[1:2], opts)
	if !k2.Ready() {
		t.Fatal("not ready after the first sync")
	}
	checkCase(t, k2, test.Case{Qname: "home.mesh.example.", Qtype: dns.TypeA, Answer: []dns.RR{test.A("home.mesh.example. 5 IN A 192.168.0.11")}})
	checkCase(t, k2, test.Case{Qname: "kubelink2.mesh.example.", Qtype: dns.TypeA, Answer: []dns.RR{test.A("kubelink2.mesh.example. 5 IN A 192.168.0.12")}})
}
