package router

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/kubelink/kubelink/netd/vxlan"
	knetns "github.com/kubelink/kubelink/test/netns"
)

// node is a throw-away network namespace with a netlink handle into it.
type node struct {
	lab *knetns.Lab
	ns  string
	nl  *netlink.Handle
}

// newNode creates a namespace with eth0 10.50.0.10/24 (its peer in a
// second namespace holds 10.50.0.1 and 10.50.0.2).
func newNode(t *testing.T) *node {
	t.Helper()
	lab := knetns.New(t, "klrt")
	n := &node{lab: lab, ns: lab.NS("node")}
	peer := lab.NS("gw")
	lab.Veth(n.ns, "eth0", "10.50.0.10/24", peer, "eth0", "10.50.0.1/24")
	lab.Run("ip", "-n", peer, "addr", "add", "10.50.0.2/24", "dev", "eth0")
	h, err := vnetns.GetFromName(n.ns)
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

// routes lists `ip route show` lines of a protocol and table.
func (n *node) routes(proto, table string) []string {
	out := strings.TrimSpace(n.lab.Run("ip", "-n", n.ns, "route", "show", "table", table, "proto", proto))
	if out == "" {
		return nil
	}
	lines := strings.Split(out, "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return lines
}

func (n *node) index(t *testing.T, dev string) int {
	l, err := n.nl.LinkByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Index
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func routesVia(dsts []netip.Prefix, nh Nexthop) []Route {
	r, _ := Plan(dsts, nh)
	return r
}

func expectLines(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d lines, want %d:\n%s", what, len(got), len(want), strings.Join(got, "\n"))
	}
	for i, w := range want {
		if got[i] != w {
			t.Fatalf("%s line %d:\n got %q\nwant %q\nall:\n%s", what, i, got[i], w, strings.Join(got, "\n"))
		}
	}
}

// TestKernelApply: routes with protocol 98 only where wanted, a no-op apply
// writes nothing, gateway changes replace, others' routes (protocol 97,
// static, a conflicting destination) are never touched, a table change and
// a restart with the datafile remove the old table's routes and rule, and
// an empty state removes everything.
func TestKernelApply(t *testing.T) {
	n := newNode(t)
	eth0 := n.index(t, "eth0")
	// Somebody else's routes in the same (main) table.
	n.lab.In(n.ns, "ip", "route", "add", "10.77.0.0/16", "dev", "eth0", "proto", "97")
	n.lab.In(n.ns, "ip", "route", "add", "10.78.0.0/16", "via", "10.50.0.2", "proto", "static")
	n.lab.In(n.ns, "ip", "route", "add", "100.64.9.0/24", "via", "10.50.0.2", "proto", "static")
	foreign := func() {
		t.Helper()
		expectLines(t, "protocol 97", n.routes("97", "main"), "10.77.0.0/16 dev eth0 scope link")
		expectLines(t, "static", n.routes("static", "main"), "10.78.0.0/16 via 10.50.0.2 dev eth0", "100.64.9.0/24 via 10.50.0.2 dev eth0")
	}
	file := &Datafile{Path: filepath.Join(t.TempDir(), "router.json")}
	k := NewKernel(n.nl, file, Record{})
	dsts := prefixes("100.64.2.0/24", "100.64.9.0/24", "192.168.0.0/24")
	g1, err := k.Nexthop(addr("10.50.0.1"))
	if err != nil || g1.LinkIndex != eth0 || g1.OnLink {
		t.Fatalf("nexthop %+v %v", g1, err)
	}
	ch, err := k.Apply(State{Table: tableMain, Routes: routesVia(dsts, g1)})
	if err != nil || ch.Added != 2 || !slices.Equal(ch.Conflicts, prefixes("100.64.9.0/24")) {
		t.Fatalf("first apply: %+v %v", ch, err)
	}
	expectLines(t, "own routes", n.routes("98", "main"),
		"100.64.2.0/24 via 10.50.0.1 dev eth0", "192.168.0.0/24 via 10.50.0.1 dev eth0")
	foreign()
	if k.Routes() != 2 {
		t.Fatalf("route gauge %d", k.Routes())
	}
	rec, _ := (&Datafile{Path: file.Path}).Load()
	if len(rec.Routes) != 2 || rec.Routes[0] != (RouteRef{Table: tableMain, Dst: netip.MustParsePrefix("100.64.2.0/24")}) {
		t.Fatalf("datafile %+v", rec)
	}

	// No-op: nothing written, not even the file.
	w, fw := k.RouteWrites(), file.Writes()
	if ch, err := k.Apply(State{Table: tableMain, Routes: routesVia(dsts, g1)}); err != nil || ch.Any() || k.RouteWrites() != w || file.Writes() != fw {
		t.Fatalf("no-op apply wrote: %+v %v, route writes %d→%d, file writes %d→%d", ch, err, w, k.RouteWrites(), fw, file.Writes())
	}

	// Another gateway: replaced in place.
	g2, _ := k.Nexthop(addr("10.50.0.2"))
	if ch, err := k.Apply(State{Table: tableMain, Routes: routesVia(dsts, g2)}); err != nil || ch.Replaced != 2 || ch.Added+ch.Removed != 0 {
		t.Fatalf("gateway change: %+v %v", ch, err)
	}
	expectLines(t, "own routes", n.routes("98", "main"),
		"100.64.2.0/24 via 10.50.0.2 dev eth0", "192.168.0.0/24 via 10.50.0.2 dev eth0")

	// A destination goes; a route of ours deleted behind our back comes back.
	n.lab.In(n.ns, "ip", "route", "del", "192.168.0.0/24", "proto", "98")
	dsts = prefixes("100.64.3.0/24", "192.168.0.0/24")
	if ch, err := k.Apply(State{Table: tableMain, Routes: routesVia(dsts, g2)}); err != nil || ch.Added != 2 || ch.Removed != 1 {
		t.Fatalf("destination change: %+v %v", ch, err)
	}
	expectLines(t, "own routes", n.routes("98", "main"),
		"100.64.3.0/24 via 10.50.0.2 dev eth0", "192.168.0.0/24 via 10.50.0.2 dev eth0")
	foreign()

	// Table 100 with its rule: main is cleaned up.
	rule := &RuleRef{Table: 100, Priority: 1000}
	if _, err := k.Apply(State{Table: 100, Rule: rule, Routes: routesVia(dsts, g2)}); err != nil {
		t.Fatal(err)
	}
	if got := n.routes("98", "main"); len(got) != 0 {
		t.Fatalf("main still has own routes:\n%s", strings.Join(got, "\n"))
	}
	expectLines(t, "table 100", n.routes("98", "100"),
		"100.64.3.0/24 via 10.50.0.2 dev eth0", "192.168.0.0/24 via 10.50.0.2 dev eth0")
	if out := n.lab.In(n.ns, "ip", "rule", "show", "priority", "1000"); !strings.Contains(out, "lookup 100 proto 98") {
		t.Fatalf("rule: %q", out)
	}
	rw := k.RuleWrites()
	if _, err := k.Apply(State{Table: 100, Rule: rule, Routes: routesVia(dsts, g2)}); err != nil || k.RuleWrites() != rw {
		t.Fatalf("rule rewritten: %v %d→%d", err, rw, k.RuleWrites())
	}
	foreign()

	// A restart with the datafile and the main table again: table 100 and
	// the rule go.
	rec, err = (&Datafile{Path: file.Path}).Load()
	if err != nil || len(rec.Rules) != 1 || len(rec.Routes) != 2 {
		t.Fatalf("datafile before restart: %+v %v", rec, err)
	}
	file2 := &Datafile{Path: file.Path}
	rec, _ = file2.Load()
	k2 := NewKernel(n.nl, file2, rec)
	if _, err := k2.Apply(State{Table: tableMain, Routes: routesVia(dsts[:1], g2)}); err != nil {
		t.Fatal(err)
	}
	if got := n.routes("98", "100"); len(got) != 0 {
		t.Fatalf("table 100 still has own routes:\n%s", strings.Join(got, "\n"))
	}
	if out := n.lab.In(n.ns, "ip", "rule", "show", "priority", "1000"); strings.TrimSpace(out) != "" {
		t.Fatalf("stale rule: %q", out)
	}
	expectLines(t, "own routes", n.routes("98", "main"), "100.64.3.0/24 via 10.50.0.2 dev eth0")

	// Hold: the routes stay even though none are wanted.
	if ch, err := k2.Apply(State{Table: tableMain, HoldRoutes: true}); err != nil || ch.Any() || len(n.routes("98", "main")) != 1 {
		t.Fatalf("hold: %+v %v", ch, err)
	}
	// Shutdown: everything goes, the datafile is empty.
	if _, err := k2.Apply(State{Table: tableMain}); err != nil {
		t.Fatal(err)
	}
	if got := n.routes("98", "all"); len(got) != 0 {
		t.Fatalf("own routes left:\n%s", strings.Join(got, "\n"))
	}
	if rec, _ := (&Datafile{Path: file.Path}).Load(); !rec.Empty() {
		t.Fatalf("datafile not cleared: %+v", rec)
	}
	foreign()
}

// TestKernelOnlink: a gateway outside every connected subnet (reached
// through a router, as with /32 node addresses) is declared on-link on the
// device the kernel reaches it through.
func TestKernelOnlink(t *testing.T) {
	n := newNode(t)
	n.lab.In(n.ns, "ip", "route", "add", "10.9.0.0/16", "via", "10.50.0.1")
	k := NewKernel(n.nl, nil, Record{})
	nh, err := k.Nexthop(addr("10.9.0.5"))
	if err != nil || !nh.OnLink || nh.LinkIndex != n.index(t, "eth0") {
		t.Fatalf("nexthop %+v %v", nh, err)
	}
	if _, err := k.Apply(State{Table: tableMain, Routes: routesVia(prefixes("100.64.2.0/24"), nh)}); err != nil {
		t.Fatal(err)
	}
	expectLines(t, "own routes", n.routes("98", "main"), "100.64.2.0/24 via 10.9.0.5 dev eth0 onlink")
	if ch, err := k.Apply(State{Table: tableMain, Routes: routesVia(prefixes("100.64.2.0/24"), nh)}); err != nil || ch.Any() {
		t.Fatalf("onlink route not recognised as unchanged: %+v %v", ch, err)
	}
	if _, err := k.Nexthop(addr("203.0.113.1")); err == nil {
		t.Fatal("nexthop without a route to the gateway")
	}
	for a, want := range map[string]bool{"10.50.0.10": true, "127.0.0.1": true, "10.50.0.1": false} {
		if got, err := k.IsLocal(addr(a)); err != nil || got != want {
			t.Errorf("IsLocal(%s) = %v %v", a, got, err)
		}
	}
}

// TestKernelIPIP: the owned device is created with the node IP as local
// end, routes lead through it on-link, and it is removed when not wanted;
// tunl0 is never removed. Skips when the kernel has no ipip.
func TestKernelIPIP(t *testing.T) {
	n := newNode(t)
	file := &Datafile{Path: filepath.Join(t.TempDir(), "router.json")}
	k := NewKernel(n.nl, file, Record{})
	idx, err := k.EnsureDevice(IPIPConfigure, addr("10.50.0.10"))
	if errors.Is(err, ErrNoIPIP) {
		if !strings.Contains(err.Error(), "ipip") || !strings.Contains(err.Error(), "--ipip none") {
			t.Fatalf("unclear error: %v", err)
		}
		// Recorded before the attempt; an empty state clears it again.
		if _, err := k.Apply(State{Table: tableMain}); err != nil {
			t.Fatal(err)
		}
		if rec, _ := (&Datafile{Path: file.Path}).Load(); !rec.Empty() {
			t.Fatalf("datafile not cleared: %+v", rec)
		}
		t.Skipf("kernel has no ipip support (%v)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Apply(State{Table: tableMain, Device: OwnedDevice, Routes: routesVia(prefixes("100.64.2.0/24"), Nexthop{Gw: addr("10.50.0.1"), LinkIndex: idx, OnLink: true})}); err != nil {
		t.Fatal(err)
	}
	expectLines(t, "own routes", n.routes("98", "main"), "100.64.2.0/24 via 10.50.0.1 dev "+OwnedDevice+" onlink")
	if out := n.lab.In(n.ns, "ip", "-d", "link", "show", OwnedDevice); !strings.Contains(out, "local 10.50.0.10") {
		t.Fatalf("device: %s", out)
	}
	if _, err := k.EnsureDevice(IPIPShared, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Apply(State{Table: tableMain}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.nl.LinkByName(OwnedDevice); err == nil {
		t.Fatal("owned device left behind")
	}
	if _, err := n.nl.LinkByName(SharedDevice); err != nil {
		t.Fatalf("tunl0 removed: %v", err)
	}
	_ = os.Remove(file.Path)
}

// TestKernelVXLAN: the owned vxlan device is recorded, created for the
// node (a leftover broker device with its VNI and port removed first),
// pointed at the gateway; the routes lead to the gateway's inner
// address on-link; a gateway switch moves FDB, neighbour and routes; a
// state without it removes the device and clears the record.
func TestKernelVXLAN(t *testing.T) {
	n := newNode(t)
	file := &Datafile{Path: filepath.Join(t.TempDir(), "router.json")}
	k := NewKernel(n.nl, file, Record{})
	dsts := prefixes("100.64.2.0/24", "192.168.0.0/24")
	// A killed node-mode broker's device holds the VNI and port.
	if _, _, err := vxlan.Ensure(n.nl, vxlan.Spec{Name: vxlan.GatewayDevice, VNI: 4803, Port: 4803, Local: addr("10.50.0.10")}); err != nil {
		t.Fatal(err)
	}
	for i, gw := range []string{"10.50.0.1", "10.50.0.2"} {
		nh, stale, err := k.EnsureVXLAN(addr("10.50.0.10"), addr(gw), 4803, 4803)
		if err != nil {
			t.Fatal(err)
		}
		if stale != (i == 0) {
			t.Fatalf("gateway %s: removed a stale decapsulation device: %v", gw, stale)
		}
		if rec, _ := (&Datafile{Path: file.Path}).Load(); !slices.Equal(rec.Devices, []string{vxlan.NodeDevice}) {
			t.Fatalf("device not recorded: %+v", rec)
		}
		ch, err := k.Apply(State{Table: tableMain, Device: vxlan.NodeDevice, Routes: routesVia(dsts, nh)})
		if err != nil {
			t.Fatal(err)
		}
		if i == 1 && ch.Replaced != 2 {
			t.Fatalf("gateway switch: %+v, want 2 replacements", ch)
		}
		inner := vxlan.GatewayAddress(addr(gw)).String()
		expectLines(t, "own routes", n.routes("98", "main"),
			"100.64.2.0/24 via "+inner+" dev "+vxlan.NodeDevice+" onlink",
			"192.168.0.0/24 via "+inner+" dev "+vxlan.NodeDevice+" onlink")
		if out := strings.TrimSpace(n.lab.In(n.ns, "ip", "neigh", "show", "dev", vxlan.NodeDevice)); out != inner+" lladdr "+vxlan.MAC(addr(gw)).String()+" PERMANENT" {
			t.Fatalf("neighbours: %s", out)
		}
	}
	writes := k.DeviceWrites()
	if _, _, err := k.EnsureVXLAN(addr("10.50.0.10"), addr("10.50.0.2"), 4803, 4803); err != nil || k.DeviceWrites() != writes {
		t.Fatalf("unchanged EnsureVXLAN wrote %d, %v", k.DeviceWrites()-writes, err)
	}
	// A restart from the datafile with another mode removes it.
	rec, err := (&Datafile{Path: file.Path}).Load()
	if err != nil {
		t.Fatal(err)
	}
	k = NewKernel(n.nl, &Datafile{Path: file.Path}, rec)
	if _, err := k.Apply(State{Table: tableMain}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.nl.LinkByName(vxlan.NodeDevice); err == nil {
		t.Fatal("vxlan device left behind")
	}
	if got := n.routes("98", "main"); len(got) != 0 {
		t.Fatalf("routes left: %q", got)
	}
	if rec, _ := (&Datafile{Path: file.Path}).Load(); !rec.Empty() {
		t.Fatalf("datafile not cleared: %+v", rec)
	}
}

// TestKernelDecap: on the node of a pod-mode gateway the router's
// decapsulating device replaces the node's encapsulating one (same VNI and
// port) and a leftover broker device: local address the node IP, the
// derived gateway inner address and MAC, no remote, no FDB entries,
// rp_filter 0 on a strict host; recorded, unchanged without writes (also
// after a restart from the datafile), replaced by the node device when the
// gateway leaves, removed by a state without it.
func TestKernelDecap(t *testing.T) {
	n := newNode(t)
	file := &Datafile{Path: filepath.Join(t.TempDir(), "router.json")}
	k := NewKernel(n.nl, file, Record{})
	node := addr("10.50.0.10")
	// The rp_filter is read and set in the calling thread's namespace.
	decap := func(k *Kernel) (bool, error) {
		var stale bool
		err := knetns.Do(n.ns, func() (err error) {
			stale, err = k.EnsureDecap(node, 4803, 4803)
			return err
		})
		return stale, err
	}
	// A new device would inherit strict filtering.
	n.lab.In(n.ns, "sysctl", "-qw", "net.ipv4.conf.default.rp_filter=1")
	if _, _, err := k.EnsureVXLAN(node, addr("10.50.0.1"), 4803, 4803); err != nil {
		t.Fatal(err)
	}
	// The gateway pod comes to this node.
	if stale, err := decap(k); err != nil || stale {
		t.Fatalf("EnsureDecap: stale %v, %v", stale, err)
	}
	if _, err := n.nl.LinkByName(vxlan.NodeDevice); err == nil {
		t.Fatal("the node's encapsulating device is still there")
	}
	if rec, _ := (&Datafile{Path: file.Path}).Load(); !slices.Equal(rec.Devices, []string{vxlan.DecapDevice}) {
		t.Fatalf("record: %+v", rec)
	}
	out := n.lab.In(n.ns, "ip", "-d", "addr", "show", "dev", vxlan.DecapDevice)
	for _, w := range []string{"link/ether 02:6b:0a:32:00:0a", "vxlan id 4803 local 10.50.0.10", "dstport 4803", "nolearning", "inet 240.50.0.10/32 scope link"} {
		if !strings.Contains(out, w) {
			t.Errorf("%s lacks %q:\n%s", vxlan.DecapDevice, w, out)
		}
	}
	if strings.Contains(out, "remote") {
		t.Errorf("%s has a remote:\n%s", vxlan.DecapDevice, out)
	}
	if fdb := strings.TrimSpace(n.lab.Run("bridge", "-n", n.ns, "fdb", "show", "dev", vxlan.DecapDevice)); strings.Contains(fdb, " dst ") {
		t.Errorf("FDB of %s: %s", vxlan.DecapDevice, fdb)
	}
	if v := strings.TrimSpace(n.lab.In(n.ns, "cat", "/proc/sys/net/ipv4/conf/"+vxlan.DecapDevice+"/rp_filter")); v != "0" {
		t.Errorf("rp_filter of %s: %s, want 0", vxlan.DecapDevice, v)
	}
	if _, err := k.Apply(State{Table: tableMain, Device: vxlan.DecapDevice}); err != nil {
		t.Fatal(err)
	}
	writes, files := k.DeviceWrites(), file.Writes()
	if _, err := decap(k); err != nil || k.DeviceWrites() != writes || file.Writes() != files {
		t.Fatalf("unchanged EnsureDecap: %d device and %d file writes, %v", k.DeviceWrites()-writes, file.Writes()-files, err)
	}
	// A restart from the datafile (kill -9): found as it is.
	f2 := &Datafile{Path: file.Path}
	rec, err := f2.Load()
	if err != nil {
		t.Fatal(err)
	}
	k = NewKernel(n.nl, f2, rec)
	if _, err := decap(k); err != nil || k.DeviceWrites() != 0 || f2.Writes() != 0 {
		t.Fatalf("EnsureDecap after a restart: %d device and %d file writes, %v", k.DeviceWrites(), f2.Writes(), err)
	}
	if _, err := k.Apply(State{Table: tableMain, Device: vxlan.DecapDevice}); err != nil || f2.Writes() != 0 {
		t.Fatalf("Apply after a restart: %d file writes, %v", f2.Writes(), err)
	}
	// The gateway leaves this node: the node's device takes the VNI and port.
	if _, _, err := k.EnsureVXLAN(node, addr("10.50.0.2"), 4803, 4803); err != nil {
		t.Fatal(err)
	}
	if _, err := n.nl.LinkByName(vxlan.DecapDevice); err == nil {
		t.Fatal("the decapsulating device is still there")
	}
	if rec, _ := (&Datafile{Path: file.Path}).Load(); !slices.Equal(rec.Devices, []string{vxlan.NodeDevice}) {
		t.Fatalf("record: %+v", rec)
	}
	// Back on this node, past a killed node-mode broker's leftover.
	if _, err := k.Apply(State{Table: tableMain}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := vxlan.Ensure(n.nl, vxlan.Spec{Name: vxlan.GatewayDevice, VNI: 4803, Port: 4803, Local: node}); err != nil {
		t.Fatal(err)
	}
	if stale, err := decap(k); err != nil || !stale {
		t.Fatalf("EnsureDecap past a leftover: stale %v, %v", stale, err)
	}
	// A state without it (shutdown, mode change) removes it.
	if _, err := k.Apply(State{Table: tableMain}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.nl.LinkByName(vxlan.DecapDevice); err == nil {
		t.Fatal("decapsulating device left behind")
	}
	if rec, _ := (&Datafile{Path: file.Path}).Load(); !rec.Empty() {
		t.Fatalf("datafile not cleared: %+v", rec)
	}
}
