package watch_test

import (
	"context"
	"os"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/api/watch"
	"github.com/kubelink/kubelink/test/testenv"
)

func create(ctx context.Context, t *testing.T, c *watch.Clients, obj any) {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: m}
	res := watch.KubeLinks
	if u.GetKind() == "MeshService" {
		res = watch.MeshServices
	}
	if _, err := c.Dynamic.Resource(res).Namespace(u.GetNamespace()).Create(ctx, u, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 15s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAgainstAPIServer: a remote cluster from kubeconfig bytes and from a
// token, the informers of what is needed (and only those), the Kube source.
func TestAgainstAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the test environment's apiserver")
	}
	e := testenv.Start(t, testenv.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := e.InstallCRDs(ctx, testenv.CRDDir()); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(e.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := watch.RemoteConfig(raw, "")
	if err != nil {
		t.Fatal(err)
	}
	c, err := watch.NewClients(rc, "kubelink-watch-test")
	if err != nil {
		t.Fatal(err)
	}
	// A token and a CA bundle reach the same cluster.
	sa, _, err := e.ServiceAccountConfig(ctx, "remote", "reader")
	if err != nil {
		t.Fatal(err)
	}
	trc, err := watch.TokenConfig(sa.Host, sa.BearerToken, sa.CAData)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := watch.NewClients(trc, "kubelink-watch-test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tc.Core.Discovery().ServerVersion(); err != nil {
		t.Errorf("token config: %v", err)
	}
	if _, err := watch.TokenConfig(sa.Host, sa.BearerToken, nil); err == nil {
		t.Error("a token config without a CA accepted")
	}

	changes := make(chan struct{}, 1000)
	wctx, stop := context.WithCancel(ctx)
	cache, err := watch.Start(wctx, c, watch.Needs{KubeLinks: true, MeshServices: true, Services: true, EndpointSlices: true,
		Lease: watch.Ref{Namespace: "default", Name: "gw"}, PodNamespace: "default"},
		func() {
			select {
			case changes <- struct{}{}:
			default:
			}
		}, nil)
	if err != nil {
		t.Fatal(err)
	}
	caches := []*watch.Cache{cache}
	defer func() {
		stop()
		for _, c := range caches {
			c.Wait()
		}
	}()

	create(ctx, t, c, &v1alpha1.KubeLink{TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "KubeLink"},
		ObjectMeta: metav1.ObjectMeta{Name: "b"}, Spec: v1alpha1.KubeLinkSpec{ClusterAddress: "192.168.0.12/24", CIDR: "100.64.2.0/24", Endpoint: "gw-b.example"}})
	create(ctx, t, c, &v1alpha1.MeshService{TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "MeshService"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"}, Spec: v1alpha1.MeshServiceSpec{Service: "web", Ports: []v1alpha1.ServicePort{{Port: 80}}}})
	core := c.Core
	if _, err := core.CoreV1().Services("default").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := core.DiscoveryV1().EndpointSlices("default").Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4, Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.1.0.5"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	holder := "gw-0"
	for _, name := range []string{"gw", "other"} {
		if _, err := core.CoordinationV1().Leases("default").Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// No controller manager creates the namespace's default account.
	if _, err := core.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := core.CoreV1().Pods("default").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "gw-0"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "netd", Image: "netd"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "all objects in the cache", func() bool {
		return cache.KubeLinks().Get("b") != nil && cache.MeshServices().Get("default", "web") != nil &&
			cache.Service("default", "web") != nil && len(cache.EndpointSlices("default", "web")) == 1 &&
			cache.Lease() != nil && cache.Pod("gw-0") != nil
	})
	if l := cache.Lease(); l.Name != "gw" {
		t.Errorf("lease %s, want the watched one, gw", l.Name)
	}
	snap := cache.Snapshot()
	if len(snap.KubeLinks) != 1 || len(snap.MeshServices) != 1 || len(changes) == 0 {
		t.Errorf("snapshot %d links, %d MeshServices; %d changes", len(snap.KubeLinks), len(snap.MeshServices), len(changes))
	}
	// Views return copies: changing one leaves the cache alone.
	snap.KubeLinks[0].Spec.CIDR = "10.0.0.0/8"
	if got := cache.KubeLinks().Get("b").Spec.CIDR; got != "100.64.2.0/24" {
		t.Errorf("the cache changed with a snapshot: %s", got)
	}

	// Only what is needed runs. Open's stop ends its informers while ctx
	// goes on, and returns once they have stopped.
	links, stopLinks, err := watch.Open(ctx, c, watch.Needs{KubeLinks: true}, func() {}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if links.Service("default", "web") != nil || links.Lease() != nil || links.MeshServices().List() != nil {
		t.Error("a KubeLinks-only cache has Services, Leases or MeshServices")
	}
	stopLinks()

	// The Kube source: a snapshot at start, one after a change.
	sctx, sstop := context.WithCancel(ctx)
	snaps := make(chan watch.Snapshot, 100)
	done := make(chan error, 1)
	go func() {
		done <- (&watch.Kube{Clients: c, Needs: watch.Needs{KubeLinks: true}}).Run(sctx, func(s watch.Snapshot) { snaps <- s })
	}()
	if s := <-snaps; len(s.KubeLinks) != 1 {
		t.Fatalf("first snapshot: %d links", len(s.KubeLinks))
	}
	create(ctx, t, c, &v1alpha1.KubeLink{TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "KubeLink"},
		ObjectMeta: metav1.ObjectMeta{Name: "c"}, Spec: v1alpha1.KubeLinkSpec{ClusterAddress: "192.168.0.13/24", CIDR: "100.64.3.0/24", Endpoint: "gw-c.example"}})
	for s := range snaps {
		if len(s.KubeLinks) == 2 {
			break
		}
	}
	sstop()
	if err := <-done; err != nil {
		t.Errorf("source: %v", err)
	}
}
