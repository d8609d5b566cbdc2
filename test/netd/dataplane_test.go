package netd_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/netd/broker"
	"github.com/kubelink/kubelink/netd/tunnel/wireguard"
	"github.com/kubelink/kubelink/netd/wgkey"
	"github.com/kubelink/kubelink/test/netns"
)

// publicKey is a fresh WireGuard public key for a peer's KubeLink.
func publicKey(t *testing.T) string {
	t.Helper()
	k, err := wgkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k.Public().String()
}

// wireGuardIn opens the embedded WireGuard device of cfg inside ns (its
// TUN and socket stay there) and closes it at the end of the test.
func wireGuardIn(t *testing.T, ns string, cfg *broker.Config) *wireguard.Device {
	t.Helper()
	key, err := wgkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	var dev *wireguard.Device
	if err := netns.Do(ns, func() error {
		dev, err = wireguard.New(wireguard.Options{Name: cfg.IfceName, ListenPort: cfg.BrokerPort, PrivateKey: key, Keepalive: cfg.Keepalive})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dev.Close() })
	return dev
}

// TestDataplaneIdempotent runs the broker's dataplane (the code every
// reconcile calls) 100 times over the same links and MeshServices in a
// fresh namespace: the nftables table and the routes stay byte-identical,
// nothing is written after the first run, nothing is duplicated; a new
// dataplane on the same kernel state (a restarted broker) converges without
// duplicates either.
func TestDataplaneIdempotent(t *testing.T) {
	lab := netns.New(t, "dp")
	ns := lab.NS("gw")
	ctx := context.Background()

	var links []*v1alpha1.KubeLink
	for i := 0; i < 20; i++ {
		links = append(links, &v1alpha1.KubeLink{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("c%02d", i)},
			Spec: v1alpha1.KubeLinkSpec{ClusterAddress: fmt.Sprintf("192.168.0.%d/24", i+2), CIDR: fmt.Sprintf("100.65.%d.0/24", i),
				Endpoint: fmt.Sprintf("127.0.0.%d:8777", i+2), PublicKey: publicKey(t), Ingress: []string{"100.64.0.0/16", "!100.64.9.0/24"}},
		})
	}
	svcs := map[string]*corev1.Service{}
	var msvcs []*v1alpha1.MeshService
	for i := 0; i < 50; i++ {
		name := fmt.Sprintf("s%02d", i)
		svcs["default/"+name] = &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
			Spec: corev1.ServiceSpec{ClusterIP: fmt.Sprintf("100.64.1.%d", i+1), Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
		ms := &v1alpha1.MeshService{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}
		if i%2 == 0 {
			ms.Spec = v1alpha1.MeshServiceSpec{Service: name, Ports: []v1alpha1.ServicePort{{Name: "web", Port: int32(9000 + i)}},
				Endpoints: []v1alpha1.ServiceEndpoint{{PortMappings: []v1alpha1.PortMapping{{Port: intstr.FromString("web"), TargetPort: intstr.FromString("http")}}}}}
		} else {
			ms.Spec = v1alpha1.MeshServiceSpec{Ports: []v1alpha1.ServicePort{{Port: int32(9000 + i)}}, Endpoints: []v1alpha1.ServiceEndpoint{
				{Address: "10.1.0.1", PortMappings: []v1alpha1.PortMapping{{Port: intstr.FromInt32(int32(9000 + i)), TargetPort: intstr.FromInt32(80)}}},
				{Address: "10.1.0.2", PortMappings: []v1alpha1.PortMapping{{Port: intstr.FromInt32(int32(9000 + i)), TargetPort: intstr.FromInt32(80)}}},
			}}
		}
		msvcs = append(msvcs, ms)
	}
	lookup := func(ns, name string) *corev1.Service { return svcs[ns+"/"+name] }
	cfg := &broker.Config{Mode: broker.ModeWireGuard, ClusterName: "local", LinkAddress: "192.168.0.1/24", ServiceCIDR: "100.64.0.0/16",
		PodCIDR: "10.0.0.0/16", IfceName: "kubelink", BrokerPort: 18777, MeshDomain: "kubelink", ClusterDomain: "cluster.local",
		ServedLinks: "all", RulePriority: 32000, Keepalive: 20 * time.Second, Identity: "test"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	dev := wireGuardIn(t, ns, cfg)
	reconcile := func(dp *broker.Dataplane) {
		t.Helper()
		if err := netns.Do(ns, func() error {
			out, err := dp.Reconcile(ctx, links, msvcs, lookup)
			if err == nil && len(out.LinkErrs) > 0 {
				err = fmt.Errorf("link errors: %v", out.LinkErrs)
			}
			for _, p := range out.Plans {
				if err == nil && p.State != v1alpha1.StateOK {
					err = fmt.Errorf("MeshService %s: %s", p.Name, p.Message)
				}
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	state := func() (string, string) {
		return lab.In(ns, "nft", "list", "table", "ip", "kubelink"), lab.In(ns, "ip", "route", "show", "proto", "97")
	}

	// Someone else's table (kube-proxy's, say) is never touched.
	lab.In(ns, "nft", "add table ip kube-proxy")
	lab.In(ns, "nft", "add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }")
	lab.In(ns, "nft", "add rule ip kube-proxy nat-prerouting ip daddr 100.64.1.1 tcp dport 80 dnat to 10.1.0.9")
	foreign := lab.In(ns, "nft", "list", "table", "ip", "kube-proxy")

	dp := broker.NewDataplane(cfg, dev)
	reconcile(dp)
	table, routes := state()
	if n := strings.Count(routes, "\n"); n != 21 {
		t.Fatalf("want 21 routes (mesh + 20 links), got %d:\n%s", n, routes)
	}
	for _, want := range []string{"default/s00: 192.168.0.1 TCP/9000 to 100.64.1.1:80", "numgen inc mod 2", "ct original ip daddr 100.64.9.0/24 drop", "maxseg size set rt mtu", "snat to 192.168.0.1"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q", want)
		}
	}
	writes := dp.Writes()
	for i := 0; i < 100; i++ {
		reconcile(dp)
	}
	if dp.Writes() != writes {
		t.Errorf("100 unchanged reconciles wrote %d times", dp.Writes()-writes)
	}
	if tb, rt := state(); tb != table || rt != routes {
		t.Fatalf("100 reconciles changed the kernel state")
	}

	// A restarted broker: a new dataplane on the same kernel state replaces
	// the table once (it cannot know what is loaded) and adds nothing else.
	dp2 := broker.NewDataplane(cfg, dev)
	reconcile(dp2)
	reconcile(dp2)
	if tb, rt := state(); tb != table || rt != routes {
		t.Fatalf("restart changed the kernel state:\n%s\n---\n%s", table, tb)
	}
	if w := dp2.Writes() - dev.Writes(); w != 1 {
		t.Errorf("restart: want exactly 1 write (the table), got %d", w)
	}
	if err := netns.Do(ns, dp2.Close); err != nil {
		t.Fatal(err)
	}
	if _, err := exec(ns, "nft", "list", "table", "ip", "kubelink"); err == nil {
		t.Errorf("closing the dataplane left netd's table")
	}
	if got := lab.In(ns, "nft", "list", "table", "ip", "kube-proxy"); got != foreign {
		t.Errorf("netd touched another table:\n%s\n---\n%s", foreign, got)
	}
}

// TestIPForward: `netd ipforward`, the init container of a pod-mode
// gateway, turns on forwarding in its own network namespace only.
func TestIPForward(t *testing.T) {
	lab := netns.New(t, "ipf")
	ns := lab.NS("pod")
	bin := buildNetd(t)
	// Start from off, whatever this kernel gives a new namespace.
	lab.In(ns, "sysctl", "-qw", "net.ipv4.ip_forward=0")
	if got := strings.TrimSpace(lab.In(ns, "cat", "/proc/sys/net/ipv4/ip_forward")); got != "0" {
		t.Fatalf("ip_forward not off before the test: %s", got)
	}
	if out := lab.In(ns, bin, "ipforward"); !strings.Contains(out, "net.ipv4.ip_forward = 1") {
		t.Fatalf("netd ipforward: %q", out)
	}
	if got := strings.TrimSpace(lab.In(ns, "cat", "/proc/sys/net/ipv4/ip_forward")); got != "1" {
		t.Fatalf("ip_forward in the pod namespace: %s", got)
	}
}
