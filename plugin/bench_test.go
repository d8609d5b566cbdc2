package kubelink

import (
	"context"
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
