package kubelink

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	mcsv1a1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"

	"github.com/kubelink/kubelink/api/mesh"
	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/api/watch"
)

const csSOA = "clusterset.local.	5	IN	SOA	ns.dns.clusterset.local. hostmaster.clusterset.local. 0 7200 1800 86400 5"

// csImport is a ServiceImport.
func csImport(ns, name string, typ mcsv1a1.ServiceImportType, ips []string, ports ...mport) *mcsv1a1.ServiceImport {
	o := &mcsv1a1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: mcsv1a1.ServiceImportSpec{Type: typ, IPs: ips}}
	for _, p := range ports {
		o.Spec.Ports = append(o.Spec.Ports, mcsv1a1.ServicePort{Name: p.name, Protocol: p.proto, Port: p.port})
	}
	return o
}

// mcsSlice is an MCS EndpointSlice of service from cluster, labelled as
// KEP-1645 (and netd sync) label them.
func mcsSlice(ns, service, cluster string, fam discoveryv1.AddressType, ports []mport, eps ...ep) *discoveryv1.EndpointSlice {
	s := mirrorSlice(cluster, ns, service, "", false, fam, ports, eps...)
	s.Namespace = ns
	s.Name = fmt.Sprintf("mcs-%s-%s-%s", service, cluster, strings.ToLower(string(fam)))
	s.Labels = map[string]string{mcsv1a1.LabelServiceName: service, mcsv1a1.LabelSourceCluster: cluster}
	return s
}

// clustersetSnapshot: kubelink1 is the local cluster (LocalLink of
// exampleLinks), east and north Up, south Down, idle Idle (exampleLinks),
// svclink a cluster without KubeLink (a ClusterLink's). web is dual-stack
// ClusterSetIP, db headless over every cluster.
func clustersetSnapshot() watch.Snapshot {
	links := append(exampleLinks(),
		kl("east", "100.64.144.0/20", "192.168.0.21/24", "gw21.example.com", "Up", 20, withDNS("127.0.0.1", "")),
		kl("north", "100.64.176.0/20", "192.168.0.23/24", "gw23.example.com", "Up", 22, withDNS("127.0.0.1", "")),
		kl("south", "100.64.192.0/20", "192.168.0.24/24", "gw24.example.com", "Down", 23, withDNS("127.0.0.1", "")),
	)
	pgPorts := []mport{{"pg", corev1.ProtocolTCP, 5432}, {"", corev1.ProtocolTCP, 9187}}
	return watch.Snapshot{
		KubeLinks: links,
		ServiceImports: []*mcsv1a1.ServiceImport{
			csImport("demo", "web", mcsv1a1.ClusterSetIP, []string{"100.64.0.20", "fd00:64::20"}, webPorts...),
			csImport("demo", "db", mcsv1a1.Headless, nil, pgPorts...),
			// No ready endpoint anywhere: NXDOMAIN.
			csImport("demo", "gone", mcsv1a1.Headless, nil, pgPorts...),
			// No IP yet: the name exists without address.
			csImport("demo", "pending", mcsv1a1.ClusterSetIP, nil, webPorts...),
			// Not DNS labels: never names.
			csImport("Bad_NS", "x", mcsv1a1.ClusterSetIP, []string{"100.64.0.99"}),
		},
		MCSSlices: []*discoveryv1.EndpointSlice{
			mcsSlice("demo", "web", "kubelink1", v4, webPorts, ep{addr: "10.0.0.5", ready: yes}),
			mcsSlice("demo", "web", "east", v4, webPorts, ep{addr: "10.144.0.5", ready: yes}),
			mcsSlice("demo", "db", "kubelink1", v4, pgPorts, ep{"10.0.1.5", "db-0", yes}, ep{"10.0.1.6", "db-1", no}),
			mcsSlice("demo", "db", "kubelink1", v6, pgPorts, ep{"fd00:10::5", "db-0", yes}),
			mcsSlice("demo", "db", "east", v4, pgPorts, ep{"10.144.1.5", "db-0", yes}, ep{"10.144.1.6", "DB-1", nil}, ep{"10.144.1.7", "", yes}),
			mcsSlice("demo", "db", "north", v4, pgPorts, ep{"10.176.1.5", "db-0", yes}),
			mcsSlice("demo", "db", "south", v4, pgPorts, ep{"10.192.1.5", "db-0", yes}),   // Down: out
			mcsSlice("demo", "db", "idle", v4, pgPorts, ep{"10.48.1.5", "db-0", yes}),     // Idle: out
			mcsSlice("demo", "db", "svclink", v4, pgPorts, ep{"10.208.1.5", "db-0", yes}), // no KubeLink: as written
			// The address of a link keeps its PTR.
			mcsSlice("demo", "db", "Kube_Odd", v4, pgPorts, ep{"192.168.0.12", "db-7", yes}),
			mcsSlice("demo", "gone", "east", v4, pgPorts, ep{"10.144.2.5", "gone-0", no}),
		},
	}
}

