package router

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kubelink/kubelink/netd/vxlan"
)

// Protocol marks the router's routes and rule (rtnetlink protocol number;
// the broker's device routes use 97). Only routes with this protocol in the
// router's table are ever removed.
const Protocol = 98

// ErrNoIPIP is returned when the kernel cannot create ipip devices.
var ErrNoIPIP = errors.New("the kernel has no ipip support (load the ipip module, or use --ipip none)")

// State is what the router wants in the kernel.
type State struct {
	// Table is the routing table of the routes (254 = main).
	Table int
	// Rule is the rule looking up Table; nil with the main table.
	Rule *RuleRef
	// Device is the owned device (ipip, vxlan or vxlan decapsulation) to
	// keep ("" = none).
	Device string
	// Routes are the wanted routes in Table.
	Routes []Route
	// HoldRoutes leaves the routes in Table as they are (gateway unknown
	// for a moment); everything else is still reconciled.
	HoldRoutes bool
}

// Changes is what one Apply did.
type Changes struct {
	Added, Replaced, Removed int
	// Conflicts are destinations where a route of somebody else (another
	// protocol) holds the place; it is left alone.
	Conflicts []netip.Prefix
}

// Any reports whether anything was written.
func (c Changes) Any() bool { return c.Added+c.Replaced+c.Removed > 0 }

// Kernel applies States through netlink and remembers what it created.
type Kernel struct {
	nl   *netlink.Handle
	file *Datafile
	rec  Record

	routeWrites, ruleWrites, deviceWrites atomic.Int64
	routes                                atomic.Int64
}

// NewKernel works through the netlink handle (its network namespace) and
// starts from a record loaded from file.
func NewKernel(nl *netlink.Handle, file *Datafile, rec Record) *Kernel {
	if file == nil {
		file = &Datafile{}
	}
	rec.normalize()
	return &Kernel{nl: nl, file: file, rec: rec}
}

// Record is what the kernel holds of the router's, as far as it knows.
func (k *Kernel) Record() Record {
	return Record{Routes: slices.Clone(k.rec.Routes), Rules: slices.Clone(k.rec.Rules), Devices: slices.Clone(k.rec.Devices)}
}

// RouteWrites counts route additions, replacements and deletions sent.
func (k *Kernel) RouteWrites() int64 { return k.routeWrites.Load() }

// RuleWrites counts rule additions and deletions sent.
func (k *Kernel) RuleWrites() int64 { return k.ruleWrites.Load() }

// DeviceWrites counts device creations, deletions and state changes sent.
func (k *Kernel) DeviceWrites() int64 { return k.deviceWrites.Load() }

// Routes is the number of the router's routes after the last Apply.
func (k *Kernel) Routes() int64 { return k.routes.Load() }

// save writes the record to the datafile (when it changed).
func (k *Kernel) save() error {
	k.rec.normalize()
	return k.file.Save(k.rec)
}

// IsLocal reports whether a is an address of this network namespace.
func (k *Kernel) IsLocal(a netip.Addr) (bool, error) {
	addrs, err := k.nl.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return false, fmt.Errorf("listing local addresses: %w", err)
	}
	for _, x := range addrs {
		if ip, ok := netip.AddrFromSlice(x.IP.To4()); ok && ip == a {
			return true, nil
		}
	}
	return false, nil
}

// Nexthop asks the kernel how gw is reached. When it is on a connected
// subnet the route is plain `via gw`; when the kernel reaches it through a
// router (e.g. nodes with /32 addresses, as in host-gw setups), the gateway
// is declared on-link on that route's device: the mesh routes must lead to
// the gateway itself, which only it knows, not to the next router.
func (k *Kernel) Nexthop(gw netip.Addr) (Nexthop, error) {
	rs, err := k.nl.RouteGet(gw.AsSlice())
	if err != nil {
		return Nexthop{}, fmt.Errorf("finding the route to the gateway %s: %w", gw, err)
	}
	if len(rs) == 0 || rs[0].LinkIndex == 0 {
		return Nexthop{}, fmt.Errorf("no route to the gateway %s", gw)
	}
	return Nexthop{Gw: gw, LinkIndex: rs[0].LinkIndex, OnLink: rs[0].Gw != nil}, nil
}

