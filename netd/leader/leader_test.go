package leader

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
)

var opts = Options{Namespace: "default", Name: "l", Identity: "me", Duration: time.Second}

// runLeading starts Run and waits until lead has started; lead takes
// cleanup to return after its context ends.
func runLeading(t *testing.T, ctx context.Context, core *fake.Clientset, cleanup time.Duration) (cleaned *atomic.Bool, done <-chan error) {
	t.Helper()
	cleaned = &atomic.Bool{}
	started := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- Run(ctx, core, opts, func(lctx context.Context) error {
			close(started)
			<-lctx.Done()
			time.Sleep(cleanup)
			cleaned.Store(true)
			return nil
		})
	}()
	select {
	case <-started:
	case err := <-errc:
		t.Fatalf("Run returned before leading: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not leading within 10s")
	}
	return cleaned, errc
}

// waitRun waits at most within for Run's result.
func waitRun(t *testing.T, errc <-chan error, within time.Duration) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(within):
		t.Fatalf("Run did not return within %s", within)
		return nil
	}
}

// checkEnded waits for Run's result and checks that it is wantErr (nil:
// a clean return), that lead's cleanup was done before, and who holds the
// lease after it ("": released).
func checkEnded(t *testing.T, errc <-chan error, cleaned *atomic.Bool, core *fake.Clientset, wantErr error, wantHolder string) {
	t.Helper()
	if err := waitRun(t, errc, 10*time.Second); !errors.Is(err, wantErr) {
		t.Errorf("Run returned %v, want %v", err, wantErr)
	}
	if !cleaned.Load() {
		t.Error("Run returned before lead's cleanup was done")
	}
	if h := holder(t, core); h != wantHolder {
		t.Errorf("lease held by %q after Run returned, want %q", h, wantHolder)
	}
}

// TestRunWaitsForLead: Run returns only after lead's cleanup, and releases
// the lease only then.
func TestRunWaitsForLead(t *testing.T) {
	core := fake.NewClientset()
	ctx, cancel := context.WithCancel(context.Background())
	cleaned, errc := runLeading(t, ctx, core, 300*time.Millisecond)
	cancel()
	checkEnded(t, errc, cleaned, core, nil, "")
}

// TestRunLost: another identity taking the lease ends lead; Run returns
// ErrLost after the cleanup.
func TestRunLost(t *testing.T) {
	core := fake.NewClientset()
	var taken atomic.Bool
	// The fake tracker does not check resource versions: once taken,
	// refuse "me"'s renewals as an apiserver would (a conflict).
	core.PrependReactor("update", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		l := a.(k8stesting.UpdateAction).GetObject().(*coordinationv1.Lease)
		if taken.Load() && ptr.Deref(l.Spec.HolderIdentity, "") == "me" {
			return true, nil, apierrors.NewConflict(coordinationv1.Resource("leases"), l.Name, errors.New("taken"))
		}
		return false, nil, nil
	})
	cleaned, errc := runLeading(t, context.Background(), core, 300*time.Millisecond)
	leases := core.CoordinationV1().Leases("default")
	l, err := leases.Get(context.Background(), "l", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l.Spec = coordinationv1.LeaseSpec{HolderIdentity: ptr.To("other"), LeaseDurationSeconds: ptr.To[int32](3600),
		AcquireTime: &metav1.MicroTime{Time: time.Now()}, RenewTime: &metav1.MicroTime{Time: time.Now()}}
	if _, err := leases.Update(context.Background(), l, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	taken.Store(true)
	checkEnded(t, errc, cleaned, core, ErrLost, "other")
}

// TestRunLeadError: lead's error is Run's.
func TestRunLeadError(t *testing.T) {
	want := errors.New("boom")
	err := Run(context.Background(), fake.NewClientset(), opts, func(context.Context) error { return want })
	if !errors.Is(err, want) {
		t.Errorf("Run: %v, want %v", err, want)
	}
}

// TestRunStandbyStops: a standby (the lease held elsewhere) returns nil at
// once when ctx ends, without leading.
func TestRunStandbyStops(t *testing.T) {
	core := fake.NewClientset(&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "l"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("other"), LeaseDurationSeconds: ptr.To[int32](3600),
			AcquireTime: &metav1.MicroTime{Time: time.Now()}, RenewTime: &metav1.MicroTime{Time: time.Now()}}})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	var led atomic.Bool
	go func() {
		errc <- Run(ctx, core, opts, func(context.Context) error { led.Store(true); return nil })
	}()
	time.Sleep(500 * time.Millisecond)
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("standby Run: %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("standby Run did not return within 5s")
	}
	if led.Load() {
		t.Error("led while the lease was held by another identity")
	}
}

// apiDown makes every lease request fail as an unreachable API server
// would, while down is set.
func apiDown(core *fake.Clientset) *atomic.Bool {
	var down atomic.Bool
	core.PrependReactor("*", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if down.Load() {
			return true, nil, errors.New("dial tcp 10.0.0.1:443: connect: connection refused")
		}
		return false, nil, nil
	})
	return &down
}

