package runtime

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

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

// ---------------------------------------------------------------------------
// The original kubelink's command line.
//
// Its single binary ran the broker and the router controllers of one
// controller manager: a flag without prefix reached every controller that
// declared it, --broker.X and --router.X only that controller. netd broker
// and netd router take every flag of its command-line reference: netd
// broker takes --broker.X as --X, netd router --router.X; each accepts the
// other's prefixed forms, and every flag it does not use, with a warning
// at start that names what replaces it. Values are checked all the same: a
// bad value of an accepted flag is an error naming the flag.

// Roles that take the original kubelink's flags.
const (
	RoleBroker = "broker"
	RoleRouter = "router"
)

// SeedKind is the type of an original flag's value, as its reference
// lists it.
type SeedKind string

// Kinds of values.
const (
	KindBool     SeedKind = "bool"
	KindString   SeedKind = "string"
	KindInt      SeedKind = "int"
	KindUint     SeedKind = "uint"
	KindDuration SeedKind = "duration"
)

// SeedUse is what a netd role makes of an original flag.
type SeedUse struct {
	// Works: the role defines the flag and does what the original did.
	Works bool
	// Why it is ignored and what replaces it (a flag the role may still
	// define, to check its value).
	Why string
	// Other is the netd role that uses the flag (the other one).
	Other string
}

func works() SeedUse                { return SeedUse{Works: true} }
func ignored(why string) SeedUse    { return SeedUse{Why: why} }
func otherRole(role string) SeedUse { return SeedUse{Other: role} }

// SeedFlag is a flag of the original kubelink's command-line reference.
type SeedFlag struct {
	Name string
	// Short is its one-letter form ("c" for --controllers).
	Short string
	Kind  SeedKind
	// Prefixed are the original controllers that declared it: each has a
	// --<controller>.<Name> form.
	Prefixed []string
	// Check validates a non-empty value after Kind's parse; nil: any.
	Check func(string) error
	// Broker and Router: what netd broker and netd router make of it.
	Broker, Router SeedUse
}

// Use is what the role makes of the flag.
func (f *SeedFlag) Use(role string) SeedUse {
	if role == RoleRouter {
		return f.Router
	}
	return f.Broker
}

// What replaces the flags netd does not use; the warnings and the README's
// migration table say the same.
const (
	whyCRDs           = "netd writes no CRDs: they come with the chart (chart/kubelink/crds; upgrades: README \"Upgrading the CRDs\")"
	whyPools          = "netd reconciles in one coalesced loop and has no worker pools; remove it"
	whyRBAC           = "netd reads and writes what its ServiceAccount's RBAC allows (the chart's *-rbac.yaml); there is no namespace restriction"
	whyCluster        = "netd works on one cluster (--kubeconfig, default in-cluster) and has no cluster ids; remove it"
	whyNoElection     = "netd router takes part in no election: it follows the broker's Lease (--lease-name, --lease-namespace)"
	whyDNSPropagation = "the DNS mode is the kubelink CoreDNS plugin's: its dns-propagation option (none, dns or kubernetes) is the default mode of the links " +
		"(chart: dns.extraPluginOptions: [\"dns-propagation <mode>\"]); netd serves no DNS"
	whyCoreDNSConfigure = "the chart connects the cluster DNS to the kubelink DNS: dns.clusterDNSIntegration.enabled (a coredns-custom ConfigMap; " +
		"for other cluster DNS setups the chart's NOTES.txt prints the server block to add)"
	whyCoreDNSDeployment = "the kubelink DNS Deployment is the chart's (dns.* values); its CoreDNS plugin follows the KubeLinks through informers, so nothing restarts it"
	whyCoreDNSSecret     = "there is no Corefile secret: the chart renders the Corefile into a ConfigMap from the dns.* values"
	whyCoreDNSServiceIP  = "the kubelink DNS Service IP is the chart's dns.serviceIP (default: the 11th address of cluster.serviceCIDR)"
	whyDNSName           = "netd issues no certificate: cert-manager does (chart broker.certManager.enabled), for the names in broker.certManager.dnsNames, into the Secret passed as --secret"
	whyManageMode        = "netd issues no certificate (the original's mode none): for self or cert let cert-manager issue it (chart broker.certManager.enabled) into the Secret passed as --secret"
	whyServiceBroker     = "the chart creates the broker's Service (broker.service.*); the certificate's names are broker.certManager.dnsNames"
	whyServiceRouter     = "netd router finds the gateway through the broker's Lease holder (--lease-name), not through a Service's endpoints"
	whyIPIPBroker        = "the encapsulation towards the gateway is the routers': netd router --ipip (chart router.ipip) or --vxlan; the gateway node's kernel decapsulates IPIP itself"
	whyNodeCIDR          = "SNAT to the link address covers every source; remove it"
	whyRouterCIDR        = "netd router routes only mesh destinations to the gateway, which SNATs to the link address: node and pod CIDRs are not needed; remove it"
	whyNodeIPBroker      = "the node IP the routers' VXLAN goes to is --vxlan-ip (default $POD_IP)"
	whyMeshDomain        = "the mesh's DNS domain is the CoreDNS plugin's mesh-domain option (or a LocalLink's spec.dns.baseDomain)"
	whyMeshDNS           = "the mesh-global DNS is the CoreDNS plugin's meshdns-service-ip option (or a LocalLink's spec.dns.dnsIP)"
	whyRenew             = "the renew deadline is derived from --lease-duration (2/3 of it)"
	whyRetry             = "the retry period is derived from --lease-duration (1/4 of it)"
	whyBind              = "netd serves /metrics, /healthz and /readyz on every address at --server-port-http (0 turns the server off)"
	whyConfig            = "netd has no configuration file: pass the options as flags (the chart renders them from its values)"
	whyGrace             = "netd removes what it created (routes, devices, nftables) on SIGTERM and exits when done; the pod's terminationGracePeriodSeconds bounds that"
	whyName              = "netd logs as netd <role> and records events as kubelink-netd; the election's Lease is --lease-name"
	whyPlugin            = "netd loads no Go plugins; the DNS is the kubelink CoreDNS plugin compiled into the custom CoreDNS (coredns-build/)"
	whyOverride          = "put the API server's URL into the kubeconfig (--kubeconfig)"
	whyBrokerResync      = "the broker reconciles on every change and every second; remove it"
	whyRouterUpdate      = "the router's full reconcile period is --resync"
)

