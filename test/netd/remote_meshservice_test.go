package netd_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kubelink/kubelink/api/synced"
	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/netd/sync/meshsvc"
)

// mirrorNS is gateway A's own namespace ($POD_NAMESPACE), where netd sync
// writes its MeshService mirrors.
const mirrorNS = "kubelink"

// TestRemoteMeshService (issue #13 item 5): a MeshService address of
// cluster B inside the mesh CIDR becomes reachable from cluster A without
// spec.egress, once A holds the mirror netd sync writes for it (created
// here by hand from B's MeshService with meshsvc.Desired, as netd sync
// would), and unreachable again when the mirror goes. Real gateways, real
// tunnels: WireGuard (allowed IPs) and the TLS bridge (the peer's
// destinations). Look-alike slices that are not netd sync's mirrors in
// A's own namespace open nothing.
func TestRemoteMeshService(t *testing.T) {
	for _, mode := range []string{"wireguard", "bridge"} {
		t.Run(mode, func(t *testing.T) { remoteMeshService(t, mode) })
	}
}

func remoteMeshService(t *testing.T, mode string) {
	start := time.Now()
	l := newLab(t)
	ctx := context.Background()
	a, b := l.a, l.b
	l.serveNamed(b.host, "100.64.2.10:8080", "echo")

	// B: a Service (the ClusterIP stand-in 100.64.2.10) exposed on two
	// mesh addresses inside the mesh CIDR. A's link for B has no egress.
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: "default"},
		Spec: corev1.ServiceSpec{ClusterIP: "100.64.2.10", Ports: []corev1.ServicePort{
			{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP},
		}},
	}
	if _, err := b.env.Client().CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, addr := range map[string]string{"web": "192.168.0.100", "decoy": "192.168.0.101"} {
		b.applyMeshService(ctx, t, &v1alpha1.MeshService{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Spec:       v1alpha1.MeshServiceSpec{Service: "echo", MeshAddress: addr},
		})
	}
	if _, err := a.env.Client().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: mirrorNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Both gateways in pod mode (B's DNATs its MeshServices); A's own
	// namespace is mirrorNS.
	envA := []string{"POD_NAME=gw-a", "POD_NAMESPACE=" + mirrorNS}
	var pa *proc
	switch mode {
	case "wireguard":
		a.apply(ctx, t, localLink(a))
		b.apply(ctx, t, localLink(b))
		pa = l.startNetd("a", a.gw, envA, netdArgs(a, mode, 18180, "--secret", "default/kubelink", "--pod-cidr", "10.1.0.0/24")...)
		l.startNetd("b", b.gw, []string{"POD_NAME=gw-b"}, netdArgs(b, mode, 18180, "--secret", "default/kubelink", "--pod-cidr", "10.2.0.0/24")...)
		hasKey := func(k *v1alpha1.KubeLink) bool { return k.Status.PublicKey != "" }
		keyA := a.waitLink(ctx, t, "a", 30*time.Second, "publishing its public key", hasKey).Status.PublicKey
		keyB := b.waitLink(ctx, t, "b", 30*time.Second, "publishing its public key", hasKey).Status.PublicKey
		a.apply(ctx, t, foreignLink(b, b.inetIP, keyB))
		b.apply(ctx, t, foreignLink(a, a.inetIP, keyA))
	case "bridge":
		l.hosts(a.gw, "172.31.0.2 gw-b.example")
		l.hosts(b.gw, "172.31.0.1 gw-a.example")
		ca := newCA(t)
		for _, c := range []*cluster{a, b} {
			crt, key := ca.issue(t, "gw-"+c.name+".example")
			if _, err := c.env.Client().CoreV1().Secrets("default").Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: "kubelink-tls"}, Type: corev1.SecretTypeTLS,
				Data: map[string][]byte{"tls.crt": crt, "tls.key": key, "ca.crt": ca.pem},
			}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			c.apply(ctx, t, localLink(c))
		}
		a.apply(ctx, t, bridgeLink(b, "gw-b.example"))
		b.apply(ctx, t, bridgeLink(a, "gw-a.example"))
		pa = l.startNetd("a", a.gw, envA, netdArgs(a, mode, 18180, "--secret", "default/kubelink-tls", "--pod-cidr", "10.1.0.0/24")...)
		l.startNetd("b", b.gw, []string{"POD_NAME=gw-b"}, netdArgs(b, mode, 18180, "--secret", "default/kubelink-tls", "--pod-cidr", "10.2.0.0/24")...)
	}
	a.waitLink(ctx, t, "b", 30*time.Second, "Up", stateIs(v1alpha1.StateUp))
	web := b.waitMeshService(ctx, t, "web", 20*time.Second, "Ok", msvcState(v1alpha1.StateOK))
	b.waitMeshService(ctx, t, "decoy", 20*time.Second, "Ok", msvcState(v1alpha1.StateOK))

	// Before: the tunnel works (B's service CIDR), the MeshService
	// address does not: A routes the mesh network into its device, but
	// no peer accepts 192.168.0.100.
	waitCurl(t, a.host, "http://100.64.2.10:8080/", "echo:", 15*time.Second)
	assertUnreachable(t, a.host, "http://192.168.0.100:8080/", "before the mirror")
	assertNoMeshRoute(t, a.gw, "192.168.0.100", "before the mirror")

	// Look-alikes of a mirror for B's other MeshService, which the broker
	// must ignore: netd sync's labels in another namespace (whoever may
	// write slices there must not pull mesh traffic into a tunnel), and
	// in A's own namespace without netd sync's managed-by, with a
	// ClusterLink source, or as a Service's slice.
	slices := a.env.Client().DiscoveryV1().EndpointSlices
	decoy := func(ns, name string, mod func(map[string]string)) {
		s := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: ns, Labels: meshsvc.Labels("b", "default", "decoy")},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"192.168.0.101"}}},
		}
		mod(s.Labels)
		if _, err := slices(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating look-alike %s/%s: %v", ns, name, err)
		}
	}
	decoy("default", "elsewhere", func(map[string]string) {})
	decoy(mirrorNS, "foreign", func(l map[string]string) { l[discoveryv1.LabelManagedBy] = "endpointslice-controller.k8s.io" })
	decoy(mirrorNS, "clusterlink", func(l map[string]string) { l[synced.LabelSourceKind] = synced.KindClusterLink })
	decoy(mirrorNS, "service", func(l map[string]string) { l[discoveryv1.LabelServiceName] = "echo" })

	// The mirror, exactly as netd sync writes it.
	mirrors := meshsvc.Desired(mirrorNS, "b", netip.MustParsePrefix("192.168.0.0/24"), []*v1alpha1.MeshService{web})
	if len(mirrors) != 1 {
		t.Fatalf("meshsvc.Desired: %d mirrors of web, want 1", len(mirrors))
	}
	if _, err := slices(mirrorNS).Create(ctx, mirrors[0], metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the mirror: %v", err)
	}
	learned := time.Now()
	out := waitCurl(t, a.host, "http://192.168.0.100:8080/", "echo:", 20*time.Second)
	t.Logf("MEASURED (%s): 192.168.0.100 reachable %dms after the mirror was created: %s", mode, time.Since(learned).Milliseconds(), strings.TrimSpace(out))
	waitMeshRoute(t, a.gw, "192.168.0.100", true)
	if !strings.Contains(pa.Log(), "b=[192.168.0.100/32]") {
		t.Errorf("gateway A did not log the learned address b=[192.168.0.100/32]")
	}
	// The look-alikes opened nothing, in the same reconciles.
	assertNoMeshRoute(t, a.gw, "192.168.0.101", "with look-alike mirrors")
	assertUnreachable(t, a.host, "http://192.168.0.101:8080/", "with look-alike mirrors")
	if strings.Contains(pa.Log(), "192.168.0.101") {
		t.Errorf("gateway A considered a look-alike mirror:\n%s", pa.Log())
	}

	// Steady state: the tunnel is not reconfigured again and again (the
	// bridge would reconnect on every change of a peer's destinations).
	tw := metric(t, a.gw, 18180, "netd_tunnel_config_writes")
	time.Sleep(3 * time.Second)
	if tw2 := metric(t, a.gw, 18180, "netd_tunnel_config_writes"); tw2 != tw {
		t.Errorf("steady state reconfigured the tunnel: %v → %v writes", tw, tw2)
	}
	waitCurl(t, a.host, "http://192.168.0.100:8080/", "echo:", 10*time.Second)

	// The MeshService goes, netd sync deletes the mirror: route and
	// allowed IP go. The mesh network route still leads into the device,
	// so the failure is the peer's (allowed IPs / bridge destinations).
	if err := slices(mirrorNS).Delete(ctx, mirrors[0].Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitMeshRoute(t, a.gw, "192.168.0.100", false)
	if r := run(t, "ip", "-n", a.gw, "route", "get", "192.168.0.100"); !strings.Contains(r, "dev kubelink") {
		t.Errorf("192.168.0.100 no longer leads into the device (the mesh network route): %s", r)
	}
	assertUnreachable(t, a.host, "http://192.168.0.100:8080/", "after the mirror was deleted")
	waitCurl(t, a.host, "http://100.64.2.10:8080/", "echo:", 15*time.Second)
	t.Logf("MEASURED (%s): whole run %.1fs", mode, time.Since(start).Seconds())
}

