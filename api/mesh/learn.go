package mesh

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
)

// Rejected is a learned address that was not accepted, with the reason.
type Rejected struct {
	// Link is the KubeLink name the address was claimed for.
	Link    string
	Address netip.Addr
	Reason  string
}

func (r Rejected) String() string {
	return fmt.Sprintf("%s for link %q: %s", r.Address, r.Link, r.Reason)
}

// LearnServiceAddresses makes addresses of remote clusters' MeshServices
// routes of their links (Link.Learned), so that a MeshService address
// inside the mesh network needs no hand-written spec.egress (issue #13
// item 5). claims maps KubeLink object names to the addresses netd sync
// mirrored for them; reserved are addresses the local cluster serves
// itself (its own MeshServices), which stay local.
//
// The claims come from another cluster's API, so nothing is taken on
// trust: an address is accepted only for a usable foreign link, inside
// that link's mesh network, and only when it cannot take traffic away from
// anyone else. It must not be the network or broadcast address, a link
// address (local or of any link), inside the local service CIDR, a
// reserved address, or inside a route (service CIDR, egress) of another
// link; and exactly one link may claim it (two claimants both lose, so a
// member cannot hijack another's MeshService, only make it unreachable
// through the mesh until the conflict is gone). An address the link
// already routes (its own egress) is dropped silently. Everything refused
// is returned, sorted; the accepted addresses are sorted per link.
//
// It runs after Build, whose admission never sees learned addresses, and
// may run once per Set (a second call replaces the first's result).
func (s *Set) LearnServiceAddresses(claims map[string][]netip.Addr, reserved []netip.Addr) []Rejected {
	for _, l := range s.Links {
		l.Learned = nil
	}
	if len(claims) == 0 {
		return nil
	}
	linkAddr := map[netip.Addr]string{}
	for _, l := range s.Sorted() {
		if l.Address.IsValid() {
			if _, ok := linkAddr[l.Address]; !ok {
				linkAddr[l.Address] = l.Name
			}
		}
	}
	// routes indexes the destinations of every usable link (every mesh:
	// they share one tunnel device, whose allowed IPs must not overlap).
	routes := map[netip.Prefix]string{}
	for _, l := range s.Usable() {
		for _, p := range l.Routes() {
			routes[p.Masked()] = l.Name
		}
	}
	routedBy := func(a netip.Addr) (string, netip.Prefix) {
		for b := a.BitLen(); b >= 0; b-- {
			p := netip.PrefixFrom(a, b).Masked()
			if n, ok := routes[p]; ok {
				return n, p
			}
		}
		return "", netip.Prefix{}
	}
	isReserved := map[netip.Addr]bool{}
	for _, a := range reserved {
		isReserved[a.Unmap()] = true
	}

	var rejected []Rejected
	claimants := map[netip.Addr][]string{}
	for _, name := range sortedKeys(claims) {
		seen := map[netip.Addr]bool{}
		for _, a := range claims[name] {
			a = a.Unmap()
			if seen[a] {
				continue
			}
			seen[a] = true
			why, redundant := s.refuse(name, a, linkAddr, routedBy, isReserved)
			switch {
			case redundant:
			case why != "":
				rejected = append(rejected, Rejected{Link: name, Address: a, Reason: why})
			default:
				claimants[a] = append(claimants[a], name)
			}
		}
	}
	for a, names := range claimants {
		if len(names) > 1 {
			for _, n := range names {
				rejected = append(rejected, Rejected{Link: n, Address: a,
					Reason: fmt.Sprintf("claimed by several links (%v): none gets it", names)})
			}
			continue
		}
		l := s.Links[names[0]]
		l.Learned = append(l.Learned, netip.PrefixFrom(a, a.BitLen()))
	}
	for _, l := range s.Links {
		slices.SortFunc(l.Learned, func(x, y netip.Prefix) int { return x.Addr().Compare(y.Addr()) })
	}
	sort.Slice(rejected, func(i, j int) bool {
		if rejected[i].Link != rejected[j].Link {
			return rejected[i].Link < rejected[j].Link
		}
		return rejected[i].Address.Less(rejected[j].Address)
	})
	return rejected
}

// refuse says why a claim of link name on address a is refused ("" when it
// is not); redundant is set instead when the link routes a anyway.
func (s *Set) refuse(name string, a netip.Addr, linkAddr map[netip.Addr]string,
	routedBy func(netip.Addr) (string, netip.Prefix), reserved map[netip.Addr]bool) (why string, redundant bool) {
	l := s.Links[name]
	switch {
	case l == nil:
		return "no such KubeLink", false
	case l.Local:
		return "the link is a LocalLink", false
	case !l.Verdict.OK():
		return "the link is not usable: " + l.Verdict.Message, false
	case !a.IsValid() || a.Zone() != "":
		return "not a plain IP address", false
	}
	m := s.Meshes[l.Mesh]
	if m == nil {
		return "the link's mesh is not configured", false
	}
	if !m.Network.Contains(a) {
		return fmt.Sprintf("outside the mesh network %s (such addresses need spec.egress)", m.Network), false
	}
	if a == m.Network.Masked().Addr() {
		return "the mesh network address", false
	}
	if a.Is4() && m.Network.Bits() < 31 && a == lastAddr(m.Network) {
		return "the mesh broadcast address", false
	}
	if m.Local != nil && a == m.Local.Address {
		return "the local link address", false
	}
	if n, ok := linkAddr[a]; ok {
		return fmt.Sprintf("the link address of %q", n), false
	}
	if m.Local != nil && m.Local.CIDR.IsValid() && m.Local.CIDR.Contains(a) {
		return fmt.Sprintf("inside the local service CIDR %s", m.Local.CIDR), false
	}
	if reserved[a] {
		return "the address of a local MeshService", false
	}
	if n, p := routedBy(a); n != "" {
		if n == name {
			return "", true
		}
		return fmt.Sprintf("inside %s of link %q", p, n), false
	}
	return "", false
}

// lastAddr is the highest address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
