// Package nat builds the SNAT chain of netd's nftables table: in pod mode,
// traffic routed into the tunnel device gets the mesh's local link address
// as source, so the remote cluster can answer through the tunnel no matter
// which pod or node sent it.
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

// Mapping rewrites sources of packets to Dst into Address.
type Mapping struct {
	// Dst is a destination reached through the tunnel (mesh network, link
	// CIDR or egress CIDR).
	Dst netip.Prefix
	// Address is the local link address of the mesh of Dst.
	Address netip.Addr
}

// SNAT returns the chain: for packets leaving through device towards a
// mapping's destination with a source other than the link address, SNAT to
// the link address.
func SNAT(device string, mappings []Mapping) nftable.Chain {
	ch := nftable.Chain{
		Name:     ChainSNAT,
		Type:     nftables.ChainTypeNAT,
		Hook:     nftables.ChainHookPostrouting,
		Priority: nftables.ChainPriorityNATSource,
	}
	// One local link address (one mesh) needs no destination match: only
	// mesh destinations are routed into the device. The rule then stays
	// the same when links come and go, so link changes do not rewrite the
	// table.
	addrs := map[netip.Addr]bool{}
	for _, m := range mappings {
		if m.Address.Is4() && m.Dst.Addr().Is4() {
			addrs[m.Address] = true
		}
	}
	if len(addrs) == 1 {
		for a := range addrs {
			b := a.As4()
			ch.Rules = append(ch.Rules, nftable.Rule{
				Comment: "source " + a.String() + " for everything into the tunnel",
				Exprs: []expr.Any{
					&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: nftable.IfName(device)},
					&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
					&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: b[:]},
					&expr.Immediate{Register: 1, Data: b[:]},
					&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1},
				},
			})
		}
		return ch
	}
	for _, m := range mappings {
		if !m.Address.Is4() || !m.Dst.Addr().Is4() {
			continue
		}
		dst := m.Dst.Masked()
		mask := netipMask(dst.Bits())
		addr := m.Address.As4()
		net4 := dst.Addr().As4()
		ch.Rules = append(ch.Rules, nftable.Rule{
			Comment: "snat " + dst.String() + " to " + m.Address.String(),
			Exprs: []expr.Any{
				&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: nftable.IfName(device)},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: net4[:]},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: addr[:]},
				&expr.Immediate{Register: 1, Data: addr[:]},
				&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1},
			},
		})
	}
	return ch
}

func netipMask(bits int) []byte {
	m := make([]byte, 4)
	for i := 0; i < bits; i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return m
}
