// Package plan computes the broker's desired dataplane from KubeLinks and
// MeshServices: tunnel peers, the device's addresses and routes, netd's
// nftables chains with their SNAT mappings and MeshService forwards, and
// the bridge hello. It writes nothing and reads no kernel state, so every
// decision of a reconcile can be tested without root; the broker's
// Dataplane applies the result.
package plan

import (
	"fmt"
	"net"
	"net/netip"
	"sort"

	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/kubelink/kubelink/api/mesh"
	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/netd/firewall"
	"github.com/kubelink/kubelink/netd/mss"
	"github.com/kubelink/kubelink/netd/nat"
	"github.com/kubelink/kubelink/netd/nftable"
	"github.com/kubelink/kubelink/netd/routes"
	"github.com/kubelink/kubelink/netd/tunnel"
	"github.com/kubelink/kubelink/netd/tunnel/bridge"
)

// Config is what the broker's flags contribute to a plan.
type Config struct {
	// Device is the tunnel device; the nftables chains match packets
	// leaving or entering through it.
	Device string
	// Mesh is the default mesh as the flags describe it.
	Mesh mesh.Options
	// WireGuard: peers are WireGuard peers, which need spec.publicKey.
	WireGuard bool
	// NoTunnel is mode none: nothing can serve MeshServices.
	NoTunnel bool
	// PodMode is a gateway in its own network namespace (--pod-cidr): only
	// there may it DNAT MeshService addresses.
	PodMode bool
	// Serves picks the links of this broker (--served-links). Nil serves
	// every link and routes whole mesh networks into the device; a broker
	// serving only some links routes their link addresses instead (see
	// Plan.Routes).
	Serves func(link string) bool
	// AdvertisedPort is the port peers reach us on, told in the hello.
	AdvertisedPort int
	// AdvertiseDNS (--dns-advertisement): the hello tells peers the local
	// cluster's DNS (its service IP and cluster domain), which they write
	// into their KubeLink's spec.dns. Without it the hello carries none.
	AdvertiseDNS bool
	// APIAccess (--service-account): read access to the local API server
	// that the hello advertises, nil for none.
	APIAccess *bridge.HelloAPIAccess
	// Resolve maps an endpoint host name to an address. Resolution is I/O
	// and its outcome decides the plan (a link whose host does not
	// resolve is in error and gets no peer and no routes), so it is
	// passed in: the broker passes its cached DNS resolver, tests a table.
	// Literal IP hosts never reach it; nil resolves no names.
	Resolve func(host string) (netip.Addr, error)
	// MirrorNamespace is the broker's own namespace, the only one whose
	// MeshService mirrors (Objects.Mirrors) are trusted; empty trusts
	// none.
	MirrorNamespace string
}

// Objects are the cluster objects a plan is made of.
type Objects struct {
	Links    []*v1alpha1.KubeLink
	Services []*v1alpha1.MeshService
	Lookup   mesh.ServiceLookup
	// Mirrors are EndpointSlices that may be netd sync's mirrors of remote
	// MeshServices; MirrorClaims picks the real ones.
	Mirrors []*discoveryv1.EndpointSlice
}

// Plan is the desired dataplane of one reconcile.
type Plan struct {
	// Set is the mesh library's view of the links, with their verdicts.
	Set *mesh.Set
	// Peers are the tunnel peers: every usable served link that is not
	// relayed, with allowed IPs = link address/32, cidr, egress, learned
	// MeshService addresses (mirrors), plus the destinations of the links
	// relayed through it (spec.gatewayLink).
	Peers []tunnel.Peer
	// Addresses are the local link addresses of the meshes, one /32 each
	// on the device.
	Addresses []netip.Addr
	// Routes lead into the device: every mesh network (only when serving
	// every link), every served link's cidr, egress and learned MeshService
	// addresses, and its link address/32 when the mesh network is not
	// routed.
	Routes []routes.Route
	// SNAT are the source mappings of the snat chain, one per routed
	// destination.
	SNAT []nat.Mapping
	// Services are the MeshServices resolved (pod mode) or Unsupported.
	Services []*mesh.ServicePlan
	// Forwards are the DNAT forwards of the Ok MeshServices; they become
	// chains in pod mode only.
	Forwards []nat.Forward
	// Chains is netd's nftables table: per-link firewall, MSS clamping,
	// SNAT (every mode), MeshService DNAT (pod mode).
	Chains []nftable.Chain
	// Hello is what the bridge tells its peers: per mesh the local
	// cluster, link address, service CIDR and cluster DNS.
	Hello bridge.Hello
	// LinkErrs are configuration errors of served links (link name →
	// message); such a link gets no peer and no routes.
	LinkErrs map[string]string
	// MirrorRejects are the addresses of MeshService mirrors that did not
	// become routes, with the reason (mesh.Set.LearnServiceAddresses);
	// the accepted ones are the links' Learned addresses in Set.
	MirrorRejects []mesh.Rejected
}

