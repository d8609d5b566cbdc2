// Package e2e runs kubelink as a whole on one machine: simulated clusters,
// each a network namespace with its own etcd + kube-apiserver, the chart
// installed into it with bin/helm, and the chart's workloads run as
// processes from the installed objects (there is no kubelet), recorded as
// Pod objects; pods without hostNetwork may get network namespaces of their
// own (podnet.go). The clusters' gateways reach each other over an
// "internet" bridge namespace.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/kubelink/kubelink/api/mesh"
	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/test/netns"
	"github.com/kubelink/kubelink/test/testenv"
)

// Binaries are the programs the e2e runs.
type Binaries struct {
	CoreDNS, Netd, Helm string
}

// RequireBinaries finds bin/coredns, bin/netd and bin/helm (`make build`)
// and the test environment, or skips (fails in CI).
func RequireBinaries(t testing.TB) Binaries {
	t.Helper()
	testenv.RequireBinaries(t)
	bin := filepath.Join(testenv.RepoRoot(), "bin")
	b := Binaries{CoreDNS: filepath.Join(bin, "coredns"), Netd: filepath.Join(bin, "netd"), Helm: filepath.Join(bin, "helm")}
	for _, p := range []string{b.CoreDNS, b.Netd, b.Helm} {
		if _, err := os.Stat(p); err != nil {
			testenv.SkipOrFail(t, "%s missing: run `make build`", p)
		}
	}
	for _, tool := range []string{"dig", "curl", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.SkipOrFail(t, "%s not installed (Debian packages bind9-dnsutils, curl)", tool)
		}
	}
	return b
}

// ClusterConfig describes one simulated cluster.
type ClusterConfig struct {
	Name string
	// PublicIP is the node's address on the internet bridge (/24).
	PublicIP string
	// Hosts maps names (e.g. gateway endpoints) to addresses for the
	// cluster's resolver (/etc/netns/<ns>/hosts), on the node and in its
	// pods.
	Hosts map[string]string
	// PodCIDR is the node's pod range (e.g. 100.96.2.0/24). When set, pods
	// without hostNetwork get their own network namespace with an address
	// from it, as a CNI plugin would give them; when empty, every pod
	// shares the node's namespace.
	PodCIDR string
}

// Cluster is one running simulated cluster: one node (network namespace
// NS) with its own apiserver.
type Cluster struct {
	Name     string
	NS       string
	PublicIP string
	Env      *testenv.Env
	Client   kubernetes.Interface
	// Values are the chart values of the main release as helm computed them.
	Values map[string]any

	m       *Mesh
	dir     string
	hosts   string
	podCIDR netip.Prefix
	mu      sync.Mutex
	procs   map[string][]*netns.Proc
	stops   map[string]chan struct{}
	// pods are the workloads' pods by workload name; podNets counts the
	// pod network namespaces made so far.
	pods    map[string]*podInfo
	podNets int
	// nat are the rules of the node's nat table (the CNI's masquerade and
	// the kube-proxy stand-in's DNAT).
	nat []string
}

// podInfo is a workload's (single) pod on the node.
type podInfo struct {
	name string
	ns   string // network namespace: the node's or its own
	ip   string
	tmpl *corev1.PodTemplateSpec
}

// Mesh is a set of simulated clusters on one internet.
type Mesh struct {
	t        testing.TB
	Lab      *netns.Lab
	Bin      Binaries
	inet     string
	dir      string
	Clusters map[string]*Cluster
	// Timings records how long each step took, for the summary.
	Timings []Timing

	mu      sync.Mutex
	created []string // host paths made for mount points and /etc/netns
	servers []func()
	stopped bool // stopClusters ran
}

// Timing is one named duration.
type Timing struct {
	Name string
	D    time.Duration
}

