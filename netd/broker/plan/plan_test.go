package plan_test

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelink/kubelink/api/mesh"
	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/netd/broker/plan"
	"github.com/kubelink/kubelink/netd/nat"
	"github.com/kubelink/kubelink/netd/tunnel/bridge"
)

const key = "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY="

// link is a foreign KubeLink; opts adjust its spec.
func link(name, addr, cidr, endpoint string, opts ...func(*v1alpha1.KubeLinkSpec)) *v1alpha1.KubeLink {
	l := &v1alpha1.KubeLink{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.KubeLinkSpec{ClusterAddress: addr, CIDR: cidr, Endpoint: endpoint, PublicKey: key}}
	for _, o := range opts {
		o(&l.Spec)
	}
	return l
}

func via(gw string) func(*v1alpha1.KubeLinkSpec) {
	return func(s *v1alpha1.KubeLinkSpec) { s.GatewayLink, s.Endpoint, s.PublicKey = gw, "", "" }
}

func egress(p ...string) func(*v1alpha1.KubeLinkSpec) {
	return func(s *v1alpha1.KubeLinkSpec) { s.Egress = p }
}

func noKey(s *v1alpha1.KubeLinkSpec) { s.PublicKey = "" }

// localLink defines a mesh for this cluster.
func localLink(name, addr, cidr string) *v1alpha1.KubeLink {
	return &v1alpha1.KubeLink{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.KubeLinkSpec{ClusterAddress: addr, CIDR: cidr, Endpoint: v1alpha1.EndpointLocalLink}}
}

func meshService(name string, spec v1alpha1.MeshServiceSpec) *v1alpha1.MeshService {
	return &v1alpha1.MeshService{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}, Spec: spec}
}

// lookup knows one Service, default/web at 100.64.1.20 with port http 80.
func lookup(ns, name string) *corev1.Service {
	if ns != "default" || name != "web" {
		return nil
	}
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{ClusterIP: "100.64.1.20", Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}
}

// resolve is DNS as a table.
func resolve(host string) (netip.Addr, error) {
	switch host {
	case "gw-b.example":
		return netip.MustParseAddr("10.0.0.2"), nil
	}
	return netip.Addr{}, fmt.Errorf("resolving endpoint host %s: no such host", host)
}

// defaultMesh is a cluster "a" in 192.168.0.0/24 from the flags.
var defaultMesh = mesh.Options{ClusterName: "a", LinkAddress: netip.MustParsePrefix("192.168.0.11/24"), Domain: "kubelink",
	ServiceCIDR: netip.MustParsePrefix("100.64.1.0/24"), ClusterDomain: "cluster.local", LocalDNS: netip.MustParseAddr("100.64.1.10")}

func wireguard(c *plan.Config) { c.WireGuard = true }
func podMode(c *plan.Config)   { c.PodMode = true }
func noTunnel(c *plan.Config)  { c.NoTunnel = true }
func serving(links ...string) func(*plan.Config) {
	return func(c *plan.Config) {
		c.Serves = func(l string) bool {
			for _, s := range links {
				if s == l {
					return true
				}
			}
			return false
		}
	}
}

