package routes

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	knetns "github.com/kubelink/kubelink/test/netns"
)

// TestNormalize: records sort by table, then address, then shorter first,
// and duplicates go — equal contents encode equally in a datafile.
func TestNormalize(t *testing.T) {
	r := Record{
		Routes: []RouteRef{
			{Table: 100, Dst: netip.MustParsePrefix("10.0.0.0/8")},
			{Table: 254, Dst: netip.MustParsePrefix("10.1.0.0/16")},
			{Table: 254, Dst: netip.MustParsePrefix("10.0.0.0/16")},
			{Table: 254, Dst: netip.MustParsePrefix("10.0.0.0/8")},
			{Table: 100, Dst: netip.MustParsePrefix("10.0.0.0/8")},
		},
		Rules: []RuleRef{{Table: 200, Priority: 5}, {Table: 100, Priority: 7}, {Table: 100, Priority: 7}},
	}
	normalize(&r)
	want := []string{"100 10.0.0.0/8", "254 10.0.0.0/8", "254 10.0.0.0/16", "254 10.1.0.0/16"}
	var got []string
	for _, x := range r.Routes {
		got = append(got, strconv.Itoa(x.Table)+" "+x.Dst.String())
	}
	if !slices.Equal(got, want) {
		t.Fatalf("routes %v, want %v", got, want)
	}
	if !slices.Equal(r.Rules, []RuleRef{{Table: 100, Priority: 7}, {Table: 200, Priority: 5}}) {
		t.Fatalf("rules %v", r.Rules)
	}
	if (Changes{Added: 1, Replaced: 2, Removed: 3}).Writes() != 6 || (Changes{}).Any() {
		t.Fatal("Changes counts")
	}
	if (&Manager{}).wantRule() != nil || *(&Manager{Table: 100, RulePriority: 9}).wantRule() != (RuleRef{Table: 100, Priority: 9}) {
		t.Fatal("wantRule")
	}
}

// ns is a throw-away network namespace with two devices, kl0 and kl1, and a netlink handle into it.
type ns struct {
	lab  *knetns.Lab
	name string
	nl   *netlink.Handle
}

func newNS(t *testing.T) *ns {
	t.Helper()
	lab := knetns.New(t, "klrm")
	n := &ns{lab: lab, name: lab.NS("a")}
	for _, d := range []string{"kl0", "kl1"} {
		// veth pairs: the kernels here have no dummy module.
		lab.In(n.name, "ip", "link", "add", d, "type", "veth", "peer", "name", d+"p")
		lab.In(n.name, "ip", "link", "set", d+"p", "up")
		lab.In(n.name, "ip", "link", "set", d, "up")
	}
	h, err := vnetns.GetFromName(n.name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	if n.nl, err = netlink.NewHandleAt(h); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.nl.Close)
	return n
}

// ip runs `ip args...` in the namespace and returns the trimmed lines.
func (n *ns) ip(args ...string) []string {
	out := strings.TrimSpace(n.lab.In(n.name, append([]string{"ip"}, args...)...))
	if out == "" {
		return nil
	}
	lines := strings.Split(out, "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return lines
}

func (n *ns) expect(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s:\n got %q\nwant %q", what, got, want)
	}
}

