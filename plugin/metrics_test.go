package kubelink

import (
	"testing"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/kubelink/kubelink/api/mesh"
)

// value reads a counter or gauge without the testutil package (and its
// extra dependencies).
func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

// series counts the series of a collector.
func series(c prometheus.Collector) int {
	ch := make(chan prometheus.Metric, 1024)
	c.Collect(ch)
	close(ch)
	return len(ch)
}

func TestMetrics(t *testing.T) {
	f := startFakeDNS(t)
	k, _ := newTestPlugin(t, f.port, exampleLinks(), mesh.Options{})
	count := func(cluster, result string) float64 {
		return value(t, requestCount.WithLabelValues("", cluster, result))
	}
	local, fwd, unavail, nx := count("kubelink2", "local"), count("kubelink2", "forwarded"), count("down", "unavailable"), count("", "nxdomain")
	hist := series(upstreamDuration)

	ask(t, k, query("kubelink2.kubelink.", dns.TypeA), false)
	ask(t, k, query("web.default.svc.kubelink2.kubelink.", dns.TypeA), false)
	ask(t, k, query("web.default.svc.down.kubelink.", dns.TypeA), false)
	ask(t, k, query("nosuch.kubelink.", dns.TypeA), false)

	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"local", count("kubelink2", "local"), local + 1},
		{"forwarded", count("kubelink2", "forwarded"), fwd + 1},
		{"unavailable", count("down", "unavailable"), unavail + 1},
		{"nxdomain", count("", "nxdomain"), nx + 1},
	} {
		if c.got != c.want {
			t.Errorf("requests_total result=%s: %v, want %v", c.name, c.got, c.want)
		}
	}
	if n := series(upstreamDuration); n < hist || n == 0 {
		t.Errorf("upstream histogram series: %d", n)
	}
	if got := value(t, linkCount.WithLabelValues("", "Down")); got != 1 {
		t.Errorf("links{state=Down} = %v, want 1", got)
	}
	if got := value(t, linkCount.WithLabelValues("", "Invalid")); got != 1 {
		t.Errorf("links{state=Invalid} = %v, want 1", got)
	}
}
