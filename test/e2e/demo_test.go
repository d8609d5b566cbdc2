package e2e

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
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
	k1, k2 := tm.clusters["kubelink1"], tm.clusters["kubelink2"]
	var b strings.Builder
	fmt.Fprintf(&b, "\nkubelink demo: two clusters, kubelink1 (namespace %s) and kubelink2 (namespace %s), linked by WireGuard.\n", k1.NS, k2.NS)
	fmt.Fprintf(&b, "Wait a few seconds for the links to come Up, then try:\n\n")
	for _, c := range []*Cluster{k1, k2} {
		fmt.Fprintf(&b, "  ip netns exec %s %s --kubeconfig %s get klink\n", c.NS, "bin/testenv/kubectl", c.Env.Kubeconfig)
	}
	fmt.Fprintf(&b, "  ip netns exec %s curl http://%s/                      # kubelink2's echo ClusterIP, from kubelink1\n", k1.NS, tm.echo["kubelink2"])
	fmt.Fprintf(&b, "  ip netns exec %s dig @%s echo.default.svc.kubelink2.kubelink\n", k1.NS, k1.Value("dns.serviceIP"))
	fmt.Fprintf(&b, "  ip netns exec %s dig @%s _http._tcp.echo.default.svc.kubelink2.kubelink SRV\n", k1.NS, k1.Value("dns.serviceIP"))
	fmt.Fprintf(&b, "  ip netns exec %s dig @%s kubelink1.kubelink\n", k2.NS, k2.Value("dns.serviceIP"))
	fmt.Fprintf(&b, "\nPress Ctrl-C to tear everything down.\n")
	// Straight to the terminal: go test buffers t.Log until the end.
	fmt.Fprint(os.Stderr, b.String())
	<-sig
	fmt.Fprintln(os.Stderr, "tearing down ...")
}
