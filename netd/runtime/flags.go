package runtime

import (
	"flag"
	"fmt"
	"net/netip"

	"github.com/kubelink/kubelink/api/mesh"
	"github.com/kubelink/kubelink/api/v1alpha1"
)

// MeshFlags are the default mesh's flags, one definition for every role:
// the same names, defaults and help. The fields point into the role's
// configuration (which keeps its field names); a nil field's flag is not
// registered, and its option stays zero.
type MeshFlags struct {
	ClusterName *string // --cluster-name
	LinkAddress *string // --link-address
	Domain      *string // --mesh-domain
	ServiceCIDR *string // --service-cidr
	// The DNS part (the broker's): --meshdns-service-ip,
	// --cluster-domain, --dns-service-ip.
	GlobalDNS     *string
	ClusterDomain *string
	LocalDNS      *string
}

// Register registers the non-nil flags.
func (m MeshFlags) Register(fs *flag.FlagSet) {
	str := func(p *string, name, def, help string) {
		if p != nil {
			fs.StringVar(p, name, def, help)
		}
	}
	str(m.ClusterName, "cluster-name", "", "local cluster name in the default mesh (without a LocalLink)")
	str(m.LinkAddress, "link-address", "", "local link address with mesh netmask for the default mesh, e.g. 192.168.0.11/24")
	str(m.Domain, "mesh-domain", v1alpha1.DefaultMeshDomain, "ignored, accepted for the original manifests: the mesh's DNS domain is the CoreDNS plugin's mesh-domain option")
	str(m.GlobalDNS, "meshdns-service-ip", "", "ignored (checked), accepted for the original manifests: the mesh-global DNS is the CoreDNS plugin's meshdns-service-ip option")
	str(m.ServiceCIDR, "service-cidr", "", "local service CIDR")
	str(m.ClusterDomain, "cluster-domain", v1alpha1.DefaultClusterDomain, "local cluster domain")
	str(m.LocalDNS, "dns-service-ip", "", "local cluster DNS service IP (default: 10th address of --service-cidr)")
}

// Options is the default mesh as the flags describe it.
func (m MeshFlags) Options() (mesh.Options, error) {
	val := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	o := mesh.Options{ClusterName: val(m.ClusterName), Domain: val(m.Domain), ClusterDomain: val(m.ClusterDomain)}
	var err error
	if s := val(m.LinkAddress); s != "" {
		if o.LinkAddress, err = mesh.ParseAddressPrefix(s); err != nil {
			return o, fmt.Errorf("--link-address: %w", err)
		}
	}
	if s := val(m.GlobalDNS); s != "" {
		if o.GlobalDNS, err = netip.ParseAddr(s); err != nil {
			return o, fmt.Errorf("--meshdns-service-ip %q is not an IP address", s)
		}
	}
	if s := val(m.ServiceCIDR); s != "" {
		if o.ServiceCIDR, err = mesh.ParseCIDR(s); err != nil {
			return o, fmt.Errorf("--service-cidr: %w", err)
		}
	}
	if s := val(m.LocalDNS); s != "" {
		if o.LocalDNS, err = netip.ParseAddr(s); err != nil {
			return o, fmt.Errorf("--dns-service-ip %q is not an IP address", s)
		}
	} else if m.LocalDNS != nil && o.ServiceCIDR.IsValid() {
		o.LocalDNS = mesh.NthAddress(o.ServiceCIDR, 10)
	}
	return o, nil
}

// IgnoredDNSFlags warns about the default mesh's DNS flags that are set:
// netd accepts them for the original kubelink's manifests, but names are
// the CoreDNS plugin's business (routes and tunnels do not depend on them).
func IgnoredDNSFlags(role string, set map[string]bool) []string {
	var w []string
	if set["mesh-domain"] {
		w = append(w, "--mesh-domain is ignored by netd "+role+": the mesh's DNS domain is the CoreDNS plugin's mesh-domain option (or a LocalLink's spec.dns.baseDomain)")
	}
	if set["meshdns-service-ip"] {
		w = append(w, "--meshdns-service-ip is ignored by netd "+role+": the mesh-global DNS is the CoreDNS plugin's meshdns-service-ip option (or a LocalLink's spec.dns.dnsIP)")
	}
	return w
}

// ProcessFlags are the flags of a process: its kubeconfig, the port of
// /metrics, /healthz and /readyz, verbose logging.
type ProcessFlags struct {
	Kubeconfig *string
	HTTPPort   *int
	Verbose    *bool
}

// Register registers the flags; port is the role's default HTTP port.
func (p ProcessFlags) Register(fs *flag.FlagSet, port int) {
	fs.StringVar(p.Kubeconfig, "kubeconfig", "", "kubeconfig (default: in-cluster)")
	fs.IntVar(p.HTTPPort, "server-port-http", port, "port of /metrics, /healthz and /readyz (0 = off)")
	fs.BoolVar(p.Verbose, "v", false, "verbose logging")
}

// Validate checks the HTTP port.
func (p ProcessFlags) Validate() error {
	if *p.HTTPPort < 0 || *p.HTTPPort > 65535 {
		return fmt.Errorf("--server-port-http %d is not a port", *p.HTTPPort)
	}
	return nil
}
