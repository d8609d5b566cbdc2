package chart_test

import (
	"path/filepath"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chartutil"

	"github.com/kubelink/kubelink/test/testenv"
)

// TestSchemaRejects feeds bad values (each an overlay on examples/kubelink1)
// through a real install (client-only) and checks that the error names the
// offending key.
func TestSchemaRejects(t *testing.T) {
	c := loadChart(t)
	base := readValues(t, filepath.Join(testenv.RepoRoot(), "examples", "kubelink1", "values.yaml"))
	cases := []struct {
		name, values string
		// want: substrings of the error, the first one the key path.
		want []string
		// replace: use values alone instead of overlaying them on the example.
		replace bool
	}{
		{"service CIDR without prefix", `cluster: {serviceCIDR: 100.64.0.0}`, []string{"/cluster/serviceCIDR", "does not match pattern"}, false},
		{"cluster name with underscore", `cluster: {name: Kubelink_1}`, []string{"/cluster/name"}, false},
		{"cluster name with mesh separator", `cluster: {name: mesh--c1}`, []string{"/cluster/name"}, false},
		{"link address octet out of range", `mesh: {linkAddress: 192.168.0.300/24}`, []string{"/mesh/linkAddress"}, false},
		{"unknown broker mode", `broker: {mode: ipsec}`, []string{"/broker/mode", "wireguard"}, false},
		{"unknown top-level key", `clustr: {name: x}`, []string{"clustr"}, false},
		{"unknown nested key", `broker: {replica: 3}`, []string{"/broker", "replica"}, false},
		{"DNS service IP malformed", `dns: {serviceIP: 100.64.0.x}`, []string{"/dns/serviceIP"}, false},
		{"WireGuard key malformed", `links: [{name: kubelink2, clusterAddress: 192.168.0.12/24, publicKey: abc}]`, []string{"/links/0/publicKey"}, false},
		{"endpoint port too long", `links: [{name: kubelink2, clusterAddress: 192.168.0.12/24, endpoint: "gw:99999999"}]`, []string{"/links/0/endpoint"}, false},
		{"link without clusterAddress", `links: [{name: kubelink2, cidr: 100.64.16.0/20}]`, []string{"/links/0", "clusterAddress"}, false},
		{"cluster domain with empty label", `cluster: {domain: "cluster..local"}`, []string{"/cluster/domain"}, false},
		{"router ipip enum", `router: {ipip: "yes"}`, []string{"/router/ipip", "configure"}, false},
		{"vxlan port out of range", `router: {vxlan: {enabled: true, port: 0}}`, []string{"/router/vxlan/port"}, false},
		{"vxlan VNI beyond 24 bits", `router: {vxlan: {vni: 16777216}}`, []string{"/router/vxlan/vni"}, false},
		{"unknown vxlan key", `router: {vxlan: {remote: 10.0.0.1}}`, []string{"/router/vxlan", "remote"}, false},
		{"broker service type enum", `broker: {service: {type: External}}`, []string{"/broker/service/type"}, false},
		{"ttl out of range", `dns: {ttl: 7200}`, []string{"/dns/ttl"}, false},
		{"ingress prefix too long", `mesh: {ingress: ["10.0.0.0/33"]}`, []string{"/mesh/ingress/0"}, false},
		{"resource quantity malformed", `dns: {resources: {requests: {cpu: lots}}}`, []string{"/dns/resources/requests/cpu"}, false},
		{"toleration operator enum", `router: {tolerations: [{operator: Maybe}]}`, []string{"/router/tolerations/0/operator"}, false},
		{"missing cluster name", `{cluster: {serviceCIDR: 100.64.0.0/20}, mesh: {linkAddress: 192.168.0.11/24}}`, []string{"/cluster", "name"}, true},
		{"missing link address", `{cluster: {name: c1, serviceCIDR: 100.64.0.0/20}}`, []string{"/mesh", "linkAddress"}, true},
		// Rules the schema cannot express are checked by the templates, with
		// the same kind of message.
		{"bridge without a secret", `broker: {mode: bridge}`, []string{"broker.mode bridge", "broker.secretName"}, false},
		{"pod mode without pod CIDR", `cluster: {podCIDR: ""}`, []string{"cluster.podCIDR"}, false},
		{"vxlan with ipip", `router: {ipip: configure, vxlan: {enabled: true}}`, []string{"router.vxlan.enabled", "router.ipip=configure", "mutually exclusive"}, false},
		{"duplicate link", `links: [{name: kubelink2, clusterAddress: 192.168.0.12/24}, {name: kubelink2, clusterAddress: 192.168.0.13/24}]`, []string{"links[1].name"}, false},
		{"cert-manager without issuer", `broker: {mode: bridge, certManager: {enabled: true, dnsNames: [gw.example.com]}}`, []string{"broker.certManager.issuerRef.name"}, false},
		{"IPv6 service CIDR without explicit addresses", `{cluster: {name: c1, serviceCIDR: "fd00:10::/108"}, mesh: {linkAddress: 192.168.0.11/24}, dns: {serviceIP: "fd00:10::b"}}`, []string{"cluster.dnsIP"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			vals := parseValues(t, tc.values)
			if !tc.replace {
				vals = merge(base, vals)
			}
			_, _, err := renderErr(c, vals)
			if err == nil {
				t.Fatalf("values accepted:\n%s", tc.values)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
			t.Logf("rejected: %v", err)
		})
	}
}

// TestSchemaAcceptsExamples validates every example directly against the
// schema (the same check install and lint run).
func TestSchemaAcceptsExamples(t *testing.T) {
	c := loadChart(t)
	for _, f := range exampleValues(t) {
		vals, err := chartutil.ToRenderValues(c, readValues(t, f), chartutil.ReleaseOptions{Name: releaseName, Namespace: releaseNS}, nil)
		if err != nil {
			t.Fatalf("%s: %v", rel(f), err)
		}
		if err := chartutil.ValidateAgainstSchema(c, vals["Values"].(chartutil.Values)); err != nil {
			t.Errorf("%s: %v", rel(f), err)
		}
	}
}

// TestLint runs `helm lint --strict` (the SDK's lint action) with every
// example values file.
func TestLint(t *testing.T) {
	for _, f := range exampleValues(t) {
		l := action.NewLint()
		l.Strict = true
		l.Namespace = releaseNS
		kv := kubeVersion
		l.KubeVersion = &kv
		res := l.Run([]string{chartDir()}, readValues(t, f))
		for _, m := range res.Messages {
			t.Logf("%s: %s", rel(f), m)
		}
		if len(res.Errors) > 0 || res.TotalChartsLinted != 1 {
			t.Errorf("helm lint --strict -f %s: %d charts linted, errors: %v", rel(f), res.TotalChartsLinted, res.Errors)
		}
	}
}