var (
	bothControllers = []string{RoleBroker, RoleRouter}
	brokerOnly      = []string{RoleBroker}
	routerOnly      = []string{RoleRouter}
)

// SeedFlags is every flag of the original kubelink's command-line
// reference (its `kubelink --help`), in its order.
var SeedFlags = []SeedFlag{
	{Name: "accepted-maintainers", Kind: KindString, Broker: ignored(whyCRDs), Router: ignored(whyCRDs)},
	{Name: "advertised-port", Kind: KindInt, Prefixed: brokerOnly, Check: CheckPort, Broker: works(), Router: otherRole(RoleBroker)},
	{Name: "auto-connect", Kind: KindBool, Prefixed: brokerOnly, Broker: works(), Router: otherRole(RoleBroker)},
	{Name: "bind-address-http", Kind: KindString, Check: CheckHost, Broker: ignored(whyBind), Router: ignored(whyBind)},
	{Name: "broker-port", Kind: KindInt, Prefixed: brokerOnly, Check: CheckPort, Broker: works(), Router: otherRole(RoleBroker)},
	{Name: "cacertfile", Kind: KindString, Prefixed: brokerOnly, Broker: works(), Router: otherRole(RoleBroker)},
	{Name: "certfile", Kind: KindString, Prefixed: brokerOnly, Broker: works(), Router: otherRole(RoleBroker)},
	{Name: "cluster-domain", Kind: KindString, Prefixed: brokerOnly, Check: CheckDNSName, Broker: works(), Router: otherRole(RoleBroker)},
	{Name: "cluster-name", Kind: KindString, Prefixed: brokerOnly, Check: CheckDNSLabel, Broker: works(), Router: works()},
	{Name: "config", Kind: KindString, Broker: ignored(whyConfig), Router: ignored(whyConfig)},
	{Name: "controllers", Short: "c", Kind: KindString, Check: checkControllers, Broker: works(), Router: works()},
	{Name: "coredns-configure", Kind: KindBool, Prefixed: brokerOnly, Broker: ignored(whyCoreDNSConfigure), Router: ignored(whyCoreDNSConfigure)},
	{Name: "coredns-deployment", Kind: KindString, Prefixed: brokerOnly, Check: CheckDNSLabel, Broker: ignored(whyCoreDNSDeployment), Router: ignored(whyCoreDNSDeployment)},
	{Name: "coredns-secret", Kind: KindString, Prefixed: brokerOnly, Check: CheckName, Broker: ignored(whyCoreDNSSecret), Router: ignored(whyCoreDNSSecret)},
	{Name: "coredns-service-ip", Kind: KindString, Prefixed: brokerOnly, Check: CheckIP, Broker: ignored(whyCoreDNSServiceIP), Router: ignored(whyCoreDNSServiceIP)},
	{Name: "cpuprofile", Kind: KindString, Broker: works(), Router: works()},
	{Name: "datafile", Kind: KindString, Prefixed: routerOnly, Broker: otherRole(RoleRouter), Router: works()},
	{Name: "default.pool.size", Kind: KindInt, Prefixed: bothControllers, Check: checkNonNegative, Broker: ignored(whyPools), Router: ignored(whyPools)},
	{Name: "disable-namespace-restriction", Kind: KindBool, Broker: ignored(whyRBAC), Router: ignored(whyRBAC)},
	{Name: "dns-advertisement", Kind: KindBool, Prefixed: brokerOnly, Broker: works(), Router: otherRole(RoleBroker)},
	{Name: "dns-name", Kind: KindString, Prefixed: brokerOnly, Check: CheckDNSName, Broker: ignored(whyDNSName), Router: ignored(whyDNSName)},
	{Name: "dns-propagation", Kind: KindString, Prefixed: brokerOnly, Check: CheckDNSPropagation, Broker: ignored(whyDNSPropagation), Router: ignored(whyDNSPropagation)},
	{Name: "dns-service-ip", Kind: KindString, Prefixed: brokerOnly, Check: CheckIP, Broker: works(), Router: otherRole(RoleBroker)},
	{Name: "force-crd-update", Kind: KindBool, Broker: ignored(whyCRDs), Router: ignored(whyCRDs)},
	{Name: "grace-period", Kind: KindDuration, Check: checkNonNegative, Broker: ignored(whyGrace), Router: ignored(whyGrace)},
	{Name: "help", Short: "h", Kind: KindBool, Broker: works(), Router: works()},
	{Name: "ifce-name", Kind: KindString, Prefixed: brokerOnly, Check: CheckInterfaceName, Broker: works(), Router: otherRole(RoleBroker)},
	{Name: "ipip", Kind: KindString, Prefixed: bothControllers, Check: CheckIPIP, Broker: ignored(whyIPIPBroker), Router: works()},
	{Name: "keyfile", Kind: KindString, Prefixed: brokerOnly, Broker: works(), Router: otherRole(RoleBroker)},
	{Name: "kubeconfig", Kind: KindString, Broker: works(), Router: works()},
	{Name: "kubeconfig.apiserver-override", Kind: KindString, Check: CheckURL, Broker: ignored(whyOverride), Router: ignored(whyOverride)},
	{Name: "kubeconfig.disable-deploy-crds", Kind: KindBool, Broker: ignored(whyCRDs), Router: ignored(whyCRDs)},
	{Name: "kubeconfig.id", Kind: KindString, Broker: ignored(whyCluster), Router: ignored(whyCluster)},
	{Name: "kubeconfig.migration-ids", Kind: KindString, Broker: ignored(whyCluster), Router: ignored(whyCluster)},
	{Name: "lease-duration", Kind: KindDuration, Check: CheckLeaseDuration, Broker: works(),
		Router: ignored(whyNoElection + "; the Lease's duration is the broker's --lease-duration")},
	{Name: "lease-name", Kind: KindString, Check: CheckName, Broker: works(), Router: works()},
	{Name: "lease-renew-deadline", Kind: KindDuration, Check: checkPositive, Broker: ignored(whyRenew), Router: ignored(whyNoElection)},
	{Name: "lease-retry-period", Kind: KindDuration, Check: checkPositive, Broker: ignored(whyRetry), Router: ignored(whyNoElection)},
	{Name: "link-address", Kind: KindString, Prefixed: brokerOnly, Check: checkLinkAddress, Broker: works(), Router: works()},
	{Name: "log-level", Short: "D", Kind: KindString, Check: CheckLogLevel, Broker: works(), Router: works()},
	{Name: "maintainer", Kind: KindString, Broker: ignored(whyCRDs), Router: ignored(whyCRDs)},
	{Name: "mesh-domain", Kind: KindString, Prefixed: brokerOnly, Check: CheckDNSName, Broker: ignored(whyMeshDomain), Router: ignored(whyMeshDomain)},
	{Name: "meshdns-service-ip", Kind: KindString, Prefixed: brokerOnly, Check: CheckIP, Broker: ignored(whyMeshDNS), Router: ignored(whyMeshDNS)},
	{Name: "mode", Kind: KindString, Prefixed: brokerOnly, Check: CheckOneOf("wireguard", "bridge", "none"), Broker: works(), Router: otherRole(RoleBroker)},
	{Name: "name", Kind: KindString, Broker: ignored(whyName), Router: ignored(whyName)},
	{Name: "namespace", Kind: KindString, Check: CheckDNSLabel, Broker: works(),
		Router: ignored(whyNoElection + "; the namespace of that Lease is --lease-namespace")},
	{Name: "namespace-local-access-only", Short: "n", Kind: KindBool, Broker: ignored(whyRBAC), Router: ignored(whyRBAC)},
	{Name: "node-cidr", Kind: KindString, Prefixed: bothControllers, Check: CheckCIDR, Broker: ignored(whyNodeCIDR), Router: ignored(whyRouterCIDR)},
	{Name: "node-ip", Kind: KindString, Prefixed: brokerOnly, Check: CheckIP, Broker: ignored(whyNodeIPBroker), Router: works()},
	{Name: "omit-lease", Kind: KindBool, Broker: works(), Router: ignored(whyNoElection)},
	{Name: "plugin-file", Kind: KindString, Broker: ignored(whyPlugin), Router: ignored(whyPlugin)},
	{Name: "pod-cidr", Kind: KindString, Prefixed: bothControllers, Check: CheckCIDR, Broker: works(), Router: ignored(whyRouterCIDR)},
	{Name: "pool.resync-period", Kind: KindDuration, Prefixed: bothControllers, Check: checkNonNegative, Broker: ignored(whyBrokerResync), Router: works()},
	{Name: "pool.size", Kind: KindInt, Prefixed: bothControllers, Check: checkNonNegative, Broker: ignored(whyPools), Router: ignored(whyPools)},
	{Name: "route-table", Kind: KindUint, Prefixed: bothControllers, Check: checkRouteTable, Broker: works(), Router: works()},
	{Name: "rule-priority", Kind: KindUint, Prefixed: bothControllers, Broker: works(), Router: works()},
	{Name: "secret", Kind: KindString, Prefixed: brokerOnly, Check: CheckNamespacedName, Broker: works(), Router: otherRole(RoleBroker)},
	{Name: "secret-manage-mode", Kind: KindString, Prefixed: brokerOnly, Check: CheckOneOf("none", "self", "cert"),
		Broker: ignored(whyManageMode), Router: ignored(whyManageMode)},
	{Name: "secrets.pool.size", Kind: KindInt, Prefixed: brokerOnly, Check: checkNonNegative, Broker: ignored(whyPools), Router: ignored(whyPools)},
	{Name: "served-links", Kind: KindString, Prefixed: brokerOnly, Check: CheckServedLinks, Broker: works(), Router: otherRole(RoleBroker)},
	{Name: "server-port-http", Kind: KindInt, Check: CheckPort, Broker: works(), Router: works()},
	{Name: "service", Kind: KindString, Prefixed: bothControllers, Check: CheckNamespacedName, Broker: ignored(whyServiceBroker), Router: ignored(whyServiceRouter)},
	{Name: "service-account", Kind: KindString, Prefixed: brokerOnly, Check: CheckNamespacedName, Broker: works(), Router: otherRole(RoleBroker)},
	{Name: "service-cidr", Kind: KindString, Prefixed: brokerOnly, Check: CheckCIDR, Broker: works(), Router: works()},
	{Name: "tasks.pool.size", Kind: KindInt, Prefixed: brokerOnly, Check: checkNonNegative, Broker: ignored(whyPools), Router: ignored(whyPools)},
	{Name: "update.pool.resync-period", Kind: KindDuration, Prefixed: bothControllers, Check: checkNonNegative, Broker: ignored(whyBrokerResync), Router: ignored(whyRouterUpdate)},
	{Name: "update.pool.size", Kind: KindInt, Prefixed: bothControllers, Check: checkNonNegative, Broker: ignored(whyPools), Router: ignored(whyPools)},
	{Name: "version", Kind: KindBool, Broker: works(), Router: works()},
}

