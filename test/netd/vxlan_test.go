package netd_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	osexec "os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	knetns "github.com/kubelink/kubelink/test/netns"
	"github.com/kubelink/kubelink/test/testenv"
)

const (
	meshDst     = "10.20.0.10" // behind every gateway: in kubelink2's egress 10.20.0.0/16
	workerPodIP = "10.244.1.2" // a pod on the worker N (pod CIDR 10.244.1.0/24)
	gwPodIP     = "10.244.2.2" // the pod-mode gateway's pod on G2 (pod CIDR 10.244.2.0/24)
	vxlanPort   = "4803"
	nodeDev     = "kubelink-vxlan"
	gwDev       = "kubelink-vxgw"
)

// vxlanLab is the router lab (N, G1, G2 on br0, apiserver, Lease, links)
// turned into a node network that does not route the mesh: the bridge
// forwards only IPv4 packets to node addresses (10.50.0.0/24) and pod
// CIDRs (10.244.0.0/16), like a cloud network that delivers only to
// addresses it knows. Added:
//
//	pod (10.244.1.2) ── N          pod CIDR routes (host-gw): 10.244.1.0/24 via N, 10.244.2.0/24 via G2
//	G1 ── m1 (10.20.0.10)          stand-in mesh destination behind node-mode gateway G1
//	G2 ── m2 (10.20.0.10)          the same behind G2
//	G2 ── gp (10.244.2.2) ── m3    pod-mode gateway pod on G2, mesh destination behind it
//
// Each m answers on 10.20.0.10:8080 with its name and the caller's address.
type vxlanLab struct {
	*routerLab
	sw, wpod, gp string
}

func newVXLANLab(t *testing.T) *vxlanLab {
	if _, err := osexec.LookPath("sysctl"); err != nil {
		testenv.SkipOrFail(t, "sysctl not installed (Debian package procps)")
	}
	if _, err := osexec.LookPath("bridge"); err != nil {
		testenv.SkipOrFail(t, "bridge not installed (Debian package iproute2)")
	}
	l := &vxlanLab{routerLab: newRouterLab(t)}
	lab := l.lab
	if out, err := exec(l.node, "ip", "link", "add", "vxprobe", "type", "vxlan", "id", "1", "dstport", vxlanPort); err != nil {
		testenv.SkipOrFail(t, "kernel without vxlan: %s", strings.TrimSpace(out))
	}
	lab.In(l.node, "ip", "link", "del", "vxprobe")
	for _, ns := range lab.Namespaces() {
		if strings.HasSuffix(ns, "-sw") {
			l.sw = ns // the router lab's switch
		}
	}
	fabric := `table bridge fabric {
	counter vxlan {}
	counter dropped {}
	chain forward {
		type filter hook forward priority 0; policy accept;
		udp dport ` + vxlanPort + ` counter name "vxlan"
		ip daddr != { 10.50.0.0/24, 10.244.0.0/16 } counter name "dropped" drop
	}
}`
	cmd := osexec.Command("ip", "netns", "exec", l.sw, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(fabric)
	if out, err := cmd.CombinedOutput(); err != nil {
		testenv.SkipOrFail(t, "nftables bridge family: %v: %s", err, out)
	}

	// The worker's pod.
	l.wpod = lab.NS("pod")
	lab.Veth(l.node, "pod0", "10.244.1.1/24", l.wpod, "eth0", workerPodIP+"/24")
	lab.In(l.wpod, "ip", "route", "add", "default", "via", "10.244.1.1")
	lab.Forwarding(l.node)
	// The pod-mode gateway's pod on G2.
	l.gp = lab.NS("gp")
	lab.Veth(l.g2, "gp0", "10.244.2.1/24", l.gp, "eth0", gwPodIP+"/24")
	lab.In(l.gp, "ip", "route", "add", "default", "via", "10.244.2.1")
	// The CNI's pod routes: every node reaches every pod CIDR.
	lab.In(l.node, "ip", "route", "add", "10.244.2.0/24", "via", gw2IP)
	for _, g := range []string{l.g1, l.g2} {
		lab.Forwarding(g)
		lab.In(g, "ip", "route", "add", "10.244.1.0/24", "via", nodeIP)
	}
	lab.Forwarding(l.gp)
	// Mesh destinations behind each gateway.
	for i, x := range []struct{ gw, name string }{{l.g1, "m1"}, {l.g2, "m2"}, {l.gp, "m3"}} {
		m := lab.NS(x.name)
		a, b := fmt.Sprintf("10.99.%d.1", i), fmt.Sprintf("10.99.%d.2", i)
		lab.Veth(x.gw, "mesh", a+"/30", m, "eth0", b+"/30")
		lab.In(m, "ip", "addr", "add", meshDst+"/32", "dev", "lo")
		lab.In(m, "ip", "route", "add", "default", "via", a)
		lab.In(x.gw, "ip", "route", "add", "10.20.0.0/16", "via", b)
		ln, err := knetns.Listen(m, "tcp", meshDst+":8080")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		name := x.name
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				fmt.Fprintln(c, name, c.RemoteAddr())
				c.Close()
			}
		}()
	}
	// Brokers reach the apiserver on their loopback, as N does.
	u, err := url.Parse(l.env.URL)
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{l.g1, l.g2, l.gp} {
		ln, err := knetns.Listen(ns, "tcp", u.Host)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go knetns.Relay(ln, u.Host, nil)
	}
	return l
}

