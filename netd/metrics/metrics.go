// Package metrics is the broker's Prometheus collectors: leadership,
// configuration writes and the links' state and traffic. The registry, the
// reconcile loop's metrics and the HTTP endpoints are netd/runtime's.
package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// LinkSample is one link's state and traffic.
type LinkSample struct {
	Link          string
	State         string
	LastHandshake time.Time
	RxBytes       uint64
	TxBytes       uint64
}

// Metrics holds the broker's collectors; they register into the
// process's registry (netd/runtime).
type Metrics struct {
	Leader prometheus.Gauge
	// TunnelWrites and TableWrites count configuration writes to the
	// tunnel device and the nftables table (flat when nothing changes).
	TunnelWrites prometheus.Gauge
	TableWrites  prometheus.Gauge

	mu    sync.Mutex
	links []LinkSample

	linksDesc, hsDesc, rxDesc, txDesc *prometheus.Desc
}

// New registers the broker's collectors in reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "netd_leader", Help: "1 when this broker is the active gateway.",
		}),
		TunnelWrites: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "netd_tunnel_config_writes", Help: "Configuration writes to the tunnel device since start.",
		}),
		TableWrites: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "netd_nftables_writes", Help: "nftables transactions since start.",
		}),
		linksDesc: prometheus.NewDesc("netd_links", "Links by state.", []string{"state"}, nil),
		hsDesc:    prometheus.NewDesc("netd_link_handshake_age_seconds", "Seconds since the last handshake per link.", []string{"link"}, nil),
		rxDesc:    prometheus.NewDesc("netd_link_receive_bytes_total", "Bytes received per link.", []string{"link"}, nil),
		txDesc:    prometheus.NewDesc("netd_link_transmit_bytes_total", "Bytes sent per link.", []string{"link"}, nil),
	}
	reg.MustRegister(m.Leader, m.TunnelWrites, m.TableWrites, m)
	return m
}

// SetLinks replaces the link samples.
func (m *Metrics) SetLinks(s []LinkSample) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.links = s
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.linksDesc
	ch <- m.hsDesc
	ch <- m.rxDesc
	ch <- m.txDesc
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	states := map[string]int{}
	now := time.Now()
	for _, l := range m.links {
		states[l.State]++
		if !l.LastHandshake.IsZero() {
			ch <- prometheus.MustNewConstMetric(m.hsDesc, prometheus.GaugeValue, now.Sub(l.LastHandshake).Seconds(), l.Link)
		}
		ch <- prometheus.MustNewConstMetric(m.rxDesc, prometheus.CounterValue, float64(l.RxBytes), l.Link)
		ch <- prometheus.MustNewConstMetric(m.txDesc, prometheus.CounterValue, float64(l.TxBytes), l.Link)
	}
	for s, n := range states {
		ch <- prometheus.MustNewConstMetric(m.linksDesc, prometheus.GaugeValue, float64(n), s)
	}
}
