// Package firewall builds the per-link ingress firewall of netd's nftables
// table: traffic arriving through the tunnel device from a link's sources
// may reach only the local destinations its ingress list allows.
//
// Layout (all in table ip kubelink):
//
//	filter-forward  filter, forward, priority filter (0): iifname <dev> jump fw-links
//	filter-input    filter, input,   priority filter (0): iifname <dev> jump fw-links
//	fw-links        ct state established,related accept, then
//	                ip saddr vmap { <p> : jump fw-<n>, ... } when no restricted
//	                source prefix overlaps another (the mesh library ensures
//	                that for usable links), else one rule per source prefix,
//	                longest prefix first: ip saddr <p> jump fw-<n>
//	fw-<n>          one ingress list: denies (drop), allows (accept), then
//	                drop (list with allows) or accept (deny-only list)
//
// Links with the same effective list share one fw-<n> chain, so 250 links
// using their mesh's default list cost one list chain, not 250. Both base
// chains jump to the same dispatch chain so its rules exist only once.
//
// Destinations are matched as the peer addressed them: the conntrack
// original destination (ct original ip daddr), not the packet's current
// destination. A MeshService address that prerouting DNATs to a pod or
// service is therefore allowed or denied by its mesh address, which is the
// address the remote cluster knows. Untracked packets carry no conntrack
// entry, so no destination rule matches them: a list with allows drops them.
package firewall

import (
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"

	"github.com/kubelink/kubelink/api/mesh"
	"github.com/kubelink/kubelink/netd/nftable"
)

// Chain names.
const (
	ChainForward = "filter-forward"
	ChainInput   = "filter-input"
	// ChainLinks tells links apart by source address.
	ChainLinks = "fw-links"
	// chainList prefixes the chains holding one ingress list each.
	chainList = "fw-"
)

// Link is one foreign link as the firewall sees it.
type Link struct {
	// Name is the KubeLink name (used in rule comments and for ordering).
	Name string
	// Sources are the source prefixes identifying traffic from this link.
	Sources []netip.Prefix
	// Ingress is the effective ingress list; empty means unrestricted.
	Ingress []mesh.Rule
}

// FromMesh returns the usable foreign links served by this gateway (serves
// nil: all) with their effective ingress list: the link's own, else its
// mesh's default from the LocalLink, else none. A link's sources are its
// link address, service CIDR and egress CIDRs. A link relayed through
// another (spec.gatewayLink) is identified by its own sources and gets its
// own list, although its packets arrive from the gateway link's peer.
func FromMesh(set *mesh.Set, serves func(name string) bool) []Link {
	var out []Link
	for _, l := range set.Usable() {
		if serves != nil && !serves(l.Name) {
			continue
		}
		rules := l.Ingress
		if len(rules) == 0 {
			if m := set.Meshes[l.Mesh]; m != nil && m.Local != nil {
				rules = m.Local.Ingress
			}
		}
		var src []netip.Prefix
		if l.Address.IsValid() {
			src = append(src, netip.PrefixFrom(l.Address, l.Address.BitLen()))
		}
		out = append(out, Link{Name: l.Name, Sources: append(src, l.Routes()...), Ingress: rules})
	}
	return out
}

// policy is an ingress list reduced to what the ip table can enforce.
type policy struct {
	deny, allow []netip.Prefix
	// restrictive: the list allows something, so everything else is dropped.
	restrictive bool
}

// effective reduces rules to IPv4 prefixes, sorted and without duplicates.
// ok is false when the list restricts nothing. An allow entry of another
// family still makes the list restrictive: its author meant to allow only
// what the list names.
func effective(rules []mesh.Rule) (p policy, ok bool) {
	for _, r := range rules {
		if !r.Deny {
			p.restrictive = true
		}
		if !r.Prefix.IsValid() || !r.Prefix.Addr().Is4() {
			continue
		}
		if r.Deny {
			p.deny = append(p.deny, r.Prefix.Masked())
		} else {
			p.allow = append(p.allow, r.Prefix.Masked())
		}
	}
	p.deny, p.allow = sortPrefixes(p.deny), sortPrefixes(p.allow)
	return p, p.restrictive || len(p.deny) > 0
}

