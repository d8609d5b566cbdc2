// Package e2e runs kubelink as a whole on one machine: simulated clusters
// that behave like clusters. Each has a control plane (etcd,
// kube-apiserver, kube-controller-manager) on its gateway node, several
// nodes (network namespaces) on a shared node network, each with a real
// kube-proxy in nftables mode, a pod network with a namespace and an
// address per pod (podnet.go), and a cluster DNS (CoreDNS `kubernetes`) in
// a pod behind the kube-dns Service. The chart is installed with bin/helm,
// and the workloads of the installed objects are run as processes on the
// nodes their selectors pick (there is no kubelet or scheduler: this
// package plays both and records Pod objects with their addresses, from
// which kube-controller-manager builds the EndpointSlices). The clusters'
// gateway nodes reach each other over an "internet" bridge namespace.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
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

// The node and pod networks every simulated cluster has: identical in all
// clusters, as the examples' values have them (cluster.nodeCIDR,
// cluster.podCIDR), with a /24 of the pod network per node.
const (
	nodeNetworkBits = 16
	// nodeNetworkRouter is the node network's default gateway.
	nodeNetworkRouter = "10.250.0.1"
	// gatewayNodeIP is the first node's; worker i (1…) gets .21, .22, ….
	gatewayNodeIP = "10.250.0.11"
	// gatewayLabel marks the node that may run the gateway (brokers'
	// nodeSelector in the e2e values).
	gatewayLabel = "kubelink.mandelsoft.org/gateway"
)

// nodePodCIDR is node i's pod range (0: the gateway node).
func nodePodCIDR(i int) netip.Prefix {
	return netip.MustParsePrefix(fmt.Sprintf("100.96.%d.0/24", i+1))
}

func nodeIP(i int) string {
	if i == 0 {
		return gatewayNodeIP
	}
	return fmt.Sprintf("10.250.0.%d", 20+i)
}

// ClusterConfig describes one simulated cluster.
type ClusterConfig struct {
	Name string
	// PublicIP is the gateway node's address on the internet bridge (/24).
	PublicIP string
	// Hosts maps names (e.g. gateway endpoints) to addresses for the
	// cluster's resolver (/etc/netns/<ns>/hosts), on the nodes and in
	// pods.
	Hosts map[string]string
	// Workers is the number of worker nodes beside the gateway node
	// (default 1).
	Workers int
}

// Node is one simulated node: a network namespace on the cluster's node
// network with a pod range, a kube-proxy and the pods placed on it.
type Node struct {
	Name    string // the Node object's name
	NS      string
	IP      string // on the node network
	PodCIDR netip.Prefix
	Labels  map[string]string
	podNets int // pod namespaces made so far
	pods    int // pods placed, for spreading
}

// Cluster is one running simulated cluster: its nodes (the gateway node
// first; NS is its namespace) with the control plane on the gateway node.
type Cluster struct {
	Name     string
	NS       string
	PublicIP string
	Env      *testenv.Env
	Client   kubernetes.Interface
	Nodes    []*Node
	// Values are the chart values of the main release as helm computed them.
	Values map[string]any

	m           *Mesh
	dir         string
	hosts       string
	serviceCIDR netip.Prefix
	mu          sync.Mutex
	procs       map[string][]*netns.Proc
	stops       map[string]chan struct{}
	// pods are the workloads' pods by workload name.
	pods map[string][]*podInfo
	// nat are the rules of the gateway node's nat table (the CNI's
	// masquerade and the cloud load balancer's DNAT to exposed pods).
	nat []string
}

