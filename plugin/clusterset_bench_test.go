package kubelink

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	mcsv1a1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"

	"github.com/kubelink/kubelink/api/mesh"
	"github.com/kubelink/kubelink/api/watch"
	"github.com/kubelink/kubelink/test/dns/servebench"
)

// clustersetBenchSnapshot is the data set of test/dns/benchclusterset:
// services ClusterSetIP imports (dual-stack spec.ips) and as many headless
// ones with 2 ready endpoints (hostnames pod-0, pod-1) in each of the
// clusters west, east and north, all Up; and the hosts-file lines with the same
// names and addresses.
func clustersetBenchSnapshot(services int) (watch.Snapshot, string) {
	clusters := []string{"west", "east", "north"}
	snap := watch.Snapshot{KubeLinks: exampleLinks()}
	for i, c := range clusters {
		snap.KubeLinks = append(snap.KubeLinks, kl(c, fmt.Sprintf("100.65.%d.0/24", i), fmt.Sprintf("192.168.0.%d/24", 100+i), "gw.example.com", "Up", 30+i))
	}
	const ns, zone = "bench", "svc.clusterset.local."
	var hosts strings.Builder
	for i := 0; i < services; i++ {
		web, db := fmt.Sprintf("web-%03d", i), fmt.Sprintf("db-%03d", i)
		v4, v6 := fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), fmt.Sprintf("fd00::%x", i+1)
		fmt.Fprintf(&hosts, "%s %s.%s.%s\n%s %s.%s.%s\n", v4, web, ns, zone, v6, web, ns, zone)
		snap.ServiceImports = append(snap.ServiceImports,
			csImport(ns, web, mcsv1a1.ClusterSetIP, []string{v4, v6}, mport{"http", corev1.ProtocolTCP, 80}),
			csImport(ns, db, mcsv1a1.Headless, nil, mport{"pg", corev1.ProtocolTCP, 80}))
		for ci, c := range clusters {
			var eps []ep
			for k := 0; k < 2; k++ {
				ip := fmt.Sprintf("10.%d.%d.%d", 10+ci, i/120, (i%120)*2+k+1)
				eps = append(eps, ep{ip, fmt.Sprintf("pod-%d", k), yes})
				fmt.Fprintf(&hosts, "%s %s.%s.%s\n%s pod-%d.%s.%s.%s.%s\n", ip, db, ns, zone, ip, k, c, db, ns, zone)
			}
			snap.MCSSlices = append(snap.MCSSlices, mcsSlice(ns, db, c, discoveryv1.AddressTypeIPv4, []mport{{"pg", corev1.ProtocolTCP, 8080}}, eps...))
		}
	}
	return snap, hosts.String()
}

// BenchmarkClustersetServeDNS compares the plugin's clusterset answers with
// the hosts plugin holding the same names and addresses, per query kind,
// in process: one ServeDNS call with its reply packed per operation,
// cpu-ns/op the process CPU time per query. test/dns/benchclusterset
// measures the same through sockets with dnsperf.
//
//	go test -run '^$' -bench BenchmarkClustersetServeDNS -count 5 ./plugin/
func BenchmarkClustersetServeDNS(b *testing.B) {
	snap, hostsLines := clustersetBenchSnapshot(100)
	k, _ := newTestPluginSnapshot(b, "53", snap, mesh.Options{}, func(c *config) { c.clusterset = "clusterset.local." })

	h := servebench.Hosts(b, "clusterset.local.", hostsLines)
	ctx := context.Background()
	for _, kind := range []struct{ name, qname string }{
		{"clustersetip-A", "web-042.bench.svc.clusterset.local. A"},
		{"clustersetip-AAAA", "web-042.bench.svc.clusterset.local. AAAA"},
		{"headless-A", "db-042.bench.svc.clusterset.local. A"},
		{"hostname-A", "pod-1.east.db-042.bench.svc.clusterset.local. A"},
	} {
		servebench.Compare(b, ctx, kind.name, kind.qname,
			servebench.Contender{Name: "kubelink", Serve: k.ServeDNS}, servebench.Contender{Name: "hosts", Serve: h.ServeDNS})
	}
}

// BenchmarkClustersetRebuild rebuilds the index with 1,000 + 1,000 imports
// (6,000 headless endpoints): the cost of every change.
func BenchmarkClustersetRebuild(b *testing.B) {
	snap, _ := clustersetBenchSnapshot(1000)
	_, ctl := newTestPluginSnapshot(b, "53", snap, mesh.Options{}, func(c *config) { c.clusterset = "clusterset.local." })
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ctl.update(snap)
	}
}
