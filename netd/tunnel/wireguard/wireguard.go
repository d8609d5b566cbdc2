// Package wireguard runs netd's WireGuard device: the kernel's when the
// kernel has WireGuard (probed by creating the link over netlink,
// configured with wgctrl), otherwise the embedded userspace WireGuard
// (golang.zx2c4.com/wireguard) on a TUN device, configured through the
// device's own configuration API. Either way the configuration is diffed
// first: an unchanged configuration writes nothing, sessions survive, and
// an endpoint the peer roamed to is not reset. The embedded device opens
// no UAPI socket, so several gateways on one host (in different network
// namespaces) never collide.
package wireguard

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/kubelink/kubelink/netd/tunnel"
	"github.com/kubelink/kubelink/netd/wgkey"
)

// Options configure the device.
type Options struct {
	// Name of the TUN interface.
	Name string
	// MTU of the interface (default 1420).
	MTU        int
	ListenPort int
	PrivateKey wgkey.Key
	// Keepalive is the persistent keepalive interval for every peer.
	Keepalive time.Duration
	// Verbose enables the device's debug log.
	Verbose bool
}

// Device is an embedded WireGuard device.
type Device struct {
	name      string
	keepalive int
	be        backend
	// Kernel is set when the kernel's WireGuard runs the device.
	Kernel bool

	mu sync.Mutex
	// links maps peer public keys (hex) to KubeLink names.
	links map[string]string
	// endpoints remembers the endpoint we configured per peer, so a roamed
	// endpoint is only overwritten when the KubeLink's endpoint changes.
	endpoints map[string]string
	// writes counts configuration writes (tests check that an unchanged
	// reconcile writes nothing).
	writes int
}

// backend is the device that holds the configuration: the embedded
// WireGuard (configuration protocol text) or the kernel's (wgctrl).
type backend interface {
	read() (map[string]*peerState, error)
	apply(changes []change) error
	close() error
}

// New creates the device: a kernel WireGuard link when the kernel has
// WireGuard, otherwise the embedded WireGuard on a TUN device.
func New(opts Options) (*Device, error) {
	if opts.MTU == 0 {
		opts.MTU = 1420
	}
	d := &Device{
		name:      opts.Name,
		keepalive: int(opts.Keepalive / time.Second),
		links:     map[string]string{},
		endpoints: map[string]string{},
	}
	kb, err := newKernel(opts)
	if err == nil {
		d.be, d.Kernel = kb, true
		return d, nil
	}
	if !errors.Is(err, errNoKernelWireGuard) {
		return nil, err
	}
	eb, err := newEmbedded(opts)
	if err != nil {
		return nil, err
	}
	d.be = eb
	return d, nil
}

// embedded is golang.zx2c4.com/wireguard on a TUN device.
type embedded struct {
	name string
	dev  *device.Device
}

func newEmbedded(opts Options) (*embedded, error) {
	td, err := tun.CreateTUN(opts.Name, opts.MTU)
	if err != nil {
		return nil, fmt.Errorf("creating TUN device %s: %w", opts.Name, err)
	}
	level := device.LogLevelError
	if opts.Verbose {
		level = device.LogLevelVerbose
	}
	dev := device.NewDevice(td, conn.NewDefaultBind(), device.NewLogger(level, "wireguard("+opts.Name+"): "))
	cfg := fmt.Sprintf("private_key=%s\nlisten_port=%d\n", opts.PrivateKey.Hex(), opts.ListenPort)
	if err := dev.IpcSet(cfg); err != nil {
		dev.Close()
		return nil, fmt.Errorf("configuring WireGuard device %s: %w", opts.Name, err)
	}
	if err := dev.Up(); err != nil {
		dev.Close()
		return nil, fmt.Errorf("starting WireGuard device %s: %w", opts.Name, err)
	}
	return &embedded{name: opts.Name, dev: dev}, nil
}

func (e *embedded) read() (map[string]*peerState, error) {
	s, err := e.dev.IpcGet()
	if err != nil {
		return nil, fmt.Errorf("reading WireGuard device %s: %w", e.name, err)
	}
	return parse(s), nil
}

func (e *embedded) apply(changes []change) error {
	var b strings.Builder
	for _, c := range changes {
		b.WriteString(c.uapi())
	}
	if err := e.dev.IpcSet(b.String()); err != nil {
		return fmt.Errorf("configuring WireGuard device %s: %w", e.name, err)
	}
	return nil
}

func (e *embedded) close() error {
	e.dev.Close()
	return nil
}

// Device is the interface name.
func (d *Device) Device() string { return d.name }

// Writes is the number of configuration writes so far.
func (d *Device) Writes() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.writes
}

// Close stops the device and removes the interface.
func (d *Device) Close() error { return d.be.close() }

// peerState is one peer as the device reports it.
type peerState struct {
	psk       string
	endpoint  string
	keepalive int
	allowed   []string
	handshake time.Time
	rx, tx    uint64
	hsSec     int64
	hsNsec    int64
}

func (d *Device) read() (map[string]*peerState, error) { return d.be.read() }

