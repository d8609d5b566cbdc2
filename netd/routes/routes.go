// Package routes is netd's one route and rule manager, used by the broker
// (its device's addresses and routes, protocol 97) and the router (routes
// to the gateway, protocol 98). A Manager owns the routes of one rtnetlink
// protocol in one table — optionally only those through one device — and
// the policy rule `lookup <table>` that a table other than main needs. The
// rule carries the protocol too (FRA_PROTOCOL), so netd's routes and rules
// are found and removed by their tag while those of anyone else are never
// touched; what a Manager creates is also recorded (Record, Persist), so a
// restart with another table finds the old table's routes and rule.
package routes

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Protocol numbers of netd's routes and rules (rtnetlink; the values below
// 20 are reserved for the kernel, routing daemons use the well-known ones
// listed in /etc/iproute2/rt_protos).
const (
	// Protocol marks the broker's device routes and rule.
	Protocol netlink.RouteProtocol = 97
	// RouterProtocol marks the router's routes and rule.
	RouterProtocol netlink.RouteProtocol = 98
)

// tableMain is the kernel's main table.
const tableMain = unix.RT_TABLE_MAIN

// Route is one desired route.
type Route struct {
	Dst netip.Prefix
	// Src is the preferred source (the broker: the mesh's local link
	// address); optional.
	Src netip.Addr
	// Gw is the next hop; without one the route is a device route (scope
	// link).
	Gw netip.Addr
	// LinkIndex is the device (0: the Manager's Device).
	LinkIndex int
	// OnLink declares Gw on the device's link although no connected
	// subnet covers it.
	OnLink bool
}

// RouteRef names one route of a Manager (its table and destination).
type RouteRef struct {
	Table int          `json:"table"`
	Dst   netip.Prefix `json:"dst"`
}

// RuleRef names one rule of a Manager (`priority: lookup table`).
type RuleRef struct {
	Table    int `json:"table"`
	Priority int `json:"priority"`
}

// Record is what a Manager has created, as far as it knows.
type Record struct {
	Routes []RouteRef
	Rules  []RuleRef
}

// Changes is what one call wrote.
type Changes struct {
	Added, Replaced, Removed int
	// Conflicts are destinations held by somebody else's route (another
	// protocol or device, same metric); they are left alone.
	Conflicts []netip.Prefix
}

// Any reports whether anything was written.
func (c Changes) Any() bool { return c.Added+c.Replaced+c.Removed > 0 }

// Writes is the number of writes.
func (c Changes) Writes() int { return c.Added + c.Replaced + c.Removed }

// Manager keeps the routes of Protocol in Table (through Device, when
// set) and the rule looking up Table (when it is not main). Table and
// RulePriority may change between calls: the next Sync moves the routes
// and replaces the rule. A Manager is not safe for concurrent use.
type Manager struct {
	// Protocol tags the routes and the rule (Protocol or RouterProtocol).
	Protocol netlink.RouteProtocol
	// Device, when set, narrows ownership to the routes through that
	// device (a second broker instance with another device owns its own);
	// it is the default device of Routes without a LinkIndex.
	Device string
	// Table is the routing table (0 = main).
	Table int
	// RulePriority is the priority of the rule `lookup Table` (only with
	// a table other than main).
	RulePriority int
	// Handle is the netlink socket to work through (its network
	// namespace); nil: one socket per call, in the calling thread's
	// namespace.
	Handle *netlink.Handle
	// Persist, when set, stores the record: it is called before anything
	// recorded is created and after anything is removed, so the stored
	// record never claims less than the kernel holds.
	Persist func(Record) error

	rec        Record
	started    bool
	routeW     int64
	ruleW      int64
	lastRoutes int
}

// Restore starts from an earlier run's record (e.g. from a datafile).
func (m *Manager) Restore(r Record) {
	m.rec = Record{Routes: slices.Clone(r.Routes), Rules: slices.Clone(r.Rules)}
}

// Record is what the manager holds in the kernel, as far as it knows.
func (m *Manager) Record() Record {
	return Record{Routes: slices.Clone(m.rec.Routes), Rules: slices.Clone(m.rec.Rules)}
}

// RouteWrites counts route additions, replacements and deletions sent.
func (m *Manager) RouteWrites() int64 { return m.routeW }

// RuleWrites counts rule additions and deletions sent.
func (m *Manager) RuleWrites() int64 { return m.ruleW }

