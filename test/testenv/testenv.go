// Package testenv runs a real etcd and kube-apiserver on loopback for tests:
// fresh certificates, RBAC authorization, an admin credential and
// ServiceAccount credentials on demand. The binaries come from
// `make testenv` (bin/testenv); no Docker is involved.
package testenv

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Options tune an environment; the zero value is a plain loopback apiserver.
type Options struct {
	// ServiceCIDR is the apiserver's service-cluster-ip-range (default
	// 10.0.0.0/24).
	ServiceCIDR string
	// BindAddress is where etcd and the apiserver listen (default
	// 127.0.0.1).
	BindAddress string
	// Wrap, when set, wraps every command (e.g. to run it inside a network
	// namespace with `ip netns exec NS`).
	Wrap []string
	// Dial, when set, opens the test's connections to the apiserver (e.g.
	// from inside the network namespace the apiserver listens in).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Log receives the processes' output; default: a file in the work dir.
	Log io.Writer
	// AdvertiseAddress, when set, makes the apiserver a cluster's: it
	// listens on every address of its network namespace, advertises this
	// one as the endpoint of the `kubernetes` Service (lease endpoint
	// reconciler, as a real control plane does) and its certificate names
	// it and the Service's ClusterIP, so nodes and pods reach it the way
	// they reach a real apiserver. etcd stays on BindAddress.
	AdvertiseAddress string
}

// Env is one running etcd + kube-apiserver.
type Env struct {
	// Dir holds certificates, kubeconfigs, data and logs.
	Dir string
	// URL is the apiserver's https address.
	URL string
	// Kubeconfig is the path of an admin kubeconfig (system:masters).
	Kubeconfig string
	// Config is the admin rest config.
	Config *rest.Config

	opts     Options
	bin      string
	caPEM    []byte
	caFile   string
	saKey    string
	adminCrt []byte
	adminKey []byte
	apiPort  int
	kcmArgs  []string
	ownDir   bool
	mu       sync.Mutex
	procs    map[string]*exec.Cmd
	logs     []io.Closer
	apiArgs  []string
	etcdArgs []string
}

// BinDir returns the directory of the test environment's binaries:
// $KUBELINK_TESTENV_BIN or bin/testenv at the repository root.
func BinDir() string {
	if d := os.Getenv("KUBELINK_TESTENV_BIN"); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(), "bin", "testenv")
}

// RepoRoot finds the repository root (the directory holding go.mod) from
// the working directory upwards.
func RepoRoot() string {
	dir, _ := os.Getwd()
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && bytes.Contains(b, []byte("module github.com/kubelink/kubelink\n")) {
				return d
			}
		}
		if d == filepath.Dir(d) {
			return dir
		}
	}
}

// InCI reports whether the tests run in CI, where a missing prerequisite is
// a failure rather than a reason to skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// SkipOrFail skips the test with the reason, or fails it in CI.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("prerequisite missing in CI: %s", msg)
	}
	t.Skip(msg)
}

// RequireBinaries skips (or fails in CI) when the binaries are missing.
func RequireBinaries(t testing.TB) {
	t.Helper()
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(BinDir(), b)); err != nil {
			SkipOrFail(t, "%s not found in %s: run `make testenv`", b, BinDir())
		}
	}
}

// Start starts an environment for a test and stops it when the test ends,
// even on failure.
func Start(t testing.TB, opts Options) *Env {
	t.Helper()
	RequireBinaries(t)
	dir, err := os.MkdirTemp("", "kubelink-testenv-")
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	e, err := New(dir, opts)
	if err == nil {
		t.Logf("testenv: etcd + kube-apiserver ready in %s", time.Since(began).Round(time.Millisecond))
	}
	if e != nil {
		e.ownDir = true
		t.Cleanup(e.Stop)
	}
	if err != nil {
		t.Fatalf("starting test environment: %v", err)
	}
	return e
}

