package kube

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/api/watch"
	"github.com/kubelink/kubelink/test/testenv"
)

// TestAgainstAPIServer runs the secret and status helpers, read back
// through api/watch,
// against a real apiserver.
func TestAgainstAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the test environment's apiserver")
	}
	e := testenv.Start(t, testenv.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := e.InstallCRDs(ctx, testenv.CRDDir()); err != nil {
		t.Fatal(err)
	}
	rc, err := watch.LocalConfig(e.Kubeconfig, "")
	if err != nil {
		t.Fatal(err)
	}
	c, err := watch.NewClients(rc, "kubelink-netd-test")
	if err != nil {
		t.Fatal(err)
	}

	// Concurrent replicas generating a key converge on one.
	var wg sync.WaitGroup
	var gens atomic.Int32
	got := make([]string, 4)
	errs := make([]error, 4)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = EnsureSecretKey(ctx, c.Core, "default/kl", "WireguardPrivateKey", func() (string, error) {
				return "key-" + string(rune('a'+gens.Add(1))), nil
			})
		}()
	}
	wg.Wait()
	for i, g := range got {
		if errs[i] != nil || g == "" || g != got[0] {
			t.Fatalf("replicas disagree on the key: %v %v", got, errs)
		}
	}
	if again, err := EnsureSecretKey(ctx, c.Core, "default/kl", "WireguardPrivateKey", func() (string, error) { return "new", nil }); err != nil || again != got[0] {
		t.Fatalf("stored key not reused: %q %v", again, err)
	}

	changes := make(chan struct{}, 100)
	wctx, stop := context.WithCancel(ctx)
	cache, err := watch.Start(wctx, c, watch.Needs{KubeLinks: true}, func() { changes <- struct{}{} }, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { stop(); cache.Wait() }()
	w := cache.KubeLinks()
	l := &v1alpha1.KubeLink{ObjectMeta: metav1.ObjectMeta{Name: "b"}, Spec: v1alpha1.KubeLinkSpec{ClusterAddress: "192.168.0.12/24", CIDR: "100.64.2.0/24", Endpoint: "gw-b.example"}}
	if err := CreateLink(ctx, c.Dynamic, l); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return w.Get("b") != nil })
	if err := PatchStatus(ctx, c.Dynamic, "b", v1alpha1.KubeLinkStatus{State: v1alpha1.StateUp, Message: "peer answers", Gateway: "gw-a"}); err != nil {
		t.Fatal(err)
	}
	if err := PatchSpecDNS(ctx, c.Dynamic, "b", &v1alpha1.KubeLinkDNS{DNSIP: "100.64.2.53", BaseDomain: "cluster.b"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		g := w.Get("b")
		return g != nil && g.Status.State == v1alpha1.StateUp && g.Spec.DNS != nil && g.Spec.DNS.DNSIP == "100.64.2.53"
	})
	if len(w.List()) != 1 || len(changes) == 0 {
		t.Fatalf("list %d, change notifications %d", len(w.List()), len(changes))
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
