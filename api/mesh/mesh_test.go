package mesh

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelink/kubelink/api/v1alpha1"
)

const key1 = "mD2KZnSwDbzr4a2vD0zQ4CqYpMr1T0qC6G4uO9mA4Ew="

// link builds a KubeLink; age orders creation (smaller = older).
func link(name, cidr, addr, endpoint string, age int, mod ...func(*v1alpha1.KubeLinkSpec)) *v1alpha1.KubeLink {
	l := &v1alpha1.KubeLink{
		ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(time.Unix(1_700_000_000+int64(age), 0))},
		Spec:       v1alpha1.KubeLinkSpec{CIDR: cidr, ClusterAddress: addr, Endpoint: endpoint},
	}
	for _, m := range mod {
		m(&l.Spec)
	}
	return l
}

func gw(name string) func(*v1alpha1.KubeLinkSpec) {
	return func(s *v1alpha1.KubeLinkSpec) { s.GatewayLink = name }
}

func defaultOpts() Options {
	return Options{
		ClusterName: "kubelink1",
		LinkAddress: netip.MustParsePrefix("192.168.0.11/24"),
		ServiceCIDR: netip.MustParsePrefix("100.64.0.0/20"),
	}
}

func TestSplitName(t *testing.T) {
	for _, tc := range []struct{ in, mesh, cluster string }{
		{"kubelink2", "", "kubelink2"},
		{"mesh--kubelink2", "mesh", "kubelink2"},
		{"a--b--c", "a", "b--c"},
		{"--x", "", "--x"},
		{"x--", "", "x--"},
	} {
		m, c := v1alpha1.SplitName(tc.in)
		if m != tc.mesh || c != tc.cluster {
			t.Errorf("SplitName(%q) = %q, %q; want %q, %q", tc.in, m, c, tc.mesh, tc.cluster)
		}
		if tc.mesh != "" && v1alpha1.JoinName(m, c) != tc.in {
			t.Errorf("JoinName(%q, %q) != %q", m, c, tc.in)
		}
	}
}

func TestNthAddress(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		n      int
		want   string
	}{
		{"100.64.0.0/20", 10, "100.64.0.10"},
		{"100.64.16.0/20", 10, "100.64.16.10"},
		{"10.0.0.250/24", 10, "10.0.0.10"},
		{"10.0.0.0/30", 10, "invalid IP"},
		{"10.0.0.0/23", 300, "10.0.1.44"},
		{"fd00::/64", 10, "fd00::a"},
	} {
		if got := NthAddress(netip.MustParsePrefix(tc.prefix), tc.n).String(); got != tc.want {
			t.Errorf("NthAddress(%s, %d) = %s, want %s", tc.prefix, tc.n, got, tc.want)
		}
	}
}