// Seed is the original kubelink's command line on a role's flag set (see
// RegisterSeed).
type Seed struct {
	role  string
	fs    *flag.FlagSet
	flags map[string]*SeedFlag
	// alias maps a flag name to the one it stands for (--broker.X → X in
	// netd broker, short forms, the role's own aliases).
	alias map[string]string
	// foreign are the other role's prefixed forms (name → that role).
	foreign map[string]string
	// hidden are left out of -h: aliases and flags netd does not use.
	hidden map[string]bool
}

// RegisterSeed registers on fs, after the role's own flags, every flag of
// the original kubelink's reference that the role does not define: as
// aliases (aliases maps a name to the role's flag it stands for; the
// short forms; --<role>.X for X) or, for flags netd does not use, as
// flags that check their value and are named in a warning at start
// (Warnings). A flag SeedFlags marks as working in the role must be
// defined by it: anything else is a programming error (panic).
func RegisterSeed(fs *flag.FlagSet, role string, aliases map[string]string) *Seed {
	s := &Seed{role: role, fs: fs, flags: map[string]*SeedFlag{}, alias: map[string]string{}, foreign: map[string]string{}, hidden: map[string]bool{}}
	addAlias := func(name, target, help string) {
		f := fs.Lookup(target)
		if f == nil {
			panic(fmt.Sprintf("netd %s: alias --%s of undefined --%s", role, name, target))
		}
		if fs.Lookup(name) != nil {
			panic(fmt.Sprintf("netd %s: alias --%s is a flag of its own", role, name))
		}
		fs.Var(f.Value, name, help)
		s.alias[name] = target
		s.hidden[name] = true
	}
	names := make([]string, 0, len(aliases))
	for a := range aliases {
		names = append(names, a)
	}
	sort.Strings(names)
	for _, a := range names {
		addAlias(a, aliases[a], "the original kubelink's name of --"+aliases[a])
	}
	for i := range SeedFlags {
		sf := &SeedFlags[i]
		s.flags[sf.Name] = sf
		if sf.Name == "help" { // the flag package's own -h, -help, --help
			continue
		}
		use := sf.Use(role)
		f := fs.Lookup(sf.Name)
		switch {
		case f == nil && use.Works:
			panic(fmt.Sprintf("netd %s: the original flag --%s is marked as working but not defined", role, sf.Name))
		case f != nil && use.Other != "":
			panic(fmt.Sprintf("netd %s: the original flag --%s is marked as netd %s's but defined", role, sf.Name, use.Other))
		case f == nil:
			fs.Var(&seedValue{flag: sf}, sf.Name, "the original kubelink's flag, ignored (a warning names what replaces it)")
			s.hidden[sf.Name] = true
		}
		if sf.Short != "" {
			addAlias(sf.Short, sf.Name, "short for --"+sf.Name)
		}
	}
	for i := range SeedFlags {
		sf := &SeedFlags[i]
		for _, p := range sf.Prefixed {
			name := p + "." + sf.Name
			if p == role {
				addAlias(name, sf.Name, "the original "+p+" controller's name of --"+sf.Name)
				continue
			}
			fs.Var(&seedValue{flag: sf}, name, "the original "+p+" controller's flag: netd "+p+"'s, ignored here")
			s.foreign[name] = p
			s.hidden[name] = true
		}
	}
	fs.Usage = s.usage
	return s
}

