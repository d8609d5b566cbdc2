package broker

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"time"

	"github.com/kubelink/kubelink/api/mesh"
	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/netd/firewall"
	"github.com/kubelink/kubelink/netd/mss"
	"github.com/kubelink/kubelink/netd/nat"
	"github.com/kubelink/kubelink/netd/nftable"
	"github.com/kubelink/kubelink/netd/routes"
	"github.com/kubelink/kubelink/netd/tunnel"
)

// Dataplane turns KubeLinks and MeshServices into kernel state: tunnel
// peers, the device's addresses and routes, and netd's nftables table.
// Every step diffs first, so an unchanged Reconcile writes nothing.
type Dataplane struct {
	cfg      *Config
	tun      tunnel.Tunnel
	routes   *routes.Manager
	table    *nftable.Table
	resolver *resolver
	// hello receives the local meshes for the bridge hello (bridge mode).
	hello interface {
		SetLocal(locals map[string]localInfo)
	}
	routeWrites int
}

// NewDataplane returns the dataplane of a broker configured by cfg around
// an open tunnel device (nil for mode none). cfg must be validated.
func NewDataplane(cfg *Config, tun tunnel.Tunnel) *Dataplane {
	return &Dataplane{
		cfg:      cfg,
		tun:      tun,
		routes:   &routes.Manager{Device: cfg.IfceName, Table: cfg.RouteTable, RulePriority: cfg.RulePriority},
		table:    &nftable.Table{Name: cfg.IfceName},
		resolver: &resolver{ttl: 30 * time.Second, cache: map[string]resolved{}},
	}
}

// Outcome is what a Reconcile decided, for status.
type Outcome struct {
	Set   *mesh.Set
	Plans []*mesh.ServicePlan
	// LinkErrs are per-link configuration errors (link name → message).
	LinkErrs map[string]string
	// Chains is netd's nftables table as this reconcile wants it; it is
	// applied only when there is a tunnel.
	Chains []nftable.Chain
}

// Writes counts the writes sent to the kernel and the tunnel device so far
// (tunnel configurations, address/route/rule changes, nftables
// transactions).
func (d *Dataplane) Writes() int {
	n := d.routeWrites + d.table.Writes()
	if w, ok := d.tun.(interface{ Writes() int }); ok {
		n += w.Writes()
	}
	return n
}

// Close removes the nftables table (the device goes with the tunnel).
func (d *Dataplane) Close() error {
	if _, err := d.table.Apply(nil); err != nil {
		return fmt.Errorf("removing nftables table: %w", err)
	}
	return nil
}