// New starts etcd and the apiserver with their state in dir (created if
// needed). Call Stop when done, also after an error.
func New(dir string, opts Options) (*Env, error) {
	if opts.ServiceCIDR == "" {
		opts.ServiceCIDR = "10.0.0.0/24"
	}
	if opts.BindAddress == "" {
		opts.BindAddress = "127.0.0.1"
	}
	e := &Env{Dir: dir, opts: opts, bin: BinDir(), procs: map[string]*exec.Cmd{}}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return e, err
	}
	if err := e.prepare(); err != nil {
		return e, err
	}
	return e, e.startProcesses()
}

func (e *Env) prepare() error {
	p, err := NewCA("kubelink-testenv-ca")
	if err != nil {
		return err
	}
	e.caPEM = p.PEM()
	write := func(name string, data []byte) (string, error) {
		path := filepath.Join(e.Dir, name)
		return path, os.WriteFile(path, data, 0o600)
	}
	caFile, err := write("ca.crt", e.caPEM)
	if err != nil {
		return err
	}
	hosts := []string{e.opts.BindAddress, "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"}
	if e.opts.AdvertiseAddress != "" {
		svc, err := netip.ParsePrefix(e.opts.ServiceCIDR)
		if err != nil {
			return fmt.Errorf("service CIDR: %w", err)
		}
		// The `kubernetes` Service's ClusterIP is the range's first address.
		hosts = append(hosts, e.opts.AdvertiseAddress, svc.Masked().Addr().Next().String())
	}
	serverCert, serverKey, err := p.Issue("kube-apiserver", nil, hosts, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return err
	}
	adminCert, adminKey, err := p.Issue("kubelink-admin", []string{"system:masters"}, nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return err
	}
	certFile, _ := write("apiserver.crt", serverCert)
	keyFile, _ := write("apiserver.key", serverKey)
	saKey, saPub, err := writeServiceAccountKey(e.Dir)
	if err != nil {
		return err
	}
	e.caFile, e.saKey, e.adminCrt, e.adminKey = caFile, saKey, adminCert, adminKey
	ports, err := freePorts(e.opts.BindAddress, 3)
	if err != nil {
		return err
	}
	host := e.opts.BindAddress
	etcdClient := "http://" + net.JoinHostPort(host, strconv.Itoa(ports[0]))
	etcdPeer := "http://" + net.JoinHostPort(host, strconv.Itoa(ports[1]))
	e.URL = "https://" + net.JoinHostPort(host, strconv.Itoa(ports[2]))
	e.apiPort = ports[2]
	bind, advertise, reconciler := host, host, "none"
	if e.opts.AdvertiseAddress != "" {
		bind, advertise, reconciler = "0.0.0.0", e.opts.AdvertiseAddress, "lease"
	}
	e.etcdArgs = []string{
		"--name=testenv",
		"--data-dir=" + filepath.Join(e.Dir, "etcd"),
		"--listen-client-urls=" + etcdClient,
		"--advertise-client-urls=" + etcdClient,
		"--listen-peer-urls=" + etcdPeer,
		"--initial-advertise-peer-urls=" + etcdPeer,
		"--initial-cluster=testenv=" + etcdPeer,
		"--unsafe-no-fsync",
		"--log-level=warn",
	}
	e.apiArgs = []string{
		"--etcd-servers=" + etcdClient,
		"--bind-address=" + bind,
		"--advertise-address=" + advertise,
		"--secure-port=" + strconv.Itoa(ports[2]),
		"--endpoint-reconciler-type=" + reconciler,
		"--tls-cert-file=" + certFile,
		"--tls-private-key-file=" + keyFile,
		"--client-ca-file=" + caFile,
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=" + e.opts.ServiceCIDR,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + saPub,
		"--service-account-signing-key-file=" + saKey,
		"--api-audiences=https://kubernetes.default.svc",
		"--allow-privileged=true",
		"--profiling=false",
	}
	e.Config = &rest.Config{
		Host:            e.URL,
		TLSClientConfig: rest.TLSClientConfig{CAData: e.caPEM, CertData: adminCert, KeyData: adminKey},
		QPS:             1000,
		Burst:           1000,
		Dial:            e.opts.Dial,
	}
	e.Kubeconfig = filepath.Join(e.Dir, "admin.kubeconfig")
	return e.writeKubeconfig(e.Kubeconfig, "admin", &clientcmdapi.AuthInfo{ClientCertificateData: adminCert, ClientKeyData: adminKey})
}