// Canonical is the flag a name stands for (itself unless an alias).
func (s *Seed) Canonical(name string) string {
	for i := 0; i < 3; i++ {
		a, ok := s.alias[name]
		if !ok {
			break
		}
		name = a
	}
	return name
}

// CanonicalSet is set (flag names as given) with aliases replaced by the
// flags they stand for.
func (s *Seed) CanonicalSet(set map[string]bool) map[string]bool {
	out := make(map[string]bool, len(set))
	for n := range set {
		out[s.Canonical(n)] = true
	}
	return out
}

// Warnings names every flag set (as given) that the role accepts for the
// original kubelink but does not use, each with what replaces it.
func (s *Seed) Warnings(set map[string]bool) []string {
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	sort.Strings(names)
	var w []string
	for _, n := range names {
		if p, ok := s.foreign[n]; ok {
			base := strings.TrimPrefix(n, p+".")
			w = append(w, fmt.Sprintf("--%s is the original %s controller's flag: pass it to netd %s (as --%s or --%s); netd %s ignores it", n, p, p, base, n, s.role))
			continue
		}
		c := s.Canonical(n)
		sf := s.flags[c]
		if sf == nil {
			continue
		}
		label := "--" + n
		if c != n {
			label += " (--" + c + ")"
		}
		switch use := sf.Use(s.role); {
		case use.Other != "":
			w = append(w, fmt.Sprintf("%s is a netd %s flag (the original's %s controller used it): netd %s ignores it", label, use.Other, use.Other, s.role))
		case use.Why != "":
			w = append(w, fmt.Sprintf("%s is ignored by netd %s: %s", label, s.role, strings.ReplaceAll(use.Why, "<role>", s.role)))
		}
	}
	return w
}

