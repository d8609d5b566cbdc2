package kubelink

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"testing"

	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelink/kubelink/api/mesh"
	"github.com/kubelink/kubelink/api/synced"
	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/api/watch"
)

// mirrorNS is netd's namespace in the tests.
const mirrorNS = "kubelink"

func withAPIAccess(o *v1alpha1.KubeLink) {
	o.Spec.APIAccess = &v1alpha1.KubeLinkAPIAccess{Name: "access-" + o.Name}
}

func withMode(mode string) func(*v1alpha1.KubeLink) {
	return func(o *v1alpha1.KubeLink) { o.Spec.DNS.Mode = mode }
}

func withOmit(o *v1alpha1.KubeLink) {
	t := true
	o.Spec.DNS.OmitDNSPropagation = &t
}

// serviceLinks is exampleLinks plus clusters whose services are mirrored:
// east (apiAccess: kubernetes by default), west (spec.dns.mode kubernetes
// without apiAccess), north (Idle), south (Down), quiet (apiAccess but
// mode dns), omit (apiAccess, omitDNSPropagation).
func serviceLinks() []*v1alpha1.KubeLink {
	return append(exampleLinks(),
		kl("east", "100.64.144.0/20", "192.168.0.21/24", "gw21.example.com", "Up", 20, withDNS("127.0.0.1", ""), withAPIAccess),
		kl("west", "100.64.160.0/20", "192.168.0.22/24", "gw22.example.com", "Up", 21, withDNS("127.0.0.1", ""), withMode("kubernetes")),
		kl("north", "100.64.176.0/20", "192.168.0.23/24", "gw23.example.com", "Idle", 22, withDNS("127.0.0.1", ""), withAPIAccess),
		kl("south", "100.64.192.0/20", "192.168.0.24/24", "gw24.example.com", "Down", 23, withDNS("127.0.0.1", ""), withAPIAccess),
		kl("quiet", "100.64.208.0/20", "192.168.0.25/24", "gw25.example.com", "Up", 24, withDNS("127.0.0.1", ""), withAPIAccess, withMode("dns")),
		kl("omit", "100.64.224.0/20", "192.168.0.26/24", "gw26.example.com", "Up", 25, withDNS("127.0.0.1", ""), withAPIAccess, withOmit),
	)
}

// ep is a mirror endpoint: address, hostname ("" none), ready (nil: unset).
type ep struct {
	addr, host string
	ready      *bool
}

var (
	yes = func() *bool { b := true; return &b }()
	no  = func() *bool { b := false; return &b }()
)

type mport struct {
	name  string
	proto corev1.Protocol
	port  int32
}

// mirrorSlice is a service mirror as netd sync writes it (api/synced).
func mirrorSlice(cluster, ns, name, typ string, exported bool, fam discoveryv1.AddressType, ports []mport, eps ...ep) *discoveryv1.EndpointSlice {
	l := map[string]string{
		discoveryv1.LabelManagedBy:   synced.ManagedBy,
		synced.LabelManagedBy:        synced.ManagerName,
		synced.LabelSourceCluster:    cluster,
		synced.LabelSourceKind:       synced.KindKubeLink,
		synced.LabelServiceNamespace: ns,
		synced.LabelServiceName:      name,
		synced.LabelServiceType:      typ,
	}
	if exported {
		l[synced.LabelExported] = "true"
	}
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: mirrorNS, Name: fmt.Sprintf("svc-%s-%s-%s-%s", cluster, ns, name, strings.ToLower(string(fam))), Labels: l},
		AddressType: fam,
	}
	for _, p := range ports {
		p := p
		s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: &p.name, Protocol: &p.proto, Port: &p.port})
	}
	for _, e := range eps {
		x := discoveryv1.Endpoint{Addresses: []string{e.addr}, Conditions: discoveryv1.EndpointConditions{Ready: e.ready}}
		if e.host != "" {
			h := e.host
			x.Hostname = &h
		}
		s.Endpoints = append(s.Endpoints, x)
	}
	return s
}

