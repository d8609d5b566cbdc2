// Package broker is `netd broker`: the cluster's mesh gateway. It watches
// KubeLinks, configures the tunnel (WireGuard or TLS bridge), the device's
// addresses and routes and netd's nftables table, and writes link status,
// events and metrics; with a lease only the elected replica is active.
package broker

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/kubelink/kubelink/api/mesh"
	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/netd/kube"
	"github.com/kubelink/kubelink/netd/runtime"
	"github.com/kubelink/kubelink/netd/vxlan"
)

// Modes of the broker.
const (
	ModeWireGuard = "wireguard"
	ModeBridge    = "bridge"
	ModeNone      = "none"
)

// SecretKeyWireGuard is the secret key holding the WireGuard private key.
const SecretKeyWireGuard = "WireguardPrivateKey"

// SecretKeyWireGuardSeed is the original kubelink's other spelling of the
// key (its README names both); read when SecretKeyWireGuard is missing.
const SecretKeyWireGuardSeed = "WireGuardPrivateKey"

// Config is the broker's configuration (its flags).
type Config struct {
	Mode             string
	ClusterName      string
	LinkAddress      string
	MeshDomain       string
	MeshDNSServiceIP string
	ServiceCIDR      string
	PodCIDR          string
	NodeCIDR         string
	NodeIP           string
	IfceName         string
	BrokerPort       int
	AdvertisedPort   int
	AutoConnect      bool
	Secret           string
	CertFile         string
	KeyFile          string
	CACertFile       string
	// DNSAdvertisement: the bridge hello tells peers this cluster's DNS
	// (outbound). A peer's advertisement always updates its KubeLink's
	// spec.dns (inbound).
	DNSAdvertisement bool
	// ServiceAccount ([namespace/]name, default namespace: Namespace):
	// the bridge hello carries a token of this ServiceAccount and the
	// API server's CA (outbound API access advertisement). A peer's
	// advertisement always goes into a Secret its KubeLink's
	// spec.apiAccess names (inbound).
	ServiceAccount string
	ClusterDomain  string
	DNSServiceIP   string
	ServedLinks    string
	// LocalStatus: this broker publishes the LocalLinks' status (one
	// broker per cluster does; an additional one beside it does not).
	LocalStatus    bool
	RouteTable     int
	RulePriority   int
	Kubeconfig     string
	ServerPortHTTP int
	LeaseName      string
	LeaseNamespace string
	LeaseDuration  time.Duration
	// LeaseOutageHold: see runtime.ElectionFlags (--lease-outage-hold).
	LeaseOutageHold time.Duration
	// OmitLease (--omit-lease): no election even with --lease-name.
	OmitLease bool
	// Keepalive is the WireGuard persistent keepalive / bridge heartbeat;
	// the Down detection window is three of them.
	Keepalive time.Duration
	// Identity names this replica in the lease and status.gateway
	// ($POD_NAME, else the host name).
	Identity string
	Verbose  bool
	// VXLAN: the active broker owns the decapsulating device of the
	// routers' VXLAN (vxlan.GatewayDevice) on VXLANIP, its node's IP. Node
	// mode only: a pod-mode gateway's node decapsulates in the router.
	VXLAN     bool
	VXLANPort int
	VXLANVNI  int
	VXLANIP   string

	// Process are the original kubelink's process flags (--log-level,
	// --cpuprofile, --version, --controllers); Seed the rest of its
	// command line (set by Flags).
	Process runtime.SeedProcessFlags
	Seed    *runtime.Seed

	// Namespace is the broker's own namespace ($POD_NAMESPACE, else the
	// service account's, else default; no flag). netd sync writes its
	// MeshService mirrors there, and only mirrors there become routes.
	Namespace string
}