// EnsureDevice makes the ipip device of the mode exist and be up and
// returns its index (0 with mode none). The owned device is recorded before
// it is created; the shared tunl0 is never recorded (never deleted).
func (k *Kernel) EnsureDevice(mode string, local netip.Addr) (int, error) {
	var name string
	switch mode {
	case IPIPNone:
		return 0, nil
	case IPIPShared:
		name = SharedDevice
	case IPIPConfigure:
		name = OwnedDevice
		if !slices.Contains(k.rec.Devices, name) {
			k.rec.Devices = append(k.rec.Devices, name)
			if err := k.save(); err != nil {
				return 0, err
			}
		}
	default:
		return 0, fmt.Errorf("unknown ipip mode %q", mode)
	}
	link, err := k.nl.LinkByName(name)
	if err == nil && mode == IPIPConfigure {
		t, ok := link.(*netlink.Iptun)
		if !ok {
			return 0, fmt.Errorf("device %s exists and is a %s device, not ipip", name, link.Type())
		}
		if !t.Local.Equal(local.AsSlice()) {
			// Ours (by name), but with another local address: recreate.
			k.deviceWrites.Add(1)
			if err := k.nl.LinkDel(link); err != nil {
				return 0, fmt.Errorf("removing %s (local %s, want %s): %w", name, t.Local, local, err)
			}
			link = nil
		}
	}
	if err != nil && !isNotFound(err) {
		return 0, fmt.Errorf("looking up device %s: %w", name, err)
	}
	if link == nil {
		dev := &netlink.Iptun{LinkAttrs: netlink.LinkAttrs{Name: name}, PMtuDisc: 1}
		if mode == IPIPConfigure {
			dev.Local = local.AsSlice()
		}
		k.deviceWrites.Add(1)
		err := k.nl.LinkAdd(dev)
		if err != nil && !(mode == IPIPShared && errors.Is(err, unix.EEXIST)) {
			if noIPIP(err) {
				return 0, fmt.Errorf("creating ipip device %s: %w: %w", name, ErrNoIPIP, err)
			}
			return 0, fmt.Errorf("creating ipip device %s: %w", name, err)
		}
		// Loading the ipip module creates tunl0 itself: look it up again.
		if link, err = k.nl.LinkByName(name); err != nil {
			return 0, fmt.Errorf("looking up device %s: %w", name, err)
		}
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		k.deviceWrites.Add(1)
		if err := k.nl.LinkSetUp(link); err != nil {
			return 0, fmt.Errorf("setting %s up: %w", name, err)
		}
	}
	return link.Attrs().Index, nil
}

// EnsureVXLAN makes the owned vxlan device exist, configured for this
// node (local address, derived inner address and MAC, MTU of the way to
// the gateway's node minus the VXLAN overhead), and pointed at the
// gateway's node with the address gw (FDB and neighbour entry of its
// derived MAC and inner address), and returns the nexthop through it. The
// device is recorded before it is created.
//
// The router's decapsulating device (of a pod-mode gateway that was on
// this node) holds the same VNI and port: it goes first. A broker's
// decapsulating device in this namespace (node mode) while the gateway is
// elsewhere is a leftover — of a killed broker, or of one just losing the
// lease — and holds the VNI and port too: it is removed (removedStale
// reports that). It cannot be the active gateway's: that one can only be
// created while the node has no device of its own, i.e. while the gateway
// is here.
func (k *Kernel) EnsureVXLAN(local, gw netip.Addr, vni, port int) (nh Nexthop, removedStale bool, err error) {
	if err := k.removeVXLAN(vxlan.DecapDevice); err != nil {
		return Nexthop{}, false, err
	}
	if err := k.recordDevice(vxlan.NodeDevice); err != nil {
		return Nexthop{}, false, err
	}
	mtu, err := vxlan.UnderlayMTU(k.nl, gw)
	if err != nil {
		return Nexthop{}, false, fmt.Errorf("vxlan to the gateway's node %s: %w", gw, err)
	}
	spec := vxlan.Spec{Name: vxlan.NodeDevice, VNI: vni, Port: port, Local: local,
		Inner: vxlan.NodeAddress(local), MAC: vxlan.MAC(local), MTU: mtu}
	link, n, err := vxlan.Ensure(k.nl, spec)
	k.deviceWrites.Add(int64(n))
	if errors.Is(err, unix.EEXIST) {
		if removedStale, _ = vxlan.Remove(k.nl, vxlan.GatewayDevice); removedStale {
			k.deviceWrites.Add(1)
			link, n, err = vxlan.Ensure(k.nl, spec)
			k.deviceWrites.Add(int64(n))
		}
	}
	if err != nil {
		return Nexthop{}, removedStale, err
	}
	n, err = vxlan.SetPeer(k.nl, link, gw)
	k.deviceWrites.Add(int64(n))
	if err != nil {
		return Nexthop{}, removedStale, err
	}
	return Nexthop{Gw: vxlan.GatewayAddress(gw), LinkIndex: link.Attrs().Index, OnLink: true, Outer: gw}, removedStale, nil
}

