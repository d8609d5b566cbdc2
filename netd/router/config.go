// Package router is `netd router`, the DaemonSet role of netd: on every
// node it routes the mesh CIDRs and every usable foreign link's service and
// egress CIDRs to the cluster's active gateway (the holder of the broker's
// Lease), level-based, with its own rtnetlink protocol number so it never
// touches anybody else's routes.
package router

import (
	"flag"
	"fmt"
	"net/netip"
	"time"

	"github.com/kubelink/kubelink/api/mesh"
	"github.com/kubelink/kubelink/netd/kube"
	"github.com/kubelink/kubelink/netd/runtime"
	"github.com/kubelink/kubelink/netd/vxlan"
)

// IPIP modes.
const (
	// IPIPNone routes via the gateway directly (it must be on the node's
	// L2 network).
	IPIPNone = "none"
	// IPIPShared routes through the kernel's shared tunl0 device, which the
	// router never deletes.
	IPIPShared = "shared"
	// IPIPConfigure routes through an ipip device the router owns.
	IPIPConfigure = "configure"
)

// Device names used in the IPIP modes.
const (
	SharedDevice = "tunl0"
	OwnedDevice  = "kubelink-ipip"
)

// Config is the router's configuration (its flags).
type Config struct {
	ClusterName    string
	LinkAddress    string
	MeshDomain     string
	ServiceCIDR    string
	NodeIP         string
	IPIP           string
	VXLAN          bool
	VXLANPort      int
	VXLANVNI       int
	RouteTable     int
	RulePriority   int
	LeaseName      string
	LeaseNamespace string
	Datafile       string
	ServerPortHTTP int
	Kubeconfig     string
	Resync         time.Duration
	Verbose        bool

	// Process are the original kubelink's process flags (--log-level,
	// --cpuprofile, --version, --controllers); Seed the rest of its
	// command line (set by Flags).
	Process runtime.SeedProcessFlags
	Seed    *runtime.Seed
}

// Flags registers the router's flags (names shared with the broker where
// they mean the same) and accepts the rest of the original kubelink's
// command line (runtime.RegisterSeed).
func (c *Config) Flags(fs *flag.FlagSet) {
	c.Process.Register(fs)
	c.meshFlags().Register(fs)
	c.processFlags().Register(fs, 8181)
	fs.StringVar(&c.NodeIP, "node-ip", "", "IP of this node (local end of the ipip or vxlan device; the holder pod's status.hostIP on the gateway's node)")
	fs.StringVar(&c.IPIP, "ipip", IPIPNone, "none (route via the gateway), shared (through tunl0) or configure (through an own ipip device "+OwnedDevice+")")
	fs.BoolVar(&c.VXLAN, "vxlan", false, "encapsulate the mesh traffic towards the gateway's node in VXLAN (device "+vxlan.NodeDevice+"; on the node of a pod-mode gateway the router decapsulates instead, device "+vxlan.DecapDevice+"; needs --node-ip and --ipip none; a node-mode broker needs --vxlan too)")
	fs.IntVar(&c.VXLANPort, "vxlan-port", vxlan.DefaultPort, "UDP port of the VXLAN to the gateway (the broker's --vxlan-port)")
	fs.IntVar(&c.VXLANVNI, "vxlan-vni", vxlan.DefaultVNI, "VXLAN network identifier (the broker's --vxlan-vni)")
	fs.IntVar(&c.RouteTable, "route-table", 0, "routing table for the mesh routes (0 = main)")
	fs.IntVar(&c.RulePriority, "rule-priority", 32000, "priority of the rule looking up --route-table")
	fs.StringVar(&c.LeaseName, "lease-name", "", "the broker's Lease; its holder is the active gateway")
	fs.StringVar(&c.LeaseNamespace, "lease-namespace", "", "namespace of the Lease and the broker pods (default: $POD_NAMESPACE or the in-cluster namespace)")
	fs.StringVar(&c.Datafile, "datafile", "", "JSON file remembering the routes, rule and device the router created (empty: not remembered across restarts)")
	fs.DurationVar(&c.Resync, "resync", 10*time.Second, "period of the full reconcile besides watch events")
	// The original router controller's resync period is --resync.
	c.Seed = runtime.RegisterSeed(fs, runtime.RoleRouter, map[string]string{"pool.resync-period": "resync"})
}

