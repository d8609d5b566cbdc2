package netd_test

import (
	"strings"
	"syscall"
	"testing"
	"time"
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
	l := newShutdownLab(t)
	lab := l.lab
	ns := l.gateway("gw")
	// Somebody else's: a rule to table 200, a static route in table 200.
	lab.In(ns, "ip", "rule", "add", "priority", "900", "lookup", "200")
	lab.In(ns, "ip", "route", "add", "10.9.0.0/16", "dev", "lo", "table", "200", "proto", "static")

	p := l.broker(ns, "gw", 18195)
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
