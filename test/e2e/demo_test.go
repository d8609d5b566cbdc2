package e2e

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/kubelink/kubelink/test/testenv"
)

// TestDemo brings up the e2e mesh for a person to try (`sudo make demo`),
// prints what to try and tears everything down on Ctrl-C.
func TestDemo(t *testing.T) {
	if os.Getenv("KUBELINK_DEMO") == "" {
		t.Skip("run with `sudo make demo`")
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	tm := bringUp(t)
	k1, k2, k3, k4 := tm.clusters["kubelink1"], tm.clusters["kubelink2"], tm.clusters["kubelink3"], tm.clusters["kubelink4"]
	k2Addr := addrOf(tm.byName["kubelink2"].linkAddress)
	kubectl := filepath.Join(testenv.BinDir(), "kubectl")
	var b strings.Builder
	fmt.Fprintf(&b, `
kubelink demo: four clusters, each with a control plane, a gateway node and a worker (network
namespaces), kube-proxy on every node, a pod network and a cluster DNS:
  kubelink1  %-22s node mode: WireGuard to kubelink2, TLS bridge to kubelink3 (second release kubelink-bridge)
  kubelink2  %-22s pod mode (gateway pod %s, router with VXLAN), MeshServices %s and %s:%d
  kubelink3  %-22s node mode: TLS bridge to kubelink1, kubelink2 through kubelink1
  kubelink4  %-22s node mode: WireGuard to kubelink2, kubelink2's service CIDR: MeshServices only
Wait a few seconds for the links to come Up, then try, as a user in a pod on a worker node:

`, k1.NS, k2.NS, k2.PodNS("kubelink-broker"), meshVIP, k2Addr, meshPort, k3.NS, k4.NS)
	for _, p := range [][2]*Cluster{{k1, k2}, {k1, k3}, {k2, k1}, {k3, k2}} {
		fmt.Fprintf(&b, "  ip netns exec %s curl http://echo.default.svc.%s.kubelink/   # from %s's client pod\n", p[0].PodNS("client"), p[1].Name, p[0].Name)
	}
	fmt.Fprintf(&b, "  ip netns exec %s dig echo.default.svc.kubelink2.kubelink   # through the pod's cluster DNS\n\n", k1.PodNS("client"))
	for _, c := range []*Cluster{k1, k2, k3, k4} {
		fmt.Fprintf(&b, "  ip netns exec %s %s --kubeconfig %s get klink\n", c.NS, kubectl, c.Env.Kubeconfig)
	}
	fmt.Fprintf(&b, "  ip netns exec %s %s --kubeconfig %s get msvc -A -o wide\n\n", k2.NS, kubectl, k2.Env.Kubeconfig)
	fmt.Fprintf(&b, "  ip netns exec %s curl http://%s/        # kubelink2's echo ClusterIP from kubelink1 (WireGuard)\n", k1.NS, tm.echo["kubelink2"])
	fmt.Fprintf(&b, "  ip netns exec %s curl http://%s/        # kubelink3's echo ClusterIP from kubelink1 (TLS bridge)\n", k1.NS, tm.echo["kubelink3"])
	fmt.Fprintf(&b, "  ip netns exec %s curl http://%s/        # kubelink2's echo from kubelink3, relayed by kubelink1\n", k3.NS, tm.echo["kubelink2"])
	fmt.Fprintf(&b, "  ip netns exec %s curl http://%s/        # the same ClusterIP in kubelink4 is kubelink4's own echo\n", k4.NS, tm.echo["kubelink2"])
	for _, c := range []*Cluster{k1, k3, k4} {
		fmt.Fprintf(&b, "  ip netns exec %s curl http://%s/ http://%s:%d/   # kubelink2's MeshServices from %s\n", c.NS, meshVIP, k2Addr, meshPort, c.Name)
	}
	fmt.Fprintf(&b, "  ip netns exec %s dig @%s echo.default.svc.kubelink2.kubelink\n", k1.NS, k1.Value("dns.serviceIP"))
	fmt.Fprintf(&b, "  ip netns exec %s dig @%s _http._tcp.echo.default.svc.kubelink3.kubelink SRV\n", k1.NS, k1.Value("dns.serviceIP"))
	fmt.Fprintf(&b, "  ip netns exec %s dig @%s echo.default.svc.kubelink1.kubelink   # kubelink2's DNS runs in a pod\n", k2.NS, k2.Value("dns.serviceIP"))
	fmt.Fprintf(&b, "  ip netns exec %s ip route show proto 98                  # the router's routes to the gateway pod\n", k2.NS)
	fmt.Fprintf(&b, "  ip netns exec %s nft list table ip kubelink   # SNAT and MeshService DNAT of the gateway pod\n", k2.PodNS("kubelink-broker"))
	fmt.Fprintf(&b, "  ip netns exec %s ip route show proto 97                  # kubelink1's two gateways: devices kubelink and kubelink-br\n", k1.NS)
	fmt.Fprintf(&b, "\nProcess logs: %s/<cluster>/*.log. Press Ctrl-C to tear everything down.\n", tm.dir)
	// Straight to the terminal: go test buffers t.Log until the end.
	fmt.Fprint(os.Stderr, b.String())
	<-sig
	fmt.Fprintln(os.Stderr, "tearing down ...")
}
