package netd_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kubelink/kubelink/api/v1alpha1"
)

var meshServices = v1alpha1.SchemeGroupVersion.WithResource(v1alpha1.MeshServiceResource)

// serveNamed serves, inside ns on addr, a page naming the server and the
// caller.
func (l *lab) serveNamed(ns, addr, name string) {
	ln := listenIn(l.t, ns, addr)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s: you are %s\n", name, r.RemoteAddr)
	}), ReadHeaderTimeout: 5 * time.Second}
	l.mu.Lock()
	l.servers = append(l.servers, srv)
	l.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

func (c *cluster) applyMeshService(ctx context.Context, t *testing.T, ms *v1alpha1.MeshService) {
	t.Helper()
	ms.APIVersion, ms.Kind = v1alpha1.SchemeGroupVersion.String(), "MeshService"
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(ms)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: m}
	r := c.env.Dynamic().Resource(meshServices).Namespace(ms.Namespace)
	if old, err := r.Get(ctx, ms.Name, metav1.GetOptions{}); err == nil {
		u.SetResourceVersion(old.GetResourceVersion())
		_, err = r.Update(ctx, u, metav1.UpdateOptions{})
		if err != nil {
			t.Fatalf("updating MeshService %s: %v", ms.Name, err)
		}
		return
	}
	if _, err := r.Create(ctx, u, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating MeshService %s: %v", ms.Name, err)
	}
}

