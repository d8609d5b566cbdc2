// Package leader runs Lease-based leader election for netd's roles: one
// active replica (the broker's gateway), standbys take over when its lease
// expires.
//
// It differs from client-go's leaderelection in one way that matters for
// a data path: a leader that cannot renew because the API server does not
// answer keeps leading (its tunnels, routes and NAT stay up) until it
// either renews again or sees another holder. client-go's elector gives
// up at the renew deadline, so a control-plane outage of ten seconds took
// the mesh down with it, even with a single replica that nobody could
// replace. Options.OutageHold bounds the wait where a standby that still
// reaches the API server should win sooner.
package leader

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
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
	// OutageHold bounds how long past the renew deadline a leader that
	// cannot reach the API server keeps leading; 0: until the API server
	// answers again. Seeing another holder ends leading at once either way.
	OutageHold time.Duration
	// Log receives the outage's start and end (nil: discarded).
	Log *slog.Logger
	// Outage, when set, is told when the leader starts (true) and stops
	// (false) leading without a renewal past the renew deadline.
	Outage func(bool)
}

// ErrLost is returned by Run when this replica lost the lease while ctx was
// still live: the process should restart as a standby.
var ErrLost = errors.New("lost the lease")

// Run takes part in the election until ctx ends, the lease is lost or lead
// returns, calling lead while this replica is the leader.
//
// Run returns only after lead has returned, so the active side's cleanup
// (devices, tables, routes) is done before the process exits. lead's
// context ends when ctx ends or the lease is lost: another identity holds
// it, or the API server has been unreachable longer than the renew
// deadline plus OutageHold (when set). The lease is released only after
// lead has returned, so a standby does not take over while this replica
// still cleans up.
//
// Run returns nil when ctx ended (or lead returned nil by itself), lead's
// error when lead failed, and an error wrapping ErrLost when the lease was
// lost.
func Run(ctx context.Context, core kubernetes.Interface, o Options, lead func(context.Context) error) error {
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, o.Namespace, o.Name,
		core.CoreV1(), core.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: o.Identity})
	if err != nil {
		return fmt.Errorf("creating lease lock %s/%s: %w", o.Namespace, o.Name, err)
	}
	e := &elector{o: o, lock: lock, log: o.Log, outage: o.Outage}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.outage == nil {
		e.outage = func(bool) {}
	}
	e.renewDeadline, e.retry = o.Duration*2/3, o.Duration/4
	if !e.acquire(ctx) {
		return nil
	}
	return e.lead(ctx, lead)
}

// elector is one replica's view of the lease.
type elector struct {
	o                    Options
	lock                 resourcelock.Interface
	log                  *slog.Logger
	outage               func(bool)
	renewDeadline, retry time.Duration

	// observedRaw is the lease record last seen and observedAt when it
	// was first seen (local clock): another holder's lease has expired
	// when its record has not changed for its duration. Comparing against
	// our own clock, not the record's times, keeps clock skew between
	// nodes out of it (as client-go does).
	observedRaw []byte
	observedAt  time.Time
}

// outcome of one attempt to acquire or renew.
type outcome int

const (
	// held: this replica holds the lease (acquired or renewed now).
	held outcome = iota
	// heldByOther: another identity holds a lease that has not expired.
	heldByOther
	// failed: no answer, an error, or a write that lost a race; the next
	// attempt decides.
	failed
)

// try acquires or renews the lease once.
func (e *elector) try(ctx context.Context) (outcome, error) {
	ctx, cancel := context.WithTimeout(ctx, max(e.retry, e.renewDeadline/2))
	defer cancel()
	now := time.Now()
	rec := resourcelock.LeaderElectionRecord{
		HolderIdentity:       e.o.Identity,
		LeaseDurationSeconds: max(1, int(e.o.Duration/time.Second)),
		AcquireTime:          metav1.NewTime(now),
		RenewTime:            metav1.NewTime(now),
	}
	old, raw, err := e.lock.Get(ctx)
	if apierrors.IsNotFound(err) {
		if err := e.lock.Create(ctx, rec); err != nil {
			return failed, fmt.Errorf("creating the lease: %w", err)
		}
		return held, nil
	}
	if err != nil {
		return failed, fmt.Errorf("reading the lease: %w", err)
	}
	if !bytes.Equal(raw, e.observedRaw) {
		e.observedRaw, e.observedAt = raw, now
	}
	expired := !e.observedAt.Add(time.Duration(old.LeaseDurationSeconds) * time.Second).After(now)
	if old.HolderIdentity != "" && old.HolderIdentity != e.o.Identity && !expired {
		return heldByOther, nil
	}
	rec.LeaderTransitions = old.LeaderTransitions
	if old.HolderIdentity == e.o.Identity {
		rec.AcquireTime = old.AcquireTime
	} else {
		rec.LeaderTransitions++
	}
	if err := e.lock.Update(ctx, rec); err != nil {
		return failed, fmt.Errorf("renewing the lease: %w", err)
	}
	return held, nil
}

