// Package aggregate is the pure planner of `netd sync` (issue #13 item 3):
// from one local Service and what every remote cluster knows about the
// same-named Service it computes the EndpointSlices that should exist
// locally, so kube-proxy balances over local and remote endpoints. It does no
// I/O; the caller reads the snapshots, calls Desired, then Diff, and applies.
package aggregate

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubelink/kubelink/api/synced"
)

const (
	// ManagedBy is our value of discoveryv1.LabelManagedBy (see package
	// api/synced); Diff only ever touches slices carrying it.
	ManagedBy = synced.ManagedBy
	// LabelSourceCluster names the remote cluster a slice was built from.
	LabelSourceCluster = synced.LabelSourceCluster
	// MaxEndpoints per slice, the EndpointSlice controller's default: larger
	// groups are split into several slices.
	MaxEndpoints = 1000

	// maxNameLen keeps slice names DNS labels, as the EndpointSlice
	// controller does, although the API would accept a 253-char subdomain.
	maxNameLen = 63
	// hashLen hex digits (40 bits) of SHA-256 make an accidental collision
	// between slices of one namespace negligible.
	hashLen = 10
)

// AddressMode says which addresses of a remote cluster become local endpoints.
type AddressMode string

const (
	// ModePod uses the remote pod IPs; the pod networks must be routable.
	ModePod AddressMode = "pod"
	// ModeService uses the remote ClusterIP, routed through the mesh.
	ModeService AddressMode = "service"
)

// LocalService is the local Service the slices are attached to.
type LocalService struct {
	Namespace string
	Name      string
	UID       types.UID
	Ports     []corev1.ServicePort
	Headless  bool
}

// RemoteService is a remote cluster's view of the same-named Service.
type RemoteService struct {
	// ClusterIPs as in spec.clusterIPs; empty or "None" for headless.
	ClusterIPs []string
	Ports      []corev1.ServicePort
	Headless   bool
}

// Cluster is one remote cluster with its view of the Service.
type Cluster struct {
	Name string
	// Kind is the kind of link the cluster is followed through
	// (synced.KindClusterLink or synced.KindKubeLink); it labels the slices.
	Kind    string
	Mode    AddressMode
	Healthy bool
	// Service is nil when the remote cluster has no such Service.
	Service *RemoteService
	// Slices are the remote EndpointSlices of the Service.
	Slices []*discoveryv1.EndpointSlice
}

// Skip records a cluster that contributes no slices, and why.
type Skip struct {
	Cluster string
	Reason  string
}

// Plan is the outcome of Desired.
type Plan struct {
	// Slices are sorted by name.
	Slices []*discoveryv1.EndpointSlice
	// Skipped clusters, in input order.
	Skipped []Skip
}

type family string

const (
	ipv4 family = "ipv4"
	ipv6 family = "ipv6"
)

func (f family) addressType() discoveryv1.AddressType {
	if f == ipv6 {
		return discoveryv1.AddressTypeIPv6
	}
	return discoveryv1.AddressTypeIPv4
}

// familyOf decides the family from the address itself rather than the
// remote slice's addressType, so a mislabelled or FQDN slice cannot put an
// address into a slice of the wrong type (which the API would reject).
func familyOf(addr string) (family, bool) {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return "", false
	}
	if ip.Is4() || ip.Is4In6() {
		return ipv4, true
	}
	return ipv6, true
}

// Desired computes the local EndpointSlices for local from clusters.
func Desired(local LocalService, clusters []Cluster) Plan {
	var plan Plan
	for _, c := range clusters {
		slices, reason := clusterSlices(local, c)
		if reason != "" {
			plan.Skipped = append(plan.Skipped, Skip{Cluster: c.Name, Reason: reason})
			continue
		}
		plan.Slices = append(plan.Slices, slices...)
	}
	sort.Slice(plan.Slices, func(i, j int) bool { return plan.Slices[i].Name < plan.Slices[j].Name })
	return plan
}

// group collects the endpoints of one future slice.
type group struct {
	fam       family
	ports     []discoveryv1.EndpointPort
	endpoints map[string]discoveryv1.Endpoint
}