// foreign adds what the manager must never touch: a static route and a
// protocol-98 route in table 100, a sibling broker's protocol-97 route
// (device kl1) in table 200, an untagged rule and a protocol-98 rule
// looking up table 100; check verifies that they are all still there.
func (n *ns) foreign(t *testing.T) (check func()) {
	n.lab.In(n.name, "ip", "route", "add", "10.9.0.0/16", "dev", "kl0", "table", "100", "proto", "static")
	n.lab.In(n.name, "ip", "route", "add", "10.8.0.0/16", "dev", "kl0", "table", "100", "proto", "98")
	n.lab.In(n.name, "ip", "route", "add", "100.64.3.0/24", "dev", "kl1", "table", "200", "proto", "97", "scope", "link")
	n.lab.In(n.name, "ip", "rule", "add", "priority", "1500", "lookup", "100")
	n.lab.In(n.name, "ip", "rule", "add", "priority", "1600", "lookup", "100", "proto", "98")
	return func() {
		t.Helper()
		n.expect(t, "foreign routes in table 100", n.ip("route", "show", "table", "100", "proto", "static"), "10.9.0.0/16 dev kl0 scope link")
		n.expect(t, "protocol-98 route in table 100", n.ip("route", "show", "table", "100", "proto", "98"), "10.8.0.0/16 dev kl0 scope link")
		n.expect(t, "sibling route in table 200", n.ip("route", "show", "table", "200", "proto", "97", "dev", "kl1"), "100.64.3.0/24 scope link")
		n.expect(t, "untagged rule", n.ip("rule", "show", "priority", "1500"), "1500:\tfrom all lookup 100")
		n.expect(t, "protocol-98 rule", n.ip("rule", "show", "priority", "1600"), "1600:\tfrom all lookup 100 proto 98")
	}
}

