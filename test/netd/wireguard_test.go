package netd_test

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelink/kubelink/api/v1alpha1"
)

const keepalive = 2 * time.Second

// window is the documented Down-detection window (3 keepalives) plus the
// broker's one-second evaluation tick and slack for this busy machine.
const window = 3*keepalive + 3*time.Second

func localLink(c *cluster) *v1alpha1.KubeLink {
	return &v1alpha1.KubeLink{
		ObjectMeta: metav1.ObjectMeta{Name: c.name},
		Spec:       v1alpha1.KubeLinkSpec{ClusterAddress: c.linkCID, CIDR: c.svcCIDR, Endpoint: v1alpha1.EndpointLocalLink},
	}
}

func foreignLink(c *cluster, endpoint, publicKey string) *v1alpha1.KubeLink {
	return &v1alpha1.KubeLink{
		ObjectMeta: metav1.ObjectMeta{Name: c.name},
		Spec:       v1alpha1.KubeLinkSpec{ClusterAddress: c.linkCID, CIDR: c.svcCIDR, Endpoint: endpoint, PublicKey: publicKey},
	}
}

func netdArgs(c *cluster, mode string, port int, extra ...string) []string {
	return append([]string{"--mode", mode, "--kubeconfig", c.env.Kubeconfig, "--keepalive", keepalive.String(),
		"--server-port-http", strconv.Itoa(port)}, extra...)
}

// metric reads one sample from netd's /metrics inside ns.
func metric(t *testing.T, ns string, port int, name string) float64 {
	t.Helper()
	out, err := curl(ns, fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatalf("metrics: %v: %s", err, out)
	}
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` ([0-9.e+-]+)$`)
	m := re.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("metric %s not found in:\n%s", name, out)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// ourRoutes lists netd's routes (protocol 97) in a gateway namespace.
func ourRoutes(t *testing.T, ns string) []string {
	out := strings.TrimSpace(run(t, "ip", "-n", ns, "route", "show", "proto", "97"))
	if out == "" {
		return nil
	}
	return strings.Split(out, "\n")
}

