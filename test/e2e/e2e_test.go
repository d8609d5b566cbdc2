package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/test/netns"
	"github.com/kubelink/kubelink/test/testenv"
)

// The e2e mesh (README.md, "End-to-end test"):
//
//	kubelink1  node mode: WireGuard to kubelink2 (release kubelink, served
//	           links kubelink2) and a TLS bridge to kubelink3 (release
//	           kubelink-bridge, examples/kubelink1/values-kubelink3-bridge.yaml);
//	           relays between the two
//	kubelink2  pod mode: the gateway in a pod of its own, the router on the
//	           node; WireGuard to kubelink1 and kubelink4; MeshServices;
//	           reaches kubelink3 through kubelink1
//	kubelink3  node mode: TLS bridge to kubelink1; reaches kubelink2 through
//	           kubelink1
//	kubelink4  node mode: WireGuard to kubelink2 only; kubelink2's service
//	           CIDR: they link without cidr and meet through MeshServices
//
// kubelink1 also runs netd sync (sync.enabled), which follows kubelink3
// once step "s" gives that link spec.apiAccess (sync_test.go).
const (
	// meshVIP is kubelink2's MeshService on a virtual mesh address.
	meshVIP = "192.168.0.50"
	// meshPort is kubelink2's MeshService on a port of its link address.
	meshPort = 8081
	// keepalive of every gateway: a dead peer is Down after 3 of them.
	keepalive = "--keepalive=5s"
)