// EnsureDecap makes the router's decapsulating device exist on the node
// of a pod-mode gateway: local address ip (this node's, where the other
// nodes send their VXLAN), the gateway inner address and MAC derived from
// it, no remote, no learning, rp_filter 0. Decapsulated here, in the
// node's network namespace, the packets pass the node's conntrack — where
// kube-proxy's DNAT of connections from the gateway pod is recorded, so
// replies to them are un-DNATed — and are routed on to the gateway pod.
// The device is recorded before it is created; the node's encapsulating
// device, which holds the same VNI and port, goes first, and so does a
// leftover broker device (as in EnsureVXLAN; removedStale reports it).
func (k *Kernel) EnsureDecap(ip netip.Addr, vni, port int) (removedStale bool, err error) {
	if err := k.removeVXLAN(vxlan.NodeDevice); err != nil {
		return false, err
	}
	if err := k.recordDevice(vxlan.DecapDevice); err != nil {
		return false, err
	}
	spec := vxlan.Spec{Name: vxlan.DecapDevice, VNI: vni, Port: port, Local: ip,
		Inner: vxlan.GatewayAddress(ip), MAC: vxlan.MAC(ip)}
	_, n, err := vxlan.EnsureReceiver(k.nl, spec)
	k.deviceWrites.Add(int64(n))
	if errors.Is(err, unix.EEXIST) {
		if removedStale, _ = vxlan.Remove(k.nl, vxlan.GatewayDevice); removedStale {
			k.deviceWrites.Add(1)
			_, n, err = vxlan.EnsureReceiver(k.nl, spec)
			k.deviceWrites.Add(int64(n))
		}
	}
	if err != nil {
		return removedStale, fmt.Errorf("vxlan decapsulation device for the gateway pod on this node: %w", err)
	}
	return removedStale, nil
}

// recordDevice records an owned device (before it is created).
func (k *Kernel) recordDevice(name string) error {
	if slices.Contains(k.rec.Devices, name) {
		return nil
	}
	k.rec.Devices = append(k.rec.Devices, name)
	return k.save()
}

// removeVXLAN removes one of the router's vxlan devices, if it exists,
// and forgets it.
func (k *Kernel) removeVXLAN(name string) error {
	removed, err := vxlan.Remove(k.nl, name)
	if removed {
		k.deviceWrites.Add(1)
	}
	if err != nil {
		return err
	}
	if !slices.Contains(k.rec.Devices, name) {
		return nil
	}
	k.rec.Devices = slices.DeleteFunc(k.rec.Devices, func(d string) bool { return d == name })
	return k.save()
}

// RecordedVXLAN is the router's vxlan device in the record (the
// decapsulating one if both are), else the node's device: the one to keep
// while the gateway is unknown after a restart.
func (k *Kernel) RecordedVXLAN() string {
	if slices.Contains(k.rec.Devices, vxlan.DecapDevice) {
		return vxlan.DecapDevice
	}
	return vxlan.NodeDevice
}

func noIPIP(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOENT) ||
		strings.Contains(strings.ToLower(err.Error()), "not supported")
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// Apply brings the kernel to s: the router's routes in s.Table exactly
// s.Routes, the rule, and nothing left of what the record holds and s does
// not want (routes in other tables, other rules, an owned device). Only
// differences are written; the record is saved before anything is created
// and after anything is removed, so it never claims less than exists.
func (k *Kernel) Apply(s State) (Changes, error) {
	var ch Changes
	var errs []error
	if !s.HoldRoutes {
		if err := k.syncRoutes(s.Table, s.Routes, &ch); err != nil {
			errs = append(errs, err)
		}
	}
	if s.Rule != nil {
		if err := k.ensureRule(*s.Rule); err != nil {
			errs = append(errs, err)
		}
	}
	if err := k.removeStale(s, &ch); err != nil {
		errs = append(errs, err)
	}
	if err := k.save(); err != nil {
		errs = append(errs, err)
	}
	n, err := k.listRoutes(s.Table)
	if err == nil {
		k.routes.Store(int64(len(n)))
	}
	return ch, errors.Join(errs...)
}