// TestManager drives a broker-style manager (protocol 97, device kl0)
// through addresses and routes in table 100, a second Sync that writes
// nothing, a table switch to 200 (routes move, the old rule goes, a
// sibling's route there stays), a restart without a record back to main
// that finds the old table's routes and rule by their tag, and RemoveAll;
// nothing of another protocol or device, and no untagged rule, is ever
// touched.
func TestManager(t *testing.T) {
	n := newNS(t)
	check := n.foreign(t)
	m := &Manager{Protocol: Protocol, Device: "kl0", Table: 100, RulePriority: 1234, Handle: n.nl}
	src := netip.MustParseAddr("192.168.0.11")
	want := []Route{
		{Dst: netip.MustParsePrefix("192.168.0.0/24"), Src: src},
		{Dst: netip.MustParsePrefix("100.64.2.0/24"), Src: src},
	}
	ch, err := m.SyncDevice([]netip.Addr{src}, want)
	if err != nil || ch.Added != 4 || ch.Removed+ch.Replaced != 0 {
		t.Fatalf("first sync (address, 2 routes, rule): %+v %v", ch, err)
	}
	n.expect(t, "table 100", n.ip("route", "show", "table", "100", "proto", "97"),
		"100.64.2.0/24 dev kl0 scope link src 192.168.0.11", "192.168.0.0/24 dev kl0 scope link src 192.168.0.11")
	n.expect(t, "rule", n.ip("rule", "show", "priority", "1234"), "1234:\tfrom all lookup 100 proto 97")
	if got := n.ip("addr", "show", "dev", "kl0"); !strings.Contains(strings.Join(got, "\n"), "inet 192.168.0.11/32") {
		t.Fatalf("address: %q", got)
	}
	check()
	rec := m.Record()
	if len(rec.Routes) != 2 || !slices.Equal(rec.Rules, []RuleRef{{Table: 100, Priority: 1234}}) {
		t.Fatalf("record %+v", rec)
	}

	// Idempotence: nothing is written.
	rw, uw := m.RouteWrites(), m.RuleWrites()
	if ch, err := m.SyncDevice([]netip.Addr{src}, want); err != nil || ch.Any() || m.RouteWrites() != rw || m.RuleWrites() != uw {
		t.Fatalf("second sync wrote %+v (%v), route writes %d→%d, rule writes %d→%d", ch, err, rw, m.RouteWrites(), uw, m.RuleWrites())
	}
	if m.Routes() != 2 {
		t.Fatalf("Routes() = %d", m.Routes())
	}

	// A changed address and source, a route deleted behind our back comes
	// back, a destination goes (the kernel drops routes with the removed
	// address as source itself).
	n.lab.In(n.name, "ip", "route", "del", "192.168.0.0/24", "table", "100", "proto", "97")
	src2 := netip.MustParseAddr("192.168.0.12")
	want = []Route{{Dst: netip.MustParsePrefix("192.168.0.0/24"), Src: src2}, {Dst: netip.MustParsePrefix("100.64.4.0/24"), Src: src2}}
	if ch, err := m.SyncDevice([]netip.Addr{src2}, want); err != nil || ch.Added != 3 || ch.Removed < 1 {
		t.Fatalf("changed sync: %+v %v", ch, err)
	}
	n.expect(t, "table 100 after the change", n.ip("route", "show", "table", "100", "proto", "97"),
		"100.64.4.0/24 dev kl0 scope link src 192.168.0.12", "192.168.0.0/24 dev kl0 scope link src 192.168.0.12")

	// Table switch: the routes move to 200 beside the sibling's, the rule
	// follows.
	m.Table = 200
	if _, err := m.SyncDevice([]netip.Addr{src2}, want); err != nil {
		t.Fatal(err)
	}
	n.expect(t, "table 100 after the switch", n.ip("route", "show", "table", "100", "proto", "97"))
	n.expect(t, "table 200", n.ip("route", "show", "table", "200", "proto", "97", "dev", "kl0"),
		"100.64.4.0/24 scope link src 192.168.0.12", "192.168.0.0/24 scope link src 192.168.0.12")
	n.expect(t, "rule after the switch", n.ip("rule", "show", "priority", "1234"), "1234:\tfrom all lookup 200 proto 97")
	check()
	if ch, err := m.SyncDevice([]netip.Addr{src2}, want); err != nil || ch.Any() {
		t.Fatalf("sync after the switch wrote %+v (%v)", ch, err)
	}

	// A restart without a record (the broker keeps none) in the main
	// table: the old table's routes are found by protocol and device. The
	// rule of table 200 stays: the sibling's route still needs it.
	m2 := &Manager{Protocol: Protocol, Device: "kl0", Handle: n.nl}
	if _, err := m2.Sync(want); err != nil {
		t.Fatal(err)
	}
	n.expect(t, "table 200 after the restart", n.ip("route", "show", "table", "200", "proto", "97"), "100.64.3.0/24 dev kl1 scope link")
	n.expect(t, "main", n.ip("route", "show", "proto", "97"),
		"100.64.4.0/24 dev kl0 scope link src 192.168.0.12", "192.168.0.0/24 dev kl0 scope link src 192.168.0.12")
	n.expect(t, "the sibling's rule", n.ip("rule", "show", "priority", "1234"), "1234:\tfrom all lookup 200 proto 97")
	check()
	if ch, err := m2.Sync(want); err != nil || ch.Any() {
		t.Fatalf("sync after the restart wrote %+v (%v)", ch, err)
	}

	// RemoveAll in table 300: every route of ours (main included) and our
	// rule go; the sibling's stays.
	m3 := &Manager{Protocol: Protocol, Device: "kl0", Table: 300, RulePriority: 1300, Handle: n.nl}
	if _, err := m3.Sync(want); err != nil {
		t.Fatal(err)
	}
	n.expect(t, "rule 300", n.ip("rule", "show", "priority", "1300"), "1300:\tfrom all lookup 300 proto 97")
	n.expect(t, "main after the move to 300", n.ip("route", "show", "proto", "97"))
	if _, err := m3.RemoveAll(); err != nil {
		t.Fatal(err)
	}
	n.expect(t, "own routes after RemoveAll", n.ip("route", "show", "table", "all", "proto", "97", "dev", "kl0"))
	n.expect(t, "rule after RemoveAll", n.ip("rule", "show", "priority", "1300"))
	if r := m3.Record(); len(r.Routes)+len(r.Rules) != 0 {
		t.Fatalf("record after RemoveAll: %+v", r)
	}
	check()

	// The sibling's routes gone, its last user's restart finds the orphaned
	// tagged rule and removes it.
	n.lab.In(n.name, "ip", "route", "del", "100.64.3.0/24", "table", "200", "proto", "97")
	if _, err := (&Manager{Protocol: Protocol, Device: "kl1", Handle: n.nl}).Sync(nil); err != nil {
		t.Fatal(err)
	}
	n.expect(t, "orphaned rule", n.ip("rule", "show", "priority", "1234"))
	n.expect(t, "untagged rule", n.ip("rule", "show", "priority", "1500"), "1500:\tfrom all lookup 100")
	n.expect(t, "protocol-98 rule", n.ip("rule", "show", "priority", "1600"), "1600:\tfrom all lookup 100 proto 98")
}