var (
	webPorts = []mport{{"http", corev1.ProtocolTCP, 80}, {"dns", corev1.ProtocolUDP, 53}}
	dbPorts  = []mport{{"pg", corev1.ProtocolTCP, 5432}}
)

const (
	v4 = discoveryv1.AddressTypeIPv4
	v6 = discoveryv1.AddressTypeIPv6
	ci = synced.ServiceTypeClusterIP
	hl = synced.ServiceTypeHeadless
)

// serviceMirrors are the mirrors of the tests, with decoys that must be
// ignored.
func serviceMirrors() []*discoveryv1.EndpointSlice {
	out := []*discoveryv1.EndpointSlice{
		mirrorSlice("east", "demo", "web", ci, true, v4, webPorts, ep{addr: "100.64.144.20", ready: yes}),
		mirrorSlice("east", "demo", "web", ci, true, v6, webPorts, ep{addr: "fd00:144::20", ready: yes}),
		mirrorSlice("east", "demo", "internal", ci, false, v4, []mport{{"", corev1.ProtocolTCP, 8080}}, ep{addr: "100.64.144.30"}),
		mirrorSlice("east", "demo", "db", hl, true, v4, dbPorts,
			ep{"10.144.0.5", "db-0", yes}, ep{"10.144.0.6", "db-1", nil}, ep{"10.144.0.7", "db-2", no}, ep{"10.144.0.8", "", yes}),
		// A mirror must not take a link address's PTR.
		mirrorSlice("east", "demo", "squatter", ci, false, v4, nil, ep{addr: "192.168.0.12", ready: yes}),
		mirrorSlice("west", "demo", "web", ci, true, v4, webPorts, ep{addr: "192.168.0.100", ready: yes}),
		mirrorSlice("north", "demo", "web", ci, true, v4, webPorts, ep{addr: "100.64.176.20", ready: yes}),
		mirrorSlice("south", "demo", "web", ci, true, v4, webPorts, ep{addr: "100.64.192.20", ready: yes}),
		mirrorSlice("quiet", "demo", "web", ci, true, v4, webPorts, ep{addr: "100.64.208.20", ready: yes}),
		mirrorSlice("omit", "demo", "web", ci, true, v4, webPorts, ep{addr: "100.64.224.20", ready: yes}),
		// kubelink2 has no apiAccess (dns mode) but exports through a
		// MeshService: it joins the global name.
		mirrorSlice("kubelink2", "demo", "web", ci, true, v4, webPorts, ep{addr: "192.168.0.102", ready: yes}),
	}
	decoy := func(mod func(*discoveryv1.EndpointSlice)) {
		s := mirrorSlice("east", "demo", "evil", ci, true, v4, webPorts, ep{addr: "6.6.6.6", ready: yes})
		s.Name += fmt.Sprint(len(out))
		mod(s)
		out = append(out, s)
	}
	decoy(func(s *discoveryv1.EndpointSlice) { s.Namespace = "default" })
	decoy(func(s *discoveryv1.EndpointSlice) { s.Labels[synced.LabelManagedBy] = "someone" })
	decoy(func(s *discoveryv1.EndpointSlice) { s.Labels[synced.LabelSourceKind] = synced.KindClusterLink })
	decoy(func(s *discoveryv1.EndpointSlice) { s.Labels[discoveryv1.LabelServiceName] = "evil" })
	decoy(func(s *discoveryv1.EndpointSlice) { s.AddressType = discoveryv1.AddressTypeFQDN })
	decoy(func(s *discoveryv1.EndpointSlice) { now := metav1.Now(); s.DeletionTimestamp = &now })
	// Not DNS labels: never become names.
	decoy(func(s *discoveryv1.EndpointSlice) { s.Labels[synced.LabelServiceName] = "Evil_" })
	// Addresses of the wrong family are dropped.
	decoy(func(s *discoveryv1.EndpointSlice) { s.Labels[synced.LabelServiceName] = "mixed"; s.AddressType = v6 })
	return out
}