// podInfo is one pod of a workload.
type podInfo struct {
	name string
	node *Node
	ns   string // network namespace: the node's or its own
	ip   string
	tmpl *corev1.PodTemplateSpec
	// servers close what the test serves for the pod (the echo).
	servers []func()
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

// AddCluster builds the cluster's nodes: the gateway node on the internet
// bridge, the workers, all on a node network (a bridge of their own) with
// routes between their pod ranges, as a host-gateway CNI would set up.
// StartAPI, Install and StartWorkload follow.
func (m *Mesh) AddCluster(cfg ClusterConfig) *Cluster {
	m.t.Helper()
	c := &Cluster{Name: cfg.Name, PublicIP: cfg.PublicIP, m: m, dir: filepath.Join(m.dir, cfg.Name),
		procs: map[string][]*netns.Proc{}, stops: map[string]chan struct{}{}, pods: map[string][]*podInfo{}}
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		m.t.Fatal(err)
	}
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
	}
	workers := cfg.Workers
	if workers == 0 {
		workers = 1
	}
	// The node network: a bridge in a namespace of its own whose address
	// is every node's default gateway, a router that knows nothing of the
	// mesh (it has no routes beyond the node network), as a cloud VPC's.
	lan := m.Lab.NS(cfg.Name + "-lan")
	m.Lab.Bridge(lan, "br0", fmt.Sprintf("%s/%d", nodeNetworkRouter, nodeNetworkBits))
	for i := 0; i <= workers; i++ {
		n := &Node{IP: nodeIP(i), PodCIDR: nodePodCIDR(i)}
		if i == 0 {
			n.Name, n.NS = cfg.Name+"-gw", m.Lab.NS(cfg.Name)
			n.Labels = map[string]string{gatewayLabel: "true"}
			m.Lab.Veth(n.NS, "eth0", cfg.PublicIP+"/24", m.inet, "p-"+cfg.Name, "")
			m.Lab.Attach(m.inet, "p-"+cfg.Name, "br0")
			c.NS = n.NS
		} else {
			n.Name = fmt.Sprintf("%s-w%d", cfg.Name, i)
			n.NS = m.Lab.NS(n.Name)
			n.Labels = map[string]string{}
		}
		n.Labels["kubernetes.io/hostname"] = n.Name
		n.Labels["kubernetes.io/os"] = "linux"
		lanIf := fmt.Sprintf("n%d", i)
		m.Lab.Veth(n.NS, "eth1", fmt.Sprintf("%s/%d", n.IP, nodeNetworkBits), lan, lanIf, "")
		m.Lab.Attach(lan, lanIf, "br0")
		m.Lab.Run("ip", "-n", n.NS, "route", "add", "default", "via", nodeNetworkRouter, "dev", "eth1")
		m.Lab.Forwarding(n.NS)
		c.writeHosts(n.NS)
		c.Nodes = append(c.Nodes, n)
	}
	// The CNI's routes: every other node's pod range via that node.
	for _, n := range c.Nodes {
		for _, o := range c.Nodes {
			if o != n {
				m.Lab.Run("ip", "-n", n.NS, "route", "add", o.PodCIDR.String(), "via", o.IP, "dev", "eth1")
			}
		}
	}
	// The CNI's part on the gateway node: pods reach the internet with the
	// node's address.
	c.addNAT(fmt.Sprintf("postrouting ip saddr %s oifname \"eth0\" masquerade", clusterPodCIDR))
	m.Clusters[c.Name] = c
	return c
}

// clusterPodCIDR is every cluster's pod network (cluster.podCIDR of the
// examples).
const clusterPodCIDR = "100.96.0.0/11"

// writeHosts gives a network namespace the cluster's hosts file (`ip netns
// exec` bind-mounts /etc/netns/<ns>/hosts over /etc/hosts).
func (c *Cluster) writeHosts(ns string) {
	c.m.t.Helper()
	if c.hosts == "" {
		return
	}
	c.writeEtc(ns, "hosts", c.hosts)
}

// writeResolv gives a network namespace the resolv.conf the kubelet writes
// for ClusterFirst pods of a namespace ("" for a node: the search list
// without the namespace).
func (c *Cluster) writeResolv(ns, namespace string) {
	c.m.t.Helper()
	domain := c.Value("cluster.domain")
	if domain == "" {
		domain = v1alpha1.DefaultClusterDomain
	}
	search := "svc." + domain + " " + domain
	if namespace != "" {
		search = namespace + ".svc." + domain + " " + search
	}
	c.writeEtc(ns, "resolv.conf", fmt.Sprintf("search %s\nnameserver %s\noptions ndots:5\n", search, c.ClusterDNSIP()))
}

func (c *Cluster) writeEtc(ns, name, content string) {
	c.m.t.Helper()
	d := filepath.Join("/etc/netns", ns)
	c.m.mkdirHost(d)
	if err := os.WriteFile(filepath.Join(d, name), []byte(content), 0o644); err != nil {
		c.m.t.Fatal(err)
	}
}

