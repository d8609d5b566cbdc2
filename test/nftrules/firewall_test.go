package nftrules

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/kubelink/kubelink/api/mesh"
	"github.com/kubelink/kubelink/netd/firewall"
	"github.com/kubelink/kubelink/netd/nftable"
	"github.com/kubelink/kubelink/test/netns"
)

// meshService is a stand-in for the MeshService DNAT chain: the mesh
// address 10.97.0.10 is forwarded to the local destination 10.98.0.3.
func meshService() nftable.Chain {
	return nftable.Chain{
		Name: "dnat-prerouting", Type: nftables.ChainTypeNAT,
		Hook: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest,
		Rules: []nftable.Rule{{Comment: "mesh service", Exprs: []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{10, 97, 0, 10}},
			&expr.Immediate{Register: 1, Data: []byte{10, 98, 0, 3}},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1},
		}}},
	}
}

func rules(s ...string) []mesh.Rule {
	var out []mesh.Rule
	for _, e := range s {
		out = append(out, mesh.Rule{Deny: strings.HasPrefix(e, "!"), Prefix: netip.MustParsePrefix(strings.TrimPrefix(e, "!"))})
	}
	return out
}

// links: alpha allows the local network and the mesh service but denies
// 10.98.0.3; beta is unrestricted although gamma's sources cover its
// address; gamma only denies 10.98.0.2.
var links = []firewall.Link{
	{Name: "gamma", Sources: []netip.Prefix{netip.MustParsePrefix("10.99.0.0/24")}, Ingress: rules("!10.98.0.2/32")},
	{Name: "alpha", Sources: []netip.Prefix{netip.MustParsePrefix("10.99.0.11/32")}, Ingress: rules("10.98.0.0/24", "!10.98.0.3/32", "10.97.0.10/32")},
	{Name: "beta", Sources: []netip.Prefix{netip.MustParsePrefix("10.99.0.12/32")}},
}

// wantRuleset is the table as nft text; nft loads it into a reference
// namespace and both listings must be identical.
const wantRuleset = `table ip kubelink {
	chain dnat-prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr 10.97.0.10 dnat to 10.98.0.3 comment "mesh service"
	}
	chain fw-0 {
		ct original ip daddr 10.98.0.3 drop comment "ingress alpha: deny 10.98.0.3/32"
		ct original ip daddr 10.97.0.10 accept comment "ingress alpha: allow 10.97.0.10/32"
		ct original ip daddr 10.98.0.0/24 accept comment "ingress alpha: allow 10.98.0.0/24"
		drop comment "ingress alpha: not allowed"
	}
	chain fw-1 {
		ct original ip daddr 10.98.0.2 drop comment "ingress gamma: deny 10.98.0.2/32"
		accept comment "ingress gamma: not denied"
	}
	chain fw-links {
		ct state established,related accept comment "replies and established connections"
		ip saddr 10.99.0.11 jump fw-0 comment "from alpha"
		ip saddr 10.99.0.12 accept comment "from beta: unrestricted"
		ip saddr 10.99.0.0/24 jump fw-1 comment "from gamma"
	}
	chain filter-forward {
		type filter hook forward priority filter; policy accept;
		iifname "kubelink" jump fw-links comment "per-link ingress firewall"
	}
	chain filter-input {
		type filter hook input priority filter; policy accept;
		iifname "kubelink" jump fw-links comment "per-link ingress firewall"
	}
}
`