func newClustersetPlugin(t testing.TB, snap watch.Snapshot, mod func(*config)) (*Kubelink, *controller) {
	t.Helper()
	return newTestPluginSnapshot(t, "53", snap, mesh.Options{}, func(c *config) {
		c.clusterset = "clusterset.local."
		if mod != nil {
			mod(c)
		}
	})
}

// TestClusterset: every row of KEP-1645's DNS specification.
func TestClusterset(t *testing.T) {
	k, _ := newClustersetPlugin(t, clustersetSnapshot(), nil)
	soa := []dns.RR{test.SOA(csSOA)}
	const web, db = "web.demo.svc.clusterset.local.", "db.demo.svc.clusterset.local."
	webExtra := []dns.RR{test.A(web + " 5 IN A 100.64.0.20"), test.AAAA(web + " 5 IN AAAA fd00:64::20")}
	host := func(h string) string { return h + "." + db }
	hostA := func(h, a string) dns.RR { return test.A(host(h) + " 5 IN A " + a) }
	srv := func(owner string, weight, port int, h string) dns.RR {
		return test.SRV(fmt.Sprintf("%s 5 IN SRV 0 %d %d %s", owner, weight, port, host(h)))
	}
	ready := [][2]string{ // the ready, healthy endpoints of db
		{"10-144-1-7.east", "10.144.1.7"}, {"db-0.east", "10.144.1.5"}, {"db-0.kubelink1", "10.0.1.5"},
		{"db-0.north", "10.176.1.5"}, {"db-0.svclink", "10.208.1.5"}, {"db-1.east", "10.144.1.6"},
	}
	var dbA, pgSRV, pgExtra, allSRV []dns.RR
	for _, r := range ready {
		dbA = append(dbA, test.A(db+" 5 IN A "+r[1]))
		pgSRV = append(pgSRV, srv("_pg._tcp."+db, 100/len(ready), 5432, r[0]))
		pgExtra = append(pgExtra, hostA(r[0], r[1]))
		allSRV = append(allSRV, srv(db, 100/(2*len(ready)), 5432, r[0]), srv(db, 100/(2*len(ready)), 9187, r[0]))
	}
	// Kube_Odd is no DNS label: its endpoint is in the Service's
	// addresses, without a name of its own (and so without SRV).
	dbA = append(dbA, test.A(db+" 5 IN A 192.168.0.12"))
	// db-0.kubelink1 has an IPv6 address too.
	pgExtra = append(pgExtra, test.AAAA(host("db-0.kubelink1")+" 5 IN AAAA fd00:10::5"))
	for _, rrs := range [][]dns.RR{dbA, pgSRV, pgExtra, allSRV} {
		sort.Sort(test.RRSet(rrs)) // as SortAndCheck sorts the reply
	}
	cases := []test.Case{
		// 2.2: the schema version of the KEP, not the cluster-local one.
		{Qname: "dns-version.clusterset.local.", Qtype: dns.TypeTXT, Answer: []dns.RR{test.TXT(`dns-version.clusterset.local. 5 IN TXT "1.0.0"`)}},
		{Qname: "dns-version.clusterset.local.", Qtype: dns.TypeA, Ns: soa},
		// The apex.
		{Qname: "clusterset.local.", Qtype: dns.TypeSOA, Answer: soa},
		{Qname: "clusterset.local.", Qtype: dns.TypeNS, Answer: []dns.RR{test.NS("clusterset.local. 5 IN NS ns.dns.clusterset.local.")}},
		{Qname: "clusterset.local.", Qtype: dns.TypeA, Ns: soa},
		// 2.3.1: ClusterSetIP A/AAAA are spec.ips, whatever the endpoints.
		{Qname: web, Qtype: dns.TypeA, Answer: []dns.RR{test.A(web + " 5 IN A 100.64.0.20")}},
		{Qname: web, Qtype: dns.TypeAAAA, Answer: []dns.RR{test.AAAA(web + " 5 IN AAAA fd00:64::20")}},
		{Qname: "WEB.Demo.svc.ClusterSet.LOCAL.", Qtype: dns.TypeA, Answer: []dns.RR{test.A("WEB.Demo.svc.ClusterSet.LOCAL. 5 IN A 100.64.0.20")}},
		// 2.3.2: SRV per named port, the targets' addresses additional.
		{Qname: "_http._tcp." + web, Qtype: dns.TypeSRV, Answer: []dns.RR{test.SRV("_http._tcp." + web + " 5 IN SRV 0 100 80 " + web)}, Extra: webExtra},
		{Qname: "_dns._udp." + web, Qtype: dns.TypeSRV, Answer: []dns.RR{test.SRV("_dns._udp." + web + " 5 IN SRV 0 100 53 " + web)}, Extra: webExtra},
		{Qname: "_http._udp." + web, Qtype: dns.TypeSRV, Rcode: dns.RcodeNameError, Ns: soa},
		{Qname: "_nosuch._tcp." + web, Qtype: dns.TypeSRV, Rcode: dns.RcodeNameError, Ns: soa},
		// The Service's own SRV: every port (as CoreDNS's kubernetes plugin).
		{Qname: web, Qtype: dns.TypeSRV, Answer: []dns.RR{
			test.SRV(web + " 5 IN SRV 0 50 53 " + web), test.SRV(web + " 5 IN SRV 0 50 80 " + web)}, Extra: webExtra},
		// 2.3.4: no name below a ClusterSetIP service singles out a
		// cluster (the kubernetes plugin's hostname.clusterid names are
		// gone).
		{Qname: "east." + web, Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: soa},
		{Qname: "10-144-0-5.east." + web, Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: soa},
		{Qname: "10-0-0-5.kubelink1." + web, Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: soa},
		// An import without IPs: the name exists, no address, no SRV.
		{Qname: "pending.demo.svc.clusterset.local.", Qtype: dns.TypeA, Ns: soa},
		{Qname: "_http._tcp.pending.demo.svc.clusterset.local.", Qtype: dns.TypeSRV, Rcode: dns.RcodeNameError, Ns: soa},
		// 2.4.1: headless A/AAAA: the ready endpoints of every cluster
		// that counts (south Down, idle Idle: out).
		{Qname: db, Qtype: dns.TypeA, Answer: dbA},
		{Qname: db, Qtype: dns.TypeAAAA, Answer: []dns.RR{test.AAAA(db + " 5 IN AAAA fd00:10::5")}},
		// <hostname>.<clusterid>, the hostname lower case; without
		// hostname the address with dashes.
		{Qname: host("db-0.east"), Qtype: dns.TypeA, Answer: []dns.RR{hostA("db-0.east", "10.144.1.5")}},
		{Qname: host("db-1.east"), Qtype: dns.TypeA, Answer: []dns.RR{hostA("db-1.east", "10.144.1.6")}},
		{Qname: host("10-144-1-7.east"), Qtype: dns.TypeA, Answer: []dns.RR{hostA("10-144-1-7.east", "10.144.1.7")}},
		{Qname: host("db-0.kubelink1"), Qtype: dns.TypeAAAA, Answer: []dns.RR{test.AAAA(host("db-0.kubelink1") + " 5 IN AAAA fd00:10::5")}},
		{Qname: host("db-0.svclink"), Qtype: dns.TypeA, Answer: []dns.RR{hostA("db-0.svclink", "10.208.1.5")}},
		{Qname: "DB-0.North.db.demo.svc.clusterset.local.", Qtype: dns.TypeA, Answer: []dns.RR{test.A("DB-0.North.db.demo.svc.clusterset.local. 5 IN A 10.176.1.5")}},
		// A name with the other family only: NODATA.
		{Qname: host("db-0.east"), Qtype: dns.TypeAAAA, Ns: soa},
		// 2.4.2: SRV per ready endpoint and named port; the Service's own
		// SRV has every port.
		{Qname: "_pg._tcp." + db, Qtype: dns.TypeSRV, Answer: pgSRV, Extra: pgExtra},
		{Qname: db, Qtype: dns.TypeSRV, Answer: allSRV, Extra: pgExtra},
		// 2.4.4: no record for <clusterid>.<svc>: it is an empty
		// non-terminal (NODATA, RFC 8020: an NXDOMAIN would deny the
		// endpoint names below it).
		{Qname: "east." + db, Qtype: dns.TypeA, Ns: soa},
		{Qname: "east." + db, Qtype: dns.TypeSRV, Ns: soa},
		// Not ready, Down, Idle, unknown, too long: no name.
		{Qname: host("db-1.kubelink1"), Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: soa},
		{Qname: host("db-0.south"), Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: soa},
		{Qname: host("db-0.idle"), Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: soa},
		{Qname: "south." + db, Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: soa},
		{Qname: host("db-9.east"), Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: soa},
		{Qname: "a." + host("db-0.east"), Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: soa},
		// A cluster ID that is no DNS label: its endpoints count, without
		// names of their own.
		{Qname: "db-7.kube_odd." + db, Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: soa},
		// 2.4.1: no ready endpoint: NXDOMAIN, SRV too.
		{Qname: "gone.demo.svc.clusterset.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: soa},
		{Qname: "_pg._tcp.gone.demo.svc.clusterset.local.", Qtype: dns.TypeSRV, Rcode: dns.RcodeNameError, Ns: soa},
		// Parents: empty non-terminals.
		{Qname: "demo.svc.clusterset.local.", Qtype: dns.TypeA, Ns: soa},
		{Qname: "svc.clusterset.local.", Qtype: dns.TypeA, Ns: soa},
		{Qname: "_tcp." + web, Qtype: dns.TypeSRV, Ns: soa},
		// Unknown names: NXDOMAIN with the SOA.
		{Qname: "nosuch.demo.svc.clusterset.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: soa},
		{Qname: "web.nosuchns.svc.clusterset.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: soa},
		{Qname: "web.demo.pod.clusterset.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: soa},
		{Qname: "x.bad_ns.svc.clusterset.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: soa},
		// The mesh is served as before.
		{Qname: "kubelink2.kubelink.", Qtype: dns.TypeA, Answer: []dns.RR{test.A("kubelink2.kubelink. 5 IN A 192.168.0.12")}},
	}
	for _, tc := range cases {
		if tc.Qtype == dns.TypeSRV {
			checkCaseTCP(t, k, tc) // the largest replies do not fit 512 bytes
			continue
		}
		checkCase(t, k, tc)
	}
	// Names outside both zones: the next plugin.
	for _, name := range []string{"clusterset.example.", "xclusterset.local.", "local."} {
		if resp, rcode, _ := ask(t, k, query(name, dns.TypeA), false); rcode != dns.RcodeRefused || resp != nil {
			t.Errorf("%s answered: %v", name, resp)
		}
	}
}

// checkCaseTCP is checkCase over TCP.
func checkCaseTCP(t *testing.T, k *Kubelink, tc test.Case) {
	t.Helper()
	resp, _, err := ask(t, k, tc.Msg(), true)
	if err != nil || resp == nil {
		t.Fatalf("%s %s: %v %v", tc.Qname, dns.TypeToString[tc.Qtype], resp, err)
	}
	for _, r := range resp.Ns {
		if s, ok := r.(*dns.SOA); ok {
			s.Serial = 0
		}
	}
	if err := test.SortAndCheck(resp, tc); err != nil {
		t.Errorf("%s %s: %v\n%s", tc.Qname, dns.TypeToString[tc.Qtype], err, resp)
	}
}

// TestClustersetPTR: KEP 2.4.3, the PTR of a ready headless endpoint is
// its <hostname>.<clusterid> name; link addresses keep theirs.
func TestClustersetPTR(t *testing.T) {
	k, _ := newClustersetPlugin(t, clustersetSnapshot(), nil)
	const db = "db.demo.svc.clusterset.local."
	for ip, want := range map[string]string{
		"10.144.1.5":   "db-0.east." + db,
		"10.144.1.7":   "10-144-1-7.east." + db,
		"fd00:10::5":   "db-0.kubelink1." + db,
		"192.168.0.12": "kubelink2.kubelink.",
	} {
		rev := reverse(t, ip)
		checkCase(t, k, test.Case{Qname: rev, Qtype: dns.TypePTR, Answer: []dns.RR{test.PTR(rev + " 5 IN PTR " + want)}})
	}
	// Not ready, out of the answers, ClusterSetIP: no PTR here (the
	// clusterset IP is the local Service's, whose PTR the cluster DNS has:
	// KEP 2.3.3 Limitations). The reverse zones go to the next plugin.
	for _, ip := range []string{"10.0.1.6", "10.192.1.5", "100.64.0.20", "10.0.0.5"} {
		if resp, rcode, _ := ask(t, k, query(reverse(t, ip), dns.TypePTR), false); rcode != dns.RcodeRefused || resp != nil {
			t.Errorf("PTR %s answered: %v", ip, resp)
		}
	}
}

// TestClustersetHealth: a cluster whose link leaves Up leaves the answers
// with the next snapshot, and comes back with it; the local cluster's own
// endpoints count whatever the state of its LocalLink.
func TestClustersetHealth(t *testing.T) {
	snap := clustersetSnapshot()
	k, ctl := newClustersetPlugin(t, snap, nil)
	const db = "db.demo.svc.clusterset.local."
	addrs := func() string {
		resp, _, _ := ask(t, k, query(db, dns.TypeA), false)
		return strings.Join(addrsOf(resp), ",")
	}
	all := "10.0.1.5,10.144.1.5,10.144.1.6,10.144.1.7,10.176.1.5,10.208.1.5,192.168.0.12"
	if got := addrs(); got != all {
		t.Fatalf("db A %s", got)
	}
	setState := func(name, state string) {
		for _, l := range snap.KubeLinks {
			if l.Name == name {
				l.Status.State = state
			}
		}
		ctl.update(snap)
	}
	for _, state := range []string{v1alpha1.StateDown, v1alpha1.StateIdle, v1alpha1.StateError, v1alpha1.StateStale, ""} {
		setState("east", state)
		if got := addrs(); got != "10.0.1.5,10.176.1.5,10.208.1.5,192.168.0.12" {
			t.Errorf("east %q: db A %s", state, got)
		}
		checkCase(t, k, test.Case{Qname: "db-0.east." + db, Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: []dns.RR{test.SOA(csSOA)}})
		checkCase(t, k, test.Case{Qname: "east." + db, Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: []dns.RR{test.SOA(csSOA)}})
		// The ClusterSetIP stays: the local Service balances, and netd
		// sync takes the cluster's endpoints out of it.
		checkCase(t, k, test.Case{Qname: "web.demo.svc.clusterset.local.", Qtype: dns.TypeA,
			Answer: []dns.RR{test.A("web.demo.svc.clusterset.local. 5 IN A 100.64.0.20")}})
	}
	setState("east", v1alpha1.StateUp)
	if got := addrs(); got != all {
		t.Errorf("east Up again: db A %s", got)
	}
	// The LocalLink's state never matters.
	setState("kubelink1", v1alpha1.StateDown)
	if got := addrs(); got != all {
		t.Errorf("LocalLink Down: db A %s", got)
	}
	// A link rejected by the mesh rules is not Up: clash overlaps
	// kubelink2's CIDR.
	snap.MCSSlices = append(snap.MCSSlices, mcsSlice("demo", "db", "clash", v4, nil, ep{"10.99.1.5", "db-0", yes}))
	ctl.update(snap)
	if got := addrs(); got != all {
		t.Errorf("Invalid clash counted: db A %s", got)
	}
	// The cluster-name option names the local cluster without LocalLink.
	snap.MCSSlices = append(snap.MCSSlices, mcsSlice("demo", "db", "south", v4, nil, ep{"10.192.9.9", "db-9", yes}))
	k2, _ := newClustersetPlugin(t, snap, func(c *config) { c.opts.ClusterName = "south" })
	resp, _, _ := ask(t, k2, query("db-9.south."+db, dns.TypeA), false)
	if fmt.Sprint(addrsOf(resp)) != "[10.192.9.9]" {
		t.Errorf("the local cluster south (cluster-name) left out: %v", resp)
	}
	// Every endpoint gone: NXDOMAIN.
	snap.MCSSlices = nil
	ctl.update(snap)
	checkCase(t, k, test.Case{Qname: db, Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: []dns.RR{test.SOA(csSOA)}})
}

// TestClustersetOption: without the option the zone is not the plugin's;
// another zone can be named; fallthrough passes its NXDOMAINs on.
func TestClustersetOption(t *testing.T) {
	snap := clustersetSnapshot()
	k, _ := newTestPluginSnapshot(t, "53", snap, mesh.Options{}, nil)
	for _, name := range []string{"web.demo.svc.clusterset.local.", "clusterset.local.", "dns-version.clusterset.local."} {
		if resp, rcode, _ := ask(t, k, query(name, dns.TypeA), false); rcode != dns.RcodeRefused || resp != nil {
			t.Errorf("%s answered without the option: %v", name, resp)
		}
	}
	if resp, rcode, _ := ask(t, k, query(reverse(t, "10.144.1.5"), dns.TypePTR), false); rcode != dns.RcodeRefused || resp != nil {
		t.Errorf("endpoint PTR answered without the option: %v", resp)
	}

	k, _ = newClustersetPlugin(t, snap, func(c *config) { c.clusterset = "mcs.example." })
	checkCase(t, k, test.Case{Qname: "web.demo.svc.mcs.example.", Qtype: dns.TypeA, Answer: []dns.RR{test.A("web.demo.svc.mcs.example. 5 IN A 100.64.0.20")}})
	checkCase(t, k, test.Case{Qname: "dns-version.mcs.example.", Qtype: dns.TypeTXT, Answer: []dns.RR{test.TXT(`dns-version.mcs.example. 5 IN TXT "1.0.0"`)}})
	if _, rcode, _ := ask(t, k, query("web.demo.svc.clusterset.local.", dns.TypeA), false); rcode != dns.RcodeRefused {
		t.Errorf("clusterset.local served with zone mcs.example")
	}

	k, _ = newClustersetPlugin(t, snap, func(c *config) {})
	k.Fall.SetZonesFromArgs([]string{"clusterset.local."})
	if _, rcode, _ := ask(t, k, query("nosuch.demo.svc.clusterset.local.", dns.TypeA), false); rcode != dns.RcodeRefused {
		t.Errorf("fallthrough clusterset.local: rcode %d", rcode)
	}
	checkCase(t, k, test.Case{Qname: "web.demo.svc.clusterset.local.", Qtype: dns.TypeA, Answer: []dns.RR{test.A("web.demo.svc.clusterset.local. 5 IN A 100.64.0.20")}})

	for _, tc := range []struct {
		in, want string
		err      bool
	}{
		{"kubelink {\n clusterset\n}", "clusterset.local.", false},
		{"kubelink {\n clusterset ClusterSet.Local\n}", "clusterset.local.", false},
		{"kubelink {\n clusterset mcs.example.\n}", "mcs.example.", false},
		{"kubelink {\n}", "", false},
		{"kubelink {\n clusterset a b\n}", "", true},
		{"kubelink {\n clusterset -bad-\n}", "", true},
		{"kubelink {\n clusterset .\n}", "", true},
	} {
		_, cfg, err := parse(caddy.NewTestController("dns", tc.in))
		if tc.err != (err != nil) || err == nil && cfg.clusterset != tc.want {
			t.Errorf("%q: %v %+v", tc.in, err, cfg)
		}
	}
}

// TestClustersetAnswersAreCopies: plugins in front change replies in place.
func TestClustersetAnswersAreCopies(t *testing.T) {
	k, _ := newClustersetPlugin(t, clustersetSnapshot(), nil)
	checkAnswersAreCopies(t, k, query("db.demo.svc.clusterset.local.", dns.TypeA), query("_pg._tcp.db.demo.svc.clusterset.local.", dns.TypeSRV),
		queryEDNS("web.demo.svc.clusterset.local.", dns.TypeA, 1232), query("dns-version.clusterset.local.", dns.TypeTXT))
}

// fakeMCSCluster is fakeCluster with the ServiceImport kind.
func fakeMCSCluster(t *testing.T, objs ...runtime.Object) (*fake.Clientset, *dynamicfake.FakeDynamicClient) {
	t.Helper()
	var dynObjs []runtime.Object
	for _, l := range serviceLinks() {
		dynObjs = append(dynObjs, toUnstructured(t, l, "KubeLink"))
	}
	for _, o := range objs {
		u := toUnstructured(t, o, mcsv1a1.ServiceImportKindName)
		u.SetAPIVersion(mcsv1a1.SchemeGroupVersion.String())
		dynObjs = append(dynObjs, u)
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		watch.KubeLinks: "KubeLinkList", watch.MeshServices: "MeshServiceList", watch.ServiceImports: "ServiceImportList"}, dynObjs...)
	return fake.NewClientset(), dyn
}

// runClustersetSource runs the API source with the clusterset option.
func runClustersetSource(t *testing.T, core *fake.Clientset, dyn *dynamicfake.FakeDynamicClient) *Kubelink {
	t.Helper()
	return runSourceConfig(t, &config{ttl: 5, upstreamPort: "53", namespace: mirrorNS, clusterset: "clusterset.local.",
		opts: mesh.Options{ClusterDomain: "local.test", LocalDNS: netip.MustParseAddr("127.0.0.1")}}, core, dyn)
}

// TestClustersetKubeSource: ServiceImports and MCS slices (and only
// those: other slices of the namespace are not read) through the
// informers; every change, and a link going Down, within a second.
func TestClustersetKubeSource(t *testing.T) {
	core, dyn := fakeMCSCluster(t, csImport("demo", "web", mcsv1a1.ClusterSetIP, []string{"100.64.0.20"}, webPorts...))
	k := runClustersetSource(t, core, dyn)
	ctx := context.Background()
	check := func(what string, d time.Duration) {
		t.Helper()
		t.Logf("%s: in answers after %v", what, d)
		if d > time.Second {
			t.Errorf("%s took %v, want within a second", what, d)
		}
	}
	waitAnswer(t, k, "web.demo.svc.clusterset.local.", "100.64.0.20")
	waitAnswer(t, k, "db.demo.svc.clusterset.local.")

	imports := dyn.Resource(watch.ServiceImports).Namespace("demo")
	u := toUnstructured(t, csImport("demo", "db", mcsv1a1.Headless, nil, dbPorts...), mcsv1a1.ServiceImportKindName)
	u.SetAPIVersion(mcsv1a1.SchemeGroupVersion.String())
	if _, err := imports.Create(ctx, u, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	slices := core.DiscoveryV1().EndpointSlices("demo")
	s := mcsSlice("demo", "db", "east", v4, dbPorts, ep{"10.144.1.5", "db-0", yes})
	if _, err := slices.Create(ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A slice without the MCS label is never read.
	plain := mcsSlice("demo", "db", "north", v4, dbPorts, ep{"10.176.1.5", "db-0", yes})
	plain.Name, plain.Labels = "plain", map[string]string{discoveryv1.LabelServiceName: "db"}
	if _, err := slices.Create(ctx, plain, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	check("import and slice created", waitAnswer(t, k, "db.demo.svc.clusterset.local.", "10.144.1.5"))
	waitAnswer(t, k, "db-0.east.db.demo.svc.clusterset.local.", "10.144.1.5")

	links := dyn.Resource(watch.KubeLinks)
	lu, err := links.Get(ctx, "east", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(lu.Object, v1alpha1.StateDown, "status", "state"); err != nil {
		t.Fatal(err)
	}
	if _, err := links.Update(ctx, lu, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	check("link Down", waitAnswer(t, k, "db.demo.svc.clusterset.local."))
	if err := unstructured.SetNestedField(lu.Object, v1alpha1.StateUp, "status", "state"); err != nil {
		t.Fatal(err)
	}
	if _, err := links.Update(ctx, lu, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	check("link Up", waitAnswer(t, k, "db.demo.svc.clusterset.local.", "10.144.1.5"))

	s.Endpoints[0].Conditions.Ready = no
	if _, err := slices.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	check("endpoint not ready", waitAnswer(t, k, "db.demo.svc.clusterset.local."))
	if err := imports.Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	check("import deleted", waitAnswer(t, k, "web.demo.svc.clusterset.local."))
}

// TestClustersetKubeSourceWithoutRights: without the ServiceImport kind
// and without the right to list slices cluster-wide, the plugin still
// becomes ready and serves the zone (empty) and the mesh.
func TestClustersetKubeSourceWithoutRights(t *testing.T) {
	core, dyn := fakeMCSCluster(t)
	core.PrependReactor("list", "endpointslices", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetNamespace() != "" {
			return false, nil, nil
		}
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "discovery.k8s.io", Resource: "endpointslices"}, "", errors.New("no"))
	})
	dyn.PrependReactor("list", "serviceimports", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewNotFound(schema.GroupResource{Group: mcsv1a1.GroupName, Resource: "serviceimports"}, "")
	})
	done := make(chan *Kubelink)
	go func() { done <- runClustersetSource(t, core, dyn) }()
	select {
	case k := <-done:
		waitAnswer(t, k, "east.kubelink.", "192.168.0.21")
		checkCase(t, k, test.Case{Qname: "web.demo.svc.clusterset.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: []dns.RR{test.SOA(csSOA)}})
		checkCase(t, k, test.Case{Qname: "clusterset.local.", Qtype: dns.TypeSOA, Answer: []dns.RR{test.SOA(csSOA)}})
	case <-time.After(15 * time.Second):
		t.Fatal("held up by kinds it may not read")
	}
}

// FuzzClustersetServeDNS feeds arbitrary messages through the clusterset
// zone's query path: no panic, and whatever it writes packs.
func FuzzClustersetServeDNS(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"clusterset.local.", dns.TypeSOA}, {"dns-version.clusterset.local.", dns.TypeTXT},
		{"web.demo.svc.clusterset.local.", dns.TypeAAAA}, {"_pg._tcp.db.demo.svc.clusterset.local.", dns.TypeSRV},
		{"db-0.east.db.demo.svc.clusterset.local.", dns.TypeA}, {"east.db.demo.svc.clusterset.local.", dns.TypeA},
		{"5.1.144.10.in-addr.arpa.", dns.TypePTR}, {"x.y.clusterset.local.", dns.TypeANY},
	} {
		m := query(q.name, q.qtype)
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
		f.Add(b, true)
	}
	k, _ := newClustersetPlugin(f, clustersetSnapshot(), nil)
	f.Fuzz(func(t *testing.T, wire []byte, tcp bool) {
		m := new(dns.Msg)
		if err := m.Unpack(wire); err != nil || len(m.Question) == 1 && (m.Question[0].Qtype == dns.TypeAXFR || m.Question[0].Qtype == dns.TypeIXFR) {
			return
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
