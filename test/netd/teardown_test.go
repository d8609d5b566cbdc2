package netd_test

import (
	"context"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelink/kubelink/api/v1alpha1"
	knetns "github.com/kubelink/kubelink/test/netns"
	"github.com/kubelink/kubelink/test/testenv"
)

// brokerState lists what a broker with --route-table table holds in ns
// (and must not leave behind): its device, its nftables table, routes of
// protocol 97 in any table and rules looking up table.
func brokerState(t *testing.T, ns, table string) []string {
	t.Helper()
	var held []string
	if out, err := exec(ns, "ip", "link", "show", "kubelink"); err == nil {
		held = append(held, "device: "+strings.TrimSpace(out))
	}
	if out, err := exec(ns, "nft", "list", "table", "ip", "kubelink"); err == nil {
		held = append(held, "nftables table:\n"+out)
	}
	if out := strings.TrimSpace(run(t, "ip", "-n", ns, "route", "show", "table", "all", "proto", "97")); out != "" {
		held = append(held, "routes: "+out)
	}
	for _, r := range strings.Split(run(t, "ip", "-n", ns, "rule", "show"), "\n") {
		if strings.Contains(r, "lookup "+table) {
			held = append(held, "rule: "+strings.TrimSpace(r))
		}
	}
	return held
}

// TestBrokerTeardownRouteTable: a broker process (mode wireguard,
// --route-table 100, no leader election) in a network namespace installs
// its device, nftables table, protocol-97 routes in table 100 and the rule
// `lookup 100` tagged with protocol 97; after SIGTERM none of them is
// left, while somebody else's rule and route in the same namespace stay.
func TestBrokerTeardownRouteTable(t *testing.T) {
	requireRoot(t)
	netd := buildNetd(t)
	lab := knetns.New(t, "kltd")
	env := testenv.Start(t, testenv.Options{})
	ctx := context.Background()
	if _, err := env.InstallCRDs(ctx, testenv.CRDDir()); err != nil {
		t.Fatalf("installing CRDs: %v", err)
	}
	local := &v1alpha1.KubeLink{ObjectMeta: metav1.ObjectMeta{Name: "a"},
		Spec: v1alpha1.KubeLinkSpec{ClusterAddress: "192.168.0.11/24", CIDR: "100.64.1.0/24", Endpoint: v1alpha1.EndpointLocalLink}}
	// A peer that never answers: its routes exist all the same.
	peer := &v1alpha1.KubeLink{ObjectMeta: metav1.ObjectMeta{Name: "b"},
		Spec: v1alpha1.KubeLinkSpec{ClusterAddress: "192.168.0.12/24", CIDR: "100.64.2.0/24", Endpoint: "192.0.2.1:8777", PublicKey: publicKey(t)}}
	for _, k := range []*v1alpha1.KubeLink{local, peer} {
		u, err := toUnstructured(k)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.Dynamic().Resource(kubeLinks).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ns := lab.NS("gw")
	// The gateway reaches the apiserver on its own loopback.
	u, err := url.Parse(env.URL)
	if err != nil {
		t.Fatal(err)
	}
	ln := listenIn(t, ns, u.Host)
	t.Cleanup(func() { _ = ln.Close() })
	go knetns.Relay(ln, u.Host, nil)
	// Somebody else's: a rule to table 200, a static route in table 200.
	lab.In(ns, "ip", "rule", "add", "priority", "900", "lookup", "200")
	lab.In(ns, "ip", "route", "add", "10.9.0.0/16", "dev", "lo", "table", "200", "proto", "static")

	p := lab.Start(ns, "gw", []string{"POD_NAME=gw"}, nil, netd, "broker", "--mode", "wireguard",
		"--kubeconfig", env.Kubeconfig, "--keepalive", keepalive.String(), "--server-port-http", "18195",
		"--route-table", "100", "--rule-priority", "1000")
	t.Cleanup(func() {
		p.Kill(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("broker output:\n%s", p.Output())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		held := strings.Join(brokerState(t, ns, "100"), "\n")
		if strings.Contains(held, "device:") && strings.Contains(held, "nftables table") &&
			strings.Contains(held, "100.64.2.0/24 dev kubelink table 100") && strings.Contains(held, "1000:\tfrom all lookup 100 proto 97") {
			break
		}
		if p.Exited() || time.Now().After(deadline) {
			t.Fatalf("the broker did not set up within 30s (exited %v):\n%s", p.Exited(), held)
		}
		time.Sleep(200 * time.Millisecond)
	}

	start := time.Now()
	p.Kill(syscall.SIGTERM) // SIGKILL after 10 s
	if time.Since(start) >= 10*time.Second {
		t.Errorf("the broker did not exit within 10s of SIGTERM (killed)")
	}
	t.Logf("MEASURED: the broker exited %.2fs after SIGTERM", time.Since(start).Seconds())
	if held := brokerState(t, ns, "100"); len(held) > 0 {
		t.Errorf("SIGTERM left behind:\n%s", strings.Join(held, "\n"))
	}
	if out := lab.In(ns, "ip", "rule", "show", "priority", "900"); !strings.Contains(out, "lookup 200") {
		t.Errorf("somebody else's rule was removed: %q", out)
	}
	if out := lab.In(ns, "ip", "route", "show", "table", "200"); !strings.Contains(out, "10.9.0.0/16") {
		t.Errorf("somebody else's route was removed: %q", out)
	}
}