// Make computes the plan of links and MeshServices without mirrors (see
// MakeFrom).
func Make(cfg Config, links []*v1alpha1.KubeLink, services []*v1alpha1.MeshService, lookup mesh.ServiceLookup) *Plan {
	return MakeFrom(cfg, Objects{Links: links, Services: services, Lookup: lookup})
}

// MakeFrom computes the plan of the objects. It is a function of its
// inputs (and of cfg.Resolve's answers); the same objects give the same
// plan, in the same order, whatever their order.
func MakeFrom(cfg Config, in Objects) *Plan {
	serves := cfg.Serves
	ownsNetwork := serves == nil
	if serves == nil {
		serves = func(string) bool { return true }
	}
	set := mesh.Build(in.Links, cfg.Mesh)
	p := &Plan{Set: set, LinkErrs: map[string]string{}, Hello: bridge.Hello{Port: cfg.AdvertisedPort, APIAccess: cfg.APIAccess}}
	p.Services = cfg.services(in.Services, in.Lookup, set)
	p.Forwards = forwards(p.Services)
	// Remote MeshService addresses join their links' routes before
	// anything reads them: peers' allowed IPs, routes, SNAT and firewall
	// sources all derive from mesh.Link.Routes. The addresses this
	// gateway serves itself stay local.
	p.MirrorRejects = set.LearnServiceAddresses(MirrorClaims(cfg.MirrorNamespace, in.Mirrors), servedAddresses(p.Forwards))

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
		p.Addresses = append(p.Addresses, m.Local.Address)
		if ownsNetwork {
			p.Routes = append(p.Routes, routes.Route{Dst: m.Network, Src: m.Local.Address})
		}
		p.SNAT = append(p.SNAT, nat.Mapping{Dst: m.Network, Address: m.Local.Address, Network: m.Network})
		p.Hello.Meshes = append(p.Hello.Meshes, helloMesh(m, cfg.AdvertiseDNS))
	}

	usable := set.Usable()
	peerOf := map[string]int{}
	for _, l := range usable {
		if !serves(l.Name) || l.GatewayLink != "" {
			continue
		}
		peer, err := cfg.peer(l)
		if err != nil {
			p.LinkErrs[l.Name] = err.Error()
			continue
		}
		peerOf[l.Name] = len(p.Peers)
		p.Peers = append(p.Peers, peer)
	}
	// Links relayed through another link add their destinations to the
	// gateway link's peer: the tunnel picks the peer by destination.
	for _, l := range usable {
		if !serves(l.Name) || l.GatewayLink == "" {
			continue
		}
		if i, ok := peerOf[l.GatewayLink]; ok {
			p.Peers[i].AllowedIPs = append(p.Peers[i].AllowedIPs, append(l.Routes(), netip.PrefixFrom(l.Address, 32))...)
		}
	}
	for _, l := range usable {
		if !serves(l.Name) || p.LinkErrs[l.Name] != "" {
			continue
		}
		m := set.Meshes[l.Mesh]
		local := m.Local.Address
		dsts := l.Routes()
		if !ownsNetwork {
			dsts = append(dsts, netip.PrefixFrom(l.Address, 32))
		}
		for _, dst := range dsts {
			p.Routes = append(p.Routes, routes.Route{Dst: dst, Src: local})
			p.SNAT = append(p.SNAT, nat.Mapping{Dst: dst, Address: local, Network: m.Network})
		}
	}

	// Every mode: per-link ingress firewall, MSS clamping and SNAT on the
	// device. SNAT is needed in node mode too: pod CIDRs repeat across
	// clusters and peers accept only link addresses; it matches only
	// packets leaving through the device, so the node's other traffic is
	// untouched. Pod mode adds the MeshService DNAT.
	p.Chains = firewall.Chains(cfg.Device, firewall.FromMesh(set, serves))
	p.Chains = append(p.Chains, mss.Clamp(cfg.Device), nat.SNAT(cfg.Device, p.SNAT))
	if cfg.PodMode {
		p.Chains = append(p.Chains, nat.DNAT(cfg.Device, p.Forwards)...)
	}
	return p
}

