package mesh

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/kubelink/kubelink/api/v1alpha1"
)

// Options describe the default mesh for clusters without a LocalLink for it
// (flags of netd, options of the CoreDNS plugin), and the local cluster's DNS.
type Options struct {
	// ClusterName is the local cluster's name in the default mesh.
	ClusterName string
	// LinkAddress is the local link address with the mesh netmask; it
	// defines the default mesh's network. Without it (and without a
	// LocalLink) there is no default mesh.
	LinkAddress netip.Prefix
	// Domain is the default mesh's DNS domain (default "kubelink").
	Domain string
	// GlobalDNS is the mesh-global DNS service of the default mesh.
	GlobalDNS netip.Addr
	// ServiceCIDR is the local service CIDR of the default mesh.
	ServiceCIDR netip.Prefix
	// ClusterDomain is the local cluster domain (default cluster.local).
	ClusterDomain string
	// LocalDNS is the local cluster DNS (default: the 10th address of the
	// local service CIDR).
	LocalDNS netip.Addr
}

// Mesh is one mesh the local cluster is a member of.
type Mesh struct {
	// Name is "" for the default mesh.
	Name string
	// Domain is the mesh DNS domain, lower case, without trailing dot.
	Domain string
	// Network is the mesh CIDR.
	Network   netip.Prefix
	GlobalDNS netip.Addr
	// Local is the local cluster's link; its Cluster may be empty for a
	// default mesh configured without a cluster name.
	Local *Link
	// Links are the usable foreign links, sorted by cluster name.
	Links []*Link
}

// Link returns the usable link (local or foreign) of a cluster, or nil.
func (m *Mesh) Link(cluster string) *Link {
	if m.Local != nil && m.Local.Cluster == cluster && cluster != "" {
		return m.Local
	}
	i := sort.Search(len(m.Links), func(i int) bool { return m.Links[i].Cluster >= cluster })
	if i < len(m.Links) && m.Links[i].Cluster == cluster {
		return m.Links[i]
	}
	return nil
}

// Set is the outcome of Build: every mesh, and every link with its verdict.
type Set struct {
	Meshes map[string]*Mesh
	Links  map[string]*Link
}

