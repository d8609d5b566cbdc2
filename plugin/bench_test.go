package kubelink

import (
	"context"
	"fmt"
	"testing"

	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"

	"github.com/kubelink/kubelink/api/mesh"
)

// discard is a ResponseWriter that drops replies, so benchmarks measure
// the plugin alone.
type discard struct{ test.ResponseWriter }

func (discard) WriteMsg(*dns.Msg) error { return nil }

func benchQuery(b *testing.B, name string, qtype uint16) {
	up := startFakeDNS(b)
	k, _ := newTestPlugin(b, up.port, exampleLinks(), mesh.Options{})
	benchServe(b, k, name, qtype)
}

func benchServe(b *testing.B, k *Kubelink, name string, qtype uint16) {
	m := query(name, qtype)
	w := &discard{}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := k.ServeDNS(ctx, w, m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLocalA(b *testing.B)   { benchQuery(b, "kubelink2.kubelink.", dns.TypeA) }
func BenchmarkLocalPTR(b *testing.B) { benchQuery(b, "12.0.168.192.in-addr.arpa.", dns.TypePTR) }
func BenchmarkForward(b *testing.B) {
	benchQuery(b, "_http._tcp.web.default.svc.kubelink2.kubelink.", dns.TypeSRV)
}

// Answers from memory (kubernetes mode and global names).
func benchMemory(b *testing.B, name string, qtype uint16) {
	up := startFakeDNS(b)
	k, _ := newServicePlugin(b, up.port, nil)
	benchServe(b, k, name, qtype)
}

func BenchmarkKubernetesA(b *testing.B) { benchMemory(b, "web.demo.svc.east.kubelink.", dns.TypeA) }
func BenchmarkKubernetesHeadlessA(b *testing.B) {
	benchMemory(b, "db.demo.svc.east.kubelink.", dns.TypeA)
}
func BenchmarkKubernetesSRV(b *testing.B) {
	benchMemory(b, "_http._tcp.web.demo.svc.east.kubelink.", dns.TypeSRV)
}
func BenchmarkKubernetesPTR(b *testing.B) { benchMemory(b, "20.144.64.100.in-addr.arpa.", dns.TypePTR) }
func BenchmarkGlobalA(b *testing.B)       { benchMemory(b, "web.demo.svc.global.kubelink.", dns.TypeA) }

// BenchmarkRebuild10k rebuilds the index from a snapshot of 10,000 service
// mirrors (5 clusters × 1,000 Services × 2 families): the cost of every
// change.
func BenchmarkRebuild10k(b *testing.B) {
	up := startFakeDNS(b)
	snap := serviceSnapshot()
	snap.EndpointSlices = nil
	for c, cluster := range []string{"east", "west", "north", "quiet", "kubelink2"} {
		for i := 0; i < 1000; i++ {
			name := fmt.Sprintf("svc%d", i)
			snap.EndpointSlices = append(snap.EndpointSlices,
				mirrorSlice(cluster, "demo", name, ci, i%2 == 0, v4, webPorts, ep{addr: fmt.Sprintf("100.%d.%d.%d", 64+c, i/250, i%250), ready: yes}),
				mirrorSlice(cluster, "demo", name, ci, i%2 == 0, v6, webPorts, ep{addr: fmt.Sprintf("fd00:%d::%d", c, i+1), ready: yes}))
		}
	}
	_, ctl := newTestPluginSnapshot(b, up.port, snap, mesh.Options{}, func(c *config) { c.namespace = mirrorNS })
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ctl.update(snap)
	}
}
