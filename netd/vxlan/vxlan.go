// Package vxlan is the VXLAN encapsulation between every node and the
// node of the cluster's active gateway: `netd router` owns an encapsulating
// device on each other node (NodeDevice). The decapsulating device is in
// the gateway node's network namespace: a node-mode (hostNetwork) active
// `netd broker` owns it (GatewayDevice); for a pod-mode gateway the router
// on the gateway's node owns it (DecapDevice) and routes on into the
// gateway pod, so that traffic in both directions passes the conntrack of
// the node that ran kube-proxy's DNAT. There is no control plane: the inner
// addresses and MAC addresses are derived from the outer (node network)
// addresses, so a node only needs to know the gateway node's IP, which it
// takes from the broker's Lease and the holder pod's status.hostIP.
//
// Derivation, for an outer address a.b.c.d:
//
//	gateway inner address  240.b.c.d   (GatewayAddress)
//	node inner address     241.b.c.d   (NodeAddress)
//	MAC address            02:6b:a:b:c:d (MAC; locally administered, unicast)
//
// 240.0.0.0/4 is reserved ("future use") and never routed, like the range
// Submariner's route agent uses for the same purpose. Gateways and nodes get
// different /8s, so a node's own inner address never equals the gateway's
// even when the two outer addresses differ only in the first octet. The MAC
// keeps all four octets, so it is unique per outer address.
package vxlan

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Defaults and names.
const (
	// DefaultPort is the UDP port of kubelink's VXLAN. Not 4789 (IANA;
	// Calico, Antrea), 8472 (the Linux default; Flannel, Cilium) or 4800
	// (Submariner), so kubelink's devices never share a socket — and with
	// it the VNI space — with a CNI's or Submariner's overlay.
	DefaultPort = 4803
	// DefaultVNI is the VXLAN network identifier. Any value works: the own
	// port already separates kubelink's VXLAN from other overlays.
	DefaultVNI = 4803
	// NodeDevice is the router's encapsulating device on every node.
	NodeDevice = "kubelink-vxlan"
	// GatewayDevice is the broker's decapsulating device. It has another
	// name than NodeDevice, so neither side ever mistakes the other's
	// device (in node mode both live in the node's network namespace, one
	// after the other).
	GatewayDevice = "kubelink-vxgw"
	// DecapDevice is the router's decapsulating device on the node of a
	// pod-mode gateway. It is not GatewayDevice: a node-mode broker on the
	// same node (another deployment, or a leftover after kill -9) never
	// adopts or removes the router's device, nor the router the broker's.
	DecapDevice = "kubelink-vxdec"
	// Overhead is what VXLAN over IPv4 adds to every packet: outer IPv4
	// (20), UDP (8), VXLAN (8) and the inner Ethernet header (14).
	Overhead = 50
	// maxVNI is the largest 24-bit VNI.
	maxVNI = 1<<24 - 1
)

// ErrNoVXLAN is returned when the kernel cannot create vxlan devices.
var ErrNoVXLAN = errors.New("the kernel has no vxlan support (load the vxlan module)")

// GatewayAddress is the inner address of the gateway with the outer
// address outer: 240.b.c.d for a.b.c.d.
func GatewayAddress(outer netip.Addr) netip.Addr { return inner(240, outer) }

// NodeAddress is the inner address of the node with the outer address
// outer: 241.b.c.d for a.b.c.d.
func NodeAddress(outer netip.Addr) netip.Addr { return inner(241, outer) }

func inner(first byte, outer netip.Addr) netip.Addr {
	b := outer.Unmap().As4()
	return netip.AddrFrom4([4]byte{first, b[1], b[2], b[3]})
}

// MAC is the MAC address of the VXLAN device of the node or gateway with
// the outer address outer: 02:6b:a:b:c:d (locally administered unicast;
// 0x6b is "k").
func MAC(outer netip.Addr) net.HardwareAddr {
	b := outer.Unmap().As4()
	return net.HardwareAddr{0x02, 0x6b, b[0], b[1], b[2], b[3]}
}

// ValidatePort checks a VXLAN UDP port; flag names the flag in the error.
func ValidatePort(flag string, port int) error {
	if port < 1 || port > 65535 {
		return fmt.Errorf("%s %d: must be a UDP port (1-65535)", flag, port)
	}
	return nil
}

// ValidateVNI checks a VXLAN network identifier.
func ValidateVNI(flag string, vni int) error {
	if vni < 1 || vni > maxVNI {
		return fmt.Errorf("%s %d: must be between 1 and %d (24 bits)", flag, vni, maxVNI)
	}
	return nil
}