// StartAPI starts the cluster's control plane on the gateway node (etcd,
// kube-apiserver advertising the node's address as the `kubernetes`
// Service endpoint, kube-controller-manager), registers the nodes and
// starts a kube-proxy on each; it returns once every node reaches the
// apiserver through the `kubernetes` Service's ClusterIP.
func (c *Cluster) StartAPI(serviceCIDR string) {
	c.m.t.Helper()
	c.serviceCIDR = netip.MustParsePrefix(serviceCIDR).Masked()
	c.Env = testenv.Start(c.m.t, testenv.Options{
		ServiceCIDR:      serviceCIDR,
		Wrap:             []string{"ip", "netns", "exec", c.NS},
		Dial:             netns.DialContext(c.NS),
		AdvertiseAddress: gatewayNodeIP,
	})
	c.Client = c.Env.Client()
	// Registered after the apiserver's cleanup, so it runs before it: the
	// workloads shut down gracefully while the API is still there (a
	// broker releases its Lease, a router removes its routes) instead of
	// waiting for a dead apiserver until they are killed.
	c.m.t.Cleanup(c.m.stopClusters)
	if err := c.Env.StartControllerManager(); err != nil {
		c.m.t.Fatal(err)
	}
	c.registerNodes()
	c.startKubeProxies()
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
		args = append(args, "-f", c.valuesFile(release+"-overrides", overrides))
	}
	c.Helm(args...)
	return c.releaseValues(release)
}

// UpgradeRelease is `helm upgrade --reuse-values` of an installed release
// with more values on top (a list replaces the release's list), as a user
// changes one setting; it returns the computed values.
func (c *Cluster) UpgradeRelease(release string, overrides map[string]any) map[string]any {
	c.m.t.Helper()
	f := c.valuesFile(fmt.Sprintf("%s-upgrade-%d", release, time.Now().UnixNano()), overrides)
	c.Helm("upgrade", release, filepath.Join(testenv.RepoRoot(), "chart", "kubelink"), "-n", "kubelink", "--reuse-values", "-f", f)
	v := c.releaseValues(release)
	if release == "kubelink" {
		c.Values = v
	}
	return v
}

// valuesFile writes values into a file of the cluster's directory.
func (c *Cluster) valuesFile(name string, values map[string]any) string {
	c.m.t.Helper()
	b, err := yaml.Marshal(values)
	if err != nil {
		c.m.t.Fatal(err)
	}
	f := filepath.Join(c.dir, name+".yaml")
	if err := os.WriteFile(f, b, 0o600); err != nil {
		c.m.t.Fatal(err)
	}
	return f
}

