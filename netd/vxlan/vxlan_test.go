package vxlan

import (
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	knetns "github.com/kubelink/kubelink/test/netns"
)

func TestDerive(t *testing.T) {
	for _, tc := range []struct{ outer, gw, node, mac string }{
		{"10.50.0.1", "240.50.0.1", "241.50.0.1", "02:6b:0a:32:00:01"},
		{"192.168.7.200", "240.168.7.200", "241.168.7.200", "02:6b:c0:a8:07:c8"},
		// Differing only in the first octet: the inner addresses meet,
		// the MAC tells them apart.
		{"11.50.0.1", "240.50.0.1", "241.50.0.1", "02:6b:0b:32:00:01"},
		{"::ffff:10.0.0.1", "240.0.0.1", "241.0.0.1", "02:6b:0a:00:00:01"},
	} {
		o := netip.MustParseAddr(tc.outer)
		if g, n, m := GatewayAddress(o).String(), NodeAddress(o).String(), MAC(o).String(); g != tc.gw || n != tc.node || m != tc.mac {
			t.Errorf("%s: gateway %s node %s mac %s, want %s %s %s", tc.outer, g, n, m, tc.gw, tc.node, tc.mac)
		}
		if MAC(o)[0]&0x03 != 0x02 {
			t.Errorf("%s: MAC %s is not locally administered unicast", tc.outer, MAC(o))
		}
	}
	// A node's inner address is never a gateway's.
	if NodeAddress(netip.MustParseAddr("10.50.0.1")) == GatewayAddress(netip.MustParseAddr("10.50.0.1")) {
		t.Fatal("node and gateway share inner addresses")
	}
}

func TestValidate(t *testing.T) {
	for _, p := range []int{1, 4803, 65535} {
		if err := ValidatePort("--vxlan-port", p); err != nil {
			t.Errorf("port %d: %v", p, err)
		}
	}
	for _, p := range []int{0, -1, 65536} {
		if err := ValidatePort("--vxlan-port", p); err == nil || !strings.Contains(err.Error(), "--vxlan-port") {
			t.Errorf("port %d: %v", p, err)
		}
	}
	for _, v := range []int{1, 4803, 1<<24 - 1} {
		if err := ValidateVNI("--vxlan-vni", v); err != nil {
			t.Errorf("vni %d: %v", v, err)
		}
	}
	for _, v := range []int{0, 1 << 24} {
		if err := ValidateVNI("--vxlan-vni", v); err == nil || !strings.Contains(err.Error(), "--vxlan-vni") {
			t.Errorf("vni %d: %v", v, err)
		}
	}
}

// TestDevice (root): create, no-op, reconfigure, point at a gateway and
// move it, rp_filter through rtnetlink, remove — in a throw-away namespace.
func TestDevice(t *testing.T) {
	lab := knetns.New(t, "klvx")
	ns := lab.NS("node")
	peer := lab.NS("gw")
	lab.Veth(ns, "eth0", "10.50.0.10/24", peer, "eth0", "10.50.0.1/24")
	nsh, err := vnetns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	local := netip.MustParseAddr("10.50.0.10")
	mtu, err := UnderlayMTU(h, netip.MustParseAddr("10.50.0.1"))
	if err != nil || mtu != 1450 {
		t.Fatalf("underlay MTU %d %v, want 1450", mtu, err)
	}
	s := Spec{Name: NodeDevice, VNI: 4803, Port: 4803, Local: local, Inner: NodeAddress(local), MAC: MAC(local), MTU: mtu}
	link, n, err := Ensure(h, s)
	if err != nil {
		if strings.Contains(err.Error(), ErrNoVXLAN.Error()) {
			t.Skipf("kernel without vxlan: %v", err)
		}
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("creation counted no writes")
	}
	show := func(args ...string) string {
		return lab.Run(append([]string{"ip", "-n", ns}, args...)...)
	}
	out := show("-d", "link", "show", NodeDevice)
	for _, w := range []string{"vxlan id 4803", "local 10.50.0.10", "dstport 4803", "nolearning", "mtu 1450", "02:6b:0a:32:00:0a", "state UNKNOWN"} {
		if !strings.Contains(out, w) {
			t.Errorf("device lacks %q:\n%s", w, out)
		}
	}
	if out := show("-4", "addr", "show", "dev", NodeDevice); !strings.Contains(out, "inet 241.50.0.10/32 scope link") {
		t.Errorf("inner address:\n%s", out)
	}
	if _, n, err := Ensure(h, s); err != nil || n != 0 {
		t.Fatalf("unchanged Ensure: %d writes, %v", n, err)
	}

	// Point at a gateway, then move it: exactly one FDB entry and one
	// neighbour each time.
	for _, gw := range []string{"10.50.0.1", "10.60.0.7"} {
		g := netip.MustParseAddr(gw)
		if n, err := SetPeer(h, link, g); err != nil || n == 0 {
			t.Fatalf("SetPeer %s: %d writes, %v", gw, n, err)
		}
		if n, err := SetPeer(h, link, g); err != nil || n != 0 {
			t.Fatalf("unchanged SetPeer %s: %d writes, %v", gw, n, err)
		}
		fdb := strings.TrimSpace(lab.Run("bridge", "-n", ns, "fdb", "show", "dev", NodeDevice))
		if want := MAC(g).String() + " dst " + gw + " self permanent"; fdb != want {
			t.Errorf("fdb after %s:\n%s\nwant %s", gw, fdb, want)
		}
		neigh := strings.TrimSpace(show("neigh", "show", "dev", NodeDevice))
		if want := GatewayAddress(g).String() + " lladdr " + MAC(g).String() + " PERMANENT"; neigh != want {
			t.Errorf("neighbours after %s:\n%s\nwant %s", gw, neigh, want)
		}
	}

	// Another VNI: recreated (it is ours by name).
	s.VNI = 77
	if _, n, err := Ensure(h, s); err != nil || n < 2 {
		t.Fatalf("Ensure with another VNI: %d writes, %v", n, err)
	}
	if out := show("-d", "link", "show", NodeDevice); !strings.Contains(out, "vxlan id 77 ") {
		t.Errorf("not recreated:\n%s", out)
	}

	// rp_filter through rtnetlink: the device inherits default=1, the
	// setting takes it to 0, and all=1 still makes it strict.
	lab.In(ns, "sysctl", "-qw", "net.ipv4.conf.default.rp_filter=1")
	if _, err := Remove(h, NodeDevice); err != nil {
		t.Fatal(err)
	}
	link, _, err = Ensure(h, s)
	if err != nil {
		t.Fatal(err)
	}
	rp := func() string {
		return strings.TrimSpace(lab.In(ns, "cat", "/proc/sys/net/ipv4/conf/"+NodeDevice+"/rp_filter"))
	}
	if v := rp(); v != "1" {
		t.Fatalf("inherited rp_filter %s, want 1", v)
	}
	if err := knetns.Do(ns, func() error { return SetRPFilter(link.Attrs().Index, 0) }); err != nil {
		t.Fatal(err)
	}
	if v := rp(); v != "0" {
		t.Fatalf("rp_filter %s after SetRPFilter, want 0", v)
	}

	// Another device of the name is not ours: an error, and Remove leaves it.
	if _, err := Remove(h, NodeDevice); err != nil {
		t.Fatal(err)
	}
	if _, err := h.LinkByName(NodeDevice); err == nil {
		t.Fatal("device left after Remove")
	}
	lab.Run("ip", "-n", ns, "link", "add", NodeDevice, "type", "bridge")
	if _, _, err := Ensure(h, s); err == nil || !strings.Contains(err.Error(), "not vxlan") {
		t.Fatalf("Ensure over a bridge device: %v", err)
	}
	if removed, err := Remove(h, NodeDevice); err != nil || removed {
		t.Fatalf("Remove of a bridge: %v %v", removed, err)
	}

	// The same VNI and port twice in one namespace: a clear error.
	lab.Run("ip", "-n", ns, "link", "del", NodeDevice)
	if _, _, err := Ensure(h, s); err != nil {
		t.Fatal(err)
	}
	g := s
	g.Name, g.Inner, g.MAC = GatewayDevice, GatewayAddress(local), MAC(local)
	if _, _, err := Ensure(h, g); err == nil || !strings.Contains(err.Error(), "same VNI and port") {
		t.Fatalf("second device with the same VNI and port: %v", err)
	}
}