// Routes is the number of the manager's routes in Table after the last
// call.
func (m *Manager) Routes() int { return m.lastRoutes }

// Sync makes the manager's routes in Table exactly routes, adds the rule
// (a table other than main) and removes what the record holds or the
// kernel tags as ours that is not wanted: routes in other tables, other
// rules. Only differences are written: a second Sync writes nothing.
func (m *Manager) Sync(routes []Route) (Changes, error) {
	return m.run(func(s *session) error {
		return s.sync(routes, false)
	})
}

// Hold is Sync leaving the routes in Table as they are (e.g. the gateway
// is unknown for a moment); the rule and stale routes in other tables are
// still reconciled.
func (m *Manager) Hold() (Changes, error) {
	return m.run(func(s *session) error { return s.sync(nil, true) })
}

// RemoveAll removes every route of the manager (any table) and its rules —
// what a graceful shutdown leaves behind is nothing. A rule whose table
// still holds routes of the protocol through another device (a sibling
// broker's) stays for that sibling.
func (m *Manager) RemoveAll() (Changes, error) {
	return m.run(func(s *session) error { return s.removeAll() })
}

// SyncDevice sets Device up and makes its addresses exactly addrs (each a
// host address without prefix route), then Syncs the routes.
func (m *Manager) SyncDevice(addrs []netip.Addr, routes []Route) (Changes, error) {
	return m.run(func(s *session) error {
		if err := s.syncAddrs(addrs); err != nil {
			return err
		}
		return s.sync(routes, false)
	})
}

// session is one call's netlink socket, device and changes.
type session struct {
	m    *Manager
	nl   *netlink.Handle
	link netlink.Link // nil without Device or when it does not exist
	ch   Changes
}

func (m *Manager) run(fn func(*session) error) (Changes, error) {
	if m.Protocol == 0 {
		// Protocol 0 (unspec) would claim routes nobody tagged.
		return Changes{}, errors.New("routes: a Manager needs a Protocol")
	}
	s := &session{m: m, nl: m.Handle}
	if s.nl == nil {
		// One socket for the whole call: the package-level calls open one
		// per request, a thousand of them when a mesh of a thousand links
		// converges.
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return Changes{}, fmt.Errorf("opening a netlink socket: %w", err)
		}
		defer h.Close()
		s.nl = h
	}
	if m.Device != "" {
		link, err := s.nl.LinkByName(m.Device)
		switch {
		case err == nil:
			s.link = link
		case !isNotFound(err):
			return Changes{}, fmt.Errorf("device %s: %w", m.Device, err)
		}
	}
	err := fn(s)
	return s.ch, err
}

func (m *Manager) table() int {
	if m.Table == 0 {
		return tableMain
	}
	return m.Table
}

// wantRule is the rule the manager wants (nil in the main table).
func (m *Manager) wantRule() *RuleRef {
	if m.table() == tableMain {
		return nil
	}
	return &RuleRef{Table: m.table(), Priority: m.RulePriority}
}

func (m *Manager) save() error {
	normalize(&m.rec)
	if m.Persist == nil {
		return nil
	}
	return m.Persist(m.Record())
}

// normalize sorts and deduplicates a record.
func normalize(r *Record) {
	slices.SortFunc(r.Routes, func(a, b RouteRef) int {
		if a.Table != b.Table {
			return a.Table - b.Table
		}
		if c := a.Dst.Addr().Compare(b.Dst.Addr()); c != 0 {
			return c
		}
		return a.Dst.Bits() - b.Dst.Bits()
	})
	r.Routes = slices.Compact(r.Routes)
	slices.SortFunc(r.Rules, func(a, b RuleRef) int {
		if a.Table != b.Table {
			return a.Table - b.Table
		}
		return a.Priority - b.Priority
	})
	r.Rules = slices.Compact(r.Rules)
}

