package mesh

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/kubelink/kubelink/api/v1alpha1"
)

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, 0, len(s))
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func learnedOf(l *Link) []string {
	var out []string
	for _, p := range l.Learned {
		out = append(out, p.String())
	}
	return out
}

// TestLearnServiceAddresses: which claimed MeshService addresses become
// routes of their link, and why the others do not.
func TestLearnServiceAddresses(t *testing.T) {
	egress := func(p ...string) func(*v1alpha1.KubeLinkSpec) {
		return func(s *v1alpha1.KubeLinkSpec) { s.Egress = p }
	}
	links := []*v1alpha1.KubeLink{
		link("b", "100.64.16.0/20", "192.168.0.12/24", "x", 0, egress("192.168.0.50/32")),
		link("c", "100.64.32.0/20", "192.168.0.13/24", "y", 1, egress("192.168.0.32/28")),
		link("d", "100.64.48.0/20", "192.168.0.14/24", "z", 2, gw("b")),
		// Invalid: overlaps b's service CIDR.
		link("bad", "100.64.16.0/24", "192.168.0.15/24", "w", 3),
		// Another mesh, no LocalLink for it: Stale.
		link("other--e", "100.64.64.0/20", "10.9.0.2/24", "v", 4),
	}
	set := Build(links, defaultOpts())
	rej := set.LearnServiceAddresses(map[string][]netip.Addr{
		"b": addrs("192.168.0.100", "192.168.0.100", "192.168.0.50", // duplicate; already egress
			"10.0.0.1",      // outside the mesh network
			"192.168.0.0",   // network address
			"192.168.0.255", // broadcast
			"192.168.0.11",  // the local link address
			"192.168.0.13",  // c's link address
			"192.168.0.100", // again
			"192.168.0.101", // also claimed by c
			"192.168.0.33",  // inside c's egress
			"192.168.0.102", // a local MeshService's
		),
		"c":        addrs("192.168.0.101", "192.168.0.110"),
		"d":        addrs("192.168.0.120"), // relayed through b: its own route
		"bad":      addrs("192.168.0.130"),
		"other--e": addrs("10.9.0.100"),
		"missing":  addrs("192.168.0.140"),
		// The local cluster of the flags' mesh has no KubeLink.
		"kubelink1": addrs("192.168.0.150"),
	}, addrs("192.168.0.102"))

	for name, want := range map[string][]string{
		"b": {"192.168.0.100/32"},
		"c": {"192.168.0.110/32"},
		"d": {"192.168.0.120/32"},
	} {
		if got := learnedOf(set.Links[name]); !reflect.DeepEqual(got, want) {
			t.Errorf("link %s learned %v, want %v", name, got, want)
		}
	}
	if got := set.Links["bad"].Learned; got != nil {
		t.Errorf("an unusable link learned %v", got)
	}
	// Learned addresses are routes like egress: the tunnel peers, routes,
	// SNAT and firewall of every consumer pick them up.
	if r := set.Links["b"].Routes(); r[len(r)-1] != netip.MustParsePrefix("192.168.0.100/32") {
		t.Errorf("b's routes %v do not end with the learned address", r)
	}

	want := map[string]string{
		"b 10.0.0.1":              "outside the mesh network 192.168.0.0/24",
		"b 192.168.0.0":           "the mesh network address",
		"b 192.168.0.255":         "the mesh broadcast address",
		"b 192.168.0.11":          "the local link address",
		"b 192.168.0.13":          `the link address of "c"`,
		"b 192.168.0.101":         "claimed by several links",
		"c 192.168.0.101":         "claimed by several links",
		"b 192.168.0.33":          `inside 192.168.0.32/28 of link "c"`,
		"b 192.168.0.102":         "the address of a local MeshService",
		"bad 192.168.0.130":       "the link is not usable",
		"missing 192.168.0.140":   "no such KubeLink",
		"other--e 10.9.0.100":     "the link is not usable",
		"kubelink1 192.168.0.150": "no such KubeLink",
	}
	got := map[string]string{}
	for _, r := range rej {
		got[r.Link+" "+r.Address.String()] = r.Reason
	}
	for k, w := range want {
		if !strings.Contains(got[k], w) {
			t.Errorf("rejection of %s: %q, want %q", k, got[k], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("rejections %v, want exactly %d", rej, len(want))
	}
	for i := 1; i < len(rej); i++ {
		if a, b := rej[i-1], rej[i]; a.Link > b.Link || a.Link == b.Link && !a.Address.Less(b.Address) {
			t.Errorf("rejections not sorted: %v before %v", a, b)
		}
	}

	// A second call replaces the first: the claim is gone, so is the route.
	if rej := set.LearnServiceAddresses(nil, nil); rej != nil {
		t.Errorf("no claims rejected %v", rej)
	}
	for _, l := range set.Links {
		if l.Learned != nil {
			t.Errorf("link %s still learned %v", l.Name, l.Learned)
		}
	}
}

// TestLearnLocalServiceCIDR: a LocalLink whose service CIDR reaches into the
// mesh network keeps that range local.
func TestLearnLocalServiceCIDR(t *testing.T) {
	opts := defaultOpts()
	opts.ServiceCIDR = netip.MustParsePrefix("192.168.0.192/26")
	set := Build([]*v1alpha1.KubeLink{link("b", "100.64.16.0/20", "192.168.0.12/24", "x", 0)}, opts)
	rej := set.LearnServiceAddresses(map[string][]netip.Addr{"b": addrs("192.168.0.200", "192.168.0.100")}, nil)
	if len(rej) != 1 || !strings.Contains(rej[0].Reason, "local service CIDR") {
		t.Errorf("rejections %v, want the local service CIDR", rej)
	}
	if got := learnedOf(set.Links["b"]); !reflect.DeepEqual(got, []string{"192.168.0.100/32"}) {
		t.Errorf("learned %v", got)
	}
}

func TestLastAddr(t *testing.T) {
	for p, want := range map[string]string{"192.168.0.0/24": "192.168.0.255", "10.0.0.0/8": "10.255.255.255", "10.1.2.3/32": "10.1.2.3"} {
		if got := lastAddr(netip.MustParsePrefix(p)).String(); got != want {
			t.Errorf("lastAddr(%s) = %s, want %s", p, got, want)
		}
	}
}