// Validate checks the flags and fills defaults. An error names the flag
// (as given, when that was an alias).
func (c *Config) Validate() error { return c.Seed.Explain(c.validate()) }

func (c *Config) validate() error {
	if err := c.Process.Validate(runtime.RoleRouter); err != nil {
		return err
	}
	switch c.IPIP {
	case IPIPNone, IPIPShared:
	case IPIPConfigure:
		if c.NodeIP == "" {
			return fmt.Errorf("--ipip configure needs --node-ip (the local end of the tunnel)")
		}
	default:
		return fmt.Errorf("--ipip %q: must be none, shared or configure", c.IPIP)
	}
	if c.VXLAN {
		if c.IPIP != IPIPNone {
			return fmt.Errorf("--vxlan and --ipip %s are mutually exclusive: pick one encapsulation (--ipip none with --vxlan)", c.IPIP)
		}
		if c.NodeIP == "" {
			return fmt.Errorf("--vxlan needs --node-ip (the outer source address; the node's inner address and MAC derive from it)")
		}
		if err := vxlan.ValidatePort("--vxlan-port", c.VXLANPort); err != nil {
			return err
		}
		if err := vxlan.ValidateVNI("--vxlan-vni", c.VXLANVNI); err != nil {
			return err
		}
	}
	if c.NodeIP != "" {
		a, err := netip.ParseAddr(c.NodeIP)
		if err != nil || !a.Is4() {
			return fmt.Errorf("--node-ip %q is not an IPv4 address", c.NodeIP)
		}
	}
	if err := runtime.CheckRouteTable(c.RouteTable, c.RulePriority); err != nil {
		return err
	}
	if c.LeaseName == "" {
		return fmt.Errorf("--lease-name is required: its holder is the gateway to route to")
	}
	for _, f := range []struct {
		name, value string
		check       func(string) error
	}{
		{"--cluster-name", c.ClusterName, runtime.CheckDNSLabel},
		{"--mesh-domain", c.MeshDomain, runtime.CheckDNSName},
		{"--lease-name", c.LeaseName, runtime.CheckName},
		{"--lease-namespace", c.LeaseNamespace, runtime.CheckDNSLabel},
	} {
		if f.value == "" {
			continue
		}
		if err := f.check(f.value); err != nil {
			return fmt.Errorf("%s %q: %w", f.name, f.value, err)
		}
	}
	if c.LeaseNamespace == "" {
		c.LeaseNamespace = kube.Namespace()
	}
	if c.Resync < time.Second {
		return fmt.Errorf("--resync must be at least 1s")
	}
	if err := c.processFlags().Validate(); err != nil {
		return err
	}
	_, err := c.MeshOptions()
	return err
}

// Ignored warns about every flag set (names as given) that the router
// accepts for the original kubelink's manifests but does not use, naming
// what replaces it.
func (c *Config) Ignored(set map[string]bool) []string {
	var w []string
	if c.Seed != nil {
		w = c.Seed.Warnings(set)
	}
	return append(w, c.Process.Warnings(runtime.RoleRouter)...)
}

// Encapsulation names the way to the gateway for logs: none, ipip-shared,
// ipip-configure or vxlan.
func (c *Config) Encapsulation() string {
	switch {
	case c.VXLAN:
		return "vxlan"
	case c.IPIP == IPIPNone:
		return "none"
	}
	return "ipip-" + c.IPIP
}

// Table is the routing table number (main for 0).
func (c *Config) Table() int {
	if c.RouteTable == 0 {
		return tableMain
	}
	return c.RouteTable
}

// MeshOptions is the default mesh as the flags describe it.
func (c *Config) MeshOptions() (mesh.Options, error) { return c.meshFlags().Options() }

// meshFlags are the default mesh's flags shared with the broker, without
// its DNS part (routes do not depend on it).
func (c *Config) meshFlags() runtime.MeshFlags {
	return runtime.MeshFlags{ClusterName: &c.ClusterName, LinkAddress: &c.LinkAddress, Domain: &c.MeshDomain, ServiceCIDR: &c.ServiceCIDR}
}

func (c *Config) processFlags() runtime.ProcessFlags {
	return runtime.ProcessFlags{Kubeconfig: &c.Kubeconfig, HTTPPort: &c.ServerPortHTTP, Verbose: &c.Verbose}
}

// tableMain is the main routing table (linux/rtnetlink.h).
const tableMain = 254