// localMeshService is the local cluster's MeshService exporting demo/web.
func localMeshService() *v1alpha1.MeshService {
	return &v1alpha1.MeshService{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web-mesh"},
		Spec:       v1alpha1.MeshServiceSpec{Service: "web", MeshAddress: "192.168.0.101"},
		Status: v1alpha1.MeshServiceStatus{State: v1alpha1.StateOK, Targets: []v1alpha1.MeshServiceTarget{
			{Protocol: "TCP", Address: "192.168.0.101", Port: 80, Targets: []string{"100.64.0.20:80"}},
		}},
	}
}

func serviceSnapshot() watch.Snapshot {
	return watch.Snapshot{KubeLinks: serviceLinks(), EndpointSlices: serviceMirrors(), MeshServices: []*v1alpha1.MeshService{localMeshService()}}
}

func newServicePlugin(t testing.TB, port string, mod func(*config)) (*Kubelink, *controller) {
	t.Helper()
	return newTestPluginSnapshot(t, port, serviceSnapshot(), mesh.Options{}, func(c *config) {
		c.namespace = mirrorNS
		if mod != nil {
			mod(c)
		}
	})
}

func TestKubernetesMode(t *testing.T) {
	f := startFakeDNS(t)
	k, _ := newServicePlugin(t, f.port, nil)
	soa := []dns.RR{test.SOA(meshSOA)}
	const web, db = "web.demo.svc.east.kubelink.", "db.demo.svc.east.kubelink."
	webExtra := []dns.RR{test.A(web + " 5 IN A 100.64.144.20"), test.AAAA(web + " 5 IN AAAA fd00:144::20")}
	cases := []test.Case{
		{Qname: web, Qtype: dns.TypeA, Answer: []dns.RR{test.A(web + " 5 IN A 100.64.144.20")}},
		{Qname: web, Qtype: dns.TypeAAAA, Answer: []dns.RR{test.AAAA(web + " 5 IN AAAA fd00:144::20")}},
		// The client's spelling comes back.
		{Qname: "Web.Demo.svc.EAST.kubelink.", Qtype: dns.TypeA, Answer: []dns.RR{test.A("Web.Demo.svc.EAST.kubelink. 5 IN A 100.64.144.20")}},
		// SRV of a named port, and of the Service: every port.
		{Qname: "_http._tcp." + web, Qtype: dns.TypeSRV, Answer: []dns.RR{test.SRV("_http._tcp." + web + " 5 IN SRV 0 100 80 " + web)}, Extra: webExtra},
		{Qname: "_dns._udp." + web, Qtype: dns.TypeSRV, Answer: []dns.RR{test.SRV("_dns._udp." + web + " 5 IN SRV 0 100 53 " + web)}, Extra: webExtra},
		{Qname: web, Qtype: dns.TypeSRV, Answer: []dns.RR{
			test.SRV(web + " 5 IN SRV 0 50 53 " + web), test.SRV(web + " 5 IN SRV 0 50 80 " + web)}, Extra: webExtra},
		// A port without a name is in the Service's SRV only.
		{Qname: "internal.demo.svc.east.kubelink.", Qtype: dns.TypeSRV, Answer: []dns.RR{
			test.SRV("internal.demo.svc.east.kubelink. 5 IN SRV 0 100 8080 internal.demo.svc.east.kubelink.")},
			Extra: []dns.RR{test.A("internal.demo.svc.east.kubelink. 5 IN A 100.64.144.30")}},
		// Headless: every ready endpoint (ready unset counts as ready).
		{Qname: db, Qtype: dns.TypeA, Answer: []dns.RR{
			test.A(db + " 5 IN A 10.144.0.5"), test.A(db + " 5 IN A 10.144.0.6"), test.A(db + " 5 IN A 10.144.0.8")}},
		{Qname: "db-0." + db, Qtype: dns.TypeA, Answer: []dns.RR{test.A("db-0." + db + " 5 IN A 10.144.0.5")}},
		{Qname: "10-144-0-8." + db, Qtype: dns.TypeA, Answer: []dns.RR{test.A("10-144-0-8." + db + " 5 IN A 10.144.0.8")}},
		{Qname: "_pg._tcp." + db, Qtype: dns.TypeSRV, Answer: []dns.RR{
			test.SRV("_pg._tcp." + db + " 5 IN SRV 0 33 5432 10-144-0-8." + db),
			test.SRV("_pg._tcp." + db + " 5 IN SRV 0 33 5432 db-0." + db),
			test.SRV("_pg._tcp." + db + " 5 IN SRV 0 33 5432 db-1." + db),
		}, Extra: []dns.RR{
			test.A("10-144-0-8." + db + " 5 IN A 10.144.0.8"), test.A("db-0." + db + " 5 IN A 10.144.0.5"), test.A("db-1." + db + " 5 IN A 10.144.0.6"),
		}},
		// Not ready: no name at all.
		{Qname: "db-2." + db, Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: soa},
		// Names that exist without the type asked, and empty non-terminals:
		// NODATA.
		{Qname: web, Qtype: dns.TypeTXT, Ns: soa},
		{Qname: "db-0." + db, Qtype: dns.TypeAAAA, Ns: soa},
		{Qname: "_tcp." + web, Qtype: dns.TypeSRV, Ns: soa},
		{Qname: "demo.svc.east.kubelink.", Qtype: dns.TypeA, Ns: soa},
		{Qname: "svc.east.kubelink.", Qtype: dns.TypeA, Ns: soa},
		// Unknown to memory: authoritative NXDOMAIN, never forwarded.
		{Qname: "nosuch.demo.svc.east.kubelink.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: soa},
		{Qname: "_http._udp." + web, Qtype: dns.TypeSRV, Rcode: dns.RcodeNameError, Ns: soa},
		{Qname: "web.default.svc.east.kubelink.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: soa},
		{Qname: "x.web.demo.svc.east.kubelink.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: soa},
		// Decoys never made it in.
		{Qname: "evil.demo.svc.east.kubelink.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: soa},
		// Addresses of the wrong family were dropped: a known Service
		// without addresses.
		{Qname: "mixed.demo.svc.east.kubelink.", Qtype: dns.TypeA, Ns: soa},
		{Qname: "mixed.demo.svc.east.kubelink.", Qtype: dns.TypeSRV, Ns: soa},
		// An explicit spec.dns.mode kubernetes without apiAccess: the
		// MeshService address the mirror carries.
		{Qname: "web.demo.svc.west.kubelink.", Qtype: dns.TypeA, Answer: []dns.RR{test.A("web.demo.svc.west.kubelink. 5 IN A 192.168.0.100")}},
		// Idle is served from memory like Up.
		{Qname: "web.demo.svc.north.kubelink.", Qtype: dns.TypeA, Answer: []dns.RR{test.A("web.demo.svc.north.kubelink. 5 IN A 100.64.176.20")}},
		// The cluster's own A is unchanged.
		{Qname: "east.kubelink.", Qtype: dns.TypeA, Answer: []dns.RR{test.A("east.kubelink. 5 IN A 192.168.0.21")}},
		// PTR of mirror addresses: the Service, or a headless endpoint's
		// own name.
		{Qname: "20.144.64.100.in-addr.arpa.", Qtype: dns.TypePTR, Answer: []dns.RR{test.PTR("20.144.64.100.in-addr.arpa. 5 IN PTR " + web)}},
		{Qname: reverse(t, "fd00:144::20"), Qtype: dns.TypePTR, Answer: []dns.RR{test.PTR(reverse(t, "fd00:144::20") + " 5 IN PTR " + web)}},
		{Qname: "5.0.144.10.in-addr.arpa.", Qtype: dns.TypePTR, Answer: []dns.RR{test.PTR("5.0.144.10.in-addr.arpa. 5 IN PTR db-0." + db)}},
		{Qname: "8.0.144.10.in-addr.arpa.", Qtype: dns.TypePTR, Answer: []dns.RR{test.PTR("8.0.144.10.in-addr.arpa. 5 IN PTR 10-144-0-8." + db)}},
		{Qname: "100.0.168.192.in-addr.arpa.", Qtype: dns.TypePTR, Answer: []dns.RR{test.PTR("100.0.168.192.in-addr.arpa. 5 IN PTR web.demo.svc.west.kubelink.")}},
		// A link address keeps its own PTR.
		{Qname: "12.0.168.192.in-addr.arpa.", Qtype: dns.TypePTR, Answer: []dns.RR{test.PTR("12.0.168.192.in-addr.arpa. 5 IN PTR kubelink2.kubelink.")}},
	}
	for _, tc := range cases {
		resp := checkCase(t, k, tc)
		if !resp.Authoritative {
			t.Errorf("%s: not authoritative", tc.Qname)
		}
	}
	if _, _, n := f.lastQuery(); n != 0 {
		t.Errorf("kubernetes mode asked a cluster DNS %d times", n)
	}
	// Not ready, not mirrored or not this cluster's: not our PTR.
	for _, name := range []string{"7.0.144.10.in-addr.arpa.", "6.6.6.6.in-addr.arpa.", "20.192.64.100.in-addr.arpa."} {
		if resp, rcode, _ := ask(t, k, query(name, dns.TypePTR), false); rcode != dns.RcodeRefused || resp != nil {
			t.Errorf("PTR %s answered: %v", name, resp)
		}
	}
}

func reverse(t testing.TB, ip string) string {
	t.Helper()
	r, err := dns.ReverseAddr(ip)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestModes checks which links are served from memory and which are
// forwarded, per spec.dns.mode and the dns-propagation default.
func TestModes(t *testing.T) {
	f := startFakeDNS(t)
	soa := []dns.RR{test.SOA(meshSOA)}
	// The fake cluster DNS answers web.default.svc (forwarded) and
	// NXDOMAIN for web.demo.svc.
	forwarded := func(cluster string) test.Case {
		return test.Case{Qname: "web.default.svc." + cluster + ".kubelink.", Qtype: dns.TypeA,
			Answer: []dns.RR{test.A("web.default.svc." + cluster + ".kubelink. 30 IN A 100.64.16.20")}}
	}
	memory := func(cluster, addr string) test.Case {
		return test.Case{Qname: "web.demo.svc." + cluster + ".kubelink.", Qtype: dns.TypeA,
			Answer: []dns.RR{test.A("web.demo.svc." + cluster + ".kubelink. 5 IN A " + addr)}}
	}
	unknown := func(cluster string) test.Case {
		return test.Case{Qname: "web.default.svc." + cluster + ".kubelink.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: soa}
	}
	for _, c := range []struct {
		propagation string
		cases       []test.Case
		servfail    []string
	}{
		{"", []test.Case{
			memory("east", "100.64.144.20"), unknown("east"), // apiAccess: kubernetes
			forwarded("kubelink2"),          // no apiAccess: dns
			forwarded("quiet"),              // spec.dns.mode dns
			memory("west", "192.168.0.100"), // spec.dns.mode kubernetes
			forwarded("kubelink1"),          // the local cluster: as today
		}, []string{"omit", "south"}},
		{"auto", []test.Case{memory("east", "100.64.144.20"), forwarded("kubelink2")}, nil},
		{"dns", []test.Case{forwarded("east"), forwarded("kubelink2"), memory("west", "192.168.0.100"), forwarded("kubelink1")}, []string{"omit"}},
		{"kubernetes", []test.Case{memory("east", "100.64.144.20"), unknown("kubelink2"), unknown("idle"),
			forwarded("quiet"), forwarded("kubelink1")}, []string{"omit"}},
		{"none", []test.Case{memory("west", "192.168.0.100"), forwarded("quiet"), forwarded("kubelink1")},
			[]string{"east", "kubelink2", "omit"}},
	} {
		t.Run("propagation="+c.propagation, func(t *testing.T) {
			k, _ := newServicePlugin(t, f.port, func(cfg *config) { cfg.propagation = c.propagation })
			for _, tc := range c.cases {
				checkCase(t, k, tc)
			}
			for _, cluster := range c.servfail {
				resp, _, _ := ask(t, k, queryEDNS("web.demo.svc."+cluster+".kubelink.", dns.TypeA, 1232), false)
				if resp == nil || resp.Rcode != dns.RcodeServerFailure || ede(resp) == nil {
					t.Errorf("%s: %v, want SERVFAIL with an EDE", cluster, resp)
				}
			}
		})
	}
}

func TestGlobalNames(t *testing.T) {
	f := startFakeDNS(t)
	const web = "web.demo.svc.global.kubelink."
	// exampleLinks' LocalLink names a mesh-global DNS (the fake).
	k, ctl := newServicePlugin(t, f.port, nil)
	// The union over the Up clusters that export it, whatever their mode
	// (east, west, quiet, kubelink2), and the local MeshService's Service;
	// not north (Idle), south (Down) nor omit (omitDNSPropagation).
	want := []string{"100.64.0.20", "100.64.144.20", "100.64.208.20", "192.168.0.100", "192.168.0.102"}
	var answer, extra []dns.RR
	for _, a := range want {
		answer = append(answer, test.A(web+" 5 IN A "+a))
		extra = append(extra, test.A(web+" 5 IN A "+a))
	}
	extra = append(extra, test.AAAA(web+" 5 IN AAAA fd00:144::20"))
	cases := []test.Case{
		{Qname: web, Qtype: dns.TypeA, Answer: answer},
		{Qname: web, Qtype: dns.TypeAAAA, Answer: []dns.RR{test.AAAA(web + " 5 IN AAAA fd00:144::20")}},
		{Qname: "_http._tcp." + web, Qtype: dns.TypeSRV, Answer: []dns.RR{test.SRV("_http._tcp." + web + " 5 IN SRV 0 100 80 " + web)}, Extra: extra},
		{Qname: "db.demo.svc.global.kubelink.", Qtype: dns.TypeA, Answer: []dns.RR{
			test.A("db.demo.svc.global.kubelink. 5 IN A 10.144.0.5"), test.A("db.demo.svc.global.kubelink. 5 IN A 10.144.0.6"),
			test.A("db.demo.svc.global.kubelink. 5 IN A 10.144.0.8")}},
		{Qname: web, Qtype: dns.TypeTXT, Ns: []dns.RR{test.SOA(meshSOA)}},
	}
	for _, tc := range cases {
		checkCase(t, k, tc)
	}
	if _, _, n := f.lastQuery(); n != 0 {
		t.Errorf("known global names asked the mesh-global DNS %d times", n)
	}
	// Names the mesh does not know (a Service nobody exports, an empty
	// non-terminal) go to the mesh-global DNS.
	for _, name := range []string{"internal.demo.svc.global.kubelink.", "demo.svc.global.kubelink.", "other.global.kubelink."} {
		checkCase(t, k, test.Case{Qname: name, Qtype: dns.TypeA, Answer: []dns.RR{test.A(name + " 30 IN A 10.0.0.1")}})
		if last, _, _ := f.lastQuery(); last == nil || last.Question[0].Name != name {
			t.Errorf("%s: the mesh-global DNS was asked %v", name, last)
		}
	}

	// A cluster that leaves Up leaves the global answer with the next
	// snapshot, and its own names fail at once.
	snap := serviceSnapshot()
	for _, l := range snap.KubeLinks {
		if l.Name == "east" {
			l.Status.State = v1alpha1.StateDown
		}
	}
	ctl.update(snap)
	checkCase(t, k, test.Case{Qname: web, Qtype: dns.TypeA, Answer: answerWithout(answer, "100.64.144.20")})
	checkCase(t, k, test.Case{Qname: web, Qtype: dns.TypeAAAA, Ns: []dns.RR{test.SOA(meshSOA)}})
	// db was only east's: unknown now, so the mesh-global DNS is asked.
	checkCase(t, k, test.Case{Qname: "db.demo.svc.global.kubelink.", Qtype: dns.TypeA, Answer: []dns.RR{test.A("db.demo.svc.global.kubelink. 30 IN A 10.0.0.1")}})
	if resp, _, _ := ask(t, k, queryEDNS("web.demo.svc.east.kubelink.", dns.TypeA, 1232), false); resp.Rcode != dns.RcodeServerFailure ||
		ede(resp) == nil || !strings.Contains(ede(resp).ExtraText, "Down") {
		t.Errorf("east Down: %v", resp)
	}
	// Its addresses' PTRs go with it.
	if _, rcode, _ := ask(t, k, query("20.144.64.100.in-addr.arpa.", dns.TypePTR), false); rcode != dns.RcodeRefused {
		t.Errorf("PTR of a Down cluster's service still answered")
	}

	// Without a mesh-global DNS: unknown names are NXDOMAIN, empty
	// non-terminals NODATA.
	snap = serviceSnapshot()
	snap.KubeLinks[0].Spec.DNS.DNSIP = ""
	ctl.update(snap)
	soa := []dns.RR{test.SOA(meshSOA)}
	checkCase(t, k, test.Case{Qname: web, Qtype: dns.TypeA, Answer: answer})
	checkCase(t, k, test.Case{Qname: "internal.demo.svc.global.kubelink.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: soa})
	checkCase(t, k, test.Case{Qname: "demo.svc.global.kubelink.", Qtype: dns.TypeA, Ns: soa})
	checkCase(t, k, test.Case{Qname: "_http._udp." + web, Qtype: dns.TypeSRV, Rcode: dns.RcodeNameError, Ns: soa})
}

func answerWithout(rrs []dns.RR, addr string) []dns.RR {
	var out []dns.RR
	for _, r := range rrs {
		if a, ok := r.(*dns.A); ok && a.A.String() == addr {
			continue
		}
		out = append(out, r)
	}
	return out
}

// TestAnswersAreCopies: plugins in front (cache, loadbalance) change
// replies in place; the index must not change with them.
func TestAnswersAreCopies(t *testing.T) {
	f := startFakeDNS(t)
	k, _ := newServicePlugin(t, f.port, nil)
	checkAnswersAreCopies(t, k, query("db.demo.svc.east.kubelink.", dns.TypeA), query("_pg._tcp.db.demo.svc.east.kubelink.", dns.TypeSRV),
		queryEDNS("web.demo.svc.east.kubelink.", dns.TypeSRV, 1232))
}

func TestCollectMirrors(t *testing.T) {
	got := collectMirrors(mirrorNS, serviceMirrors())
	var names []string
	for link, svcs := range got {
		for _, s := range svcs {
			names = append(names, fmt.Sprintf("%s/%s/%s headless=%v exported=%v endpoints=%d ports=%v", link, s.namespace, s.name, s.headless, s.exported, len(s.endpoints), s.ports))
		}
	}
	sort.Strings(names)
	want := []string{
		"east/demo/db headless=true exported=true endpoints=3 ports=[pg/tcp:5432]",
		"east/demo/internal headless=false exported=false endpoints=1 ports=[/tcp:8080]",
		"east/demo/mixed headless=false exported=true endpoints=0 ports=[dns/udp:53 http/tcp:80]",
		"east/demo/squatter headless=false exported=false endpoints=1 ports=[]",
		"east/demo/web headless=false exported=true endpoints=2 ports=[dns/udp:53 http/tcp:80]",
		"kubelink2/demo/web headless=false exported=true endpoints=1 ports=[dns/udp:53 http/tcp:80]",
		"north/demo/web headless=false exported=true endpoints=1 ports=[dns/udp:53 http/tcp:80]",
		"omit/demo/web headless=false exported=true endpoints=1 ports=[dns/udp:53 http/tcp:80]",
		"quiet/demo/web headless=false exported=true endpoints=1 ports=[dns/udp:53 http/tcp:80]",
		"south/demo/web headless=false exported=true endpoints=1 ports=[dns/udp:53 http/tcp:80]",
		"west/demo/web headless=false exported=true endpoints=1 ports=[dns/udp:53 http/tcp:80]",
	}
	if strings.Join(names, "\n") != strings.Join(want, "\n") {
		t.Errorf("collected:\n%s\nwant:\n%s", strings.Join(names, "\n"), strings.Join(want, "\n"))
	}
	// Without a namespace (manifests), any namespace counts.
	if n := len(collectMirrors("", serviceMirrors())["east"]); n != 6 {
		t.Errorf("any namespace: %d services of east, want 6 (with the decoy of namespace default)", n)
	}
}

// TestNamesTooLong: names longer than DNS allows are left out (no reply
// could carry them); the Service keeps its address where its own name fits.
func TestNamesTooLong(t *testing.T) {
	long := strings.Repeat("x", 63)
	base := strings.Repeat("a", 50) + "." + strings.Repeat("b", 50) + ".kubelink." // 111 characters
	s := &service{namespace: long, name: long, headless: true, ports: []port{{"pg", "tcp", 5432}},
		endpoints: []endpoint{{addr: netip.MustParseAddr("10.0.0.1"), host: long, ports: []port{{"pg", "tcp", 5432}}}}}
	b := newNamesBuilder(base, true)
	var ptrs []string
	b.addService(s, func(_ netip.Addr, target string) { ptrs = append(ptrs, target) })
	nodes := b.build(5)
	svc := nodes[serviceRel(long, long)]
	if svc == nil || len(svc.a) != 1 || len(svc.srv) != 0 {
		t.Fatalf("the Service's own name: %+v", svc)
	}
	for rel := range nodes {
		if len(rel)+1+len(base) > 254 {
			t.Errorf("%s: too long, yet a name", rel)
		}
	}
	if len(ptrs) != 1 || ptrs[0] != svc.a[0].Hdr.Name {
		t.Errorf("PTR targets %v, want the Service's name", ptrs)
	}
	// Too long even for the Service: nothing.
	b = newNamesBuilder(strings.Repeat("c", 60)+"."+base, true)
	b.addService(s, func(netip.Addr, string) { t.Error("PTR for a name that cannot exist") })
	if n := len(b.build(5)); n != 0 {
		t.Errorf("%d names", n)
	}
}

// checkAnswersAreCopies asks k each query, changes the reply in place (TTL,
// names, addresses, order) as a plugin in front may, and asks again: the
// second reply must be the first as it was, with its OPT record.
func checkAnswersAreCopies(t *testing.T, k *Kubelink, queries ...*dns.Msg) {
	t.Helper()
	for _, q := range queries {
		first, _, _ := ask(t, k, q, false)
		want := first.String()
		for _, sec := range [][]dns.RR{first.Answer, first.Extra} {
			for _, rr := range sec {
				rr.Header().Ttl = 9999
				rr.Header().Name = "changed."
				if a, ok := rr.(*dns.A); ok {
					a.A = net.IPv4(6, 6, 6, 6)
				}
			}
			sort.Slice(sec, func(i, j int) bool { return i > j })
		}
		second, _, _ := ask(t, k, q, false)
		if second.String() != want {
			t.Errorf("%s: the second reply changed with the first:\n%s\nwant\n%s", q.Question[0].Name, second, want)
		}
		if q.IsEdns0() != nil && second.IsEdns0() == nil {
			t.Errorf("%s: OPT record lost", q.Question[0].Name)
		}
	}
}