func clusterSlices(local LocalService, c Cluster) ([]*discoveryv1.EndpointSlice, string) {
	if c.Service == nil {
		return nil, "the remote cluster has no Service " + local.Namespace + "/" + local.Name
	}
	var groups map[string]*group
	switch c.Mode {
	case ModePod:
		groups = podGroups(local, c)
	case ModeService:
		if c.Service.Headless || len(clusterIPs(c.Service)) == 0 {
			// A headless remote Service has no ClusterIP to route to, so
			// the pod IPs are the only addresses; this works only where
			// the remote pod network is routable from here.
			groups = podGroups(local, c)
		} else {
			groups = serviceGroups(local, c)
		}
	default:
		return nil, "unknown address mode " + string(c.Mode)
	}
	if len(groups) == 0 {
		return nil, ""
	}
	// Several groups of one family arise only in pod mode when remote slices
	// disagree on port numbers (a named targetPort resolving differently per
	// pod): a slice has one port list, so each variant needs its own slice
	// and the variant goes into the name.
	perFamily := map[family]int{}
	for _, g := range groups {
		perFamily[g.fam]++
	}
	var out []*discoveryv1.EndpointSlice
	for sig, g := range groups {
		variant := ""
		if perFamily[g.fam] > 1 {
			variant = sig
		}
		out = append(out, buildSlices(local, c, g, variant)...)
	}
	return out, ""
}

func clusterIPs(s *RemoteService) []string {
	var ips []string
	for _, ip := range s.ClusterIPs {
		if _, ok := familyOf(ip); ok {
			ips = append(ips, ip)
		}
	}
	return ips
}

// matchServicePort finds the remote Service port serving local port lp: a
// named local port by name, an unnamed one (only allowed on a single-port
// Service) by port number; the protocol must agree either way.
func matchServicePort(lp corev1.ServicePort, remote []corev1.ServicePort) (corev1.ServicePort, bool) {
	for _, rp := range remote {
		if protocol(rp.Protocol) != protocol(lp.Protocol) {
			continue
		}
		if lp.Name != "" && rp.Name == lp.Name {
			return rp, true
		}
		if lp.Name == "" && rp.Port == lp.Port {
			return rp, true
		}
	}
	return corev1.ServicePort{}, false
}