// member describes one cluster of the e2e mesh.
type member struct {
	name      string
	publicIP  string
	values    string // examples values file of the main release
	wireguard bool
	priv, pub string // WireGuard key pair, generated with `netd keygen`
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

// gwHost is the gateway name of a cluster, as the examples' endpoints and
// the bridge certificates have it.
func gwHost(cluster string) string { return "gw." + cluster + ".example.com" }

// testMesh is the running e2e mesh.
type testMesh struct {
	*Mesh
	members  []*member
	byName   map[string]*member
	clusters map[string]*Cluster
	// links are the foreign links each cluster was given.
	links map[string][]map[string]any
	// echo maps a cluster to the ClusterIP of its echo Service.
	echo map[string]string
}

// bringUp starts the four clusters from the examples' values and waits
// for nothing: the scenarios wait for what they need.
func bringUp(t *testing.T) *testMesh {
	t.Helper()
	netns.Require(t)
	bins := RequireBinaries(t)
	if _, err := exec.LookPath("nft"); err != nil {
		testenv.SkipOrFail(t, "nft not installed (Debian package nftables)")
	}
	root := testenv.RepoRoot()
	example := func(p string) string { return filepath.Join(root, "examples", p) }
	members := []*member{
		{name: "kubelink1", publicIP: "172.31.0.11", values: example("kubelink1/values.yaml"), wireguard: true},
		{name: "kubelink2", publicIP: "172.31.0.12", values: example("kubelink2/values.yaml"), wireguard: true},
		{name: "kubelink3", publicIP: "172.31.0.13", values: example("kubelink3/values-bridge.yaml")},
		{name: "kubelink4", publicIP: "172.31.0.14", values: example("kubelink4/values.yaml"), wireguard: true},
	}
	byName := map[string]*member{}
	hosts := map[string]string{}
	for _, mb := range members {
		if mb.wireguard {
			mb.priv, mb.pub = keygen(t, bins.Netd)
		}
		v := readValues(t, mb.values)
		mb.serviceCIDR, mb.linkAddress = valueAt(v, "cluster.serviceCIDR"), valueAt(v, "mesh.linkAddress")
		byName[mb.name] = mb
		hosts[gwHost(mb.name)] = mb.publicIP
	}
	// A direct link dials the peer's gateway; a relayed one goes through
	// another link (spec.gatewayLink).
	direct := func(peer string, kv ...any) map[string]any {
		p := byName[peer]
		l := map[string]any{"name": peer, "cidr": p.serviceCIDR, "clusterAddress": p.linkAddress, "endpoint": gwHost(peer) + ":8777"}
		if p.wireguard {
			l["publicKey"] = p.pub
		}
		return with(l, kv...)
	}
	relayed := func(peer, via string, kv ...any) map[string]any {
		p := byName[peer]
		return with(map[string]any{"name": peer, "cidr": p.serviceCIDR, "clusterAddress": p.linkAddress, "gatewayLink": via}, kv...)
	}
	vip := []string{meshVIP + "/32"}
	links := map[string][]map[string]any{
		"kubelink1": {direct("kubelink2", "egress", vip)}, // kubelink3: in the bridge release's example
		"kubelink2": {direct("kubelink1"), relayed("kubelink3", "kubelink1"), direct("kubelink4", "cidr", nil)},
		"kubelink3": {direct("kubelink1"), relayed("kubelink2", "kubelink1", "egress", vip)},
		"kubelink4": {direct("kubelink2", "cidr", nil, "egress", vip)},
	}
	ca, err := testenv.NewCA("kubelink e2e mesh CA")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMesh(t, bins)
	tm := &testMesh{Mesh: m, members: members, byName: byName, clusters: map[string]*Cluster{}, links: links, echo: map[string]string{}}
	ctx := context.Background()
	m.Step("bring up clusters", func() {
		for _, mb := range members {
			c := m.AddCluster(ClusterConfig{Name: mb.name, PublicIP: mb.publicIP, Hosts: hosts})
			c.StartAPI(mb.serviceCIDR)
			if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kubelink"}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			// The gateways' identities, as an operator would create them
			// (netd would generate a WireGuard key into an empty secret
			// otherwise): a WireGuard key, a bridge certificate naming the
			// gateway's endpoint host.
			var secrets []*corev1.Secret
			if mb.wireguard {
				secrets = append(secrets, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "kubelink-wireguard", Namespace: "kubelink"},
					StringData: map[string]string{"WireguardPrivateKey": mb.priv}})
			}
			if mb.name == "kubelink1" || mb.name == "kubelink3" {
				crt, key, err := ca.Gateway(gwHost(mb.name))
				if err != nil {
					t.Fatal(err)
				}
				secrets = append(secrets, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "kubelink-tls", Namespace: "kubelink"}, Type: corev1.SecretTypeTLS,
					Data: map[string][]byte{"tls.crt": crt, "tls.key": key, "ca.crt": ca.PEM()}})
			}
			for _, s := range secrets {
				if _, err := c.Client.CoreV1().Secrets("kubelink").Create(ctx, s, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			// Gateways run on the gateway node, the one with a public
			// address.
			onGateway := map[string]any{gatewayLabel: "true"}
			broker := map[string]any{"replicas": 1, "extraArgs": []string{keepalive}, "nodeSelector": onGateway}
			if mb.wireguard {
				broker["secretName"] = "kubelink-wireguard"
			}
			if mb.name == "kubelink1" {
				// Both gateways share the node; the main one leaves the
				// bridge link to the kubelink-bridge release.
				broker["podMode"] = false
				broker["servedLinks"] = []string{"kubelink2"}
			}
			// The cluster DNS and the echo Service first: the DNS takes
			// the 10th address, and kubelink4's echo the very ClusterIP of
			// kubelink2's, which a Service of the chart could otherwise
			// have been given at random.
			c.CreateClusterDNS()
			clusterIP := "" // allocated
			if mb.name == "kubelink4" {
				clusterIP = tm.echo["kubelink2"]
			}
			tm.echo[mb.name] = c.DeployEcho("default", "echo", clusterIP, 1)
			var ls []any
			for _, l := range links[mb.name] {
				ls = append(ls, l)
			}
			overrides := map[string]any{
				"broker": broker,
				"dns":    map[string]any{"replicas": 1},
				"links":  ls,
			}
			if mb.name == "kubelink1" {
				// netd sync, as a user enables it: it follows the KubeLinks
				// that get spec.apiAccess (step "s", sync_test.go). Only
				// namespace default: every member has the chart's Services
				// under the same names in namespace kubelink, and kubelink1's
				// kubelink DNS Service must not get kubelink3's DNS as an
				// endpoint.
				overrides["sync"] = map[string]any{"enabled": true, "includedNamespaces": []string{"default"}}
			}
			if mb.name == "kubelink2" {
				// The gateway is a pod: the workers reach it over VXLAN
				// (the node network routes no mesh addresses, and the
				// pod's address is not on the node network).
				overrides["router"] = map[string]any{"vxlan": map[string]any{"enabled": true}}
			}
			c.Install([]string{mb.values}, overrides)
			if mb.name == "kubelink1" {
				c.InstallRelease("kubelink-bridge", []string{example("kubelink1/values-kubelink3-bridge.yaml")}, map[string]any{
					"broker": map[string]any{"replicas": 1, "extraArgs": []string{keepalive}, "nodeSelector": onGateway},
				})
			}
			tm.clusters[mb.name] = c
		}
		for _, mb := range members {
			c := tm.clusters[mb.name]
			startAll(t, c)
			c.StartWorkload("Deployment", "kube-system", "coredns")
			c.StartWorkload("Deployment", "default", "echo")
			c.RunPod("default", "client")
			c.Expose("kubelink", "kubelink-broker", "kubelink-broker")
		}
		// kubelink2 exposes its echo Service to the mesh twice.
		k2 := tm.clusters["kubelink2"]
		k2.applyMeshService(t, &v1alpha1.MeshService{ObjectMeta: metav1.ObjectMeta{Name: "echo-vip", Namespace: "default"},
			Spec: v1alpha1.MeshServiceSpec{Service: "echo", MeshAddress: meshVIP}})
		k2.applyMeshService(t, &v1alpha1.MeshService{ObjectMeta: metav1.ObjectMeta{Name: "echo-port", Namespace: "default"},
			Spec: v1alpha1.MeshServiceSpec{Service: "echo", Ports: []v1alpha1.ServicePort{{Name: "web", Port: meshPort}},
				Endpoints: []v1alpha1.ServiceEndpoint{{PortMappings: []v1alpha1.PortMapping{{Port: intstr.FromString("web"), TargetPort: intstr.FromString("http")}}}}}})
	})
	return tm
}

