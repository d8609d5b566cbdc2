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

	"github.com/kubelink/kubelink/netd/routes"
	"github.com/kubelink/kubelink/netd/vxlan"
)

// Protocol marks the router's routes and rule (rtnetlink protocol number;
// the broker's device routes use 97). Only routes with this protocol in the
// router's table are ever removed.
const Protocol = routes.RouterProtocol

// ErrNoIPIP is returned when the kernel cannot create ipip devices.
var ErrNoIPIP = errors.New("the kernel has no ipip support (load the ipip module, or use --ipip none)")

// State is what the router wants in the kernel.
type State struct {
	// Table is the routing table of the routes (254 = main).
	Table int
	// Rule is the rule looking up Table; nil with the main table. A table
	// other than main without a rule is the shutdown state: nothing of the
	// router's is wanted.
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

// Changes is what one Apply did (routes and rule; devices are counted by
// DeviceWrites).
type Changes = routes.Changes

// Kernel applies States through netlink and remembers what it created:
// routes and rule through the shared manager (netd/routes, protocol 98),
// owned devices itself.
type Kernel struct {
	nl   *netlink.Handle
	file *Datafile
	rec  Record
	rt   *routes.Manager

	deviceWrites atomic.Int64
	routeWrites  atomic.Int64
	ruleWrites   atomic.Int64
	routes       atomic.Int64
}

// NewKernel works through the netlink handle (its network namespace) and
// starts from a record loaded from file.
func NewKernel(nl *netlink.Handle, file *Datafile, rec Record) *Kernel {
	if file == nil {
		file = &Datafile{}
	}
	rec.normalize()
	k := &Kernel{nl: nl, file: file, rec: rec}
	k.rt = &routes.Manager{Protocol: Protocol, Handle: nl, Persist: func(r routes.Record) error {
		// The manager's part of the record, saved with the devices.
		k.rec.Routes, k.rec.Rules = r.Routes, r.Rules
		return k.save()
	}}
	k.rt.Restore(routes.Record{Routes: rec.Routes, Rules: rec.Rules})
	return k
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
	link, removedStale, err := k.ensureOverStale(vxlan.Ensure, spec)
	if err != nil {
		return Nexthop{}, removedStale, err
	}
	n, err := vxlan.SetPeer(k.nl, link, gw)
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
	_, removedStale, err = k.ensureOverStale(vxlan.EnsureReceiver, spec)
	if err != nil {
		return removedStale, fmt.Errorf("vxlan decapsulation device for the gateway pod on this node: %w", err)
	}
	return removedStale, nil
}

// ensureOverStale runs ensure (vxlan.Ensure or vxlan.EnsureReceiver) for
// spec, counting the device writes. When the VNI and port are taken
// (EEXIST), typically by a broker's leftover device after the gateway
// moved, it removes that device and runs ensure once more; removedStale
// reports the removal.
func (k *Kernel) ensureOverStale(ensure func(*netlink.Handle, vxlan.Spec) (netlink.Link, int, error), spec vxlan.Spec) (link netlink.Link, removedStale bool, err error) {
	link, n, err := ensure(k.nl, spec)
	k.deviceWrites.Add(int64(n))
	if errors.Is(err, unix.EEXIST) {
		if removedStale, _ = vxlan.Remove(k.nl, vxlan.GatewayDevice); removedStale {
			k.deviceWrites.Add(1)
			link, n, err = ensure(k.nl, spec)
			k.deviceWrites.Add(int64(n))
		}
	}
	return link, removedStale, err
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
	var errs []error
	k.rt.Table = s.Table
	if s.Rule != nil {
		k.rt.Table, k.rt.RulePriority = s.Rule.Table, s.Rule.Priority
	}
	var ch Changes
	var err error
	switch {
	case s.Rule == nil && s.Table != tableMain:
		ch, err = k.rt.RemoveAll()
	case s.HoldRoutes:
		ch, err = k.rt.Hold()
	default:
		ch, err = k.rt.Sync(toShared(s.Routes))
	}
	if err != nil {
		errs = append(errs, err)
	}
	k.routeWrites.Store(k.rt.RouteWrites())
	k.ruleWrites.Store(k.rt.RuleWrites())
	k.routes.Store(int64(k.rt.Routes()))
	if err := k.removeDevices(s.Device); err != nil {
		errs = append(errs, err)
	}
	if err := k.save(); err != nil {
		errs = append(errs, err)
	}
	return ch, errors.Join(errs...)
}

// toShared turns the router's routes into the shared manager's.
func toShared(rs []Route) []routes.Route {
	out := make([]routes.Route, 0, len(rs))
	for _, r := range rs {
		out = append(out, routes.Route{Dst: r.Dst, Gw: r.Gw, LinkIndex: r.LinkIndex, OnLink: r.OnLink})
	}
	return out
}

// removeDevices removes every owned device but keep (routes through it
// went with the manager's Sync, or go with the device).
func (k *Kernel) removeDevices(keep string) error {
	var errs []error
	var keepDev []string
	for _, d := range k.rec.Devices {
		if d == keep {
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