func (p policy) key() string {
	var b strings.Builder
	b.WriteString(strconv.FormatBool(p.restrictive))
	for _, d := range p.deny {
		b.WriteString(" !")
		b.WriteString(d.String())
	}
	for _, a := range p.allow {
		b.WriteByte(' ')
		b.WriteString(a.String())
	}
	return b.String()
}

func sortPrefixes(ps []netip.Prefix) []netip.Prefix {
	sort.Slice(ps, func(i, j int) bool { return compareLongestFirst(ps[i], ps[j]) < 0 })
	out := ps[:0]
	for i, p := range ps {
		if i == 0 || p != ps[i-1] {
			out = append(out, p)
		}
	}
	return out
}

// compareLongestFirst orders longer prefixes first, then by address (the
// order of dispatch rules: the longest source prefix decides).
func compareLongestFirst(a, b netip.Prefix) int {
	if a.Bits() != b.Bits() {
		return b.Bits() - a.Bits()
	}
	return a.Addr().Compare(b.Addr())
}

// Chains returns the firewall chains for traffic arriving through device,
// or nil when no link is restricted. Regular chains come first: the kernel
// needs a jump's target before the rule that jumps.
//
// A packet belongs to the link with the longest source prefix containing
// its source; of links with identical prefixes the first by name wins.
// Sources of unrestricted links get an accept only where a shorter prefix of
// a restricted link covers them.
func Chains(device string, links []Link) []nftable.Chain {
	sorted := append([]Link(nil), links...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })

	type list struct {
		p     policy
		links []string
	}
	var lists []*list
	byKey := map[string]int{}
	chainOf := make([]int, len(sorted)) // index into lists, -1: unrestricted
	for i, l := range sorted {
		chainOf[i] = -1
		p, ok := effective(l.Ingress)
		if !ok {
			continue
		}
		k := p.key()
		n, seen := byKey[k]
		if !seen {
			n = len(lists)
			byKey[k] = n
			lists = append(lists, &list{p: p})
		}
		lists[n].links = append(lists[n].links, l.Name)
		chainOf[i] = n
	}
	if len(lists) == 0 {
		return nil
	}

	type entry struct {
		p    netip.Prefix
		link int
	}
	var entries []entry
	for i, l := range sorted {
		for _, s := range l.Sources {
			if s.IsValid() && s.Addr().Is4() {
				entries = append(entries, entry{s.Masked(), i})
			}
		}
	}
	sort.SliceStable(entries, func(i, j int) bool {
		if c := compareLongestFirst(entries[i].p, entries[j].p); c != 0 {
			return c < 0
		}
		return entries[i].link < entries[j].link
	})
	var restricted []netip.Prefix
	for _, e := range entries {
		if chainOf[e.link] >= 0 {
			restricted = append(restricted, e.p)
		}
	}

	chains := make([]nftable.Chain, 0, len(lists)+3)
	for n, l := range lists {
		chains = append(chains, listChain(n, l.p, l.links))
	}

	disp := nftable.Chain{Name: ChainLinks, Rules: make([]nftable.Rule, 0, len(entries)+1)}
	disp.Rules = append(disp.Rules, established())
	if vm, ok := sourceMap(distinctSources(len(entries), func(i int) (netip.Prefix, int) { return entries[i].p, chainOf[entries[i].link] })); ok {
		// Disjoint sources (what the mesh library guarantees for usable
		// links): one lookup in an interval verdict map instead of a rule
		// per prefix — at mesh scale hundreds of rules fewer to load on
		// every table replacement and to walk per new connection.
		disp.Sets = []nftable.Set{vm}
		disp.Rules = append(disp.Rules, nftable.Rule{
			Comment: "by source prefix",
			Exprs: []expr.Any{
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
				&expr.Lookup{SourceRegister: 1, DestRegister: 0, IsDestRegSet: true, SetName: vm.Name},
			},
		})
		return append(chains, append([]nftable.Chain{disp}, baseChains(device)...)...)
	}
	for i, e := range entries {
		if i > 0 && entries[i-1].p == e.p {
			continue // identical prefix: the first link by name has it
		}
		name := sorted[e.link].Name
		n := chainOf[e.link]
		if n < 0 {
			if !covered(e.p, restricted) {
				continue
			}
			disp.Rules = append(disp.Rules, nftable.Rule{
				Comment: "from " + name + ": unrestricted",
				Exprs:   append(matchPrefix(saddr(), e.p), &expr.Verdict{Kind: expr.VerdictAccept}),
			})
			continue
		}
		disp.Rules = append(disp.Rules, nftable.Rule{
			Comment: "from " + name,
			Exprs:   append(matchPrefix(saddr(), e.p), &expr.Verdict{Kind: expr.VerdictJump, Chain: chainName(n)}),
		})
	}
	chains = append(chains, disp)
	return append(chains, baseChains(device)...)
}