// Sorted returns all links sorted by object name.
func (s *Set) Sorted() []*Link {
	out := make([]*Link, 0, len(s.Links))
	for _, l := range s.Links {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Usable returns the usable foreign links of all meshes, sorted by name.
func (s *Set) Usable() []*Link {
	var out []*Link
	for _, l := range s.Sorted() {
		if !l.Local && l.Verdict.OK() {
			out = append(out, l)
		}
	}
	return out
}

// Build parses the links, builds the meshes and judges every link. It is a
// pure function of its inputs: the same objects give the same verdicts
// whatever their order, so concurrent consumers agree.
func Build(objs []*v1alpha1.KubeLink, opts Options) *Set {
	s := &Set{Meshes: map[string]*Mesh{}, Links: map[string]*Link{}}
	var links []*Link
	for _, o := range objs {
		l, err := ParseLink(o)
		if err != nil {
			l.Verdict = Verdict{v1alpha1.StateInvalid, err.Error()}
		}
		s.Links[l.Name] = l
	}
	for _, l := range s.Links {
		links = append(links, l)
	}
	// Oldest first: on any conflict the link that was there first keeps
	// working and the newcomer is marked.
	sort.Slice(links, func(i, j int) bool { return older(links[i], links[j]) })

	s.buildMeshes(links, opts)
	indexes := map[*Mesh]*admitted{}
	for _, l := range links {
		if l.Local || !l.Verdict.OK() {
			continue
		}
		m := s.Meshes[l.Mesh]
		if m == nil {
			l.Verdict = Verdict{v1alpha1.StateStale, noMeshMessage(l.Mesh)}
			continue
		}
		idx := indexes[m]
		if idx == nil {
			idx = newAdmitted()
			indexes[m] = idx
		}
		l.Verdict = m.admit(l, idx)
	}
	s.checkGateways(links)
	for _, m := range s.Meshes {
		sort.Slice(m.Links, func(i, j int) bool { return m.Links[i].Cluster < m.Links[j].Cluster })
	}
	return s
}

func noMeshMessage(mesh string) string {
	if mesh == "" {
		return "the default mesh is not configured (no LocalLink without mesh prefix and no local link address)"
	}
	return fmt.Sprintf("mesh %q has no LocalLink", mesh)
}

func older(a, b *Link) bool {
	ta, tb := creation(a), creation(b)
	if !ta.Equal(tb) {
		return ta.Before(tb)
	}
	return a.Name < b.Name
}

func creation(l *Link) time.Time {
	if l.Object == nil {
		return time.Time{}
	}
	return l.Object.CreationTimestamp.Time
}

func (s *Set) buildMeshes(links []*Link, opts Options) {
	for _, l := range links {
		if !l.Local || !l.Verdict.OK() {
			continue
		}
		if m := s.Meshes[l.Mesh]; m != nil {
			l.Verdict = Verdict{v1alpha1.StateInvalid, fmt.Sprintf("mesh %q is already defined by LocalLink %q", meshLabel(l.Mesh), m.Local.Name)}
			continue
		}
		m := &Mesh{Name: l.Mesh, Domain: l.meshDomain, Network: l.Network, GlobalDNS: l.globalDNS, Local: l}
		if m.Domain == "" {
			m.Domain = defaultDomain(opts.Domain)
		}
		if l.Network.Bits() == l.Address.BitLen() {
			l.Verdict = Verdict{v1alpha1.StateInvalid, fmt.Sprintf("spec.clusterAddress %s must carry the mesh netmask, e.g. /24", l.Address)}
			continue
		}
		l.ClusterDomain = defaultString(NormalizeDomain(opts.ClusterDomain), v1alpha1.DefaultClusterDomain)
		l.DNSIP = opts.LocalDNS
		if !l.DNSIP.IsValid() {
			l.DNSIP = NthAddress(l.CIDR, 10)
		}
		s.Meshes[l.Mesh] = m
	}
	if _, ok := s.Meshes[""]; !ok && opts.LinkAddress.IsValid() {
		local := &Link{
			Name:          opts.ClusterName,
			Cluster:       opts.ClusterName,
			Local:         true,
			Address:       opts.LinkAddress.Addr(),
			Network:       opts.LinkAddress.Masked(),
			CIDR:          opts.ServiceCIDR.Masked(),
			ClusterDomain: defaultString(NormalizeDomain(opts.ClusterDomain), v1alpha1.DefaultClusterDomain),
			DNSIP:         opts.LocalDNS,
		}
		if !opts.ServiceCIDR.IsValid() {
			local.CIDR = netip.Prefix{}
		}
		if !local.DNSIP.IsValid() {
			local.DNSIP = NthAddress(local.CIDR, 10)
		}
		s.Meshes[""] = &Mesh{Domain: defaultDomain(opts.Domain), Network: local.Network, GlobalDNS: opts.GlobalDNS, Local: local}
	}
}

// admitted indexes what the links admitted to a mesh so far occupy, so
// admit answers "does anything conflict?" with map lookups instead of a
// walk over every admitted link (quadratic at a thousand links). Only when
// something does, the walk runs to find the first conflict and word it.
type admitted struct {
	// addrs are the link addresses.
	addrs map[netip.Addr]bool
	// egress are the (masked) egress prefixes.
	egress map[netip.Prefix]bool
	// routes are the (masked) routes; around holds every prefix that
	// contains one of them (the routes and all their shorter prefixes).
	routes, around map[netip.Prefix]bool
}

func newAdmitted() *admitted {
	return &admitted{addrs: map[netip.Addr]bool{}, egress: map[netip.Prefix]bool{}, routes: map[netip.Prefix]bool{}, around: map[netip.Prefix]bool{}}
}

func (a *admitted) add(l *Link) {
	a.addrs[l.Address] = true
	for _, q := range l.Egress {
		a.egress[q.Masked()] = true
	}
	for _, q := range l.Routes() {
		a.routes[q.Masked()] = true
		for b := q.Bits(); b >= 0; b-- {
			p := netip.PrefixFrom(q.Addr(), b).Masked()
			if a.around[p] {
				break // its shorter prefixes are in already
			}
			a.around[p] = true
		}
	}
}

// inEgress reports whether an egress prefix contains addr.
func (a *admitted) inEgress(addr netip.Addr) bool {
	if len(a.egress) == 0 || !addr.IsValid() {
		return false
	}
	for b := addr.BitLen(); b >= 0; b-- {
		if a.egress[netip.PrefixFrom(addr, b).Masked()] {
			return true
		}
	}
	return false
}

// overlapsRoute reports whether p overlaps a route: a route contains p, or
// p contains a route.
func (a *admitted) overlapsRoute(p netip.Prefix) bool {
	if !p.IsValid() {
		return false
	}
	if a.around[p.Masked()] {
		return true
	}
	for b := p.Bits(); b >= 0; b-- {
		if a.routes[netip.PrefixFrom(p.Addr(), b).Masked()] {
			return true
		}
	}
	return false
}

// admit checks a foreign link against the mesh and the links admitted
// before it (indexed in idx, which it updates).
func (m *Mesh) admit(l *Link, idx *admitted) Verdict {
	invalid := func(format string, args ...any) Verdict {
		return Verdict{v1alpha1.StateInvalid, fmt.Sprintf(format, args...)}
	}
	if !m.Network.Contains(l.Address) {
		return invalid("link address %s is outside the mesh network %s", l.Address, m.Network)
	}
	if l.Network.Bits() != m.Network.Bits() {
		return invalid("spec.clusterAddress netmask /%d differs from the mesh netmask /%d", l.Network.Bits(), m.Network.Bits())
	}
	if l.Address == m.Network.Addr() {
		return invalid("link address %s is the mesh network address", l.Address)
	}
	if m.Local != nil && l.Address == m.Local.Address {
		return invalid("link address %s is the local cluster's link address", l.Address)
	}
	if m.Local != nil && l.Cluster == m.Local.Cluster {
		return invalid("cluster name %q is the local cluster's name in mesh %q", l.Cluster, meshLabel(m.Name))
	}
	if idx.addrs[l.Address] || idx.inEgress(l.Address) {
		for _, o := range m.Links {
			if o.Address == l.Address {
				return invalid("link address %s is already used by link %q", l.Address, o.Name)
			}
			for _, q := range o.Egress {
				if q.Contains(l.Address) {
					return invalid("link address %s is inside spec.egress %s of link %q", l.Address, q, o.Name)
				}
			}
		}
	}
	for _, p := range l.Routes() {
		if p.Overlaps(m.Network) {
			// Only egress may reach into the mesh network: addresses of
			// the cluster's MeshServices, which are not link addresses.
			if p == l.CIDR || p.Bits() <= m.Network.Bits() {
				return invalid("CIDR %s overlaps the mesh network %s", p, m.Network)
			}
			if p.Contains(m.Network.Addr()) {
				return invalid("spec.egress %s contains the mesh network address", p)
			}
			if m.Local != nil && p.Contains(m.Local.Address) {
				return invalid("spec.egress %s contains the local link address %s", p, m.Local.Address)
			}
			if p.Contains(l.Address) {
				return invalid("spec.egress %s contains the link's own address %s", p, l.Address)
			}
			for _, o := range m.Links {
				if p.Contains(o.Address) {
					return invalid("spec.egress %s contains the link address of %q", p, o.Name)
				}
			}
		}
		if m.Local != nil && m.Local.CIDR.IsValid() && p.Overlaps(m.Local.CIDR) {
			return invalid("CIDR %s overlaps the local service CIDR %s", p, m.Local.CIDR)
		}
		if !idx.overlapsRoute(p) {
			continue
		}
		for _, o := range m.Links {
			for _, q := range o.Routes() {
				if p.Overlaps(q) {
					return invalid("CIDR %s overlaps %s of link %q", p, q, o.Name)
				}
			}
		}
	}
	m.Links = append(m.Links, l)
	idx.add(l)
	return Verdict{}
}

// checkGateways resolves gatewayLink references: a missing or unusable
// gateway makes a link Stale (it may come back), a cycle makes every link on
// it Invalid.
func (s *Set) checkGateways(links []*Link) {
	for _, l := range links {
		if l.GatewayLink == "" || !l.Verdict.OK() {
			continue
		}
		// Walk the chain; a revisit means a cycle.
		seen := map[*Link]int{}
		var chain []*Link
		cur := l
		for cur != nil && cur.GatewayLink != "" {
			if i, ok := seen[cur]; ok {
				cycle := chain[i:]
				names := make([]string, 0, len(cycle)+1)
				for _, c := range cycle {
					names = append(names, c.Name)
				}
				names = append(names, cycle[0].Name)
				msg := "spec.gatewayLink cycle: " + strings.Join(names, " -> ")
				for _, c := range cycle {
					c.Verdict = Verdict{v1alpha1.StateInvalid, msg}
				}
				break
			}
			seen[cur] = len(chain)
			chain = append(chain, cur)
			cur = s.gateway(cur)
		}
	}
	// A second pass marks the links whose gateway is unusable; repeat until
	// nothing changes because staleness propagates along chains.
	for changed := true; changed; {
		changed = false
		for _, l := range links {
			if l.GatewayLink == "" || !l.Verdict.OK() {
				continue
			}
			g := s.gateway(l)
			var v Verdict
			switch {
			case g == nil:
				v = Verdict{v1alpha1.StateStale, fmt.Sprintf("gateway link %q does not exist", l.GatewayLink)}
			case g.Local:
				v = Verdict{v1alpha1.StateInvalid, fmt.Sprintf("gateway link %q is the LocalLink", l.GatewayLink)}
			case g.Mesh != l.Mesh:
				v = Verdict{v1alpha1.StateInvalid, fmt.Sprintf("gateway link %q belongs to another mesh", l.GatewayLink)}
			case !g.Verdict.OK():
				v = Verdict{v1alpha1.StateStale, fmt.Sprintf("gateway link %q is not usable: %s", l.GatewayLink, g.Verdict.Message)}
			default:
				continue
			}
			l.Verdict, changed = v, true
			if m := s.Meshes[l.Mesh]; m != nil {
				m.remove(l)
			}
		}
	}
	for _, l := range links {
		if !l.Verdict.OK() {
			if m := s.Meshes[l.Mesh]; m != nil {
				m.remove(l)
			}
		}
	}
}

// gateway resolves a gatewayLink: the object name, else the cluster name in
// the link's own mesh.
func (s *Set) gateway(l *Link) *Link {
	if g, ok := s.Links[l.GatewayLink]; ok {
		return g
	}
	if g, ok := s.Links[v1alpha1.JoinName(l.Mesh, l.GatewayLink)]; ok {
		return g
	}
	return nil
}

func (m *Mesh) remove(l *Link) {
	for i, o := range m.Links {
		if o == l {
			m.Links = append(m.Links[:i], m.Links[i+1:]...)
			return
		}
	}
}

func meshLabel(name string) string {
	if name == "" {
		return "(default)"
	}
	return name
}

func defaultDomain(d string) string {
	return defaultString(NormalizeDomain(d), v1alpha1.DefaultMeshDomain)
}

func defaultString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
