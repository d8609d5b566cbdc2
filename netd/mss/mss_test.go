package mss

import (
	"reflect"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// TestClamp checks the chain against the expressions nft 1.0 generates for
//
//	oifname "kubelink" tcp flags & (syn|rst) == syn tcp option maxseg size set rt mtu
//
// (nft --debug=netlink); test/nftrules compares the kernel's listing.
func TestClamp(t *testing.T) {
	ch := Clamp("kubelink")
	if ch.Name != "mss-forward" || ch.Type != nftables.ChainTypeFilter || *ch.Hook != *nftables.ChainHookForward || *ch.Priority != -150 {
		t.Fatalf("chain %s type %s hook %d priority %d", ch.Name, ch.Type, *ch.Hook, *ch.Priority)
	}
	if len(ch.Rules) != 1 {
		t.Fatalf("%d rules", len(ch.Rules))
	}
	dev := append([]byte("kubelink"), make([]byte, 8)...)
	want := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: dev},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{6}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x06}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x02}},
		&expr.Rt{Register: 1, Key: expr.RtTCPMSS},
		&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 2, Size: 2},
		&expr.Exthdr{SourceRegister: 1, Type: 2, Offset: 2, Len: 2, Op: expr.ExthdrOpTcpopt},
	}
	if got := ch.Rules[0].Exprs; !reflect.DeepEqual(got, want) {
		t.Errorf("expressions:\n%#v\nwant:\n%#v", got, want)
	}
	if ch.Rules[0].Comment == "" {
		t.Error("rule without comment")
	}
}