// services resolves the MeshServices; only a pod-mode gateway with a
// tunnel can serve them.
func (cfg Config) services(services []*v1alpha1.MeshService, lookup mesh.ServiceLookup, set *mesh.Set) []*mesh.ServicePlan {
	var why string
	switch {
	case cfg.NoTunnel:
		why = "the gateway runs in mode none (no tunnel)"
	case !cfg.PodMode:
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

// servedAddresses are the mesh addresses of the local MeshServices' forwards.
func servedAddresses(fwd []nat.Forward) []netip.Addr {
	out := make([]netip.Addr, 0, len(fwd))
	for _, f := range fwd {
		out = append(out, f.Address)
	}
	return out
}

// forwards flattens the forwards of the MeshServices that are Ok, each
// with its owner for the rule comments.
func forwards(plans []*mesh.ServicePlan) []nat.Forward {
	var out []nat.Forward
	for _, sp := range plans {
		if sp.State != v1alpha1.StateOK {
			continue
		}
		for _, f := range sp.Forwards {
			out = append(out, nat.Forward{Forward: f, Owner: sp.Namespace + "/" + sp.Name})
		}
	}
	return out
}

// peer is the tunnel peer of a link that is not relayed.
func (cfg Config) peer(l *mesh.Link) (tunnel.Peer, error) {
	p := tunnel.Peer{Link: l.Name, PublicKey: l.PublicKey, PresharedKey: l.PresharedKey,
		AllowedIPs: append([]netip.Prefix{netip.PrefixFrom(l.Address, 32)}, l.Routes()...)}
	if cfg.WireGuard && l.PublicKey == "" {
		return p, fmt.Errorf("spec.publicKey is missing (the peer's LocalLink status.publicKey)")
	}
	if l.Endpoint == "" {
		// Inbound: the peer dials us.
		return p, nil
	}
	host, port, err := net.SplitHostPort(l.Endpoint)
	if err != nil {
		return p, fmt.Errorf("spec.endpoint: %w", err)
	}
	p.Host = host
	addr, err := netip.ParseAddr(host)
	if err != nil {
		if cfg.Resolve == nil {
			return p, fmt.Errorf("resolving endpoint host %s: no resolver", host)
		}
		if addr, err = cfg.Resolve(host); err != nil {
			return p, err
		}
	}
	p.Endpoint = net.JoinHostPort(addr.String(), port)
	return p, nil
}

// helloMesh introduces the local cluster of a mesh to bridge peers; its
// DNS (service IP and cluster domain) only with dns, the outbound DNS
// advertisement.
func helloMesh(m *mesh.Mesh, dns bool) bridge.HelloMesh {
	l := m.Local
	hm := bridge.HelloMesh{Mesh: m.Name, Cluster: l.Cluster, Address: netip.PrefixFrom(l.Address, m.Network.Bits()).String()}
	if l.CIDR.IsValid() {
		hm.CIDR = l.CIDR.String()
	}
	if dns {
		hm.Domain = l.ClusterDomain
		if l.DNSIP.IsValid() {
			hm.DNSIP = l.DNSIP.String()
		}
	}
	return hm
}
