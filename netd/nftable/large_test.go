package nftable_test

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/kubelink/kubelink/netd/nftable"
	"github.com/kubelink/kubelink/test/netns"
	"github.com/kubelink/kubelink/test/testenv"
)

// TestLargeSetsKernel loads sets far beyond one netlink attribute (64 KiB
// of elements): a map of 20,000 elements and an anonymous interval verdict
// map of 3,000 adjacent ranges with alternating verdicts, whose implicit
// range ends must become explicit when it is loaded as a named set. Every
// element must arrive, and lookups at the range borders must find the
// right verdict.
func TestLargeSetsKernel(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		testenv.SkipOrFail(t, "nft not installed (Debian package nftables)")
	}
	lab := netns.New(t, "nfl")
	ns := lab.NS("g")

	addr := func(i int) []byte { return []byte{10, byte(i >> 16), byte(i >> 8), byte(i)} }
	big := nftable.Set{Name: "big", IsMap: true, KeyType: nftables.TypeIPAddr, DataType: nftables.TypeIPAddr}
	for i := 0; i < 20000; i++ {
		big.Elements = append(big.Elements, nftables.SetElement{Key: addr(i), Val: addr(i + 1), Comment: fmt.Sprintf("element %d", i)})
	}
	const ranges = 3000
	vmap := nftable.Set{Name: "ranges", Anonymous: true, Interval: true, IsMap: true, KeyType: nftables.TypeIPAddr, DataType: nftables.TypeVerdict}
	for i := 0; i < ranges; i++ {
		vmap.Elements = append(vmap.Elements, nftables.SetElement{Key: addr(1<<20 + i),
			VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: []string{"even", "odd"}[i%2]}})
	}
	vmap.Elements = append(vmap.Elements, nftables.SetElement{Key: addr(1<<20 + ranges), IntervalEnd: true})
	chains := []nftable.Chain{
		{Name: "even", Rules: []nftable.Rule{{Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}}}},
		{Name: "odd", Rules: []nftable.Rule{{Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}}}},
		{Name: "dispatch", Sets: []nftable.Set{big, vmap}, Rules: []nftable.Rule{
			{Comment: "by source", Exprs: []expr.Any{
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
				&expr.Lookup{SourceRegister: 1, DestRegister: 0, IsDestRegSet: true, SetName: vmap.Name},
			}},
			{Comment: "lookup", Exprs: []expr.Any{
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
				&expr.Lookup{SourceRegister: 1, SetName: big.Name},
				&expr.Verdict{Kind: expr.VerdictAccept},
			}},
		}},
	}
	tbl := &nftable.Table{Name: "large"}
	apply := func() {
		t.Helper()
		if err := netns.Do(ns, func() error { _, err := tbl.Apply(chains); return err }); err != nil {
			t.Fatal(err)
		}
	}
	apply()
	apply()
	if tbl.Writes() != 1 {
		t.Fatalf("an unchanged apply wrote: %d writes", tbl.Writes())
	}

	var doc struct {
		Nftables []struct {
			Map *struct {
				Name string
				Elem []json.RawMessage
			}
		}
	}
	if err := json.Unmarshal([]byte(lab.In(ns, "nft", "-j", "list", "table", "ip", "large")), &doc); err != nil {
		t.Fatal(err)
	}
	sizes := map[string]int{}
	for _, o := range doc.Nftables {
		if o.Map != nil {
			sizes[o.Map.Name] = len(o.Map.Elem)
		}
	}
	if sizes["big"] != 20000 || sizes["ranges"] != ranges {
		t.Fatalf("elements in the kernel: %v, want big 20000 and ranges %d", sizes, ranges)
	}
	for _, i := range []int{0, 1, 2, 499, 500, 501, 1023, 1024, 1777, 2998, 2999} {
		a := addr(1<<20 + i)
		got := lab.In(ns, "nft", "get", "element", "ip", "large", "ranges", fmt.Sprintf("{ %d.%d.%d.%d }", a[0], a[1], a[2], a[3]))
		want := "jump " + []string{"even", "odd"}[i%2]
		if !strings.Contains(got, want) {
			t.Errorf("range %d: want %q, got %s", i, want, got)
		}
	}
	a := addr(1<<20 + ranges)
	if out, err := exec.Command("ip", "netns", "exec", ns, "nft", "get", "element", "ip", "large", "ranges",
		fmt.Sprintf("{ %d.%d.%d.%d }", a[0], a[1], a[2], a[3])).CombinedOutput(); err == nil {
		t.Errorf("the address after the last range is in the map: %s", out)
	}
}