// with sets (or, with a nil value, deletes) keys of a link.
func with(l map[string]any, kv ...any) map[string]any {
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(l, kv[i].(string))
			continue
		}
		l[kv[i].(string)] = kv[i+1]
	}
	return l
}

// applyMeshService creates a MeshService.
func (c *Cluster) applyMeshService(t *testing.T, ms *v1alpha1.MeshService) {
	t.Helper()
	ms.APIVersion, ms.Kind = v1alpha1.SchemeGroupVersion.String(), "MeshService"
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(ms)
	if err != nil {
		t.Fatal(err)
	}
	r := c.Env.Dynamic().Resource(v1alpha1.SchemeGroupVersion.WithResource(v1alpha1.MeshServiceResource)).Namespace(ms.Namespace)
	if _, err := r.Create(context.Background(), &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating MeshService %s/%s in %s: %v", ms.Namespace, ms.Name, c.Name, err)
	}
}

// meshService reads a MeshService.
func (c *Cluster) meshService(t *testing.T, namespace, name string) (*v1alpha1.MeshService, error) {
	t.Helper()
	u, err := c.Env.Dynamic().Resource(v1alpha1.SchemeGroupVersion.WithResource(v1alpha1.MeshServiceResource)).Namespace(namespace).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	var ms v1alpha1.MeshService
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &ms); err != nil {
		return nil, err
	}
	return &ms, nil
}