// Spec describes one VXLAN device.
type Spec struct {
	Name string
	VNI  int
	Port int
	// Local is the outer source address (this node's or gateway's IP).
	Local netip.Addr
	// Inner is the device's inner address, set as /32 with scope link:
	// the kernel never picks a scope-link address as the source of routed
	// traffic, so the node's own mesh traffic keeps the node IP as source
	// and its replies come back over the node network.
	Inner netip.Addr
	// MAC is the device's MAC address.
	MAC net.HardwareAddr
	// MTU of the device; 0 leaves the kernel's choice.
	MTU int
}

// Ensure makes the device exist as s describes, up, and returns it with
// the number of writes it sent (0 when everything was in place). A device
// of that name with another VNI, port or local address is recreated (it is
// ours by name); a device of that name that is not a vxlan device is an
// error.
func Ensure(h *netlink.Handle, s Spec) (netlink.Link, int, error) {
	writes := 0
	link, err := h.LinkByName(s.Name)
	if err != nil && !isNotFound(err) {
		return nil, writes, fmt.Errorf("looking up device %s: %w", s.Name, err)
	}
	if err == nil {
		v, ok := link.(*netlink.Vxlan)
		if !ok {
			return nil, writes, fmt.Errorf("device %s exists and is a %s device, not vxlan", s.Name, link.Type())
		}
		if v.VxlanId != s.VNI || v.Port != s.Port || !v.SrcAddr.Equal(s.Local.AsSlice()) || v.Learning || v.Group != nil && !v.Group.IsUnspecified() {
			writes++
			if err := h.LinkDel(link); err != nil {
				return nil, writes, fmt.Errorf("removing device %s (VNI %d, port %d, local %s) to recreate it: %w", s.Name, v.VxlanId, v.Port, v.SrcAddr, err)
			}
			link = nil
		}
	} else {
		link = nil
	}
	if link == nil {
		dev := &netlink.Vxlan{
			LinkAttrs: netlink.LinkAttrs{Name: s.Name, HardwareAddr: s.MAC, MTU: s.MTU},
			VxlanId:   s.VNI,
			SrcAddr:   s.Local.AsSlice(),
			Port:      s.Port,
			// No learning: the FDB holds exactly the entries we set, so
			// nothing a packet says can redirect the tunnel.
			Learning: false,
		}
		writes++
		if err := h.LinkAdd(dev); err != nil {
			if errors.Is(err, unix.EOPNOTSUPP) || strings.Contains(strings.ToLower(err.Error()), "not supported") {
				return nil, writes, fmt.Errorf("creating vxlan device %s: %w: %w", s.Name, ErrNoVXLAN, err)
			}
			if errors.Is(err, unix.EEXIST) {
				return nil, writes, fmt.Errorf("creating vxlan device %s (VNI %d, port %d): another vxlan device in this network namespace uses the same VNI and port: %w", s.Name, s.VNI, s.Port, err)
			}
			return nil, writes, fmt.Errorf("creating vxlan device %s: %w", s.Name, err)
		}
		if link, err = h.LinkByName(s.Name); err != nil {
			return nil, writes, fmt.Errorf("looking up device %s: %w", s.Name, err)
		}
	}
	attrs := link.Attrs()
	if s.MAC != nil && attrs.HardwareAddr.String() != s.MAC.String() {
		writes++
		if err := h.LinkSetHardwareAddr(link, s.MAC); err != nil {
			return nil, writes, fmt.Errorf("setting the MAC address of %s: %w", s.Name, err)
		}
	}
	if s.MTU > 0 && attrs.MTU != s.MTU {
		writes++
		if err := h.LinkSetMTU(link, s.MTU); err != nil {
			return nil, writes, fmt.Errorf("setting the MTU of %s to %d: %w", s.Name, s.MTU, err)
		}
	}
	n, err := ensureAddress(h, link, s.Inner)
	writes += n
	if err != nil {
		return nil, writes, err
	}
	if attrs.Flags&net.FlagUp == 0 {
		writes++
		if err := h.LinkSetUp(link); err != nil {
			return nil, writes, fmt.Errorf("setting %s up: %w", s.Name, err)
		}
	}
	return link, writes, nil
}

