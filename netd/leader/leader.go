// Package leader runs Lease-based leader election for netd's roles: one
// active replica (the broker's gateway), standbys take over when its lease
// expires.
package leader

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Options configure the election.
type Options struct {
	Namespace, Name string
	// Identity is this replica's name (the pod name).
	Identity string
	// Duration is the lease duration; renew deadline and retry period are
	// derived from it (2/3 and 1/4).
	Duration time.Duration
}

// ErrLost is returned by Run when this replica lost the lease while ctx was
// still live: the process should restart as a standby.
var ErrLost = errors.New("lost the lease")

// Run takes part in the election until ctx ends, the lease is lost or lead
// returns, calling lead while this replica is the leader.
//
// Run returns only after lead has returned, so the active side's cleanup
// (devices, tables, routes) is done before the process exits: client-go
// starts OnStartedLeading in a goroutine of its own and returns from
// LeaderElector.Run without waiting for it. lead's context ends when ctx
// ends or the lease is lost. The lease is released (ReleaseOnCancel) only
// after lead has returned, so a standby does not take over while this
// replica still cleans up.
//
// Run returns nil when ctx ended, lead's error when lead failed, and an
// error wrapping ErrLost when the lease was lost.
func Run(ctx context.Context, core kubernetes.Interface, o Options, lead func(context.Context) error) error {
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, o.Namespace, o.Name,
		core.CoreV1(), core.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: o.Identity})
	if err != nil {
		return fmt.Errorf("creating lease lock %s/%s: %w", o.Namespace, o.Name, err)
	}
	// The election's own context: it outlives ctx while lead cleans up,
	// so the lease is renewed until then and released after.
	electCtx, stopElect := context.WithCancel(context.WithoutCancel(ctx))
	defer stopElect()

	var (
		mu      sync.Mutex
		ended   bool // LeaderElector.Run returned: no lead starts any more
		leading bool
		leadErr error
		wg      sync.WaitGroup
	)
	// A standby stops electing as soon as ctx ends; a leader only once
	// lead has returned (below).
	stopWatch := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !leading {
			stopElect()
		}
	})
	defer stopWatch()

	started := func(lostCtx context.Context) {
		mu.Lock()
		if ended || ctx.Err() != nil {
			// Run has returned or is shutting down before lead began:
			// nothing to lead, nothing to clean up.
			mu.Unlock()
			return
		}
		leading = true
		wg.Add(1)
		mu.Unlock()
		defer wg.Done()
		// lead ends with ctx (shutdown) or lostCtx (the lease was lost,
		// client-go cancels it).
		lctx, cancel := context.WithCancel(ctx)
		stop := context.AfterFunc(lostCtx, cancel)
		err := lead(lctx)
		stop()
		cancel()
		mu.Lock()
		leadErr = err
		mu.Unlock()
		// The cleanup is done: give up the lease.
		stopElect()
	}
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   o.Duration,
		RenewDeadline:   o.Duration * 2 / 3,
		RetryPeriod:     o.Duration / 4,
		ReleaseOnCancel: true,
		Name:            o.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: started,
			OnStoppedLeading: func() {},
		},
	})
	if err != nil {
		return fmt.Errorf("leader election %s/%s: %w", o.Namespace, o.Name, err)
	}
	le.Run(electCtx)
	mu.Lock()
	ended = true
	mu.Unlock()
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	switch {
	case leadErr != nil:
		return leadErr
	case ctx.Err() != nil:
		return nil
	case leading:
		// lead returned without an error while ctx is live: only a lost
		// lease ends it that way.
		return fmt.Errorf("%w %s/%s", ErrLost, o.Namespace, o.Name)
	}
	return fmt.Errorf("%w %s/%s: the election ended before this replica led", ErrLost, o.Namespace, o.Name)
}