// TestMeshInABox checks reachability over WireGuard, the TLS bridge and a
// relay, DNS, link status, the router and MeshServices of a pod-mode
// gateway, overlapping service CIDRs, gateway failure and an API outage on
// the e2e mesh.
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
	k1, k2, k3, k4 := clusters["kubelink1"], clusters["kubelink2"], clusters["kubelink3"], clusters["kubelink4"]
	k2Addr := addrOf(tm.byName["kubelink2"].linkAddress)

	m.Step("d: every link Up on every cluster, LocalLinks carry the WireGuard keys", func() {
		for _, mb := range members {
			c := clusters[mb.name]
			want := len(tm.links[mb.name]) + 1
			if mb.name == "kubelink1" {
				want++ // kubelink3, from the bridge release
			}
			waitFor(t, 60*time.Second, func() error {
				links := c.KubeLinks()
				if len(links) != want {
					return fmt.Errorf("%s: %d KubeLinks, want %d", mb.name, len(links), want)
				}
				for name, l := range links {
					state, _, _ := unstructured.NestedString(l.Object, "status", "state")
					gw, _, _ := unstructured.NestedString(l.Object, "status", "gateway")
					if state != "Up" {
						return fmt.Errorf("%s: link %s is %q", mb.name, name, state)
					}
					// Each link is served by one broker: kubelink1's bridge
					// link by the second release's.
					wantGW := "kubelink-broker-0"
					if mb.name == "kubelink1" && name == "kubelink3" {
						wantGW = "kubelink-bridge-broker-0"
					}
					if gw != wantGW {
						return fmt.Errorf("%s: link %s has gateway %q, want %q", mb.name, name, gw, wantGW)
					}
					if name == mb.name {
						key, _, _ := unstructured.NestedString(l.Object, "status", "publicKey")
						if key != mb.pub {
							return fmt.Errorf("%s: LocalLink status.publicKey %q, want %q", mb.name, key, mb.pub)
						}
					}
				}
				return nil
			}, c)
			out, err := c.Env.Kubectl(ctx, "get", "klink")
			if err != nil {
				t.Fatalf("kubectl get klink in %s: %v", mb.name, err)
			}
			t.Logf("%s: kubectl get klink\n%s", mb.name, out)
		}
	})

	m.Step("user: a pod on a worker node of every cluster resolves a remote service through its cluster DNS and reaches it", func() {
		for _, f := range []struct{ from, to, kind string }{
			{"kubelink1", "kubelink3", "node-mode bridge (the second broker)"},
			{"kubelink3", "kubelink1", "node-mode bridge"},
			{"kubelink1", "kubelink2", "node-mode WireGuard to pod-mode WireGuard"},
			{"kubelink2", "kubelink1", "pod-mode WireGuard"},
			{"kubelink2", "kubelink3", "pod mode, relayed through kubelink1"},
			{"kubelink3", "kubelink2", "node-mode bridge, relayed through kubelink1"},
		} {
			userFlow(t, tm, f.from, f.to, f.kind)
		}
	})

	m.Step("a: kubelink1 reaches kubelink2 (WireGuard) and kubelink3 (bridge); kubelink3 reaches kubelink2 through kubelink1", func() {
		expectEcho(t, k1, echo["kubelink2"], "echo from kubelink2, you are 192.168.0.11:")
		expectEcho(t, k1, echo["kubelink3"], "echo from kubelink3, you are 192.168.0.11:")
		expectEcho(t, k3, echo["kubelink2"], "echo from kubelink2, you are 192.168.0.13:")
		expectEcho(t, k3, echo["kubelink1"], "echo from kubelink1, you are 192.168.0.13:")
	})

	m.Step("b: DNS through the kubelink DNS of kubelink1 (node) and kubelink2 (pod behind the router)", func() {
		dnsIP := k1.Value("dns.serviceIP")
		a := dig(t, k1, dnsIP, "echo.default.svc.kubelink2.kubelink", "A")
		if !strings.Contains(a, echo["kubelink2"]) || !strings.Contains(a, "status: NOERROR") {
			t.Fatalf("A answer lacks %s:\n%s", echo["kubelink2"], a)
		}
		srv := dig(t, k1, dnsIP, "_http._tcp.echo.default.svc.kubelink2.kubelink", "SRV")
		if !strings.Contains(srv, "echo.default.svc.kubelink2.kubelink.") || strings.Contains(srv, "cluster.local") {
			t.Fatalf("SRV target not rewritten into the mesh domain:\n%s", srv)
		}
		if out := dig(t, k1, dnsIP, "kubelink2.kubelink", "A"); !strings.Contains(out, k2Addr) {
			t.Fatalf("cluster record:\n%s", out)
		}
		// Over the bridge: kubelink3's cluster DNS answers kubelink1's.
		if out := dig(t, k1, dnsIP, "echo.default.svc.kubelink3.kubelink", "A"); !strings.Contains(out, echo["kubelink3"]) {
			t.Fatalf("A answer through the bridge lacks %s:\n%s", echo["kubelink3"], out)
		}
		// kubelink2's kubelink DNS runs in a pod: its queries to the other
		// clusters' DNS take the router's route to the gateway pod, which
		// SNATs them to the link address.
		dns2 := k2.Value("dns.serviceIP")
		if out := dig(t, k2, dns2, "echo.default.svc.kubelink1.kubelink", "A"); !strings.Contains(out, echo["kubelink1"]) {
			t.Fatalf("kubelink2's DNS for kubelink1's echo:\n%s", out)
		}
		if out := dig(t, k2, dns2, "echo.default.svc.kubelink3.kubelink", "A"); !strings.Contains(out, echo["kubelink3"]) {
			t.Fatalf("kubelink2's DNS for kubelink3's echo (relayed):\n%s", out)
		}
	})

	m.Step("c: router and MeshServices of kubelink2's pod-mode gateway", func() {
		gw := k2.PodIP("kubelink-broker")
		// The router routes the mesh and the remote service CIDRs (the
		// relayed kubelink3's too; kubelink4 has none) to the gateway pod.
		waitFor(t, 30*time.Second, func() error {
			got := routes(t, k2.Exec, "98")
			for _, dst := range []string{"192.168.0.0/24", "100.64.0.0/20", "100.64.32.0/20"} {
				if !strings.Contains(got, dst+" via "+gw+" ") {
					return fmt.Errorf("kubelink2's node lacks the router's route %s via %s:\n%s", dst, gw, got)
				}
			}
			if n := strings.Count(got, "\n"); n != 3 {
				return fmt.Errorf("kubelink2's node has %d router routes, want 3:\n%s", n, got)
			}
			return nil
		}, k2)
		// kubelink2's worker reaches the gateway over VXLAN: the same
		// destinations through the router's device, and the user flow from
		// its pod carried by it, as the device counters of both ends show.
		w2 := k2.Worker()
		waitFor(t, 30*time.Second, func() error {
			got := routes(t, func(ctx context.Context, args ...string) (string, error) { return execIn(ctx, w2.NS, args...) }, "98")
			for _, dst := range []string{"192.168.0.0/24", "100.64.0.0/20", "100.64.32.0/20"} {
				if !strings.Contains(got, dst+" via ") || !strings.Contains(got, "dev kubelink-vxlan") {
					return fmt.Errorf("kubelink2's worker lacks the router's VXLAN route %s:\n%s", dst, got)
				}
			}
			if n := strings.Count(got, "\n"); n != 3 {
				return fmt.Errorf("kubelink2's worker has %d router routes, want 3:\n%s", n, got)
			}
			return nil
		}, k2)
		txBefore, _ := vxlanCounters(t, w2.NS)
		_, rxBefore := vxlanCounters(t, k2.NS)
		userFlow(t, tm, "kubelink2", "kubelink1", "pod-mode WireGuard, over the worker's VXLAN")
		txAfter, _ := vxlanCounters(t, w2.NS)
		_, rxAfter := vxlanCounters(t, k2.NS)
		if txAfter <= txBefore || rxAfter <= rxBefore {
			t.Fatalf("kubelink2: the worker pod's flow did not cross VXLAN: worker tx %d -> %d, gateway node rx %d -> %d", txBefore, txAfter, rxBefore, rxAfter)
		}
		t.Logf("kubelink2: VXLAN carried the worker pod's flow: worker tx +%d packets, gateway node rx +%d", txAfter-txBefore, rxAfter-rxBefore)
		// Where the gateway is on the node (node mode), the router knows
		// and routes nothing: the broker's device routes serve the node.
		// Workers route the mesh to the gateway node.
		for _, c := range []*Cluster{k1, k3, k4} {
			w := c.Worker()
			waitFor(t, 30*time.Second, func() error {
				got := routes(t, func(ctx context.Context, args ...string) (string, error) { return execIn(ctx, w.NS, args...) }, "98")
				if !strings.Contains(got, "192.168.0.0/24 via "+gatewayNodeIP+" ") {
					return fmt.Errorf("%s: worker %s lacks the router's mesh route via the gateway node %s:\n%s", c.Name, w.Name, gatewayNodeIP, got)
				}
				return nil
			}, c)
		}
		for _, c := range []*Cluster{k1, k3, k4} {
			waitFor(t, 30*time.Second, func() error {
				if got := routes(t, c.Exec, "98"); got != "" {
					return fmt.Errorf("%s: router routes on a gateway node:\n%s", c.Name, got)
				}
				out, err := c.Exec(ctx, "curl", "-sS", "--max-time", "3", "http://127.0.0.1:"+c.Value("router.httpPort")+"/metrics")
				if err != nil || !strings.Contains(out, `state="local"`) {
					return fmt.Errorf("%s: router does not report a local gateway: %v", c.Name, err)
				}
				return nil
			}, c)
		}
		// The node's own traffic takes the router's route and leaves the
		// gateway pod SNATed to the link address.
		expectEcho(t, k2, echo["kubelink1"], "echo from kubelink1, you are "+k2Addr+":")
		expectEcho(t, k2, echo["kubelink3"], "echo from kubelink3, you are "+k2Addr+":")

		for name, want := range map[string]v1alpha1.MeshServiceTarget{
			"echo-vip":  {Address: meshVIP},
			"echo-port": {Address: k2Addr, Port: meshPort},
		} {
			waitFor(t, 30*time.Second, func() error {
				ms, err := k2.meshService(t, "default", name)
				if err != nil {
					return err
				}
				if ms.Status.State != v1alpha1.StateOK {
					return fmt.Errorf("MeshService %s: %s %q", name, ms.Status.State, ms.Status.Message)
				}
				for _, tg := range ms.Status.Targets {
					if tg.Address == want.Address && (want.Port == 0 || tg.Port == want.Port) && slices.ContainsFunc(tg.Targets, func(s string) bool {
						return strings.HasPrefix(s, echo["kubelink2"])
					}) {
						return nil
					}
				}
				return fmt.Errorf("MeshService %s: targets %+v, want %s:%d to the echo Service %s", name, ms.Status.Targets, want.Address, want.Port, echo["kubelink2"])
			}, k2)
		}
		out, err := k2.Env.Kubectl(ctx, "get", "msvc", "-A", "-o", "wide")
		if err != nil || strings.Count(out, " Ok ") != 2 {
			t.Fatalf("kubectl get msvc in kubelink2: %q %v", out, err)
		}
		t.Logf("kubelink2: kubectl get msvc -A -o wide\n%s", out)
		vip, port := "http://"+meshVIP+"/", fmt.Sprintf("http://%s:%d/", k2Addr, meshPort)
		for _, c := range []*Cluster{k1, k3} {
			expectURL(t, c, vip, "echo from kubelink2")
			expectURL(t, c, port, "echo from kubelink2")
		}
	})

	m.Step("g: kubelink4 shares kubelink2's service CIDR and meets it only through MeshServices", func() {
		vip, port := "http://"+meshVIP+"/", fmt.Sprintf("http://%s:%d/", k2Addr, meshPort)
		expectURL(t, k4, vip, "echo from kubelink2")
		expectURL(t, k4, port, "echo from kubelink2")
		// The same from a pod on kubelink4's worker (routed to the gateway
		// node by the router, SNATed there); the pod's cluster DNS knows
		// kubelink2's cluster record.
		{
			ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			out, err := k4.ExecPod(ctx, "client", "dig", "+short", "+tries=2", "+time=3", "kubelink2.kubelink", "A")
			cancel()
			if err != nil || strings.TrimSpace(out) != k2Addr {
				t.Fatalf("dig kubelink2.kubelink in kubelink4's client pod: %v: %q, want %s", err, out, k2Addr)
			}
		}
		for _, u := range []string{vip, port} {
			ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			out, err := k4.ExecPod(ctx, "client", "curl", "-sS", "--max-time", "5", "--retry", "3", "--retry-all-errors", u)
			cancel()
			if err != nil || !strings.HasPrefix(out, "echo from kubelink2") {
				t.Fatalf("curl %s from kubelink4's client pod: %v: %q", u, err, out)
			}
		}
		// kubelink2's echo ClusterIP is kubelink4's own address range: it
		// leads to kubelink4's echo (the same ClusterIP), never across.
		expectEcho(t, k4, echo["kubelink2"], "echo from kubelink4, you are ")
		cidr := tm.byName["kubelink2"].serviceCIDR
		if got := routes(t, k4.Exec, "97"); strings.Contains(got, cidr) || !strings.Contains(got, meshVIP+" dev ") {
			t.Fatalf("kubelink4's gateway routes:\n%s\nwant %s/32 and no %s", got, meshVIP, cidr)
		}
		if got := routes(t, func(ctx context.Context, args ...string) (string, error) {
			return k2.ExecPod(ctx, "kubelink-broker", args...)
		}, "97"); strings.Contains(got, cidr) {
			t.Fatalf("kubelink2's gateway routes its own service CIDR into the tunnel:\n%s", got)
		}
		if l := k2.KubeLinks()["kubelink4"]; l == nil || valueAt(l.Object, "spec.cidr") != "" {
			t.Fatalf("kubelink2's KubeLink for kubelink4 must have no cidr: %v", l)
		}
		// kubelink1 never learns about kubelink4: the same ClusterIP is
		// kubelink2's there.
		if _, ok := k1.KubeLinks()["kubelink4"]; ok {
			t.Fatalf("kubelink1 has a KubeLink for kubelink4")
		}
		expectEcho(t, k1, echo["kubelink2"], "echo from kubelink2, you are 192.168.0.11:")
	})

	m.Step("s: netd sync: kubelink1's echo without endpoints served by kubelink3, gated on kubelink3's link", func() {
		syncFlow(t, tm)
	})

	m.Step("e: gateway of kubelink2 (pod mode) dies and comes back", func() {
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
		// Up means a handshake; the data path of a restarted WireGuard peer
		// may take longer (stale sessions on the other side). Measure it,
		// with the tunnel counters of both ends while it does not work.
		recovered(t, k1, echo["kubelink2"], "echo from kubelink2", 45*time.Second, tunnelDiag(k1, k2), gatewayLogs(k1, k2))
		expectURL(t, k1, "http://"+meshVIP+"/", "echo from kubelink2")
	})

	m.Step("f: kubelink1's apiserver is down", func() {
		before := k1.starts("kubelink-")
		stopping := time.Now()
		k1.Env.StopAPIServer()
		// Past the gateways' renew deadline (two thirds of their 15 s
		// Lease): nobody can take the Lease over while the API server is
		// away, so the gateways keep their data path (netd/leader).
		time.Sleep(time.Until(stopping.Add(12 * time.Second)))
		t.Logf("kubelink1's apiserver stopped %s ago", time.Since(stopping).Round(time.Millisecond))
		expectEcho(t, k1, echo["kubelink2"], "echo from kubelink2")
		expectEcho(t, k1, echo["kubelink3"], "echo from kubelink3")
		if out := dig(t, k1, k1.Value("dns.serviceIP"), "echo.default.svc.kubelink2.kubelink", "A"); !strings.Contains(out, echo["kubelink2"]) {
			t.Fatalf("DNS broke without the apiserver:\n%s", out)
		}
		// Nothing of kubelink's restarted meanwhile (the gateways did not
		// give up their Lease).
		if after := k1.starts("kubelink-"); !maps.Equal(after, before) {
			t.Fatalf("kubelink1's kubelink processes restarted during the apiserver outage (processes per container before %v, after %v):\n%s", before, after, k1.procLogs("kubelink-"))
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
		lines = append(lines, fmt.Sprintf("  %-100s %8s", s.Name, s.D.Round(time.Millisecond)))
	}
	t.Logf("e2e summary (%s total):\n%s", time.Since(began).Round(time.Second), strings.Join(lines, "\n"))
}

// userFlow is what a user does in a pod of cluster from (`kubectl run`,
// on a worker node): resolve the echo Service of cluster to by its mesh
// name through the pod's own resolv.conf (the cluster DNS, which hands the
// mesh domain to the kubelink DNS), then curl it by name. The answer must
// come from a pod of the remote echo Deployment on a worker node there,
// through the remote kube-proxy, and name the caller as from's link
// address (the gateway's SNAT).
func userFlow(t *testing.T, tm *testMesh, from, to, kind string) {
	t.Helper()
	c, r := tm.clusters[from], tm.clusters[to]
	name := "echo.default.svc." + to + ".kubelink"
	began := time.Now()
	var got string
	waitFor(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		out, err := c.ExecPod(ctx, "client", "dig", "+short", "+tries=1", "+time=3", name, "A")
		if err != nil {
			return fmt.Errorf("%s: dig %s in the client pod: %v: %s", from, name, err, out)
		}
		got = strings.TrimSpace(out)
		if got != tm.echo[to] {
			return fmt.Errorf("%s: %s resolved to %q, want %s (%s)", from, name, got, tm.echo[to], kind)
		}
		return nil
	}, c)
	resolved := time.Since(began)
	echoPod := r.podOf("echo")
	if echoPod.node == r.Nodes[0] {
		t.Fatalf("%s: the echo pod runs on the gateway node", to)
	}
	want := fmt.Sprintf("echo from %s, you are %s:", to, addrOf(tm.byName[from].linkAddress))
	wantPod := fmt.Sprintf(", pod %s on %s", echoPod.name, echoPod.node.Name)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := c.ExecPod(ctx, "client", "curl", "-sS", "--max-time", "5", "--retry", "3", "--retry-all-errors", "http://"+name+"/")
	if err != nil || !strings.HasPrefix(out, want) || !strings.Contains(out, wantPod) {
		t.Fatalf("%s -> %s (%s): curl http://%s/ from the client pod on %s: %v: %q, want %q…%q", from, to, kind, name, c.Worker().Name, err, out, want, wantPod)
	}
	t.Logf("%s -> %s (%s): %s = %s (resolved in %s); %s", from, to, kind, name, got, resolved.Round(time.Millisecond), strings.TrimSpace(out))
}

