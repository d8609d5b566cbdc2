// Package runtime is the shape every long-running netd role shares: the
// flags common to the roles (the default mesh, kubeconfig, the HTTP port),
// the start of a role (its API clients, one Prometheus registry per
// process served with /healthz and /readyz) and of its informers, each
// with a stop that waits for what it started, and the reconcile loop — on a change or a tick, coalesced — that drives
// a role's watch → snapshot → plan → apply step. Leader election that
// waits for the active side's cleanup is package netd/leader.
package runtime

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

// Process is one netd process's registry and readiness.
type Process struct {
	// Registry is the process's only registry: every collector of the
	// role registers here, /metrics serves it.
	Registry *prometheus.Registry
	ready    atomic.Bool
}

// NewProcess returns a process with the Go and process collectors
// registered, not ready.
func NewProcess() *Process {
	p := &Process{Registry: prometheus.NewRegistry()}
	p.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return p
}

// SetReady sets what /readyz reports.
func (p *Process) SetReady(v bool) { p.ready.Store(v) }

// Ready is what /readyz reports.
func (p *Process) Ready() bool { return p.ready.Load() }

// Handler serves /metrics, /healthz (the process serves) and /readyz.
func (p *Process) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(p.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !p.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// Serve serves Handler on port (0: not at all) until ctx ends. The
// listener is open when Serve returns, so a port in use fails the start;
// the returned wait blocks until the server has shut down (after ctx
// ended) and must be called.
func (p *Process) Serve(ctx context.Context, port int, log *slog.Logger) (wait func(), err error) {
	if port == 0 {
		return func() {}, nil
	}
	addr := fmt.Sprintf(":%d", port)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: p.Handler(), ReadHeaderTimeout: 5 * time.Second}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "addr", addr, "err", err)
		}
	}()
	return wg.Wait, nil
}

// Trigger coalesces change notifications: any number of Kicks between two
// reconciles make one.
type Trigger struct{ ch chan struct{} }

// NewTrigger returns a trigger with nothing pending.
func NewTrigger() *Trigger { return &Trigger{ch: make(chan struct{}, 1)} }

// Kick asks for a reconcile; it never blocks.
func (t *Trigger) Kick() {
	select {
	case t.ch <- struct{}{}:
	default:
	}
}

// C delivers one value per pending reconcile.
func (t *Trigger) C() <-chan struct{} { return t.ch }

// LoopMetrics count a loop's reconciles by result and time them.
type LoopMetrics struct {
	Reconciles *prometheus.CounterVec
	Duration   prometheus.Histogram
}

// NewLoopMetrics registers <prefix>_reconciles_total{result} and
// <prefix>_reconcile_duration_seconds (exponential buckets from start).
func NewLoopMetrics(reg prometheus.Registerer, prefix string, start float64) *LoopMetrics {
	m := &LoopMetrics{
		Reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prefix + "_reconciles_total", Help: "Reconciles by result.",
		}, []string{"result"}),
		Duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: prefix + "_reconcile_duration_seconds", Help: "Duration of reconciles.",
			Buckets: prometheus.ExponentialBuckets(start, 2, 14),
		}),
	}
	reg.MustRegister(m.Reconciles, m.Duration)
	return m
}

// Loop is a role's reconcile loop.
type Loop struct {
	// Trigger wakes the loop on a change (watch events).
	Trigger *Trigger
	// Period is the full reconcile besides changes.
	Period  time.Duration
	Metrics *LoopMetrics
	Log     *slog.Logger
	// Reconcile brings the world to the level the inputs describe.
	Reconcile func(context.Context) error
	// OK, if set, is called after every reconcile without error (e.g.
	// to become ready).
	OK func()
}

// Run reconciles at once, then on every trigger and every Period, until
// ctx ends; a reconcile in progress is not interrupted by the loop (its
// context is ctx). Errors are logged and counted, the next round retries.
func (l *Loop) Run(ctx context.Context) {
	tick := time.NewTicker(l.Period)
	defer tick.Stop()
	for {
		start := time.Now()
		err := l.Reconcile(ctx)
		l.Metrics.Duration.Observe(time.Since(start).Seconds())
		if err != nil {
			l.Metrics.Reconciles.WithLabelValues("error").Inc()
			l.Log.Error("reconcile", "err", err)
		} else {
			l.Metrics.Reconciles.WithLabelValues("ok").Inc()
			if l.OK != nil {
				l.OK()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-l.Trigger.C():
		case <-tick.C:
		}
	}
}