// TestLoosenRPFilter (root): only strict becomes loose.
func TestLoosenRPFilter(t *testing.T) {
	lab := knetns.New(t, "klvr")
	ns := lab.NS("gw")
	if _, err := exec.LookPath("sysctl"); err != nil {
		t.Skip("no sysctl (Debian package procps)")
	}
	for _, tc := range []struct{ before, after string }{{"0", "0"}, {"1", "2"}, {"2", "2"}} {
		lab.In(ns, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter="+tc.before)
		var was int
		err := knetns.Do(ns, func() error {
			var err error
			was, err = LoosenRPFilter()
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		got := strings.TrimSpace(lab.In(ns, "cat", "/proc/sys/net/ipv4/conf/all/rp_filter"))
		if got != tc.after || tc.before != string(rune('0'+was)) {
			t.Errorf("rp_filter %s → %s (reported %d), want %s", tc.before, got, was, tc.after)
		}
	}
}

// TestReceiver (root): a decapsulating device gets rp_filter 0 over an
// inherited strict default, in the calling thread's namespace only.
func TestReceiver(t *testing.T) {
	lab := knetns.New(t, "klvr")
	ns := lab.NS("node")
	peer := lab.NS("w")
	lab.Veth(ns, "eth0", "10.50.0.2/24", peer, "eth0", "10.50.0.10/24")
	nsh, err := vnetns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lab.In(ns, "sysctl", "-qw", "net.ipv4.conf.default.rp_filter=1")
	ip := netip.MustParseAddr("10.50.0.2")
	s := Spec{Name: DecapDevice, VNI: 4803, Port: 4803, Local: ip, Inner: GatewayAddress(ip), MAC: MAC(ip)}
	// From another namespace the device's index means nothing: refused
	// (after the device itself was made through the handle).
	if _, _, err := EnsureReceiver(h, s); err == nil || !strings.Contains(err.Error(), "calling thread's network namespace") {
		if err != nil && strings.Contains(err.Error(), ErrNoVXLAN.Error()) {
			t.Skipf("kernel without vxlan: %v", err)
		}
		t.Fatalf("EnsureReceiver from another namespace: %v", err)
	}
	var n int
	if err := knetns.Do(ns, func() (err error) { _, n, err = EnsureReceiver(h, s); return err }); err != nil || n != 1 {
		t.Fatalf("EnsureReceiver: %d writes (want the rp_filter), %v", n, err)
	}
	if v := strings.TrimSpace(lab.In(ns, "cat", "/proc/sys/net/ipv4/conf/"+DecapDevice+"/rp_filter")); v != "0" {
		t.Fatalf("rp_filter %s, want 0", v)
	}
	if err := knetns.Do(ns, func() (err error) { _, n, err = EnsureReceiver(h, s); return err }); err != nil || n != 0 {
		t.Fatalf("unchanged EnsureReceiver: %d writes, %v", n, err)
	}
}