// TestFirewall: remote namespaces alpha, beta, gamma on a bridge named like
// the tunnel device in the gateway G, which routes to the local namespace L
// (two destinations, 10.98.0.2 and 10.98.0.3).
func TestFirewall(t *testing.T) {
	lab := netns.New(t, "klfw")
	requireNft(t, lab)
	g, l := lab.NS("g"), lab.NS("l")
	lab.Bridge(g, dev, "10.99.0.1/24")
	lab.Veth(g, "lan", "10.98.0.1/24", l, "eth0", "10.98.0.2/24")
	lab.In(l, "ip", "addr", "add", "10.98.0.3/24", "dev", "eth0")
	lab.In(l, "ip", "route", "add", "default", "via", "10.98.0.1")
	lab.Forwarding(g)
	remote := map[string]string{}
	for i, name := range []string{"alpha", "beta", "gamma"} {
		ns := lab.NS(name)
		lab.Veth(ns, "eth0", fmt.Sprintf("10.99.0.%d/24", 11+i), g, fmt.Sprintf("r%d", i), "")
		lab.Attach(g, fmt.Sprintf("r%d", i), dev)
		lab.In(ns, "ip", "route", "add", "default", "via", "10.99.0.1")
		remote[name] = ns
	}
	for _, a := range []string{"10.98.0.2:8080", "10.98.0.3:8080"} {
		serve(t, l, a, nil)
	}
	// The gateway itself: one address the lists allow, one they do not.
	serve(t, g, "10.98.0.1:8080", nil)
	serve(t, g, "10.99.0.1:8080", nil)
	serve(t, remote["alpha"], "10.99.0.11:9090", nil)

	type check struct {
		from, to string
		ok       bool
	}
	run := func(checks []check) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make([]error, len(checks))
		for i, c := range checks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = reach(remote[c.from], c.to, 1500*time.Millisecond)
			}()
		}
		wg.Wait()
		for i, c := range checks {
			switch err := errs[i]; {
			case c.ok && err != nil:
				t.Errorf("%s → %s: %v, want reachable", c.from, c.to, err)
			case !c.ok && err == nil:
				t.Errorf("%s → %s reachable, want dropped", c.from, c.to)
			case !c.ok && !isTimeout(err):
				t.Errorf("%s → %s: %v, want a timeout (dropped, not refused)", c.from, c.to, err)
			}
		}
	}
	var all []check
	for _, from := range []string{"alpha", "beta", "gamma"} {
		for _, to := range []string{"10.98.0.2:8080", "10.98.0.3:8080", "10.97.0.10:8080", "10.98.0.1:8080", "10.99.0.1:8080"} {
			all = append(all, check{from, to, true})
		}
	}

	tbl := table(t, g)
	// Without the firewall everything is reachable, so every drop below is
	// the firewall's.
	if _, err := tbl.Apply([]nftable.Chain{meshService()}); err != nil {
		t.Fatal(err)
	}
	run(all)
	if t.Failed() {
		t.FailNow()
	}

	chains := append([]nftable.Chain{meshService()}, firewall.Chains(dev, links)...)
	if _, err := tbl.Apply(chains); err != nil {
		t.Fatal(err)
	}
	got := list(t, lab, g)
	for _, w := range []string{`ip saddr 10.99.0.11 jump fw-0 comment "from alpha"`, `ct original ip daddr 10.98.0.3 drop comment "ingress alpha: deny 10.98.0.3/32"`} {
		if !strings.Contains(got, w) {
			t.Errorf("table lacks %q", w)
		}
	}
	if want, _ := reference(t, lab, "ref", wantRuleset); got != want {
		t.Errorf("table differs from nft's own encoding of the ruleset:\n%s\nwant:\n%s", got, want)
	}

	run([]check{
		{"alpha", "10.98.0.2:8080", true},  // allowed by 10.98.0.0/24
		{"alpha", "10.98.0.3:8080", false}, // the deny beats the broader allow
		{"alpha", "10.97.0.10:8080", true}, // mesh address allowed, although DNAT leads to the denied 10.98.0.3
		{"alpha", "10.98.0.1:8080", true},  // the gateway, allowed
		{"alpha", "10.99.0.1:8080", false}, // the gateway, not allowed (filter-input)
		{"beta", "10.98.0.2:8080", true},   // unrestricted, although inside gamma's sources
		{"beta", "10.98.0.3:8080", true},   //
		{"beta", "10.97.0.10:8080", true},  //
		{"beta", "10.99.0.1:8080", true},   //
		{"gamma", "10.98.0.2:8080", false}, // denied
		{"gamma", "10.98.0.3:8080", true},  // deny-only list: the rest is allowed
		{"gamma", "10.97.0.10:8080", true}, //
		{"gamma", "10.99.0.1:8080", true},  //
		{"gamma", "10.98.0.1:8080", true},  //
	})

	// A connection L opens towards alpha: alpha's replies arrive through
	// the device from a restricted source to a destination alpha's list
	// does not allow, and pass as established.
	if err := reach(l, "10.99.0.11:9090", 3*time.Second); err != nil {
		t.Errorf("L → alpha (replies through the firewall): %v", err)
	}

	// Same chains, rebuilt each time: nothing is written again, and a new
	// Table rewriting them leaves the listing byte-identical.
	tbl2 := table(t, g)
	for range 100 {
		if _, err := tbl2.Apply(append([]nftable.Chain{meshService()}, firewall.Chains(dev, links)...)); err != nil {
			t.Fatal(err)
		}
	}
	if n := tbl2.Writes(); n != 1 {
		t.Errorf("100 applies of the same chains: %d writes, want 1", n)
	}
	if again := list(t, lab, g); again != got {
		t.Errorf("listing changed after re-applying the same chains:\n%s\nbefore:\n%s", again, got)
	}
}

// TestFirewallScale loads 250 restricted links (own lists) and measures the
// build and the kernel transaction.
func TestFirewallScale(t *testing.T) {
	lab := netns.New(t, "klfws")
	requireNft(t, lab)
	g := lab.NS("g")
	var ls []firewall.Link
	for i := range 250 {
		hi, lo := byte(i>>8), byte(i)
		ls = append(ls, firewall.Link{
			Name: fmt.Sprintf("mesh--cluster%03d", i),
			Sources: []netip.Prefix{
				netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, hi, lo}), 32),
				netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64 + hi, lo, 0}), 24),
				netip.PrefixFrom(netip.AddrFrom4([4]byte{10, hi, lo, 0}), 24),
			},
			Ingress: []mesh.Rule{
				{Prefix: netip.MustParsePrefix("100.96.0.0/16")},
				{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 97, lo, 0}), 24)},
				{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 96, lo, 1}), 32), Deny: true},
				{Prefix: netip.MustParsePrefix("100.96.255.0/24"), Deny: true},
			},
		})
	}
	start := time.Now()
	chains := firewall.Chains(dev, ls)
	built := time.Since(start)
	rulesBuilt := 0
	for _, c := range chains {
		rulesBuilt += len(c.Rules)
	}
	tbl := bigTable(t, g)
	start = time.Now()
	if _, err := tbl.Apply(chains); err != nil {
		t.Fatal(err)
	}
	applied := time.Since(start)
	listed := 0
	for _, l := range lines(list(t, lab, g)) {
		if strings.Contains(l, `comment "`) {
			listed++
		}
	}
	t.Logf("250 links: %d chains, %d rules; built in %v, applied in %v", len(chains), rulesBuilt, built, applied)
	if listed != rulesBuilt {
		t.Errorf("nft lists %d rules, built %d", listed, rulesBuilt)
	}
	if applied > 5*time.Second {
		t.Errorf("applying 250 links took %v", applied)
	}
}