// EnsureReceiver makes a decapsulating device as s describes (see Ensure)
// with net.ipv4.conf.<device>.rp_filter 0, and returns it with the number
// of writes (0 when everything was in place). A new device inherits
// net.ipv4.conf.default.rp_filter, and strict filtering drops decapsulated
// packets, whose sources (pods on other nodes) are routed back over the
// node network; rtnetlink sets it per device without a writable /proc/sys.
// The kernel still applies the larger of "all" and the device's setting:
// callers warn about a strict "all" (RPFilter).
//
// The rp_filter is read and set in the calling thread's network namespace
// (/proc/sys and rtnetlink without a handle), which must be h's.
func EnsureReceiver(h *netlink.Handle, s Spec) (netlink.Link, int, error) {
	link, writes, err := Ensure(h, s)
	if err != nil {
		return nil, writes, err
	}
	if v, err := readRPFilter(s.Name); err != nil || v != 0 {
		// The index is only meaningful in h's namespace: never set the
		// rp_filter of whatever device has it in another one.
		if l, err := netlink.LinkByIndex(link.Attrs().Index); err != nil || l.Attrs().Name != s.Name {
			return nil, writes, fmt.Errorf("device %s: not in the calling thread's network namespace, cannot set its rp_filter", s.Name)
		}
		writes++
		if err := SetRPFilter(link.Attrs().Index, 0); err != nil {
			return nil, writes, fmt.Errorf("device %s: %w", s.Name, err)
		}
	}
	return link, writes, nil
}

// ensureAddress makes a the device's only IPv4 address (/32, scope link).
func ensureAddress(h *netlink.Handle, link netlink.Link, a netip.Addr) (int, error) {
	writes := 0
	have, err := h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return writes, fmt.Errorf("listing addresses of %s: %w", link.Attrs().Name, err)
	}
	found := false
	for i := range have {
		ip, _ := netip.AddrFromSlice(have[i].IP.To4())
		ones, _ := have[i].Mask.Size()
		if a.IsValid() && ip == a && ones == 32 && have[i].Scope == int(netlink.SCOPE_LINK) {
			found = true
			continue
		}
		writes++
		if err := h.AddrDel(link, &have[i]); err != nil {
			return writes, fmt.Errorf("removing address %s from %s: %w", have[i].IPNet, link.Attrs().Name, err)
		}
	}
	if found || !a.IsValid() {
		return writes, nil
	}
	writes++
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}, Scope: int(netlink.SCOPE_LINK)}
	if err := h.AddrAdd(link, addr); err != nil {
		return writes, fmt.Errorf("adding address %s/32 to %s: %w", a, link.Attrs().Name, err)
	}
	return writes, nil
}

// SetPeer points the device at the gateway with the outer address remote:
// its only FDB entry sends the gateway's MAC to remote, and its only
// neighbour entry maps the gateway's inner address to that MAC (both
// permanent). Entries for an earlier gateway are removed after the new ones
// are in place. It returns the number of writes.
func SetPeer(h *netlink.Handle, link netlink.Link, remote netip.Addr) (int, error) {
	writes := 0
	idx := link.Attrs().Index
	name := link.Attrs().Name
	mac := MAC(remote)
	fdb := netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT,
		Flags: netlink.NTF_SELF, IP: remote.AsSlice(), HardwareAddr: mac}
	neigh := netlink.Neigh{LinkIndex: idx, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
		IP: GatewayAddress(remote).AsSlice(), HardwareAddr: mac}

	fdbs, err := h.NeighList(idx, unix.AF_BRIDGE)
	if err != nil {
		return writes, fmt.Errorf("listing the FDB of %s: %w", name, err)
	}
	haveFDB := false
	var staleFDB []netlink.Neigh
	for _, e := range fdbs {
		if e.HardwareAddr.String() == mac.String() && e.IP.Equal(fdb.IP) && e.State&netlink.NUD_PERMANENT != 0 {
			haveFDB = true
			continue
		}
		staleFDB = append(staleFDB, e)
	}
	neighs, err := h.NeighList(idx, netlink.FAMILY_V4)
	if err != nil {
		return writes, fmt.Errorf("listing the neighbours of %s: %w", name, err)
	}
	haveNeigh := false
	var staleNeigh []netlink.Neigh
	for _, e := range neighs {
		if e.IP.Equal(neigh.IP) && e.HardwareAddr.String() == mac.String() && e.State&netlink.NUD_PERMANENT != 0 {
			haveNeigh = true
			continue
		}
		staleNeigh = append(staleNeigh, e)
	}
	if !haveFDB {
		writes++
		if err := h.NeighSet(&fdb); err != nil {
			return writes, fmt.Errorf("adding FDB entry %s dst %s to %s: %w", mac, remote, name, err)
		}
	}
	if !haveNeigh {
		writes++
		if err := h.NeighSet(&neigh); err != nil {
			return writes, fmt.Errorf("adding neighbour %s lladdr %s to %s: %w", neigh.IP, mac, name, err)
		}
	}
	for i := range staleFDB {
		e := staleFDB[i]
		e.Family, e.LinkIndex = unix.AF_BRIDGE, idx
		writes++
		if err := h.NeighDel(&e); err != nil && !errors.Is(err, unix.ENOENT) {
			return writes, fmt.Errorf("removing FDB entry %s dst %s from %s: %w", e.HardwareAddr, e.IP, name, err)
		}
	}
	for i := range staleNeigh {
		e := staleNeigh[i]
		e.LinkIndex = idx
		writes++
		if err := h.NeighDel(&e); err != nil && !errors.Is(err, unix.ENOENT) {
			return writes, fmt.Errorf("removing neighbour %s from %s: %w", e.IP, name, err)
		}
	}
	return writes, nil
}