func checkRoutes(t *testing.T, ns string, want ...string) {
	t.Helper()
	got := ourRoutes(t, ns)
	if len(got) != len(want) {
		t.Fatalf("routes in %s: got %d, want %d:\n%s", ns, len(got), len(want), strings.Join(got, "\n"))
	}
	for _, w := range want {
		n := 0
		for _, g := range got {
			if strings.HasPrefix(g, w+" ") {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("routes in %s: %s present %d times:\n%s", ns, w, n, strings.Join(got, "\n"))
		}
	}
}

func waitCurl(t *testing.T, ns, url, want string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var out string
	var err error
	for time.Now().Before(deadline) {
		if out, err = curl(ns, url); err == nil && strings.Contains(out, want) {
			return out
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("curl %s from %s: %v: %q (want %q)", url, ns, err, out, want)
	return ""
}

// TestWireGuard runs two gateways in wireguard mode (embedded userspace
// WireGuard; this kernel has no WireGuard module), each with its own
// apiserver: keys are generated into the secret and published, a client
// behind gateway A reaches a service IP behind gateway B (SNAT to A's link
// address), a killed gateway is detected as Down within the window, and
// restarts converge without duplicates.
func TestWireGuard(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	a, b := l.a, l.b
	l.serveHTTP(b.host, "100.64.2.10:8080")
	a.apply(ctx, t, localLink(a))
	b.apply(ctx, t, localLink(b))

	startA := func() *proc {
		return l.startNetd("a", a.gw, []string{"POD_NAME=gw-a"}, netdArgs(a, "wireguard", 18180, "--secret", "default/kubelink", "--pod-cidr", "10.1.0.0/24")...)
	}
	startB := func(name string, extra ...string) *proc {
		return l.startNetd(name, b.gw, []string{"POD_NAME=" + name}, netdArgs(b, "wireguard", 18180, append([]string{"--secret", "default/kubelink"}, extra...)...)...)
	}
	pa := startA()
	pb := startB("gw-b")

	hasKey := func(k *v1alpha1.KubeLink) bool { return k.Status.PublicKey != "" }
	keyA := a.waitLink(ctx, t, "a", 30*time.Second, "publishing its public key", hasKey).Status.PublicKey
	keyB := b.waitLink(ctx, t, "b", 30*time.Second, "publishing its public key", hasKey).Status.PublicKey
	sec, err := a.env.Client().CoreV1().Secrets("default").Get(ctx, "kubelink", metav1.GetOptions{})
	if err != nil || len(sec.Data["WireguardPrivateKey"]) == 0 {
		t.Fatalf("private key not stored in secret default/kubelink: %v", err)
	}

	a.apply(ctx, t, foreignLink(b, b.inetIP, keyB))
	b.apply(ctx, t, foreignLink(a, a.inetIP, keyA))
	a.waitLink(ctx, t, "b", 30*time.Second, "Up", stateIs(v1alpha1.StateUp))
	b.waitLink(ctx, t, "a", 30*time.Second, "Up", stateIs(v1alpha1.StateUp))
	if gw := a.link(ctx, t, "b").Status.Gateway; gw != "gw-a" {
		t.Errorf("status.gateway %q, want gw-a", gw)
	}

	out := waitCurl(t, a.host, "http://100.64.2.10:8080/", "hello from cluster b", 10*time.Second)
	if !strings.Contains(out, "you are 192.168.0.11:") {
		t.Errorf("the service saw %q; want the source NATed to A's link address 192.168.0.11", out)
	}
	checkRoutes(t, a.gw, "192.168.0.0/24", "100.64.2.0/24")
	checkRoutes(t, b.gw, "192.168.0.0/24", "100.64.1.0/24")
	nft := run(t, "ip", "netns", "exec", a.gw, "nft", "list", "table", "ip", "kubelink")
	if strings.Count(nft, "snat to 192.168.0.11") != 1 {
		t.Errorf("SNAT rules in gateway A:\n%s", nft)
	}
	// Node mode SNATs too (pod CIDRs repeat across clusters), but has no
	// MeshService DNAT.
	if out, err := exec(b.gw, "nft", "list", "table", "ip", "kubelink"); err != nil || strings.Count(out, "snat to 192.168.0.12") != 1 ||
		strings.Contains(out, "dnat") || !strings.Contains(out, "maxseg size set rt mtu") {
		t.Errorf("node-mode gateway B: want MSS clamping, SNAT and no DNAT: %v\n%s", err, out)
	}

	// Health, readiness and metrics.
	for _, p := range []string{"/healthz", "/readyz"} {
		if out, err := curl(a.gw, "http://127.0.0.1:18180"+p); err != nil || !strings.Contains(out, "ok") {
			t.Errorf("%s: %v %q", p, err, out)
		}
	}
	if v := metric(t, a.gw, 18180, `netd_links{state="Up"}`); v != 1 {
		t.Errorf("netd_links{state=Up} = %v, want 1", v)
	}
	if v := metric(t, a.gw, 18180, `netd_link_receive_bytes_total{link="b"}`); v <= 0 {
		t.Errorf("no received bytes for link b: %v", v)
	}
	// An unchanged reconcile writes nothing (the broker reconciles every
	// second).
	tw, nw := metric(t, a.gw, 18180, "netd_tunnel_config_writes"), metric(t, a.gw, 18180, "netd_nftables_writes")
	time.Sleep(3 * time.Second)
	if tw2, nw2 := metric(t, a.gw, 18180, "netd_tunnel_config_writes"), metric(t, a.gw, 18180, "netd_nftables_writes"); tw2 != tw || nw2 != nw {
		t.Errorf("steady state wrote configuration: tunnel %v→%v, nftables %v→%v", tw, tw2, nw, nw2)
	}
	rv := a.link(ctx, t, "b").ResourceVersion
	time.Sleep(2 * time.Second)
	if rv2 := a.link(ctx, t, "b").ResourceVersion; rv2 != rv {
		t.Errorf("status rewritten without a change (resourceVersion %s → %s)", rv, rv2)
	}

	// Kill gateway B: A's link goes Down within the window.
	start := time.Now()
	pb.kill(syscall.SIGKILL)
	a.waitLink(ctx, t, "b", window+2*time.Second, "Down", stateIs(v1alpha1.StateDown))
	t.Logf("MEASURED: link Down detected %.1fs after the peer gateway died (keepalive %s, documented window %s)",
		time.Since(start).Seconds(), keepalive, 3*keepalive)
	// Events are recorded asynchronously.
	deadline := time.Now().Add(10 * time.Second)
	for !hasEvent(a.events(ctx, t, "b"), v1alpha1.StateDown) {
		if time.Now().After(deadline) {
			t.Errorf("no Down event for link b")
			break
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Restart B: Up again, traffic resumes.
	pb = startB("gw-b")
	a.waitLink(ctx, t, "b", 30*time.Second, "Up again", stateIs(v1alpha1.StateUp))
	waitCurl(t, a.host, "http://100.64.2.10:8080/", "hello from cluster b", 15*time.Second)

	// Restart A twice (gracefully, then killed): it converges to the same
	// routes, rules and peers, without duplicates.
	pa.kill(syscall.SIGTERM)
	if out, err := exec(a.gw, "nft", "list", "table", "ip", "kubelink"); err == nil {
		t.Errorf("graceful stop left the nftables table:\n%s", out)
	}
	pa = startA()
	a.waitLink(ctx, t, "b", 30*time.Second, "Up after restart", stateIs(v1alpha1.StateUp))
	pa.kill(syscall.SIGKILL)
	pa = startA()
	waitCurl(t, a.host, "http://100.64.2.10:8080/", "hello from cluster b", 20*time.Second)
	checkRoutes(t, a.gw, "192.168.0.0/24", "100.64.2.0/24")
	if nft := run(t, "ip", "netns", "exec", a.gw, "nft", "list", "table", "ip", "kubelink"); strings.Count(nft, "snat to") != 1 {
		t.Errorf("SNAT rules after restart:\n%s", nft)
	}
	a.waitLink(ctx, t, "b", 30*time.Second, "Up after the second restart", stateIs(v1alpha1.StateUp))
	time.Sleep(1500 * time.Millisecond)
	if v := metric(t, a.gw, 18180, `netd_links{state="Up"}`); v != 1 {
		t.Errorf("links Up after restart = %v, want 1 (one peer)", v)
	}

	// Gateway HA: two replicas of B with a lease; kill the leader, the
	// standby takes over.
	pb.kill(syscall.SIGTERM)
	lease := []string{"--lease-name", "kubelink-broker", "--lease-namespace", "default", "--lease-duration", "4s"}
	b1 := startB("gw-b-1", append(lease, "--server-port-http", "18181")...)
	b.waitLink(ctx, t, "b", 30*time.Second, "served by gw-b-1", func(k *v1alpha1.KubeLink) bool { return k.Status.Gateway == "gw-b-1" })
	b2 := startB("gw-b-2", append(lease, "--server-port-http", "18182")...)
	a.waitLink(ctx, t, "b", 30*time.Second, "Up with gw-b-1", stateIs(v1alpha1.StateUp))
	time.Sleep(2 * time.Second)
	if gw := b.link(ctx, t, "b").Status.Gateway; gw != "gw-b-1" {
		t.Fatalf("the standby took over while the leader lives: gateway %q", gw)
	}
	start = time.Now()
	b1.kill(syscall.SIGKILL)
	b.waitLink(ctx, t, "a", 30*time.Second, "served by gw-b-2", func(k *v1alpha1.KubeLink) bool { return k.Status.Gateway == "gw-b-2" })
	takeover := time.Since(start)
	waitCurl(t, a.host, "http://100.64.2.10:8080/", "hello from cluster b", 20*time.Second)
	t.Logf("MEASURED: standby took over %.1fs after the leader died, traffic flowed again after %.1fs (lease duration 4s)",
		takeover.Seconds(), time.Since(start).Seconds())
	_ = b2
}

func hasEvent(evs []corev1Event, reason string) bool {
	for _, e := range evs {
		if e.Reason == reason {
			return true
		}
	}
	return false
}
