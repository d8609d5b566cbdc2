package netd_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubelink/kubelink/api/v1alpha1"
	knetns "github.com/kubelink/kubelink/test/netns"
	"github.com/kubelink/kubelink/test/testenv"
)

var kubeLinks = schema.GroupVersionResource{Group: v1alpha1.GroupName, Version: "v1alpha1", Resource: v1alpha1.KubeLinkResource}

// requireRoot skips (or fails in CI) without root and TUN.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Getuid() != 0 {
		testenv.SkipOrFail(t, "needs root for network namespaces, TUN devices and nftables")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		testenv.SkipOrFail(t, "no /dev/net/tun: %v", err)
	}
	for _, b := range []string{"ip", "curl", "nft"} {
		if _, err := osexec.LookPath(b); err != nil {
			testenv.SkipOrFail(t, "%s not installed (Debian packages iproute2, curl, nftables)", b)
		}
	}
	testenv.RequireBinaries(t)
}

func run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := osexec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// buildNetd builds bin/netd once per test binary run.
func buildNetd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "netd")
	args := []string{"build", "-o", bin}
	if os.Getenv("NETD_RACE") == "1" {
		// Race-detector build: a data race in netd fails the test.
		args = append(args, "-race")
	}
	cmd := osexec.Command("go", append(args, "./netd")...)
	cmd.Dir = testenv.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building netd: %v\n%s", err, out)
	}
	return bin
}

// cluster is one simulated cluster: its own apiserver (on a management
// link from the host), a gateway namespace "gw" connected to the
// internet namespace, and a namespace behind the gateway (client or
// service host).
type cluster struct {
	name    string
	gw      string // gateway netns
	host    string // netns behind the gateway
	env     *testenv.Env
	inetIP  string // gateway's address on the internet
	linkCID string // link address with mesh mask
	svcCIDR string
}

type lab struct {
	t       *testing.T
	id      string
	netd    string
	nss     []string
	a, b    *cluster
	logDir  string
	veths   int
	proxies []net.Listener
	mu      sync.Mutex
	servers []*http.Server
}

// newLab builds the topology:
//
//	hostA(10.1.0.2, pod CIDR 10.1.0.0/24) -- gwA ==internet 172.31.0.0/24== gwB -- hostB (service IP 100.64.2.10)
//
// Each gateway reaches its own apiserver, which runs on the host's
// loopback, through a loopback proxy inside its namespace.
func newLab(t *testing.T) *lab {
	requireRoot(t)
	l := &lab{t: t, id: fmt.Sprint(os.Getpid() % 1000000), netd: buildNetd(t), logDir: t.TempDir()}
	t.Cleanup(l.cleanup)
	l.a = &cluster{name: "a", inetIP: "172.31.0.1", linkCID: "192.168.0.11/24", svcCIDR: "100.64.1.0/24"}
	l.b = &cluster{name: "b", inetIP: "172.31.0.2", linkCID: "192.168.0.12/24", svcCIDR: "100.64.2.0/24"}
	for _, c := range []*cluster{l.a, l.b} {
		c.gw = l.netns("gw" + c.name)
		c.host = l.netns("h" + c.name)
	}
	// The internet.
	l.veth(l.a.gw, "inet", "172.31.0.1/24", l.b.gw, "inet", "172.31.0.2/24")
	// Behind gateway A: a client in the pod CIDR.
	l.veth(l.a.gw, "lan", "10.1.0.1/24", l.a.host, "eth0", "10.1.0.2/24")
	run(t, "ip", "-n", l.a.host, "route", "add", "default", "via", "10.1.0.1")
	// Behind gateway B: the "service IP" 100.64.2.10.
	l.veth(l.b.gw, "lan", "10.2.0.1/24", l.b.host, "eth0", "10.2.0.2/24")
	run(t, "ip", "-n", l.b.host, "addr", "add", "100.64.2.10/32", "dev", "lo")
	run(t, "ip", "-n", l.b.host, "route", "add", "default", "via", "10.2.0.1")
	run(t, "ip", "-n", l.b.gw, "route", "add", "100.64.2.0/24", "via", "10.2.0.2")
	// Each cluster's apiserver runs on the host's loopback; the gateway
	// reaches it on its own loopback through a proxy the test runs (a
	// listener inside the gateway's namespace, dialing out from the host
	// namespace), so the admin kubeconfig works unchanged in both places
	// and nothing but loopback is touched outside the test's namespaces.
	for _, c := range []*cluster{l.a, l.b} {
		c.env = testenv.Start(t, testenv.Options{ServiceCIDR: c.svcCIDR})
		if _, err := c.env.InstallCRDs(context.Background(), testenv.CRDDir()); err != nil {
			t.Fatalf("installing CRDs: %v", err)
		}
		u, err := url.Parse(c.env.URL)
		if err != nil {
			t.Fatal(err)
		}
		l.proxy(c.gw, u.Host)
	}
	return l
}

