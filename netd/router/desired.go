package router

import (
	"net/netip"
	"slices"

	"github.com/kubelink/kubelink/api/mesh"
)

// Destinations are the prefixes routed to the gateway: every mesh's
// network and every usable foreign link's service CIDR and egress CIDRs,
// deduplicated and sorted.
func Destinations(set *mesh.Set) []netip.Prefix {
	seen := map[netip.Prefix]bool{}
	var out []netip.Prefix
	add := func(p netip.Prefix) {
		p = p.Masked()
		if !p.IsValid() || !p.Addr().Is4() || seen[p] {
			return
		}
		seen[p] = true
		out = append(out, p)
	}
	for _, m := range set.Meshes {
		if m.Local != nil && m.Network.IsValid() {
			add(m.Network)
		}
	}
	for _, l := range set.Usable() {
		for _, p := range l.Routes() {
			add(p)
		}
	}
	slices.SortFunc(out, compareByAddrShorterFirst)
	return out
}

// compareByAddrShorterFirst orders prefixes by address, then shorter
// first (a stable order for routes and the datafile).
func compareByAddrShorterFirst(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// Nexthop is how the gateway is reached: the gateway address, the device
// and whether the gateway is to be taken as on that device's link although
// no connected subnet covers it.
type Nexthop struct {
	Gw        netip.Addr
	LinkIndex int
	OnLink    bool
	// Outer is the gateway's address on the node network when Gw is its
	// inner address in a VXLAN (zero otherwise); it is not part of the
	// route, but a destination containing it would loop too.
	Outer netip.Addr
}

// Route is one route the router wants in its table.
type Route struct {
	Dst netip.Prefix
	Nexthop
}

// Plan turns destinations into routes via the nexthop. A destination that
// contains the gateway itself is left out: routing the gateway through
// itself would loop (with VXLAN: containing its inner or outer address).
// The left-out destinations are returned too.
func Plan(dsts []netip.Prefix, nh Nexthop) (routes []Route, skipped []netip.Prefix) {
	for _, d := range dsts {
		if d.Contains(nh.Gw) || nh.Outer.IsValid() && d.Contains(nh.Outer) {
			skipped = append(skipped, d)
			continue
		}
		routes = append(routes, Route{Dst: d, Nexthop: nh})
	}
	return routes, skipped
}
