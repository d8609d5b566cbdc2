package integration

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/kubelink/kubelink/api/synced"
	"github.com/kubelink/kubelink/api/watch"
	"github.com/kubelink/kubelink/netd/sync/controller"
	"github.com/kubelink/kubelink/netd/sync/remote"
	"github.com/kubelink/kubelink/test/testenv"
)

// syncCluster is a remote cluster of the sync test: its apiserver and the
// credentials netd kubeconfig made for it.
type syncCluster struct {
	name string
	env  *testenv.Env
	c    kubernetes.Interface
	// kubeconfig is netd kubeconfig's base64 output.
	kubeconfig string
}

func startSyncCluster(t *testing.T, ctx context.Context, name string, crds bool) *syncCluster {
	t.Helper()
	env := testenv.Start(t, testenv.Options{})
	if crds {
		if _, err := env.InstallCRDs(ctx, testenv.CRDDir()); err != nil {
			t.Fatal(err)
		}
	}
	out, _ := netdKubeconfig(t, ctx, "--kubeconfig", env.Kubeconfig, "--token-duration", "2h", "--name", name)
	return &syncCluster{name: name, env: env, c: env.Client(), kubeconfig: strings.TrimSpace(out)}
}

func ensureNamespace(t *testing.T, ctx context.Context, c kubernetes.Interface, ns string) {
	t.Helper()
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// service creates a Service with one port http 80 → 8080 (headless when
// clusterIP is None).
func service(t *testing.T, ctx context.Context, c kubernetes.Interface, ns, name, clusterIP string) *corev1.Service {
	t.Helper()
	ensureNamespace(t, ctx, c, ns)
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{ClusterIP: clusterIP, Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}}}
	s, err := c.CoreV1().Services(ns).Create(ctx, s, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// endpoints writes the remote cluster's own slice of a Service (as its
// EndpointSlice controller would), ready endpoints at addrs, port 8080.
func endpoints(t *testing.T, ctx context.Context, c kubernetes.Interface, ns, svc string, addrs ...string) {
	t.Helper()
	yes := true
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: svc + "-own", Labels: map[string]string{
			discoveryv1.LabelServiceName: svc, discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptrTo("http"), Port: ptrTo(int32(8080)), Protocol: ptrTo(corev1.ProtocolTCP)}},
	}
	for _, a := range addrs {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, Conditions: discoveryv1.EndpointConditions{Ready: &yes}})
	}
	cur, err := c.DiscoveryV1().EndpointSlices(ns).Get(ctx, s.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = c.DiscoveryV1().EndpointSlices(ns).Create(ctx, s, metav1.CreateOptions{})
	case err == nil:
		s.ResourceVersion = cur.ResourceVersion
		_, err = c.DiscoveryV1().EndpointSlices(ns).Update(ctx, s, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}

func ptrTo[T any](v T) *T { return &v }

// synced describes our slices of a Service: "<cluster>: addr/ready ..." per
// slice, sorted.
func syncedOf(t *testing.T, ctx context.Context, c kubernetes.Interface, ns, svc string) []string {
	t.Helper()
	l, err := c.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + svc + "," + discoveryv1.LabelManagedBy + "=" + synced.ManagedBy})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range l.Items {
		var eps []string
		for _, e := range s.Endpoints {
			r := "ready"
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				r = "notready"
			}
			eps = append(eps, e.Addresses[0]+"/"+r)
		}
		sort.Strings(eps)
		port := int32(0)
		if len(s.Ports) > 0 && s.Ports[0].Port != nil {
			port = *s.Ports[0].Port
		}
		out = append(out, fmt.Sprintf("%s:%d %s", s.Labels[synced.LabelSourceCluster], port, strings.Join(eps, " ")))
	}
	sort.Strings(out)
	return out
}

func waitSynced(t *testing.T, what string, timeout time.Duration, get func() []string, want ...string) {
	t.Helper()
	sort.Strings(want)
	deadline := time.Now().Add(timeout)
	var got []string
	for time.Now().Before(deadline) {
		if got = get(); strings.Join(got, "|") == strings.Join(want, "|") {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: got %q, want %q", what, got, want)
}

func waitIdle(t *testing.T, c *controller.Controller) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for idle := 0; idle < 3; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("netd sync did not become idle")
		}
		if c.Idle() {
			idle++
		} else {
			idle = 0
		}
	}
}

