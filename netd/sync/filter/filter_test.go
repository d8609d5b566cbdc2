package filter

import (
	"testing"

	svclinkv1alpha1 "github.com/kubelink/kubelink/api/svclink/v1alpha1"
)

func TestAllows(t *testing.T) {
	spec := &svclinkv1alpha1.ClusterLinkSpec{
		IncludedNamespaces:   []string{"default", "production", "staging"},
		ExcludedNamespaces:   []string{"staging"},
		ExcludedServices:     []string{"production/internal-api"},
		ExcludedServiceNames: []string{"admin-panel"},
	}
	cases := []struct {
		name    string
		global  []string
		spec    *svclinkv1alpha1.ClusterLinkSpec
		ns, svc string
		want    bool
	}{
		{"zero filter reads default", nil, nil, "default", "web", true},
		{"kube-system never", nil, nil, "kube-system", "web", false},
		{"kubernetes never", nil, nil, "default", "kubernetes", false},
		{"kubernetes never, any namespace", nil, nil, "shop", "kubernetes", false},
		{"included", nil, spec, "production", "web", true},
		{"not included", nil, spec, "other", "web", false},
		{"included and excluded", nil, spec, "staging", "web", false},
		{"excluded service", nil, spec, "production", "internal-api", false},
		{"same name elsewhere", nil, spec, "default", "internal-api", true},
		{"excluded name", nil, spec, "default", "admin-panel", false},
		{"global replaces included", []string{"other"}, spec, "other", "web", true},
		{"global replaces included, excluded too", []string{"staging"}, spec, "staging", "web", true},
		{"global limits", []string{"other"}, spec, "default", "web", false},
		{"global keeps service exclusions", []string{"production"}, spec, "production", "internal-api", false},
		{"global keeps kube-system out", []string{"kube-system"}, nil, "kube-system", "web", false},
		{"netd's own namespace never", nil, nil, "kubelink", "kubelink-dns", false},
		{"netd's own namespace never, even included", []string{"kubelink"}, nil, "kubelink", "web", false},
	}
	for _, c := range cases {
		if got := New("kubelink", c.global, c.spec).Allows(c.ns, c.svc); got != c.want {
			t.Errorf("%s: Allows(%s, %s) = %v, want %v", c.name, c.ns, c.svc, got, c.want)
		}
	}
}

func TestStringAndParse(t *testing.T) {
	a := New("", []string{"b", "a"}, &svclinkv1alpha1.ClusterLinkSpec{ExcludedServiceNames: []string{"x"}})
	b := New("", ParseList(" a, b,,"), &svclinkv1alpha1.ClusterLinkSpec{ExcludedServiceNames: []string{"x"}})
	if a.String() != b.String() {
		t.Fatalf("equal filters differ: %q vs %q", a, b)
	}
	if c := New("", nil, nil); c.String() == a.String() {
		t.Fatalf("different filters compare equal: %q", c)
	}
}