// listRoutes lists the router's routes (its protocol) in a table.
func (k *Kernel) listRoutes(table int) ([]netlink.Route, error) {
	rs, err := k.nl.RouteListFiltered(netlink.FAMILY_V4,
		&netlink.Route{Table: table, Protocol: Protocol},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return nil, fmt.Errorf("listing routes of table %d: %w", table, err)
	}
	return rs, nil
}

func (k *Kernel) syncRoutes(table int, want []Route, ch *Changes) error {
	have, err := k.listRoutes(table)
	if err != nil {
		return err
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
		case !sameRoute(h, w):
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
	// A destination held by somebody else's route (another protocol, same
	// metric) is never ours to replace: leave it, without trying to add.
	if len(add) > 0 {
		taken, err := k.foreignDsts(table)
		if err != nil {
			return err
		}
		add = slices.DeleteFunc(add, func(r Route) bool {
			if taken[r.Dst.Masked()] {
				ch.Conflicts = append(ch.Conflicts, r.Dst.Masked())
				delete(present, r.Dst.Masked())
				return true
			}
			return false
		})
	}
	// Write ahead: what is about to be created is recorded first.
	for _, r := range add {
		k.rec.Routes = append(k.rec.Routes, RouteRef{Table: table, Dst: r.Dst.Masked()})
	}
	if len(add) > 0 {
		if err := k.save(); err != nil {
			return err
		}
	}
	var errs []error
	// exists collects the destinations of the router's routes in the
	// table afterwards: they make the table's part of the record.
	exists := map[netip.Prefix]bool{}
	for d := range present {
		exists[d] = true
	}
	for i := range remove {
		dst := prefixOf(remove[i].Dst)
		k.routeWrites.Add(1)
		if err := k.nl.RouteDel(&remove[i]); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("removing route %s table %d: %w", dst, table, err))
			exists[dst] = true
			continue
		}
		ch.Removed++
	}
	for _, r := range replace {
		k.routeWrites.Add(1)
		if err := k.nl.RouteReplace(k.netlinkRoute(table, r)); err != nil {
			errs = append(errs, fmt.Errorf("replacing route %s via %s table %d: %w", r.Dst, r.Gw, table, err))
			continue
		}
		ch.Replaced++
	}
	for _, r := range add {
		k.routeWrites.Add(1)
		err := k.nl.RouteAdd(k.netlinkRoute(table, r))
		switch {
		case errors.Is(err, unix.EEXIST):
			// Somebody else's route for the same destination: never ours
			// to replace.
			ch.Conflicts = append(ch.Conflicts, r.Dst.Masked())
			delete(exists, r.Dst.Masked())
		case err != nil:
			errs = append(errs, fmt.Errorf("adding route %s via %s table %d: %w", r.Dst, r.Gw, table, err))
			delete(exists, r.Dst.Masked())
		default:
			ch.Added++
		}
	}
	k.rec.Routes = slices.DeleteFunc(k.rec.Routes, func(r RouteRef) bool { return r.Table == table })
	for d := range exists {
		k.rec.Routes = append(k.rec.Routes, RouteRef{Table: table, Dst: d})
	}
	return errors.Join(errs...)
}

// foreignDsts are the destinations of other protocols' routes in a table
// that a route of the router's (metric 0, no TOS) would collide with.
func (k *Kernel) foreignDsts(table int) (map[netip.Prefix]bool, error) {
	rs, err := k.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("listing routes of table %d: %w", table, err)
	}
	out := map[netip.Prefix]bool{}
	for _, r := range rs {
		if r.Protocol != Protocol && r.Priority == 0 && r.Tos == 0 {
			out[prefixOf(r.Dst)] = true
		}
	}
	return out, nil
}

func (k *Kernel) netlinkRoute(table int, r Route) *netlink.Route {
	nr := &netlink.Route{
		Family:    netlink.FAMILY_V4,
		Dst:       &net.IPNet{IP: r.Dst.Masked().Addr().AsSlice(), Mask: net.CIDRMask(r.Dst.Bits(), 32)},
		Gw:        r.Gw.AsSlice(),
		LinkIndex: r.LinkIndex,
		Table:     table,
		Protocol:  Protocol,
	}
	if r.OnLink {
		nr.Flags = int(netlink.FLAG_ONLINK)
	}
	return nr
}