// TestRefillKernel changes one chain of a table: only that chain's rules
// and sets are replaced (its named sets too, also those bound by its
// rules), in one transaction; the other chains keep their rules (same
// handles). A new chain replaces the whole table.
func TestRefillKernel(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		testenv.SkipOrFail(t, "nft not installed (Debian package nftables)")
	}
	lab := netns.New(t, "nfr")
	ns := lab.NS("g")
	chains := func(target byte, elements int, extra bool) []nftable.Chain {
		m := nftable.Set{Name: "m", IsMap: true, KeyType: nftables.TypeIPAddr, DataType: nftables.TypeIPAddr}
		for i := 0; i < elements; i++ {
			m.Elements = append(m.Elements, nftables.SetElement{Key: []byte{10, 1, byte(i >> 8), byte(i)}, Val: []byte{10, 2, 0, target}})
		}
		anon := nftable.Set{Name: "a", Anonymous: true, KeyType: nftables.TypeIPAddr,
			Elements: []nftables.SetElement{{Key: []byte{10, 3, 0, target}}}}
		cs := []nftable.Chain{
			{Name: "keep", Rules: []nftable.Rule{{Comment: "keep", Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}}}},
			{Name: "nat", Type: nftables.ChainTypeNAT, Hook: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest,
				Sets: []nftable.Set{m, anon}, Rules: []nftable.Rule{
					{Comment: "anon", Exprs: []expr.Any{
						&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
						&expr.Lookup{SourceRegister: 1, SetName: anon.Name},
						&expr.Verdict{Kind: expr.VerdictJump, Chain: "keep"},
					}},
					{Comment: "map", Exprs: []expr.Any{
						&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
						&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: m.Name},
						&expr.NAT{Type: expr.NATTypeDestNAT, Family: 2, RegAddrMin: 1},
					}},
				}},
		}
		if extra {
			cs = append(cs, nftable.Chain{Name: "extra"})
		}
		return cs
	}
	tbl := &nftable.Table{Name: "refill"}
	apply := func(cs []nftable.Chain) {
		t.Helper()
		if err := netns.Do(ns, func() error { _, err := tbl.Apply(cs); return err }); err != nil {
			t.Fatal(err)
		}
	}
	list := func(chain string) string { return lab.In(ns, "nft", "-a", "list", "chain", "ip", "refill", chain) }
	apply(chains(1, 5000, false))
	keep, nat := list("keep"), list("nat")
	apply(chains(2, 6000, false))
	if tbl.Writes() != 2 {
		t.Fatalf("writes: %d", tbl.Writes())
	}
	if got := list("keep"); got != keep {
		t.Errorf("the unchanged chain was replaced:\n%s\n---\n%s", keep, got)
	}
	if got := list("nat"); got == nat || !strings.Contains(got, "10.3.0.2") {
		t.Errorf("the changed chain was not refilled:\n%s", got)
	}
	m := lab.In(ns, "nft", "list", "map", "ip", "refill", "m")
	if !strings.Contains(m, "10.1.23.111 : 10.2.0.2") || strings.Contains(m, ": 10.2.0.1") {
		t.Errorf("map not replaced: %.300s", m)
	}
	// A layout change (a new chain) replaces the table: every handle is new.
	apply(chains(2, 6000, true))
	if got := list("keep"); got == keep {
		t.Errorf("a new chain did not replace the table")
	}
	if !strings.Contains(lab.In(ns, "nft", "list", "table", "ip", "refill"), "chain extra") {
		t.Errorf("no chain extra")
	}
	// A table removed behind the Table's back: the refill fails, the
	// table is replaced instead, in the same Apply.
	lab.In(ns, "nft", "delete", "table", "ip", "refill")
	apply(chains(3, 10, true))
	if !strings.Contains(lab.In(ns, "nft", "list", "table", "ip", "refill"), "10.3.0.3") {
		t.Errorf("the table was not replaced after a failed refill")
	}
}