// meshRoutes are the routes netd manages (protocol 97) in ns.
func meshRoutes(t *testing.T, ns string) string {
	t.Helper()
	return run(t, "ip", "-n", ns, "route", "show", "table", "all", "proto", "97")
}

func hasMeshRoute(routes, addr string) bool {
	for _, r := range strings.Split(routes, "\n") {
		if strings.HasPrefix(r, addr+" dev kubelink ") {
			return true
		}
	}
	return false
}

// waitMeshRoute waits until netd's host route to addr exists (or not).
func waitMeshRoute(t *testing.T, ns, addr string, want bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := meshRoutes(t, ns)
		if hasMeshRoute(r, addr) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: route to %s present=%v within 15s, want %v:\n%s", ns, addr, !want, want, r)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func assertNoMeshRoute(t *testing.T, ns, addr, when string) {
	t.Helper()
	if r := meshRoutes(t, ns); hasMeshRoute(r, addr) {
		t.Errorf("%s: a route to %s %s:\n%s", ns, addr, when, r)
	}
}

// assertUnreachable checks that url does not answer from ns (curl gives up
// after 3 seconds).
func assertUnreachable(t *testing.T, ns, url, when string) {
	t.Helper()
	if out, err := curl(ns, url); err == nil {
		t.Errorf("%s answered %s: %q", url, when, out)
	}
}
