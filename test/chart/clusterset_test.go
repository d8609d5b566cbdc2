package chart_test

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kubelink/kubelink/test/testenv"
)

// dnsClusterRules are the kubelink DNS ClusterRole's rules; with
// dns.clusterset.enabled (the default) also dnsClustersetRules, the RBAC
// test/dns runs the plugin's clusterset zone with (clustersetRBAC).
var (
	dnsClusterRules = []rule{
		{"kubelink.mandelsoft.org", "kubelinks", "", "get list watch"},
		{"kubelink.mandelsoft.org", "meshservices", "", "get list watch"},
	}
	dnsClustersetRules = []rule{
		{"multicluster.x-k8s.io", "serviceimports", "", "list watch"},
		{"discovery.k8s.io", "endpointslices", "", "list watch"},
	}
)

// TestRenderClusterset: dns.clusterset.enabled (default true) puts the
// plugin's clusterset option in the kubelink DNS Corefile, clusterset.local
// in the cluster DNS server block (and the forward's exceptions), and
// list/watch of ServiceImports and EndpointSlices cluster-wide in the DNS
// ClusterRole; false takes all of it out.
func TestRenderClusterset(t *testing.T) {
	c := loadChart(t)
	base := readValues(t, filepath.Join(testenv.RepoRoot(), "examples", "kubelink1", "values.yaml"))
	for _, tc := range []struct {
		name, values string
		on           bool
	}{
		{"default", `{}`, true},
		{"enabled", `dns: {clusterset: {enabled: true}}`, true},
		{"disabled", `dns: {clusterset: {enabled: false}}`, false},
		{"disabled, no reverse zone", `dns: {clusterset: {enabled: false}, clusterDNSIntegration: {reverseZone: false}}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, notes := render(t, c, merge(base, parseValues(t, tc.values)))
			corefile := str(t, find(t, objs, "ConfigMap", "kubelink-dns"), "data", "Corefile")
			if got := strings.Contains(corefile, "        namespace kubelink\n        clusterset\n        ttl 5\n"); got != tc.on {
				t.Errorf("Corefile clusterset option %v, want %v:\n%s", got, tc.on, corefile)
			}
			if got := strings.Contains(corefile, "0.168.192.in-addr.arpa clusterset.local\n"); got != tc.on {
				t.Errorf("forward except clusterset.local %v, want %v:\n%s", got, tc.on, corefile)
			}
			server := str(t, find(t, objs, "ConfigMap", "coredns-custom"), "data", "kubelink.server")
			first := strings.SplitN(server, "\n", 2)[0]
			if got := strings.HasSuffix(first, " clusterset.local:53 {"); got != tc.on {
				t.Errorf("cluster DNS server block zones %q: clusterset.local %v, want %v", first, got, tc.on)
			}
			if got := strings.Contains(notes, "clusterset.local:53 {") && strings.Contains(notes, "dns-version.clusterset.local"); got != tc.on {
				t.Errorf("NOTES.txt clusterset.local %v, want %v:\n%s", got, tc.on, notes)
			}
			want := append([]rule(nil), dnsClusterRules...)
			if tc.on {
				want = append(want, dnsClustersetRules...)
			}
			if got, w := ruleSet(t, find(t, objs, "ClusterRole", "kubelink-dns")), tuples(want...); !reflect.DeepEqual(got, w) {
				t.Errorf("ClusterRole kubelink-dns rules\n got %v\nwant %v", got, w)
			}
		})
	}

	t.Run("schema", func(t *testing.T) {
		for values, key := range map[string]string{
			`dns: {clusterset: {enabled: "yes"}}`:  "/dns/clusterset/enabled",
			`dns: {clusterset: {zone: mcs.local}}`: "/dns/clusterset",
		} {
			_, _, err := renderErr(c, merge(base, parseValues(t, values)))
			if err == nil || !strings.Contains(err.Error(), key) {
				t.Errorf("%s: %v, want an error naming %s", values, err, key)
			}
		}
	})
}