// protocol applies the API default, so an unset protocol matches TCP.
func protocol(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

// usable says whether a remote slice describes the remote Service's own
// endpoints. Slices we (netd sync in that cluster) wrote are skipped: copying
// them back would bounce endpoints between clusters forever.
func usable(local LocalService, s *discoveryv1.EndpointSlice) bool {
	if s == nil || s.Labels[discoveryv1.LabelManagedBy] == ManagedBy {
		return false
	}
	if n, ok := s.Labels[discoveryv1.LabelServiceName]; ok && n != local.Name {
		return false
	}
	return s.AddressType == discoveryv1.AddressTypeIPv4 || s.AddressType == discoveryv1.AddressTypeIPv6
}

// podGroups copies the remote pod endpoints. The slice ports are the remote
// slices' ports (target port numbers), renamed to the local port names,
// because kube-proxy matches slice ports to Service ports by name.
func podGroups(local LocalService, c Cluster) map[string]*group {
	groups := map[string]*group{}
	for _, rs := range c.Slices {
		if !usable(local, rs) {
			continue
		}
		var ports []discoveryv1.EndpointPort
		for _, lp := range local.Ports {
			rp, ok := matchServicePort(lp, c.Service.Ports)
			if !ok {
				continue // the remote lacks this port
			}
			for _, sp := range rs.Ports {
				if sp.Port == nil || name(sp.Name) != rp.Name || protocol(proto(sp.Protocol)) != protocol(lp.Protocol) {
					continue
				}
				ports = append(ports, endpointPort(lp, *sp.Port))
				break
			}
		}
		// A local Service with ports but none in common gets nothing from
		// this slice; a port-less (headless) Service takes the addresses.
		if len(local.Ports) > 0 && len(ports) == 0 {
			continue
		}
		sortPorts(ports)
		for _, ep := range rs.Endpoints {
			if len(ep.Addresses) == 0 {
				continue
			}
			fam, ok := familyOf(ep.Addresses[0])
			if !ok {
				continue
			}
			g := groupFor(groups, fam, ports)
			add(g, copyEndpoint(ep, c.Healthy))
		}
	}
	return groups
}

// serviceGroups makes one endpoint per remote ClusterIP with the remote
// Service's ports; its conditions summarise the remote endpoints.
func serviceGroups(local LocalService, c Cluster) map[string]*group {
	var ports []discoveryv1.EndpointPort
	for _, lp := range local.Ports {
		if rp, ok := matchServicePort(lp, c.Service.Ports); ok {
			ports = append(ports, endpointPort(lp, rp.Port))
		}
	}
	if len(local.Ports) > 0 && len(ports) == 0 {
		return nil
	}
	sortPorts(ports)
	var ready, serving, terminating bool
	for _, rs := range c.Slices {
		if !usable(local, rs) {
			continue
		}
		for _, ep := range rs.Endpoints {
			// nil ready/serving means ready (the API's "unknown").
			r := ep.Conditions.Ready == nil || *ep.Conditions.Ready
			s := r
			if ep.Conditions.Serving != nil {
				s = *ep.Conditions.Serving
			}
			ready = ready || r
			serving = serving || s
			terminating = terminating || (ep.Conditions.Terminating != nil && *ep.Conditions.Terminating)
		}
	}
	// Terminating only while nothing is ready, so kube-proxy's fallback to
	// serving-terminating endpoints applies to the whole remote Service.
	terminating = terminating && !ready
	groups := map[string]*group{}
	for _, ip := range clusterIPs(c.Service) {
		fam, _ := familyOf(ip)
		g := groupFor(groups, fam, ports)
		add(g, discoveryv1.Endpoint{
			Addresses: []string{ip},
			Conditions: discoveryv1.EndpointConditions{
				Ready:       ptr(ready && c.Healthy),
				Serving:     ptr(serving),
				Terminating: ptr(terminating),
			},
		})
	}
	return groups
}

func name(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func proto(p *corev1.Protocol) corev1.Protocol {
	if p == nil {
		return ""
	}
	return *p
}

func ptr[T any](v T) *T { return &v }

func endpointPort(lp corev1.ServicePort, port int32) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{
		Name:        ptr(lp.Name),
		Protocol:    ptr(protocol(lp.Protocol)),
		Port:        ptr(port),
		AppProtocol: lp.AppProtocol,
	}
}

func sortPorts(ports []discoveryv1.EndpointPort) {
	sort.Slice(ports, func(i, j int) bool {
		a, b := ports[i], ports[j]
		if name(a.Name) != name(b.Name) {
			return name(a.Name) < name(b.Name)
		}
		if proto(a.Protocol) != proto(b.Protocol) {
			return proto(a.Protocol) < proto(b.Protocol)
		}
		return *a.Port < *b.Port
	})
}

func portSignature(fam family, ports []discoveryv1.EndpointPort) string {
	var b strings.Builder
	b.WriteString(string(fam))
	for _, p := range ports {
		b.WriteString("|" + name(p.Name) + "/" + string(proto(p.Protocol)) + "/" + strconv.Itoa(int(*p.Port)))
	}
	return b.String()
}

func groupFor(groups map[string]*group, fam family, ports []discoveryv1.EndpointPort) *group {
	sig := portSignature(fam, ports)
	g, ok := groups[sig]
	if !ok {
		g = &group{fam: fam, ports: ports, endpoints: map[string]discoveryv1.Endpoint{}}
		groups[sig] = g
	}
	return g
}

// add keeps one endpoint per address: during a remote rollover the same pod
// may briefly appear in two slices, and the API rejects duplicates within a
// slice. The ready copy wins so a transient duplicate never hides a pod.
func add(g *group, ep discoveryv1.Endpoint) {
	key := ep.Addresses[0]
	if old, ok := g.endpoints[key]; ok && isReady(old) && !isReady(ep) {
		return
	}
	g.endpoints[key] = ep
}

func isReady(ep discoveryv1.Endpoint) bool {
	return ep.Conditions.Ready == nil || *ep.Conditions.Ready
}

// copyEndpoint keeps addresses, conditions and hostname (headless DNS needs
// it). NodeName, zone, hints and targetRef name remote objects: kube-proxy
// would treat a remote pod on a node named like a local one as node-local,
// and topology hints of another cluster's zones mean nothing here.
func copyEndpoint(ep discoveryv1.Endpoint, healthy bool) discoveryv1.Endpoint {
	out := discoveryv1.Endpoint{
		Addresses: append([]string(nil), ep.Addresses...),
		Hostname:  copyPtr(ep.Hostname),
		Conditions: discoveryv1.EndpointConditions{
			Ready:       copyPtr(ep.Conditions.Ready),
			Serving:     copyPtr(ep.Conditions.Serving),
			Terminating: copyPtr(ep.Conditions.Terminating),
		},
	}
	if !healthy {
		// Not deleted, only not ready: kube-proxy stops sending new
		// connections there, and the endpoints return at once when the
		// cluster is healthy again.
		if out.Conditions.Serving == nil {
			out.Conditions.Serving = ptr(isReady(ep))
		}
		out.Conditions.Ready = ptr(false)
	}
	return out
}

func copyPtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// buildSlices builds the slices of one group: one, or several of at most
// MaxEndpoints endpoints each (in address order; the first keeps the plain
// name, the others add their part number to the name's variant).
func buildSlices(local LocalService, c Cluster, g *group, variant string) []*discoveryv1.EndpointSlice {
	eps := make([]discoveryv1.Endpoint, 0, len(g.endpoints))
	for _, ep := range g.endpoints {
		eps = append(eps, ep)
	}
	sort.Slice(eps, func(i, j int) bool { return addrLess(eps[i].Addresses[0], eps[j].Addresses[0]) })
	var out []*discoveryv1.EndpointSlice
	for part := 0; part == 0 || part*MaxEndpoints < len(eps); part++ {
		chunk := eps[part*MaxEndpoints : min(len(eps), (part+1)*MaxEndpoints)]
		v := variant
		if part > 0 {
			v = variant + "/part" + strconv.Itoa(part)
		}
		out = append(out, &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{
				Name:            SliceName(local.Namespace, local.Name, c.Name, string(g.fam), v),
				Namespace:       local.Namespace,
				Labels:          Labels(c, local.Name),
				OwnerReferences: []metav1.OwnerReference{ownerRef(local)},
			},
			AddressType: g.fam.addressType(),
			Endpoints:   append([]discoveryv1.Endpoint(nil), chunk...),
			Ports:       append([]discoveryv1.EndpointPort(nil), g.ports...),
		})
	}
	return out
}

