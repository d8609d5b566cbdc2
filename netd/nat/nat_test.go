package nat

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"

	"github.com/kubelink/kubelink/netd/nftable"
	"github.com/kubelink/kubelink/test/testenv"
)

// TestSNATTable applies the SNAT chain in a fresh network namespace and
// checks the kernel's view with nft, that an unchanged apply sends nothing
// and that a change replaces the table as a whole.
func TestSNATTable(t *testing.T) {
	if os.Getuid() != 0 {
		testenv.SkipOrFail(t, "needs root for network namespaces and nftables")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		testenv.SkipOrFail(t, "nft (Debian package nftables) not installed")
	}
	ns := fmt.Sprintf("kl-nat-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	tbl := &nftable.Table{Conn: func() (*nftables.Conn, error) { return nftables.New(nftables.WithNetNSFd(int(h))) }}
	// Two meshes: each destination maps to its mesh's link address.
	m := []Mapping{
		{Dst: netip.MustParsePrefix("192.168.0.0/24"), Address: netip.MustParseAddr("192.168.0.11")},
		{Dst: netip.MustParsePrefix("100.64.1.0/24"), Address: netip.MustParseAddr("192.168.0.11")},
		{Dst: netip.MustParsePrefix("192.168.1.0/24"), Address: netip.MustParseAddr("192.168.1.11")},
	}
	list := func() string {
		out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "table", "ip", nftable.TableName).CombinedOutput()
		if err != nil {
			t.Fatalf("nft list: %v: %s", err, out)
		}
		return string(out)
	}
	if changed, err := tbl.Apply([]nftable.Chain{SNAT("kubelink", m)}); err != nil || !changed {
		t.Fatalf("first apply: changed=%v err=%v", changed, err)
	}
	out := list()
	for _, want := range []string{
		`oifname "kubelink" ip daddr 192.168.0.0/24 ip saddr != 192.168.0.11 snat to 192.168.0.11`,
		`oifname "kubelink" ip daddr 100.64.1.0/24 ip saddr != 192.168.0.11 snat to 192.168.0.11`,
		`oifname "kubelink" ip daddr 192.168.1.0/24 ip saddr != 192.168.1.11 snat to 192.168.1.11`,
		"type nat hook postrouting priority srcnat",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if changed, err := tbl.Apply([]nftable.Chain{SNAT("kubelink", m)}); err != nil || changed || tbl.Writes() != 1 {
		t.Fatalf("unchanged apply: changed=%v err=%v writes=%d", changed, err, tbl.Writes())
	}
	// One mesh: a single rule, whatever the destinations, so links coming
	// and going leave it alone.
	one := SNAT("kubelink", m[:2])
	if len(one.Rules) != 1 || len(SNAT("kubelink", m[:1]).Rules) != 1 {
		t.Fatalf("one mesh: want one rule, got %d", len(one.Rules))
	}
	if _, err := tbl.Apply([]nftable.Chain{one}); err != nil {
		t.Fatal(err)
	}
	if out := list(); strings.Contains(out, "ip daddr") || strings.Count(out, "snat to") != 1 ||
		!strings.Contains(out, `oifname "kubelink" ip saddr != 192.168.0.11 snat to 192.168.0.11`) {
		t.Fatalf("one mesh: want the single rule, stale rules must be gone:\n%s", out)
	}
	if _, err := tbl.Apply(nil); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "table", "ip", nftable.TableName).CombinedOutput(); err == nil {
		t.Fatalf("table still there after empty apply:\n%s", out)
	}
}
