package nat

import (
	"fmt"
	"net/netip"
	"sort"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/kubelink/kubelink/api/mesh"
	"github.com/kubelink/kubelink/netd/nftable"
)

// Chain names of the MeshService NAT.
const (
	ChainDNAT = "dnat-prerouting"
	ChainMasq = "dnat-postrouting"
	// setMasq holds every MeshService target address; DNATed connections
	// to one of them are masqueraded when they leave through another
	// device than the tunnel.
	setMasq = "dnat-targets"
)

// ipsDstNAT is conntrack's IPS_DST_NAT status bit.
const ipsDstNAT = 0x20

// Forward is one resolved MeshService forward and the MeshService
// (namespace/name) it belongs to.
type Forward struct {
	mesh.Forward
	Owner string
}

// DNAT returns the MeshService chains: dnat-prerouting (nat, prerouting,
// dstnat -100) rewrites the mesh address (and port) of new connections to
// a target, round robin over several targets; dnat-postrouting (nat,
// postrouting, srcnat 100) masquerades those connections when they leave
// through any device but the tunnel device, so the target answers to the
// gateway (it has no route back into the mesh). Targets local to the
// gateway never pass postrouting and keep the mesh source. Without
// forwards there are no chains.
func DNAT(device string, forwards []Forward) []nftable.Chain {
	if len(forwards) == 0 {
		return nil
	}
	pre := nftable.Chain{
		Name:     ChainDNAT,
		Type:     nftables.ChainTypeNAT,
		Hook:     nftables.ChainHookPrerouting,
		Priority: nftables.ChainPriorityNATDest,
	}
	addrs := map[netip.Addr]bool{}
	for i, f := range forwards {
		if !f.Address.Is4() || len(f.Targets) == 0 {
			continue
		}
		for _, t := range f.Targets {
			addrs[t.Address] = true
		}
		a := f.Address.As4()
		exprs := []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]},
		}
		withPort := f.Port != 0
		if withPort {
			proto := byte(unix.IPPROTO_TCP)
			if f.Protocol == "UDP" {
				proto = unix.IPPROTO_UDP
			}
			exprs = append(exprs,
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(f.Port)},
			)
		}
		nat := &expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1}
		if withPort {
			nat.RegProtoMin, nat.Specified = 2, true
		}
		if len(f.Targets) == 1 {
			t := f.Targets[0].Address.As4()
			exprs = append(exprs, &expr.Immediate{Register: 1, Data: t[:]})
			if withPort {
				exprs = append(exprs, &expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(targetPort(f, 0))})
			}
		} else {
			// Round robin: a counter picks the address and the port from
			// two maps with the same keys.
			addrMap := nftable.Set{Name: fmt.Sprintf("dnat-%d-addr", i), Anonymous: true, IsMap: true, KeyType: nftables.TypeInteger, DataType: nftables.TypeIPAddr}
			portMap := nftable.Set{Name: fmt.Sprintf("dnat-%d-port", i), Anonymous: true, IsMap: true, KeyType: nftables.TypeInteger, DataType: nftables.TypeInetService}
			for j, t := range f.Targets {
				ta := t.Address.As4()
				addrMap.Elements = append(addrMap.Elements, nftables.SetElement{Key: binaryutil.NativeEndian.PutUint32(uint32(j)), Val: ta[:]})
				portMap.Elements = append(portMap.Elements, nftables.SetElement{Key: binaryutil.NativeEndian.PutUint32(uint32(j)), Val: binaryutil.BigEndian.PutUint16(targetPort(f, j))})
			}
			pre.Sets = append(pre.Sets, addrMap)
			exprs = append(exprs,
				&expr.Numgen{Register: 1, Modulus: uint32(len(f.Targets)), Type: unix.NFT_NG_INCREMENTAL},
				&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: addrMap.Name},
			)
			if withPort {
				// A second counter of the same modulus, evaluated exactly
				// once per new connection like the first, stays in step
				// with it (this is how nft itself encodes the pair).
				pre.Sets = append(pre.Sets, portMap)
				exprs = append(exprs,
					&expr.Numgen{Register: 2, Modulus: uint32(len(f.Targets)), Type: unix.NFT_NG_INCREMENTAL},
					&expr.Lookup{SourceRegister: 2, DestRegister: 2, IsDestRegSet: true, SetName: portMap.Name},
				)
			}
		}
		exprs = append(exprs, nat)
		pre.Rules = append(pre.Rules, nftable.Rule{Comment: comment(f), Exprs: exprs})
	}
	if len(pre.Rules) == 0 {
		return nil
	}
	sorted := make([]netip.Addr, 0, len(addrs))
	for a := range addrs {
		sorted = append(sorted, a)
	}
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Less(sorted[j]) })
	set := nftable.Set{Name: setMasq, KeyType: nftables.TypeIPAddr}
	for _, a := range sorted {
		b := a.As4()
		set.Elements = append(set.Elements, nftables.SetElement{Key: b[:]})
	}
	post := nftable.Chain{
		Name:     ChainMasq,
		Type:     nftables.ChainTypeNAT,
		Hook:     nftables.ChainHookPostrouting,
		Priority: nftables.ChainPriorityNATSource,
		Sets:     []nftable.Set{set},
		Rules: []nftable.Rule{{
			Comment: "masquerade MeshService connections leaving for a target outside the tunnel",
			Exprs: []expr.Any{
				&expr.Ct{Key: expr.CtKeySTATUS, Register: 1},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(ipsDstNAT), Xor: []byte{0, 0, 0, 0}},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
				&expr.Lookup{SourceRegister: 1, SetName: setMasq},
				&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: nftable.IfName(device)},
				&expr.Masq{},
			},
		}},
	}
	return []nftable.Chain{pre, post}
}

// targetPort is target j's port, the mesh port when the target keeps it.
func targetPort(f Forward, j int) uint16 {
	if p := f.Targets[j].Port; p != 0 {
		return p
	}
	return f.Port
}

func comment(f Forward) string {
	s := f.Owner + ": " + f.Address.String()
	if f.Port != 0 {
		s += fmt.Sprintf(" %s/%d", f.Protocol, f.Port)
	}
	s += " to"
	for i, t := range f.Targets {
		if i == 4 {
			s += fmt.Sprintf(" (+%d)", len(f.Targets)-4)
			break
		}
		s += " " + t.String()
	}
	return s
}