func (e *Env) writeKubeconfig(path, user string, auth *clientcmdapi.AuthInfo) error {
	return e.writeKubeconfigFor(path, e.URL, user, auth)
}

func (e *Env) writeKubeconfigFor(path, server, user string, auth *clientcmdapi.AuthInfo) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["testenv"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: e.caPEM}
	cfg.AuthInfos[user] = auth
	cfg.Contexts["testenv"] = &clientcmdapi.Context{Cluster: "testenv", AuthInfo: user}
	cfg.CurrentContext = "testenv"
	return clientcmd.WriteToFile(*cfg, path)
}

func (e *Env) startProcesses() error {
	if err := e.StartEtcd(); err != nil {
		return err
	}
	return e.StartAPIServer()
}

// StartEtcd (re)starts etcd.
func (e *Env) StartEtcd() error {
	return e.start("etcd", filepath.Join(e.bin, "etcd"), e.etcdArgs)
}

// StartAPIServer (re)starts the apiserver and waits until it is ready.
func (e *Env) StartAPIServer() error {
	if err := e.start("kube-apiserver", filepath.Join(e.bin, "kube-apiserver"), e.apiArgs); err != nil {
		return err
	}
	return e.WaitReady(60 * time.Second)
}

// AdvertisedURL is the apiserver's address as nodes reach it (the
// advertise address; URL without one).
func (e *Env) AdvertisedURL() string {
	if e.opts.AdvertiseAddress == "" {
		return e.URL
	}
	return "https://" + net.JoinHostPort(e.opts.AdvertiseAddress, strconv.Itoa(e.apiPort))
}

// AdvertisedKubeconfig writes an admin kubeconfig for AdvertisedURL (for
// node components such as kube-proxy on other nodes) and returns its path.
func (e *Env) AdvertisedKubeconfig() (string, error) {
	path := filepath.Join(e.Dir, "node-admin.kubeconfig")
	return path, e.writeKubeconfigFor(path, e.AdvertisedURL(), "admin", &clientcmdapi.AuthInfo{ClientCertificateData: e.adminCrt, ClientKeyData: e.adminKey})
}

// ControllerManagerControllers are the kube-controller-manager controllers
// a simulated cluster runs: the ones that make Services, Pods and
// namespaces behave (EndpointSlices from Pods, mirroring, namespace
// deletion, garbage collection, ServiceAccounts and their tokens, the
// kube-root-ca.crt ConfigMap). Workload controllers are left out: the test
// harness places pods itself, as scheduler and kubelet.
var ControllerManagerControllers = []string{
	"endpointslice-controller",
	"endpointslice-mirroring-controller",
	"namespace-controller",
	"garbage-collector-controller",
	"serviceaccount-controller",
	"serviceaccount-token-controller",
	"root-ca-certificate-publisher-controller",
}

// StartControllerManager starts kube-controller-manager (from
// bin/testenv) against the apiserver with ControllerManagerControllers.
func (e *Env) StartControllerManager() error {
	bin := filepath.Join(e.bin, "kube-controller-manager")
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("kube-controller-manager not built: run `make testenv`: %w", err)
	}
	e.kcmArgs = []string{
		"--kubeconfig=" + e.Kubeconfig,
		"--authentication-kubeconfig=" + e.Kubeconfig,
		"--authorization-kubeconfig=" + e.Kubeconfig,
		"--leader-elect=false",
		"--controllers=" + strings.Join(ControllerManagerControllers, ","),
		"--service-account-private-key-file=" + e.saKey,
		"--root-ca-file=" + e.caFile,
		"--use-service-account-credentials=false",
		"--bind-address=127.0.0.1",
		"--secure-port=0",
		"--concurrent-endpoint-syncs=5",
		"--profiling=false",
		"--v=1",
	}
	return e.start("kube-controller-manager", bin, e.kcmArgs)
}