func sameRoute(h netlink.Route, w Route) bool {
	gw, _ := netip.AddrFromSlice(h.Gw.To4())
	onlink := h.Flags&int(netlink.FLAG_ONLINK) != 0
	return len(h.MultiPath) == 0 && gw == w.Gw && h.LinkIndex == w.LinkIndex && onlink == w.OnLink
}

func (k *Kernel) ensureRule(want RuleRef) error {
	if !slices.Contains(k.rec.Rules, want) {
		k.rec.Rules = append(k.rec.Rules, want)
		if err := k.save(); err != nil {
			return err
		}
	}
	rules, err := k.nl.RuleList(netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("listing rules: %w", err)
	}
	for _, r := range rules {
		if r.Table == want.Table && r.Priority == want.Priority && r.Protocol == Protocol {
			return nil
		}
	}
	k.ruleWrites.Add(1)
	if err := k.nl.RuleAdd(ownRule(want)); err != nil {
		return fmt.Errorf("adding rule %d lookup %d: %w", want.Priority, want.Table, err)
	}
	return nil
}

func ownRule(r RuleRef) *netlink.Rule {
	nr := netlink.NewRule()
	nr.Family = netlink.FAMILY_V4
	nr.Table = r.Table
	nr.Priority = r.Priority
	nr.Protocol = Protocol
	return nr
}

// removeStale removes what the record holds and s does not want.
func (k *Kernel) removeStale(s State, ch *Changes) error {
	var errs []error
	// Routes in other tables (an earlier --route-table).
	tables := map[int]bool{}
	for _, r := range k.rec.Routes {
		if r.Table != s.Table {
			tables[r.Table] = true
		}
	}
	for t := range tables {
		have, err := k.listRoutes(t)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		recorded := map[netip.Prefix]bool{}
		for _, r := range k.rec.Routes {
			if r.Table == t {
				recorded[r.Dst] = true
			}
		}
		failed := map[netip.Prefix]bool{}
		for i := range have {
			dst := prefixOf(have[i].Dst)
			if !recorded[dst] {
				continue
			}
			k.routeWrites.Add(1)
			if err := k.nl.RouteDel(&have[i]); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("removing stale route %s table %d: %w", dst, t, err))
				failed[dst] = true
				continue
			}
			ch.Removed++
		}
		k.rec.Routes = slices.DeleteFunc(k.rec.Routes, func(r RouteRef) bool { return r.Table == t && !failed[r.Dst] })
	}
	// Rules other than the wanted one.
	var keep []RuleRef
	for _, r := range k.rec.Rules {
		if s.Rule != nil && r == *s.Rule {
			keep = append(keep, r)
			continue
		}
		if err := k.removeRule(r); err != nil {
			errs = append(errs, err)
			keep = append(keep, r)
		}
	}
	k.rec.Rules = keep
	// An owned device that is not wanted (routes through it went with it).
	var keepDev []string
	for _, d := range k.rec.Devices {
		if d == s.Device {
			keepDev = append(keepDev, d)
			continue
		}
		if err := k.removeDevice(d); err != nil {
			errs = append(errs, err)
			keepDev = append(keepDev, d)
		}
	}
	k.rec.Devices = keepDev
	return errors.Join(errs...)
}

func (k *Kernel) removeRule(r RuleRef) error {
	rules, err := k.nl.RuleList(netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("listing rules: %w", err)
	}
	for _, x := range rules {
		if x.Table == r.Table && x.Priority == r.Priority && x.Protocol == Protocol {
			k.ruleWrites.Add(1)
			if err := k.nl.RuleDel(ownRule(r)); err != nil && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("removing rule %d lookup %d: %w", r.Priority, r.Table, err)
			}
			return nil
		}
	}
	return nil
}

func (k *Kernel) removeDevice(name string) error {
	if name == vxlan.NodeDevice || name == vxlan.DecapDevice {
		removed, err := vxlan.Remove(k.nl, name)
		if removed {
			k.deviceWrites.Add(1)
		}
		return err
	}
	link, err := k.nl.LinkByName(name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("looking up device %s: %w", name, err)
	}
	if _, ok := link.(*netlink.Iptun); !ok || name != OwnedDevice {
		// Not the device the router creates: leave it.
		return nil
	}
	k.deviceWrites.Add(1)
	if err := k.nl.LinkDel(link); err != nil {
		return fmt.Errorf("removing device %s: %w", name, err)
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