// holder is the lease's holder as stored.
func holder(t *testing.T, core *fake.Clientset) string {
	t.Helper()
	l, err := core.CoordinationV1().Leases("default").Get(context.Background(), "l", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ptr.Deref(l.Spec.HolderIdentity, "")
}

// TestRunOutageKeepsLeading: a leader whose API server stops answering
// keeps leading well past the renew deadline (its data path stays up),
// renews when the API server is back, and still releases on shutdown.
func TestRunOutageKeepsLeading(t *testing.T) {
	core := fake.NewClientset()
	down := apiDown(core)
	ctx, cancel := context.WithCancel(context.Background())
	cleaned, errc := runLeading(t, ctx, core, 0)
	down.Store(true)
	// Three lease durations: client-go's elector gives up after 2/3 of one.
	select {
	case err := <-errc:
		t.Fatalf("Run returned during the outage: %v", err)
	case <-time.After(3 * opts.Duration):
	}
	if cleaned.Load() {
		t.Fatal("lead was stopped during the outage")
	}
	down.Store(false)
	before := renewTime(t, core)
	deadline := time.Now().Add(5 * time.Second)
	for !renewTime(t, core).After(before) {
		if time.Now().After(deadline) {
			t.Fatal("the lease was not renewed within 5s of the API server's return")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if h := holder(t, core); h != "me" || cleaned.Load() {
		t.Fatalf("after the outage: holder %q, lead stopped %v; want me, still leading", h, cleaned.Load())
	}
	cancel()
	checkEnded(t, errc, cleaned, core, nil, "")
}

// TestRunOutageTakenOver: while the leader could not reach the API server,
// another replica (which could) took the lease; the leader steps down as
// soon as it sees that, and leaves the lease alone.
func TestRunOutageTakenOver(t *testing.T) {
	core := fake.NewClientset()
	down := apiDown(core)
	cleaned, errc := runLeading(t, context.Background(), core, 0)
	down.Store(true)
	time.Sleep(opts.Duration)
	l, err := core.Tracker().Get(coordinationv1.SchemeGroupVersion.WithResource("leases"), "default", "l")
	if err != nil {
		t.Fatal(err)
	}
	taken := l.(*coordinationv1.Lease).DeepCopy()
	taken.Spec.HolderIdentity = ptr.To("other")
	taken.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
	if err := core.Tracker().Update(coordinationv1.SchemeGroupVersion.WithResource("leases"), taken, "default"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		t.Fatalf("Run returned before the API server answered: %v", err)
	case <-time.After(opts.Duration):
	}
	down.Store(false)
	// "other": the old leader does not release a lease it lost.
	checkEnded(t, errc, cleaned, core, ErrLost, "other")
}

// TestRunOutageHold: with OutageHold set, a leader that cannot renew steps
// down after the renew deadline plus the hold.
func TestRunOutageHold(t *testing.T) {
	core := fake.NewClientset()
	down := apiDown(core)
	o := opts
	o.OutageHold = 500 * time.Millisecond
	started := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- Run(context.Background(), core, o, func(lctx context.Context) error {
			close(started)
			<-lctx.Done()
			return nil
		})
	}()
	<-started
	down.Store(true)
	began := time.Now()
	err := waitRun(t, errc, 10*time.Second)
	took := time.Since(began)
	if !errors.Is(err, ErrLost) {
		t.Errorf("Run: %v, want ErrLost", err)
	}
	// Renew deadline 667ms + hold 500ms, checked every 250ms (the last
	// renewal was up to one check before the outage began).
	lo, hi := o.Duration*2/3+o.OutageHold-o.Duration/4, o.Duration*2/3+o.OutageHold+time.Second
	if took < lo || took > hi {
		t.Errorf("stepped down %s after the API server went, want between %s and %s", took, lo, hi)
	}
}

func renewTime(t *testing.T, core *fake.Clientset) time.Time {
	t.Helper()
	l, err := core.Tracker().Get(coordinationv1.SchemeGroupVersion.WithResource("leases"), "default", "l")
	if err != nil {
		t.Fatal(err)
	}
	if rt := l.(*coordinationv1.Lease).Spec.RenewTime; rt != nil {
		return rt.Time
	}
	return time.Time{}
}

// TestRunRenewsDuringCleanup: after ctx ends, the leader keeps renewing
// while lead cleans up (longer than the lease here), so no standby takes
// over beside a half-removed gateway; the lease is released after.
func TestRunRenewsDuringCleanup(t *testing.T) {
	core := fake.NewClientset()
	ctx, cancel := context.WithCancel(context.Background())
	cleaned, errc := runLeading(t, ctx, core, 3*opts.Duration)
	cancel()
	time.Sleep(opts.Duration / 2)
	first := renewTime(t, core)
	time.Sleep(2 * opts.Duration)
	if h := holder(t, core); h != "me" || !renewTime(t, core).After(first) || cleaned.Load() {
		t.Fatalf("during the cleanup: holder %q, renewed %v, cleaned %v; want me, renewed, still cleaning", h, renewTime(t, core).After(first), cleaned.Load())
	}
	if err := waitRun(t, errc, 10*time.Second); err != nil {
		t.Errorf("Run after ctx ended: %v, want nil", err)
	}
	if h := holder(t, core); h != "" || !cleaned.Load() {
		t.Errorf("after Run: holder %q, cleaned %v; want released after the cleanup", h, cleaned.Load())
	}
}
