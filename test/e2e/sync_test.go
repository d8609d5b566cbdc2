package e2e

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubelink/kubelink/api/synced"
	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/netd/broker"
	remotesync "github.com/kubelink/kubelink/netd/sync/remote"
	"github.com/kubelink/kubelink/test/testenv"
)

// netd sync in the e2e mesh (issue #13, item 10): kubelink1 runs it (its
// main release has sync.enabled), and follows kubelink3 once kubelink1's
// KubeLink for kubelink3 has spec.apiAccess. kubelink3's API is reached the
// way the chart's default has it: its `kubernetes` Service (the first
// address of the link's cidr, port 443) through the mesh — from the sync
// pod on kubelink1's worker to the gateway node, over the TLS bridge, to
// kube-proxy on kubelink3's gateway node and its apiserver there.
const (
	// syncRemote is the cluster kubelink1's netd sync follows.
	syncRemote = "kubelink3"
	// syncSecret holds the token and CA netd kubeconfig hands out for it.
	syncSecret = "kubelink3-api"
	// syncBridgeRelease is kubelink1's release that has the KubeLink for
	// kubelink3 (examples/kubelink1/values-kubelink3-bridge.yaml).
	syncBridgeRelease = "kubelink-bridge"
	// clusterLocalEcho is the echo Service by its cluster-local name.
	clusterLocalEcho = "echo.default.svc.cluster.local"
	// conditionAPIAccess is the KubeLink condition netd sync writes.
	conditionAPIAccess = "APIAccess"
	// advertisedSA is the ServiceAccount of kubelink3 whose token its
	// gateway advertises (--service-account).
	advertisedSA = "mesh-reader"
	// remotecfgReader is the ServiceAccount, ClusterRole and binding netd
	// kubeconfig creates in the remote cluster (its defaults).
	remotecfgReader = "kubelink-remote-reader"
	// endpointSliceController is the managed-by value of the slices
	// kube-controller-manager builds from the Service's own pods.
	endpointSliceController = "endpointslice-controller.k8s.io"
)

