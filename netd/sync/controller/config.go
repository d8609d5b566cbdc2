package controller

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/kubelink/kubelink/netd/kube"
	"github.com/kubelink/kubelink/netd/runtime"
	"github.com/kubelink/kubelink/netd/sync/aggregate"
	"github.com/kubelink/kubelink/netd/sync/filter"
)

// Config is netd sync's configuration (its flags). The svclink flags keep
// svclink's names and defaults.
type Config struct {
	ClusterName     string
	Namespace       string
	SyncInterval    time.Duration
	Included        string
	CreateServices  bool
	APIGrace        time.Duration
	Probe           time.Duration
	ClusterLinkMode string
	KubeLinkMode    string
	Workers         int
	QPS             float64
	Burst           int

	LeaseName      string
	LeaseNamespace string
	LeaseDuration  time.Duration
	// LeaseOutageHold: see runtime.ElectionFlags (--lease-outage-hold).
	LeaseOutageHold time.Duration
	Identity        string

	Kubeconfig     string
	ServerPortHTTP int
	Verbose        bool
}

// Flags registers the flags.
func (c *Config) Flags(fs *flag.FlagSet) {
	runtime.MeshFlags{ClusterName: &c.ClusterName}.Register(fs)
	runtime.ProcessFlags{Kubeconfig: &c.Kubeconfig, HTTPPort: &c.ServerPortHTTP, Verbose: &c.Verbose}.Register(fs, 8182)
	runtime.ElectionFlags{LeaseName: &c.LeaseName, LeaseNamespace: &c.LeaseNamespace, LeaseDuration: &c.LeaseDuration, OutageHold: &c.LeaseOutageHold}.Register(fs, "sync")
	fs.StringVar(&c.Namespace, "namespace", "", "netd's namespace: MeshService mirrors are written here, and KubeLink spec.apiAccess secrets without a namespace are read here (default: the pod's namespace)")
	fs.DurationVar(&c.SyncInterval, "sync-interval", 30*time.Second, "period of the full resync besides watch events (svclink's flag)")
	fs.StringVar(&c.Included, "included-namespaces", "", "comma-separated namespaces: if set, only services of these namespaces are synced from all clusters, replacing the ClusterLinks' namespace lists (svclink's flag)")
	fs.BoolVar(&c.CreateServices, "sync-services-to-local-cluster", false, "create the namespace and a selector-less Service locally for a remote Service that has none here (svclink's flag)")
	fs.DurationVar(&c.APIGrace, "api-grace-period", 30*time.Second, "a remote API unreachable for longer turns that cluster's endpoints not ready")
	fs.DurationVar(&c.Probe, "api-probe-interval", 5*time.Second, "period of the remote API probe (/version)")
	fs.StringVar(&c.ClusterLinkMode, "clusterlink-address-mode", string(aggregate.ModePod), "addresses of ClusterLink clusters' endpoints: pod (remote pod IPs, as svclink) or service (the remote ClusterIP, through the mesh)")
	fs.StringVar(&c.KubeLinkMode, "kubelink-address-mode", string(aggregate.ModeService), "addresses of KubeLink (spec.apiAccess) clusters' endpoints: service or pod")
	fs.IntVar(&c.Workers, "workers", 8, "services reconciled in parallel")
	fs.Float64Var(&c.QPS, "kube-api-qps", 500, "local API requests per second (converging from empty writes one slice per remote cluster and Service)")
	fs.IntVar(&c.Burst, "kube-api-burst", 1000, "local API request burst")
}

// Validate checks the flags and fills defaults.
func (c *Config) Validate() error {
	for _, m := range []struct{ flag, v string }{{"--clusterlink-address-mode", c.ClusterLinkMode}, {"--kubelink-address-mode", c.KubeLinkMode}} {
		switch aggregate.AddressMode(m.v) {
		case aggregate.ModePod, aggregate.ModeService:
		default:
			return fmt.Errorf("%s %q: must be pod or service", m.flag, m.v)
		}
	}
	switch {
	case c.SyncInterval < time.Second:
		return fmt.Errorf("--sync-interval %s: must be at least 1s", c.SyncInterval)
	case c.APIGrace < time.Second:
		return fmt.Errorf("--api-grace-period %s: must be at least 1s", c.APIGrace)
	case c.Probe < 100*time.Millisecond || c.Probe > c.APIGrace:
		return fmt.Errorf("--api-probe-interval %s: must be between 100ms and --api-grace-period", c.Probe)
	case c.Workers < 1:
		return fmt.Errorf("--workers %d: must be at least 1", c.Workers)
	case c.QPS <= 0 || c.Burst < 1:
		return fmt.Errorf("--kube-api-qps and --kube-api-burst must be positive")
	case c.LeaseOutageHold < 0:
		return fmt.Errorf("--lease-outage-hold %s: must not be negative", c.LeaseOutageHold)
	}
	if c.Namespace == "" {
		c.Namespace = kube.Namespace()
	}
	if c.Identity == "" {
		c.Identity = os.Getenv("POD_NAME")
	}
	if c.Identity == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("no POD_NAME and no host name for the lease identity: %w", err)
		}
		c.Identity = h
	}
	if c.LeaseNamespace == "" {
		c.LeaseNamespace = c.Namespace
	}
	return runtime.ProcessFlags{Kubeconfig: &c.Kubeconfig, HTTPPort: &c.ServerPortHTTP, Verbose: &c.Verbose}.Validate()
}

// IncludedNamespaces is --included-namespaces as a list.
func (c *Config) IncludedNamespaces() []string { return filter.ParseList(c.Included) }

// Ignored: netd sync accepts no flags it does not use.
func (c *Config) Ignored(map[string]bool) []string { return nil }
