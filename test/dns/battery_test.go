package dns

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// linkStore is where the battery's KubeLinks live: the apiserver or a
// manifests directory.
type linkStore interface {
	// apply creates or replaces a KubeLink, status included.
	apply(t *testing.T, name, cidr, addr, state string)
	remove(t *testing.T, name string)
}

// linkYAML is a foreign KubeLink whose DNS is the remote CoreDNS on
// 127.0.0.1 (the port comes from the plugin's upstream-port).
func linkYAML(name, cidr, addr, state string) string {
	return fmt.Sprintf(`apiVersion: kubelink.mandelsoft.org/v1alpha1
kind: KubeLink
metadata:
  name: %s
spec:
  cidr: %s
  clusterAddress: %s
  endpoint: gw.%s.example.com:8777
  dns:
    dnsIP: 127.0.0.1
status:
  state: %q
  message: set by the test
`, name, cidr, addr, name, state)
}

const localLinkYAML = `apiVersion: kubelink.mandelsoft.org/v1alpha1
kind: KubeLink
metadata:
  name: kubelink1
spec:
  endpoint: LocalLink
  cidr: 100.64.0.0/20
  clusterAddress: 192.168.0.11/24
  dns:
    baseDomain: kubelink
`

// kubelinkCorefile is the Corefile of the CoreDNS under test.
func kubelinkCorefile(port, readyPort, remotePort int, source string) string {
	return fmt.Sprintf(`.:%d {
    bind 127.0.0.1
    ready 127.0.0.1:%d
    errors
    kubelink {
        %s
        local-dns 127.0.0.1
        upstream-port %d
    }
}
`, port, readyPort, source, remotePort)
}