// syncFlow is the user's view of netd sync: kubelink1's echo Service has no
// endpoints of its own; with API access to kubelink3 a pod in kubelink1
// curls echo.default.svc.cluster.local and is answered by kubelink3's echo
// pod through the mesh (service mode: the endpoint is kubelink3's echo
// ClusterIP). When kubelink3's gateway dies, the endpoint turns not ready
// within the Down window, so kube-proxy refuses at once instead of sending
// the request into a dead link; with the gateway back it is served again.
// kubelink1's echo gets its pod back at the end.
func syncFlow(t *testing.T, tm *testMesh) {
	t.Helper()
	k1, r := tm.clusters["kubelink1"], tm.clusters[syncRemote]
	ctx := context.Background()
	url := "http://" + clusterLocalEcho + "/"
	want := fmt.Sprintf("echo from %s, you are %s:", syncRemote, addrOf(tm.byName["kubelink1"].linkAddress))
	echoPod := r.podOf("echo")
	wantPod := fmt.Sprintf(", pod %s on %s", echoPod.name, echoPod.node.Name)
	remoteIP := tm.echo[syncRemote]
	// netd sync runs in a pod of kubelink1's pod network on a worker: its
	// requests to kubelink3's API go pod → node → gateway node → tunnel.
	sp := k1.podOf("kubelink-sync")
	if sp.node == k1.Nodes[0] || sp.ns == sp.node.NS {
		t.Fatalf("kubelink1: the netd sync pod %s runs on %s in namespace %s, want a pod of its own on a worker", sp.name, sp.node.Name, sp.ns)
	}

	// A local Service without local endpoints: kubelink1's echo scaled to
	// 0. The client pod's curl is refused (kube-proxy rejects a Service
	// without endpoints).
	k1.ScaleDeployment("default", "echo", 0)
	var refusal string
	waitFor(t, 30*time.Second, func() error {
		if n := readyAddresses(t, k1, discoveryv1.LabelManagedBy+"="+endpointSliceController); len(n) > 0 {
			return fmt.Errorf("kubelink1's echo still has local endpoints %v after scaling to 0", n)
		}
		var err error
		refusal, err = expectRefused(k1, url)
		return err
	}, k1)
	t.Logf("kubelink1's echo scaled to 0: curl %s from the client pod: %s", clusterLocalEcho, refusal)

	// API access, as the user gives it: netd kubeconfig, run on kubelink1's
	// node against kubelink3's API through the mesh, creates the read-only
	// identity there and writes the Secret into kubelink1; the link gets
	// spec.apiAccess through the values of the release that has it.
	began := time.Now()
	remoteKubeconfig := throughMesh(t, k1, r)
	{
		ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		out, err := k1.Exec(ctx, tm.Bin.Netd, "kubeconfig", "--output", "apiaccess", "--kubeconfig", remoteKubeconfig,
			"--local-kubeconfig", k1.Env.Kubeconfig, "--secret-name", syncSecret, "--secret-namespace", "kubelink", "--token-duration", "2h")
		cancel()
		if err != nil {
			t.Fatalf("netd kubeconfig --output apiaccess against %s from kubelink1's node: %v\n%s", syncRemote, err, out)
		}
		t.Logf("netd kubeconfig --output apiaccess (kubelink1's node, %s's API through the mesh):\n%s", syncRemote, out)
	}
	links := withAPIAccess(t, syncRemote, map[string]any{"name": syncSecret, "namespace": "kubelink"})
	k1.UpgradeRelease(syncBridgeRelease, map[string]any{"links": links})
	upgraded := time.Since(began)

	waitFor(t, 60*time.Second, func() error { return apiAccessTrue(k1, syncRemote) }, k1)
	connected := time.Since(began)
	waitFor(t, 30*time.Second, func() error { return syncedEndpoint(t, k1, remoteIP, true) }, k1)
	written := time.Since(began)
	var answer string
	waitFor(t, 30*time.Second, func() error {
		var err error
		answer, err = expectServed(k1, url, want, wantPod)
		return err
	}, k1)
	served := time.Since(began)
	t.Logf("kubelink1 (netd sync pod %s on %s, %s): netd kubeconfig and helm upgrade took %s; APIAccess True after %s, the slice of %s with its echo ClusterIP %s after %s, curl %s from the client pod answered by %s after %s: %s",
		sp.name, sp.node.Name, sp.ip, upgraded.Round(time.Millisecond), connected.Round(time.Millisecond), syncRemote, remoteIP, written.Round(time.Millisecond),
		clusterLocalEcho, syncRemote, served.Round(time.Millisecond), answer)
	if out, err := k1.Env.Kubectl(ctx, "get", "endpointslices", "-n", "default", "-l", discoveryv1.LabelServiceName+"=echo", "-L", synced.LabelSourceCluster); err == nil {
		t.Logf("kubelink1: kubectl get endpointslices -n default -l %s=echo\n%s", discoveryv1.LabelServiceName, out)
	}
	// Everything it wrote (its cleanup selector).
	if out, err := k1.Env.Kubectl(ctx, "get", "endpointslices", "-A", "-l", synced.CleanupSelector, "-L", synced.LabelSourceCluster); err == nil {
		t.Logf("kubelink1: kubectl get endpointslices -A -l %s\n%s", synced.CleanupSelector, out)
	}

	kubernetesModeDNS(t, k1, r, remoteIP)
	advertiseAPIAccess(t, r)

	// kubelink3's gateway dies: kubelink1's link leaves Up, the synced
	// endpoint turns not ready and curl is refused — all within the Down
	// window (3 keepalives) after the death.
	broker := brokerName(t, r)
	r.StopWorkload(broker, syscall.SIGKILL)
	killed := time.Now()
	waitFor(t, downWindow+10*time.Second, func() error {
		if st := linkState(t, k1, syncRemote); st == "Up" {
			return fmt.Errorf("kubelink1's link %s still Up %s after its gateway died", syncRemote, time.Since(killed).Round(time.Millisecond))
		}
		return nil
	}, k1)
	notUp := time.Since(killed)
	waitFor(t, downWindow, func() error { return syncedEndpoint(t, k1, remoteIP, false) }, k1)
	gated := time.Since(killed)
	var took time.Duration
	waitFor(t, downWindow, func() error {
		q := time.Now()
		var err error
		refusal, err = expectRefused(k1, url)
		took = time.Since(q)
		return err
	}, k1)
	refused := time.Since(killed)
	t.Logf("%s's gateway killed: kubelink1's link left Up after %s (%s), its synced endpoint not ready after %s, curl %s refused after %s (in %s: %s)",
		syncRemote, notUp.Round(time.Millisecond), linkState(t, k1, syncRemote), gated.Round(time.Millisecond), clusterLocalEcho,
		refused.Round(time.Millisecond), took.Round(time.Millisecond), refusal)
	if refused > downWindow {
		t.Fatalf("curl %s was still sent to %s %s after its gateway died, beyond the Down window %s", clusterLocalEcho, syncRemote, refused.Round(time.Millisecond), downWindow)
	}

	// The gateway comes back: Up, ready, served again.
	r.StartWorkload("Deployment", "kubelink", broker)
	restarted := time.Now()
	waitFor(t, 60*time.Second, func() error {
		if st := linkState(t, k1, syncRemote); st != "Up" {
			return fmt.Errorf("kubelink1's link %s is %q after the gateway restart", syncRemote, st)
		}
		return nil
	}, k1)
	up := time.Since(restarted)
	waitFor(t, 30*time.Second, func() error { return syncedEndpoint(t, k1, remoteIP, true) }, k1)
	ready := time.Since(restarted)
	waitFor(t, 30*time.Second, func() error {
		_, err := expectServed(k1, url, want, wantPod)
		return err
	}, k1)
	t.Logf("%s's gateway restarted: link Up after %s, synced endpoint ready after %s, curl answered by %s after %s",
		syncRemote, up.Round(time.Millisecond), ready.Round(time.Millisecond), syncRemote, time.Since(restarted).Round(time.Millisecond))

	// The restarted gateway advertises its API access; kubelink1 switches
	// to it, and the exported names (read with the advertised token) work.
	switchToAdvertised(t, k1, r)
	exportedNames(t, k1, r, tm.echo["kubelink1"], remoteIP, want, wantPod)

	// kubelink1's echo pod back: its Service has local endpoints again (and
	// kubelink3's beside them; later steps do not use kubelink1's echo).
	k1.ScaleDeployment("default", "echo", 1)
	waitFor(t, 30*time.Second, func() error {
		if n := readyAddresses(t, k1, discoveryv1.LabelManagedBy+"="+endpointSliceController); len(n) != 1 || n[0] != k1.PodIP("echo") {
			return fmt.Errorf("kubelink1's echo has local endpoints %v, want its pod %s", n, k1.PodIP("echo"))
		}
		return nil
	}, k1)
}

