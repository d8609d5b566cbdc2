package aggregate

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func planned(t *testing.T) []*discoveryv1.EndpointSlice {
	t.Helper()
	plan := Desired(localWeb(sport("http", 80), sport("metrics", 9090)), []Cluster{
		{Name: "east", Mode: ModePod, Healthy: true,
			Service: &RemoteService{ClusterIPs: []string{"10.96.0.10"}, Ports: []corev1.ServicePort{sport("http", 80), sport("metrics", 9090)}},
			Slices: []*discoveryv1.EndpointSlice{rslice("x", discoveryv1.AddressTypeIPv4,
				[]discoveryv1.EndpointPort{eport("http", 8080), eport("metrics", 9100)},
				ep("10.1.0.1", yes, yes, no), ep("10.1.0.2", yes, yes, no))}},
		{Name: "west", Mode: ModeService, Healthy: true,
			Service: &RemoteService{ClusterIPs: []string{"10.97.0.10", "fd00::10"}, Ports: []corev1.ServicePort{sport("http", 80)}}},
	})
	if len(plan.Slices) != 3 {
		t.Fatalf("want 3 planned slices, got %d", len(plan.Slices))
	}
	return plan.Slices
}

// stored imitates a slice read back from the apiserver: server fields set,
// extra labels and owners added by others, lists reordered, protocol unset
// (defaulted to TCP by the API).
func stored(d *discoveryv1.EndpointSlice) *discoveryv1.EndpointSlice {
	c := d.DeepCopy()
	c.ResourceVersion = "42"
	c.UID = "slice-uid"
	c.Generation = 3
	c.Labels["someone.else/label"] = "x"
	c.OwnerReferences = append(c.OwnerReferences, metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: "other"})
	for i, j := 0, len(c.Endpoints)-1; i < j; i, j = i+1, j-1 {
		c.Endpoints[i], c.Endpoints[j] = c.Endpoints[j], c.Endpoints[i]
	}
	for i, j := 0, len(c.Ports)-1; i < j; i, j = i+1, j-1 {
		c.Ports[i], c.Ports[j] = c.Ports[j], c.Ports[i]
	}
	for i := range c.Ports {
		c.Ports[i].Protocol = nil
	}
	return c
}

func TestEqual(t *testing.T) {
	base := planned(t)[0]
	cases := []struct {
		name   string
		mutate func(*discoveryv1.EndpointSlice)
		equal  bool
	}{
		{"read back unchanged", func(*discoveryv1.EndpointSlice) {}, true},
		{"our label changed", func(s *discoveryv1.EndpointSlice) { s.Labels[LabelSourceCluster] = "west" }, false},
		{"our label removed", func(s *discoveryv1.EndpointSlice) { delete(s.Labels, discoveryv1.LabelManagedBy) }, false},
		{"address type", func(s *discoveryv1.EndpointSlice) { s.AddressType = discoveryv1.AddressTypeIPv6 }, false},
		{"port number", func(s *discoveryv1.EndpointSlice) { s.Ports[0].Port = ptr(int32(1)) }, false},
		{"port removed", func(s *discoveryv1.EndpointSlice) { s.Ports = s.Ports[:1] }, false},
		{"endpoint condition", func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Conditions.Ready = ptr(false) }, false},
		{"endpoint hostname", func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Hostname = ptr("h") }, false},
		{"endpoint removed", func(s *discoveryv1.EndpointSlice) { s.Endpoints = s.Endpoints[:1] }, false},
		{"owner UID", func(s *discoveryv1.EndpointSlice) { s.OwnerReferences[0].UID = "other" }, false},
		{"owner not controller", func(s *discoveryv1.EndpointSlice) { s.OwnerReferences[0].Controller = nil }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cur := stored(base)
			tc.mutate(cur)
			if got := Equal(base, cur); got != tc.equal {
				t.Errorf("Equal = %v, want %v", got, tc.equal)
			}
		})
	}
}

func TestDiff(t *testing.T) {
	desired := planned(t)
	foreign := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "web-abcde", Labels: map[string]string{
		discoveryv1.LabelServiceName: "web", discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}}}
	orphan := stored(desired[0])
	orphan.Name = "web-gone-ipv4-0123456789"

	t.Run("no-op resync writes nothing", func(t *testing.T) {
		var current []*discoveryv1.EndpointSlice
		for _, d := range desired {
			current = append(current, stored(d))
		}
		current = append(current, foreign)
		c, u, d := Diff(desired, current)
		if len(c)+len(u)+len(d) != 0 {
			t.Errorf("create %d update %d delete %d, want none", len(c), len(u), len(d))
		}
	})

	t.Run("create, update, delete; foreign slices untouched", func(t *testing.T) {
		changed := stored(desired[1])
		changed.Ports[0].Port = ptr(int32(1))
		current := []*discoveryv1.EndpointSlice{changed, orphan, foreign}
		c, u, d := Diff(desired, current)
		if names(c) != desired[0].Name+","+desired[2].Name {
			t.Errorf("create %s", names(c))
		}
		if names(u) != desired[1].Name {
			t.Fatalf("update %s", names(u))
		}
		if u[0].ResourceVersion != "42" || !Equal(desired[1], u[0]) {
			t.Errorf("update %s", names(u))
		}
		if u[0] == desired[1] {
			t.Errorf("update aliases the desired slice")
		}
		if names(d) != orphan.Name {
			t.Errorf("delete %s", names(d))
		}
	})

	t.Run("a foreign slice holding our name is not taken over", func(t *testing.T) {
		squatter := stored(desired[0])
		squatter.Labels[discoveryv1.LabelManagedBy] = "someone-else"
		c, u, d := Diff(desired[:1], []*discoveryv1.EndpointSlice{squatter})
		if names(c) != desired[0].Name || len(u)+len(d) != 0 {
			t.Errorf("create %s update %s delete %s", names(c), names(u), names(d))
		}
	})
}

func names(s []*discoveryv1.EndpointSlice) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += ","
		}
		out += x.Name
	}
	return out
}
