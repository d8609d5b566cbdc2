package kubelink

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	mcsv1a1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"

	// The hosts plugin registers its setup function for caddy.
	_ "github.com/coredns/coredns/plugin/hosts"

	"github.com/kubelink/kubelink/api/mesh"
	"github.com/kubelink/kubelink/api/watch"
)

// clustersetBenchSnapshot is the data set of test/dns/benchclusterset:
// services ClusterSetIP imports (dual-stack spec.ips) and as many headless
// ones with 2 ready endpoints (hostnames pod-0, pod-1) in each of the
// clusters west, east and north, all Up; and the hosts plugin's inline
// lines with the same names and addresses.
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
		fmt.Fprintf(&hosts, "    %s %s.%s.%s\n    %s %s.%s.%s\n", v4, web, ns, zone, v6, web, ns, zone)
		snap.ServiceImports = append(snap.ServiceImports,
			csImport(ns, web, mcsv1a1.ClusterSetIP, []string{v4, v6}, mport{"http", corev1.ProtocolTCP, 80}),
			csImport(ns, db, mcsv1a1.Headless, nil, mport{"pg", corev1.ProtocolTCP, 80}))
		for ci, c := range clusters {
			var eps []ep
			for k := 0; k < 2; k++ {
				ip := fmt.Sprintf("10.%d.%d.%d", 10+ci, i/120, (i%120)*2+k+1)
				eps = append(eps, ep{ip, fmt.Sprintf("pod-%d", k), yes})
				fmt.Fprintf(&hosts, "    %s %s.%s.%s\n    %s pod-%d.%s.%s.%s.%s\n", ip, db, ns, zone, ip, k, c, db, ns, zone)
			}
			snap.MCSSlices = append(snap.MCSSlices, mcsSlice(ns, db, c, discoveryv1.AddressTypeIPv4, []mport{{"pg", corev1.ProtocolTCP, 8080}}, eps...))
		}
	}
	return snap, hosts.String()
}

// packingWriter packs every reply, as the server does before sending it.
type packingWriter struct {
	test.ResponseWriter
	last *dns.Msg
}

func (w *packingWriter) WriteMsg(m *dns.Msg) error {
	w.last = m
	_, err := m.Pack()
	return err
}

func cpuNanos() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
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

	hc := caddy.NewTestController("dns", "hosts {\n"+hostsLines+"    ttl 5\n    no_reverse\n    reload 0\n}")
	hc.ServerBlockKeys = []string{"clusterset.local."}
	setup, err := caddy.DirectiveAction("dns", "hosts")
	if err != nil {
		b.Fatal(err)
	}
	if err := setup(hc); err != nil {
		b.Fatal(err)
	}
	h := dnsserver.GetConfig(hc).Plugin[0](nil)

	ctx := context.Background()
	for _, kind := range []struct{ name, qname string }{
		{"clustersetip-A", "web-042.bench.svc.clusterset.local. A"},
		{"clustersetip-AAAA", "web-042.bench.svc.clusterset.local. AAAA"},
		{"headless-A", "db-042.bench.svc.clusterset.local. A"},
		{"hostname-A", "pod-1.east.db-042.bench.svc.clusterset.local. A"},
	} {
		f := strings.Fields(kind.qname)
		req := query(f[0], dns.StringToType[f[1]])
		// Both must give the same addresses before they are compared.
		kw, hw := &packingWriter{}, &packingWriter{}
		if _, err := k.ServeDNS(ctx, kw, req); err != nil {
			b.Fatal(err)
		}
		if _, err := h.ServeDNS(ctx, hw, req); err != nil {
			b.Fatal(err)
		}
		if ka, ha := benchAddrs(kw.last), benchAddrs(hw.last); ka != ha || ka == "" {
			b.Fatalf("%s: kubelink %q, hosts %q", kind.qname, ka, ha)
		}
		for _, p := range []struct {
			name  string
			serve func(context.Context, dns.ResponseWriter, *dns.Msg) (int, error)
		}{{"kubelink", k.ServeDNS}, {"hosts", h.ServeDNS}} {
			b.Run(kind.name+"/"+p.name, func(b *testing.B) {
				w := &packingWriter{}
				b.ReportAllocs()
				before := cpuNanos()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, err := p.serve(ctx, w, req); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(cpuNanos()-before)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

func benchAddrs(m *dns.Msg) string {
	if m == nil {
		return ""
	}
	var out []string
	for _, rr := range m.Answer {
		switch v := rr.(type) {
		case *dns.A:
			out = append(out, v.A.String())
		case *dns.AAAA:
			out = append(out, v.AAAA.String())
		}
	}
	sort.Strings(out)
	return strings.Join(out, ",")
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