// Flags registers the broker's flags (the original kubelink's names) and
// accepts the rest of the original's command line (runtime.RegisterSeed).
func (c *Config) Flags(fs *flag.FlagSet) {
	c.Process.Register(fs)
	fs.StringVar(&c.Mode, "mode", ModeWireGuard, "tunnel mode: wireguard, bridge or none")
	c.meshFlags().Register(fs)
	c.processFlags().Register(fs, 8180)
	fs.StringVar(&c.PodCIDR, "pod-cidr", "", "pod CIDR; enables pod mode: the gateway in a pod, MeshService DNAT (SNAT to the link address happens in every mode)")
	fs.StringVar(&c.NodeCIDR, "node-cidr", "", "ignored, accepted for the original manifests: SNAT to the link address covers every source")
	fs.StringVar(&c.NodeIP, "node-ip", "", "ignored (checked), accepted for the original manifests: the routers' VXLAN goes to --vxlan-ip")
	fs.StringVar(&c.IfceName, "ifce-name", "kubelink", "name of the tunnel device")
	fs.IntVar(&c.BrokerPort, "broker-port", v1alpha1.DefaultPort, "port the tunnel listens on (UDP for wireguard, TCP for bridge; 0: the default)")
	fs.IntVar(&c.AdvertisedPort, "advertised-port", 0, "port peers reach us on when it differs from --broker-port (told in the bridge hello)")
	fs.BoolVar(&c.AutoConnect, "auto-connect", false, "bridge: register unknown peers with a valid certificate as new KubeLinks")
	fs.StringVar(&c.Secret, "secret", "", "[namespace/]name of the secret with the WireGuard key (key WireguardPrivateKey, or the original's WireGuardPrivateKey) or the TLS certificate (tls.crt, tls.key, ca.crt)")
	fs.StringVar(&c.CertFile, "certfile", "", "bridge: TLS certificate file")
	fs.StringVar(&c.KeyFile, "keyfile", "", "bridge: TLS key file")
	fs.StringVar(&c.CACertFile, "cacertfile", "", "bridge: CA certificate file for peer certificates")
	fs.BoolVar(&c.DNSAdvertisement, "dns-advertisement", false, "bridge: advertise this cluster's DNS (--dns-service-ip, --cluster-domain) to the peers in the hello (outbound); a peer's advertisement always updates its KubeLink's spec.dns (inbound)")
	fs.StringVar(&c.ServiceAccount, "service-account", "", "bridge: [namespace/]name of a ServiceAccount (default namespace: the broker's) whose token (TokenRequest, renewed at half life) and this API server's CA the hello advertises to the peers (outbound); a peer's advertisement always goes into the Secret <link>-apiaccess named by its KubeLink's spec.apiAccess (inbound)")
	fs.StringVar(&c.ServedLinks, "served-links", "all", "comma-separated KubeLink names this broker serves, or all")
	fs.BoolVar(&c.LocalStatus, "local-status", true, "publish the LocalLinks' status (state, gateway, public key); false for an additional broker beside the main one")
	fs.IntVar(&c.RouteTable, "route-table", 0, "routing table for the mesh routes (0 = main)")
	fs.IntVar(&c.RulePriority, "rule-priority", 32000, "priority of the rule looking up --route-table")
	runtime.ElectionFlags{LeaseName: &c.LeaseName, LeaseNamespace: &c.LeaseNamespace, LeaseDuration: &c.LeaseDuration, OutageHold: &c.LeaseOutageHold}.Register(fs, "broker")
	fs.BoolVar(&c.OmitLease, "omit-lease", false, "no leader election even with --lease-name (development)")
	fs.DurationVar(&c.Keepalive, "keepalive", 20*time.Second, "keepalive interval; a link is Down when nothing arrives for 3 intervals")
	fs.BoolVar(&c.VXLAN, "vxlan", false, "node mode (hostNetwork) only: decapsulate the routers' VXLAN (netd router --vxlan); the active broker owns the device "+vxlan.GatewayDevice+" (in pod mode the router on the gateway's node decapsulates)")
	fs.IntVar(&c.VXLANPort, "vxlan-port", vxlan.DefaultPort, "UDP port of the routers' VXLAN")
	fs.IntVar(&c.VXLANVNI, "vxlan-vni", vxlan.DefaultVNI, "VXLAN network identifier of the routers' VXLAN")
	fs.StringVar(&c.VXLANIP, "vxlan-ip", "", "this broker's IP as the routers see it, the node IP of the hostNetwork pod (default: $POD_IP)")
	// The original's --namespace is the Lease's namespace.
	c.Seed = runtime.RegisterSeed(fs, runtime.RoleBroker, map[string]string{"namespace": "lease-namespace"})
}

