package dnsmirror

import (
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelink/kubelink/api/synced"
)

func svc(name string, ips ...string) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.ServiceSpec{ClusterIPs: ips, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	if len(ips) > 0 {
		s.Spec.ClusterIP = ips[0]
	}
	return s
}

func addrs(slices []*discoveryv1.EndpointSlice) string {
	var out []string
	for _, s := range slices {
		for _, e := range s.Endpoints {
			h := ""
			if e.Hostname != nil {
				h = "(" + *e.Hostname + ")"
			}
			out = append(out, string(s.AddressType)+":"+e.Addresses[0]+h)
		}
	}
	return strings.Join(out, " ")
}

func TestDesired(t *testing.T) {
	r := Remote{Cluster: "kubelink2", CIDR: netip.MustParsePrefix("100.64.16.0/20"),
		MeshAddresses: map[string][]netip.Addr{"default/vip": {netip.MustParseAddr("192.168.0.100")}}}
	shared := Remote{Cluster: "kubelink4", MeshAddresses: r.MeshAddresses}
	yes := true
	hs := svc("db", "None")
	remoteSlice := &discoveryv1.EndpointSlice{AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{{Name: ptr("pg"), Port: ptr(int32(5432))}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.1.0.2"}, Hostname: ptr("db-1"), Conditions: discoveryv1.EndpointConditions{Ready: &yes}},
			{Addresses: []string{"10.1.0.1"}, Hostname: ptr("db-0"), Conditions: discoveryv1.EndpointConditions{Ready: &yes}},
		}}
	cases := []struct {
		name     string
		r        Remote
		svc      *corev1.Service
		slices   []*discoveryv1.EndpointSlice
		exported bool
		want     string
		exp      bool
	}{
		{"routed ClusterIP", r, svc("web", "100.64.16.20"), nil, false, "IPv4:100.64.16.20", false},
		{"exported", r, svc("web", "100.64.16.20"), nil, true, "IPv4:100.64.16.20", true},
		{"not routed, no MeshService", r, svc("web", "100.70.0.1"), nil, false, "", false},
		{"shared CIDR: the MeshService address", shared, svc("vip", "100.64.16.30"), nil, false, "IPv4:192.168.0.100", true},
		{"routed wins over MeshService", r, svc("vip", "100.64.16.30"), nil, false, "IPv4:100.64.16.30", true},
		{"headless: endpoints with hostnames", r, hs, []*discoveryv1.EndpointSlice{remoteSlice}, false, "IPv4:10.1.0.1(db-0) IPv4:10.1.0.2(db-1)", false},
		{"ExternalName", r, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "x"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName}}, nil, false, "", false},
		{"none", r, nil, nil, false, "", false},
	}
	for _, c := range cases {
		got := Desired("kubelink", c.r, c.svc, c.slices, c.exported)
		if a := addrs(got); a != c.want {
			t.Errorf("%s: %q, want %q", c.name, a, c.want)
		}
		for _, s := range got {
			if s.Namespace != "kubelink" || s.Labels[discoveryv1.LabelServiceName] != "" || Key(s) != c.r.Cluster+"/default/"+c.svc.Name ||
				(s.Labels[synced.LabelExported] == "true") != c.exp || len(s.Name) > 63 {
				t.Errorf("%s: mirror %s labels %v", c.name, s.Name, s.Labels)
			}
		}
	}
}

func TestDiff(t *testing.T) {
	r := Remote{Cluster: "kubelink2", CIDR: netip.MustParsePrefix("100.64.16.0/20")}
	exported := Desired("kubelink", r, svc("web", "100.64.16.20"), nil, true)
	key := "kubelink2/default/web"
	for _, s := range exported {
		s.ResourceVersion = "7"
	}
	if c, u, d := Diff(key, Desired("kubelink", r, svc("web", "100.64.16.20"), nil, true), exported); len(c)+len(u)+len(d) != 0 {
		t.Fatalf("no-op diff: %d %d %d", len(c), len(u), len(d))
	}
	_, u, _ := Diff(key, Desired("kubelink", r, svc("web", "100.64.16.20"), nil, false), exported)
	if len(u) != 1 || u[0].Labels[synced.LabelExported] != "" || u[0].ResourceVersion != "7" {
		t.Fatalf("withdrawn export must update the mirror: %v", u)
	}
	if _, _, d := Diff(key, nil, exported); len(d) != 1 {
		t.Fatalf("a gone Service must delete its mirror")
	}
	if _, _, d := Diff("kubelink2/default/other", nil, exported); len(d) != 0 {
		t.Fatalf("Diff touched another key's mirror")
	}
	if a, b := Name("c", "ns", "n", "IPv4"), Name("c-ns", "", "n", "IPv4"); a == b {
		t.Fatalf("names collide: %s", a)
	}
	if n := Name(strings.Repeat("c", 60), strings.Repeat("n", 60), "svc", "IPv6"); len(n) > 63 {
		t.Fatalf("name too long: %s", n)
	}
}