// kubernetesModeDNS: with remote's services followed (apiAccess), names
// below remote in the mesh domain are answered from memory (netd sync's
// service mirrors; the link's default DNS mode is kubernetes), from a pod
// on a worker of from through its cluster DNS. Proof that no query goes to
// remote's DNS: with remote's cluster DNS stopped, the name still resolves
// and an unknown one is an immediate NXDOMAIN.
func kubernetesModeDNS(t *testing.T, from, remote *Cluster, remoteIP string) {
	t.Helper()
	name := "echo.default.svc." + remote.Name + ".kubelink"
	dig := func(name string) (string, time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		q := time.Now()
		out, err := from.ExecPod(ctx, "client", "dig", "+tries=1", "+time=3", name, "A")
		return out, time.Since(q), err
	}
	waitFor(t, 30*time.Second, func() error {
		out, _, err := dig(name)
		if err != nil || !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, remoteIP) {
			return fmt.Errorf("dig %s from %s's client pod: %v\n%s", name, from.Name, err, out)
		}
		return nil
	}, from)
	remote.StopWorkload("coredns", syscall.SIGKILL)
	stopped := time.Now()
	out, took, err := dig(name)
	if err != nil || !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, remoteIP) {
		t.Fatalf("%s's cluster DNS stopped: dig %s from %s's client pod (kubernetes mode, answered from memory): %v\n%s", remote.Name, name, from.Name, err, out)
	}
	unknown := "nosuch.default.svc." + remote.Name + ".kubelink"
	nx, nxTook, err := dig(unknown)
	if err != nil || !strings.Contains(nx, "status: NXDOMAIN") || nxTook > 2*time.Second {
		t.Fatalf("dig %s (kubernetes mode: an authoritative NXDOMAIN at once) took %s: %v\n%s", unknown, nxTook, err, nx)
	}
	remote.StartWorkload("Deployment", "kube-system", "coredns")
	t.Logf("kubernetes mode: %s's cluster DNS stopped, %s from %s's client pod still %s (in %s), %s NXDOMAIN in %s; %s's DNS back after %s",
		remote.Name, name, from.Name, remoteIP, took.Round(time.Millisecond), unknown, nxTook.Round(time.Millisecond), remote.Name, time.Since(stopped).Round(time.Millisecond))
}