// Defined reports whether the role defines the flag itself (it is no
// alias and not only accepted for the original manifests).
func (s *Seed) Defined(name string) bool {
	return s.fs.Lookup(name) != nil && !s.hidden[name]
}

// Explain adds to a configuration error the name an alias was given as
// ("--mode ... (given as --broker.mode)"); nil stays nil, and so does
// a nil Seed's err.
func (s *Seed) Explain(err error) error {
	if err == nil || s == nil {
		return err
	}
	var given []string
	s.fs.Visit(func(f *flag.Flag) {
		if c := s.Canonical(f.Name); c != f.Name && strings.Contains(err.Error(), "--"+c) {
			given = append(given, "--"+f.Name)
		}
	})
	if len(given) == 0 {
		return err
	}
	return fmt.Errorf("%w (given as %s)", err, strings.Join(given, ", "))
}

// usage prints the role's own flags; the original kubelink's are
// summarised in one line.
func (s *Seed) usage() {
	out := s.fs.Output()
	fmt.Fprintf(out, "Usage of %s:\n", s.fs.Name())
	vis := flag.NewFlagSet(s.fs.Name(), flag.ContinueOnError)
	vis.SetOutput(out)
	s.fs.VisitAll(func(f *flag.Flag) {
		if !s.hidden[f.Name] {
			vis.Var(f.Value, f.Name, f.Usage)
			vis.Lookup(f.Name).DefValue = f.DefValue
		}
	})
	vis.PrintDefaults()
	fmt.Fprintf(out, "\nEvery flag of the original kubelink is accepted too (--%s.X is --X; the other controller's prefixed forms\n"+
		"and flags netd does not use are named in a warning at start, with what replaces them): see the README's\n"+
		"\"Migrating from the original kubelink\".\n", s.role)
}

