package main

import (
	"slices"
	"testing"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
)

// TestDirectives checks the plugin order: kubelink answers the mesh domain
// before kubernetes sees a query, and every directive is a linked plugin.
func TestDirectives(t *testing.T) {
	if err := dnsserver.SetDirectives(directives); err != nil {
		t.Fatal(err)
	}
	kl, k8s := slices.Index(directives, "kubelink"), slices.Index(directives, "kubernetes")
	if kl < 0 || k8s < 0 || kl > k8s {
		t.Errorf("kubelink at %d, kubernetes at %d: kubelink must come first", kl, k8s)
	}
	linked := caddy.ListPlugins()["others"]
	for _, d := range directives {
		if !slices.Contains(linked, "dns."+d) {
			t.Errorf("directive %s has no plugin linked (have %v)", d, linked)
		}
	}
}