// downWindow is how long a silent peer stays Up: 3 keepalive intervals
// (netd/linkstate; every gateway runs with `keepalive`).
const downWindow = 3 * 5 * time.Second

// throughMesh writes an admin kubeconfig of remote whose server is remote's
// `kubernetes` Service (the first address of its service CIDR, port 443,
// in remote's apiserver certificate), as from's nodes reach it through the
// mesh.
func throughMesh(t *testing.T, from, remote *Cluster) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(remote.Env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range cfg.Clusters {
		cl.Server = "https://" + remote.APIServiceIP() + ":443"
	}
	path := filepath.Join(from.dir, remote.Name+"-through-mesh.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// withAPIAccess is the links of kubelink1's bridge release as its example
// values file has them, the link to cluster with spec.apiAccess.
func withAPIAccess(t *testing.T, cluster string, access map[string]any) []any {
	t.Helper()
	v := readValues(t, filepath.Join(testenv.RepoRoot(), "examples", "kubelink1", "values-kubelink3-bridge.yaml"))
	links, _ := v["links"].([]any)
	found := false
	for _, l := range links {
		if lm, ok := l.(map[string]any); ok && lm["name"] == cluster {
			lm["apiAccess"], found = access, true
		}
	}
	if !found {
		t.Fatalf("examples/kubelink1/values-kubelink3-bridge.yaml has no link %s", cluster)
	}
	return links
}

// apiAccessTrue checks the APIAccess condition of c's KubeLink for link.
func apiAccessTrue(c *Cluster, link string) error {
	l := c.KubeLinks()[link]
	if l == nil {
		return fmt.Errorf("%s: no KubeLink %s", c.Name, link)
	}
	conds, _, _ := unstructured.NestedSlice(l.Object, "status", "conditions")
	for _, x := range conds {
		cm, _ := x.(map[string]any)
		if cm["type"] != conditionAPIAccess {
			continue
		}
		if cm["status"] != string(metav1.ConditionTrue) {
			return fmt.Errorf("%s: KubeLink %s condition %s is %v (%v): %v", c.Name, link, conditionAPIAccess, cm["status"], cm["reason"], cm["message"])
		}
		return nil
	}
	return fmt.Errorf("%s: KubeLink %s has no %s condition yet (conditions %v)", c.Name, link, conditionAPIAccess, conds)
}

// echoSlices lists the slices of c's echo Service that match selector.
func echoSlices(t *testing.T, c *Cluster, selector string) []discoveryv1.EndpointSlice {
	t.Helper()
	sel := discoveryv1.LabelServiceName + "=echo"
	if selector != "" {
		sel += "," + selector
	}
	list, err := c.Client.DiscoveryV1().EndpointSlices("default").List(context.Background(), metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		t.Fatalf("%s: listing EndpointSlices %s: %v", c.Name, sel, err)
	}
	return list.Items
}

// readyAddresses are the ready endpoint addresses of c's echo slices that
// match selector.
func readyAddresses(t *testing.T, c *Cluster, selector string) []string {
	t.Helper()
	var out []string
	for _, s := range echoSlices(t, c, selector) {
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
				out = append(out, ep.Addresses...)
			}
		}
	}
	return out
}