// TestMake: what each kind of object contributes to the plan. Peers are
// "link endpoint host allowed,IPs"; routes "dst src"; SNAT "dst address
// keep" (keep = the mesh network whose sources keep their address).
func TestMake(t *testing.T) {
	b := link("b", "192.168.0.12/24", "100.64.2.0/24", "10.0.0.2:8777")
	for _, tc := range []struct {
		name     string
		cfg      []func(*plan.Config)
		links    []*v1alpha1.KubeLink
		services []*v1alpha1.MeshService

		peers  []string
		addrs  []string
		routes []string
		snat   []string
		errs   map[string]string // link → part of the message
		states map[string]string // MeshService → state
		chains []string
		hello  []string // mesh/cluster/address/cidr/dnsIP/domain
	}{{
		name:   "one peer, node mode",
		cfg:    []func(*plan.Config){wireguard},
		links:  []*v1alpha1.KubeLink{b},
		peers:  []string{"b 10.0.0.2:8777 10.0.0.2 192.168.0.12/32,100.64.2.0/24"},
		addrs:  []string{"192.168.0.11"},
		routes: []string{"192.168.0.0/24 192.168.0.11", "100.64.2.0/24 192.168.0.11"},
		snat:   []string{"192.168.0.0/24 192.168.0.11 192.168.0.0/24", "100.64.2.0/24 192.168.0.11 192.168.0.0/24"},
		chains: []string{"mss-forward", nat.ChainSNAT},
		hello:  []string{"/a/192.168.0.11/24/100.64.1.0/24/100.64.1.10/cluster.local"},
	}, {
		name: "relays: a link behind b adds its destinations to b's peer and gets routes, but no peer",
		cfg:  []func(*plan.Config){wireguard},
		links: []*v1alpha1.KubeLink{b,
			link("c", "192.168.0.13/24", "100.64.3.0/24", "", via("b"), egress("10.30.0.0/16"))},
		peers: []string{"b 10.0.0.2:8777 10.0.0.2 192.168.0.12/32,100.64.2.0/24,100.64.3.0/24,10.30.0.0/16,192.168.0.13/32"},
		addrs: []string{"192.168.0.11"},
		routes: []string{"192.168.0.0/24 192.168.0.11", "100.64.2.0/24 192.168.0.11",
			"100.64.3.0/24 192.168.0.11", "10.30.0.0/16 192.168.0.11"},
		snat: []string{"192.168.0.0/24 192.168.0.11 192.168.0.0/24", "100.64.2.0/24 192.168.0.11 192.168.0.0/24",
			"100.64.3.0/24 192.168.0.11 192.168.0.0/24", "10.30.0.0/16 192.168.0.11 192.168.0.0/24"},
		chains: []string{"mss-forward", nat.ChainSNAT},
		hello:  []string{"/a/192.168.0.11/24/100.64.1.0/24/100.64.1.10/cluster.local"},
	}, {
		name: "served links: routes the link addresses of its own links, not the mesh network; others get nothing",
		cfg:  []func(*plan.Config){wireguard, serving("b", "c")},
		links: []*v1alpha1.KubeLink{b,
			link("c", "192.168.0.13/24", "100.64.3.0/24", "", via("b")),
			link("d", "192.168.0.14/24", "100.64.4.0/24", "10.0.0.4:8777")},
		peers: []string{"b 10.0.0.2:8777 10.0.0.2 192.168.0.12/32,100.64.2.0/24,100.64.3.0/24,192.168.0.13/32"},
		addrs: []string{"192.168.0.11"},
		routes: []string{"100.64.2.0/24 192.168.0.11", "192.168.0.12/32 192.168.0.11",
			"100.64.3.0/24 192.168.0.11", "192.168.0.13/32 192.168.0.11"},
		snat: []string{"192.168.0.0/24 192.168.0.11 192.168.0.0/24",
			"100.64.2.0/24 192.168.0.11 192.168.0.0/24", "192.168.0.12/32 192.168.0.11 192.168.0.0/24",
			"100.64.3.0/24 192.168.0.11 192.168.0.0/24", "192.168.0.13/32 192.168.0.11 192.168.0.0/24"},
		chains: []string{"mss-forward", nat.ChainSNAT},
		hello:  []string{"/a/192.168.0.11/24/100.64.1.0/24/100.64.1.10/cluster.local"},
	}, {
		name: "several meshes: an address, a network route and a hello entry each; SNAT to each mesh's own address",
		cfg:  []func(*plan.Config){wireguard},
		links: []*v1alpha1.KubeLink{b,
			localLink("blue--a", "10.9.0.1/24", "100.64.1.0/24"),
			link("blue--x", "10.9.0.2/24", "100.80.0.0/24", "gw-b.example:9000")},
		peers: []string{"b 10.0.0.2:8777 10.0.0.2 192.168.0.12/32,100.64.2.0/24",
			"blue--x 10.0.0.2:9000 gw-b.example 10.9.0.2/32,100.80.0.0/24"},
		addrs: []string{"192.168.0.11", "10.9.0.1"},
		routes: []string{"192.168.0.0/24 192.168.0.11", "10.9.0.0/24 10.9.0.1",
			"100.64.2.0/24 192.168.0.11", "100.80.0.0/24 10.9.0.1"},
		snat: []string{"192.168.0.0/24 192.168.0.11 192.168.0.0/24", "10.9.0.0/24 10.9.0.1 10.9.0.0/24",
			"100.64.2.0/24 192.168.0.11 192.168.0.0/24", "100.80.0.0/24 10.9.0.1 10.9.0.0/24"},
		chains: []string{"mss-forward", nat.ChainSNAT},
		hello: []string{"/a/192.168.0.11/24/100.64.1.0/24/100.64.1.10/cluster.local",
			"blue/a/10.9.0.1/24/100.64.1.0/24/100.64.1.10/cluster.local"},
	}, {
		name: "link errors: no publicKey in WireGuard mode, a host that does not resolve; no peer, no routes",
		cfg:  []func(*plan.Config){wireguard},
		links: []*v1alpha1.KubeLink{b,
			link("d", "192.168.0.14/24", "100.64.4.0/24", "10.0.0.4:8777", noKey),
			link("e", "192.168.0.15/24", "100.64.5.0/24", "nx.example:8777")},
		peers:  []string{"b 10.0.0.2:8777 10.0.0.2 192.168.0.12/32,100.64.2.0/24"},
		addrs:  []string{"192.168.0.11"},
		routes: []string{"192.168.0.0/24 192.168.0.11", "100.64.2.0/24 192.168.0.11"},
		snat:   []string{"192.168.0.0/24 192.168.0.11 192.168.0.0/24", "100.64.2.0/24 192.168.0.11 192.168.0.0/24"},
		errs:   map[string]string{"d": "spec.publicKey is missing", "e": "nx.example"},
		chains: []string{"mss-forward", nat.ChainSNAT},
		hello:  []string{"/a/192.168.0.11/24/100.64.1.0/24/100.64.1.10/cluster.local"},
	}, {
		name: "bridge: no key needed; inbound links get no endpoint",
		links: []*v1alpha1.KubeLink{
			link("d", "192.168.0.14/24", "100.64.4.0/24", "gw-b.example:8777", noKey),
			link("f", "192.168.0.16/24", "", v1alpha1.EndpointInbound, noKey)},
		peers:  []string{"d 10.0.0.2:8777 gw-b.example 192.168.0.14/32,100.64.4.0/24", "f   192.168.0.16/32"},
		addrs:  []string{"192.168.0.11"},
		routes: []string{"192.168.0.0/24 192.168.0.11", "100.64.4.0/24 192.168.0.11"},
		snat:   []string{"192.168.0.0/24 192.168.0.11 192.168.0.0/24", "100.64.4.0/24 192.168.0.11 192.168.0.0/24"},
		chains: []string{"mss-forward", nat.ChainSNAT},
		hello:  []string{"/a/192.168.0.11/24/100.64.1.0/24/100.64.1.10/cluster.local"},
	}, {
		name:  "pod mode: MeshServices resolve, DNAT chains beside the same SNAT",
		cfg:   []func(*plan.Config){wireguard, podMode},
		links: []*v1alpha1.KubeLink{b},
		services: []*v1alpha1.MeshService{
			meshService("web", v1alpha1.MeshServiceSpec{Service: "web", MeshAddress: "192.168.0.50"}),
			meshService("gone", v1alpha1.MeshServiceSpec{Service: "gone", MeshAddress: "192.168.0.51"})},
		peers:  []string{"b 10.0.0.2:8777 10.0.0.2 192.168.0.12/32,100.64.2.0/24"},
		addrs:  []string{"192.168.0.11"},
		routes: []string{"192.168.0.0/24 192.168.0.11", "100.64.2.0/24 192.168.0.11"},
		snat:   []string{"192.168.0.0/24 192.168.0.11 192.168.0.0/24", "100.64.2.0/24 192.168.0.11 192.168.0.0/24"},
		states: map[string]string{"web": v1alpha1.StateOK, "gone": v1alpha1.StateInvalid},
		chains: []string{"mss-forward", nat.ChainSNAT, nat.ChainDNAT, nat.ChainMasq},
		hello:  []string{"/a/192.168.0.11/24/100.64.1.0/24/100.64.1.10/cluster.local"},
	}, {
		name:  "node mode: MeshServices are Unsupported, no DNAT",
		cfg:   []func(*plan.Config){wireguard},
		links: []*v1alpha1.KubeLink{b},
		services: []*v1alpha1.MeshService{
			meshService("web", v1alpha1.MeshServiceSpec{Service: "web", MeshAddress: "192.168.0.50"})},
		peers:  []string{"b 10.0.0.2:8777 10.0.0.2 192.168.0.12/32,100.64.2.0/24"},
		addrs:  []string{"192.168.0.11"},
		routes: []string{"192.168.0.0/24 192.168.0.11", "100.64.2.0/24 192.168.0.11"},
		snat:   []string{"192.168.0.0/24 192.168.0.11 192.168.0.0/24", "100.64.2.0/24 192.168.0.11 192.168.0.0/24"},
		states: map[string]string{"web": v1alpha1.StateUnsupported},
		chains: []string{"mss-forward", nat.ChainSNAT},
		hello:  []string{"/a/192.168.0.11/24/100.64.1.0/24/100.64.1.10/cluster.local"},
	}, {
		name:  "mode none in a pod: MeshServices are Unsupported, no DNAT",
		cfg:   []func(*plan.Config){noTunnel, podMode},
		links: []*v1alpha1.KubeLink{b},
		services: []*v1alpha1.MeshService{
			meshService("web", v1alpha1.MeshServiceSpec{Service: "web", MeshAddress: "192.168.0.50"})},
		peers:  []string{"b 10.0.0.2:8777 10.0.0.2 192.168.0.12/32,100.64.2.0/24"},
		addrs:  []string{"192.168.0.11"},
		routes: []string{"192.168.0.0/24 192.168.0.11", "100.64.2.0/24 192.168.0.11"},
		snat:   []string{"192.168.0.0/24 192.168.0.11 192.168.0.0/24", "100.64.2.0/24 192.168.0.11 192.168.0.0/24"},
		states: map[string]string{"web": v1alpha1.StateUnsupported},
		chains: []string{"mss-forward", nat.ChainSNAT},
		hello:  []string{"/a/192.168.0.11/24/100.64.1.0/24/100.64.1.10/cluster.local"},
	}, {
		name:   "ingress: the firewall chains join the table",
		cfg:    []func(*plan.Config){wireguard},
		links:  []*v1alpha1.KubeLink{link("b", "192.168.0.12/24", "100.64.2.0/24", "10.0.0.2:8777", func(s *v1alpha1.KubeLinkSpec) { s.Ingress = []string{"100.64.1.20/32"} })},
		peers:  []string{"b 10.0.0.2:8777 10.0.0.2 192.168.0.12/32,100.64.2.0/24"},
		addrs:  []string{"192.168.0.11"},
		routes: []string{"192.168.0.0/24 192.168.0.11", "100.64.2.0/24 192.168.0.11"},
		snat:   []string{"192.168.0.0/24 192.168.0.11 192.168.0.0/24", "100.64.2.0/24 192.168.0.11 192.168.0.0/24"},
		chains: []string{"fw-0", "fw-links", "filter-forward", "filter-input", "mss-forward", nat.ChainSNAT},
		hello:  []string{"/a/192.168.0.11/24/100.64.1.0/24/100.64.1.10/cluster.local"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			// With the DNS advertisement (--dns-advertisement); without it
			// see TestHelloWithoutDNSAdvertisement.
			cfg := plan.Config{Device: "kubelink", Mesh: defaultMesh, AdvertisedPort: 8777, AdvertiseDNS: true, Resolve: resolve}
			for _, o := range tc.cfg {
				o(&cfg)
			}
			p := plan.Make(cfg, tc.links, tc.services, lookup)
			check := func(what string, got, want []string) {
				t.Helper()
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s:\n got  %q\n want %q", what, got, want)
				}
			}
			var peers, addrs, rts, snat, chains, hello []string
			for _, x := range p.Peers {
				peers = append(peers, fmt.Sprintf("%s %s %s %s", x.Link, x.Endpoint, x.Host, join(x.AllowedIPs)))
			}
			for _, a := range p.Addresses {
				addrs = append(addrs, a.String())
			}
			for _, r := range p.Routes {
				rts = append(rts, r.Dst.String()+" "+r.Src.String())
			}
			for _, m := range p.SNAT {
				snat = append(snat, fmt.Sprintf("%s %s %s", m.Dst, m.Address, m.Network))
			}
			for _, c := range p.Chains {
				chains = append(chains, c.Name)
			}
			for _, m := range p.Hello.Meshes {
				hello = append(hello, strings.Join([]string{m.Mesh, m.Cluster, m.Address, m.CIDR, m.DNSIP, m.Domain}, "/"))
			}
			check("peers", peers, tc.peers)
			check("addresses", addrs, tc.addrs)
			check("routes", rts, tc.routes)
			check("SNAT mappings", snat, tc.snat)
			check("chains", chains, tc.chains)
			check("hello meshes", hello, tc.hello)
			if p.Hello.Port != 8777 {
				t.Errorf("hello port %d, want the advertised 8777", p.Hello.Port)
			}
			if len(p.LinkErrs) != len(tc.errs) {
				t.Errorf("link errors %v, want %v", p.LinkErrs, tc.errs)
			}
			for l, msg := range tc.errs {
				if !strings.Contains(p.LinkErrs[l], msg) {
					t.Errorf("link %s: error %q, want it to mention %q", l, p.LinkErrs[l], msg)
				}
			}
			got := map[string]string{}
			for _, sp := range p.Services {
				got[sp.Name] = sp.State
			}
			if len(got) != len(tc.states) || len(tc.states) > 0 && !reflect.DeepEqual(got, tc.states) {
				t.Errorf("MeshService states %v, want %v", got, tc.states)
			}
			var owners []string
			for _, f := range p.Forwards {
				owners = append(owners, f.Owner)
			}
			if tc.states["web"] == v1alpha1.StateOK {
				check("forwards (only Ok MeshServices)", owners, []string{"default/web"})
			} else if len(owners) != 0 {
				t.Errorf("forwards %v without an Ok MeshService", owners)
			}
		})
	}
}

