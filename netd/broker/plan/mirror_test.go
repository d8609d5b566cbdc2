package plan_test

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelink/kubelink/api/synced"
	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/netd/broker/plan"
)

const netdNS = "kubelink"

// mirror is netd sync's mirror of a remote MeshService of cluster link
// with the given addresses, as meshsvc.Desired writes it; mods break it.
func mirror(link string, addrs []string, mods ...func(*discoveryv1.EndpointSlice)) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: netdNS, Name: "meshsvc-" + link + "-" + strings.Join(addrs, "-"), Labels: map[string]string{
			discoveryv1.LabelManagedBy: synced.ManagedBy,
			synced.LabelManagedBy:      synced.ManagerName,
			synced.LabelSourceCluster:  link,
			synced.LabelSourceKind:     synced.KindKubeLink,
			synced.LabelMeshService:    "default.web",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for _, a := range addrs {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}})
	}
	for _, m := range mods {
		m(s)
	}
	return s
}

func label(k, v string) func(*discoveryv1.EndpointSlice) {
	return func(s *discoveryv1.EndpointSlice) {
		if v == "" {
			delete(s.Labels, k)
		} else {
			s.Labels[k] = v
		}
	}
}

func claimsString(c map[string][]netip.Addr) string {
	var out []string
	for _, l := range []string{"b", "c", "x"} {
		for _, a := range c[l] {
			out = append(out, l+"="+a.String())
		}
	}
	return strings.Join(out, " ")
}

// TestMirrorClaims: only netd sync's mirrors in the broker's own namespace
// claim addresses; anything else that looks like one is ignored.
func TestMirrorClaims(t *testing.T) {
	notReady := func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Conditions.Ready = new(bool) }
	ready := func(s *discoveryv1.EndpointSlice) { r := true; s.Endpoints[0].Conditions.Ready = &r }
	for _, tc := range []struct {
		name      string
		namespace string
		slice     *discoveryv1.EndpointSlice
		want      string
	}{
		{"a mirror", netdNS, mirror("b", []string{"192.168.0.100"}), "b=192.168.0.100"},
		{"ready endpoints and several addresses", netdNS, mirror("b", []string{"192.168.0.100", "192.168.0.101"}, ready), "b=192.168.0.100 b=192.168.0.101"},
		{"not ready: the remote gateway does not serve it", netdNS, mirror("b", []string{"192.168.0.100"}, notReady), ""},
		{"no trusted namespace", "", mirror("b", []string{"192.168.0.100"}), ""},
		{"another namespace", netdNS, mirror("b", []string{"192.168.0.100"}, func(s *discoveryv1.EndpointSlice) { s.Namespace = "default" }), ""},
		{"not managed by netd sync", netdNS, mirror("b", []string{"192.168.0.100"}, label(discoveryv1.LabelManagedBy, "endpointslice-controller.k8s.io")), ""},
		{"no managed-by", netdNS, mirror("b", []string{"192.168.0.100"}, label(discoveryv1.LabelManagedBy, "")), ""},
		{"no mesh-service label: an aggregated slice", netdNS, mirror("b", []string{"192.168.0.100"}, label(synced.LabelMeshService, "")), ""},
		{"no source cluster", netdNS, mirror("b", []string{"192.168.0.100"}, label(synced.LabelSourceCluster, "")), ""},
		{"a ClusterLink's cluster", netdNS, mirror("b", []string{"192.168.0.100"}, label(synced.LabelSourceKind, synced.KindClusterLink)), ""},
		{"a Service's slice", netdNS, mirror("b", []string{"192.168.0.100"}, label(discoveryv1.LabelServiceName, "web")), ""},
		{"FQDN", netdNS, mirror("b", []string{"192.168.0.100"}, func(s *discoveryv1.EndpointSlice) { s.AddressType = discoveryv1.AddressTypeFQDN }), ""},
		{"address of the other family", netdNS, mirror("b", []string{"fd00::1"}), ""},
		{"not an address", netdNS, mirror("b", []string{"web.example"}), ""},
		{"being deleted", netdNS, mirror("b", []string{"192.168.0.100"}, func(s *discoveryv1.EndpointSlice) { now := metav1.Now(); s.DeletionTimestamp = &now }), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := claimsString(plan.MirrorClaims(tc.namespace, []*discoveryv1.EndpointSlice{tc.slice})); got != tc.want {
				t.Errorf("claims %q, want %q", got, tc.want)
			}
		})
	}
	// The selector the broker's informer uses names the same two labels.
	if want := discoveryv1.LabelManagedBy + "=" + synced.ManagedBy + "," + synced.LabelMeshService; plan.MirrorSelector != want {
		t.Errorf("MirrorSelector %q, want %q", plan.MirrorSelector, want)
	}
}