// seedValue is an original flag netd does not use: its value is parsed
// and checked, then dropped.
type seedValue struct {
	flag *SeedFlag
	val  string
}

func (v *seedValue) String() string {
	if v == nil {
		return ""
	}
	return v.val
}

func (v *seedValue) IsBoolFlag() bool { return v.flag.Kind == KindBool }

func (v *seedValue) Set(s string) error {
	if err := checkKind(v.flag.Kind, s); err != nil {
		return err
	}
	if s != "" && v.flag.Check != nil {
		if err := v.flag.Check(s); err != nil {
			return err
		}
	}
	v.val = s
	return nil
}

func checkKind(k SeedKind, s string) error {
	var err error
	switch k {
	case KindBool:
		_, err = strconv.ParseBool(s)
	case KindInt:
		_, err = strconv.ParseInt(s, 0, 64)
	case KindUint:
		_, err = strconv.ParseUint(s, 0, 64)
	case KindDuration:
		_, err = time.ParseDuration(s)
	}
	if err != nil {
		return fmt.Errorf("not a %s", k)
	}
	return nil
}

// Checks of flag values; the messages leave the flag's name to the caller
// (the flag package says "invalid value %q for flag -X: ...").

// CheckIP: an IP address.
func CheckIP(s string) error {
	if _, err := netip.ParseAddr(s); err != nil {
		return fmt.Errorf("not an IP address")
	}
	return nil
}

// CheckCIDR: an IP prefix.
func CheckCIDR(s string) error {
	if _, err := mesh.ParseCIDR(s); err != nil {
		return err
	}
	return nil
}

func checkLinkAddress(s string) error {
	_, err := mesh.ParseAddressPrefix(s)
	return err
}