func (l *lab) netns(name string) string {
	n := fmt.Sprintf("kl%s-%s", l.id, name)
	_ = osexec.Command("ip", "netns", "del", n).Run()
	run(l.t, "ip", "netns", "add", n)
	l.nss = append(l.nss, n)
	run(l.t, "ip", "-n", n, "link", "set", "lo", "up")
	return n
}

func (l *lab) veth(ns1, n1, a1, ns2, n2, a2 string) {
	l.veths++
	tmp := fmt.Sprintf("k%sv%d", l.id, l.veths)
	// Created inside ns1: no interface ever appears in the root namespace.
	run(l.t, "ip", "-n", ns1, "link", "add", n1, "type", "veth", "peer", "name", tmp)
	run(l.t, "ip", "-n", ns1, "link", "set", tmp, "netns", ns2)
	run(l.t, "ip", "-n", ns2, "link", "set", tmp, "name", n2)
	run(l.t, "ip", "-n", ns1, "addr", "add", a1, "dev", n1)
	run(l.t, "ip", "-n", ns2, "addr", "add", a2, "dev", n2)
	run(l.t, "ip", "-n", ns1, "link", "set", n1, "up")
	run(l.t, "ip", "-n", ns2, "link", "set", n2, "up")
}

func (l *lab) cleanup() {
	for _, s := range l.servers {
		if s != nil {
			_ = s.Close()
		}
	}
	for _, n := range l.nss {
		_ = osexec.Command("ip", "netns", "del", n).Run()
	}
	for _, ln := range l.proxies {
		_ = ln.Close()
	}
}

// proxy forwards connections to addr inside ns to addr in the host
// namespace.
func (l *lab) proxy(ns, addr string) {
	ln := listenIn(l.t, ns, addr)
	l.proxies = append(l.proxies, ln)
	go knetns.Relay(ln, addr, nil)
}

// serveHTTP serves, inside netns ns on addr, a page naming the caller.
func (l *lab) serveHTTP(ns, addr string) {
	ln := listenIn(l.t, ns, addr)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from cluster b, you are %s\n", r.RemoteAddr)
	}), ReadHeaderTimeout: 5 * time.Second}
	l.mu.Lock()
	l.servers = append(l.servers, srv)
	l.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// listenIn opens a TCP listener inside a network namespace; the socket
