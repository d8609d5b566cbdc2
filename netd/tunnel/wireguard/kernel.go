package wireguard

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

var errNoKernelWireGuard = errors.New("the kernel has no WireGuard")

// kernel is the kernel's WireGuard, configured over generic netlink.
type kernel struct {
	name   string
	client *wgctrl.Client
}

// newKernel creates (or adopts) a kernel WireGuard link; it returns
// errNoKernelWireGuard when the kernel cannot create one.
func newKernel(opts Options) (*kernel, error) {
	if l, err := netlink.LinkByName(opts.Name); err == nil && l.Type() != "wireguard" {
		// A leftover device of another kind (e.g. our TUN after a crash is
		// gone with the process, so this is someone else's): refuse.
		return nil, fmt.Errorf("device %s exists and is a %s device, not WireGuard", opts.Name, l.Type())
	} else if err != nil {
		la := netlink.NewLinkAttrs()
		la.Name, la.MTU = opts.Name, opts.MTU
		if err := netlink.LinkAdd(&netlink.Wireguard{LinkAttrs: la}); err != nil {
			if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTSUP) {
				return nil, errNoKernelWireGuard
			}
			return nil, fmt.Errorf("%w: creating link %s: %v", errNoKernelWireGuard, opts.Name, err)
		}
	}
	c, err := wgctrl.New()
	if err != nil {
		_ = deleteLink(opts.Name)
		return nil, fmt.Errorf("opening wgctrl: %w", err)
	}
	k := wgtypes.Key(opts.PrivateKey)
	port := opts.ListenPort
	if err := c.ConfigureDevice(opts.Name, wgtypes.Config{PrivateKey: &k, ListenPort: &port}); err != nil {
		c.Close()
		_ = deleteLink(opts.Name)
		return nil, fmt.Errorf("configuring kernel WireGuard device %s: %w", opts.Name, err)
	}
	return &kernel{name: opts.Name, client: c}, nil
}

func deleteLink(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil
	}
	return netlink.LinkDel(l)
}

func (k *kernel) read() (map[string]*peerState, error) {
	dev, err := k.client.Device(k.name)
	if err != nil {
		return nil, fmt.Errorf("reading WireGuard device %s: %w", k.name, err)
	}
	out := map[string]*peerState{}
	var zero wgtypes.Key
	for _, p := range dev.Peers {
		ps := &peerState{keepalive: int(p.PersistentKeepaliveInterval / time.Second), handshake: p.LastHandshakeTime,
			rx: uint64(p.ReceiveBytes), tx: uint64(p.TransmitBytes)}
		if p.PresharedKey != zero {
			ps.psk = hex.EncodeToString(p.PresharedKey[:])
		}
		if p.Endpoint != nil {
			ps.endpoint = p.Endpoint.String()
		}
		for _, a := range p.AllowedIPs {
			ps.allowed = append(ps.allowed, a.String())
		}
		slices.Sort(ps.allowed)
		if ps.handshake.Unix() <= 0 {
			ps.handshake = time.Time{}
		}
		out[hex.EncodeToString(p.PublicKey[:])] = ps
	}
	return out, nil
}

func (k *kernel) apply(changes []change) error {
	var cfg wgtypes.Config
	for _, c := range changes {
		pc, err := c.wgtypes()
		if err != nil {
			return err
		}
		cfg.Peers = append(cfg.Peers, pc)
	}
	if err := k.client.ConfigureDevice(k.name, cfg); err != nil {
		return fmt.Errorf("configuring WireGuard device %s: %w", k.name, err)
	}
	return nil
}

func (k *kernel) close() error {
	k.client.Close()
	return deleteLink(k.name)
}

func hexKey(s string) (wgtypes.Key, error) {
	var k wgtypes.Key
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(k) {
		return k, fmt.Errorf("bad key")
	}
	copy(k[:], b)
	return k, nil
}

// wgtypes renders the change for wgctrl.
func (c change) wgtypes() (wgtypes.PeerConfig, error) {
	pk, err := hexKey(c.key)
	if err != nil {
		return wgtypes.PeerConfig{}, err
	}
	pc := wgtypes.PeerConfig{PublicKey: pk, Remove: c.remove, UpdateOnly: c.update, ReplaceAllowedIPs: c.replace}
	if c.psk != nil {
		k, err := hexKey(*c.psk)
		if err != nil {
			return pc, err
		}
		pc.PresharedKey = &k
	}
	if c.endpoint != "" {
		ap, err := netip.ParseAddrPort(c.endpoint)
		if err != nil {
			return pc, fmt.Errorf("endpoint %q: %w", c.endpoint, err)
		}
		pc.Endpoint = net.UDPAddrFromAddrPort(ap)
	}
	if c.keepalive != nil {
		d := time.Duration(*c.keepalive) * time.Second
		pc.PersistentKeepaliveInterval = &d
	}
	for _, a := range c.allowed {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			return pc, fmt.Errorf("allowed IP %q: %w", a, err)
		}
		pc.AllowedIPs = append(pc.AllowedIPs, net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())})
	}
	return pc, nil
}
