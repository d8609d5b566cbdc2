package kubelink

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coredns/caddy"
)

func TestParse(t *testing.T) {
	good := `kubelink {
		manifests /tmp/x
		mesh-domain Mesh.Example
		cluster-name home
		link-address 192.168.0.11/24
		service-cidr 100.64.0.0/20
		meshdns-service-ip 192.168.0.100
		cluster-domain corp.local
		local-dns 100.64.0.10
		ttl 30
		upstream-port 5353
		namespace kubelink-system
		dns-propagation kubernetes
		fallthrough kubelink.
	}`
	k, cfg, err := parse(caddy.NewTestController("dns", good))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if cfg.manifests != "/tmp/x" || cfg.opts.Domain != "Mesh.Example" || cfg.opts.ClusterName != "home" ||
		cfg.opts.LinkAddress.String() != "192.168.0.11/24" || cfg.opts.ServiceCIDR.String() != "100.64.0.0/20" ||
		cfg.opts.GlobalDNS.String() != "192.168.0.100" || cfg.opts.ClusterDomain != "corp.local" ||
		cfg.opts.LocalDNS.String() != "100.64.0.10" || cfg.ttl != 30 || cfg.upstreamPort != "5353" ||
		cfg.namespace != "kubelink-system" || cfg.propagation != "kubernetes" ||
		!k.Fall.Through("x.kubelink.") || k.Fall.Through("x.other.") {
		t.Errorf("parsed %+v fall %+v", cfg, k.Fall)
	}
	_, cfg, err = parse(caddy.NewTestController("dns", "kubelink {\n kubeconfig /k ctx\n}"))
	if err != nil || cfg.kubeconfig != "/k" || cfg.kubeContext != "ctx" || cfg.ttl != 5 || cfg.upstreamPort != "53" ||
		cfg.namespace != "" || cfg.propagation != "" {
		t.Errorf("kubeconfig: %+v %v", cfg, err)
	}

	for _, bad := range []struct{ in, want string }{
		{"kubelink extra", "Wrong argument count"},
		{"kubelink {\n ttl 3601\n}", "ttl"},
		{"kubelink {\n ttl x\n}", "ttl"},
		{"kubelink {\n link-address 192.168.0.11\n}", "link-address"},
		{"kubelink {\n meshdns-service-ip nope\n}", "not an IP"},
		{"kubelink {\n cluster-name a.b\n}", "single DNS label"},
		{"kubelink {\n mesh-domain -bad-\n}", "not a DNS name"},
		{"kubelink {\n upstream-port 0\n}", "upstream-port"},
		{"kubelink {\n bogus 1\n}", "unknown property"},
		{"kubelink {\n manifests\n}", "Wrong argument count"},
		{"kubelink {\n manifests /a\n kubeconfig /b\n}", "exclude"},
		{"kubelink\nkubelink", "once"},
		{"kubelink {\n namespace Bad_NS\n}", "namespace"},
		{"kubelink {\n namespace\n}", "Wrong argument count"},
		{"kubelink {\n dns-propagation forward\n}", "dns-propagation must be auto, kubernetes, dns or none"},
		{"kubelink {\n dns-propagation dns kubernetes\n}", "Wrong argument count"},
	} {
		if _, _, err := parse(caddy.NewTestController("dns", bad.in)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: err %v, want %q", bad.in, err, bad.want)
		}
	}
}

func TestPodNamespace(t *testing.T) {
	saved := serviceAccountNamespace
	t.Cleanup(func() { serviceAccountNamespace = saved })
	serviceAccountNamespace = filepath.Join(t.TempDir(), "namespace")
	t.Setenv("POD_NAMESPACE", "")
	if got := podNamespace(); got != "default" {
		t.Errorf("nothing known: %q, want default", got)
	}
	if err := os.WriteFile(serviceAccountNamespace, []byte("kubelink-system\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := podNamespace(); got != "kubelink-system" {
		t.Errorf("service account: %q", got)
	}
	t.Setenv("POD_NAMESPACE", "from-env")
	if got := podNamespace(); got != "from-env" {
		t.Errorf("POD_NAMESPACE: %q", got)
	}
}