// Labels are the labels of a slice of cluster c for the local Service
// service: the Service's, ours (managed-by twice: the EndpointSlice label
// and the cleanup label), the source cluster and kind, and svclink's
// cluster label for ClusterLinks.
func Labels(c Cluster, service string) map[string]string {
	l := map[string]string{
		discoveryv1.LabelServiceName: service,
		discoveryv1.LabelManagedBy:   ManagedBy,
		synced.LabelManagedBy:        synced.ManagerName,
		LabelSourceCluster:           c.Name,
	}
	if c.Kind != "" {
		l[synced.LabelSourceKind] = c.Kind
	}
	if c.Kind == synced.KindClusterLink {
		l[synced.LabelSvclinkCluster] = c.Name
	}
	return l
}

// ownerRef makes the local Service the controller of the slice, so deleting
// the Service garbage-collects the slices. BlockOwnerDeletion stays unset: it
// would need update rights on services/finalizers for no benefit here.
func ownerRef(local LocalService) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion: "v1",
		Kind:       "Service",
		Name:       local.Name,
		UID:        local.UID,
		Controller: ptr(true),
	}
}

func addrLess(a, b string) bool {
	x, errx := netip.ParseAddr(a)
	y, erry := netip.ParseAddr(b)
	if errx == nil && erry == nil {
		return x.Less(y)
	}
	return a < b
}

// SliceName names the slice of (namespace, service, cluster, family) and an
// optional port variant. The readable part "<service>-<cluster>-<family>" is
// always followed by a hash of the full tuple, cut to fit 63 characters:
// without the hash two tuples can meet on the same string ("a-b"+"c" and
// "a"+"b-c"), and a plain truncation lets long names that share a prefix
// overwrite each other (svclink's known issue).
func SliceName(namespace, service, cluster, fam, variant string) string {
	sum := sha256.Sum256([]byte(namespace + "\x00" + service + "\x00" + cluster + "\x00" + fam + "\x00" + variant))
	suffix := "-" + hex.EncodeToString(sum[:])[:hashLen]
	prefix := sanitize(service + "-" + cluster + "-" + fam)
	if len(prefix) > maxNameLen-len(suffix) {
		prefix = prefix[:maxNameLen-len(suffix)]
	}
	prefix = strings.Trim(prefix, "-")
	if prefix == "" {
		return suffix[1:]
	}
	return prefix + suffix
}

// sanitize lowers the readable part to DNS-label characters; uniqueness
// comes from the hash, so the mapping need not be injective.
func sanitize(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	return b.String()
}