// CheckDNSLabel: a DNS label (RFC 1123).
func CheckDNSLabel(s string) error {
	if errs := validation.IsDNS1123Label(s); len(errs) > 0 {
		return fmt.Errorf("not a DNS label: %s", errs[0])
	}
	return nil
}

// CheckName: an object name (an RFC 1123 subdomain).
func CheckName(s string) error {
	if errs := validation.IsDNS1123Subdomain(s); len(errs) > 0 {
		return fmt.Errorf("not an object name: %s", errs[0])
	}
	return nil
}

// CheckNamespacedName: [namespace/]name.
func CheckNamespacedName(s string) error {
	ns, name, found := strings.Cut(s, "/")
	if !found {
		return CheckName(s)
	}
	if err := CheckDNSLabel(ns); err != nil {
		return fmt.Errorf("namespace %q: %w", ns, err)
	}
	return CheckName(name)
}

// CheckDNSName: a domain name, optionally with the trailing dot.
func CheckDNSName(s string) error {
	if errs := validation.IsDNS1123Subdomain(strings.ToLower(strings.TrimSuffix(s, "."))); len(errs) > 0 {
		return fmt.Errorf("not a DNS name: %s", errs[0])
	}
	return nil
}

// CheckHost: an IP address or a DNS name.
func CheckHost(s string) error {
	if CheckIP(s) == nil || CheckDNSName(s) == nil {
		return nil
	}
	return fmt.Errorf("neither an IP address nor a DNS name")
}

// CheckURL: an absolute http(s) URL.
func CheckURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("not an http(s) URL")
	}
	return nil
}

// CheckPort: 0 … 65535.
func CheckPort(s string) error {
	n, err := strconv.ParseInt(s, 0, 64)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("not a port")
	}
	return nil
}

// CheckInterfaceName: a network interface name (at most 15 bytes, no
// slash, colon or white space).
func CheckInterfaceName(s string) error {
	if len(s) > 15 || s == "." || s == ".." || strings.ContainsAny(s, "/: \t\n") {
		return fmt.Errorf("not an interface name (at most 15 characters, no '/', ':' or spaces)")
	}
	return nil
}

// CheckIPIP: an ipip mode of the router.
var CheckIPIP = CheckOneOf("none", "shared", "configure")

// CheckDNSPropagation: a DNS mode of the original (case-insensitive).
func CheckDNSPropagation(s string) error {
	return CheckOneOf("none", "dns", "kubernetes")(strings.ToLower(s))
}

// CheckServedLinks: "all" or comma-separated KubeLink names.
func CheckServedLinks(s string) error {
	for _, l := range strings.Split(s, ",") {
		l = strings.TrimSpace(l)
		if l == "all" {
			continue
		}
		if err := CheckName(l); err != nil {
			return fmt.Errorf("link %q: %w", l, err)
		}
	}
	return nil
}

// CheckLeaseDuration: at least one second.
func CheckLeaseDuration(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil || d < time.Second {
		return fmt.Errorf("must be at least 1s")
	}
	return nil
}

// CheckOneOf: one of vals.
func CheckOneOf(vals ...string) func(string) error {
	return func(s string) error {
		for _, v := range vals {
			if s == v {
				return nil
			}
		}
		return fmt.Errorf("must be %s or %s", strings.Join(vals[:len(vals)-1], ", "), vals[len(vals)-1])
	}
}

// checkNonNegative: a number or duration not below zero.
func checkNonNegative(s string) error {
	if strings.HasPrefix(strings.TrimSpace(s), "-") {
		return fmt.Errorf("must not be negative")
	}
	return nil
}

// checkPositive: a duration above zero.
func checkPositive(s string) error {
	if d, err := time.ParseDuration(s); err != nil || d <= 0 {
		return fmt.Errorf("must be positive")
	}
	return nil
}

// Log levels of the original (logrus) and what they are in netd.
var logLevels = map[string]slog.Level{
	"panic": slog.LevelError, "fatal": slog.LevelError, "error": slog.LevelError,
	"warn": slog.LevelWarn, "warning": slog.LevelWarn, "info": slog.LevelInfo,
	"debug": slog.LevelDebug, "trace": slog.LevelDebug,
}

// CheckLogLevel: a logrus level.
func CheckLogLevel(s string) error {
	if _, ok := logLevels[strings.ToLower(s)]; !ok {
		return fmt.Errorf("must be panic, fatal, error, warn, info, debug or trace")
	}
	return nil
}