// TestMakeDeterministic: the same objects in another order give the same
// plan (the nftables table's fingerprint, and with it "unchanged
// reconciles write nothing", depend on it).
func TestMakeDeterministic(t *testing.T) {
	links := []*v1alpha1.KubeLink{
		link("b", "192.168.0.12/24", "100.64.2.0/24", "10.0.0.2:8777"),
		link("c", "192.168.0.13/24", "100.64.3.0/24", "", via("b")),
		localLink("blue--a", "10.9.0.1/24", "100.64.1.0/24"),
		link("blue--x", "10.9.0.2/24", "100.80.0.0/24", "gw-b.example:9000"),
		link("green--a", "10.8.0.1/24", "", "10.0.0.8:8777"),
	}
	cfg := plan.Config{Device: "kubelink", Mesh: defaultMesh, WireGuard: true, PodMode: true, Resolve: resolve}
	want := plan.Make(cfg, links, nil, lookup)
	reversed := make([]*v1alpha1.KubeLink, len(links))
	for i, l := range links {
		reversed[len(links)-1-i] = l
	}
	got := plan.Make(cfg, reversed, nil, lookup)
	if !reflect.DeepEqual(got.Peers, want.Peers) || !reflect.DeepEqual(got.Routes, want.Routes) ||
		!reflect.DeepEqual(got.Chains, want.Chains) || !reflect.DeepEqual(got.Hello, want.Hello) ||
		!reflect.DeepEqual(got.LinkErrs, want.LinkErrs) {
		t.Errorf("order changed the plan:\n%+v\n%+v", got, want)
	}
}