// parse reads the device's key=value dump into peers keyed by public key
// (hex).
func parse(s string) map[string]*peerState {
	peers := map[string]*peerState{}
	var cur *peerState
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		switch k {
		case "public_key":
			cur = &peerState{}
			peers[v] = cur
		case "preshared_key":
			if cur != nil && strings.Trim(v, "0") != "" {
				cur.psk = v
			}
		case "endpoint":
			if cur != nil {
				cur.endpoint = v
			}
		case "persistent_keepalive_interval":
			if cur != nil {
				cur.keepalive, _ = strconv.Atoi(v)
			}
		case "allowed_ip":
			if cur != nil {
				cur.allowed = append(cur.allowed, v)
			}
		case "last_handshake_time_sec":
			if cur != nil {
				cur.hsSec, _ = strconv.ParseInt(v, 10, 64)
			}
		case "last_handshake_time_nsec":
			if cur != nil {
				cur.hsNsec, _ = strconv.ParseInt(v, 10, 64)
			}
		case "rx_bytes":
			if cur != nil {
				cur.rx, _ = strconv.ParseUint(v, 10, 64)
			}
		case "tx_bytes":
			if cur != nil {
				cur.tx, _ = strconv.ParseUint(v, 10, 64)
			}
		}
	}
	for _, p := range peers {
		if p.hsSec != 0 || p.hsNsec != 0 {
			p.handshake = time.Unix(p.hsSec, p.hsNsec)
		}
		slices.Sort(p.allowed)
	}
	return peers
}

func keyHex(b64 string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(b) != 32 {
		return "", fmt.Errorf("not a WireGuard key")
	}
	return hex.EncodeToString(b), nil
}

// Configure makes the device's peers exactly the given ones, writing only
// the differences.
func (d *Device) Configure(ctx context.Context, peers []tunnel.Peer) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	actual, err := d.read()
	if err != nil {
		return err
	}
	changes, links, err := d.diff(actual, peers)
	if err != nil {
		return err
	}
	d.links = links
	if len(changes) == 0 {
		return nil
	}
	d.writes++
	return d.be.apply(changes)
}

// change is the configuration of one peer that differs from the device.
type change struct {
	key    string // public key, hex
	remove bool
	// update is set for a peer the device has.
	update    bool
	psk       *string // hex; all zeros clears it
	endpoint  string
	keepalive *int
	// allowed replaces the allowed IPs when replace is set.
	replace bool
	allowed []string
}

// uapi renders the change in the configuration protocol.
func (c change) uapi() string {
	var b strings.Builder
	b.WriteString("public_key=" + c.key + "\n")
	if c.remove {
		b.WriteString("remove=true\n")
		return b.String()
	}
	if c.update {
		b.WriteString("update_only=true\n")
	}
	if c.psk != nil {
		b.WriteString("preshared_key=" + *c.psk + "\n")
	}
	if c.endpoint != "" {
		b.WriteString("endpoint=" + c.endpoint + "\n")
	}
	if c.keepalive != nil {
		b.WriteString("persistent_keepalive_interval=" + strconv.Itoa(*c.keepalive) + "\n")
	}
	if c.replace {
		b.WriteString("replace_allowed_ips=true\n")
		for _, a := range c.allowed {
			b.WriteString("allowed_ip=" + a + "\n")
		}
	}
	return b.String()
}

// diff returns the changes that turn actual into peers (none when nothing
// changes) and the new key→link map.
func (d *Device) diff(actual map[string]*peerState, peers []tunnel.Peer) ([]change, map[string]string, error) {
	var out []change
	links := map[string]string{}
	for _, p := range peers {
		pk, err := keyHex(p.PublicKey)
		if err != nil {
			return nil, nil, fmt.Errorf("link %s: public key: %w", p.Link, err)
		}
		psk := ""
		if p.PresharedKey != "" {
			if psk, err = keyHex(p.PresharedKey); err != nil {
				return nil, nil, fmt.Errorf("link %s: preshared key: %w", p.Link, err)
			}
		}
		links[pk] = p.Link
		var allowed []string
		for _, a := range p.AllowedIPs {
			allowed = append(allowed, a.Masked().String())
		}
		slices.Sort(allowed)
		allowed = slices.Compact(allowed)

		cur := actual[pk]
		c := change{key: pk, update: cur != nil}
		dirty := false
		if cur == nil || cur.psk != psk {
			v := psk
			if v == "" {
				v = strings.Repeat("0", 64)
			}
			c.psk, dirty = &v, true
		}
		// Set the endpoint only when it is new or the KubeLink changed it:
		// a peer that roamed keeps its roamed endpoint.
		if p.Endpoint != "" && (cur == nil || cur.endpoint == "" || d.endpoints[pk] != p.Endpoint) {
			c.endpoint, dirty = p.Endpoint, true
		}
		if cur == nil || cur.keepalive != d.keepalive {
			k := d.keepalive
			c.keepalive, dirty = &k, true
		}
		if cur == nil || !slices.Equal(cur.allowed, allowed) {
			c.replace, c.allowed, dirty = true, allowed, true
		}
		if p.Endpoint != "" {
			d.endpoints[pk] = p.Endpoint
		}
		if dirty {
			out = append(out, c)
		}
	}
	var gone []string
	for pk := range actual {
		if _, ok := links[pk]; !ok {
			gone = append(gone, pk)
		}
	}
	slices.Sort(gone)
	for _, pk := range gone {
		out = append(out, change{key: pk, remove: true})
		delete(d.endpoints, pk)
	}
	return out, links, nil
}

// Stats reports handshake and traffic per link.
func (d *Device) Stats() (map[string]tunnel.Stats, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	actual, err := d.read()
	if err != nil {
		return nil, err
	}
	out := map[string]tunnel.Stats{}
	for pk, p := range actual {
		if link, ok := d.links[pk]; ok {
			out[link] = tunnel.Stats{LastHandshake: p.handshake, RxBytes: p.rx, TxBytes: p.tx}
		}
	}
	return out, nil
}

// Endpoint returns the current endpoint of a link's peer (tests).
func (d *Device) Endpoint(link string) (netip.AddrPort, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	actual, err := d.read()
	if err != nil {
		return netip.AddrPort{}, err
	}
	for pk, l := range d.links {
		if l == link && actual[pk] != nil {
			return netip.ParseAddrPort(actual[pk].endpoint)
		}
	}
	return netip.AddrPort{}, fmt.Errorf("no peer for link %s", link)
}
