package firewall

import (
	"bytes"
	"fmt"
	"math/rand"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelink/kubelink/api/mesh"
	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/netd/nftable"
)

func rules(s ...string) []mesh.Rule {
	var out []mesh.Rule
	for _, e := range s {
		r := mesh.Rule{Deny: strings.HasPrefix(e, "!")}
		r.Prefix = netip.MustParsePrefix(strings.TrimPrefix(e, "!"))
		out = append(out, r)
	}
	return out
}

func prefixes(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, e := range s {
		out = append(out, netip.MustParsePrefix(e))
	}
	return out
}

// render prints chains in nft's syntax for the expressions this package
// emits, so tests read like the ruleset; anything else fails the test.
func render(t *testing.T, chains []nftable.Chain) string {
	t.Helper()
	var b strings.Builder
	for _, ch := range chains {
		fmt.Fprintf(&b, "chain %s", ch.Name)
		if ch.Hook != nil {
			fmt.Fprintf(&b, " %s hook %d prio %d", ch.Type, *ch.Hook, *ch.Priority)
		}
		b.WriteString("\n")
		for _, r := range ch.Rules {
			b.WriteString("  " + renderRule(t, r.Exprs, ch.Sets) + " # " + r.Comment + "\n")
		}
	}
	return b.String()
}

// renderMap prints an interval verdict map as nft lists it.
func renderMap(t *testing.T, set nftable.Set) string {
	t.Helper()
	if !set.Interval || !set.IsMap || set.KeyType != nftables.TypeIPAddr || set.DataType != nftables.TypeVerdict {
		t.Fatalf("unexpected set %+v", set)
	}
	var items []string
	for i, e := range set.Elements {
		if e.IntervalEnd {
			continue
		}
		start := netip.AddrFrom4([4]byte(e.Key))
		// The range ends before the next element (an end or the next
		// start), or at the top of the address space.
		last := netip.MustParseAddr("255.255.255.255")
		if i+1 < len(set.Elements) {
			last = netip.AddrFrom4([4]byte(set.Elements[i+1].Key)).Prev()
		}
		p := prefixOf(t, start, last)
		items = append(items, fmt.Sprintf("%s : jump %s", p, e.VerdictData.Chain))
	}
	return "vmap { " + strings.Join(items, ", ") + " }"
}

func prefixOf(t *testing.T, first, last netip.Addr) netip.Prefix {
	t.Helper()
	for bits := 0; bits <= 32; bits++ {
		p := netip.PrefixFrom(first, bits)
		if p.Masked().Addr() != first {
			continue
		}
		if lastAddr(p) == last {
			return p
		}
	}
	t.Fatalf("range %s-%s is not a prefix", first, last)
	return netip.Prefix{}
}

func renderRule(t *testing.T, exprs []expr.Any, sets []nftable.Set) string {
	t.Helper()
	var parts []string
	var subject string
	var maskBits int
	for _, e := range exprs {
		switch e := e.(type) {
		case *expr.Meta:
			subject = map[expr.MetaKey]string{expr.MetaKeyIIFNAME: "iifname"}[e.Key]
		case *expr.Payload:
			if e.Base != expr.PayloadBaseNetworkHeader || e.Offset != 12 {
				t.Fatalf("unexpected payload %+v", e)
			}
			subject, maskBits = "ip saddr", int(e.Len)*8
		case *expr.Ct:
			switch {
			case e.Key == expr.CtKeySTATE:
				subject = "ct state"
			case e.Key == expr.CtKeyDST && e.Direction == 0:
				subject, maskBits = "ct original ip daddr", 32
			default:
				t.Fatalf("unexpected ct %+v", e)
			}
		case *expr.Bitwise:
			if subject == "ct state" {
				if !bytes.Equal(e.Mask, []byte{6, 0, 0, 0}) {
					t.Fatalf("ct state mask %v", e.Mask)
				}
				subject = "ct state established,related"
				continue
			}
			maskBits = 0
			for _, m := range e.Mask {
				for ; m&0x80 != 0; m <<= 1 {
					maskBits++
				}
			}
		case *expr.Cmp:
			switch {
			case subject == "iifname":
				parts = append(parts, fmt.Sprintf("iifname %q", strings.TrimRight(string(e.Data), "\x00")))
			case subject == "ct state established,related" && e.Op == expr.CmpOpNeq:
				parts = append(parts, subject)
			case strings.Contains(subject, "addr") && e.Op == expr.CmpOpEq:
				a := make([]byte, 4)
				copy(a, e.Data)
				bits := min(maskBits, len(e.Data)*8)
				parts = append(parts, fmt.Sprintf("%s %s", subject, netip.PrefixFrom(netip.AddrFrom4([4]byte(a)), bits)))
			default:
				t.Fatalf("unexpected cmp %+v after %q", e, subject)
			}
		case *expr.Lookup:
			if subject != "ip saddr" || e.DestRegister != 0 || !e.IsDestRegSet || len(sets) != 1 || sets[0].Name != e.SetName {
				t.Fatalf("unexpected lookup %+v after %q", e, subject)
			}
			parts = append(parts, "ip saddr "+renderMap(t, sets[0]))
		case *expr.Verdict:
			switch e.Kind {
			case expr.VerdictAccept:
				parts = append(parts, "accept")
			case expr.VerdictDrop:
				parts = append(parts, "drop")
			case expr.VerdictJump:
				parts = append(parts, "jump "+e.Chain)
			default:
				t.Fatalf("unexpected verdict %+v", e)
			}
		default:
			t.Fatalf("unexpected expression %T", e)
		}
	}
	return strings.Join(parts, " ")
}