// NewMesh creates the internet namespace; add clusters with AddCluster.
func NewMesh(t testing.TB, bins Binaries) *Mesh {
	t.Helper()
	m := &Mesh{t: t, Lab: netns.New(t, "kle"), Bin: bins, dir: t.TempDir(), Clusters: map[string]*Cluster{}}
	t.Cleanup(m.cleanup)
	m.inet = m.Lab.NS("inet")
	m.Lab.Bridge(m.inet, "br0", "")
	return m
}

// Step times fn under a name.
func (m *Mesh) Step(name string, fn func()) {
	m.t.Helper()
	began := time.Now()
	fn()
	d := time.Since(began)
	m.mu.Lock()
	m.Timings = append(m.Timings, Timing{name, d})
	m.mu.Unlock()
	m.t.Logf("step %q took %s", name, d.Round(time.Millisecond))
}

func (m *Mesh) cleanup() {
	m.mu.Lock()
	servers, created := m.servers, m.created
	m.servers, m.created = nil, nil
	m.mu.Unlock()
	for _, c := range m.Clusters {
		c.stopSupervisors()
	}
	for _, stop := range servers {
		stop()
	}
	m.Lab.Close()
	for i := len(created) - 1; i >= 0; i-- {
		_ = os.RemoveAll(created[i])
	}
}

// mkdirHost creates a host directory (and missing parents), remembering
// what it created so that cleanup removes exactly that.
func (m *Mesh) mkdirHost(path string) {
	m.t.Helper()
	var missing []string
	for p := path; p != "/" && p != "."; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil {
			break
		}
		missing = append(missing, p)
	}
	if err := os.MkdirAll(path, 0o755); err != nil {
		m.t.Fatal(err)
	}
	m.mu.Lock()
	for i := len(missing) - 1; i >= 0; i-- {
		m.created = append(m.created, missing[i])
	}
	m.mu.Unlock()
}

// AddCluster builds the cluster's node: its network namespace on the
// internet bridge, its hosts file and, with a pod CIDR, the node's side of
// the pod network. StartAPI, Install and StartWorkload follow.
func (m *Mesh) AddCluster(cfg ClusterConfig) *Cluster {
	m.t.Helper()
	c := &Cluster{Name: cfg.Name, PublicIP: cfg.PublicIP, m: m, dir: filepath.Join(m.dir, cfg.Name),
		procs: map[string][]*netns.Proc{}, stops: map[string]chan struct{}{}, pods: map[string]*podInfo{}}
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		m.t.Fatal(err)
	}
	c.NS = m.Lab.NS(cfg.Name)
	m.Lab.Veth(c.NS, "eth0", cfg.PublicIP+"/24", m.inet, "p-"+cfg.Name, "")
	m.Lab.Attach(m.inet, "p-"+cfg.Name, "br0")
	m.Lab.Forwarding(c.NS)
	if len(cfg.Hosts) > 0 {
		names := make([]string, 0, len(cfg.Hosts))
		for name := range cfg.Hosts {
			names = append(names, name)
		}
		sort.Strings(names)
		var b strings.Builder
		b.WriteString("127.0.0.1 localhost\n")
		for _, name := range names {
			fmt.Fprintf(&b, "%s %s\n", cfg.Hosts[name], name)
		}
		c.hosts = b.String()
		c.writeHosts(c.NS)
	}
	if cfg.PodCIDR != "" {
		p, err := netip.ParsePrefix(cfg.PodCIDR)
		if err != nil {
			m.t.Fatalf("pod CIDR of %s: %v", cfg.Name, err)
		}
		c.podCIDR = p.Masked()
		// The CNI's part on the node: pods reach the internet with the
		// node's address.
		c.addNAT(fmt.Sprintf("postrouting ip saddr %s oifname \"eth0\" masquerade", c.podCIDR))
	}
	m.Clusters[c.Name] = c
	return c
}

// writeHosts gives a network namespace the cluster's hosts file (`ip netns
// exec` bind-mounts /etc/netns/<ns>/hosts over /etc/hosts).
func (c *Cluster) writeHosts(ns string) {
	c.m.t.Helper()
	if c.hosts == "" {
		return
	}
	d := filepath.Join("/etc/netns", ns)
	c.m.mkdirHost(d)
	if err := os.WriteFile(filepath.Join(d, "hosts"), []byte(c.hosts), 0o644); err != nil {
		c.m.t.Fatal(err)
	}
}