// Validate checks the flags and fills defaults. An error names the flag
// (as given, when that was an alias).
func (c *Config) Validate() error { return c.Seed.Explain(c.validate()) }

func (c *Config) validate() error {
	if err := c.Process.Validate(runtime.RoleBroker); err != nil {
		return err
	}
	switch c.Mode {
	case ModeWireGuard, ModeBridge, ModeNone:
	default:
		return fmt.Errorf("--mode %q: must be wireguard, bridge or none", c.Mode)
	}
	if c.Identity == "" {
		c.Identity = os.Getenv("POD_NAME")
	}
	if c.Identity == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("no $POD_NAME and no host name: %w", err)
		}
		c.Identity = h
	}
	if c.Namespace == "" {
		c.Namespace = kube.Namespace()
	}
	if c.Keepalive < time.Second {
		return fmt.Errorf("--keepalive must be at least 1s")
	}
	if c.BrokerPort < 0 || c.BrokerPort > 65535 {
		return fmt.Errorf("--broker-port %d is not a port", c.BrokerPort)
	}
	if c.BrokerPort == 0 { // the original's default: the mode's port
		c.BrokerPort = v1alpha1.DefaultPort
	}
	if c.AdvertisedPort < 0 || c.AdvertisedPort > 65535 {
		return fmt.Errorf("--advertised-port %d is not a port", c.AdvertisedPort)
	}
	if c.AdvertisedPort == 0 {
		c.AdvertisedPort = c.BrokerPort
	}
	if c.CertFile != "" && (c.KeyFile == "" || c.CACertFile == "") {
		return fmt.Errorf("--certfile needs --keyfile and --cacertfile")
	}
	for _, f := range []struct {
		name, value string
		check       func(string) error
	}{
		{"--cluster-name", c.ClusterName, runtime.CheckDNSLabel},
		{"--cluster-domain", c.ClusterDomain, runtime.CheckDNSName},
		{"--mesh-domain", c.MeshDomain, runtime.CheckDNSName},
		{"--node-cidr", c.NodeCIDR, runtime.CheckCIDR},
		{"--ifce-name", c.IfceName, runtime.CheckInterfaceName},
		{"--secret", c.Secret, runtime.CheckNamespacedName},
		{"--service-account", c.ServiceAccount, runtime.CheckNamespacedName},
		{"--served-links", c.ServedLinks, runtime.CheckServedLinks},
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
	if c.OmitLease {
		c.LeaseName = ""
	}
	if c.LeaseDuration < 0 || c.LeaseName != "" && c.LeaseDuration < time.Second {
		return fmt.Errorf("--lease-duration %s: must be at least 1s", c.LeaseDuration)
	}
	if c.LeaseOutageHold < 0 {
		return fmt.Errorf("--lease-outage-hold %s: must not be negative", c.LeaseOutageHold)
	}
	if err := runtime.CheckRouteTable(c.RouteTable, c.RulePriority); err != nil {
		return err
	}
	if c.PodCIDR != "" {
		if _, err := mesh.ParseCIDR(c.PodCIDR); err != nil {
			return fmt.Errorf("--pod-cidr: %w", err)
		}
	}
	if c.NodeIP != "" {
		if _, err := netip.ParseAddr(c.NodeIP); err != nil {
			return fmt.Errorf("--node-ip %q is not an IP address", c.NodeIP)
		}
	}
	if c.VXLAN {
		// The routers send their VXLAN to the gateway's node, never into
		// a pod: decapsulated in the pod, the packets would bypass the
		// node's conntrack, where kube-proxy's DNAT of connections from
		// the gateway pod is recorded (replies from Service endpoints on
		// other nodes would not be un-DNATed).
		if c.PodCIDR != "" {
			return fmt.Errorf("--vxlan and --pod-cidr (pod mode) are mutually exclusive: a pod-mode gateway's node decapsulates the routers' VXLAN in netd router, leave --vxlan off")
		}
		if err := vxlan.ValidatePort("--vxlan-port", c.VXLANPort); err != nil {
			return err
		}
		if err := vxlan.ValidateVNI("--vxlan-vni", c.VXLANVNI); err != nil {
			return err
		}
		if c.VXLANIP == "" {
			c.VXLANIP = os.Getenv("POD_IP")
		}
		if c.VXLANIP == "" {
			return fmt.Errorf("--vxlan needs --vxlan-ip or $POD_IP: the decapsulating device's address and MAC derive from the IP the routers send to")
		}
		if a, err := netip.ParseAddr(c.VXLANIP); err != nil || !a.Is4() {
			return fmt.Errorf("--vxlan-ip %q is not an IPv4 address", c.VXLANIP)
		}
	}
	if err := c.processFlags().Validate(); err != nil {
		return err
	}
	_, err := c.MeshOptions()
	return err
}

