// Package routes keeps the tunnel device's addresses and the routes into it
// in the kernel, via netlink. Routes carry netd's own protocol number, so
// stale ones are found and removed while routes of anyone else are never
// touched.
package routes

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Protocol marks routes owned by netd (rtnetlink protocol number; the
// values below 20 are reserved for the kernel and routing daemons use the
// well-known ones listed in /etc/iproute2/rt_protos).
const Protocol netlink.RouteProtocol = 97

// Route is one desired route into the device.
type Route struct {
	Dst netip.Prefix
	// Src is the preferred source (the local link address of the mesh).
	Src netip.Addr
}

// Manager owns the addresses of one device and netd's routes through that
// device in one table; routes of protocol 97 through other devices belong
// to other broker instances and are left alone.
type Manager struct {
	Device string
	// Table is the routing table (0 = main).
	Table int
	// RulePriority is the priority of the rule that looks up Table (only
	// with a table other than main).
	RulePriority int
}

// Changes counts what a Sync changed.
type Changes struct{ Added, Removed int }

// Sync makes the device up, its addresses exactly addrs (each assigned as a
// host address without prefix route) and netd's routes exactly routes.
func (m *Manager) Sync(addrs []netip.Addr, routes []Route) (Changes, error) {
	var ch Changes
	// One netlink socket for the whole sync: the package-level calls open
	// (and close) a socket per request, a thousand of them when a mesh of
	// a thousand links converges. It is opened in the calling thread's
	// network namespace, as those would be.
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return ch, fmt.Errorf("opening a netlink socket: %w", err)
	}
	defer h.Close()
	link, err := h.LinkByName(m.Device)
	if err != nil {
		return ch, fmt.Errorf("device %s: %w", m.Device, err)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(link); err != nil {
			return ch, fmt.Errorf("setting %s up: %w", m.Device, err)
		}
		ch.Added++
	}
	if err := m.syncAddrs(h, link, addrs, &ch); err != nil {
		return ch, err
	}
	if err := m.syncRule(h, &ch); err != nil {
		return ch, err
	}
	return ch, m.syncRoutes(h, link, routes, &ch)
}

func (m *Manager) table() int {
	if m.Table == 0 {
		return unix.RT_TABLE_MAIN
	}
	return m.Table
}

func (m *Manager) syncAddrs(h *netlink.Handle, link netlink.Link, addrs []netip.Addr, ch *Changes) error {
	have, err := h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("listing addresses of %s: %w", m.Device, err)
	}
	want := map[netip.Addr]bool{}
	for _, a := range addrs {
		want[a] = true
	}
	for _, a := range have {
		ip, _ := netip.AddrFromSlice(a.IP.To4())
		ones, _ := a.Mask.Size()
		if want[ip] && ones == 32 {
			delete(want, ip)
			continue
		}
		if err := h.AddrDel(link, &a); err != nil {
			return fmt.Errorf("removing address %s from %s: %w", a.IPNet, m.Device, err)
		}
		ch.Removed++
	}
	for _, a := range addrs {
		if !want[a] {
			continue
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}, Flags: unix.IFA_F_NOPREFIXROUTE}
		if err := h.AddrAdd(link, addr); err != nil {
			return fmt.Errorf("adding address %s to %s: %w", a, m.Device, err)
		}
		ch.Added++
	}
	return nil
}

func (m *Manager) syncRule(h *netlink.Handle, ch *Changes) error {
	if m.table() == unix.RT_TABLE_MAIN {
		return nil
	}
	rules, err := h.RuleList(netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("listing rules: %w", err)
	}
	for _, r := range rules {
		if r.Table == m.table() && r.Priority == m.RulePriority {
			return nil
		}
	}
	r := netlink.NewRule()
	r.Table = m.table()
	r.Priority = m.RulePriority
	r.Family = netlink.FAMILY_V4
	if err := h.RuleAdd(r); err != nil {
		return fmt.Errorf("adding rule to table %d: %w", m.table(), err)
	}
	ch.Added++
	return nil
}

// List returns netd's routes in its table.
func (m *Manager) List() ([]netlink.Route, error) {
	return m.list(nil)
}

// list lists through h (nil: a socket of its own).
func (m *Manager) list(h *netlink.Handle) ([]netlink.Route, error) {
	list := netlink.RouteListFiltered
	if h != nil {
		list = h.RouteListFiltered
	}
	rs, err := list(netlink.FAMILY_V4,
		&netlink.Route{Table: m.table(), Protocol: Protocol},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return nil, fmt.Errorf("listing routes: %w", err)
	}
	return rs, nil
}

func (m *Manager) syncRoutes(h *netlink.Handle, link netlink.Link, routes []Route, ch *Changes) error {
	have, err := m.list(h)
	if err != nil {
		return err
	}
	want := map[netip.Prefix]Route{}
	for _, r := range routes {
		want[r.Dst.Masked()] = r
	}
	for _, r := range have {
		if r.LinkIndex != link.Attrs().Index {
			// Another device's route: a second broker instance (e.g.
			// WireGuard and bridge side by side) owns it.
			continue
		}
		dst := prefixOf(r.Dst)
		src, _ := netip.AddrFromSlice(r.Src.To4())
		if w, ok := want[dst]; ok && r.LinkIndex == link.Attrs().Index && src == w.Src {
			delete(want, dst)
			continue
		}
		if err := h.RouteDel(&r); err != nil {
			return fmt.Errorf("removing route %s: %w", dst, err)
		}
		ch.Removed++
	}
	for _, r := range routes {
		w, ok := want[r.Dst.Masked()]
		if !ok {
			continue
		}
		nr := &netlink.Route{
			LinkIndex: link.Attrs().Index,
			Dst:       &net.IPNet{IP: w.Dst.Masked().Addr().AsSlice(), Mask: net.CIDRMask(w.Dst.Bits(), 32)},
			Table:     m.table(),
			Protocol:  Protocol,
			Scope:     netlink.SCOPE_LINK,
		}
		if w.Src.IsValid() {
			nr.Src = w.Src.AsSlice()
		}
		if err := h.RouteReplace(nr); err != nil {
			return fmt.Errorf("adding route %s via %s: %w", w.Dst, m.Device, err)
		}
		delete(want, r.Dst.Masked())
		ch.Added++
	}
	return nil
}

func prefixOf(n *net.IPNet) netip.Prefix {
	if n == nil {
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	a, _ := netip.AddrFromSlice(n.IP.To4())
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a, ones)
}