func established() nftable.Rule {
	return nftable.Rule{
		Comment: "replies and established connections",
		Exprs: []expr.Any{
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
				Xor:  binaryutil.NativeEndian.PutUint32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
			&expr.Verdict{Kind: expr.VerdictAccept},
		},
	}
}

type source struct {
	p     netip.Prefix
	chain int // -1: unrestricted
}

// distinctSources lists the dispatch's source prefixes (entry i is at(i),
// sorted longest first) with their links' chains, an identical prefix only
// once: the first link by name has it.
func distinctSources(n int, at func(i int) (netip.Prefix, int)) []source {
	out := make([]source, 0, n)
	for i := 0; i < n; i++ {
		p, c := at(i)
		if len(out) > 0 && out[len(out)-1].p == p {
			continue // identical prefix: the first link by name has it
		}
		out = append(out, source{p, c})
	}
	return out
}

// sourceMap returns the interval verdict map source prefix → jump fw-<n>
// when no restricted prefix overlaps another prefix (what the mesh library
// guarantees for usable links); unrestricted prefixes then need no entry.
// Otherwise the dispatch needs ordered rules, longest prefix first.
func sourceMap(srcs []source) (nftable.Set, bool) {
	sorted := append([]source(nil), srcs...)
	sort.Slice(sorted, func(i, j int) bool {
		a, b := sorted[i].p, sorted[j].p
		if a.Addr() != b.Addr() {
			return a.Addr().Less(b.Addr())
		}
		return a.Bits() < b.Bits()
	})
	// Sweep: cover is the prefix seen so far that reaches farthest; a
	// prefix overlapping it lies inside it.
	var restricted []source
	cover := -1
	for i, s := range sorted {
		if cover >= 0 && sorted[cover].p.Overlaps(s.p) {
			if s.chain >= 0 || sorted[cover].chain >= 0 {
				return nftable.Set{}, false
			}
		} else {
			cover = i
		}
		if s.chain >= 0 {
			restricted = append(restricted, s)
		}
	}
	set := nftable.Set{Name: ChainLinks + "-sources", Anonymous: true, Interval: true, IsMap: true,
		KeyType: nftables.TypeIPAddr, DataType: nftables.TypeVerdict}
	for i, s := range restricted {
		start := s.p.Masked().Addr().As4()
		set.Elements = append(set.Elements, nftables.SetElement{Key: start[:],
			VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: chainName(s.chain)}})
		end := lastAddr(s.p).Next()
		if !end.IsValid() || i+1 < len(restricted) && restricted[i+1].p.Masked().Addr() == end {
			continue // the range ends at the top or where the next begins
		}
		e := end.As4()
		set.Elements = append(set.Elements, nftables.SetElement{Key: e[:], IntervalEnd: true})
	}
	return set, true
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func baseChains(device string) []nftable.Chain {
	var chains []nftable.Chain
	for _, b := range []struct {
		name string
		hook *nftables.ChainHook
	}{{ChainForward, nftables.ChainHookForward}, {ChainInput, nftables.ChainHookInput}} {
		chains = append(chains, nftable.Chain{
			Name:     b.name,
			Type:     nftables.ChainTypeFilter,
			Hook:     b.hook,
			Priority: nftables.ChainPriorityFilter,
			Rules: []nftable.Rule{{
				Comment: "per-link ingress firewall",
				Exprs: []expr.Any{
					&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: nftable.IfName(device)},
					&expr.Verdict{Kind: expr.VerdictJump, Chain: ChainLinks},
				},
			}},
		})
	}
	return chains
}