// StartAPI starts the cluster's apiserver inside its namespace with the
// service CIDR the values name.
func (c *Cluster) StartAPI(serviceCIDR string) {
	c.m.t.Helper()
	c.Env = testenv.Start(c.m.t, testenv.Options{
		ServiceCIDR: serviceCIDR,
		Wrap:        []string{"ip", "netns", "exec", c.NS},
		Dial:        netns.DialContext(c.NS),
	})
	c.Client = c.Env.Client()
	// Registered after the apiserver's cleanup, so it runs before it: the
	// workloads shut down gracefully while the API is still there (a
	// broker releases its Lease, a router removes its routes) instead of
	// waiting for a dead apiserver until they are killed.
	c.m.t.Cleanup(c.m.stopClusters)
}

// stopClusters ends the workloads of all clusters, then their apiservers,
// each stage in parallel (teardown would otherwise wait for every graceful
// shutdown in turn). Later calls find nothing left to stop.
func (m *Mesh) stopClusters() {
	m.mu.Lock()
	done := m.stopped
	m.stopped = true
	m.mu.Unlock()
	if done {
		return
	}
	began := time.Now()
	clusters := make([]*Cluster, 0, len(m.Clusters))
	for _, c := range m.Clusters {
		clusters = append(clusters, c)
	}
	parallel := func(fn func(c *Cluster)) {
		var wg sync.WaitGroup
		for _, c := range clusters {
			wg.Add(1)
			go func() {
				defer wg.Done()
				fn(c)
			}()
		}
		wg.Wait()
	}
	parallel(func(c *Cluster) { c.stopAll() })
	stopped := time.Now()
	parallel(func(c *Cluster) {
		if c.Env != nil {
			c.Env.Stop() // idempotent: testenv's own cleanup finds nothing left
		}
	})
	if len(clusters) > 0 {
		m.t.Logf("teardown: workloads stopped in %s, apiservers in %s", stopped.Sub(began).Round(time.Millisecond), time.Since(stopped).Round(time.Millisecond))
	}
}