// broker runs netd broker in mode none (no tunnel: the mesh destination is
// routed behind the gateway) with the VXLAN decapsulation on ip.
func (l *vxlanLab) broker(ns, name, ip string, extra ...string) *knetns.Proc {
	l.t.Helper()
	args := append([]string{l.netd, "broker", "--mode", "none", "--kubeconfig", l.env.Kubeconfig, "--link-address", "192.168.0.11/24",
		"--server-port-http", "0", "--vxlan", "--vxlan-ip", ip}, extra...)
	p := l.lab.Start(ns, name, nil, nil, args...)
	l.t.Cleanup(func() {
		p.Kill(syscall.SIGKILL)
		if strings.Contains(p.Output(), "DATA RACE") {
			l.t.Errorf("netd %s: data race", name)
		}
		if l.t.Failed() {
			l.t.Logf("%s output:\n%s", name, p.Output())
		}
	})
	return p
}

// dial connects from ns to the mesh destination and returns its answer.
func dial(ns string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := knetns.DialContext(ns)(ctx, "tcp", meshDst+":8080")
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// reachFrom asserts that ns reaches the mesh destination named want and
// that it sees the connection from src.
func (l *vxlanLab) reachFrom(ns, want, src string) {
	l.t.Helper()
	got, err := dial(ns, 3*time.Second)
	if err != nil {
		l.t.Fatalf("connecting from %s to %s:8080: %v", ns, meshDst, err)
	}
	f := strings.Fields(got)
	if len(f) != 2 || f[0] != want || !strings.HasPrefix(f[1], src+":") {
		l.t.Fatalf("from %s: answer %q, want %s seeing %s", ns, got, want, src)
	}
}

// unreachable asserts that a connection from ns to the mesh destination
// fails.
func (l *vxlanLab) unreachable(ns, why string) {
	l.t.Helper()
	if got, err := dial(ns, 2*time.Second); err == nil {
		l.t.Fatalf("%s: connection from %s succeeded: %q", why, ns, got)
	}
}

// packets is a device's received and sent packets (ip -s link).
func packets(t *testing.T, ns, dev string) (rx, tx uint64) {
	t.Helper()
	out, err := exec(ns, "ip", "-j", "-s", "link", "show", "dev", dev)
	if err != nil {
		t.Fatalf("ip -s link show %s in %s: %v: %s", dev, ns, err, out)
	}
	var links []struct {
		Stats64 struct {
			RX struct{ Packets uint64 } `json:"rx"`
			TX struct{ Packets uint64 } `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -j -s link: %v: %s", err, out)
	}
	return links[0].Stats64.RX.Packets, links[0].Stats64.TX.Packets
}

// fabric reads a named counter of the node network.
func (l *vxlanLab) fabric(name string) uint64 {
	l.t.Helper()
	out := l.lab.In(l.sw, "nft", "list", "counter", "bridge", "fabric", name)
	m := regexp.MustCompile(`packets (\d+)`).FindStringSubmatch(out)
	if m == nil {
		l.t.Fatalf("counter %s: %s", name, out)
	}
	n, _ := strconv.ParseUint(m[1], 10, 64)
	return n
}

func hasLink(ns, dev string) bool {
	_, err := exec(ns, "ip", "link", "show", "dev", dev)
	return err == nil
}

// waitFor polls cond every 20 ms until it holds.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// viaVXLAN is the routes expected through the VXLAN to the gateway with
// the outer address gw (inner address 240.b.c.d).
func viaVXLAN(gw string) []string {
	inner := "240." + strings.SplitN(gw, ".", 2)[1]
	var out []string
	for _, d := range allDsts {
		out = append(out, d+" via "+inner+" dev "+nodeDev+" onlink")
	}
	slices.Sort(out)
	return out
}

// TestRouterVXLAN: a pod on the worker N reaches a mesh destination behind
// the gateway over the router's VXLAN, while the node network drops the
// same connection routed directly (--ipip none); the gateway moves (node
// mode G1 → G2, to N itself, to a pod-mode gateway on G2) and the tunnel
// follows, also past a killed broker's leftover device; strict
// reverse-path filtering is handled on both gateway kinds; shutdowns
// remove every device.
func TestRouterVXLAN(t *testing.T) {
	l := newVXLANLab(t)
	ctx := context.Background()

	// Without encapsulation the node network drops the mesh traffic.
	p := l.start("router-direct")
	l.waitRoutes("main", via(gw1IP, allDsts...), 30*time.Second, p)
	dropped := l.fabric("dropped")
	l.unreachable(l.wpod, "routed directly to G1 through a node network without mesh routes")
	if d := l.fabric("dropped"); d == dropped {
		t.Fatalf("the node network dropped nothing (%d)", d)
	}
	t.Logf("--ipip none: the node network dropped %d packets of the pod's connection", l.fabric("dropped")-dropped)
	p.Kill(syscall.SIGTERM)
	l.checkRecordEmpty()

	// G1 is a strict host for new devices (default.rp_filter=1): the
	// broker sets its device's rp_filter to 0 through rtnetlink.
	l.lab.In(l.g1, "sysctl", "-qw", "net.ipv4.conf.default.rp_filter=1")
	b1 := l.broker(l.g1, "broker-g1", gw1IP)
	b2 := l.broker(l.g2, "broker-g2", gw2IP)
	waitFor(t, 10*time.Second, "decapsulation devices on G1 and G2", func() bool { return hasLink(l.g1, gwDev) && hasLink(l.g2, gwDev) })
	if v := strings.TrimSpace(l.lab.In(l.g1, "cat", "/proc/sys/net/ipv4/conf/"+gwDev+"/rp_filter")); v != "0" {
		t.Fatalf("rp_filter of %s on G1 is %s, want 0", gwDev, v)
	}
	out := l.lab.In(l.g1, "ip", "-d", "addr", "show", "dev", gwDev)
	for _, w := range []string{"link/ether 02:6b:0a:32:00:01", "vxlan id 4803 local " + gw1IP, "dstport 4803", "nolearning", "inet 240.50.0.1/32 scope link"} {
		if !strings.Contains(out, w) {
			t.Errorf("G1's %s lacks %q:\n%s", gwDev, w, out)
		}
	}

	start := time.Now()
	p = l.start("router-vxlan", "--vxlan")
	l.waitRoutes("main", viaVXLAN(gw1IP), 30*time.Second, p)
	t.Logf("router --vxlan: device and routes via G1 %s after the start", time.Since(start).Round(time.Millisecond))
	out = l.lab.In(l.node, "ip", "-d", "addr", "show", "dev", nodeDev)
	for _, w := range []string{"mtu 1450", "link/ether 02:6b:0a:32:00:0a", "vxlan id 4803 local " + nodeIP, "dstport 4803", "nolearning", "inet 241.50.0.10/32 scope link"} {
		if !strings.Contains(out, w) {
			t.Errorf("N's %s lacks %q:\n%s", nodeDev, w, out)
		}
	}
	if fdb := strings.TrimSpace(l.lab.Run("bridge", "-n", l.node, "fdb", "show", "dev", nodeDev)); fdb != "02:6b:0a:32:00:01 dst "+gw1IP+" self permanent" {
		t.Fatalf("N's FDB: %s", fdb)
	}
	_, tx0 := packets(t, l.node, nodeDev)
	rx0, _ := packets(t, l.g1, gwDev)
	udp0, dropped := l.fabric("vxlan"), l.fabric("dropped")
	l.reachFrom(l.wpod, "m1", workerPodIP)
	_, tx1 := packets(t, l.node, nodeDev)
	rx1, _ := packets(t, l.g1, gwDev)
	if tx1 == tx0 || rx1 == rx0 || l.fabric("vxlan") == udp0 || l.fabric("dropped") != dropped {
		t.Fatalf("not over VXLAN: N %s tx %d→%d, G1 %s rx %d→%d, UDP %s on the node network %d→%d, dropped %d→%d",
			nodeDev, tx0, tx1, gwDev, rx0, rx1, vxlanPort, udp0, l.fabric("vxlan"), dropped, l.fabric("dropped"))
	}
	t.Logf("pod → m1 over VXLAN: N %s sent %d packets, G1 %s received %d, %d UDP/%s packets crossed the node network, none dropped",
		nodeDev, tx1-tx0, gwDev, rx1-rx0, l.fabric("vxlan")-udp0, vxlanPort)
	// The node's own traffic keeps the node IP as source (the inner
	// address has scope link), so replies find their way back.
	l.reachFrom(l.node, "m1", nodeIP)
	l.waitReady(p)

	// Gateway switch G1 → G2: FDB, neighbour and routes follow.
	start = time.Now()
	l.setHolder(ctx, "g2-pod")
	l.waitRoutes("main", viaVXLAN(gw2IP), 10*time.Second, p)
	t.Logf("gateway switch G1 → G2: routes via 240.50.0.2 %s after the lease update", time.Since(start).Round(time.Millisecond))
	if fdb := strings.TrimSpace(l.lab.Run("bridge", "-n", l.node, "fdb", "show", "dev", nodeDev)); fdb != "02:6b:0a:32:00:02 dst "+gw2IP+" self permanent" {
		t.Fatalf("N's FDB after the switch: %s", fdb)
	}
	if n := strings.TrimSpace(l.lab.In(l.node, "ip", "neigh", "show", "dev", nodeDev)); n != "240.50.0.2 lladdr 02:6b:0a:32:00:02 PERMANENT" {
		t.Fatalf("N's neighbours after the switch: %s", n)
	}
	l.reachFrom(l.wpod, "m2", workerPodIP)

	// kill -9 and an unchanged restart: the device, its FDB and neighbour
	// and the routes are found as they are, nothing is written.
	p.Kill(syscall.SIGKILL)
	p = l.start("router-vxlan-again", "--vxlan")
	l.waitReady(p)
	for _, m := range []string{"netd_router_device_writes", "netd_router_route_writes", "netd_router_datafile_writes"} {
		if w := metric(t, l.node, routerPort, m); w != 0 {
			t.Fatalf("an unchanged restart: %s %v", m, w)
		}
	}
	// kill -9 and a restart without VXLAN: the recorded device goes.
	p.Kill(syscall.SIGKILL)
	p = l.start("router-direct-again")
	l.waitRoutes("main", via(gw2IP, allDsts...), 10*time.Second, p)
	waitFor(t, 5*time.Second, "the vxlan device removed after the mode change", func() bool { return !hasLink(l.node, nodeDev) })
	p.Kill(syscall.SIGTERM)
	p = l.start("router-vxlan-3", "--vxlan")
	l.waitRoutes("main", viaVXLAN(gw2IP), 30*time.Second, p)
	l.reachFrom(l.wpod, "m2", workerPodIP)

	// A broker shutdown removes its device.
	b1.Kill(syscall.SIGTERM)
	if hasLink(l.g1, gwDev) {
		t.Fatalf("%s left on G1 after the broker's SIGTERM:\n%s", gwDev, b1.Output())
	}

	// The gateway moves to N itself (node mode): the router gives up its
	// device, and a broker on N, which could not create its own with the
	// same VNI and port meanwhile, gets it.
	bn := l.broker(l.node, "broker-n", nodeIP)
	waitFor(t, 10*time.Second, "the broker on N failing on the shared VNI and port", func() bool {
		return strings.Contains(bn.Output(), "same VNI and port")
	})
	l.pod(ctx, "n-pod", nodeIP)
	start = time.Now()
	l.setHolder(ctx, "n-pod")
	l.waitRoutes("main", nil, 10*time.Second, p)
	waitFor(t, 10*time.Second, "N: router device gone, broker device there", func() bool {
		return !hasLink(l.node, nodeDev) && hasLink(l.node, gwDev)
	})
	t.Logf("gateway on N: router device removed and the broker's created %s after the lease update", time.Since(start).Round(time.Millisecond))
	// Killed, the broker leaves its device behind, holding the VNI and
	// port: the router removes it once the gateway is elsewhere (below).
	bn.Kill(syscall.SIGKILL)
	if !hasLink(l.node, gwDev) {
		t.Fatalf("no %s on N after the broker's kill -9", gwDev)
	}

	t.Run("pod mode", func(t *testing.T) {
		// The gateway pod's namespace inherited strict reverse-path
		// filtering from its host: decapsulated packets are dropped until
		// `netd ipforward --loose-rp-filter` (the chart's init container)
		// turns it loose.
		l.lab.In(l.gp, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1", "net.ipv4.conf.default.rp_filter=1")
		bp := l.broker(l.gp, "broker-gp", gwPodIP, "--pod-cidr", "10.244.0.0/16")
		waitFor(t, 10*time.Second, "decapsulation device in the gateway pod", func() bool { return hasLink(l.gp, gwDev) })
		l.pod(ctx, "gw-pod", gwPodIP)
		start := time.Now()
		l.setHolder(ctx, "gw-pod")
		l.waitRoutes("main", viaVXLAN(gwPodIP), 10*time.Second, p)
		t.Logf("gateway → pod-mode gateway %s: routes via 240.244.2.2 %s after the lease update", gwPodIP, time.Since(start).Round(time.Millisecond))
		if !hasLink(l.node, nodeDev) || hasLink(l.node, gwDev) || !strings.Contains(p.Output(), "leftover vxlan decapsulation device") {
			t.Fatalf("N: %s %v, the killed broker's %s %v; router output:\n%s", nodeDev, hasLink(l.node, nodeDev), gwDev, hasLink(l.node, gwDev), p.Output())
		}
		waitFor(t, 5*time.Second, "the broker's rp_filter warning", func() bool {
			return strings.Contains(bp.Output(), "strict reverse-path filtering")
		})
		rx0, _ := packets(t, l.gp, gwDev)
		l.unreachable(l.wpod, "strict rp_filter in the gateway pod")
		rx1, _ := packets(t, l.gp, gwDev)
		if rx1 == rx0 {
			t.Fatalf("nothing arrived on the gateway pod's %s", gwDev)
		}
		t.Logf("strict rp_filter: %d packets decapsulated in the gateway pod and dropped", rx1-rx0)
		if out := l.lab.In(l.gp, l.netd, "ipforward", "--loose-rp-filter"); !strings.Contains(out, "net.ipv4.conf.all.rp_filter = 2 (was 1)") {
			t.Fatalf("netd ipforward --loose-rp-filter: %s", out)
		}
		_, tx0 := packets(t, l.node, nodeDev)
		l.reachFrom(l.wpod, "m3", workerPodIP)
		_, tx1 := packets(t, l.node, nodeDev)
		rx2, _ := packets(t, l.gp, gwDev)
		if tx1 == tx0 || rx2 == rx1 {
			t.Fatalf("not over VXLAN: N tx %d→%d, gateway pod rx %d→%d", tx0, tx1, rx1, rx2)
		}
		t.Logf("pod → m3 through the pod-mode gateway: N %s sent %d packets, the gateway pod's %s received %d", nodeDev, tx1-tx0, gwDev, rx2-rx1)
		bp.Kill(syscall.SIGTERM)
		if hasLink(l.gp, gwDev) {
			t.Fatalf("%s left in the gateway pod after the broker's SIGTERM", gwDev)
		}
	})

	// The router's shutdown removes its device, routes and record.
	p.Kill(syscall.SIGTERM)
	if hasLink(l.node, nodeDev) {
		t.Fatalf("%s left on N after the router's SIGTERM", nodeDev)
	}
	if got := l.routes("98", "all"); len(got) != 0 {
		t.Fatalf("routes left after SIGTERM:\n%s", strings.Join(got, "\n"))
	}
	l.checkRecordEmpty()
	l.checkForeign()
	b2.Kill(syscall.SIGTERM)
	if hasLink(l.g2, gwDev) {
		t.Fatalf("%s left on G2 after the broker's SIGTERM", gwDev)
	}
}