func (s *session) syncAddrs(addrs []netip.Addr) error {
	m := s.m
	if s.link == nil {
		return fmt.Errorf("device %s: %w", m.Device, unix.ENODEV)
	}
	if s.link.Attrs().Flags&net.FlagUp == 0 {
		if err := s.nl.LinkSetUp(s.link); err != nil {
			return fmt.Errorf("setting %s up: %w", m.Device, err)
		}
		s.ch.Added++
	}
	have, err := s.nl.AddrList(s.link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("listing addresses of %s: %w", m.Device, err)
	}
	want := map[netip.Addr]bool{}
	for _, a := range addrs {
		want[a] = true
	}
	var stale []netlink.Addr
	for _, a := range have {
		ip, _ := netip.AddrFromSlice(a.IP.To4())
		ones, _ := a.Mask.Size()
		if want[ip] && ones == 32 {
			delete(want, ip)
			continue
		}
		stale = append(stale, a)
	}
	// Add before removing: a device that loses its last IPv4 address
	// loses every route through it (the kernel disables IP on it).
	for _, a := range addrs {
		if !want[a] {
			continue
		}
		delete(want, a)
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}, Flags: unix.IFA_F_NOPREFIXROUTE}
		if err := s.nl.AddrAdd(s.link, addr); err != nil {
			return fmt.Errorf("adding address %s to %s: %w", a, m.Device, err)
		}
		s.ch.Added++
	}
	for _, a := range stale {
		if err := s.nl.AddrDel(s.link, &a); err != nil {
			return fmt.Errorf("removing address %s from %s: %w", a.IPNet, m.Device, err)
		}
		s.ch.Removed++
	}
	return nil
}

// ours reports whether a route of the protocol belongs to this manager:
// with a Device, only routes through it.
func (s *session) ours(r netlink.Route) bool {
	if r.Protocol != s.m.Protocol {
		return false
	}
	return s.m.Device == "" || (s.link != nil && r.LinkIndex == s.link.Attrs().Index)
}

// list lists the manager's routes in a table (0: every table).
func (s *session) list(table int) ([]netlink.Route, error) {
	if s.m.Device != "" && s.link == nil {
		// Routes through a device go with it.
		return nil, nil
	}
	rs, err := s.nl.RouteListFiltered(netlink.FAMILY_V4,
		&netlink.Route{Table: table, Protocol: s.m.Protocol},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return nil, fmt.Errorf("listing routes of protocol %d in table %d: %w", s.m.Protocol, table, err)
	}
	return slices.DeleteFunc(rs, func(r netlink.Route) bool { return !s.ours(r) }), nil
}

