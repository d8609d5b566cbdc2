package runtime

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"

	"github.com/kubelink/kubelink/netd/leader"
)

// ElectionFlags are the flags of a role with standby replicas: the Lease
// they elect the active one with. The fields point into the role's
// configuration.
type ElectionFlags struct {
	LeaseName      *string
	LeaseNamespace *string
	LeaseDuration  *time.Duration
	OutageHold     *time.Duration
}

// Register registers --lease-name, --lease-namespace and --lease-duration;
// role names the replicas in the help ("broker").
func (e ElectionFlags) Register(fs *flag.FlagSet, role string) {
	fs.StringVar(e.LeaseName, "lease-name", "", "Lease for leader election among "+role+" replicas (empty = no election)")
	fs.StringVar(e.LeaseNamespace, "lease-namespace", "", "namespace of the Lease (default: the pod's namespace)")
	fs.DurationVar(e.LeaseDuration, "lease-duration", 15*time.Second, "lease duration; a standby takes over at most this long after the leader died")
	fs.DurationVar(e.OutageHold, "lease-outage-hold", 0, "how long past the renew deadline the active replica keeps leading while the API server does not answer; 0: until it answers again (it steps down at once when it sees another holder)")
}

// Election is how a role's active side runs.
type Election struct {
	// Lease is the election's lease; an empty Name: no election, the
	// process is always active.
	Lease leader.Options
	Core  kubernetes.Interface
	Log   *slog.Logger
}

// Lead runs active — the role's active side, which removes what it created
// before it returns — at once without a lease, else whenever this replica
// holds the lease. A standby is not ready (/readyz), so a Service in front
// of the replicas reaches the active one only; active makes the process
// ready (typically after its first good reconcile), Lead makes it unready
// again when active returns. Lead returns after active has returned: nil
// when ctx ended, active's error, or an error wrapping leader.ErrLost.
func (e Election) Lead(ctx context.Context, proc *Process, active func(context.Context) error) error {
	proc.SetReady(false)
	run := func(ctx context.Context) error {
		defer proc.SetReady(false)
		return active(ctx)
	}
	if e.Lease.Name == "" {
		return run(ctx)
	}
	if e.Lease.Log == nil {
		e.Lease.Log = e.Log
	}
	failing := prometheus.NewGauge(prometheus.GaugeOpts{Name: "netd_lease_renewal_failing",
		Help: "1 while the active replica leads without a renewal of its Lease past the renew deadline (the API server does not answer)."})
	if err := proc.Registry.Register(failing); err != nil {
		return fmt.Errorf("registering netd_lease_renewal_failing: %w", err)
	}
	e.Lease.Outage = func(on bool) {
		if on {
			failing.Set(1)
		} else {
			failing.Set(0)
		}
	}
	e.Log.Info("waiting for the lease", "lease", e.Lease.Namespace+"/"+e.Lease.Name, "identity", e.Lease.Identity)
	if err := leader.Run(ctx, e.Core, e.Lease, run); err != nil {
		return fmt.Errorf("%s: %w", e.Lease.Identity, err)
	}
	return nil
}
