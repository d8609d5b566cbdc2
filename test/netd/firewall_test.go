package netd_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelink/kubelink/api/v1alpha1"
)

// TestFirewall proves that a link's ingress list is enforced by the
// receiving gateway in both tunnel modes (the original kubelink silently
// ignored it in bridge mode): B's KubeLink for A allows 100.64.2.0/25 but
// denies 100.64.2.20, so A's client reaches 100.64.2.10 only; 100.64.2.20
// (denied) and 100.64.2.200 (not allowed) stay dark. Lifting the list opens
// everything again.
func TestFirewall(t *testing.T) {
	for _, mode := range []string{"wireguard", "bridge"} {
		t.Run(mode, func(t *testing.T) { testFirewall(t, mode) })
	}
}

func testFirewall(t *testing.T, mode string) {
	l := newLab(t)
	ctx := context.Background()
	a, b := l.a, l.b
	for _, ip := range []string{"100.64.2.20", "100.64.2.200"} {
		run(t, "ip", "-n", b.host, "addr", "add", ip+"/32", "dev", "lo")
	}
	for _, addr := range []string{"100.64.2.10:8080", "100.64.2.20:8080", "100.64.2.200:8080"} {
		l.serveNamed(b.host, addr, addr)
	}
	a.apply(ctx, t, localLink(a))
	b.apply(ctx, t, localLink(b))
	ingress := []string{"100.64.2.0/25", "!100.64.2.20/32"}

	switch mode {
	case "wireguard":
		l.startNetd("a", a.gw, []string{"POD_NAME=gw-a"}, netdArgs(a, mode, 18180, "--secret", "default/kubelink", "--pod-cidr", "10.1.0.0/24")...)
		l.startNetd("b", b.gw, []string{"POD_NAME=gw-b"}, netdArgs(b, mode, 18180, "--secret", "default/kubelink")...)
		hasKey := func(k *v1alpha1.KubeLink) bool { return k.Status.PublicKey != "" }
		keyA := a.waitLink(ctx, t, "a", 30*time.Second, "publishing its public key", hasKey).Status.PublicKey
		keyB := b.waitLink(ctx, t, "b", 30*time.Second, "publishing its public key", hasKey).Status.PublicKey
		a.apply(ctx, t, foreignLink(b, b.inetIP, keyB))
		la := foreignLink(a, a.inetIP, keyA)
		la.Spec.Ingress = ingress
		b.apply(ctx, t, la)
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
				t.Fatal(err)
			}
		}
		a.apply(ctx, t, bridgeLink(b, "gw-b.example"))
		la := bridgeLink(a, "gw-a.example")
		la.Spec.Ingress = ingress
		b.apply(ctx, t, la)
		l.startNetd("a", a.gw, []string{"POD_NAME=gw-a"}, netdArgs(a, mode, 18180, "--secret", "default/kubelink-tls", "--pod-cidr", "10.1.0.0/24")...)
		l.startNetd("b", b.gw, []string{"POD_NAME=gw-b"}, netdArgs(b, mode, 18180, "--secret", "default/kubelink-tls")...)
	}
	a.waitLink(ctx, t, "b", 30*time.Second, "Up", stateIs(v1alpha1.StateUp))

	waitCurl(t, a.host, "http://100.64.2.10:8080/", "100.64.2.10:8080: you are 192.168.0.11", 15*time.Second)
	for _, denied := range []string{"http://100.64.2.20:8080/", "http://100.64.2.200:8080/"} {
		if out, err := curl(a.host, denied); err == nil {
			t.Errorf("%s mode: %s is outside A's ingress list but answered: %q", mode, denied, out)
		}
	}
	nft := run(t, "ip", "netns", "exec", b.gw, "nft", "list", "table", "ip", "kubelink")
	for _, want := range []string{"ct original ip daddr 100.64.2.20 drop", "ct original ip daddr 100.64.2.0/25 accept", "ct state established,related accept"} {
		if !strings.Contains(nft, want) {
			t.Errorf("%s mode: gateway B's table lacks %q:\n%s", mode, want, nft)
		}
	}

	// The list goes: everything is reachable again.
	la := b.link(ctx, t, "a")
	la.Spec.Ingress = nil
	b.apply(ctx, t, la)
	waitCurl(t, a.host, "http://100.64.2.20:8080/", "100.64.2.20:8080", 10*time.Second)
	waitCurl(t, a.host, "http://100.64.2.200:8080/", "100.64.2.200:8080", 10*time.Second)
}
