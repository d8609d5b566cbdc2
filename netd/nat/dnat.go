package nat

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strconv"

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
	// ChainRoundRobin holds the rules of the forwards with several
	// targets, jumped to from ChainDNAT. A chain of its own, so a change
	// of a one-target forward does not reload those rules with their
	// anonymous maps (~200 ms for a thousand) and the other way round:
	// only changed chains are rewritten (nftable).
	ChainRoundRobin = "dnat-roundrobin"
	ChainMasq       = "dnat-postrouting"
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

// Map names of the MeshService DNAT (table-wide, hence the prefix).
const (
	// mapPorts maps mesh address . protocol . port of the forwards with
	// one target to the target address . port.
	mapPorts = "dnat-ports"
	// mapAddrs maps whole mesh addresses with one target to the target.
	mapAddrs = "dnat-addrs"
)

// Key and data types of the maps; concatenated fields are padded to 4 bytes
// (one register each).
var (
	portsKey  = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	portsData = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
)

// Registers: NFT_REG_1 is the 16-byte register over the 4-byte registers
// NFT_REG32_00-03 (8-11), so a concatenation loaded into 1, 9, 10 is one
// key at register 1, and map data address . port lands in 1 and 9.
const (
	reg1   = 1
	reg32b = 9
	reg32c = 10
)

// DNAT returns the MeshService chains: dnat-prerouting (nat, prerouting,
// dstnat -100) rewrites the mesh address (and port) of new connections to
// a target, round robin over several targets; dnat-postrouting (nat,
// postrouting, srcnat 100) masquerades those connections when they leave
// through any device but the tunnel device, so the target answers to the
// gateway (it has no route back into the mesh). Targets local to the
// gateway never pass postrouting and keep the mesh source. Without
// forwards there are no chains.
//
// Forwards with one target, the common case, are elements of two maps
// looked up by one rule each (ip daddr . meta l4proto . th dport, and ip
// daddr for whole addresses), not a rule each: at mesh scale (thousands of
// MeshServices) that is thousands of rules fewer to build, compare and load
// on every table replacement, and a hash lookup instead of a linear walk
// for each new connection. Each element carries the forward's comment.
// Round robin needs a counter of its own per forward (numgen state lives
// in the expression; a map shared by such rules would need a key type nft
// cannot list and load back), so forwards with several targets keep one
// rule each, in the regular chain dnat-roundrobin that dnat-prerouting
// jumps to after the maps (returned first: jump targets precede jumps).
//
// Forwards must not conflict, as mesh.ResolveServices guarantees; of
// conflicting ones the first keeps its claim as there: a repeated
// address . protocol . port, an address forwarded whole earlier, or a
// whole address with port forwards earlier is left out.
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
	ports := nftable.Set{Name: mapPorts, IsMap: true, Concatenation: true, KeyType: portsKey, DataType: portsData,
		Elements: make([]nftables.SetElement, 0, len(forwards))}
	addrMap := nftable.Set{Name: mapAddrs, IsMap: true, KeyType: nftables.TypeIPAddr, DataType: nftables.TypeIPAddr}
	rr := nftable.Chain{Name: ChainRoundRobin}
	// The table is rebuilt on every reconcile, so this loop runs for every
	// MeshService forward each time: IPv4 claims are packed into integers
	// (address, protocol, port), and the elements' keys and values share
	// one allocation.
	var addrs []uint32
	claimed := make(map[uint64]bool, len(forwards))
	const whole, withPorts = 1, 2
	used := make(map[uint32]uint8, len(forwards)) // address -> whole | withPorts
	backing := make([]byte, 0, 20*len(forwards))
	take := func(b ...byte) []byte {
		start := len(backing)
		backing = append(backing, b...)
		return backing[start:len(backing):len(backing)]
	}
	for i, f := range forwards {
		if !f.Address.Is4() || len(f.Targets) == 0 {
			continue
		}
		a := f.Address.As4()
		a32 := binary.BigEndian.Uint32(a[:])
		proto := protoOf(f)
		k := uint64(a32)<<24 | uint64(proto)<<16 | uint64(f.Port)
		if f.Port == 0 {
			k = uint64(a32) << 24
		}
		if claimed[k] || used[a32]&whole != 0 || (f.Port == 0 && used[a32]&withPorts != 0) {
			continue
		}
		claimed[k] = true
		if f.Port == 0 {
			used[a32] |= whole
		} else {
			used[a32] |= withPorts
		}
		for _, t := range f.Targets {
			t4 := t.Address.As4()
			addrs = append(addrs, binary.BigEndian.Uint32(t4[:]))
		}
		if len(f.Targets) == 1 {
			t := f.Targets[0].Address.As4()
			if f.Port == 0 {
				addrMap.Elements = append(addrMap.Elements, nftables.SetElement{Key: take(a[:]...), Val: take(t[:]...), Comment: comment(f)})
				continue
			}
			p, tp := f.Port, targetPort(f, 0)
			ports.Elements = append(ports.Elements, nftables.SetElement{
				Key:     take(a[0], a[1], a[2], a[3], proto, 0, 0, 0, byte(p>>8), byte(p), 0, 0),
				Val:     take(t[0], t[1], t[2], t[3], byte(tp>>8), byte(tp), 0, 0),
				Comment: comment(f),
			})
			continue
		}
		rr.Rules = append(rr.Rules, roundRobin(&rr, i, f, a, proto))
	}
	if len(ports.Elements) > 0 {
		pre.Sets = append(pre.Sets, ports)
		pre.Rules = append(pre.Rules, nftable.Rule{
			Comment: "MeshService ports with one target",
			Exprs: []expr.Any{
				&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg32b},
				&expr.Payload{DestRegister: reg32c, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Lookup{SourceRegister: reg1, DestRegister: reg1, IsDestRegSet: true, SetName: ports.Name},
				&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg1, RegProtoMin: reg32b, Specified: true},
			},
		})
	}
	if len(addrMap.Elements) > 0 {
		pre.Sets = append(pre.Sets, addrMap)
		pre.Rules = append(pre.Rules, nftable.Rule{
			Comment: "MeshService addresses with one target",
			Exprs: []expr.Any{
				&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
				&expr.Lookup{SourceRegister: reg1, DestRegister: reg1, IsDestRegSet: true, SetName: addrMap.Name},
				&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg1},
			},
		})
	}
	var chains []nftable.Chain
	if len(rr.Rules) > 0 {
		chains = append(chains, rr)
		pre.Rules = append(pre.Rules, nftable.Rule{
			Comment: "MeshService forwards with several targets",
			Exprs:   []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: ChainRoundRobin}},
		})
	}
	if len(pre.Rules) == 0 {
		return nil
	}
	slices.Sort(addrs)
	addrs = slices.Compact(addrs)
	set := nftable.Set{Name: setMasq, KeyType: nftables.TypeIPAddr, Elements: make([]nftables.SetElement, len(addrs))}
	keys := make([]byte, 4*len(addrs))
	for i, a := range addrs {
		k := keys[4*i : 4*i+4 : 4*i+4]
		binary.BigEndian.PutUint32(k, a)
		set.Elements[i].Key = k
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
	return append(chains, pre, post)
}