// TestMakeMirrors: a mirrored MeshService address inside the mesh network
// becomes an allowed IP of its link's peer (or its gateway link's), a
// route and an SNAT mapping, as spec.egress would; refused claims are
// reported; without the mirror it is gone again.
func TestMakeMirrors(t *testing.T) {
	b := link("b", "192.168.0.12/24", "100.64.2.0/24", "10.0.0.2:8777")
	c := link("c", "192.168.0.13/24", "100.64.3.0/24", "", via("b"))
	for _, tc := range []struct {
		name     string
		cfg      []func(*plan.Config)
		services []*v1alpha1.MeshService
		mirrors  []*discoveryv1.EndpointSlice
		peers    []string
		routes   []string
		snat     []string
		rejects  []string
	}{{
		name:    "a mirror of b",
		mirrors: []*discoveryv1.EndpointSlice{mirror("b", []string{"192.168.0.100"})},
		peers:   []string{"b 192.168.0.12/32,100.64.2.0/24,192.168.0.100/32,100.64.3.0/24,192.168.0.13/32"},
		routes: []string{"192.168.0.0/24 192.168.0.11", "100.64.2.0/24 192.168.0.11", "192.168.0.100/32 192.168.0.11",
			"100.64.3.0/24 192.168.0.11"},
		snat: []string{"192.168.0.0/24", "100.64.2.0/24", "192.168.0.100/32", "100.64.3.0/24"},
	}, {
		name:    "a mirror of c, relayed through b: b's peer carries it",
		mirrors: []*discoveryv1.EndpointSlice{mirror("c", []string{"192.168.0.110"})},
		peers:   []string{"b 192.168.0.12/32,100.64.2.0/24,100.64.3.0/24,192.168.0.110/32,192.168.0.13/32"},
		routes: []string{"192.168.0.0/24 192.168.0.11", "100.64.2.0/24 192.168.0.11",
			"100.64.3.0/24 192.168.0.11", "192.168.0.110/32 192.168.0.11"},
		snat: []string{"192.168.0.0/24", "100.64.2.0/24", "100.64.3.0/24", "192.168.0.110/32"},
	}, {
		name:    "served links: the learned address is routed like the link address",
		cfg:     []func(*plan.Config){serving("b")},
		mirrors: []*discoveryv1.EndpointSlice{mirror("b", []string{"192.168.0.100"})},
		peers:   []string{"b 192.168.0.12/32,100.64.2.0/24,192.168.0.100/32"},
		routes:  []string{"100.64.2.0/24 192.168.0.11", "192.168.0.100/32 192.168.0.11", "192.168.0.12/32 192.168.0.11"},
		snat:    []string{"192.168.0.0/24", "100.64.2.0/24", "192.168.0.100/32", "192.168.0.12/32"},
	}, {
		name: "refused: a local MeshService's address, another link's address, outside the mesh, a mirror elsewhere",
		cfg:  []func(*plan.Config){podMode},
		services: []*v1alpha1.MeshService{
			meshService("web", v1alpha1.MeshServiceSpec{Service: "web", MeshAddress: "192.168.0.50"})},
		mirrors: []*discoveryv1.EndpointSlice{
			mirror("b", []string{"192.168.0.50", "192.168.0.13", "10.1.0.1"}),
			mirror("b", []string{"192.168.0.100"}, func(s *discoveryv1.EndpointSlice) { s.Namespace = "default" })},
		peers:   []string{"b 192.168.0.12/32,100.64.2.0/24,100.64.3.0/24,192.168.0.13/32"},
		routes:  []string{"192.168.0.0/24 192.168.0.11", "100.64.2.0/24 192.168.0.11", "100.64.3.0/24 192.168.0.11"},
		snat:    []string{"192.168.0.0/24", "100.64.2.0/24", "100.64.3.0/24"},
		rejects: []string{"b 10.1.0.1", "b 192.168.0.13", "b 192.168.0.50"},
	}, {
		name:   "no mirrors: nothing learned",
		peers:  []string{"b 192.168.0.12/32,100.64.2.0/24,100.64.3.0/24,192.168.0.13/32"},
		routes: []string{"192.168.0.0/24 192.168.0.11", "100.64.2.0/24 192.168.0.11", "100.64.3.0/24 192.168.0.11"},
		snat:   []string{"192.168.0.0/24", "100.64.2.0/24", "100.64.3.0/24"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := plan.Config{Device: "kubelink", Mesh: defaultMesh, WireGuard: true, Resolve: resolve, MirrorNamespace: netdNS}
			for _, o := range tc.cfg {
				o(&cfg)
			}
			links := []*v1alpha1.KubeLink{b, c}
			if cfg.Serves != nil {
				links = links[:1]
			}
			p := plan.MakeFrom(cfg, plan.Objects{Links: links, Services: tc.services, Lookup: lookup, Mirrors: tc.mirrors})
			var peers, rts, snat, rejects []string
			for _, x := range p.Peers {
				peers = append(peers, fmt.Sprintf("%s %s", x.Link, join(x.AllowedIPs)))
			}
			for _, r := range p.Routes {
				rts = append(rts, r.Dst.String()+" "+r.Src.String())
			}
			for _, m := range p.SNAT {
				snat = append(snat, m.Dst.String())
			}
			for _, r := range p.MirrorRejects {
				rejects = append(rejects, r.Link+" "+r.Address.String())
			}
			for what, gw := range map[string][2][]string{"peers": {peers, tc.peers}, "routes": {rts, tc.routes},
				"SNAT destinations": {snat, tc.snat}, "rejected": {rejects, tc.rejects}} {
				if !reflect.DeepEqual(gw[0], gw[1]) {
					t.Errorf("%s:\n got  %q\n want %q", what, gw[0], gw[1])
				}
			}
			// The firewall tells the learned address's packets apart as
			// the link's, like its egress.
			for _, l := range p.Set.Usable() {
				for _, r := range l.Learned {
					if !strings.Contains(fmt.Sprint(l.Routes()), r.String()) {
						t.Errorf("link %s: learned %s not among its routes", l.Name, r)
					}
				}
			}
		})
	}
}