func (c *cluster) waitMeshService(ctx context.Context, t *testing.T, name string, timeout time.Duration, what string, cond func(*v1alpha1.MeshService) bool) *v1alpha1.MeshService {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var ms v1alpha1.MeshService
	for {
		u, err := c.env.Dynamic().Resource(meshServices).Namespace("default").Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			ms = v1alpha1.MeshService{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &ms); err == nil && cond(&ms) {
				return &ms
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("MeshService %s in cluster %s not %s within %s: status %+v (err %v)", name, c.name, what, timeout, ms.Status, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func msvcState(s string) func(*v1alpha1.MeshService) bool {
	return func(ms *v1alpha1.MeshService) bool { return ms.Status.State == s }
}

func portMapping(port, target intstr.IntOrString) v1alpha1.PortMapping {
	return v1alpha1.PortMapping{Port: port, TargetPort: target}
}

// TestMeshService exposes services of cluster B through pod-mode gateways
// over a real WireGuard tunnel: on a virtual mesh address, on a port of
// B's link address with a named target port, and as an endpoint list
// whose endpoints both receive connections. A reaches the extra mesh
// addresses because its KubeLink for B lists them in spec.egress.
func TestMeshService(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	a, b := l.a, l.b
	l.serveNamed(b.host, "100.64.2.10:8080", "echo")
	run(t, "ip", "-n", b.host, "addr", "add", "100.64.2.21/32", "dev", "lo")
	run(t, "ip", "-n", b.host, "addr", "add", "100.64.2.22/32", "dev", "lo")
	l.serveNamed(b.host, "100.64.2.21:9000", "ep1")
	l.serveNamed(b.host, "100.64.2.22:9000", "ep2")
	a.apply(ctx, t, localLink(a))
	b.apply(ctx, t, localLink(b))

	// The Service the MeshServices point at, with B's ClusterIP stand-in.
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: "default"},
		Spec: corev1.ServiceSpec{ClusterIP: "100.64.2.10", Ports: []corev1.ServicePort{
			{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP},
		}},
	}
	if _, err := b.env.Client().CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	b.applyMeshService(ctx, t, &v1alpha1.MeshService{
		ObjectMeta: metav1.ObjectMeta{Name: "virtual", Namespace: "default"},
		Spec:       v1alpha1.MeshServiceSpec{Service: "echo", MeshAddress: "192.168.0.50"},
	})
	b.applyMeshService(ctx, t, &v1alpha1.MeshService{
		ObjectMeta: metav1.ObjectMeta{Name: "bound", Namespace: "default"},
		Spec: v1alpha1.MeshServiceSpec{Service: "echo",
			Ports:     []v1alpha1.ServicePort{{Name: "web", Port: 8081}},
			Endpoints: []v1alpha1.ServiceEndpoint{{PortMappings: []v1alpha1.PortMapping{portMapping(intstr.FromString("web"), intstr.FromString("http"))}}},
		},
	})
	b.applyMeshService(ctx, t, &v1alpha1.MeshService{
		ObjectMeta: metav1.ObjectMeta{Name: "pool", Namespace: "default"},
		Spec: v1alpha1.MeshServiceSpec{MeshAddress: "192.168.0.51",
			Endpoints: []v1alpha1.ServiceEndpoint{
				{Address: "100.64.2.21", PortMappings: []v1alpha1.PortMapping{portMapping(intstr.FromInt32(80), intstr.FromInt32(9000))}},
				{Address: "100.64.2.22", PortMappings: []v1alpha1.PortMapping{portMapping(intstr.FromInt32(80), intstr.FromInt32(9000))}},
			},
		},
	})
	// A conflicting claim: the newer MeshService loses.
	time.Sleep(1100 * time.Millisecond) // creation timestamps have one-second resolution
	b.applyMeshService(ctx, t, &v1alpha1.MeshService{
		ObjectMeta: metav1.ObjectMeta{Name: "clash", Namespace: "default"},
		Spec:       v1alpha1.MeshServiceSpec{Service: "echo", MeshAddress: "192.168.0.50"},
	})

	pa := l.startNetd("a", a.gw, []string{"POD_NAME=gw-a"}, netdArgs(a, "wireguard", 18180, "--secret", "default/kubelink", "--pod-cidr", "10.1.0.0/24")...)
	pb := l.startNetd("b", b.gw, []string{"POD_NAME=gw-b"}, netdArgs(b, "wireguard", 18180, "--secret", "default/kubelink", "--pod-cidr", "10.2.0.0/24")...)
	_, _ = pa, pb
	hasKey := func(k *v1alpha1.KubeLink) bool { return k.Status.PublicKey != "" }
	keyA := a.waitLink(ctx, t, "a", 30*time.Second, "publishing its public key", hasKey).Status.PublicKey
	keyB := b.waitLink(ctx, t, "b", 30*time.Second, "publishing its public key", hasKey).Status.PublicKey
	lb := foreignLink(b, b.inetIP, keyB)
	// The virtual addresses of B's MeshServices are routed to B.
	lb.Spec.Egress = []string{"192.168.0.50/32", "192.168.0.51/32"}
	a.apply(ctx, t, lb)
	b.apply(ctx, t, foreignLink(a, a.inetIP, keyA))
	a.waitLink(ctx, t, "b", 30*time.Second, "Up", stateIs(v1alpha1.StateUp))

	virtual := b.waitMeshService(ctx, t, "virtual", 20*time.Second, "Ok", msvcState(v1alpha1.StateOK))
	if got := virtual.Status.Targets; len(got) != 1 || got[0].Address != "192.168.0.50" || len(got[0].Targets) != 1 || got[0].Targets[0] != "100.64.2.10" {
		t.Errorf("virtual: status targets %+v", got)
	}
	bound := b.waitMeshService(ctx, t, "bound", 20*time.Second, "Ok", msvcState(v1alpha1.StateOK))
	if got := bound.Status.Targets; len(got) != 1 || got[0].Address != "192.168.0.12" || got[0].Port != 8081 || got[0].Targets[0] != "100.64.2.10:8080" {
		t.Errorf("bound: named target port not resolved to the service port: %+v", got)
	}
	clash := b.waitMeshService(ctx, t, "clash", 20*time.Second, "Invalid", msvcState(v1alpha1.StateInvalid))
	if !strings.Contains(clash.Status.Message, "default/virtual") {
		t.Errorf("clash: message %q does not name the older MeshService", clash.Status.Message)
	}

	// Virtual address: every port of the Service's ClusterIP; the target
	// sees B's gateway (masquerade: it has no route back into the mesh).
	out := waitCurl(t, a.host, "http://192.168.0.50:8080/", "echo:", 15*time.Second)
	if !strings.Contains(out, "you are 10.2.0.1:") {
		t.Errorf("virtual address: the service saw %q, want B's gateway 10.2.0.1 (masquerade)", out)
	}
	// Port binding on B's link address, target port by name.
	waitCurl(t, a.host, "http://192.168.0.12:8081/", "echo:", 15*time.Second)
	// Endpoint list: both endpoints receive connections.
	seen := map[string]int{}
	for i := 0; i < 8; i++ {
		out := waitCurl(t, a.host, "http://192.168.0.51:80/", "you are", 10*time.Second)
		seen[strings.SplitN(out, ":", 2)[0]]++
	}
	if seen["ep1"] == 0 || seen["ep2"] == 0 {
		t.Errorf("endpoint list: connections per endpoint %v, want both", seen)
	}
	t.Logf("endpoint list: connections per endpoint %v", seen)

	nft := run(t, "ip", "netns", "exec", b.gw, "nft", "list", "table", "ip", "kubelink")
	for _, want := range []string{"default/virtual: 192.168.0.50", "default/bound: 192.168.0.12 TCP/8081", "default/pool: 192.168.0.51 TCP/80", "masquerade"} {
		if !strings.Contains(nft, want) {
			t.Errorf("gateway B's table lacks %q:\n%s", want, nft)
		}
	}
	if strings.Contains(nft, "default/clash") {
		t.Errorf("the losing MeshService has rules:\n%s", nft)
	}

	// The Service changes: the named port is re-resolved.
	s, err := b.env.Client().CoreV1().Services("default").Get(ctx, "echo", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Spec.Ports[0].Port = 8090
	if _, err := b.env.Client().CoreV1().Services("default").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	b.waitMeshService(ctx, t, "bound", 10*time.Second, "re-resolved to port 8090", func(ms *v1alpha1.MeshService) bool {
		return len(ms.Status.Targets) == 1 && len(ms.Status.Targets[0].Targets) == 1 && ms.Status.Targets[0].Targets[0] == "100.64.2.10:8090"
	})

	// Steady state: statuses are not rewritten, the table not replaced.
	rv := b.waitMeshService(ctx, t, "pool", 5*time.Second, "Ok", msvcState(v1alpha1.StateOK)).ResourceVersion
	nw := metric(t, b.gw, 18180, "netd_nftables_writes")
	time.Sleep(3 * time.Second)
	if rv2 := b.waitMeshService(ctx, t, "pool", 5*time.Second, "Ok", msvcState(v1alpha1.StateOK)).ResourceVersion; rv2 != rv {
		t.Errorf("MeshService status rewritten without a change (resourceVersion %s → %s)", rv, rv2)
	}
	if nw2 := metric(t, b.gw, 18180, "netd_nftables_writes"); nw2 != nw {
		t.Errorf("steady state replaced the nftables table: %v → %v", nw, nw2)
	}

	// Deleting a MeshService removes its rules.
	if err := b.env.Dynamic().Resource(meshServices).Namespace("default").Delete(ctx, "pool", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		nft := run(t, "ip", "netns", "exec", b.gw, "nft", "list", "table", "ip", "kubelink")
		if !strings.Contains(nft, "default/pool") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rules of the deleted MeshService remain:\n%s", nft)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