// battery runs the contract against a running kubelink CoreDNS whose mesh
// holds kubelink1 (local) and kubelink2 (Up); serviceIP is web.demo's
// address in the remote cluster. change bounds how fast edits show.
func battery(t *testing.T, kl *coreDNS, store linkStore, serviceIP string, change time.Duration) {
	noLeak := func(out string) {
		t.Helper()
		if strings.Contains(strings.ToLower(out), "cluster.local") {
			t.Errorf("reply leaks the remote domain:\n%s", out)
		}
	}
	t.Run("cluster A and PTR", func(t *testing.T) {
		if out := kl.dig(t, "+short", "kubelink2.kubelink", "A"); strings.TrimSpace(out) != "192.168.0.12" {
			t.Errorf("kubelink2.kubelink A: %q", out)
		}
		if out := kl.dig(t, "+short", "-x", "192.168.0.12"); strings.TrimSpace(out) != "kubelink2.kubelink." {
			t.Errorf("PTR 192.168.0.12: %q", out)
		}
		out := kl.dig(t, "kubelink", "SOA")
		if !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, " aa") || !strings.Contains(out, "ns.dns.kubelink.") {
			t.Errorf("apex SOA:\n%s", out)
		}
	})
	t.Run("forwarded and rewritten", func(t *testing.T) {
		out := kl.dig(t, "Web.Demo.svc.kubelink2.kubelink", "A")
		if !strings.Contains(out, "Web.Demo.svc.kubelink2.kubelink.") || !strings.Contains(out, serviceIP) || !strings.Contains(out, "status: NOERROR") {
			t.Errorf("A through kubelink:\n%s", out)
		}
		noLeak(out)
		out = kl.dig(t, "_http._tcp.web.demo.svc.kubelink2.kubelink", "SRV")
		if !strings.Contains(out, "80 web.demo.svc.kubelink2.kubelink.") {
			t.Errorf("SRV target not rewritten:\n%s", out)
		}
		noLeak(out)
		out = kl.dig(t, "nosuch.demo.svc.kubelink2.kubelink", "A")
		if !strings.Contains(out, "status: NXDOMAIN") || !strings.Contains(out, "kubelink.\t") || !strings.Contains(out, "SOA") {
			t.Errorf("NXDOMAIN without the mesh SOA:\n%s", out)
		}
		noLeak(out)
		// The local cluster's names work the same way (local-dns).
		out = kl.dig(t, "+short", "web.demo.svc.kubelink1.kubelink", "A")
		if strings.TrimSpace(out) != serviceIP {
			t.Errorf("local cluster: %q", out)
		}
		out = kl.dig(t, "+tcp", "_http._tcp.web.demo.svc.kubelink2.kubelink", "SRV")
		if !strings.Contains(out, "80 web.demo.svc.kubelink2.kubelink.") {
			t.Errorf("SRV over TCP:\n%s", out)
		}
	})
	t.Run("create update delete", func(t *testing.T) {
		store.apply(t, "kubelink3", "100.64.32.0/20", "192.168.0.13/24", "Up")
		d := expectA(t, kl, change, "kubelink3.kubelink", "192.168.0.13")
		t.Logf("create visible after %v", d)
		store.apply(t, "kubelink3", "100.64.32.0/20", "192.168.0.23/24", "Up")
		d = expectA(t, kl, change, "kubelink3.kubelink", "192.168.0.23")
		t.Logf("update visible after %v", d)
		store.remove(t, "kubelink3")
		d = expectA(t, kl, change, "kubelink3.kubelink", "")
		t.Logf("delete visible after %v", d)
	})
	t.Run("link down fails fast", func(t *testing.T) {
		store.apply(t, "kubelink2", "100.64.16.0/20", "192.168.0.12/24", "Down")
		eventually(t, change, "SERVFAIL for a Down link", func() error {
			r, _, err := kl.query("web.demo.svc.kubelink2.kubelink", dns.TypeA)
			if err != nil {
				return err
			}
			if r.Rcode != dns.RcodeServerFailure {
				return fmt.Errorf("rcode %s", dns.RcodeToString[r.Rcode])
			}
			return nil
		})
		var worst time.Duration
		for i := 0; i < 5; i++ {
			start := time.Now()
			r, _, err := kl.query("web.demo.svc.kubelink2.kubelink", dns.TypeA)
			d := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			worst = max(worst, d)
			e := ede(r)
			if r.Rcode != dns.RcodeServerFailure || e == nil || e.InfoCode != dns.ExtendedErrorCodeNoReachableAuthority || !strings.Contains(e.ExtraText, "Down") {
				t.Errorf("Down link: rcode %s EDE %v", dns.RcodeToString[r.Rcode], e)
			}
		}
		if worst >= 50*time.Millisecond {
			t.Errorf("SERVFAIL for a Down link took %v, want < 50ms", worst)
		}
		t.Logf("SERVFAIL for a Down link: slowest of 5 in %v", worst)
		if out := kl.dig(t, "web.demo.svc.kubelink2.kubelink", "A"); !strings.Contains(out, "SERVFAIL") || !strings.Contains(out, "EDE: 22") {
			t.Errorf("dig shows no EDE 22:\n%s", out)
		}
		// Exactly one reply on a TCP stream: CoreDNS must not add its own
		// SERVFAIL after the plugin's.
		conn, err := dns.DialTimeout("tcp", kl.addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		q := new(dns.Msg)
		q.SetQuestion("web.demo.svc.kubelink2.kubelink.", dns.TypeA)
		if err := conn.WriteMsg(q); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		if r, err := conn.ReadMsg(); err != nil || r.Rcode != dns.RcodeServerFailure {
			t.Fatalf("TCP reply: %v %v", r, err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if r, err := conn.ReadMsg(); err == nil {
			t.Errorf("a second reply on the TCP stream: %v", r)
		}
		store.apply(t, "kubelink2", "100.64.16.0/20", "192.168.0.12/24", "Up")
		eventually(t, change, "forwarding again after Up", func() error {
			r, _, err := kl.query("web.demo.svc.kubelink2.kubelink", dns.TypeA)
			if err != nil {
				return err
			}
			if got := answerA(r); got != serviceIP {
				return fmt.Errorf("got %q rcode %s", got, dns.RcodeToString[r.Rcode])
			}
			return nil
		})
	})
}