// covered reports whether a strictly shorter prefix in ps contains p.
func covered(p netip.Prefix, ps []netip.Prefix) bool {
	for _, q := range ps {
		if q.Bits() < p.Bits() && q.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

func chainName(n int) string { return chainList + strconv.Itoa(n) }

// listChain enforces one ingress list: denies first, then allows, then the
// list's default.
func listChain(n int, p policy, links []string) nftable.Chain {
	label := "ingress " + links[0]
	if len(links) > 1 {
		label += " (+" + strconv.Itoa(len(links)-1) + " links)"
	}
	ch := nftable.Chain{Name: chainName(n), Rules: make([]nftable.Rule, 0, len(p.deny)+len(p.allow)+1)}
	for _, d := range p.deny {
		ch.Rules = append(ch.Rules, nftable.Rule{
			Comment: label + ": deny " + d.String(),
			Exprs:   append(matchPrefix(origDaddr(), d), &expr.Verdict{Kind: expr.VerdictDrop}),
		})
	}
	for _, a := range p.allow {
		ch.Rules = append(ch.Rules, nftable.Rule{
			Comment: label + ": allow " + a.String(),
			Exprs:   append(matchPrefix(origDaddr(), a), &expr.Verdict{Kind: expr.VerdictAccept}),
		})
	}
	if p.restrictive {
		ch.Rules = append(ch.Rules, nftable.Rule{Comment: label + ": not allowed", Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}})
	} else {
		ch.Rules = append(ch.Rules, nftable.Rule{Comment: label + ": not denied", Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}})
	}
	return ch
}

// load puts an IPv4 address into register 1. A payload load can fetch only
// the first n bytes, which is how nft encodes byte-aligned prefixes; the
// conntrack load always fetches all 4 (exact reports that).
type load func(n uint32) (e expr.Any, exact bool)

func saddr() load {
	return func(n uint32) (expr.Any, bool) {
		return &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: n}, true
	}
}

// origDaddr loads the conntrack original destination. It uses the generic
// CtKeyDST (its length follows the table family: 4 bytes in an ip table)
// because the library sends no direction with CtKeyDST_IP, which the
// kernel requires. nft lists the generic key as "ct original ip daddr" too,
// but misprints a short compare on it (10.1.0.0/16 as 0.0.10.1), so ct
// prefixes are always masked and compared in full.
func origDaddr() load {
	return func(uint32) (expr.Any, bool) {
		return &expr.Ct{Register: 1, Key: expr.CtKeyDST, Direction: 0}, false
	}
}

// matchPrefix matches the loaded address against p the way nft encodes it:
// byte-aligned prefixes compare only their leading bytes when the load
// allows it, others are masked first; /0 matches everything and needs no
// expression.
func matchPrefix(ld load, p netip.Prefix) []expr.Any {
	bits := p.Bits()
	if bits == 0 {
		return nil
	}
	a := p.Addr().As4()
	if bits%8 == 0 {
		n := uint32(bits / 8)
		if e, exact := ld(n); exact || n == 4 {
			return []expr.Any{e, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: append([]byte(nil), a[:n]...)}}
		}
	}
	e, _ := ld(4)
	return []expr.Any{
		e,
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask(bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]},
	}
}

func mask(bits int) []byte {
	m := make([]byte, 4)
	for i := 0; i < bits; i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return m
}