// Remove deletes the device name if it exists and is a vxlan device (any
// other device of that name is not ours and stays). It reports whether it
// deleted one.
func Remove(h *netlink.Handle, name string) (bool, error) {
	link, err := h.LinkByName(name)
	if isNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("looking up device %s: %w", name, err)
	}
	if _, ok := link.(*netlink.Vxlan); !ok {
		return false, nil
	}
	if err := h.LinkDel(link); err != nil && !isNotFound(err) {
		return false, fmt.Errorf("removing device %s: %w", name, err)
	}
	return true, nil
}

// UnderlayMTU is the MTU for a device that encapsulates towards remote:
// the MTU of the device the kernel reaches remote through, minus Overhead.
func UnderlayMTU(h *netlink.Handle, remote netip.Addr) (int, error) {
	rs, err := h.RouteGet(remote.AsSlice())
	if err != nil {
		return 0, fmt.Errorf("finding the route to %s: %w", remote, err)
	}
	if len(rs) == 0 || rs[0].LinkIndex == 0 {
		return 0, fmt.Errorf("no route to %s", remote)
	}
	link, err := h.LinkByIndex(rs[0].LinkIndex)
	if err != nil {
		return 0, fmt.Errorf("looking up the device towards %s: %w", remote, err)
	}
	return link.Attrs().MTU - Overhead, nil
}

// ipv4DevconfRPFilter is IPV4_DEVCONF_RP_FILTER of linux/ip.h.
const ipv4DevconfRPFilter = 8

// SetRPFilter sets net.ipv4.conf.<device>.rp_filter of the device ifindex
// through rtnetlink (RTM_SETLINK with IFLA_AF_SPEC/AF_INET/IFLA_INET_CONF),
// in the calling thread's network namespace. It needs only CAP_NET_ADMIN,
// not a writable /proc/sys, which containers do not get.
func SetRPFilter(ifindex, value int) error {
	req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(ifindex)
	req.AddData(msg)
	spec := nl.NewRtAttr(unix.IFLA_AF_SPEC, nil)
	conf := spec.AddRtAttr(unix.AF_INET, nil).AddRtAttr(unix.IFLA_INET_CONF, nil)
	conf.AddRtAttr(ipv4DevconfRPFilter, nl.Uint32Attr(uint32(value)))
	req.AddData(spec)
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
		return fmt.Errorf("setting rp_filter of device %d to %d: %w", ifindex, value, err)
	}
	return nil
}

// RPFilter reads the effective reverse-path filter mode of a device: the
// larger of net.ipv4.conf.all.rp_filter and net.ipv4.conf.<dev>.rp_filter
// (0 off, 1 strict, 2 loose), as the kernel combines them.
func RPFilter(dev string) (int, error) {
	mode := 0
	for _, d := range []string{"all", dev} {
		v, err := readRPFilter(d)
		if err != nil {
			return 0, err
		}
		mode = max(mode, v)
	}
	return mode, nil
}

// readRPFilter reads net.ipv4.conf.<dev>.rp_filter (/proc/sys is readable
// in containers, only not writable).
func readRPFilter(dev string) (int, error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/conf/" + dev + "/rp_filter")
	if err != nil {
		return 0, fmt.Errorf("reading rp_filter: %w", err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("reading rp_filter of %s: %w", dev, err)
	}
	return v, nil
}

// LoosenRPFilter turns strict reverse-path filtering of the whole network
// namespace (net.ipv4.conf.all.rp_filter=1) into loose (2) and leaves any
// other setting alone. Strict filtering drops packets decapsulated from the
// router's VXLAN: their source (a pod on another node) is routed back over
// the node network, not through the VXLAN device. It needs a writable
// /proc/sys (`netd ipforward --loose-rp-filter` in the privileged init
// container). It returns the setting before.
func LoosenRPFilter() (int, error) {
	const path = "/proc/sys/net/ipv4/conf/all/rp_filter"
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", path, err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", path, err)
	}
	if v != 1 {
		return v, nil
	}
	if err := os.WriteFile(path, []byte("2"), 0o644); err != nil {
		return v, fmt.Errorf("writing %s: %w", path, err)
	}
	return v, nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}
