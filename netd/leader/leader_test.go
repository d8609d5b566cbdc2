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

// TestRunWaitsForLead: Run returns only after lead's cleanup, and releases
// the lease only then.
func TestRunWaitsForLead(t *testing.T) {
	core := fake.NewClientset()
	ctx, cancel := context.WithCancel(context.Background())
	cleaned, errc := runLeading(t, ctx, core, 300*time.Millisecond)
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Run after ctx ended: %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s")
	}
	if !cleaned.Load() {
		t.Fatal("Run returned before lead's cleanup was done")
	}
	l, err := core.CoordinationV1().Leases("default").Get(context.Background(), "l", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := ptr.Deref(l.Spec.HolderIdentity, ""); h != "" {
		t.Errorf("lease still held by %q after Run returned", h)
	}
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
	select {
	case err := <-errc:
		if !errors.Is(err, ErrLost) {
			t.Errorf("Run after the lease was taken: %v, want ErrLost", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of losing the lease")
	}
	if !cleaned.Load() {
		t.Fatal("Run returned before lead's cleanup was done")
	}
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