func TestParseEndpoint(t *testing.T) {
	for _, tc := range []struct {
		in, host string
		port     int
		err      string
	}{
		{"gw.example.com", "gw.example.com", 8777, ""},
		{"gw.example.com:443", "gw.example.com", 443, ""},
		{"1.2.3.4:9000", "1.2.3.4", 9000, ""},
		{"[fd00::1]:80", "fd00::1", 80, ""},
		{"[fd00::1]", "fd00::1", 8777, ""},
		{"gw:0", "", 0, "port"},
		{"gw:65536", "", 0, "port"},
		{"300.1.1.1", "", 0, "host"},
		{"bad_host", "", 0, "host"},
		{"", "", 0, "empty"},
	} {
		h, p, err := ParseEndpoint(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseEndpoint(%q) error = %v, want one mentioning %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || h != tc.host || p != tc.port {
			t.Errorf("ParseEndpoint(%q) = %q, %d, %v; want %q, %d", tc.in, h, p, err, tc.host, tc.port)
		}
	}
}

func TestParseLinkDefaults(t *testing.T) {
	l, err := ParseLink(link("kubelink2", "100.64.16.0/20", "192.168.0.12/24", "kubelink2.example.com", 0))
	if err != nil {
		t.Fatal(err)
	}
	if l.DNSIP.String() != "100.64.16.10" || l.ClusterDomain != "cluster.local" || l.Endpoint != "kubelink2.example.com:8777" {
		t.Fatalf("defaults not applied: dns %s domain %s endpoint %s", l.DNSIP, l.ClusterDomain, l.Endpoint)
	}
	l, err = ParseLink(link("mesh--kubelink2", "100.64.16.0/20", "192.168.0.12/24", "Inbound", 0, func(s *v1alpha1.KubeLinkSpec) {
		s.DNS = &v1alpha1.KubeLinkDNS{DNSIP: "100.64.16.53", BaseDomain: "Other.Local."}
		s.Ingress = []string{"100.64.0.0/20", "!100.64.0.5/32"}
	}))
	if err != nil {
		t.Fatal(err)
	}
	if l.Mesh != "mesh" || l.Cluster != "kubelink2" || !l.Inbound || l.DNSIP.String() != "100.64.16.53" || l.ClusterDomain != "other.local" {
		t.Fatalf("unexpected link %+v", l)
	}
	if len(l.Ingress) != 2 || !l.Ingress[1].Deny || l.Ingress[1].String() != "!100.64.0.5/32" {
		t.Fatalf("ingress %v", l.Ingress)
	}
}

func TestParseLinkErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		obj  *v1alpha1.KubeLink
		want string
	}{
		"no prefix":      {link("a", "", "192.168.0.12", "x", 0), "spec.clusterAddress"},
		"bad cidr":       {link("a", "100.64.300.0/20", "192.168.0.12/24", "x", 0), "spec.cidr"},
		"bad endpoint":   {link("a", "", "192.168.0.12/24", "x:99999", 0), "spec.endpoint"},
		"cluster label":  {link("a.b", "", "192.168.0.12/24", "x", 0), "DNS label"},
		"egress local":   {link("a", "", "192.168.0.12/24", "LocalLink", 0, func(s *v1alpha1.KubeLinkSpec) { s.Egress = []string{"10.0.0.0/8"} }), "egress"},
		"bad egress":     {link("a", "", "192.168.0.12/24", "x", 0, func(s *v1alpha1.KubeLinkSpec) { s.Egress = []string{"10.0.0.0"} }), "spec.egress"},
		"bad ingress":    {link("a", "", "192.168.0.12/24", "x", 0, func(s *v1alpha1.KubeLinkSpec) { s.Ingress = []string{"!!10.0.0.0/8"} }), "spec.ingress"},
		"short key":      {link("a", "", "192.168.0.12/24", "x", 0, func(s *v1alpha1.KubeLinkSpec) { s.PublicKey = "YWJj" }), "spec.publicKey"},
		"psk":            {link("a", "", "192.168.0.12/24", "x", 0, func(s *v1alpha1.KubeLinkSpec) { s.PresharedKey = key1[:43] + "A" }), "spec.presharedKey"},
		"self gateway":   {link("a", "", "192.168.0.12/24", "x", 0, gw("a")), "spec.gatewayLink"},
		"dns ip":         {link("a", "", "192.168.0.12/24", "x", 0, func(s *v1alpha1.KubeLinkSpec) { s.DNS = &v1alpha1.KubeLinkDNS{DNSIP: "1.2.3"} }), "spec.dns.dnsIP"},
		"dns basedomain": {link("a", "", "192.168.0.12/24", "x", 0, func(s *v1alpha1.KubeLinkSpec) { s.DNS = &v1alpha1.KubeLinkDNS{BaseDomain: "a..b"} }), "spec.dns.baseDomain"},
	} {
		_, err := ParseLink(tc.obj)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one mentioning %q", name, err, tc.want)
		}
	}
	if _, err := ParseLink(link("a", "", "192.168.0.12/24", "x", 0, func(s *v1alpha1.KubeLinkSpec) { s.PublicKey = key1 })); err != nil {
		t.Errorf("valid key rejected: %v", err)
	}
}