// releaseValues reads a release's computed values.
func (c *Cluster) releaseValues(release string) map[string]any {
	c.m.t.Helper()
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

// ClusterDNSIP is the cluster DNS Service's ClusterIP: the 10th address of
// the service CIDR, as kubeadm chooses it (and as the chart assumes).
func (c *Cluster) ClusterDNSIP() string {
	return mesh.NthAddress(c.serviceCIDR, 10).String()
}

// APIServiceIP is the `kubernetes` Service's ClusterIP (the service
// CIDR's first address).
func (c *Cluster) APIServiceIP() string { return c.serviceCIDR.Addr().Next().String() }

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

// binaryFor maps the images to the locally built binaries ("" for the echo
// image, which the test serves itself).
func (m *Mesh) binaryFor(image string) (string, error) {
	repo := image
	if i := strings.LastIndex(repo, "@"); i >= 0 {
		repo = repo[:i]
	}
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	switch {
	case repo == echoRepository:
		return "", nil
	case strings.HasSuffix(repo, "/coredns") || repo == "coredns":
		return m.Bin.CoreDNS, nil
	case strings.HasSuffix(repo, "/netd") || repo == "netd":
		return m.Bin.Netd, nil
	}
	return "", fmt.Errorf("no local binary for image %s", image)
}

// StartWorkload runs the pods of a Deployment (spec.replicas of them) or a
// DaemonSet (one per matching node) as the scheduler and the kubelet
// would: each pod is placed on a node its nodeSelector allows (Deployments
// spread over the nodes with the fewest pods, workers first), gets a
// network namespace and address of its own unless it uses the host
// network, is recorded as a Pod object with its addresses (from which the
// EndpointSlice controller builds endpoints) and runs its containers. A
// pod keeps its name, node, network namespace and address across
// restarts.
func (c *Cluster) StartWorkload(kind, namespace, name string) {
	c.m.t.Helper()
	ctx := context.Background()
	tmpl, replicas, err := templateOf(ctx, c.Client, kind, namespace, name)
	if err != nil {
		c.m.t.Fatal(err)
	}
	c.mu.Lock()
	pis := c.pods[name]
	c.mu.Unlock()
	if pis == nil {
		for i, n := range c.place(kind, tmpl, replicas) {
			pi := &podInfo{name: fmt.Sprintf("%s-%d", name, i), node: n, ns: n.NS, ip: n.IP}
			if kind == "DaemonSet" {
				pi.name = name + "-" + n.Name
			}
			if !tmpl.Spec.HostNetwork {
				pi.ns, pi.ip = c.podNetwork(n, pi.name, namespace)
			}
			pis = append(pis, pi)
		}
		if len(pis) == 0 {
			c.m.t.Fatalf("%s: no node for %s %s/%s", c.Name, kind, namespace, name)
		}
		c.mu.Lock()
		c.pods[name] = pis
		c.mu.Unlock()
	}
	for _, pi := range pis {
		pi.tmpl = tmpl
		host := PodHost{NodeName: pi.node.Name, HostIP: pi.node.IP, PodIP: pi.ip, Binary: c.m.binaryFor}
		pods, err := podsOf(ctx, c.Client, host, caOf(c.Env), c.APIServiceIP(), "443", filepath.Join(c.dir, pi.node.Name), namespace, pi.name, tmpl)
		if err != nil {
			c.m.t.Fatal(err)
		}
		if err := c.recordPod(ctx, namespace, pi); err != nil {
			c.m.t.Fatal(err)
		}
		for _, p := range pods {
			if p.Argv[0] == "" {
				c.serveEcho(pi, p)
				continue
			}
			for _, mp := range p.mountPoints() {
				c.m.mkdirHost(mp)
			}
			c.supervise(pi.ns, pi.name+"-"+p.Container, p.Env, p.shellCommand())
		}
	}
}

// place picks the nodes of a workload's pods: every node its nodeSelector
// allows for a DaemonSet; for a Deployment, replicas times the allowed
// worker with the fewest pods so far (the gateway node only when the
// nodeSelector picks it).
func (c *Cluster) place(kind string, tmpl *corev1.PodTemplateSpec, replicas int) []*Node {
	var allowed []*Node
	for _, n := range append(append([]*Node(nil), c.Nodes[1:]...), c.Nodes[0]) {
		ok := true
		for k, v := range tmpl.Spec.NodeSelector {
			if n.Labels[k] != v {
				ok = false
			}
		}
		if ok {
			allowed = append(allowed, n)
		}
	}
	if kind == "DaemonSet" {
		return allowed
	}
	// The gateway node is for the gateways (it is usually dedicated or
	// tainted): other Deployments go to the workers.
	if len(allowed) > 1 && tmpl.Spec.NodeSelector[gatewayLabel] == "" {
		allowed = slices.DeleteFunc(allowed, func(n *Node) bool { return n == c.Nodes[0] })
	}
	var out []*Node
	for i := 0; i < replicas && len(allowed) > 0; i++ {
		best := allowed[0]
		for _, n := range allowed[1:] {
			if n.pods < best.pods {
				best = n
			}
		}
		best.pods++
		out = append(out, best)
	}
	return out
}

// PodIP is the address of a workload's first pod (its node's for
// hostNetwork pods).
func (c *Cluster) PodIP(workload string) string { return c.podOf(workload).ip }

// PodNS is the network namespace of a workload's first pod.
func (c *Cluster) PodNS(workload string) string { return c.podOf(workload).ns }

func (c *Cluster) podOf(workload string) *podInfo {
	c.m.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	pis := c.pods[workload]
	if len(pis) == 0 {
		c.m.t.Fatalf("%s: no pod of workload %s", c.Name, workload)
	}
	return pis[0]
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

func caOf(e *testenv.Env) []byte { return e.Config.TLSClientConfig.CAData }

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

// waitFor polls cond until it returns nil; on timeout it fails with the
// last error and the logs of the cluster's processes.
func waitFor(t testing.TB, timeout time.Duration, cond func() error, c *Cluster) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("timed out after %s: %v\n%s", timeout, err, c.procLogs(""))
}

// procLogs are the last 3,000 bytes of the log of every process of c whose
// pod name starts with prefix ("": all), for failure messages.
func (c *Cluster) procLogs(prefix string) string {
	var logs []string
	c.mu.Lock()
	names := make([]string, 0, len(c.procs))
	for n := range c.procs {
		if strings.HasPrefix(n, prefix) {
			names = append(names, n)
		}
	}
	c.mu.Unlock()
	sort.Strings(names)
	for _, n := range names {
		l := c.Log(n)
		if len(l) > 3000 {
			l = l[len(l)-3000:]
		}
		logs = append(logs, "--- "+c.Name+" "+n+"\n"+l)
	}
	return strings.Join(logs, "\n")
}

// starts counts, per container of c's pods whose name starts with prefix,
// the processes started so far: a restart (the supervisor's, after an
// exit) adds one.
func (c *Cluster) starts(prefix string) map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for n, ps := range c.procs {
		if strings.HasPrefix(n, prefix) {
			out[n] = len(ps)
		}
	}
	return out
}