// Reconcile brings the kernel to the state the objects describe.
func (d *Dataplane) Reconcile(ctx context.Context, links []*v1alpha1.KubeLink, services []*v1alpha1.MeshService, lookup mesh.ServiceLookup) (*Outcome, error) {
	opts, _ := d.cfg.MeshOptions()
	set := mesh.Build(links, opts)
	out := &Outcome{Set: set, LinkErrs: map[string]string{}, Plans: d.plans(services, lookup, set)}
	var (
		peers    []tunnel.Peer
		addrs    []netip.Addr
		rts      []routes.Route
		mappings []nat.Mapping
		locals   = map[string]localInfo{}
		byName   = map[string]int{}
	)
	// Mesh order must be stable: the nftables fingerprint depends on it.
	names := make([]string, 0, len(set.Meshes))
	for n := range set.Meshes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		m := set.Meshes[n]
		if m.Local == nil || !m.Local.Address.IsValid() {
			continue
		}
		addrs = append(addrs, m.Local.Address)
		if d.ownsNetwork() {
			rts = append(rts, routes.Route{Dst: m.Network, Src: m.Local.Address})
		}
		mappings = append(mappings, nat.Mapping{Dst: m.Network, Address: m.Local.Address, Network: m.Network})
		locals[m.Name] = localInfo{Cluster: m.Local.Cluster, Address: netip.PrefixFrom(m.Local.Address, m.Network.Bits()), CIDR: m.Local.CIDR, DNSIP: m.Local.DNSIP, Domain: m.Local.ClusterDomain}
	}
	usable := set.Usable()
	for _, l := range usable {
		if !d.cfg.Serves(l.Name) || l.GatewayLink != "" {
			continue
		}
		p, err := d.peer(ctx, l)
		if err != nil {
			out.LinkErrs[l.Name] = err.Error()
			continue
		}
		byName[l.Name] = len(peers)
		peers = append(peers, p)
	}
	// Links relayed through another link add their destinations to the
	// gateway link's peer.
	for _, l := range usable {
		if !d.cfg.Serves(l.Name) || l.GatewayLink == "" {
			continue
		}
		if i, ok := byName[l.GatewayLink]; ok {
			peers[i].AllowedIPs = append(peers[i].AllowedIPs, append(l.Routes(), netip.PrefixFrom(l.Address, 32))...)
		}
	}
	for _, l := range usable {
		if !d.cfg.Serves(l.Name) || out.LinkErrs[l.Name] != "" {
			continue
		}
		m := set.Meshes[l.Mesh]
		local := m.Local.Address
		dsts := l.Routes()
		if !d.ownsNetwork() {
			dsts = append(dsts, netip.PrefixFrom(l.Address, 32))
		}
		for _, r := range dsts {
			rts = append(rts, routes.Route{Dst: r, Src: local})
			mappings = append(mappings, nat.Mapping{Dst: r, Address: local, Network: m.Network})
		}
	}
	// Both modes: per-link ingress firewall, MSS clamping and SNAT on the
	// device. SNAT is needed in node mode too: pod CIDRs repeat across
	// clusters and peers accept only link addresses; it matches only
	// packets leaving through the device, so the node's other traffic is
	// untouched. Pod mode adds the MeshService DNAT.
	out.Chains = firewall.Chains(d.cfg.IfceName, firewall.FromMesh(set, d.cfg.Serves))
	out.Chains = append(out.Chains, mss.Clamp(d.cfg.IfceName), nat.SNAT(d.cfg.IfceName, mappings))
	if d.cfg.PodCIDR != "" {
		out.Chains = append(out.Chains, nat.DNAT(d.cfg.IfceName, nat.Forwards(out.Plans))...)
	}
	if d.tun == nil {
		return out, nil
	}
	if d.hello != nil {
		d.hello.SetLocal(locals)
	}
	if err := d.tun.Configure(ctx, peers); err != nil {
		// A device failure is every served link's error.
		for _, p := range peers {
			out.LinkErrs[p.Link] = "tunnel device: " + err.Error()
		}
		return out, fmt.Errorf("configuring the tunnel: %w", err)
	}
	ch, err := d.routes.Sync(addrs, rts)
	d.routeWrites += ch.Added + ch.Removed
	if err != nil {
		return out, err
	}
	if _, err := d.table.Apply(out.Chains); err != nil {
		return out, err
	}
	return out, nil
}

// ownsNetwork reports whether the broker routes whole mesh networks into
// its device. One serving only some links (--served-links) may have a
// sibling broker in the same namespace serving the others (WireGuard and
// bridge side by side): both replacing the one network route would move it
// back and forth every reconcile, so each routes the link addresses of its
// own links instead.
func (d *Dataplane) ownsNetwork() bool {
	return d.cfg.ServedLinks == "" || d.cfg.ServedLinks == "all"
}

// plans resolves the MeshServices; only a pod-mode gateway with a tunnel
// can serve them.
func (d *Dataplane) plans(services []*v1alpha1.MeshService, lookup mesh.ServiceLookup, set *mesh.Set) []*mesh.ServicePlan {
	var why string
	switch {
	case d.cfg.Mode == ModeNone:
		why = "the gateway runs in mode none (no tunnel)"
	case d.cfg.PodCIDR == "":
		why = "MeshServices need the gateway in pod mode (--pod-cidr): in node mode it shares the node's network namespace, where its NAT rules would meet every node's traffic"
	}
	if why == "" {
		return mesh.ResolveServices(services, lookup, set)
	}
	plans := make([]*mesh.ServicePlan, 0, len(services))
	for _, ms := range services {
		plans = append(plans, &mesh.ServicePlan{Namespace: ms.Namespace, Name: ms.Name, Service: ms.Spec.Service, Mesh: ms.Spec.Mesh,
			State: v1alpha1.StateUnsupported, Message: why, Object: ms})
	}
	return plans
}

func (d *Dataplane) peer(ctx context.Context, l *mesh.Link) (tunnel.Peer, error) {
	p := tunnel.Peer{Link: l.Name, PublicKey: l.PublicKey, PresharedKey: l.PresharedKey,
		AllowedIPs: append([]netip.Prefix{netip.PrefixFrom(l.Address, 32)}, l.Routes()...)}
	if d.cfg.Mode == ModeWireGuard && l.PublicKey == "" {
		return p, fmt.Errorf("spec.publicKey is missing (the peer's LocalLink status.publicKey)")
	}
	if l.Endpoint != "" {
		host, port, err := net.SplitHostPort(l.Endpoint)
		if err != nil {
			return p, fmt.Errorf("spec.endpoint: %w", err)
		}
		p.Host = host
		addr, err := d.resolver.resolve(ctx, host)
		if err != nil {
			return p, err
		}
		p.Endpoint = net.JoinHostPort(addr.String(), port)
	}
	return p, nil
}
