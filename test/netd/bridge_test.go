package netd_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/test/testenv"
)

// testCA issues the gateways' bridge certificates.
type testCA struct {
	*testenv.CA
	pem []byte
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	ca, err := testenv.NewCA("kubelink test CA")
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{CA: ca, pem: ca.PEM()}
}

// issue returns a certificate for a gateway name, usable as client and
// server.
func (ca *testCA) issue(t *testing.T, name string) (certPEM, keyPEM []byte) {
	t.Helper()
	c, k, err := ca.Gateway(name)
	if err != nil {
		t.Fatal(err)
	}
	return c, k
}

// hosts gives a network namespace its own /etc/hosts (ip netns exec binds
// /etc/netns/NAME/hosts over /etc/hosts).
func (l *lab) hosts(ns string, lines ...string) {
	dir := filepath.Join("/etc/netns", ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { _ = os.RemoveAll(dir) })
	content := "127.0.0.1 localhost\n" + strings.Join(lines, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "hosts"), []byte(content), 0o644); err != nil {
		l.t.Fatal(err)
	}
}

// dialIn opens a TCP connection from inside a network namespace.
func dialIn(t *testing.T, ns, addr string) net.Conn {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		t.Fatal(err)
	}
	c, derr := net.DialTimeout("tcp", addr, 3*time.Second)
	if err := netns.Set(orig); err != nil {
		// The thread is in the wrong namespace: keep it locked so the
		// runtime discards it.
		runtime.LockOSThread()
		t.Fatal(err)
	}
	if derr != nil {
		t.Fatal(derr)
	}
	return c
}

func bridgeLink(c *cluster, host string) *v1alpha1.KubeLink {
	return &v1alpha1.KubeLink{
		ObjectMeta: metav1.ObjectMeta{Name: c.name},
		Spec:       v1alpha1.KubeLinkSpec{ClusterAddress: c.linkCID, CIDR: c.svcCIDR, Endpoint: host},
	}
}