// vxlanCounters sums the packets sent and received by the VXLAN devices of
// a network namespace.
func vxlanCounters(t *testing.T, ns string) (tx, rx uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := execIn(ctx, ns, "ip", "-j", "-s", "link", "show", "type", "vxlan")
	if err != nil {
		t.Fatalf("ip link in %s: %v: %s", ns, err, out)
	}
	var links []struct {
		Stats struct {
			RX struct{ Packets uint64 } `json:"rx"`
			TX struct{ Packets uint64 } `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		t.Fatalf("ip -j link in %s: %v: %s", ns, err, out)
	}
	for _, l := range links {
		tx += l.Stats.TX.Packets
		rx += l.Stats.RX.Packets
	}
	return tx, rx
}

// addrOf is the address of an address/prefix.
func addrOf(prefix string) string { return strings.SplitN(prefix, "/", 2)[0] }

// routes lists the routes of an rtnetlink protocol (97: the broker's
// device routes, 98: the router's) in a namespace.
func routes(t *testing.T, run func(ctx context.Context, args ...string) (string, error), proto string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := run(ctx, "ip", "route", "show", "proto", proto)
	if err != nil {
		t.Fatalf("ip route: %v: %s", err, out)
	}
	return out
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

func curl(t *testing.T, c *Cluster, u string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := c.Exec(ctx, "curl", "-sS", "--max-time", "5", "--retry", "3", "--retry-all-errors", u)
	if err != nil {
		t.Fatalf("curl %s from %s: %v: %s", u, c.Name, err, out)
	}
	return out
}

// expectURL fetches a URL from the cluster's node and wants want in the
// answer.
func expectURL(t *testing.T, c *Cluster, u, want string) {
	t.Helper()
	if out := curl(t, c, u); !strings.Contains(out, want) {
		t.Fatalf("curl %s from %s: %q, want %q", u, c.Name, out, want)
	}
}

// recovered curls ip from c (single 2 s attempts) until the answer holds
// want, at most within; it logs how long that took and, for every failed
// attempt, what diag says (tunnel counters). It fails only if the data path
// does not come back within, with what logs returns (the gateways' logs).
func recovered(t *testing.T, c *Cluster, ip, want string, within time.Duration, diag func(context.Context) string, logs func() string) {
	t.Helper()
	began := time.Now()
	var fails []string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := c.Exec(ctx, "curl", "-sS", "--max-time", "2", "http://"+ip+"/")
		if err == nil && strings.Contains(out, want) {
			cancel()
			if len(fails) > 0 {
				t.Logf("data path to %s back after %s, %d failed attempts:\n  %s", ip, time.Since(began).Round(time.Millisecond), len(fails), strings.Join(fails, "\n  "))
			}
			return
		}
		fails = append(fails, fmt.Sprintf("%s: %v %s; %s", time.Since(began).Round(time.Millisecond), err, strings.TrimSpace(out), diag(ctx)))
		cancel()
		if time.Since(began) > within {
			t.Fatalf("curl http://%s/ from %s: no answer within %s:\n  %s\n%s", ip, c.Name, within, strings.Join(fails, "\n  "), logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// tunnelDiag reports the tunnel counters of kubelink1's link to kubelink2
// and back, from both brokers' /metrics.
func tunnelDiag(k1, k2 *Cluster) func(context.Context) string {
	return func(ctx context.Context) string {
		a, _ := k1.Exec(ctx, "curl", "-s", "--max-time", "2", "http://127.0.0.1:"+k1.Value("broker.httpPort")+"/metrics")
		b, _ := k2.ExecPod(ctx, "kubelink-broker", "curl", "-s", "--max-time", "2", "http://127.0.0.1:"+k2.Value("broker.httpPort")+"/metrics")
		return "kubelink1: " + linkMetrics(a, "kubelink2") + " | kubelink2: " + linkMetrics(b, "kubelink1")
	}
}

// gatewayLogs are the broker logs of both clusters, for a failure message.
func gatewayLogs(k1, k2 *Cluster) func() string {
	return func() string { return k1.procLogs("kubelink-") + "\n" + k2.procLogs("kubelink-broker") }
}

// linkMetrics picks a link's tunnel counters out of a broker's /metrics.
func linkMetrics(metrics, link string) string {
	var out []string
	for _, l := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(l, "netd_link_") && strings.Contains(l, `link="`+link+`"`) {
			out = append(out, strings.TrimPrefix(l, "netd_link_"))
		}
	}
	return strings.Join(out, ", ")
}

// expectEcho fetches an echo Service by ClusterIP.
func expectEcho(t *testing.T, c *Cluster, ip, want string) {
	t.Helper()
	expectURL(t, c, "http://"+ip+"/", want)
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
