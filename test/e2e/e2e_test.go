package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/kubelink/kubelink/test/netns"
	"github.com/kubelink/kubelink/test/testenv"
)

// member describes one cluster of the e2e mesh.
type member struct {
	name     string
	publicIP string
	values   string // examples values file
	priv     string // WireGuard key pair, generated with `netd keygen`
	pub      string
	// from the values file
	serviceCIDR, linkAddress string
}

func keygen(t *testing.T, netd string) (priv, pub string) {
	t.Helper()
	out, err := exec.Command(netd, "keygen").Output()
	if err != nil {
		t.Fatalf("netd keygen: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		switch {
		case !ok:
		case k == "publicKey":
			pub = strings.TrimSpace(v)
		default:
			priv = strings.TrimSpace(v)
		}
	}
	if priv == "" || pub == "" {
		t.Fatalf("unexpected keygen output %q", out)
	}
	return priv, pub
}

func readValues(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func str(v map[string]any, path string) string {
	var cur any = v
	for _, p := range strings.Split(path, ".") {
		m, _ := cur.(map[string]any)
		cur = m[p]
	}
	if cur == nil {
		return ""
	}
	return fmt.Sprint(cur)
}

// testMesh is the running e2e mesh.
type testMesh struct {
	*Mesh
	members  []*member
	clusters map[string]*Cluster
	// echo maps a cluster to the ClusterIP of its echo Service.
	echo map[string]string
}

// bringUp starts kubelink1 and kubelink2 from the examples' values,
// connected by WireGuard.
func bringUp(t *testing.T) *testMesh {
	t.Helper()
	netns.Require(t)
	bins := RequireBinaries(t)
	root := testenv.RepoRoot()
	members := []*member{
		{name: "kubelink1", publicIP: "172.31.0.11", values: filepath.Join(root, "examples/kubelink1/values.yaml")},
		{name: "kubelink2", publicIP: "172.31.0.12", values: filepath.Join(root, "examples/kubelink2/values.yaml")},
	}
	for _, mb := range members {
		mb.priv, mb.pub = keygen(t, bins.Netd)
		v := readValues(t, mb.values)
		mb.serviceCIDR, mb.linkAddress = str(v, "cluster.serviceCIDR"), str(v, "mesh.linkAddress")
	}
	m := NewMesh(t, bins)
	tm := &testMesh{Mesh: m, members: members, clusters: map[string]*Cluster{}, echo: map[string]string{}}
	ctx := context.Background()
	m.Step("bring up clusters", func() {
		for _, mb := range members {
			c := m.AddCluster(ClusterConfig{Name: mb.name, PublicIP: mb.publicIP})
			c.StartAPI(mb.serviceCIDR)
			// The gateway's key, as an operator would create it (netd
			// would generate one into an empty secret otherwise).
			if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kubelink"}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "kubelink-wireguard", Namespace: "kubelink"}, StringData: map[string]string{"WireguardPrivateKey": mb.priv}}
			if _, err := c.Client.CoreV1().Secrets("kubelink").Create(ctx, sec, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			var links []any
			for _, o := range members {
				if o != mb {
					links = append(links, map[string]any{
						"name": o.name, "cidr": o.serviceCIDR, "clusterAddress": o.linkAddress,
						"endpoint": o.publicIP + ":8777", "publicKey": o.pub,
					})
				}
			}
			c.Install([]string{mb.values}, map[string]any{
				// A short keepalive: a dead peer is Down after 3 intervals.
				"broker": map[string]any{"podMode": false, "replicas": 1, "secretName": "kubelink-wireguard", "extraArgs": []string{"--keepalive=5s"}},
				"dns":    map[string]any{"replicas": 1, "clusterDNSIntegration": map[string]any{"enabled": false}},
				"router": map[string]any{"enabled": false},
				"links":  links,
			})
			c.StartClusterDNS()
			tm.echo[mb.name] = c.ServeHTTP("default", "echo")
			tm.clusters[mb.name] = c
		}
		for _, c := range tm.clusters {
			startAll(t, c)
			c.Forward(c.Value("dns.serviceIP"), 53, "127.0.0.1:"+c.Value("dns.port"))
		}
	})
	return tm
}

// TestMeshInABox checks reachability, DNS, link status, gateway failure and
// an API outage on the e2e mesh.
func TestMeshInABox(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	if os.Getenv("KUBELINK_DEMO") != "" {
		t.Skip("demo run")
	}
	began := time.Now()
	tm := bringUp(t)
	m, members, clusters, echo := tm.Mesh, tm.members, tm.clusters, tm.echo
	ctx := context.Background()
	k1, k2 := clusters["kubelink1"], clusters["kubelink2"]

	m.Step("d: links Up, LocalLinks carry the public keys", func() {
		for _, mb := range members {
			c := clusters[mb.name]
			waitFor(t, 60*time.Second, func() error {
				for name, l := range c.KubeLinks() {
					state, _, _ := unstructured.NestedString(l.Object, "status", "state")
					if name == mb.name {
						key, _, _ := unstructured.NestedString(l.Object, "status", "publicKey")
						if key != mb.pub {
							return fmt.Errorf("%s: LocalLink status.publicKey %q, want %q", mb.name, key, mb.pub)
						}
						continue
					}
					if state != "Up" {
						return fmt.Errorf("%s: link %s is %q", mb.name, name, state)
					}
				}
				return nil
			}, c)
			out, err := c.Env.Kubectl(ctx, "get", "klink")
			if err != nil || !strings.Contains(out, "Up") {
				t.Fatalf("kubectl get klink in %s: %q %v", mb.name, out, err)
			}
			t.Logf("%s: kubectl get klink\n%s", mb.name, out)
		}
	})

	m.Step("a: ClusterIP of kubelink2 reached from kubelink1 through WireGuard", func() {
		out := curl(t, k1, echo["kubelink2"])
		if !strings.Contains(out, "echo from kubelink2") {
			t.Fatalf("curl: %q", out)
		}
	})

	m.Step("b: DNS through kubelink1's kubelink DNS", func() {
		dnsIP := k1.Value("dns.serviceIP")
		a := dig(t, k1, dnsIP, "echo.default.svc.kubelink2.kubelink", "A")
		if !strings.Contains(a, echo["kubelink2"]) || !strings.Contains(a, "status: NOERROR") {
			t.Fatalf("A answer lacks %s:\n%s", echo["kubelink2"], a)
		}
		srv := dig(t, k1, dnsIP, "_http._tcp.echo.default.svc.kubelink2.kubelink", "SRV")
		if !strings.Contains(srv, "echo.default.svc.kubelink2.kubelink.") || strings.Contains(srv, "cluster.local") {
			t.Fatalf("SRV target not rewritten into the mesh domain:\n%s", srv)
		}
		local := dig(t, k1, dnsIP, "kubelink2.kubelink", "A")
		if !strings.Contains(local, strings.SplitN(members[1].linkAddress, "/", 2)[0]) {
			t.Fatalf("cluster record:\n%s", local)
		}
	})

	m.Step("e: gateway of kubelink2 dies and comes back", func() {
		k2.StopWorkload(brokerName(t, k2), syscall.SIGKILL)
		killed := time.Now()
		waitFor(t, 90*time.Second, func() error {
			st := linkState(t, k1, "kubelink2")
			if st == "Up" {
				return fmt.Errorf("still Up")
			}
			return nil
		}, k1)
		t.Logf("kubelink1 saw kubelink2 leave Up after %s", time.Since(killed).Round(time.Millisecond))
		q := time.Now()
		out := dig(t, k1, k1.Value("dns.serviceIP"), "echo.default.svc.kubelink2.kubelink", "A")
		if !strings.Contains(out, "SERVFAIL") || time.Since(q) > time.Second {
			t.Fatalf("DNS for a down link: %s after %s", out, time.Since(q))
		}
		k2.StartWorkload("Deployment", "kubelink", brokerName(t, k2))
		restarted := time.Now()
		waitFor(t, 90*time.Second, func() error {
			if st := linkState(t, k1, "kubelink2"); st != "Up" {
				return fmt.Errorf("link is %q", st)
			}
			return nil
		}, k1)
		t.Logf("kubelink2 Up again %s after the gateway restart", time.Since(restarted).Round(time.Millisecond))
		if out := curl(t, k1, echo["kubelink2"]); !strings.Contains(out, "echo from kubelink2") {
			t.Fatalf("traffic did not resume: %q", out)
		}
	})

	m.Step("f: kubelink1's apiserver is down", func() {
		k1.Env.StopAPIServer()
		if out := curl(t, k1, echo["kubelink2"]); !strings.Contains(out, "echo from kubelink2") {
			t.Fatalf("tunnel broke without the apiserver: %q", out)
		}
		if out := dig(t, k1, k1.Value("dns.serviceIP"), "echo.default.svc.kubelink2.kubelink", "A"); !strings.Contains(out, echo["kubelink2"]) {
			t.Fatalf("DNS broke without the apiserver:\n%s", out)
		}
		// Meanwhile kubelink2's gateway dies; kubelink1 can report it only
		// once its apiserver is back.
		k2.StopWorkload(brokerName(t, k2), syscall.SIGKILL)
		if err := k1.Env.StartAPIServer(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 120*time.Second, func() error {
			if st := linkState(t, k1, "kubelink2"); st == "Up" {
				return fmt.Errorf("status not updated after the apiserver came back")
			}
			return nil
		}, k1)
	})

	var lines []string
	for _, s := range m.Timings {
		lines = append(lines, fmt.Sprintf("  %-70s %8s", s.Name, s.D.Round(time.Millisecond)))
	}
	t.Logf("e2e summary (%s total):\n%s", time.Since(began).Round(time.Second), strings.Join(lines, "\n"))
}

func startAll(t *testing.T, c *Cluster) {
	t.Helper()
	ctx := context.Background()
	deps, err := c.Client.AppsV1().Deployments("kubelink").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range deps.Items {
		c.StartWorkload("Deployment", "kubelink", d.Name)
	}
	dss, err := c.Client.AppsV1().DaemonSets("kubelink").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dss.Items {
		c.StartWorkload("DaemonSet", "kubelink", d.Name)
	}
}

func brokerName(t *testing.T, c *Cluster) string {
	t.Helper()
	deps, err := c.Client.AppsV1().Deployments("kubelink").List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=broker"})
	if err != nil || len(deps.Items) != 1 {
		t.Fatalf("broker deployment: %v (%d found)", err, len(deps.Items))
	}
	return deps.Items[0].Name
}

func linkState(t *testing.T, c *Cluster, name string) string {
	t.Helper()
	l := c.KubeLinks()[name]
	if l == nil {
		return ""
	}
	s, _, _ := unstructured.NestedString(l.Object, "status", "state")
	return s
}

func curl(t *testing.T, c *Cluster, ip string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := c.Exec(ctx, "curl", "-sS", "--max-time", "5", "--retry", "3", "--retry-all-errors", "http://"+ip+"/")
	if err != nil {
		t.Fatalf("curl %s from %s: %v: %s", ip, c.Name, err, out)
	}
	return out
}

func dig(t *testing.T, c *Cluster, server, name, qtype string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := c.Exec(ctx, "dig", "@"+server, name, qtype, "+tries=1", "+time=3")
	if err != nil {
		t.Fatalf("dig %s %s from %s: %v: %s", name, qtype, c.Name, err, out)
	}
	return out
}

// waitFor polls cond until it returns nil; on timeout it fails with the
// last error and the logs of the cluster's processes.
func waitFor(t *testing.T, timeout time.Duration, cond func() error, c *Cluster) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	var logs []string
	c.mu.Lock()
	names := make([]string, 0, len(c.procs))
	for n := range c.procs {
		names = append(names, n)
	}
	c.mu.Unlock()
	sort.Strings(names)
	for _, n := range names {
		l := c.Log(n)
		if len(l) > 3000 {
			l = l[len(l)-3000:]
		}
		logs = append(logs, "--- "+n+"\n"+l)
	}
	t.Fatalf("timed out after %s: %v\n%s", timeout, err, strings.Join(logs, "\n"))
}