// TestBridge runs two gateways in bridge mode: mutual TLS with names
// checked against the KubeLink endpoints, traffic from a client behind A to
// a service IP behind B, DNS advertisement, rejection of a peer whose
// certificate names another host and of garbage, Idle detection of a dead
// peer, reconnect, and auto-connect.
func TestBridge(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	a, b := l.a, l.b
	l.serveHTTP(b.host, "100.64.2.10:8080")
	l.hosts(a.gw, "172.31.0.2 gw-b.example")
	l.hosts(b.gw, "172.31.0.1 gw-a.example", "172.31.0.1 gw-wrong.example")
	ca := newCA(t)
	for _, c := range []*cluster{a, b} {
		crt, key := ca.issue(t, "gw-"+c.name+".example")
		_, err := c.env.Client().CoreV1().Secrets("default").Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "kubelink-tls"}, Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{"tls.crt": crt, "tls.key": key, "ca.crt": ca.pem},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c.apply(ctx, t, localLink(c))
	}
	a.apply(ctx, t, bridgeLink(b, "gw-b.example"))
	b.apply(ctx, t, bridgeLink(a, "gw-a.example"))

	startA := func(extra ...string) *proc {
		return l.startNetd("a", a.gw, []string{"POD_NAME=gw-a"}, netdArgs(a, "bridge", 18180,
			append([]string{"--secret", "default/kubelink-tls", "--pod-cidr", "10.1.0.0/24"}, extra...)...)...)
	}
	// B advertises API access: tokens of its ServiceAccount reader.
	if _, err := b.env.Client().CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "reader"}},
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	startB := func() *proc {
		return l.startNetd("b", b.gw, []string{"POD_NAME=gw-b", "POD_NAMESPACE=default"}, netdArgs(b, "bridge", 18180,
			"--secret", "default/kubelink-tls", "--dns-service-ip", "100.64.2.53", "--cluster-domain", "cluster.b", "--dns-advertisement",
			"--service-account", "reader")...)
	}
	pa := startA()
	pb := startB()
	a.waitLink(ctx, t, "b", 30*time.Second, "Up", stateIs(v1alpha1.StateUp))
	b.waitLink(ctx, t, "a", 30*time.Second, "Up", stateIs(v1alpha1.StateUp))
	out := waitCurl(t, a.host, "http://100.64.2.10:8080/", "hello from cluster b", 10*time.Second)
	if !strings.Contains(out, "you are 192.168.0.11:") {
		t.Errorf("the service saw %q; want the source NATed to 192.168.0.11", out)
	}
	checkRoutes(t, a.gw, "192.168.0.0/24", "100.64.2.0/24")

	// DNS advertisement, as in the original: B advertises
	// (--dns-advertisement, outbound), A updates its link b from B's hello
	// without the flag (the inbound update is always on). A does not
	// advertise, so B's link a keeps its spec.dns.
	a.waitLink(ctx, t, "b", 10*time.Second, "updated from B's DNS advertisement", func(k *v1alpha1.KubeLink) bool {
		return k.Spec.DNS != nil && k.Spec.DNS.DNSIP == "100.64.2.53" && k.Spec.DNS.BaseDomain == "cluster.b"
	})
	if k := b.link(ctx, t, "a"); k.Spec.DNS != nil {
		t.Errorf("B's link a got spec.dns %+v, but A does not advertise", *k.Spec.DNS)
	}

	// API access advertisement, as in the original's --service-account:
	// B's hello carries a token of its ServiceAccount reader and its API
	// server's CA; A stores them in the Secret b-apiaccess and names it in
	// its link b's spec.apiAccess. The token authenticates at B's API
	// server as that ServiceAccount.
	a.waitLink(ctx, t, "b", 10*time.Second, "spec.apiAccess from B's advertisement", func(k *v1alpha1.KubeLink) bool {
		return k.Spec.APIAccess != nil && k.Spec.APIAccess.Name == "b-apiaccess" && k.Spec.APIAccess.Namespace == "default"
	})
	sec, err := a.env.Client().CoreV1().Secrets("default").Get(ctx, "b-apiaccess", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rc := rest.CopyConfig(b.env.Config)
	rc.BearerToken, rc.CertData, rc.KeyData, rc.CertFile, rc.KeyFile = string(sec.Data[v1alpha1.APIAccessTokenKey]), nil, nil, "", ""
	rc.CAData, rc.CAFile = sec.Data[v1alpha1.APIAccessCAKey], ""
	rc.Username, rc.Password, rc.BearerTokenFile, rc.ExecProvider, rc.AuthProvider = "", "", "", nil, nil
	ssr, err := kubernetes.NewForConfigOrDie(rc).AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("B's advertised token at B's API server: %v", err)
	}
	if u := ssr.Status.UserInfo.Username; u != "system:serviceaccount:default:reader" {
		t.Errorf("B's advertised token authenticates as %q", u)
	}
	if strings.Contains(pa.Log()+pb.Log(), string(sec.Data[v1alpha1.APIAccessTokenKey])) {
		t.Errorf("a gateway logged the token")
	}
	if k := b.link(ctx, t, "a"); k.Spec.APIAccess != nil {
		t.Errorf("B's link a got spec.apiAccess %+v, but A does not advertise", *k.Spec.APIAccess)
	}

	// A peer with a valid certificate for another host is rejected: no
	// hello, the connection is closed.
	crt, key := ca.issue(t, "gw-x.example")
	cert, err := tls.X509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.pem)
	evil := tls.Client(dialIn(t, b.gw, "172.31.0.1:8777"), &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: "gw-a.example", MinVersion: tls.VersionTLS13})
	_ = evil.SetDeadline(time.Now().Add(5 * time.Second))
	if err := evil.Handshake(); err != nil {
		t.Fatalf("TLS handshake itself should succeed (valid CA): %v", err)
	}
	if n, err := io.ReadFull(evil, make([]byte, 8)); err == nil {
		t.Fatalf("a peer named gw-x.example got %d bytes (a hello) from gateway A", n)
	}
	evil.Close()
	// Garbage instead of TLS.
	g := dialIn(t, b.gw, "172.31.0.1:8777")
	_ = g.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(g, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if b, _ := io.ReadAll(g); strings.Contains(string(b), "KL") {
		t.Fatalf("garbage got a frame back")
	}
	g.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(pa.Log(), "rejected peer") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(pa.Log(), "rejected peer") || !strings.Contains(pa.Log(), "gw-x.example") {
		t.Errorf("gateway A did not log the rejection of gw-x.example")
	}
	if st := a.link(ctx, t, "b").Status.State; st != v1alpha1.StateUp {
		t.Errorf("the real link suffered from the rejected peer: %s", st)
	}

	// Kill B: A's link goes Idle within the window; restart: Up again.
	start := time.Now()
	pb.kill(syscall.SIGKILL)
	a.waitLink(ctx, t, "b", window+2*time.Second, "Idle", stateIs(v1alpha1.StateIdle))
	t.Logf("MEASURED: bridge link Idle %.1fs after the peer gateway died", time.Since(start).Seconds())
	pb = startB()
	a.waitLink(ctx, t, "b", 30*time.Second, "Up again", stateIs(v1alpha1.StateUp))
	waitCurl(t, a.host, "http://100.64.2.10:8080/", "hello from cluster b", 15*time.Second)

	// Auto-connect: A forgets B and restarts with --auto-connect; B dials
	// in, A registers B from its certificate and hello.
	pa.kill(syscall.SIGTERM)
	if err := a.env.Dynamic().Resource(kubeLinks).Delete(ctx, "b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	pa = startA("--auto-connect")
	k := a.waitLink(ctx, t, "b", 40*time.Second, "registered and Up", stateIs(v1alpha1.StateUp))
	if k.Spec.Endpoint != "gw-b.example:8777" || k.Spec.CIDR != "100.64.2.0/24" || k.Spec.ClusterAddress != "192.168.0.12/24" {
		t.Errorf("auto-connected link spec %+v", k.Spec)
	}
	waitCurl(t, a.host, "http://100.64.2.10:8080/", "hello from cluster b", 15*time.Second)

	// The dialing side checks names too: B's link now names a host that
	// A's certificate does not name, so B refuses A.
	pa.kill(syscall.SIGTERM)
	b.apply(ctx, t, bridgeLink(a, "gw-wrong.example"))
	pa = startA("--auto-connect")
	k = b.waitLink(ctx, t, "a", 30*time.Second, "refusing the server's certificate", func(k *v1alpha1.KubeLink) bool {
		return k.Status.State == v1alpha1.StateIdle && strings.Contains(k.Status.Message, "certificate")
	})
	t.Logf("B refuses A: %s", k.Status.Message)
	_ = pb
}
