package netd_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelink/kubelink/api/v1alpha1"
	knetns "github.com/kubelink/kubelink/test/netns"
)

// TestSNATNodeMode is the regression test of issue #11: a pod behind a
// NODE-MODE gateway (no --pod-cidr; the chart's default) reaches a service
// IP of the other cluster, over WireGuard and over the TLS bridge. Pod
// CIDRs repeat across clusters and the peer accepts only the link address
// and service CIDR, so the pod's source must leave the tunnel as the link
// address. The test checks, in the lab of lab_test.go (hostA is the pod,
// 10.1.0.2 in the pod CIDR 10.1.0.0/24, default route via gateway A):
//
//   - the far end sees the link address 192.168.0.11 and the reply reaches
//     the pod (a full TCP exchange, reverse-translated by conntrack);
//   - the pod's traffic to a non-mesh destination keeps the pod IP;
//   - a member relayed through gateway A (its traffic arrives with its own
//     link address 192.168.0.13, which gateway B accepts from A because
//     B's KubeLink for it names A as gatewayLink) keeps that address;
//   - with a CNI-style srcnat chain (priority 100) that SNATs all pod
//     egress to the node IP, mesh-bound connections still get the link
//     address (netd's chain runs first, at srcnat-10) while other
//     destinations get the CNI's translation;
//   - a new link does not rewrite the table (one rule for the mesh).
func TestSNATNodeMode(t *testing.T) {
	for _, mode := range []string{"wireguard", "bridge"} {
		t.Run(mode, func(t *testing.T) { testSNATNodeMode(t, mode) })
	}
}

