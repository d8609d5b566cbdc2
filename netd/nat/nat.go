// Package nat builds the NAT chains of netd's nftables table.
//
// SNAT (chain snat-postrouting, every gateway mode): a packet routed into
// the tunnel device towards a mesh destination leaves with that mesh's
// local link address as source. Pod and node CIDRs repeat across clusters
// and a peer accepts only a link's own addresses, so a pod's source must
// not enter the tunnel; this holds in node mode (the gateway in the node's
// namespace, the chart's default) as much as in pod mode. Only packets
// leaving through netd's device are matched, so nothing else of the node's
// traffic is touched. Sources inside the destination mesh's network are
// kept: that is the link address itself and the traffic a gateway relays
// for another member (gatewayLink), which carries that member's link
// address and must arrive with it. Replies are translated back by
// conntrack.
//
// The chain runs at priority srcnat-10 (90), before a CNI's or
// kube-proxy's masquerading at srcnat (100): of several NAT chains on one
// hook, the first that sets up a source mapping for a new connection
// decides it, so netd's chain must come first for mesh-bound connections.
// Connections it leaves alone are still the others' to translate.
//
// MeshService DNAT (dnat.go) stays pod-mode only.
package nat

import (
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/kubelink/kubelink/netd/nftable"
)

// ChainSNAT is the name of the SNAT chain.
const ChainSNAT = "snat-postrouting"

// SNATPriority is the SNAT chain's priority: srcnat-10, so it decides
// mesh-bound connections before masquerade chains at srcnat (100).
var SNATPriority = nftables.ChainPriorityRef(*nftables.ChainPriorityNATSource - 10)

// Mapping rewrites sources of packets to Dst into Address.
type Mapping struct {
	// Dst is a destination reached through the tunnel (mesh network, link
	// CIDR or egress CIDR).
	Dst netip.Prefix
	// Address is the local link address of the mesh of Dst.
	Address netip.Addr
	// Network is the mesh network of Address. Sources inside it keep
	// their address: the link address itself, and members whose traffic
	// this gateway relays. Unset: only Address itself is kept.
	Network netip.Prefix
}

// keep is the source prefix a mapping leaves alone.
func (m Mapping) keep() netip.Prefix {
	if m.Network.IsValid() && m.Network.Addr().Is4() && m.Network.Contains(m.Address) {
		return m.Network.Masked()
	}
	return netip.PrefixFrom(m.Address, 32)
}

// SNAT returns the chain: for packets leaving through device towards a
// mapping's destination with a source outside its mesh network, SNAT to
// the mesh's link address.
func SNAT(device string, mappings []Mapping) nftable.Chain {
	ch := nftable.Chain{
		Name:     ChainSNAT,
		Type:     nftables.ChainTypeNAT,
		Hook:     nftables.ChainHookPostrouting,
		Priority: SNATPriority,
	}
	var v4 []Mapping
	meshes := map[Mapping]bool{}
	for _, m := range mappings {
		if m.Address.Is4() && m.Dst.Addr().Is4() {
			v4 = append(v4, m)
			meshes[Mapping{Address: m.Address, Network: m.keep()}] = true
		}
	}
	// One mesh needs no destination match: only mesh destinations are
	// routed into the device. The rule then stays the same when links
	// come and go, so link changes do not rewrite the table. Several
	// meshes share the device, so the destination picks the address.
	if len(meshes) == 1 {
		m := v4[0]
		ch.Rules = append(ch.Rules, nftable.Rule{
			Comment: "source " + m.Address.String() + " for everything into the tunnel from outside " + m.keep().String(),
			Exprs:   snatExprs(device, netip.Prefix{}, m.keep(), m.Address),
		})
		return ch
	}
	for _, m := range v4 {
		dst := m.Dst.Masked()
		ch.Rules = append(ch.Rules, nftable.Rule{
			Comment: "snat " + dst.String() + " from outside " + m.keep().String() + " to " + m.Address.String(),
			Exprs:   snatExprs(device, dst, m.keep(), m.Address),
		})
	}
	return ch
}

// snatExprs is `oifname device [ip daddr dst] ip saddr != keep snat to
// addr` (no daddr match for an invalid dst).
func snatExprs(device string, dst, keep netip.Prefix, addr netip.Addr) []expr.Any {
	a := addr.As4()
	e := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: nftable.IfName(device)},
	}
	if dst.IsValid() {
		e = append(e, prefixMatch(16, dst, expr.CmpOpEq)...)
	}
	e = append(e, prefixMatch(12, keep, expr.CmpOpNeq)...)
	return append(e,
		&expr.Immediate{Register: 1, Data: a[:]},
		&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1},
	)
}

// prefixMatch compares the IPv4 header address at offset (12 source, 16
// destination) with an IPv4 prefix.
func prefixMatch(offset uint32, p netip.Prefix, op expr.CmpOp) []expr.Any {
	net4 := p.Masked().Addr().As4()
	e := []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4}}
	if p.Bits() < 32 {
		e = append(e, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: netipMask(p.Bits()), Xor: []byte{0, 0, 0, 0}})
	}
	return append(e, &expr.Cmp{Op: op, Register: 1, Data: net4[:]})
}

func netipMask(bits int) []byte {
	m := make([]byte, 4)
	for i := 0; i < bits; i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return m
}
