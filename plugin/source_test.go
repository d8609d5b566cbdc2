package kubelink

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubelink/kubelink/api/mesh"
	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/api/watch"
)

func toUnstructured(t *testing.T, o runtime.Object, kind string) *unstructured.Unstructured {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetAPIVersion(v1alpha1.SchemeGroupVersion.String())
	u.SetKind(kind)
	return u
}

// fakeCluster is an API of fake clients holding serviceLinks and the local
// MeshService.
func fakeCluster(t *testing.T) (*fake.Clientset, *dynamicfake.FakeDynamicClient) {
	t.Helper()
	var objs []runtime.Object
	for _, l := range serviceLinks() {
		objs = append(objs, toUnstructured(t, l, "KubeLink"))
	}
	objs = append(objs, toUnstructured(t, localMeshService(), "MeshService"))
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		watch.KubeLinks: "KubeLinkList", watch.MeshServices: "MeshServiceList"}, objs...)
	return fake.NewClientset(), dyn
}

// runSource runs the API source into a plugin until the test ends and
// waits for its first index.
func runSource(t *testing.T, port string, core *fake.Clientset, dyn *dynamicfake.FakeDynamicClient) *Kubelink {
	t.Helper()
	return runSourceConfig(t, &config{ttl: 5, upstreamPort: port, namespace: mirrorNS,
		opts: mesh.Options{ClusterDomain: "local.test", LocalDNS: netip.MustParseAddr("127.0.0.1")}}, core, dyn)
}

// runSourceConfig is runSource with the plugin's configuration.
func runSourceConfig(t *testing.T, cfg *config, core *fake.Clientset, dyn *dynamicfake.FakeDynamicClient) *Kubelink {
	t.Helper()
	k := &Kubelink{Next: test.NextHandler(dns.RcodeRefused, nil)}
	ctl := newController(k, cfg)
	src := &kubeSource{clients: &watch.Clients{Core: core, Dynamic: dyn}, namespace: cfg.namespace, clusterset: cfg.clusterset != ""}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, ctl.update) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("source: %v", err)
		}
		ctl.pool.stopAll()
	})
	for deadline := time.Now().Add(10 * time.Second); !k.Ready(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("not ready after 10s")
		}
	}
	return k
}

// waitAnswer polls until name's A records are want (none: NXDOMAIN) and
// returns how long that took.
func waitAnswer(t *testing.T, k *Kubelink, name string, want ...string) time.Duration {
	t.Helper()
	start := time.Now()
	var last *dns.Msg
	for time.Since(start) < 5*time.Second {
		resp, _, _ := ask(t, k, query(name, dns.TypeA), false)
		last = resp
		if resp != nil && (len(want) == 0 && resp.Rcode == dns.RcodeNameError || len(want) > 0 && fmt.Sprint(addrsOf(resp)) == fmt.Sprint(want)) {
			return time.Since(start)
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("%s: %v, want %v", name, last, want)
	return 0
}

func addrsOf(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return out
}

// TestKubeSourceChangesWithinASecond measures the informer -> snapshot ->
// index path: a mirror written to the API, a link going Down and a
// mirror deleted each show in answers within a second.
func TestKubeSourceChangesWithinASecond(t *testing.T) {
	f := startFakeDNS(t)
	core, dyn := fakeCluster(t)
	k := runSource(t, f.port, core, dyn)
	ctx := context.Background()
	const name, global = "web.demo.svc.east.kubelink.", "web.demo.svc.global.kubelink."
	// Before: east has no mirror, the global name only the local Service.
	waitAnswer(t, k, name)
	waitAnswer(t, k, global, "100.64.0.20")

	slices := core.DiscoveryV1().EndpointSlices(mirrorNS)
	s := serviceMirrors()[0] // east demo/web IPv4
	if _, err := slices.Create(ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	check := func(what string, d time.Duration) {
		t.Helper()
		t.Logf("%s: in answers after %v", what, d)
		if d > time.Second {
			t.Errorf("%s took %v, want within a second", what, d)
		}
	}
	check("mirror created", waitAnswer(t, k, name, "100.64.144.20"))
	waitAnswer(t, k, global, "100.64.0.20", "100.64.144.20")

	// east goes Down: out of the global answer.
	links := dyn.Resource(watch.KubeLinks)
	u, err := links.Get(ctx, "east", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(u.Object, v1alpha1.StateDown, "status", "state"); err != nil {
		t.Fatal(err)
	}
	if _, err := links.Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	check("link Down", waitAnswer(t, k, global, "100.64.0.20"))
	resp, _, _ := ask(t, k, queryEDNS(name, dns.TypeA, 1232), false)
	if resp.Rcode != dns.RcodeServerFailure || ede(resp) == nil {
		t.Errorf("east Down: %v", resp)
	}
	if err := unstructured.SetNestedField(u.Object, v1alpha1.StateUp, "status", "state"); err != nil {
		t.Fatal(err)
	}
	if _, err := links.Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	check("link Up again", waitAnswer(t, k, global, "100.64.0.20", "100.64.144.20"))

	if err := slices.Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	check("mirror deleted", waitAnswer(t, k, name))
}

// TestKubeSourceWithoutRights: a plugin that may not read the mirrors or
// the MeshServices still serves the links instead of never becoming
// ready.
func TestKubeSourceWithoutRights(t *testing.T) {
	f := startFakeDNS(t)
	core, dyn := fakeCluster(t)
	core.PrependReactor("list", "endpointslices", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "discovery.k8s.io", Resource: "endpointslices"}, "", errors.New("no"))
	})
	dyn.PrependReactor("list", "meshservices", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewNotFound(schema.GroupResource{Group: v1alpha1.SchemeGroupVersion.Group, Resource: "meshservices"}, "")
	})
	done := make(chan *Kubelink)
	go func() { done <- runSource(t, f.port, core, dyn) }()
	select {
	case k := <-done:
		waitAnswer(t, k, "east.kubelink.", "192.168.0.21")
		waitAnswer(t, k, "web.demo.svc.global.kubelink.", "10.0.0.1") // the mesh-global DNS: nothing local
	case <-time.After(15 * time.Second):
		t.Fatal("held up by kinds it may not read")
	}
}
