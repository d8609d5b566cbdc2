// Package mss builds the TCP MSS clamping chain of netd's nftables table.
// Tunnels have a smaller MTU than the networks around them, and ICMP
// "fragmentation needed" often does not make it back across clusters, so a
// connection through the tunnel that relies on path MTU discovery can hang
// after its handshake. Lowering the MSS in the SYN and SYN/ACK to what the
// route through the device carries avoids oversized segments from the
// start, in both directions.
package mss

import (
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/kubelink/kubelink/netd/nftable"
)

// ChainForward is the name of the clamping chain.
const ChainForward = "mss-forward"

// tcpOptMaxSeg is the TCP option kind of the maximum segment size.
const tcpOptMaxSeg = 2

// Clamp returns the chain: TCP segments with SYN set and RST unset leaving
// through device get their MSS option lowered to the route's MSS:
//
//	oifname <device> tcp flags & (syn|rst) == syn tcp option maxseg size set rt mtu
//
// "rt mtu" is the route's MTU minus the IPv4 and TCP headers; the kernel
// only ever lowers the option, so a smaller MSS from the sender stays. The
// chain is a filter chain at mangle priority (-150) in forward: it sees
// every forwarded SYN, including those of connections opened from either
// side (the SYN/ACK leaves through the device for connections the peer
// opened).
func Clamp(device string) nftable.Chain {
	return nftable.Chain{
		Name:     ChainForward,
		Type:     nftables.ChainTypeFilter,
		Hook:     nftables.ChainHookForward,
		Priority: nftables.ChainPriorityMangle,
		Rules: []nftable.Rule{{
			Comment: "clamp TCP MSS to the route MTU",
			// The encoding nft 1.0 generates for the rule above.
			Exprs: []expr.Any{
				&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: nftable.IfName(device)},
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
				// The flags byte at offset 13 of the TCP header.
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{tcpSYN | tcpRST}, Xor: []byte{0}},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{tcpSYN}},
				// rt tcpmss yields host byte order; the option is big endian.
				&expr.Rt{Register: 1, Key: expr.RtTCPMSS},
				&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 2, Size: 2},
				&expr.Exthdr{SourceRegister: 1, Type: tcpOptMaxSeg, Offset: 2, Len: 2, Op: expr.ExthdrOpTcpopt},
			},
		}},
	}
}

const (
	tcpSYN = 0x02
	tcpRST = 0x04
)
