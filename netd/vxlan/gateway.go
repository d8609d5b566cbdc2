package vxlan

import (
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// Gateway is a node-mode active broker's decapsulating device (a pod-mode
// gateway's is the router's, on its node: DecapDevice): no remote and no
// FDB entries (it never sends), the gateway's derived inner address and
// MAC, so frames the routers send to that MAC are taken in and their
// packets forwarded like any other (into the tunnel device, or locally).
// Replies to pods go over the node network, not back through VXLAN.
type Gateway struct {
	spec Spec
	log  *slog.Logger
	nl   *netlink.Handle
	// warned is the rp_filter mode last warned about.
	warned int
}

// NewGateway returns the decapsulating device for the node-mode gateway
// whose outer address (the node IP of the hostNetwork broker) is ip. It
// works in the calling process's network namespace.
func NewGateway(ip netip.Addr, vni, port int, log *slog.Logger) (*Gateway, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("opening netlink: %w", err)
	}
	return &Gateway{
		spec: Spec{Name: GatewayDevice, VNI: vni, Port: port, Local: ip, Inner: GatewayAddress(ip), MAC: MAC(ip)},
		log:  log,
		nl:   h,
	}, nil
}

// Ensure makes the device exist and be configured; unchanged, it writes
// nothing. It runs on every reconcile: in node mode the router on this
// node removes its own VXLAN device (same VNI and port) only once it sees
// that the gateway moved here, and until then the creation fails.
func (g *Gateway) Ensure() error {
	local, err := g.isLocal()
	if err != nil {
		return err
	}
	if !local {
		return fmt.Errorf("vxlan: %s is not an address of this network namespace; the routers send to the gateway node's IP (--vxlan-ip, default $POD_IP, the node IP of a hostNetwork broker)", g.spec.Local)
	}
	_, n, err := EnsureReceiver(g.nl, g.spec)
	if err != nil {
		return fmt.Errorf("vxlan decapsulation device: %w", err)
	}
	if n > 0 {
		g.log.Info("vxlan decapsulation device ready", "device", g.spec.Name, "vni", g.spec.VNI, "port", g.spec.Port,
			"ip", g.spec.Local, "inner", g.spec.Inner, "mac", g.spec.MAC.String())
	}
	// The kernel applies the larger of all and the device's setting: a
	// strict "all" on the node still drops them, and only a writable
	// /proc/sys can change it. Say so once per change.
	mode, err := RPFilter(g.spec.Name)
	if err != nil {
		g.log.Warn("cannot read rp_filter", "err", err)
		return nil
	}
	if mode == 1 && g.warned != 1 {
		g.log.Warn("strict reverse-path filtering (net.ipv4.conf.all.rp_filter=1) drops packets decapsulated from the routers' VXLAN; set net.ipv4.conf.all.rp_filter to 2 (loose) on the node")
	}
	g.warned = mode
	return nil
}

func (g *Gateway) isLocal() (bool, error) {
	addrs, err := g.nl.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return false, fmt.Errorf("listing local addresses: %w", err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && ip == g.spec.Local {
			return true, nil
		}
	}
	return false, nil
}

// Close removes the device and releases the netlink handle.
func (g *Gateway) Close() error {
	defer g.nl.Close()
	if _, err := Remove(g.nl, g.spec.Name); err != nil {
		return fmt.Errorf("vxlan decapsulation device: %w", err)
	}
	return nil
}
