package dns

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const remoteZone = `$ORIGIN cluster.local.
@                         30 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 30
@                         30 IN NS  ns.dns.cluster.local.
ns.dns                    30 IN A   127.0.0.1
web.demo.svc              30 IN A   10.0.0.50
_http._tcp.web.demo.svc   30 IN SRV 0 100 80 web.demo.svc.cluster.local.
`

// bigTXT is an RRset too large for a 1232-byte UDP reply.
func bigTXT() string {
	var b strings.Builder
	for i := 0; i < 30; i++ {
		fmt.Fprintf(&b, "big.demo.svc 30 IN TXT \"record-%02d-%s\"\n", i, strings.Repeat("x", 50))
	}
	return b.String()
}

// dirStore keeps the KubeLinks as files of a manifests directory; files
// are replaced atomically, as a ConfigMap volume does.
type dirStore struct{ dir string }

func (s dirStore) write(t *testing.T, name, content string) {
	t.Helper()
	tmp := filepath.Join(s.dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, name+".yaml")); err != nil {
		t.Fatal(err)
	}
}

func (s dirStore) apply(t *testing.T, name, cidr, addr, state string) {
	s.write(t, name, linkYAML(name, cidr, addr, state))
}

func (s dirStore) remove(t *testing.T, name string) {
	if err := os.Remove(filepath.Join(s.dir, name+".yaml")); err != nil {
		t.Fatal(err)
	}
}

// TestManifests runs the battery with the manifests source; the remote
// cluster DNS is a real CoreDNS serving cluster.local from a zone file.
func TestManifests(t *testing.T) {
	requireDig(t)
	remoteDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(remoteDir, "cluster.local.zone"), []byte(remoteZone+bigTXT()), 0o644); err != nil {
		t.Fatal(err)
	}
	remotePort, remoteReady := freePort(t), freePort(t)
	startCoreDNS(t, "remote", fmt.Sprintf(`cluster.local.:%d {
    bind 127.0.0.1
    ready 127.0.0.1:%d
    file %s
}
`, remotePort, remoteReady, filepath.Join(remoteDir, "cluster.local.zone")),
		fmt.Sprintf("127.0.0.1:%d", remotePort), fmt.Sprintf("127.0.0.1:%d", remoteReady))

	store := dirStore{dir: t.TempDir()}
	store.write(t, "kubelink1", localLinkYAML)
	store.apply(t, "kubelink2", "100.64.16.0/20", "192.168.0.12/24", "Up")
	port, ready := freePort(t), freePort(t)
	kl := startCoreDNS(t, "kubelink", kubelinkCorefile(port, ready, remotePort, "manifests "+store.dir),
		fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("127.0.0.1:%d", ready))
	battery(t, kl, store, "10.0.0.50", 2*time.Second)
	// KubeLinks, MeshServices and service mirrors from the same directory.
	servicesBattery(t, kl, objDir{store}, "10.0.0.50", 2*time.Second)

	// The remote's UDP reply is truncated: kubelink asks again over TCP,
	// and the client gets a correctly truncated UDP reply (TC set), then
	// everything over TCP.
	t.Run("truncation", func(t *testing.T) {
		out := kl.dig(t, "+bufsize=1232", "+ignore", "big.demo.svc.kubelink2.kubelink", "TXT")
		if !regexp.MustCompile(`flags:[a-z ]* tc[ ;]`).MatchString(out) {
			t.Errorf("no TC over UDP:\n%s", out)
		}
		out = kl.dig(t, "+bufsize=1232", "big.demo.svc.kubelink2.kubelink", "TXT")
		if n := strings.Count(out, "big.demo.svc.kubelink2.kubelink. 30 IN\tTXT"); n != 30 {
			t.Errorf("TCP retry of dig got %d of 30 records:\n%s", n, out)
		}
		if strings.Contains(out, "cluster.local") {
			t.Errorf("leak:\n%s", out)
		}
	})
}