func TestBuildVerdicts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  Options
		links []*v1alpha1.KubeLink
		// want maps link name to the expected verdict state ("" = ok) and a
		// fragment of the message.
		want map[string][2]string
	}{
		{
			name: "all fine",
			opts: defaultOpts(),
			links: []*v1alpha1.KubeLink{
				link("kubelink2", "100.64.16.0/20", "192.168.0.12/24", "a.example", 0),
				link("kubelink3", "100.64.32.0/20", "192.168.0.13/24", "Inbound", 1),
			},
			want: map[string][2]string{"kubelink2": {"", ""}, "kubelink3": {"", ""}},
		},
		{
			name: "overlapping service CIDRs: the newer link is invalid",
			opts: defaultOpts(),
			links: []*v1alpha1.KubeLink{
				link("new", "100.64.16.0/21", "192.168.0.13/24", "a", 5),
				link("old", "100.64.16.0/20", "192.168.0.12/24", "b", 1),
				link("other", "100.64.48.0/20", "192.168.0.14/24", "c", 9),
			},
			want: map[string][2]string{"new": {"Invalid", `overlaps 100.64.16.0/20 of link "old"`}, "old": {"", ""}, "other": {"", ""}},
		},
		{
			name:  "overlap with the local service CIDR",
			opts:  defaultOpts(),
			links: []*v1alpha1.KubeLink{link("x", "100.64.0.0/16", "192.168.0.12/24", "a", 0)},
			want:  map[string][2]string{"x": {"Invalid", "local service CIDR"}},
		},
		{
			name: "egress overlapping another link",
			opts: defaultOpts(),
			links: []*v1alpha1.KubeLink{
				link("a", "100.64.16.0/20", "192.168.0.12/24", "a", 0, func(s *v1alpha1.KubeLinkSpec) { s.Egress = []string{"10.1.0.0/16"} }),
				link("b", "10.1.2.0/24", "192.168.0.13/24", "b", 1),
			},
			want: map[string][2]string{"a": {"", ""}, "b": {"Invalid", "overlaps 10.1.0.0/16"}},
		},
		{
			name: "egress inside the mesh network: MeshService addresses of that cluster",
			opts: defaultOpts(),
			links: []*v1alpha1.KubeLink{
				link("a", "100.64.16.0/20", "192.168.0.12/24", "a", 0, func(s *v1alpha1.KubeLinkSpec) { s.Egress = []string{"192.168.0.50/32", "192.168.0.52/31"} }),
				link("b", "100.64.32.0/20", "192.168.0.51/24", "b", 1),
				link("c", "100.64.48.0/20", "192.168.0.13/24", "c", 2, func(s *v1alpha1.KubeLinkSpec) { s.Egress = []string{"192.168.0.12/30"} }),
				link("d", "100.64.64.0/20", "192.168.0.14/24", "d", 3, func(s *v1alpha1.KubeLinkSpec) { s.Egress = []string{"192.168.0.8/29"} }),
				link("e", "100.64.80.0/20", "192.168.0.53/24", "e", 4),
				link("f", "100.64.96.0/20", "192.168.0.15/24", "f", 5, func(s *v1alpha1.KubeLinkSpec) { s.Egress = []string{"192.168.0.0/25"} }),
				link("g", "192.168.0.128/25", "192.168.0.16/24", "g", 6),
			},
			want: map[string][2]string{
				"a": {"", ""},
				"b": {"", ""},
				"c": {"Invalid", "contains the link's own address"},
				"d": {"Invalid", "contains the local link address 192.168.0.11"},
				"e": {"Invalid", `inside spec.egress 192.168.0.52/31 of link "a"`},
				"f": {"Invalid", "contains the mesh network address"},
				"g": {"Invalid", "overlaps the mesh network"},
			},
		},
		{
			name: "duplicate link address",
			opts: defaultOpts(),
			links: []*v1alpha1.KubeLink{
				link("a", "100.64.16.0/20", "192.168.0.12/24", "a", 0),
				link("b", "100.64.32.0/20", "192.168.0.12/24", "b", 1),
				link("c", "100.64.48.0/20", "192.168.0.11/24", "c", 2),
			},
			want: map[string][2]string{"a": {"", ""}, "b": {"Invalid", `already used by link "a"`}, "c": {"Invalid", "local cluster's link address"}},
		},
		{
			name: "address outside the mesh and wrong netmask",
			opts: defaultOpts(),
			links: []*v1alpha1.KubeLink{
				link("a", "100.64.16.0/20", "192.168.1.12/24", "a", 0),
				link("b", "100.64.32.0/20", "192.168.0.13/16", "b", 1),
			},
			want: map[string][2]string{"a": {"Invalid", "outside the mesh network 192.168.0.0/24"}, "b": {"Invalid", "netmask /16"}},
		},
		{
			name:  "foreign link without a mesh",
			opts:  defaultOpts(),
			links: []*v1alpha1.KubeLink{link("other--a", "100.64.16.0/20", "10.0.0.2/24", "a", 0)},
			want:  map[string][2]string{"other--a": {"Stale", `mesh "other" has no LocalLink`}},
		},
		{
			name:  "no default mesh configured",
			opts:  Options{},
			links: []*v1alpha1.KubeLink{link("a", "100.64.16.0/20", "192.168.0.12/24", "a", 0)},
			want:  map[string][2]string{"a": {"Stale", "default mesh is not configured"}},
		},
		{
			name: "LocalLink defines a mesh, second LocalLink is invalid",
			opts: Options{},
			links: []*v1alpha1.KubeLink{
				link("m--one", "100.64.0.0/20", "10.9.0.1/24", "LocalLink", 0),
				link("m--two", "100.64.16.0/20", "10.9.0.2/24", "LocalLink", 1),
				link("m--peer", "100.64.32.0/20", "10.9.0.3/24", "p", 2),
			},
			want: map[string][2]string{"m--one": {"", ""}, "m--two": {"Invalid", "already defined"}, "m--peer": {"", ""}},
		},
		{
			name: "gateway cycle invalidates the cycle, chains into it go stale",
			opts: defaultOpts(),
			links: []*v1alpha1.KubeLink{
				link("a", "100.64.16.0/20", "192.168.0.12/24", "", 0, gw("b")),
				link("b", "100.64.32.0/20", "192.168.0.13/24", "", 1, gw("a")),
				link("c", "100.64.48.0/20", "192.168.0.14/24", "", 2, gw("a")),
				link("d", "100.64.64.0/20", "192.168.0.15/24", "d", 3),
				link("e", "100.64.80.0/20", "192.168.0.16/24", "", 4, gw("d")),
			},
			want: map[string][2]string{
				"a": {"Invalid", "cycle"}, "b": {"Invalid", "cycle"}, "c": {"Stale", `gateway link "a" is not usable`},
				"d": {"", ""}, "e": {"", ""},
			},
		},
		{
			name:  "missing gateway link is stale",
			opts:  defaultOpts(),
			links: []*v1alpha1.KubeLink{link("a", "100.64.16.0/20", "192.168.0.12/24", "", 0, gw("nope"))},
			want:  map[string][2]string{"a": {"Stale", "does not exist"}},
		},
		{
			name: "invalid spec does not affect others",
			opts: defaultOpts(),
			links: []*v1alpha1.KubeLink{
				link("bad", "100.64.16.0/20", "192.168.0.12", "a", 0),
				link("good", "100.64.16.0/20", "192.168.0.12/24", "b", 1),
			},
			want: map[string][2]string{"bad": {"Invalid", "spec.clusterAddress"}, "good": {"", ""}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Build(tc.links, tc.opts)
			for name, want := range tc.want {
				l := s.Links[name]
				if l == nil {
					t.Fatalf("link %s missing", name)
				}
				if l.Verdict.State != want[0] || !strings.Contains(l.Verdict.Message, want[1]) {
					t.Errorf("%s: verdict %+v, want state %q with %q", name, l.Verdict, want[0], want[1])
				}
				m := s.Meshes[l.Mesh]
				if m == nil || l.Local {
					continue
				}
				if inMesh := m.Link(l.Cluster) == l; inMesh != (want[0] == "") {
					t.Errorf("%s: in mesh = %v, want %v", name, inMesh, want[0] == "")
				}
			}
			// Order must not matter.
			rev := append([]*v1alpha1.KubeLink(nil), tc.links...)
			for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
				rev[i], rev[j] = rev[j], rev[i]
			}
			s2 := Build(rev, tc.opts)
			for name, l := range s.Links {
				if s2.Links[name].Verdict != l.Verdict {
					t.Errorf("%s: verdict depends on input order: %+v vs %+v", name, l.Verdict, s2.Links[name].Verdict)
				}
			}
		})
	}
}