// StopAPIServer stops the apiserver (etcd keeps running), e.g. to test an
// API outage.
func (e *Env) StopAPIServer() { e.stop("kube-apiserver") }

func (e *Env) start(name, bin string, args []string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, running := e.procs[name]; running {
		return fmt.Errorf("%s already running", name)
	}
	argv := append(append(append([]string(nil), e.opts.Wrap...), bin), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if e.opts.Log != nil {
		cmd.Stdout, cmd.Stderr = e.opts.Log, e.opts.Log
	} else {
		f, err := os.OpenFile(filepath.Join(e.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		e.logs = append(e.logs, f)
		cmd.Stdout, cmd.Stderr = f, f
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	e.procs[name] = cmd
	return nil
}

func (e *Env) stop(name string) {
	e.mu.Lock()
	cmd := e.procs[name]
	delete(e.procs, name)
	e.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	// The whole process group: a Wrap command may have children.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// WaitReady polls /readyz until the apiserver answers ok.
func (e *Env) WaitReady(timeout time.Duration) error {
	rt, err := rest.TransportFor(e.Config)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: rt, Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		e.mu.Lock()
		cmd := e.procs["kube-apiserver"]
		e.mu.Unlock()
		if cmd != nil && cmd.ProcessState != nil {
			return fmt.Errorf("kube-apiserver exited: %s", e.tail("kube-apiserver"))
		}
		resp, err := client.Get(e.URL + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("readyz %d: %s", resp.StatusCode, body)
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("kube-apiserver not ready after %s: %v; log tail: %s", timeout, last, e.tail("kube-apiserver"))
}

func (e *Env) tail(name string) string {
	b, _ := os.ReadFile(filepath.Join(e.Dir, name+".log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// Stop stops every process and removes the work directory if Start made it.
func (e *Env) Stop() {
	e.stop("kube-controller-manager")
	e.stop("kube-apiserver")
	e.stop("etcd")
	for _, l := range e.logs {
		_ = l.Close()
	}
	if e.ownDir {
		_ = os.RemoveAll(e.Dir)
	}
}

// Client returns an admin clientset.
func (e *Env) Client() kubernetes.Interface { return kubernetes.NewForConfigOrDie(e.Config) }

// Dynamic returns an admin dynamic client.
func (e *Env) Dynamic() dynamic.Interface { return dynamic.NewForConfigOrDie(e.Config) }

// ServiceAccountConfig creates the ServiceAccount (and namespace) if needed
// and returns a rest config authenticated with a token issued for it by
// the TokenRequest API, plus a kubeconfig file with the same credential.
func (e *Env) ServiceAccountConfig(ctx context.Context, namespace, name string) (*rest.Config, string, error) {
	c := e.Client()
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, "", fmt.Errorf("creating namespace %s: %w", namespace, err)
	}
	if _, err := c.CoreV1().ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, "", fmt.Errorf("creating service account %s/%s: %w", namespace, name, err)
	}
	exp := int64(3600)
	tr, err := c.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		return nil, "", fmt.Errorf("requesting token for %s/%s: %w", namespace, name, err)
	}
	cfg := &rest.Config{Host: e.URL, BearerToken: tr.Status.Token, TLSClientConfig: rest.TLSClientConfig{CAData: e.caPEM}, Dial: e.opts.Dial}
	path := filepath.Join(e.Dir, "sa-"+namespace+"-"+name+".kubeconfig")
	return cfg, path, e.writeKubeconfig(path, namespace+"-"+name, &clientcmdapi.AuthInfo{Token: tr.Status.Token})
}

// Kubectl runs bin/testenv/kubectl against the environment as admin (inside
// Options.Wrap, like the servers).
func (e *Env) Kubectl(ctx context.Context, args ...string) (string, error) {
	bin := filepath.Join(e.bin, "kubectl")
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("kubectl not built: run `make testenv`: %w", err)
	}
	argv := append(append(append([]string(nil), e.opts.Wrap...), bin, "--kubeconfig", e.Kubeconfig), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

func freePorts(host string, n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