// syncedEndpoint checks the slice netd sync wrote for c's echo from
// syncRemote: in service mode exactly one endpoint, the remote echo
// ClusterIP, on the Service's port 80, ready or not as wanted.
func syncedEndpoint(t *testing.T, c *Cluster, ip string, ready bool) error {
	t.Helper()
	slices := echoSlices(t, c, synced.LabelSourceCluster+"="+syncRemote)
	if len(slices) != 1 {
		return fmt.Errorf("%s: %d EndpointSlices of echo labelled %s=%s, want 1", c.Name, len(slices), synced.LabelSourceCluster, syncRemote)
	}
	s := slices[0]
	if s.Labels[discoveryv1.LabelManagedBy] != synced.ManagedBy {
		return fmt.Errorf("%s: slice %s managed by %q, want %q", c.Name, s.Name, s.Labels[discoveryv1.LabelManagedBy], synced.ManagedBy)
	}
	if len(s.Endpoints) != 1 || len(s.Endpoints[0].Addresses) != 1 || s.Endpoints[0].Addresses[0] != ip {
		return fmt.Errorf("%s: slice %s has endpoints %+v, want %s's echo ClusterIP %s (service mode)", c.Name, s.Name, s.Endpoints, syncRemote, ip)
	}
	if len(s.Ports) != 1 || s.Ports[0].Port == nil || *s.Ports[0].Port != 80 {
		return fmt.Errorf("%s: slice %s has ports %+v, want the Service's port 80", c.Name, s.Name, s.Ports)
	}
	cond := s.Endpoints[0].Conditions
	if got := cond.Ready == nil || *cond.Ready; got != ready {
		return fmt.Errorf("%s: the endpoint %s from %s is ready=%t, want %t", c.Name, ip, syncRemote, got, ready)
	}
	return nil
}

// curlPod runs curl in c's client pod (the pod's own resolv.conf and
// routes); code is curl's exit status.
func curlPod(c *Cluster, url string, maxTime time.Duration, args ...string) (out string, code int) {
	ctx, cancel := context.WithTimeout(context.Background(), maxTime+5*time.Second)
	defer cancel()
	// A connection that is neither accepted nor refused at once goes into
	// the mesh (or a dead link): give up on it after half a second.
	argv := append([]string{"curl", "-sS", "--connect-timeout", "0.5", "--max-time", fmt.Sprint(maxTime.Seconds())}, args...)
	out, err := c.ExecPod(ctx, "client", append(argv, url)...)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out, 0
	case errors.As(err, &ee):
		return out, ee.ExitCode()
	}
	return out + err.Error(), -1
}

// expectServed wants url answered by a given pod and returns the answer.
func expectServed(c *Cluster, url, want, wantPod string) (string, error) {
	out, code := curlPod(c, url, 5*time.Second)
	out = strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(out, want) || !strings.Contains(out, wantPod) {
		return out, fmt.Errorf("%s: curl %s from the client pod on %s: exit %d: %q, want %q…%q", c.Name, url, c.Worker().Name, code, out, want, wantPod)
	}
	return out, nil
}

// expectRefused wants curl refused at once, not answered and not timing
// out in a dead link: kube-proxy rejects a Service without ready endpoints
// ("Connection refused", exit 7; the gateways drop, never reject). It
// returns curl's account of the connect. The kernel sends such rejects at
// about one a second to a pod: an attempt right after another may time
// out, and is then repeated by the caller's wait.
func expectRefused(c *Cluster, url string) (string, error) {
	began := time.Now()
	out, code := curlPod(c, url, time.Second, "-v")
	took := time.Since(began)
	var connect []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "* connect to ") || strings.HasPrefix(l, "curl: ") {
			connect = append(connect, strings.TrimSpace(l))
		}
	}
	msg := strings.Join(connect, "; ")
	if code != 7 || !strings.Contains(msg, "Connection refused") || took > time.Second {
		return msg, fmt.Errorf("%s: curl %s from the client pod: exit %d after %s: %q, want refused at once (exit 7, Connection refused)", c.Name, url, code, took.Round(time.Millisecond), msg)
	}
	return msg, nil
}

