package dns

import (
	"os/exec"
	"strings"
	"testing"
)

// TestPluginsListed checks the custom build: kubelink is compiled in next
// to the plugins a kubelink deployment uses. (CoreDNS v1.15 prints the
// dns.* plugin names without the "dns." prefix.)
func TestPluginsListed(t *testing.T) {
	out, err := exec.Command(corednsBinary(t), "-plugins").CombinedOutput()
	if err != nil {
		t.Fatalf("coredns -plugins: %v\n%s", err, out)
	}
	have := map[string]bool{}
	for _, l := range strings.Fields(string(out)) {
		have[strings.TrimPrefix(l, "dns.")] = true
	}
	for _, p := range []string{"kubelink", "errors", "log", "health", "ready", "prometheus", "cache", "forward",
		"rewrite", "file", "hosts", "template", "kubernetes", "k8s_external", "loop", "reload", "loadbalance",
		"bind", "debug", "pprof", "any", "whoami"} {
		if !have[p] {
			t.Errorf("plugin %s missing from coredns -plugins:\n%s", p, out)
		}
	}
}
