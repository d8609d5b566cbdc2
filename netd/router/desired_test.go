package router

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelink/kubelink/api/mesh"
	"github.com/kubelink/kubelink/api/v1alpha1"
)

func kubeLink(name, cidr, addr, endpoint string, age int, egress ...string) *v1alpha1.KubeLink {
	return &v1alpha1.KubeLink{
		ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(time.Unix(1_700_000_000+int64(age), 0))},
		Spec:       v1alpha1.KubeLinkSpec{CIDR: cidr, ClusterAddress: addr, Endpoint: endpoint, Egress: egress},
	}
}

func prefixes(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, x := range s {
		out = append(out, netip.MustParsePrefix(x))
	}
	return out
}

func TestDestinations(t *testing.T) {
	opts := mesh.Options{ClusterName: "c1", LinkAddress: netip.MustParsePrefix("192.168.0.11/24"), ServiceCIDR: netip.MustParsePrefix("100.64.1.0/24")}
	links := []*v1alpha1.KubeLink{
		kubeLink("c2", "100.64.2.0/24", "192.168.0.12/24", "gw2.example:8777", 1, "10.20.0.0/16"),
		kubeLink("c3", "100.64.3.0/24", "192.168.0.13/24", "gw3.example:8777", 2, "10.30.1.0/24"),
		// A second mesh defined by a LocalLink, with one member.
		kubeLink("m2--c1", "100.64.1.0/24", "10.99.0.1/24", v1alpha1.EndpointLocalLink, 3),
		kubeLink("m2--c4", "100.64.4.0/24", "10.99.0.4/24", "gw4.example:8777", 4),
		// Unusable: its service CIDR overlaps c2's (younger loses).
		kubeLink("c5", "100.64.2.128/25", "192.168.0.15/24", "gw5.example:8777", 5),
		// Unusable: a mesh without a LocalLink.
		kubeLink("m3--c6", "100.64.6.0/24", "10.98.0.6/24", "gw6.example:8777", 6),
	}
	got := Destinations(mesh.Build(links, opts))
	want := prefixes("10.20.0.0/16", "10.30.1.0/24", "10.99.0.0/24", "100.64.2.0/24", "100.64.3.0/24", "100.64.4.0/24", "192.168.0.0/24")
	if !slices.Equal(got, want) {
		t.Fatalf("destinations\n got %v\nwant %v", got, want)
	}
	// Without a default mesh and links there is nothing to route.
	if got := Destinations(mesh.Build(nil, mesh.Options{})); len(got) != 0 {
		t.Fatalf("empty: %v", got)
	}
	// The default mesh alone routes its network.
	if got := Destinations(mesh.Build(nil, opts)); !slices.Equal(got, prefixes("192.168.0.0/24")) {
		t.Fatalf("mesh only: %v", got)
	}
}

func TestPlan(t *testing.T) {
	nh := Nexthop{Gw: netip.MustParseAddr("10.20.5.1"), LinkIndex: 3}
	routes, skipped := Plan(prefixes("10.20.0.0/16", "100.64.2.0/24", "192.168.0.0/24"), nh)
	if len(routes) != 2 || routes[0].Dst.String() != "100.64.2.0/24" || routes[1].Dst.String() != "192.168.0.0/24" || routes[0].Nexthop != nh {
		t.Fatalf("routes %+v", routes)
	}
	if !slices.Equal(skipped, prefixes("10.20.0.0/16")) {
		t.Fatalf("skipped %v: a destination containing the gateway must be left out", skipped)
	}
}

// TestPlanVXLAN: through VXLAN the routes lead to the gateway's inner
// address, and destinations containing either its inner or its outer
// address are left out (the outer packets to the gateway must not enter
// the tunnel).
func TestPlanVXLAN(t *testing.T) {
	nh := Nexthop{Gw: netip.MustParseAddr("240.20.5.1"), LinkIndex: 3, OnLink: true, Outer: netip.MustParseAddr("10.20.5.1")}
	routes, skipped := Plan(prefixes("10.20.0.0/16", "100.64.2.0/24", "240.0.0.0/4"), nh)
	if len(routes) != 1 || routes[0].Dst.String() != "100.64.2.0/24" || routes[0].Gw != nh.Gw || !routes[0].OnLink {
		t.Fatalf("routes %+v", routes)
	}
	if !slices.Equal(skipped, prefixes("10.20.0.0/16", "240.0.0.0/4")) {
		t.Fatalf("skipped %v", skipped)
	}
}