// Helm runs bin/helm inside the cluster's namespace against its apiserver.
func (c *Cluster) Helm(args ...string) string {
	c.m.t.Helper()
	argv := append([]string{"ip", "netns", "exec", c.NS, c.m.Bin.Helm, "--kubeconfig", c.Env.Kubeconfig}, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(c.dir, "helm-cache"), "HELM_CONFIG_HOME="+filepath.Join(c.dir, "helm-config"), "HELM_DATA_HOME="+filepath.Join(c.dir, "helm-data"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		c.m.t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Install installs the chart as release "kubelink" with the cluster's
// values files plus overrides, and reads back the computed values.
func (c *Cluster) Install(values []string, overrides map[string]any) {
	c.m.t.Helper()
	c.Values = c.InstallRelease("kubelink", values, overrides)
}

// InstallRelease installs the chart as another release into namespace
// kubelink (e.g. an additional broker) and returns its computed values.
func (c *Cluster) InstallRelease(release string, values []string, overrides map[string]any) map[string]any {
	c.m.t.Helper()
	args := []string{"install", release, filepath.Join(testenv.RepoRoot(), "chart", "kubelink"), "-n", "kubelink", "--create-namespace"}
	for _, v := range values {
		args = append(args, "-f", v)
	}
	if len(overrides) > 0 {
		b, err := yaml.Marshal(overrides)
		if err != nil {
			c.m.t.Fatal(err)
		}
		f := filepath.Join(c.dir, release+"-overrides.yaml")
		if err := os.WriteFile(f, b, 0o600); err != nil {
			c.m.t.Fatal(err)
		}
		args = append(args, "-f", f)
	}
	c.Helm(args...)
	out := c.Helm("get", "values", release, "-n", "kubelink", "--all", "-o", "json")
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		c.m.t.Fatalf("helm get values: %v", err)
	}
	return v
}

// Value reads a dotted path of the computed values ("" if absent).
func (c *Cluster) Value(path string) string { return valueAt(c.Values, path) }

func valueAt(v map[string]any, path string) string {
	var cur any = v
	for _, p := range strings.Split(path, ".") {
		mp, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = mp[p]
	}
	if cur == nil {
		return ""
	}
	return fmt.Sprint(cur)
}

// ClusterDNSIP is the cluster DNS service IP (values or the 10th address).
func (c *Cluster) ClusterDNSIP() string {
	if ip := c.Value("cluster.dnsIP"); ip != "" {
		return ip
	}
	return mesh.NthAddress(netip.MustParsePrefix(c.Value("cluster.serviceCIDR")), 10).String()
}

// AddLoopback puts an address on the namespace's loopback (a ClusterIP the
// node answers itself).
func (c *Cluster) AddLoopback(ip string) {
	c.m.t.Helper()
	c.m.Lab.Run("ip", "-n", c.NS, "addr", "replace", ip+"/32", "dev", "lo")
}

// StartClusterDNS runs the cluster's own DNS: bin/coredns with the
// kubernetes plugin reading the cluster's apiserver, on the DNS service IP.
func (c *Cluster) StartClusterDNS() {
	c.m.t.Helper()
	ip := c.ClusterDNSIP()
	c.AddLoopback(ip)
	domain := c.Value("cluster.domain")
	if domain == "" {
		domain = v1alpha1.DefaultClusterDomain
	}
	corefile := fmt.Sprintf(`%s:53 in-addr.arpa:53 {
    bind %s
    errors
    kubernetes %s in-addr.arpa {
        kubeconfig %s
        pods insecure
    }
}
`, domain, ip, domain, c.Env.Kubeconfig)
	f := filepath.Join(c.dir, "cluster-dns.Corefile")
	if err := os.WriteFile(f, []byte(corefile), 0o600); err != nil {
		c.m.t.Fatal(err)
	}
	c.start(c.NS, "cluster-dns", nil, c.m.Bin.CoreDNS, "-conf", f)
}

func (c *Cluster) start(ns, name string, env []string, argv ...string) *netns.Proc {
	log, err := os.OpenFile(filepath.Join(c.dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.m.t.Fatal(err)
	}
	p := c.m.Lab.Start(ns, c.Name+"/"+name, env, log, argv...)
	c.mu.Lock()
	c.procs[name] = append(c.procs[name], p)
	c.mu.Unlock()
	return p
}

// Log returns a process's log so far.
func (c *Cluster) Log(name string) string {
	b, _ := os.ReadFile(filepath.Join(c.dir, name+".log"))
	return string(b)
}

// binaryFor maps the chart's images to the locally built binaries.
func (m *Mesh) binaryFor(image string) (string, error) {
	repo := image
	if i := strings.LastIndex(repo, "@"); i >= 0 {
		repo = repo[:i]
	}
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	switch {
	case strings.HasSuffix(repo, "/coredns") || repo == "coredns":
		return m.Bin.CoreDNS, nil
	case strings.HasSuffix(repo, "/netd") || repo == "netd":
		return m.Bin.Netd, nil
	}
	return "", fmt.Errorf("no local binary for image %s", image)
}

// StartWorkload runs the pod of an installed Deployment or DaemonSet (one
// replica: the simulated cluster has one node) and records it as a Pod
// object, as the scheduler and the kubelet would: other components (the
// router) find the gateway through it. A pod keeps its name, network
// namespace and address across restarts.
func (c *Cluster) StartWorkload(kind, namespace, name string) {
	c.m.t.Helper()
	ctx := context.Background()
	tmpl, err := templateOf(ctx, c.Client, kind, namespace, name)
	if err != nil {
		c.m.t.Fatal(err)
	}
	c.mu.Lock()
	pi := c.pods[name]
	c.mu.Unlock()
	if pi == nil {
		pi = &podInfo{name: name + "-0", ns: c.NS, ip: c.PublicIP}
		if !tmpl.Spec.HostNetwork && c.podCIDR.IsValid() {
			pi.ns, pi.ip = c.podNetwork(pi.name)
		}
		c.mu.Lock()
		c.pods[name] = pi
		c.mu.Unlock()
	}
	pi.tmpl = tmpl
	host := PodHost{NodeName: c.Name, HostIP: c.PublicIP, PodIP: pi.ip, Binary: c.m.binaryFor}
	u, _ := url(c.Env.URL)
	pods, err := podsOf(ctx, c.Client, host, caOf(c.Env), u.host, u.port, c.dir, namespace, pi.name, tmpl)
	if err != nil {
		c.m.t.Fatal(err)
	}
	if err := c.recordPod(ctx, namespace, pi); err != nil {
		c.m.t.Fatal(err)
	}
	for _, p := range pods {
		for _, mp := range p.mountPoints() {
			c.m.mkdirHost(mp)
		}
		c.supervise(pi.ns, name+"-"+p.Container, p.Env, p.shellCommand())
	}
}

// PodIP is the address of a workload's pod (the node's for hostNetwork
// pods and for clusters without a pod network).
func (c *Cluster) PodIP(workload string) string { return c.podOf(workload).ip }

// PodNS is the network namespace of a workload's pod.
func (c *Cluster) PodNS(workload string) string { return c.podOf(workload).ns }

func (c *Cluster) podOf(workload string) *podInfo {
	c.m.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	pi := c.pods[workload]
	if pi == nil {
		c.m.t.Fatalf("%s: no pod of workload %s", c.Name, workload)
	}
	return pi
}

// supervise runs a pod's process and restarts it when it exits, as the
// kubelet does with restartPolicy Always (e.g. a broker that lost its
// Lease exits and comes back as a candidate), until StopWorkload.
func (c *Cluster) supervise(ns, name string, env, argv []string) {
	stopped := make(chan struct{})
	c.mu.Lock()
	c.stops[name] = stopped
	c.mu.Unlock()
	p := c.start(ns, name, env, argv...)
	go func() {
		backoff := time.Second
		for p != nil {
			select {
			case <-stopped:
				return
			case <-p.Done():
			}
			select {
			case <-stopped:
				return
			case <-time.After(backoff):
			}
			if backoff < 10*time.Second {
				backoff *= 2
			}
			p = c.restart(ns, name, stopped, env, argv)
		}
	}()
}

// restart starts the process again unless its workload was stopped
// meanwhile (checked under the lock StopWorkload takes).
func (c *Cluster) restart(ns, name string, stopped chan struct{}, env, argv []string) *netns.Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stops[name] != stopped {
		return nil
	}
	log, err := os.OpenFile(filepath.Join(c.dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil
	}
	p := c.m.Lab.Start(ns, c.Name+"/"+name, env, log, argv...)
	c.procs[name] = append(c.procs[name], p)
	return p
}

// stopSupervisors ends every restart loop (at mesh cleanup, before the
// processes are killed).
func (c *Cluster) stopSupervisors() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, stop := range c.stops {
		close(stop)
		delete(c.stops, k)
	}
}

// stopAll ends every process of the cluster at once with SIGTERM (each is
// killed if it has not exited 10 s later).
func (c *Cluster) stopAll() {
	c.stopSupervisors()
	c.mu.Lock()
	var procs []*netns.Proc
	for k, ps := range c.procs {
		procs = append(procs, ps...)
		delete(c.procs, k)
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Kill(syscall.SIGTERM)
		}()
	}
	wg.Wait()
}

// StopWorkload kills a workload's processes (SIGKILL: a crash, not a
// graceful shutdown). The pod (object, namespace, address) stays, as a
// crashed container's does.
func (c *Cluster) StopWorkload(name string, sig syscall.Signal) {
	c.mu.Lock()
	var procs []*netns.Proc
	for k, ps := range c.procs {
		if strings.HasPrefix(k, name+"-") {
			procs = append(procs, ps...)
			delete(c.procs, k)
		}
	}
	for k, stop := range c.stops {
		if strings.HasPrefix(k, name+"-") {
			close(stop)
			delete(c.stops, k)
		}
	}
	c.mu.Unlock()
	for _, p := range procs {
		p.Kill(sig)
	}
}

type hostPort struct{ host, port string }

func url(u string) (hostPort, error) {
	h := strings.TrimPrefix(u, "https://")
	host, port, err := net.SplitHostPort(h)
	return hostPort{host, port}, err
}

func caOf(e *testenv.Env) []byte { return e.Config.TLSClientConfig.CAData }

// ServeHTTP creates a ClusterIP Service (with the given ClusterIP, or one
// the apiserver allocates when empty) and serves it from the node: the
// address on loopback, an HTTP server naming the cluster (the stand-in for
// kube-proxy and the backend pods).
func (c *Cluster) ServeHTTP(namespace, name, clusterIP string) string {
	c.m.t.Helper()
	ctx := context.Background()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: corev1.ServiceSpec{ClusterIP: clusterIP, Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
			Selector: map[string]string{"app": name}},
	}
	if _, err := c.Client.CoreV1().Namespaces().Get(ctx, namespace, metav1.GetOptions{}); err != nil {
		if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
			c.m.t.Fatal(err)
		}
	}
	created, err := c.Client.CoreV1().Services(namespace).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		c.m.t.Fatal(err)
	}
	ip := created.Spec.ClusterIP
	c.AddLoopback(ip)
	ln, err := netns.Listen(c.NS, "tcp", net.JoinHostPort(ip, "80"))
	if err != nil {
		c.m.t.Fatal(err)
	}
	srv := newHTTPServer(fmt.Sprintf("%s from %s", name, c.Name))
	go func() { _ = srv.Serve(ln) }()
	c.m.mu.Lock()
	c.m.servers = append(c.m.servers, func() { _ = srv.Close() })
	c.m.mu.Unlock()
	return ip
}

