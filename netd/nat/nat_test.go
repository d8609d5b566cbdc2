package nat

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"

	"github.com/kubelink/kubelink/netd/nftable"
	"github.com/kubelink/kubelink/test/testenv"
)

// TestSNATTable applies the SNAT chain in a fresh network namespace and
// checks the kernel's view with nft, that an unchanged apply sends nothing
// and that a change replaces the table as a whole.
func TestSNATTable(t *testing.T) {
	if os.Getuid() != 0 {
		testenv.SkipOrFail(t, "needs root for network namespaces and nftables")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		testenv.SkipOrFail(t, "nft (Debian package nftables) not installed")
	}
	ns := fmt.Sprintf("kl-nat-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	tbl := &nftable.Table{Conn: func() (*nftables.Conn, error) { return nftables.New(nftables.WithNetNSFd(int(h))) }}
	// Two meshes: each destination maps to its mesh's link address.
	m := twoMeshes()
	list := func() string {
		out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "table", "ip", nftable.TableName).CombinedOutput()
		if err != nil {
			t.Fatalf("nft list: %v: %s", err, out)
		}
		return string(out)
	}
	if changed, err := tbl.Apply([]nftable.Chain{SNAT("kubelink", m)}); err != nil || !changed {
		t.Fatalf("first apply: changed=%v err=%v", changed, err)
	}
	out := list()
	for _, want := range []string{
		`oifname "kubelink" ip daddr 192.168.0.0/24 ip saddr != 192.168.0.0/24 snat to 192.168.0.11`,
		`oifname "kubelink" ip daddr 100.64.1.0/24 ip saddr != 192.168.0.0/24 snat to 192.168.0.11`,
		`oifname "kubelink" ip daddr 192.168.1.0/24 ip saddr != 192.168.1.0/24 snat to 192.168.1.11`,
		// Before a CNI's masquerade at srcnat (100).
		"type nat hook postrouting priority srcnat - 10;",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if changed, err := tbl.Apply([]nftable.Chain{SNAT("kubelink", m)}); err != nil || changed || tbl.Writes() != 1 {
		t.Fatalf("unchanged apply: changed=%v err=%v writes=%d", changed, err, tbl.Writes())
	}
	// One mesh: a single rule, whatever the destinations, so links coming
	// and going leave it alone.
	one := SNAT("kubelink", m[:2])
	if len(one.Rules) != 1 || len(SNAT("kubelink", m[:1]).Rules) != 1 {
		t.Fatalf("one mesh: want one rule, got %d", len(one.Rules))
	}
	if _, err := tbl.Apply([]nftable.Chain{one}); err != nil {
		t.Fatal(err)
	}
	if out := list(); strings.Contains(out, "ip daddr") || strings.Count(out, "snat to") != 1 ||
		!strings.Contains(out, `oifname "kubelink" ip saddr != 192.168.0.0/24 snat to 192.168.0.11`) {
		t.Fatalf("one mesh: want the single rule, stale rules must be gone:\n%s", out)
	}
	if _, err := tbl.Apply(nil); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "table", "ip", nftable.TableName).CombinedOutput(); err == nil {
		t.Fatalf("table still there after empty apply:\n%s", out)
	}
}

// twoMeshes maps the default mesh 192.168.0.0/24 (its network and a link's
// service CIDR) and a second mesh 192.168.1.0/24.
func twoMeshes() []Mapping {
	n0, n1 := netip.MustParsePrefix("192.168.0.0/24"), netip.MustParsePrefix("192.168.1.0/24")
	a0, a1 := netip.MustParseAddr("192.168.0.11"), netip.MustParseAddr("192.168.1.11")
	return []Mapping{
		{Dst: n0, Address: a0, Network: n0},
		{Dst: netip.MustParsePrefix("100.64.1.0/24"), Address: a0, Network: n0},
		{Dst: n1, Address: a1, Network: n1},
	}
}

// TestSNATRuleShape checks the rule without a kernel: one mesh is one rule
// that does not change when links (destinations) come and go; sources
// inside the mesh network (the link address, relayed members) are kept;
// several meshes get one rule per destination, each keeping its own mesh's
// network; the chain runs before srcnat.
func TestSNATRuleShape(t *testing.T) {
	m := twoMeshes()
	one := SNAT("kubelink", m[:1])
	if len(one.Rules) != 1 {
		t.Fatalf("one mesh: %d rules, want 1", len(one.Rules))
	}
	more := SNAT("kubelink", append(m[:2:2], Mapping{Dst: netip.MustParsePrefix("100.64.7.0/24"), Address: m[0].Address, Network: m[0].Network}))
	if !reflect.DeepEqual(one, more) {
		t.Errorf("one mesh: the chain changed with the links:\n%+v\n%+v", one, more)
	}
	if one.Priority == nil || *one.Priority != 90 || *one.Priority >= *nftables.ChainPriorityNATSource {
		t.Errorf("priority %v, want srcnat-10 (90)", one.Priority)
	}
	if one.Hook != nftables.ChainHookPostrouting || one.Type != nftables.ChainTypeNAT {
		t.Errorf("chain %+v is not nat postrouting", one)
	}
	keep := func(r nftable.Rule) (src, dst string) {
		t.Helper()
		// Payload at offset 12 (source) or 16 (destination), optional
		// mask, compare.
		var off uint32
		var mask []byte
		for _, e := range r.Exprs {
			switch e := e.(type) {
			case *expr.Payload:
				off, mask = e.Offset, nil
			case *expr.Bitwise:
				mask = e.Mask
			case *expr.Cmp:
				if off == 0 {
					continue
				}
				bits := 32
				if mask != nil {
					bits = 0
					for _, b := range mask {
						for ; b != 0; b <<= 1 {
							bits++
						}
					}
				}
				a, _ := netip.AddrFromSlice(e.Data)
				p := netip.PrefixFrom(a, bits).String()
				if off == 12 && e.Op == expr.CmpOpNeq {
					src = p
				} else if off == 16 && e.Op == expr.CmpOpEq {
					dst = p
				} else {
					t.Errorf("unexpected match at offset %d op %v", off, e.Op)
				}
				off = 0
			}
		}
		return src, dst
	}
	if src, dst := keep(one.Rules[0]); src != "192.168.0.0/24" || dst != "" {
		t.Errorf("one mesh: keeps %q, matches destination %q; want keep 192.168.0.0/24, no destination", src, dst)
	}
	two := SNAT("kubelink", m)
	if len(two.Rules) != 3 {
		t.Fatalf("two meshes: %d rules, want 3", len(two.Rules))
	}
	for i, want := range [][2]string{{"192.168.0.0/24", "192.168.0.0/24"}, {"192.168.0.0/24", "100.64.1.0/24"}, {"192.168.1.0/24", "192.168.1.0/24"}} {
		if src, dst := keep(two.Rules[i]); src != want[0] || dst != want[1] {
			t.Errorf("two meshes, rule %d: keeps %s for %s, want %s for %s", i, src, dst, want[0], want[1])
		}
	}
	// Without a network only the link address itself is kept.
	if src, _ := keep(SNAT("kubelink", []Mapping{{Dst: m[0].Dst, Address: m[0].Address}}).Rules[0]); src != "192.168.0.11/32" {
		t.Errorf("no network: keeps %s, want 192.168.0.11/32", src)
	}
}