// exportedNames: remote exports its echo Service with a ServiceExport, as a
// user writes it. From's client pod, through its own cluster DNS, then
// resolves and curls
//   - echo.default.svc.clusterset.local: the ServiceImport netd sync
//     writes in from, whose ClusterSetIP is from's own echo ClusterIP
//     (aggregation balances it over every exporting cluster; from's echo
//     has no pods here, so remote answers);
//   - echo.default.svc.global.<mesh>: the union over the Up clusters that
//     export it, answered by from's mesh DNS: remote's echo ClusterIP.
//
// Withdrawing the export removes both answers again.
func exportedNames(t *testing.T, from, remote *Cluster, localIP, remoteIP, want, wantPod string) {
	t.Helper()
	ctx := context.Background()
	export := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": remotesync.ServiceExports.GroupVersion().String(), "kind": "ServiceExport",
		"metadata": map[string]any{"name": "echo", "namespace": "default"},
	}}
	exports := remote.Env.Dynamic().Resource(remotesync.ServiceExports).Namespace("default")
	began := time.Now()
	if _, err := exports.Create(ctx, export, metav1.CreateOptions{}); err != nil {
		t.Fatalf("%s: creating ServiceExport default/echo: %v", remote.Name, err)
	}
	clusterset := "echo.default.svc.clusterset.local"
	global := "echo.default.svc.global.kubelink"
	for _, q := range []struct{ name, ip string }{{clusterset, localIP}, {global, remoteIP}} {
		waitFor(t, 30*time.Second, func() error {
			status, addrs, err := podLookup(from, q.name)
			if err != nil || status != "NOERROR" || !slices.Equal(addrs, []string{q.ip}) {
				return fmt.Errorf("%s: dig %s from the client pod: %s %v (%v), want exactly %s", from.Name, q.name, status, addrs, err, q.ip)
			}
			return nil
		}, from)
		resolved := time.Since(began)
		var answer string
		waitFor(t, 30*time.Second, func() error {
			var err error
			answer, err = expectServed(from, "http://"+q.name+"/", want, wantPod)
			return err
		}, from)
		t.Logf("%s exports echo: from %s's client pod %s resolves to %s after %s, curl answered by %s after %s: %s",
			remote.Name, from.Name, q.name, q.ip, resolved.Round(time.Millisecond), remote.Name, time.Since(began).Round(time.Millisecond), answer)
	}
	if err := exports.Delete(ctx, "echo", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("%s: deleting ServiceExport default/echo: %v", remote.Name, err)
	}
	withdrawn := time.Now()
	waitFor(t, 30*time.Second, func() error {
		if status, addrs, err := podLookup(from, clusterset); err != nil || status != "NXDOMAIN" {
			return fmt.Errorf("%s: dig %s after the export was withdrawn: %s %v (%v), want NXDOMAIN", from.Name, clusterset, status, addrs, err)
		}
		if _, addrs, err := podLookup(from, global); err != nil || slices.Contains(addrs, remoteIP) {
			return fmt.Errorf("%s: dig %s after the export was withdrawn: %v (%v), want no %s", from.Name, global, addrs, err, remoteIP)
		}
		return nil
	}, from)
	t.Logf("%s withdrew the export: %s NXDOMAIN and %s without %s after %s", remote.Name, clusterset, global, remoteIP, time.Since(withdrawn).Round(time.Millisecond))
}

// podLookup asks for name's A records from c's client pod through its
// resolv.conf (the cluster DNS), as an application would, and returns the
// response code and the addresses of the answer.
func podLookup(c *Cluster, name string) (status string, addrs []string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := c.ExecPod(ctx, "client", "dig", "+tries=1", "+time=3", "+noall", "+comments", "+answer", name, "A")
	if err != nil {
		return "", nil, fmt.Errorf("dig %s: %w: %s", name, err, out)
	}
	for _, l := range strings.Split(out, "\n") {
		if i := strings.Index(l, "status: "); i >= 0 {
			status = strings.TrimSuffix(strings.Fields(l[i+len("status: "):])[0], ",")
		}
		if f := strings.Fields(l); len(f) == 5 && f[3] == "A" && !strings.HasPrefix(l, ";") {
			addrs = append(addrs, f[4])
		}
	}
	slices.Sort(addrs)
	return status, addrs, nil
}