// TestHelloWithoutDNSAdvertisement: the hello tells peers the local
// cluster's DNS only with --dns-advertisement (the outbound side); the
// rest of it stays.
func TestHelloWithoutDNSAdvertisement(t *testing.T) {
	links := []*v1alpha1.KubeLink{link("b", "192.168.0.12/24", "100.64.2.0/24", "10.0.0.2:8777"), localLink("blue--a", "10.9.0.1/24", "100.64.1.0/24")}
	for _, advertise := range []bool{false, true} {
		p := plan.Make(plan.Config{Device: "kubelink", Mesh: defaultMesh, AdvertisedPort: 8777, AdvertiseDNS: advertise, Resolve: resolve}, links, nil, lookup)
		if len(p.Hello.Meshes) != 2 || p.Hello.Port != 8777 {
			t.Fatalf("advertise %v: hello %+v, want both meshes and the port", advertise, p.Hello)
		}
		for _, m := range p.Hello.Meshes {
			if m.Cluster != "a" || m.Address == "" || m.CIDR != "100.64.1.0/24" {
				t.Errorf("advertise %v: hello mesh %+v lost its cluster, address or CIDR", advertise, m)
			}
			if got := m.DNSIP != "" || m.Domain != ""; got != advertise {
				t.Errorf("advertise %v: hello mesh %q carries DNS %q/%q", advertise, m.Mesh, m.DNSIP, m.Domain)
			}
			if advertise && (m.DNSIP != "100.64.1.10" || m.Domain != "cluster.local") {
				t.Errorf("advertised DNS %q/%q, want 100.64.1.10/cluster.local", m.DNSIP, m.Domain)
			}
		}
	}
}

// TestMakeWithoutResolver: a plan made without a resolver still takes
// literal endpoint addresses and reports host names as the link's error.
func TestMakeWithoutResolver(t *testing.T) {
	p := plan.Make(plan.Config{Device: "kubelink", Mesh: defaultMesh}, []*v1alpha1.KubeLink{
		link("b", "192.168.0.12/24", "100.64.2.0/24", "10.0.0.2:8777"),
		link("c", "192.168.0.13/24", "100.64.3.0/24", "gw-c.example:8777"),
	}, nil, nil)
	if len(p.Peers) != 1 || p.Peers[0].Endpoint != "10.0.0.2:8777" {
		t.Errorf("peers %+v, want b at 10.0.0.2:8777", p.Peers)
	}
	if !strings.Contains(p.LinkErrs["c"], "gw-c.example") {
		t.Errorf("link errors %v, want c's host named", p.LinkErrs)
	}
	if want := (bridge.Hello{Meshes: p.Hello.Meshes}); !reflect.DeepEqual(p.Hello, want) {
		t.Errorf("hello %+v: no advertised port was configured", p.Hello)
	}
}

func join(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}
