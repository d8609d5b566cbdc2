// Package leader runs the broker's Lease-based leader election: one active
// gateway per cluster, standbys take over when its lease expires.
package leader

import (
	"context"
	"fmt"
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

// Run blocks until ctx ends or leadership is lost, calling lead while this
// replica is the leader. A lost lease cancels lead's context; Run then
// returns an error so the process restarts as a standby.
func Run(ctx context.Context, core kubernetes.Interface, o Options, lead func(context.Context)) error {
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, o.Namespace, o.Name,
		core.CoreV1(), core.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: o.Identity})
	if err != nil {
		return fmt.Errorf("creating lease lock %s/%s: %w", o.Namespace, o.Name, err)
	}
	lost := make(chan struct{})
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   o.Duration,
		RenewDeadline:   o.Duration * 2 / 3,
		RetryPeriod:     o.Duration / 4,
		ReleaseOnCancel: true,
		Name:            o.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: lead,
			OnStoppedLeading: func() { close(lost) },
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	le.Run(ctx)
	select {
	case <-lost:
		if ctx.Err() == nil {
			return fmt.Errorf("lost the lease %s/%s", o.Namespace, o.Name)
		}
	default:
	}
	return ctx.Err()
}