func clusterLink(ns, name string, spec map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "svclink.cloudpilot.ai/v1alpha1", "kind": "ClusterLink",
		"metadata": map[string]any{"namespace": ns, "name": name}, "spec": spec}}
}

// TestSync is netd sync against three real apiservers: a local one and
// two remote ones (east with the kubelink and MCS CRDs, west without),
// followed through svclink's inline ClusterLink (east), a ClusterLink with a
// secret reference (west), and a KubeLink with spec.apiAccess (east again,
// under another name, in service mode).
func TestSync(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs the real apiserver")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	local := testenv.Start(t, testenv.Options{})
	if _, err := local.InstallCRDs(ctx, testenv.CRDDir()); err != nil {
		t.Fatal(err)
	}
	east := startSyncCluster(t, ctx, "east", true)
	west := startSyncCluster(t, ctx, "west", false)
	lc, dyn := local.Client(), local.Dynamic()

	// The world: web in default everywhere; filtered services in east.
	web := service(t, ctx, lc, "default", "web", "")
	for _, r := range []*syncCluster{east, west} {
		service(t, ctx, r.c, "default", "web", "")
	}
	endpoints(t, ctx, east.c, "default", "web", "10.1.0.1", "10.1.0.2")
	endpoints(t, ctx, west.c, "default", "web", "10.2.0.1")
	for _, s := range []struct{ ns, name string }{{"skipped", "web"}, {"default", "internal-db"}, {"shop", "admin-panel"}, {"kube-system", "web"}} {
		service(t, ctx, lc, s.ns, s.name, "")
		service(t, ctx, east.c, s.ns, s.name, "")
		endpoints(t, ctx, east.c, s.ns, s.name, "10.1.9.9")
	}
	// shop/api exists only in east: --sync-services-to-local-cluster
	// creates namespace and Service here.
	service(t, ctx, east.c, "shop", "api", "")
	endpoints(t, ctx, east.c, "shop", "api", "10.1.5.5")

	// svclink's own form: inline base64 kubeconfig, its filters.
	if _, err := dyn.Resource(controller.ClusterLinks).Namespace("default").Create(ctx, clusterLink("default", "east", map[string]any{
		"enabled": true, "kubeconfig": east.kubeconfig,
		"excludedNamespaces": []any{"skipped"}, "excludedServices": []any{"default/internal-db"}, "excludedServiceNames": []any{"admin-panel"},
	}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The recommended form: a secret reference.
	raw, err := base64.StdEncoding.DecodeString(west.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lc.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "west-kubeconfig"},
		Data: map[string][]byte{"kubeconfig": raw}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(controller.ClusterLinks).Namespace("default").Create(ctx, clusterLink("default", "west", map[string]any{
		"kubeconfigSecretRef": map[string]any{"name": "west-kubeconfig"}}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	cfg := &controller.Config{Namespace: "kubelink", SyncInterval: time.Hour, APIGrace: 3 * time.Second, Probe: 300 * time.Millisecond,
		ClusterLinkMode: "pod", KubeLinkMode: "service", Workers: 4, QPS: 200, Burst: 400, CreateServices: true, Identity: "test", ServerPortHTTP: 0}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	clients, err := watch.NewClients(local.Config, "netd-sync-test")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("SYNC_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctrl := controller.New(cfg, clients, prometheus.NewRegistry(), log)
	runCtx, stopRun := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ctrl.Run(runCtx, func() {}) }()
	defer func() {
		stopRun()
		if err := <-done; err != nil {
			t.Errorf("netd sync: %v", err)
		}
	}()

	get := func(ns, svc string) func() []string {
		return func() []string { return syncedOf(t, ctx, lc, ns, svc) }
	}
	t.Run("aggregation", func(t *testing.T) {
		waitSynced(t, "default/web", 30*time.Second, get("default", "web"),
			"east:8080 10.1.0.1/ready 10.1.0.2/ready", "west:8080 10.2.0.1/ready")
		l, err := lc.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{LabelSelector: synced.LabelSourceCluster + "=east," + discoveryv1.LabelServiceName + "=web"})
		if err != nil || len(l.Items) != 1 {
			t.Fatalf("east's slice: %v %v", l, err)
		}
		s := l.Items[0]
		if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].UID != web.UID || s.Labels[synced.LabelSvclinkCluster] != "east" ||
			s.Labels[synced.LabelManagedBy] != synced.ManagerName {
			t.Fatalf("slice owner/labels: %v %v", s.OwnerReferences, s.Labels)
		}
	})
	t.Run("filters", func(t *testing.T) {
		waitSynced(t, "shop/api created here", 30*time.Second, get("shop", "api"), "east:8080 10.1.5.5/ready")
		api, err := lc.CoreV1().Services("shop").Get(ctx, "api", metav1.GetOptions{})
		if err != nil || api.Labels[synced.LabelManagedBy] != synced.ManagerName || len(api.Spec.Selector) != 0 {
			t.Fatalf("created Service: %v %v", api, err)
		}
		waitIdle(t, ctrl)
		for _, s := range []struct{ ns, name string }{{"skipped", "web"}, {"default", "internal-db"}, {"shop", "admin-panel"}, {"kube-system", "web"}} {
			if got := syncedOf(t, ctx, lc, s.ns, s.name); len(got) != 0 {
				t.Errorf("%s/%s is filtered but synced: %q", s.ns, s.name, got)
			}
		}
	})
	t.Run("status", func(t *testing.T) {
		for _, n := range []string{"east", "west"} {
			waitFor(t, 30*time.Second, func() error {
				o, err := dyn.Resource(controller.ClusterLinks).Namespace("default").Get(ctx, n, metav1.GetOptions{})
				if err != nil {
					return err
				}
				st, _, _ := unstructured.NestedMap(o.Object, "status")
				if st["connected"] != true || !strings.HasPrefix(fmt.Sprint(st["version"]), "v1.") || st["lastConnected"] == nil {
					return fmt.Errorf("status %v", st)
				}
				conds := fmt.Sprint(st["conditions"])
				if !strings.Contains(conds, "type:Ready") || !strings.Contains(conds, "reason:ClusterReady") {
					return fmt.Errorf("conditions %v", conds)
				}
				if inline := strings.Contains(conds, "InlineKubeconfig"); inline != (n == "east") {
					return fmt.Errorf("%s: InlineKubeconfig condition %v: %v", n, inline, conds)
				}
				return nil
			})
		}
		waitFor(t, 30*time.Second, func() error {
			ev, err := lc.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=east,reason=InlineKubeconfig"})
			if err != nil || len(ev.Items) == 0 {
				return fmt.Errorf("no InlineKubeconfig event: %v", err)
			}
			return nil
		})
	})
	t.Run("no-op resync writes nothing", func(t *testing.T) {
		waitIdle(t, ctrl)
		before := ctrl.Writes()
		ctrl.Resync()
		waitIdle(t, ctrl)
		time.Sleep(time.Second) // a links round or two as well
		waitIdle(t, ctrl)
		if after := ctrl.Writes(); after != before {
			t.Fatalf("a resync of an unchanged world wrote %v times", after-before)
		}
	})
	t.Run("remote change", func(t *testing.T) {
		endpoints(t, ctx, east.c, "default", "web", "10.1.0.1", "10.1.0.3")
		waitSynced(t, "east's change", 10*time.Second, get("default", "web"),
			"east:8080 10.1.0.1/ready 10.1.0.3/ready", "west:8080 10.2.0.1/ready")
	})
	t.Run("mcs", func(t *testing.T) {
		export := func(dyn interface {
			Resource(schema.GroupVersionResource) dynamic.NamespaceableResourceInterface
		}, ns, name string) {
			t.Helper()
			u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport",
				"metadata": map[string]any{"namespace": ns, "name": name}}}
			if _, err := dyn.Resource(remote.ServiceExports).Namespace(ns).Create(ctx, u, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		// east exports web and db (ClusterSetIP) first; the local cluster
		// then exports its headless db: the oldest export wins the type.
		service(t, ctx, lc, "default", "db", "None")
		service(t, ctx, east.c, "default", "db", "")
		endpoints(t, ctx, east.c, "default", "db", "10.1.7.7")
		export(east.env.Dynamic(), "default", "web")
		export(east.env.Dynamic(), "default", "db")
		time.Sleep(1100 * time.Millisecond) // creationTimestamps have seconds
		export(dyn, "default", "db")
		waitFor(t, 30*time.Second, func() error {
			o, err := dyn.Resource(controller.ServiceImports).Namespace("default").Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				return err
			}
			typ, _, _ := unstructured.NestedString(o.Object, "spec", "type")
			ips, _, _ := unstructured.NestedStringSlice(o.Object, "spec", "ips")
			cl := fmt.Sprint(o.Object["status"])
			if typ != "ClusterSetIP" || len(ips) != 1 || ips[0] != web.Spec.ClusterIP || !strings.Contains(cl, "cluster:east") {
				return fmt.Errorf("ServiceImport web: type %q ips %v status %v", typ, ips, cl)
			}
			l, err := lc.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{LabelSelector: "multicluster.kubernetes.io/service-name=web"})
			if err != nil || len(l.Items) != 1 {
				return fmt.Errorf("MCS slices of web: %v %v", l, err)
			}
			s := l.Items[0]
			if s.Labels["multicluster.kubernetes.io/source-cluster"] != "east" || s.Labels[discoveryv1.LabelServiceName] != "" ||
				len(s.OwnerReferences) != 1 || s.OwnerReferences[0].UID != o.GetUID() {
				return fmt.Errorf("MCS slice labels/owner: %v %v", s.Labels, s.OwnerReferences)
			}
			return nil
		})
		waitFor(t, 30*time.Second, func() error {
			o, err := dyn.Resource(remote.ServiceExports).Namespace("default").Get(ctx, "db", metav1.GetOptions{})
			if err != nil {
				return err
			}
			conds := fmt.Sprint(o.Object["status"])
			if !strings.Contains(conds, "type:Conflict") || !strings.Contains(conds, "TypeConflict") || !strings.Contains(conds, "type:Valid") {
				return fmt.Errorf("local export conditions: %s", conds)
			}
			imp, err := dyn.Resource(controller.ServiceImports).Namespace("default").Get(ctx, "db", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if typ, _, _ := unstructured.NestedString(imp.Object, "spec", "type"); typ != "ClusterSetIP" {
				return fmt.Errorf("db import type %q, the oldest export (east, ClusterSetIP) must win", typ)
			}
			return nil
		})
		waitIdle(t, ctrl)
		before := ctrl.Writes()
		ctrl.Resync()
		time.Sleep(500 * time.Millisecond)
		waitIdle(t, ctrl)
		if after := ctrl.Writes(); after != before {
			t.Fatalf("a resync with MCS objects wrote %v times", after-before)
		}
	})
	t.Run("health gating", func(t *testing.T) {
		west.env.StopAPIServer()
		began := time.Now()
		waitSynced(t, "west unreachable", 15*time.Second, get("default", "web"),
			"east:8080 10.1.0.1/ready 10.1.0.3/ready", "west:8080 10.2.0.1/notready")
		t.Logf("west's endpoints not ready %s after its apiserver stopped (grace %s)", time.Since(began).Round(time.Millisecond), cfg.APIGrace)
		if err := west.env.StartAPIServer(); err != nil {
			t.Fatal(err)
		}
		waitSynced(t, "west back", 60*time.Second, get("default", "web"),
			"east:8080 10.1.0.1/ready 10.1.0.3/ready", "west:8080 10.2.0.1/ready")
	})
	t.Run("local apiserver outage", func(t *testing.T) {
		local.StopAPIServer()
		endpoints(t, ctx, east.c, "default", "web", "10.1.0.4")
		time.Sleep(2 * time.Second)
		if err := local.StartAPIServer(); err != nil {
			t.Fatal(err)
		}
		waitSynced(t, "after the local outage", 60*time.Second, get("default", "web"),
			"east:8080 10.1.0.4/ready", "west:8080 10.2.0.1/ready")
	})
	t.Run("kubelink apiAccess", func(t *testing.T) {
		ensureNamespace(t, ctx, lc, "kubelink")
		// east once more, as a mesh member followed through its KubeLink.
		printed, _ := netdKubeconfig(t, ctx, "--kubeconfig", east.env.Kubeconfig, "--token-duration", "2h", "--output", "apiaccess",
			"--secret-name", "east-api", "--secret-namespace", "kubelink", "--local-kubeconfig", local.Kubeconfig)
		_ = printed
		kl := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "kubelink.mandelsoft.org/v1alpha1", "kind": "KubeLink",
			"metadata": map[string]any{"name": "east-mesh"},
			"spec": map[string]any{"cidr": "10.0.0.0/24", "clusterAddress": "192.168.0.12/24", "endpoint": "127.0.0.1:8777",
				"publicKey": "ZmFrZWtleWZha2VrZXlmYWtla2V5ZmFrZWtleWZha2U=",
				"apiAccess": map[string]any{"name": "east-api", "namespace": "kubelink", "server": east.env.URL}}}}
		if _, err := dyn.Resource(watch.KubeLinks).Create(ctx, kl, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		setState := func(state string) {
			b := []byte(`{"status":{"state":"` + state + `"}}`)
			if _, err := dyn.Resource(watch.KubeLinks).Patch(ctx, "east-mesh", types.MergePatchType, b, metav1.PatchOptions{}, "status"); err != nil {
				t.Fatal(err)
			}
		}
		setState("Up")
		eastIP := ""
		if s, err := east.c.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{}); err == nil {
			eastIP = s.Spec.ClusterIP
		}
		// Service mode: east's ClusterIP, with the Service's port.
		waitSynced(t, "east-mesh in service mode", 30*time.Second, get("default", "web"),
			"east:8080 10.1.0.4/ready", "east-mesh:80 "+eastIP+"/ready", "west:8080 10.2.0.1/ready")
		waitFor(t, 30*time.Second, func() error {
			o, err := dyn.Resource(watch.KubeLinks).Get(ctx, "east-mesh", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if c := fmt.Sprint(o.Object["status"]); !strings.Contains(c, "type:APIAccess") || !strings.Contains(c, "status:True") {
				return fmt.Errorf("no APIAccess condition: %s", c)
			}
			return nil
		})
		// Service mirrors for the DNS: east's Services reachable here
		// (spec.cidr holds the ClusterIPs), in netd's namespace.
		svcMirrors := func() []string {
			l, err := lc.DiscoveryV1().EndpointSlices("kubelink").List(ctx, metav1.ListOptions{LabelSelector: synced.MirrorSelector + "," + synced.LabelSourceCluster + "=east-mesh"})
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, s := range l.Items {
				for _, e := range s.Endpoints {
					out = append(out, s.Labels[synced.LabelServiceNamespace]+"/"+s.Labels[synced.LabelServiceName]+" "+e.Addresses[0]+" exported="+s.Labels[synced.LabelExported])
				}
			}
			sort.Strings(out)
			return out
		}
		ipOf := func(ns, name string) string {
			s, err := east.c.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return s.Spec.ClusterIP
		}
		want := []string{"default/web " + eastIP + " exported=true", "default/db " + ipOf("default", "db") + " exported=true",
			"default/internal-db " + ipOf("default", "internal-db") + " exported=", "shop/api " + ipOf("shop", "api") + " exported=",
			"shop/admin-panel " + ipOf("shop", "admin-panel") + " exported=", "skipped/web " + ipOf("skipped", "web") + " exported="}
		waitSynced(t, "service mirrors", 30*time.Second, svcMirrors, want...)
		// east's MeshService on a mesh address: mirrored into netd's
		// namespace for the broker, ready once east reports it Ok.
		ms := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "kubelink.mandelsoft.org/v1alpha1", "kind": "MeshService",
			"metadata": map[string]any{"namespace": "default", "name": "web-vip"},
			"spec":     map[string]any{"meshAddress": "192.168.0.100", "service": "web"}}}
		created, err := east.env.Dynamic().Resource(watch.MeshServices).Namespace("default").Create(ctx, ms, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		created.Object["status"] = map[string]any{"state": "Ok", "observedGeneration": created.GetGeneration()}
		if _, err := east.env.Dynamic().Resource(watch.MeshServices).Namespace("default").UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		mirrors := func() []string {
			l, err := lc.DiscoveryV1().EndpointSlices("kubelink").List(ctx, metav1.ListOptions{LabelSelector: synced.LabelMeshService + "," + synced.LabelSourceCluster + "=east-mesh"})
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, s := range l.Items {
				for _, e := range s.Endpoints {
					out = append(out, e.Addresses[0]+" ready="+fmt.Sprint(e.Conditions.Ready != nil && *e.Conditions.Ready))
				}
			}
			return out
		}
		waitSynced(t, "MeshService mirror", 30*time.Second, mirrors, "192.168.0.100 ready=true")
		if err := east.env.Dynamic().Resource(watch.MeshServices).Namespace("default").Delete(ctx, "web-vip", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitSynced(t, "MeshService mirror removed", 30*time.Second, mirrors)
		setState("Down")
		waitSynced(t, "east-mesh link down", 10*time.Second, get("default", "web"),
			"east:8080 10.1.0.4/ready", "east-mesh:80 "+eastIP+"/notready", "west:8080 10.2.0.1/ready")
		setState("Up")
		waitSynced(t, "east-mesh link up", 10*time.Second, get("default", "web"),
			"east:8080 10.1.0.4/ready", "east-mesh:80 "+eastIP+"/ready", "west:8080 10.2.0.1/ready")
		if err := dyn.Resource(watch.KubeLinks).Delete(ctx, "east-mesh", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitSynced(t, "KubeLink deleted", 10*time.Second, get("default", "web"), "east:8080 10.1.0.4/ready", "west:8080 10.2.0.1/ready")
	})
	t.Run("disabled keeps, deleted removes", func(t *testing.T) {
		if _, err := dyn.Resource(controller.ClusterLinks).Namespace("default").Patch(ctx, "east", types.MergePatchType,
			[]byte(`{"spec":{"enabled":false}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, func() error {
			o, err := dyn.Resource(controller.ClusterLinks).Namespace("default").Get(ctx, "east", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if c := fmt.Sprint(o.Object["status"]); !strings.Contains(c, "reason:Disabled") {
				return fmt.Errorf("status %s", c)
			}
			return nil
		})
		endpoints(t, ctx, east.c, "default", "web", "10.1.0.7")
		time.Sleep(2 * time.Second)
		waitIdle(t, ctrl)
		if got := syncedOf(t, ctx, lc, "default", "web"); strings.Join(got, "|") != "east:8080 10.1.0.4/ready|west:8080 10.2.0.1/ready" {
			t.Fatalf("a disabled link's slices changed: %q", got)
		}
		if err := dyn.Resource(controller.ClusterLinks).Namespace("default").Delete(ctx, "west", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitSynced(t, "west deleted", 10*time.Second, get("default", "web"), "east:8080 10.1.0.4/ready")
	})
	t.Run("cleanup selector", func(t *testing.T) {
		l, err := lc.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{LabelSelector: synced.CleanupSelector})
		if err != nil || len(l.Items) == 0 {
			t.Fatalf("cleanup selector finds no slices: %v", err)
		}
		for _, s := range l.Items {
			if s.Labels[discoveryv1.LabelManagedBy] != synced.ManagedBy {
				t.Fatalf("cleanup selector selects a foreign slice %s/%s", s.Namespace, s.Name)
			}
		}
		svcs, err := lc.CoreV1().Services("").List(ctx, metav1.ListOptions{LabelSelector: synced.CleanupSelector})
		if err != nil || len(svcs.Items) != 1 || svcs.Items[0].Name != "api" {
			t.Fatalf("cleanup selector Services: %v %v", svcs, err)
		}
	})
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out: %v", err)
}