// controllers of the original binary; other names are its groups.
var seedControllers = map[string]bool{RoleBroker: true, RoleRouter: true}

func checkControllers(s string) error {
	for _, c := range strings.Split(s, ",") {
		if err := CheckDNSLabel(strings.TrimSpace(c)); err != nil {
			return fmt.Errorf("controller %q: %w", c, err)
		}
	}
	return nil
}

// SeedProcessFlags are the original controller manager's process flags
// that netd broker and netd router honour: --log-level (-D), --cpuprofile,
// --version and --controllers.
type SeedProcessFlags struct {
	LogLevel    string
	CPUProfile  string
	Version     bool
	Controllers string
}

// Register registers the flags (the short forms come with RegisterSeed).
func (p *SeedProcessFlags) Register(fs *flag.FlagSet) {
	fs.Var(checked{&p.LogLevel, CheckLogLevel}, "log-level", "log `level`: error, warn, info or debug (the original's logrus levels panic, fatal and trace are error, error and debug); -v is debug")
	fs.StringVar(&p.CPUProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	fs.BoolVar(&p.Version, "version", false, "print the version and exit")
	fs.Var(checked{&p.Controllers, checkControllers}, "controllers", "the original's comma-separated `controllers` to run: must select this role (or all); the netd command is the controller")
}

// Level is the log level --log-level asks for (ok false: not set).
func (p *SeedProcessFlags) Level() (slog.Level, bool) {
	l, ok := logLevels[strings.ToLower(p.LogLevel)]
	return l, ok
}

// Validate checks that --controllers selects the role: a list that names
// only the original's other controller is for the other netd role.
func (p *SeedProcessFlags) Validate(role string) error {
	if p.Controllers == "" {
		return nil
	}
	var others []string
	for _, c := range strings.Split(p.Controllers, ",") {
		c = strings.TrimSpace(c)
		if c == role || c == "all" || !seedControllers[c] {
			return nil // the role, all, or a group of the original's
		}
		others = append(others, c)
	}
	return fmt.Errorf("--controllers %q does not select the %s controller: this is netd %s; run netd %s instead", p.Controllers, role, role, others[0])
}

// Warnings: --controllers naming controllers besides the role's.
func (p *SeedProcessFlags) Warnings(role string) []string {
	var w []string
	for _, c := range strings.Split(p.Controllers, ",") {
		c = strings.TrimSpace(c)
		switch {
		case c == "all":
			w = append(w, fmt.Sprintf("--controllers %s: netd %s runs the %s controller only; the other role is its own netd command (netd broker: the gateway Deployment, netd router: the DaemonSet)", p.Controllers, role, role))
		case seedControllers[c] && c != role:
			w = append(w, fmt.Sprintf("--controllers %s: netd %s runs the %s controller only; the %s controller is netd %s", p.Controllers, role, role, c, c))
		}
	}
	return w
}

// checked is a string flag whose value is checked when set.
type checked struct {
	p     *string
	check func(string) error
}

func (c checked) String() string {
	if c.p == nil {
		return ""
	}
	return *c.p
}

func (c checked) Set(s string) error {
	if s != "" {
		if err := c.check(s); err != nil {
			return err
		}
	}
	*c.p = s
	return nil
}

// Well-known routing tables (linux/rtnetlink.h).
const (
	tableDefault = 253
	tableMain    = 254
	tableLocal   = 255
)

func checkRouteTable(s string) error {
	n, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		return fmt.Errorf("not a table number")
	}
	if err := CheckRouteTable(int(n), 1); err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), fmt.Sprintf("--route-table %d ", n)))
	}
	return nil
}

// CheckRouteTable checks --route-table (0 is main) and, with a table other
// than main, --rule-priority: the rule must come before the main table's
// (32766).
func CheckRouteTable(table, priority int) error {
	switch {
	case table < 0 || int64(table) > 1<<32-1:
		return fmt.Errorf("--route-table %d: must be 0 (main) or a table number", table)
	case table == tableLocal || table == tableDefault:
		return fmt.Errorf("--route-table %d is a reserved table (local or default)", table)
	}
	if table != 0 && table != tableMain && (priority < 1 || priority > 32765) {
		return fmt.Errorf("--rule-priority %d: must be between 1 and 32765 (before the main table's rule)", priority)
	}
	return nil
}