func testSNATNodeMode(t *testing.T, mode string) {
	began := time.Now()
	l := newLab(t)
	ctx := context.Background()
	a, b := l.a, l.b
	// Both gateways stand for nodes, which forward. /proc/sys/net belongs
	// to the namespace of the thread that opens it.
	for _, ns := range []string{a.gw, b.gw} {
		if err := knetns.Do(ns, func() error { return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644) }); err != nil {
			t.Fatalf("enabling forwarding in %s: %v", ns, err)
		}
		if got := strings.TrimSpace(run(t, "ip", "netns", "exec", ns, "cat", "/proc/sys/net/ipv4/ip_forward")); got != "1" {
			t.Fatalf("forwarding in %s: %s", ns, got)
		}
	}
	l.serveHTTP(b.host, "100.64.2.10:8080")

	// A non-mesh destination beside gateway A.
	other := l.netns("other")
	l.veth(a.gw, "oth", "10.8.0.1/24", other, "eth0", "10.8.0.2/24")
	run(t, "ip", "-n", other, "route", "add", "default", "via", "10.8.0.1")
	l.serveHTTP(other, "10.8.0.2:8080")

	// A member relayed by gateway A: in a cluster its packets would arrive
	// through a second tunnel device (a sibling bridge broker); a veth
	// carrying packets from its link address is the same to gateway A's
	// SNAT chain, which matches only the outgoing device and the source.
	relayed := l.netns("c")
	l.veth(a.gw, "relc", "10.9.0.1/24", relayed, "eth0", "10.9.0.2/24")
	run(t, "ip", "-n", relayed, "addr", "add", "192.168.0.13/32", "dev", "lo")
	run(t, "ip", "-n", relayed, "route", "add", "default", "via", "10.9.0.1", "src", "192.168.0.13")
	run(t, "ip", "-n", a.gw, "route", "add", "192.168.0.13/32", "via", "10.9.0.2")
	b.apply(ctx, t, &v1alpha1.KubeLink{
		ObjectMeta: metav1.ObjectMeta{Name: "c"},
		Spec:       v1alpha1.KubeLinkSpec{ClusterAddress: "192.168.0.13/24", CIDR: "100.64.3.0/24", GatewayLink: "a"},
	})

	a.apply(ctx, t, localLink(a))
	b.apply(ctx, t, localLink(b))
	switch mode {
	case "wireguard":
		startNodeMode(l, a, mode, "default/kubelink")
		startNodeMode(l, b, mode, "default/kubelink")
		hasKey := func(k *v1alpha1.KubeLink) bool { return k.Status.PublicKey != "" }
		keyA := a.waitLink(ctx, t, "a", 30*time.Second, "publishing its public key", hasKey).Status.PublicKey
		keyB := b.waitLink(ctx, t, "b", 30*time.Second, "publishing its public key", hasKey).Status.PublicKey
		a.apply(ctx, t, foreignLink(b, b.inetIP, keyB))
		b.apply(ctx, t, foreignLink(a, a.inetIP, keyA))
	case "bridge":
		l.hosts(a.gw, "172.31.0.2 gw-b.example")
		l.hosts(b.gw, "172.31.0.1 gw-a.example")
		ca := newCA(t)
		for _, c := range []*cluster{a, b} {
			crt, key := ca.issue(t, "gw-"+c.name+".example")
			if _, err := c.env.Client().CoreV1().Secrets("default").Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: "kubelink-tls"}, Type: corev1.SecretTypeTLS,
				Data: map[string][]byte{"tls.crt": crt, "tls.key": key, "ca.crt": ca.pem},
			}, metav1.CreateOptions{}); err != nil {
				t.Fatalf("creating the TLS secret of cluster %s: %v", c.name, err)
			}
		}
		a.apply(ctx, t, bridgeLink(b, "gw-b.example"))
		b.apply(ctx, t, bridgeLink(a, "gw-a.example"))
		startNodeMode(l, a, mode, "default/kubelink-tls")
		startNodeMode(l, b, mode, "default/kubelink-tls")
	}
	a.waitLink(ctx, t, "b", 30*time.Second, "Up", stateIs(v1alpha1.StateUp))
	b.waitLink(ctx, t, "a", 30*time.Second, "Up", stateIs(v1alpha1.StateUp))
	up := time.Since(began)

	const svc = "http://100.64.2.10:8080/"
	seen := func(ns, url, want string) {
		t.Helper()
		out := waitCurl(t, ns, url, "hello from cluster b", 15*time.Second)
		if !strings.Contains(out, "you are "+want+":") {
			t.Errorf("%s from %s: the far end saw %q, want %s", url, ns, strings.TrimSpace(out), want)
		}
	}
	// The pod: SNATed to the link address, and the answer came back to
	// the pod IP.
	seen(a.host, svc, "192.168.0.11")
	// The gateway node itself: its route's source is the link address.
	seen(a.gw, svc, "192.168.0.11")
	// Not mesh-bound: untouched.
	seen(a.host, "http://10.8.0.2:8080/", "10.1.0.2")
	// Relayed: the member's own link address stays.
	seen(relayed, svc, "192.168.0.13")

	nft := run(t, "ip", "netns", "exec", a.gw, "nft", "list", "table", "ip", "kubelink")
	for _, want := range []string{
		"type nat hook postrouting priority srcnat - 10;",
		`oifname "kubelink" ip saddr != 192.168.0.0/24 snat to 192.168.0.11`,
	} {
		if !strings.Contains(nft, want) {
			t.Errorf("gateway A's table lacks %q:\n%s", want, nft)
		}
	}
	if strings.Count(nft, "snat to") != 1 || strings.Contains(nft, "dnat") {
		t.Errorf("node mode: want exactly one SNAT rule and no MeshService DNAT:\n%s", nft)
	}

	// A CNI's masquerade for pod egress at srcnat (100). It SNATs to the
	// node's internet address rather than masquerading, so that it shows:
	// were it to take a mesh-bound connection, the far end would see
	// 172.31.0.1 (or, as the peer drops that source, nothing at all).
	run(t, "ip", "netns", "exec", a.gw, "nft", "add table ip kl-cni")
	run(t, "ip", "netns", "exec", a.gw, "nft", "add chain ip kl-cni postrouting { type nat hook postrouting priority srcnat ; }")
	run(t, "ip", "netns", "exec", a.gw, "nft", "add rule ip kl-cni postrouting ip saddr 10.1.0.0/24 ip daddr != 10.1.0.0/24 snat to 172.31.0.1")
	seen(a.host, svc, "192.168.0.11")
	seen(a.host, "http://10.8.0.2:8080/", "172.31.0.1")
	seen(relayed, svc, "192.168.0.13")
	if got := run(t, "ip", "netns", "exec", a.gw, "nft", "list", "table", "ip", "kubelink"); got != nft {
		t.Errorf("netd rewrote its table beside the CNI's:\n%s", got)
	}

	// One rule for the mesh: a new link changes routes, not the table.
	writes := metric(t, a.gw, 18180, "netd_nftables_writes")
	d := &v1alpha1.KubeLink{
		ObjectMeta: metav1.ObjectMeta{Name: "d"},
		// An endpoint on the lab's internet that nobody answers.
		Spec: v1alpha1.KubeLinkSpec{ClusterAddress: "192.168.0.14/24", CIDR: "100.64.4.0/24", Endpoint: "172.31.0.9"},
	}
	if mode == "wireguard" {
		d.Spec.PublicKey = publicKey(t)
	}
	a.apply(ctx, t, d)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(strings.Join(ourRoutes(t, a.gw), "\n"), "100.64.4.0/24 ") {
		if time.Now().After(deadline) {
			t.Fatalf("gateway A did not route link d's CIDR:\n%s", strings.Join(ourRoutes(t, a.gw), "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond) // a reconcile or two more
	if w := metric(t, a.gw, 18180, "netd_nftables_writes"); w != writes {
		t.Errorf("a new link rewrote the nftables table (%v → %v writes)", writes, w)
	}
	t.Logf("MEASURED: %s: links Up %.1fs after the lab started, checks done after %.1fs", mode, up.Seconds(), time.Since(began).Seconds())
}

// startNodeMode starts a node-mode broker (no --pod-cidr) with its key or
// certificate secret in c's gateway.
func startNodeMode(l *lab, c *cluster, mode, secret string) *proc {
	return l.startNetd(c.name, c.gw, []string{"POD_NAME=gw-" + c.name}, netdArgs(c, mode, 18180, "--secret", secret)...)
}