// stays there whatever thread serves it.
func listenIn(t *testing.T, ns, addr string) net.Listener {
	t.Helper()
	ln, err := knetns.Listen(ns, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

type corev1Event = corev1.Event

// exec runs a command inside ns.
func exec(ns string, args ...string) (string, error) {
	out, err := osexec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	return string(out), err
}

// curl fetches url from inside ns.
func curl(ns, url string) (string, error) {
	out, err := osexec.Command("ip", "netns", "exec", ns, "curl", "-sS", "--max-time", "3", url).CombinedOutput()
	return string(out), err
}

// proc is a running netd.
type proc struct {
	name string
	cmd  *osexec.Cmd
	log  *bytes.Buffer
	mu   *sync.Mutex
	done chan struct{}
}

func (p *proc) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (w lockedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(b)
}

// startNetd runs netd broker inside netns ns; it is killed at test end.
func (l *lab) startNetd(name, ns string, env []string, args ...string) *proc {
	l.t.Helper()
	p := &proc{name: name, log: &bytes.Buffer{}, mu: &sync.Mutex{}, done: make(chan struct{})}
	argv := append([]string{"netns", "exec", ns, l.netd, "broker"}, args...)
	p.cmd = osexec.Command("ip", argv...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout = lockedWriter{p.mu, p.log}
	p.cmd.Stderr = lockedWriter{p.mu, p.log}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		l.t.Fatalf("starting netd %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	l.t.Cleanup(func() {
		p.kill(syscall.SIGKILL)
		if strings.Contains(p.Log(), "DATA RACE") {
			l.t.Errorf("netd %s: data race", name)
		}
		if l.t.Failed() {
			l.t.Logf("netd %s log:\n%s", name, p.Log())
		}
	})
	return p
}

// kill signals the process group and waits for it.
func (p *proc) kill(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func (c *cluster) link(ctx context.Context, t *testing.T, name string) *v1alpha1.KubeLink {
	t.Helper()
	u, err := c.env.Dynamic().Resource(kubeLinks).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		t.Fatalf("get KubeLink %s in cluster %s: %v", name, c.name, err)
	}
	l := &v1alpha1.KubeLink{}
	if err := fromUnstructured(u, l); err != nil {
		t.Fatal(err)
	}
	return l
}

func (c *cluster) apply(ctx context.Context, t *testing.T, l *v1alpha1.KubeLink) {
	t.Helper()
	u, err := toUnstructured(l)
	if err != nil {
		t.Fatal(err)
	}
	r := c.env.Dynamic().Resource(kubeLinks)
	old, err := r.Get(ctx, l.Name, metav1.GetOptions{})
	if err == nil {
		u.SetResourceVersion(old.GetResourceVersion())
		_, err = r.Update(ctx, u, metav1.UpdateOptions{})
	} else if apierrors.IsNotFound(err) {
		_, err = r.Create(ctx, u, metav1.CreateOptions{})
	}
	if err != nil {
		t.Fatalf("applying KubeLink %s in cluster %s: %v", l.Name, c.name, err)
	}
}

func (c *cluster) deleteLinks(ctx context.Context, t *testing.T) {
	t.Helper()
	if err := c.env.Dynamic().Resource(kubeLinks).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitLink polls a KubeLink until cond holds.
func (c *cluster) waitLink(ctx context.Context, t *testing.T, name string, timeout time.Duration, what string, cond func(*v1alpha1.KubeLink) bool) *v1alpha1.KubeLink {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last *v1alpha1.KubeLink
	for time.Now().Before(deadline) {
		last = c.link(ctx, t, name)
		if last != nil && cond(last) {
			return last
		}
		time.Sleep(100 * time.Millisecond)
	}
	st := "missing"
	if last != nil {
		st = fmt.Sprintf("%+v", last.Status)
	}
	t.Fatalf("cluster %s: KubeLink %s not %s within %s; status %s", c.name, name, what, timeout, st)
	return nil
}

func stateIs(s string) func(*v1alpha1.KubeLink) bool {
	return func(l *v1alpha1.KubeLink) bool { return l.Status.State == s }
}

func (c *cluster) events(ctx context.Context, t *testing.T, name string) []corev1.Event {
	t.Helper()
	evs, err := c.env.Client().CoreV1().Events("").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	return evs.Items
}

// startNetd runs a netd process (argv[0] is the binary) in ns for the rest
// of the test: killed at the end, failing the test on a data race (the
// NETD_RACE build), its output logged when the test failed or when the
// environment variable logVar is 1.
func startNetd(t *testing.T, lab *knetns.Lab, ns, name string, env []string, logVar string, argv ...string) *knetns.Proc {
	t.Helper()
	p := lab.Start(ns, name, env, nil, argv...)
	t.Cleanup(func() {
		p.Kill(syscall.SIGKILL)
		if strings.Contains(p.Output(), "DATA RACE") {
			t.Errorf("netd %s: data race", name)
		}
		if t.Failed() || os.Getenv(logVar) == "1" {
			t.Logf("%s output:\n%s", name, p.Output())
		}
	})
	return p
}