// roundRobin is the rule of forward i with several targets: a counter of
// its own picks the target (address, or address . port) from an anonymous
// map, which it adds to ch.
func roundRobin(ch *nftable.Chain, i int, f Forward, a [4]byte, proto byte) nftable.Rule {
	exprs := []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: a[:]},
	}
	withPort := f.Port != 0
	m := nftable.Set{Name: fmt.Sprintf("dnat-%d", i), Anonymous: true, IsMap: true, KeyType: nftables.TypeInteger, DataType: nftables.TypeIPAddr}
	if withPort {
		exprs = append(exprs,
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{proto}},
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binaryutil.BigEndian.PutUint16(f.Port)},
		)
		// One lookup yields address . port, so a single counter
		// picks both.
		m.DataType = portsData
	}
	for j, t := range f.Targets {
		ta := t.Address.As4()
		val := ta[:]
		if withPort {
			tp := binaryutil.BigEndian.PutUint16(targetPort(f, j))
			val = []byte{ta[0], ta[1], ta[2], ta[3], tp[0], tp[1], 0, 0}
		}
		m.Elements = append(m.Elements, nftables.SetElement{Key: binaryutil.NativeEndian.PutUint32(uint32(j)), Val: val})
	}
	ch.Sets = append(ch.Sets, m)
	nat := &expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg1}
	if withPort {
		nat.RegProtoMin, nat.Specified = reg32b, true
	}
	exprs = append(exprs,
		&expr.Numgen{Register: reg1, Modulus: uint32(len(f.Targets)), Type: unix.NFT_NG_INCREMENTAL},
		&expr.Lookup{SourceRegister: reg1, DestRegister: reg1, IsDestRegSet: true, SetName: m.Name},
		nat,
	)
	return nftable.Rule{Comment: comment(f), Exprs: exprs}
}

// protoOf is the IP protocol number of a forward with a port.
func protoOf(f Forward) byte {
	if f.Protocol == "UDP" {
		return unix.IPPROTO_UDP
	}
	return unix.IPPROTO_TCP
}

// targetPort is target j's port, the mesh port when the target keeps it.
func targetPort(f Forward, j int) uint16 {
	if p := f.Targets[j].Port; p != 0 {
		return p
	}
	return f.Port
}

// comment describes a forward: owner, mesh address (and port), targets.
// It is built by appending, not formatting: the table is rebuilt on every
// reconcile with one comment per MeshService forward.
func comment(f Forward) string {
	b := make([]byte, 0, 96)
	b = append(b, f.Owner...)
	b = append(b, ": "...)
	b = f.Address.AppendTo(b)
	if f.Port != 0 {
		b = append(b, ' ')
		b = append(b, f.Protocol...)
		b = append(b, '/')
		b = strconv.AppendUint(b, uint64(f.Port), 10)
	}
	b = append(b, " to"...)
	for i, t := range f.Targets {
		if i == 4 {
			b = append(b, " (+"...)
			b = strconv.AppendInt(b, int64(len(f.Targets)-4), 10)
			b = append(b, ')')
			break
		}
		b = append(b, ' ')
		if t.Port == 0 {
			b = t.Address.AppendTo(b)
		} else {
			b = netip.AddrPortFrom(t.Address, t.Port).AppendTo(b)
		}
	}
	// nft keeps comments below 128 bytes (rule comments are cut in
	// nftable the same way); MeshService names may be longer.
	if len(b) > 127 {
		b = b[:127]
	}
	return string(b)
}