// acquire waits until this replica holds the lease; false when ctx ended
// first.
func (e *elector) acquire(ctx context.Context) bool {
	for {
		if o, _ := e.try(ctx); o == held {
			return true
		}
		if !sleep(ctx, jitter(e.retry)) {
			return false
		}
	}
}

// lead runs lead while renewing the lease, then releases it.
func (e *elector) lead(ctx context.Context, lead func(context.Context) error) error {
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	// Renewing outlives ctx while lead cleans up, so that a standby never
	// takes over beside a half-removed gateway; it ends when lead returns.
	rctx, stopRenew := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRenew()
	var leadErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer stopRenew()
		leadErr = lead(lctx)
	}()

	lost := e.renew(rctx)
	stop()
	<-done
	if lost == nil {
		e.release(ctx)
	}
	switch {
	case leadErr != nil:
		return leadErr
	case lost != nil:
		return lost
	}
	return nil
}

// renew keeps the lease until ctx ends (nil) or it is lost (an error
// wrapping ErrLost).
func (e *elector) renew(ctx context.Context) error {
	lastRenew := time.Now()
	outage := false
	defer func() {
		if outage {
			e.outage(false)
		}
	}()
	t := time.NewTicker(e.retry)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		o, err := e.try(ctx)
		now := time.Now()
		switch {
		case o == held:
			if outage {
				e.log.Info("the API server answers again: lease renewed, still the active replica",
					"lease", e.o.Namespace+"/"+e.o.Name, "after", now.Sub(lastRenew).Round(time.Millisecond))
				e.outage(false)
			}
			lastRenew, outage = now, false
		case o == heldByOther:
			return fmt.Errorf("%w %s/%s: another replica holds it", ErrLost, e.o.Namespace, e.o.Name)
		case ctx.Err() != nil:
			return nil
		case e.o.OutageHold > 0 && now.Sub(lastRenew) > e.renewDeadline+e.o.OutageHold:
			return fmt.Errorf("%w %s/%s: not renewed for %s (renew deadline %s plus outage hold %s): %v",
				ErrLost, e.o.Namespace, e.o.Name, now.Sub(lastRenew).Round(time.Millisecond), e.renewDeadline, e.o.OutageHold, err)
		case now.Sub(lastRenew) > e.renewDeadline && !outage:
			outage = true
			e.outage(true)
			e.log.Warn("cannot renew the lease past the renew deadline: staying the active replica until the API server answers or another replica is seen holding it",
				"lease", e.o.Namespace+"/"+e.o.Name, "err", err)
		}
	}
}

// release gives the lease up after lead returned, if this replica still
// holds it: a standby takes over at once instead of after the duration.
func (e *elector) release(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), max(e.retry, e.renewDeadline/2))
	defer cancel()
	old, _, err := e.lock.Get(ctx)
	if err != nil || old.HolderIdentity != e.o.Identity {
		return
	}
	now := metav1.NewTime(time.Now())
	_ = e.lock.Update(ctx, resourcelock.LeaderElectionRecord{
		LeaderTransitions:    old.LeaderTransitions,
		LeaseDurationSeconds: 1,
		AcquireTime:          now,
		RenewTime:            now,
	})
}

// jitter spreads the standbys' attempts (up to 20% more), as client-go's
// elector does.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration(rand.Int64N(int64(d)/5+1))
}

// sleep waits d; false when ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