// Forward is a kube-proxy stand-in for one Service port: it accepts on
// ip:port (UDP and TCP) inside the node's namespace and relays to target.
func (c *Cluster) Forward(ip string, port int, target string) {
	c.m.t.Helper()
	c.AddLoopback(ip)
	addr := net.JoinHostPort(ip, fmt.Sprint(port))
	ln, err := netns.Listen(c.NS, "tcp", addr)
	if err != nil {
		c.m.t.Fatal(err)
	}
	pc, err := netns.ListenPacket(c.NS, "udp", addr)
	if err != nil {
		c.m.t.Fatal(err)
	}
	stop := relay(ln, pc, c.NS, target)
	c.m.mu.Lock()
	c.m.servers = append(c.m.servers, stop)
	c.m.mu.Unlock()
}

// KubeLinks returns the cluster's KubeLink objects.
func (c *Cluster) KubeLinks() map[string]*unstructured.Unstructured {
	c.m.t.Helper()
	list, err := c.Env.Dynamic().Resource(v1alpha1.SchemeGroupVersion.WithResource(v1alpha1.KubeLinkResource)).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		c.m.t.Fatal(err)
	}
	out := map[string]*unstructured.Unstructured{}
	for i := range list.Items {
		out[list.Items[i].GetName()] = &list.Items[i]
	}
	return out
}

// Exec runs a command inside the cluster's node namespace (a client on the
// host network).
func (c *Cluster) Exec(ctx context.Context, args ...string) (string, error) {
	return execIn(ctx, c.NS, args...)
}

// ExecPod runs a command inside the network namespace of a workload's pod.
func (c *Cluster) ExecPod(ctx context.Context, workload string, args ...string) (string, error) {
	return execIn(ctx, c.PodNS(workload), args...)
}

func execIn(ctx context.Context, ns string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