func (s *session) sync(want []Route, hold bool) error {
	m := s.m
	var errs []error
	if !hold {
		if err := s.syncRoutes(want); err != nil {
			errs = append(errs, err)
		}
	} else if rs, err := s.list(m.table()); err == nil {
		m.lastRoutes = len(rs)
	}
	if r := m.wantRule(); r != nil {
		if err := s.ensureRule(*r); err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.removeStale(m.table(), m.wantRule()); err != nil {
		errs = append(errs, err)
	}
	m.started = true
	if err := m.save(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (s *session) removeAll() error {
	var errs []error
	if err := s.syncRoutes(nil); err != nil {
		errs = append(errs, err)
	}
	if err := s.removeStale(s.m.table(), nil); err != nil {
		errs = append(errs, err)
	}
	if err := s.m.save(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// syncRoutes makes the manager's routes in its table exactly want.
func (s *session) syncRoutes(want []Route) error {
	m := s.m
	table := m.table()
	have, err := s.list(table)
	if err != nil {
		return err
	}
	if len(want) > 0 && m.Device != "" && s.link == nil {
		return fmt.Errorf("device %s: %w", m.Device, unix.ENODEV)
	}
	wanted := map[netip.Prefix]Route{}
	for _, r := range want {
		wanted[r.Dst.Masked()] = r
	}
	var remove []netlink.Route
	var replace, add []Route
	present := map[netip.Prefix]bool{}
	for _, h := range have {
		dst := prefixOf(h.Dst)
		w, ok := wanted[dst]
		switch {
		case !ok || present[dst]:
			remove = append(remove, h)
		case !s.same(h, w):
			replace = append(replace, w)
			present[dst] = true
		default:
			present[dst] = true
		}
	}
	for _, r := range want {
		if d := r.Dst.Masked(); !present[d] {
			add = append(add, r)
			present[d] = true
		}
	}
	// A destination held by somebody else's route (another protocol or
	// device, same metric) is never ours to replace: leave it, without
	// trying to add.
	if len(add) > 0 {
		taken, err := s.foreignDsts(table)
		if err != nil {
			return err
		}
		add = slices.DeleteFunc(add, func(r Route) bool {
			if taken[r.Dst.Masked()] {
				s.ch.Conflicts = append(s.ch.Conflicts, r.Dst.Masked())
				delete(present, r.Dst.Masked())
				return true
			}
			return false
		})
	}
	// Write ahead: what is about to be created is recorded first.
	for _, r := range add {
		m.rec.Routes = append(m.rec.Routes, RouteRef{Table: table, Dst: r.Dst.Masked()})
	}
	if len(add) > 0 {
		if err := m.save(); err != nil {
			return err
		}
	}
	var errs []error
	// exists collects the destinations of the manager's routes in the
	// table afterwards: they make the table's part of the record.
	exists := map[netip.Prefix]bool{}
	for d := range present {
		exists[d] = true
	}
	for i := range remove {
		dst := prefixOf(remove[i].Dst)
		m.routeW++
		if err := s.nl.RouteDel(&remove[i]); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("removing route %s table %d: %w", dst, table, err))
			exists[dst] = true
			continue
		}
		s.ch.Removed++
	}
	for _, r := range replace {
		m.routeW++
		if err := s.nl.RouteReplace(s.netlinkRoute(table, r)); err != nil {
			errs = append(errs, fmt.Errorf("replacing route %s table %d: %w", r.Dst, table, err))
			continue
		}
		s.ch.Replaced++
	}
	for _, r := range add {
		m.routeW++
		err := s.nl.RouteAdd(s.netlinkRoute(table, r))
		switch {
		case errors.Is(err, unix.EEXIST):
			// Somebody else's route for the same destination: never ours
			// to replace.
			s.ch.Conflicts = append(s.ch.Conflicts, r.Dst.Masked())
			delete(exists, r.Dst.Masked())
		case err != nil:
			errs = append(errs, fmt.Errorf("adding route %s table %d: %w", r.Dst, table, err))
			delete(exists, r.Dst.Masked())
		default:
			s.ch.Added++
		}
	}
	m.lastRoutes = len(exists)
	m.rec.Routes = slices.DeleteFunc(m.rec.Routes, func(r RouteRef) bool { return r.Table == table })
	for d := range exists {
		m.rec.Routes = append(m.rec.Routes, RouteRef{Table: table, Dst: d})
	}
	return errors.Join(errs...)
}

// foreignDsts are the destinations of routes in a table that are not the
// manager's and that one of its routes (metric 0, no TOS) would collide
// with.
func (s *session) foreignDsts(table int) (map[netip.Prefix]bool, error) {
	rs, err := s.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("listing routes of table %d: %w", table, err)
	}
	out := map[netip.Prefix]bool{}
	for _, r := range rs {
		if !s.ours(r) && r.Priority == 0 && r.Tos == 0 {
			out[prefixOf(r.Dst)] = true
		}
	}
	return out, nil
}

func (s *session) linkIndex(r Route) int {
	if r.LinkIndex != 0 || s.link == nil {
		return r.LinkIndex
	}
	return s.link.Attrs().Index
}

func (s *session) netlinkRoute(table int, r Route) *netlink.Route {
	nr := &netlink.Route{
		Family:    netlink.FAMILY_V4,
		Dst:       &net.IPNet{IP: r.Dst.Masked().Addr().AsSlice(), Mask: net.CIDRMask(r.Dst.Bits(), 32)},
		LinkIndex: s.linkIndex(r),
		Table:     table,
		Protocol:  s.m.Protocol,
	}
	if r.Gw.IsValid() {
		nr.Gw = r.Gw.AsSlice()
	} else {
		nr.Scope = netlink.SCOPE_LINK
	}
	if r.Src.IsValid() {
		nr.Src = r.Src.AsSlice()
	}
	if r.OnLink {
		nr.Flags = int(netlink.FLAG_ONLINK)
	}
	return nr
}

func (s *session) same(h netlink.Route, w Route) bool {
	gw, _ := netip.AddrFromSlice(h.Gw.To4())
	src, _ := netip.AddrFromSlice(h.Src.To4())
	onlink := h.Flags&int(netlink.FLAG_ONLINK) != 0
	scope := netlink.SCOPE_UNIVERSE
	if !w.Gw.IsValid() {
		scope = netlink.SCOPE_LINK
	}
	return len(h.MultiPath) == 0 && gw == w.Gw && src == w.Src && h.LinkIndex == s.linkIndex(w) &&
		onlink == w.OnLink && h.Scope == scope
}

func (s *session) ensureRule(want RuleRef) error {
	m := s.m
	if !slices.Contains(m.rec.Rules, want) {
		m.rec.Rules = append(m.rec.Rules, want)
		if err := m.save(); err != nil {
			return err
		}
	}
	rules, err := s.nl.RuleList(netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("listing rules: %w", err)
	}
	for _, r := range rules {
		if s.isRule(r, want) {
			return nil
		}
	}
	m.ruleW++
	if err := s.nl.RuleAdd(s.netlinkRule(want)); err != nil {
		return fmt.Errorf("adding rule %d lookup %d protocol %d: %w", want.Priority, want.Table, m.Protocol, err)
	}
	s.ch.Added++
	return nil
}

func (s *session) isRule(r netlink.Rule, ref RuleRef) bool {
	return r.Table == ref.Table && r.Priority == ref.Priority && r.Protocol == uint8(s.m.Protocol)
}

func (s *session) netlinkRule(r RuleRef) *netlink.Rule {
	nr := netlink.NewRule()
	nr.Family = netlink.FAMILY_V4
	nr.Table = r.Table
	nr.Priority = r.Priority
	nr.Protocol = uint8(s.m.Protocol)
	return nr
}

// removeStale removes the manager's routes outside table and its rules
// other than keep. Routes: the recorded ones and those the kernel tags as
// the manager's (its protocol, through its device). Rules: the recorded
// ones; on the first call of a run (a restart without a record of the
// previous one, e.g. the broker) also the tagged rules of the protocol
// whose table holds no route of it any more.
func (s *session) removeStale(table int, keep *RuleRef) error {
	m := s.m
	var errs []error
	all, err := s.list(0)
	if err != nil {
		return err
	}
	failed := map[RouteRef]bool{}
	for i := range all {
		if all[i].Table == table {
			continue
		}
		ref := RouteRef{Table: all[i].Table, Dst: prefixOf(all[i].Dst)}
		m.routeW++
		if err := s.nl.RouteDel(&all[i]); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("removing stale route %s table %d: %w", ref.Dst, ref.Table, err))
			failed[ref] = true
			continue
		}
		s.ch.Removed++
	}
	m.rec.Routes = slices.DeleteFunc(m.rec.Routes, func(r RouteRef) bool { return r.Table != table && !failed[r] })
	rules, err := s.nl.RuleList(netlink.FAMILY_V4)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("listing rules: %w", err))...)
	}
	candidates := slices.Clone(m.rec.Rules)
	if !m.started {
		for _, r := range rules {
			if r.Protocol == uint8(m.Protocol) {
				candidates = append(candidates, RuleRef{Table: r.Table, Priority: r.Priority})
			}
		}
	}
	c := Record{Rules: candidates}
	normalize(&c)
	var kept []RuleRef
	for _, ref := range c.Rules {
		if keep != nil && ref == *keep {
			kept = append(kept, ref)
			continue
		}
		used, err := s.tableUsed(ref.Table)
		if err != nil {
			errs = append(errs, err)
			kept = append(kept, ref)
			continue
		}
		if used {
			// A sibling broker's routes (another device) still need
			// the rule: it is theirs now.
			continue
		}
		for _, x := range rules {
			if !s.isRule(x, ref) {
				continue
			}
			m.ruleW++
			if err := s.nl.RuleDel(s.netlinkRule(ref)); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("removing rule %d lookup %d: %w", ref.Priority, ref.Table, err))
				kept = append(kept, ref)
			} else {
				s.ch.Removed++
			}
			break
		}
	}
	m.rec.Rules = kept
	return errors.Join(errs...)
}

// tableUsed reports whether a table holds routes of the protocol that are
// not the manager's own (a sibling broker's, through another device).
func (s *session) tableUsed(table int) (bool, error) {
	rs, err := s.nl.RouteListFiltered(netlink.FAMILY_V4,
		&netlink.Route{Table: table, Protocol: s.m.Protocol},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return false, fmt.Errorf("listing routes of table %d: %w", table, err)
	}
	for _, r := range rs {
		if !s.ours(r) {
			return true, nil
		}
	}
	return false, nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

func prefixOf(n *net.IPNet) netip.Prefix {
	if n == nil {
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	a, _ := netip.AddrFromSlice(n.IP.To4())
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a, ones)
}