func TestBuildMeshes(t *testing.T) {
	s := Build([]*v1alpha1.KubeLink{
		link("mesh--kubelink1", "100.64.0.0/20", "192.168.1.11/24", "LocalLink", 0, func(sp *v1alpha1.KubeLinkSpec) {
			sp.DNS = &v1alpha1.KubeLinkDNS{BaseDomain: "Mesh.Example.", DNSIP: "100.64.0.11"}
		}),
		link("mesh--kubelink2", "100.64.16.0/20", "192.168.1.12/24", "b", 1),
		link("kubelink3", "100.64.32.0/20", "192.168.0.13/24", "c", 2),
	}, Options{ClusterName: "local", LinkAddress: netip.MustParsePrefix("192.168.0.11/24"), Domain: "kubelink.", ClusterDomain: "cluster.local", LocalDNS: netip.MustParseAddr("100.64.0.53")})
	m := s.Meshes["mesh"]
	if m == nil || m.Domain != "mesh.example" || m.GlobalDNS.String() != "100.64.0.11" || m.Network.String() != "192.168.1.0/24" {
		t.Fatalf("mesh from LocalLink wrong: %+v", m)
	}
	if m.Local.Cluster != "kubelink1" || m.Local.DNSIP.String() != "100.64.0.53" || m.Local.ClusterDomain != "cluster.local" {
		t.Fatalf("local link of mesh wrong: %+v", m.Local)
	}
	if m.Link("kubelink2") == nil || m.Link("kubelink3") != nil {
		t.Fatalf("mesh links wrong: %v", m.Links)
	}
	d := s.Meshes[""]
	if d == nil || d.Domain != "kubelink" || d.Local.Cluster != "local" || d.Link("kubelink3") == nil {
		t.Fatalf("default mesh wrong: %+v", d)
	}
	if got := len(s.Usable()); got != 2 {
		t.Fatalf("usable links = %d, want 2", got)
	}
}