const base = `chain fw-links
  ct state established,related accept # replies and established connections
%schain filter-forward filter hook 2 prio 0
  iifname "kubelink" jump fw-links # per-link ingress firewall
chain filter-input filter hook 1 prio 0
  iifname "kubelink" jump fw-links # per-link ingress firewall
`

func TestChains(t *testing.T) {
	for _, tc := range []struct {
		name  string
		links []Link
		want  string // list chains, then the dispatch rules after the established rule
	}{{
		name: "allow list",
		links: []Link{{Name: "m--b", Sources: prefixes("192.168.0.2/32", "100.64.16.0/20"),
			Ingress: rules("100.64.0.10/32", "10.0.0.0/8")}},
		want: `chain fw-0
  ct original ip daddr 100.64.0.10/32 accept # ingress m--b: allow 100.64.0.10/32
  ct original ip daddr 10.0.0.0/8 accept # ingress m--b: allow 10.0.0.0/8
  drop # ingress m--b: not allowed
|  ip saddr vmap { 100.64.16.0/20 : jump fw-0, 192.168.0.2/32 : jump fw-0 } # by source prefix
`,
	}, {
		name: "adjacent and unrestricted disjoint sources: one map, no entry for the unrestricted",
		links: []Link{
			{Name: "a", Sources: prefixes("10.0.0.0/25"), Ingress: rules("!100.64.0.0/24")},
			{Name: "b", Sources: prefixes("10.0.0.128/25", "255.255.255.0/24"), Ingress: rules("!100.64.0.0/24")},
			{Name: "free", Sources: prefixes("10.0.1.0/24")},
		},
		want: `chain fw-0
  ct original ip daddr 100.64.0.0/24 drop # ingress a (+1 links): deny 100.64.0.0/24
  accept # ingress a (+1 links): not denied
|  ip saddr vmap { 10.0.0.0/25 : jump fw-0, 10.0.0.128/25 : jump fw-0, 255.255.255.0/24 : jump fw-0 } # by source prefix
`,
	}, {
		name:  "deny only",
		links: []Link{{Name: "m--b", Sources: prefixes("192.168.0.2/32"), Ingress: rules("!100.64.0.0/24")}},
		want: `chain fw-0
  ct original ip daddr 100.64.0.0/24 drop # ingress m--b: deny 100.64.0.0/24
  accept # ingress m--b: not denied
|  ip saddr vmap { 192.168.0.2/32 : jump fw-0 } # by source prefix
`,
	}, {
		name: "mixed: denies first, whatever the order",
		links: []Link{{Name: "m--b", Sources: prefixes("192.168.0.2/32"),
			Ingress: rules("100.64.0.0/20", "!100.64.0.1/32", "100.64.0.0/20", "!100.64.3.0/25")}},
		want: `chain fw-0
  ct original ip daddr 100.64.0.1/32 drop # ingress m--b: deny 100.64.0.1/32
  ct original ip daddr 100.64.3.0/25 drop # ingress m--b: deny 100.64.3.0/25
  ct original ip daddr 100.64.0.0/20 accept # ingress m--b: allow 100.64.0.0/20
  drop # ingress m--b: not allowed
|  ip saddr vmap { 192.168.0.2/32 : jump fw-0 } # by source prefix
`,
	}, {
		name: "shared list, unrestricted link inside a restricted prefix, longest prefix first",
		links: []Link{
			{Name: "z", Sources: prefixes("10.0.0.0/8"), Ingress: rules("!100.64.0.0/24")},
			{Name: "free", Sources: prefixes("10.1.0.0/16", "172.16.0.0/12")},
			{Name: "a", Sources: prefixes("192.168.0.2/32"), Ingress: rules("!100.64.0.0/24")},
			{Name: "c", Sources: prefixes("192.168.0.3/32"), Ingress: rules("100.64.0.0/24")},
		},
		want: `chain fw-0
  ct original ip daddr 100.64.0.0/24 drop # ingress a (+1 links): deny 100.64.0.0/24
  accept # ingress a (+1 links): not denied
chain fw-1
  ct original ip daddr 100.64.0.0/24 accept # ingress c: allow 100.64.0.0/24
  drop # ingress c: not allowed
|  ip saddr 192.168.0.2/32 jump fw-0 # from a
  ip saddr 192.168.0.3/32 jump fw-1 # from c
  ip saddr 10.1.0.0/16 accept # from free: unrestricted
  ip saddr 10.0.0.0/8 jump fw-0 # from z
`,
	}, {
		name: "identical source prefix: first link by name; /0 matches all",
		links: []Link{
			{Name: "b", Sources: prefixes("10.1.0.0/16", "0.0.0.0/0"), Ingress: rules("100.64.0.0/24")},
			{Name: "a", Sources: prefixes("10.1.0.0/16"), Ingress: rules("100.64.1.0/24")},
		},
		want: `chain fw-0
  ct original ip daddr 100.64.1.0/24 accept # ingress a: allow 100.64.1.0/24
  drop # ingress a: not allowed
chain fw-1
  ct original ip daddr 100.64.0.0/24 accept # ingress b: allow 100.64.0.0/24
  drop # ingress b: not allowed
|  ip saddr 10.1.0.0/16 jump fw-0 # from a
  jump fw-1 # from b
`,
	}, {
		name: "IPv6 entries: an allow still restricts, a deny is ignored",
		links: []Link{
			{Name: "a", Sources: prefixes("10.1.0.0/16", "fd00::/64"), Ingress: rules("fd00:1::/64")},
			{Name: "b", Sources: prefixes("10.2.0.0/16"), Ingress: rules("!fd00:1::/64")},
		},
		want: `chain fw-0
  drop # ingress a: not allowed
|  ip saddr vmap { 10.1.0.0/16 : jump fw-0 } # by source prefix
`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			lists, disp, _ := strings.Cut(tc.want, "|")
			want := lists + fmt.Sprintf(base, disp)
			if got := render(t, Chains("kubelink", tc.links)); got != want {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestChainsUnrestricted(t *testing.T) {
	links := []Link{
		{Name: "a", Sources: prefixes("10.1.0.0/16")},
		{Name: "b", Sources: prefixes("10.2.0.0/16"), Ingress: rules("!fd00::/8")},
	}
	if ch := Chains("kubelink", links); ch != nil {
		t.Fatalf("links without an IPv4 restriction got chains:\n%s", render(t, ch))
	}
	if ch := Chains("kubelink", nil); ch != nil {
		t.Fatalf("no links got chains")
	}
}

func TestChainsKinds(t *testing.T) {
	ch := Chains("kubelink", []Link{{Name: "a", Sources: prefixes("10.1.0.0/16"), Ingress: rules("100.64.0.0/24")}})
	var names []string
	for _, c := range ch {
		names = append(names, c.Name)
		base := c.Name == ChainForward || c.Name == ChainInput
		if base != (c.Hook != nil && c.Priority != nil && c.Type == nftables.ChainTypeFilter) {
			t.Errorf("chain %s: type %q hook %v priority %v", c.Name, c.Type, c.Hook, c.Priority)
		}
	}
	// Jump targets must be added before the chains jumping to them.
	if got := strings.Join(names, " "); got != "fw-0 fw-links filter-forward filter-input" {
		t.Errorf("chain order %s", got)
	}
	if *ch[2].Hook != *nftables.ChainHookForward || *ch[3].Hook != *nftables.ChainHookInput || *ch[2].Priority != 0 {
		t.Errorf("hooks: forward %d input %d priority %d", *ch[2].Hook, *ch[3].Hook, *ch[2].Priority)
	}
}

// links builds n links with 3 sources each; every link has its own list
// of 4 entries (the worst case: no list chain is shared).
func manyLinks(n int) []Link {
	out := make([]Link, 0, n)
	for i := range n {
		hi, lo := byte(i>>8), byte(i)
		out = append(out, Link{
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
	return out
}

func TestDeterministic(t *testing.T) {
	links := manyLinks(40)
	want := Chains("kubelink", links)
	rng := rand.New(rand.NewSource(1))
	for range 20 {
		shuffled := append([]Link(nil), links...)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		for i := range shuffled {
			r := append([]mesh.Rule(nil), shuffled[i].Ingress...)
			rng.Shuffle(len(r), func(a, b int) { r[a], r[b] = r[b], r[a] })
			shuffled[i].Ingress = r
		}
		if got := Chains("kubelink", shuffled); !reflect.DeepEqual(got, want) {
			t.Fatalf("input order changed the chains:\n%s\nwant:\n%s", render(t, got), render(t, want))
		}
	}
	// 40 own lists + dispatch + 2 base chains; the established rule and
	// one map lookup over the 3 disjoint sources of each link.
	if len(want) != 43 || len(want[40].Rules) != 2 || strings.Count(render(t, want[40:41]), " : jump fw-") != 120 {
		t.Fatalf("%d chains, %d dispatch rules:\n%s", len(want), len(want[40].Rules), render(t, want[40:41]))
	}
}

func TestBuildTime(t *testing.T) {
	links := manyLinks(250)
	start := time.Now()
	ch := Chains("kubelink", links)
	d := time.Since(start)
	n := 0
	for _, c := range ch {
		n += len(c.Rules)
	}
	t.Logf("250 links: %d chains, %d rules built in %v", len(ch), n, d)
	// Generous bound (shared, loaded CI machines); the benchmark has the
	// real number.
	if d > 100*time.Millisecond {
		t.Errorf("building 250 links took %v", d)
	}
}

func BenchmarkChains250(b *testing.B) {
	links := manyLinks(250)
	b.ReportAllocs()
	for b.Loop() {
		Chains("kubelink", links)
	}
}

// BenchmarkChains250Shared: 250 links using one list (their mesh default).
func BenchmarkChains250Shared(b *testing.B) {
	links := manyLinks(250)
	for i := range links {
		links[i].Ingress = links[0].Ingress
	}
	b.ReportAllocs()
	for b.Loop() {
		Chains("kubelink", links)
	}
}

func kubeLink(name, cidr, addr, endpoint string, ingress ...string) *v1alpha1.KubeLink {
	return &v1alpha1.KubeLink{
		ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(time.Unix(1_700_000_000, 0))},
		Spec:       v1alpha1.KubeLinkSpec{CIDR: cidr, ClusterAddress: addr, Endpoint: endpoint, Ingress: ingress},
	}
}

func TestFromMesh(t *testing.T) {
	gateway := kubeLink("m1--relayed", "100.66.0.0/20", "10.10.0.5/24", "")
	gateway.Spec.GatewayLink = "m1--own"
	set := mesh.Build([]*v1alpha1.KubeLink{
		kubeLink("m1--local", "100.64.0.0/20", "10.10.0.1/24", v1alpha1.EndpointLocalLink, "100.64.0.0/24", "!100.64.0.10/32"),
		kubeLink("m1--own", "100.65.0.0/20", "10.10.0.2/24", "gw.example:8777", "100.64.1.0/24"),
		kubeLink("m1--default", "100.67.0.0/20", "10.10.0.3/24", "gw3.example:8777"),
		gateway,
		kubeLink("m1--other", "100.68.0.0/20", "10.10.0.4/24", "gw4.example:8777"),
		kubeLink("m2--local", "100.64.0.0/20", "10.20.0.1/24", v1alpha1.EndpointLocalLink),
		kubeLink("m2--free", "100.80.0.0/20", "10.20.0.2/24", "gw5.example:8777"),
		kubeLink("m2--broken", "100.81.0.0/20", "10.99.0.2/24", "gw6.example:8777"),
	}, mesh.Options{})
	got := FromMesh(set, func(name string) bool { return name != "m1--other" })
	want := []Link{
		{Name: "m1--default", Sources: prefixes("10.10.0.3/32", "100.67.0.0/20"), Ingress: rules("100.64.0.0/24", "!100.64.0.10/32")},
		{Name: "m1--own", Sources: prefixes("10.10.0.2/32", "100.65.0.0/20"), Ingress: rules("100.64.1.0/24")},
		{Name: "m1--relayed", Sources: prefixes("10.10.0.5/32", "100.66.0.0/20"), Ingress: rules("100.64.0.0/24", "!100.64.0.10/32")},
		{Name: "m2--free", Sources: prefixes("10.20.0.2/32", "100.80.0.0/20")},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("FromMesh:\n got %+v\nwant %+v", got, want)
	}
	if n := len(FromMesh(set, nil)); n != 5 {
		t.Errorf("serves nil: %d links, want 5", n)
	}
	// The mesh default is one list chain for both links using it.
	ch := Chains("kubelink", got)
	if len(ch) != 5 || !strings.Contains(render(t, ch[:1]), "ingress m1--default (+1 links)") {
		t.Errorf("chains:\n%s", render(t, ch))
	}
}