// TestManagerRouter drives a router-style manager (protocol 98, no device,
// routes via a gateway, a record persisted on every change): conflicts
// with another protocol's route are left alone, a hold keeps the routes,
// RemoveAll removes routes and rule and empties the record.
func TestManagerRouter(t *testing.T) {
	n := newNS(t)
	n.lab.In(n.name, "ip", "addr", "add", "10.50.0.10/24", "dev", "kl0")
	n.lab.In(n.name, "ip", "route", "add", "100.64.9.0/24", "via", "10.50.0.2", "table", "100", "proto", "static")
	n.lab.In(n.name, "ip", "route", "add", "10.77.0.0/16", "dev", "kl1", "table", "100", "proto", "97")
	kl0, err := n.nl.LinkByName("kl0")
	if err != nil {
		t.Fatal(err)
	}
	var saved []Record
	m := &Manager{Protocol: RouterProtocol, Table: 100, RulePriority: 1000, Handle: n.nl,
		Persist: func(r Record) error { saved = append(saved, r); return nil }}
	gw := netip.MustParseAddr("10.50.0.2")
	via := func(dsts ...string) []Route {
		var out []Route
		for _, d := range dsts {
			out = append(out, Route{Dst: netip.MustParsePrefix(d), Gw: gw, LinkIndex: kl0.Attrs().Index})
		}
		return out
	}
	ch, err := m.Sync(via("100.64.2.0/24", "100.64.9.0/24", "192.168.0.0/24"))
	if err != nil || ch.Added != 3 || !slices.Equal(ch.Conflicts, []netip.Prefix{netip.MustParsePrefix("100.64.9.0/24")}) {
		t.Fatalf("first sync: %+v %v", ch, err)
	}
	n.expect(t, "table 100", n.ip("route", "show", "table", "100", "proto", "98"),
		"100.64.2.0/24 via 10.50.0.2 dev kl0", "192.168.0.0/24 via 10.50.0.2 dev kl0")
	n.expect(t, "conflict left alone", n.ip("route", "show", "table", "100", "100.64.9.0/24"), "100.64.9.0/24 via 10.50.0.2 dev kl0 proto static")
	n.expect(t, "rule", n.ip("rule", "show", "priority", "1000"), "1000:\tfrom all lookup 100 proto 98")
	if len(saved) == 0 || len(saved[len(saved)-1].Routes) != 2 || len(saved[len(saved)-1].Rules) != 1 {
		t.Fatalf("saved %+v", saved)
	}
	nsaved := len(saved)
	if ch, err := m.Hold(); err != nil || ch.Any() {
		t.Fatalf("hold: %+v %v", ch, err)
	}
	if ch, err := m.Sync(via("100.64.2.0/24", "100.64.9.0/24", "192.168.0.0/24")); err != nil || ch.Any() {
		t.Fatalf("second sync: %+v %v", ch, err)
	}
	if ch, err := m.RemoveAll(); err != nil || ch.Removed != 3 {
		t.Fatalf("RemoveAll: %+v %v", ch, err)
	}
	n.expect(t, "own routes after RemoveAll", n.ip("route", "show", "table", "all", "proto", "98"))
	n.expect(t, "rule after RemoveAll", n.ip("rule", "show", "priority", "1000"))
	n.expect(t, "others' routes", n.ip("route", "show", "table", "100"),
		"10.77.0.0/16 dev kl1 proto 97 scope link", "100.64.9.0/24 via 10.50.0.2 dev kl0 proto static")
	if last := saved[len(saved)-1]; len(saved) == nsaved || len(last.Routes)+len(last.Rules) != 0 {
		t.Fatalf("saved after RemoveAll: %+v", saved)
	}
}
