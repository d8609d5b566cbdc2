package routes

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/kubelink/kubelink/test/testenv"
)

// inNetns runs fn on a thread inside a fresh network namespace.
func inNetns(t *testing.T, fn func(ns string)) {
	if os.Getuid() != 0 {
		testenv.SkipOrFail(t, "needs root for network namespaces")
	}
	name := fmt.Sprintf("kl-routes-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The thread stays locked: it ends in the test's namespace and
		// the runtime discards it when the goroutine exits.
		runtime.LockOSThread()
		h, err := netns.GetFromName(name)
		if err != nil {
			t.Error(err)
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			t.Error(err)
			return
		}
		fn(name)
	}()
	<-done
}

// TestSync checks addresses, routes with netd's protocol in its own
// table, the rule, idempotence, stale-route removal, and that a foreign
// route and another broker instance's route (another device) in the same
// table survive.
func TestSync(t *testing.T) {
	inNetns(t, func(ns string) {
		la := netlink.NewLinkAttrs()
		la.Name = "kl0"
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "kl1"}); err != nil {
			t.Errorf("veth: %v", err)
			return
		}
		m := &Manager{Device: "kl0", Table: 100, RulePriority: 1234}
		addr := netip.MustParseAddr("192.168.0.11")
		want := []Route{
			{Dst: netip.MustParsePrefix("192.168.0.0/24"), Src: addr},
			{Dst: netip.MustParsePrefix("100.64.2.0/24"), Src: addr},
		}
		// Someone else's route in the same table.
		link, _ := netlink.LinkByName("kl0")
		_ = netlink.LinkSetUp(link)
		other := &netlink.Route{LinkIndex: link.Attrs().Index, Table: 100, Dst: &net.IPNet{IP: net.IP{10, 9, 0, 0}, Mask: net.CIDRMask(16, 32)}, Protocol: 4}
		if err := netlink.RouteAdd(other); err != nil {
			t.Errorf("foreign route: %v", err)
			return
		}
		// Another broker instance's route (protocol 97, another device).
		peer, _ := netlink.LinkByName("kl1")
		_ = netlink.LinkSetUp(peer)
		sibling := &netlink.Route{LinkIndex: peer.Attrs().Index, Table: 100, Dst: &net.IPNet{IP: net.IP{100, 64, 3, 0}, Mask: net.CIDRMask(24, 32)}, Protocol: Protocol, Scope: netlink.SCOPE_LINK}
		if err := netlink.RouteAdd(sibling); err != nil {
			t.Errorf("sibling route: %v", err)
			return
		}
		// Address, rule and two routes.
		ch, err := m.Sync([]netip.Addr{addr}, want)
		if err != nil || ch.Added != 4 {
			t.Errorf("first sync: %+v %v", ch, err)
			return
		}
		ch, err = m.Sync([]netip.Addr{addr}, want)
		if err != nil || ch != (Changes{}) {
			t.Errorf("unchanged sync changed %+v (%v)", ch, err)
		}
		rs, _ := m.List()
		if len(rs) != 3 {
			t.Errorf("routes: %v", rs)
		}
		out, _ := exec.Command("ip", "netns", "exec", ns, "ip", "rule").CombinedOutput()
		if !strings.Contains(string(out), "1234:") || !strings.Contains(string(out), "lookup 100") {
			t.Errorf("rule missing:\n%s", out)
		}
		out, _ = exec.Command("ip", "netns", "exec", ns, "ip", "addr", "show", "kl0").CombinedOutput()
		if !strings.Contains(string(out), "192.168.0.11/32") {
			t.Errorf("address missing:\n%s", out)
		}
		ch, err = m.Sync([]netip.Addr{addr}, want[:1])
		if err != nil || ch.Removed != 1 || ch.Added != 0 {
			t.Errorf("shrinking sync: %+v %v", ch, err)
		}
		out, _ = exec.Command("ip", "netns", "exec", ns, "ip", "route", "show", "table", "100").CombinedOutput()
		if strings.Contains(string(out), "100.64.2.0/24") || !strings.Contains(string(out), "10.9.0.0/16") || !strings.Contains(string(out), "192.168.0.0/24") ||
			!strings.Contains(string(out), "100.64.3.0/24 dev kl1") {
			t.Errorf("table 100 after shrinking:\n%s", out)
		}
	})
}