// advertiseAPIAccess is the seed's way to the same access: remote's bridge
// gateway advertises a token of a ServiceAccount of its own in the hello
// (--service-account, chart broker.serviceAccountAdvertisement). The user
// creates the ServiceAccount with read rights (here bound to the ClusterRole
// netd kubeconfig made) and sets the value; it takes effect when the
// gateway next starts.
func advertiseAPIAccess(t *testing.T, remote *Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, args := range [][]string{
		{"create", "serviceaccount", advertisedSA, "-n", "kubelink"},
		{"create", "clusterrolebinding", advertisedSA, "--clusterrole", remotecfgReader, "--serviceaccount", "kubelink:" + advertisedSA},
	} {
		if out, err := remote.Env.Kubectl(ctx, args...); err != nil {
			t.Fatalf("%s: kubectl %s: %v\n%s", remote.Name, strings.Join(args, " "), err, out)
		}
	}
	remote.UpgradeRelease("kubelink", map[string]any{"broker": map[string]any{"serviceAccountAdvertisement": advertisedSA}})
}

// switchToAdvertised: from's gateway has written remote's advertisement
// into the Secret <remote>-apiaccess; the user points the link's apiAccess
// at it and revokes the identity netd kubeconfig created (its
// ServiceAccount in remote, the Secret in from). netd sync reconnects with
// the advertised token; the caller's next remote change proves it reads
// with it (the old token no longer authenticates).
func switchToAdvertised(t *testing.T, from, remote *Cluster) {
	t.Helper()
	ctx := context.Background()
	name := remote.Name + broker.APIAccessSecretSuffix
	began := time.Now()
	waitFor(t, 30*time.Second, func() error {
		s, err := from.Client.CoreV1().Secrets("kubelink").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("%s: Secret kubelink/%s: %w", from.Name, name, err)
		}
		if len(s.Data[v1alpha1.APIAccessTokenKey]) == 0 || len(s.Data[v1alpha1.APIAccessCAKey]) == 0 || s.Labels[broker.LabelManagedBy] != broker.ManagedBy {
			return fmt.Errorf("%s: Secret kubelink/%s has keys %v and labels %v, want the advertised token and CA, managed by %s", from.Name, name, slices.Sorted(maps.Keys(s.Data)), s.Labels, broker.ManagedBy)
		}
		return nil
	}, from)
	written := time.Since(began)
	from.UpgradeRelease(syncBridgeRelease, map[string]any{"links": withAPIAccess(t, remote.Name, map[string]any{"name": name, "namespace": "kubelink"})})
	if err := remote.Client.CoreV1().ServiceAccounts("kubelink").Delete(ctx, remotecfgReader, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("%s: revoking netd kubeconfig's ServiceAccount kubelink/%s: %v", remote.Name, remotecfgReader, err)
	}
	if err := from.Client.CoreV1().Secrets("kubelink").Delete(ctx, syncSecret, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("%s: deleting Secret kubelink/%s: %v", from.Name, syncSecret, err)
	}
	waitFor(t, 60*time.Second, func() error {
		l := from.KubeLinks()[remote.Name]
		if got, _, _ := unstructured.NestedString(l.Object, "spec", "apiAccess", "name"); got != name {
			return fmt.Errorf("%s: KubeLink %s spec.apiAccess.name is %q, want %q", from.Name, remote.Name, got, name)
		}
		// The condition must be about this spec: netd sync restarts a
		// connection whose credentials changed, and writes the new
		// connection's state with the generation it saw.
		conds, _, _ := unstructured.NestedSlice(l.Object, "status", "conditions")
		for _, x := range conds {
			if cm, _ := x.(map[string]any); cm["type"] == conditionAPIAccess && cm["observedGeneration"] != l.GetGeneration() {
				return fmt.Errorf("%s: KubeLink %s condition %s is of generation %v, the spec's is %d", from.Name, remote.Name, conditionAPIAccess, cm["observedGeneration"], l.GetGeneration())
			}
		}
		return apiAccessTrue(from, remote.Name)
	}, from)
	t.Logf("%s advertises a token of kubelink/%s: %s's gateway wrote Secret kubelink/%s after %s; apiAccess switched to it and the netd kubeconfig identity revoked, APIAccess True after %s",
		remote.Name, advertisedSA, from.Name, name, written.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
}
