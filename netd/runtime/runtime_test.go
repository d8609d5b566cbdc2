package runtime

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// TestLoopCoalesces: kicks while a reconcile runs make one more reconcile,
// errors are counted, OK follows only successful rounds, ctx ends the loop.
func TestLoopCoalesces(t *testing.T) {
	p := NewProcess()
	m := NewLoopMetrics(p.Registry, "test", 0.001)
	trig := NewTrigger()
	var n, oks atomic.Int32
	release := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	l := &Loop{Trigger: trig, Period: time.Hour, Metrics: m, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Reconcile: func(context.Context) error {
			if n.Add(1) == 1 {
				<-release
				return errors.New("first fails")
			}
			return nil
		},
		OK: func() { oks.Add(1) }}
	go func() { l.Run(ctx); close(done) }()
	for i := 0; i < 10; i++ {
		trig.Kick()
	}
	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for n.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	cancel()
	<-done
	if got := n.Load(); got != 2 {
		t.Errorf("%d reconciles, want 2 (the kicks coalesce)", got)
	}
	if oks.Load() != 1 {
		t.Errorf("OK called %d times, want 1", oks.Load())
	}
	var c dto.Metric
	if err := m.Reconciles.WithLabelValues("error").Write(&c); err != nil || c.GetCounter().GetValue() != 1 {
		t.Errorf("error reconciles %v (%v), want 1", c.GetCounter().GetValue(), err)
	}
}

func TestReadyz(t *testing.T) {
	p := NewProcess()
	srv := httptest.NewServer(p.Handler())
	defer srv.Close()
	get := func(path string) int {
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		_ = res.Body.Close()
		return res.StatusCode
	}
	if get("/readyz") != 503 || get("/healthz") != 200 || get("/metrics") != 200 {
		t.Error("a new process: want /readyz 503, /healthz and /metrics 200")
	}
	p.SetReady(true)
	if get("/readyz") != 200 {
		t.Error("ready: want /readyz 200")
	}
}

// TestServeWaits: the wait returned by Serve returns once ctx ended.
func TestServeWaits(t *testing.T) {
	p := NewProcess()
	ctx, cancel := context.WithCancel(context.Background())
	wait, err := p.Serve(ctx, 0, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	wait() // port 0: nothing to wait for
	cancel()
}

func TestMeshFlags(t *testing.T) {
	var name, addr, domain, cidr, gdns, cdom, ldns string
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	full := MeshFlags{ClusterName: &name, LinkAddress: &addr, Domain: &domain, ServiceCIDR: &cidr, GlobalDNS: &gdns, ClusterDomain: &cdom, LocalDNS: &ldns}
	full.Register(fs)
	if err := fs.Parse([]string{"--link-address", "192.168.0.11/24", "--service-cidr", "100.64.1.0/24"}); err != nil {
		t.Fatal(err)
	}
	o, err := full.Options()
	if err != nil {
		t.Fatal(err)
	}
	if o.LocalDNS.String() != "100.64.1.10" || o.Domain != "kubelink" || o.ClusterDomain != "cluster.local" {
		t.Errorf("defaults: %+v", o)
	}
	// Without the DNS part (the router) its options stay zero.
	routerFlags := MeshFlags{ClusterName: &name, LinkAddress: &addr, Domain: &domain, ServiceCIDR: &cidr}
	if o, _ := routerFlags.Options(); o.LocalDNS.IsValid() || o.ClusterDomain != "" {
		t.Errorf("router options with DNS: %+v", o)
	}
	addr = "bogus"
	if _, err := full.Options(); err == nil {
		t.Error("bad --link-address accepted")
	}
}

// TestLeadWithoutLease: without a lease the active side runs at once; the
// process is unready again when it returns.
func TestLeadWithoutLease(t *testing.T) {
	p := NewProcess()
	p.SetReady(true)
	ran := false
	err := Election{Log: slog.Default()}.Lead(context.Background(), p, func(context.Context) error {
		if p.Ready() {
			t.Error("ready before the active side said so")
		}
		p.SetReady(true)
		ran = true
		return nil
	})
	if err != nil || !ran {
		t.Fatalf("Lead: %v, ran %v", err, ran)
	}
	if p.Ready() {
		t.Error("still ready after the active side returned")
	}
}