// MeshOptions is the default mesh as the flags describe it.
func (c *Config) MeshOptions() (mesh.Options, error) { return c.meshFlags().Options() }

// meshFlags are the default mesh's flags (shared with the router) with
// the broker's DNS part.
func (c *Config) meshFlags() runtime.MeshFlags {
	return runtime.MeshFlags{ClusterName: &c.ClusterName, LinkAddress: &c.LinkAddress, Domain: &c.MeshDomain, ServiceCIDR: &c.ServiceCIDR,
		GlobalDNS: &c.MeshDNSServiceIP, ClusterDomain: &c.ClusterDomain, LocalDNS: &c.DNSServiceIP}
}

func (c *Config) processFlags() runtime.ProcessFlags {
	return runtime.ProcessFlags{Kubeconfig: &c.Kubeconfig, HTTPPort: &c.ServerPortHTTP, Verbose: &c.Verbose}
}

// Ignored warns about every flag set (names as given) that the broker
// accepts for the original kubelink's manifests but does not use, naming
// what replaces it, and about flags without effect in the mode.
func (c *Config) Ignored(set map[string]bool) []string {
	var w []string
	if c.Seed != nil {
		w = append(w, c.Seed.Warnings(set)...)
		set = c.Seed.CanonicalSet(set)
	}
	w = append(w, c.Process.Warnings(runtime.RoleBroker)...)
	if set["dns-advertisement"] && c.Mode != ModeBridge {
		w = append(w, fmt.Sprintf("--dns-advertisement has no effect in mode %s: only the bridge's hello carries the advertisement", c.Mode))
	}
	if set["service-account"] && c.Mode != ModeBridge {
		w = append(w, fmt.Sprintf("--service-account has no effect in mode %s: API access is advertised in the bridge's hello only. "+
			"Give each peer read access instead: `netd kubeconfig --kubeconfig <this cluster> --output apiaccess --local-kubeconfig <peer cluster> --secret-name <name> --secret-namespace <namespace>`, "+
			"and the peer's KubeLink of this cluster names that Secret in spec.apiAccess", c.Mode))
	}
	return w
}

// Serves reports whether this broker serves the link.
func (c *Config) Serves(link string) bool {
	if c.ServedLinks == "" || c.ServedLinks == "all" {
		return true
	}
	for _, s := range strings.Split(c.ServedLinks, ",") {
		if strings.TrimSpace(s) == link {
			return true
		}
	}
	return false
}
