package kubelink

import (
	"testing"

	"github.com/miekg/dns"

	"github.com/kubelink/kubelink/api/mesh"
)

// seedQueries are wire-format queries covering every row of the contract.
func seedQueries(t testing.TB) [][]byte {
	var out [][]byte
	add := func(name string, qtype, qclass uint16, edns bool, opts ...dns.EDNS0) {
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		m.Question[0].Qclass = qclass
		if edns {
			m.SetEdns0(1232, true)
			m.IsEdns0().Option = opts
		}
		b, err := m.Pack()
		if err != nil {
			t.Fatalf("packing seed %s: %v", name, err)
		}
		out = append(out, b, b[:len(b)/2])
	}
	add("kubelink.", dns.TypeSOA, dns.ClassINET, false)
	add("kubelink2.kubelink.", dns.TypeA, dns.ClassINET, true)
	add("KUBELINK2.kubelink.", dns.TypeANY, dns.ClassCHAOS, true, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0011223344556677"})
	add("12.0.168.192.in-addr.arpa.", dns.TypePTR, dns.ClassINET, false)
	add("_http._tcp.web.default.svc.kubelink2.kubelink.", dns.TypeSRV, dns.ClassINET, true)
	add("alias.default.svc.kubelink2.kubelink.", dns.TypeA, dns.ClassINET, true, &dns.EDNS0_NSID{Code: dns.EDNS0NSID})
	add("ext.default.svc.kubelink2.kubelink.", dns.TypeA, dns.ClassINET, false)
	add("web.default.svc.down.kubelink.", dns.TypeA, dns.ClassINET, true, &dns.EDNS0_EDE{InfoCode: 1})
	add("x.global.kubelink.", dns.TypeA, dns.ClassINET, false)
	add("x.nosuch.kubelink.", dns.TypeMX, dns.ClassINET, false)
	add(".", dns.TypeNS, dns.ClassINET, false)
	add("a.b.c.kubelink1.kubelink.", dns.TypeTXT, dns.ClassANY, true, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: []byte{10, 0, 0, 0}})
	// Answers from memory: kubernetes mode, headless, SRV, PTR, global.
	add("web.demo.svc.east.kubelink.", dns.TypeA, dns.ClassINET, true)
	add("_pg._tcp.db.demo.svc.east.kubelink.", dns.TypeSRV, dns.ClassINET, true)
	add("db-0.db.demo.svc.east.kubelink.", dns.TypeAAAA, dns.ClassINET, false)
	add("nosuch.demo.svc.east.kubelink.", dns.TypeA, dns.ClassINET, false)
	add("20.144.64.100.in-addr.arpa.", dns.TypePTR, dns.ClassINET, false)
	add("web.demo.svc.global.kubelink.", dns.TypeSRV, dns.ClassINET, true)
	return out
}

// FuzzServeDNS feeds arbitrary messages through the whole query path (the
// upstream is the fake cluster DNS): it must never panic, and whatever it
// writes must pack.
func FuzzServeDNS(f *testing.F) {
	for _, s := range seedQueries(f) {
		f.Add(s, false)
		f.Add(s, true)
	}
	up := startFakeDNS(f)
	k, _ := newServicePlugin(f, up.port, nil)
	f.Fuzz(func(t *testing.T, wire []byte, tcp bool) {
		m := new(dns.Msg)
		if err := m.Unpack(wire); err != nil {
			return
		}
		if len(m.Question) == 1 && (m.Question[0].Qtype == dns.TypeAXFR || m.Question[0].Qtype == dns.TypeIXFR) {
			return // zone transfers are refused by the server before plugins run
		}
		resp, _, _ := ask(t, k, m, tcp)
		if resp == nil {
			return
		}
		if _, err := resp.Pack(); err != nil {
			t.Errorf("reply does not pack: %v\n%s", err, resp)
		}
	})
}

// FuzzRewrite feeds arbitrary upstream replies through the reply rewriter:
// no panic, and no name of the cluster's domain survives.
func FuzzRewrite(f *testing.F) {
	seeds := []string{
		"web.default.svc.cluster.local. 30 IN A 100.64.16.20",
		"x.cluster.local. 30 IN CNAME y.cluster.local.",
		"x.cluster.local. 30 IN SRV 0 1 80 y.cluster.local.",
		"cluster.local. 30 IN SOA ns.dns.cluster.local. h.cluster.local. 1 2 3 4 5",
		"leak.example. 30 IN NS ns.cluster.local.",
	}
	for _, s := range seeds {
		r, err := dns.NewRR(s)
		if err != nil {
			f.Fatal(err)
		}
		m := new(dns.Msg)
		m.SetQuestion("web.default.svc.cluster.local.", dns.TypeA)
		m.Response = true
		m.Answer = []dns.RR{r}
		m.Ns = []dns.RR{dns.Copy(r)}
		m.Extra = []dns.RR{dns.Copy(r)}
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	up := startFakeDNS(f)
	k, _ := newTestPlugin(f, up.port, exampleLinks(), mesh.Options{})
	c := k.index.Load().match("kubelink2.kubelink.").clusters["kubelink2"]
	client := query("Web.default.svc.kubelink2.kubelink.", dns.TypeA)
	f.Fuzz(func(t *testing.T, wire []byte) {
		ret := new(dns.Msg)
		if err := ret.Unpack(wire); err != nil {
			return
		}
		rw := rewriter{c: c, upName: "Web.default.svc.cluster.local.", clientName: client.Question[0].Name}
		rw.reply(ret, client)
		if _, err := ret.Pack(); err != nil {
			return // garbage in (e.g. oversized names after rewriting) is refused by packing, not a crash
		}
		for _, sec := range [][]dns.RR{ret.Answer, ret.Ns, ret.Extra} {
			for _, r := range sec {
				if _, in := rw.name(r.Header().Name); in {
					t.Errorf("owner of the cluster's domain survived: %s", r)
				}
			}
		}
	})
}
