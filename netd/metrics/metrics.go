// Package metrics exports netd's Prometheus metrics and serves them with
// the health endpoints.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// LinkSample is one link's state and traffic.
type LinkSample struct {
	Link          string
	State         string
	LastHandshake time.Time
	RxBytes       uint64
	TxBytes       uint64
}

// Metrics holds netd's collectors.
type Metrics struct {
	Registry   *prometheus.Registry
	Reconciles *prometheus.CounterVec
	Duration   prometheus.Histogram
	Leader     prometheus.Gauge
	// TunnelWrites and TableWrites count configuration writes to the
	// tunnel device and the nftables table (flat when nothing changes).
	TunnelWrites prometheus.Gauge
	TableWrites  prometheus.Gauge

	mu    sync.Mutex
	links []LinkSample
	ready atomic.Bool

	linksDesc, hsDesc, rxDesc, txDesc *prometheus.Desc
}

// New registers the collectors.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "netd_reconciles_total", Help: "Reconciles by result.",
		}, []string{"result"}),
		Duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "netd_reconcile_duration_seconds", Help: "Duration of reconciles.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
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
	m.Registry.MustRegister(m.Reconciles, m.Duration, m.Leader, m.TunnelWrites, m.TableWrites, m,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// SetLinks replaces the link samples.
func (m *Metrics) SetLinks(s []LinkSample) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.links = s
}

// SetReady marks the process ready (/readyz).
func (m *Metrics) SetReady(v bool) { m.ready.Store(v) }

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

// Serve serves /metrics, /healthz and /readyz on addr until ctx ends.
func (m *Metrics) Serve(ctx context.Context, addr string) error {
	return Serve(ctx, addr, m.Registry, &m.ready, nil)
}

// Serve serves a registry's /metrics, /healthz (the process serves) and
// /readyz (ready is set) on addr until ctx ends; both roles of netd use it.
// Serving errors after the start go to log (nil: standard output).
func Serve(ctx context.Context, addr string, reg prometheus.Gatherer, ready *atomic.Bool, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			if log == nil {
				log = slog.Default()
			}
			log.Error("metrics server", "err", err)
		}
	}()
	return nil
}
