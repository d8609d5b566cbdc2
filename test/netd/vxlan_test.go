package netd_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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
	decDev      = "kubelink-vxdec"
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
	counter vxlan_g2 {}
	counter vxlan_pods {}
	counter dropped {}
	chain forward {
		type filter hook forward priority 0; policy accept;
		udp dport ` + vxlanPort + ` counter name "vxlan"
		ip daddr ` + gw2IP + ` udp dport ` + vxlanPort + ` counter name "vxlan_g2"
		ip daddr 10.244.0.0/16 udp dport ` + vxlanPort + ` counter name "vxlan_pods"
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
// routed behind the gateway) with the VXLAN decapsulation on ip (node
// mode; none when ip is empty).
func (l *vxlanLab) broker(ns, name, ip string, extra ...string) *knetns.Proc {
	l.t.Helper()
	args := []string{l.netd, "broker", "--mode", "none", "--kubeconfig", l.env.Kubeconfig, "--link-address", "192.168.0.11/24",
		"--server-port-http", "0"}
	if ip != "" {
		args = append(args, "--vxlan", "--vxlan-ip", ip)
	}
	args = append(args, extra...)
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

// podOn creates a pod-mode (not hostNetwork) broker pod with its pod IP
// and the IP of its node in the status.
func (l *vxlanLab) podOn(ctx context.Context, name, podIP, hostIP string) {
	l.t.Helper()
	pods := l.env.Client().CoreV1().Pods(routerNS)
	p, err := pods.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{NodeName: "node-g2",
			Containers: []corev1.Container{{Name: "netd", Image: "kubelink/netd"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		l.t.Fatal(err)
	}
	p.Status.Phase = corev1.PodRunning
	p.Status.HostIP, p.Status.PodIP = hostIP, podIP
	p.Status.HostIPs = []corev1.HostIP{{IP: hostIP}}
	p.Status.PodIPs = []corev1.PodIP{{IP: podIP}}
	if _, err := pods.UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		l.t.Fatal(err)
	}
}

// startOn runs netd router in the node namespace ns with the node IP ip
// and its own datafile.
func (l *vxlanLab) startOn(ns, ip, datafile, name string, extra ...string) *knetns.Proc {
	l.t.Helper()
	args := append([]string{l.netd, "router", "--kubeconfig", l.kubeconfig, "--link-address", "192.168.0.11/24",
		"--node-ip", ip, "--lease-name", routerLease, "--lease-namespace", routerNS,
		"--datafile", datafile, "--server-port-http", strconv.Itoa(routerPort), "--resync", routerResync.String()}, extra...)
	return startNetd(l.t, l.lab, ns, name, nil, "ROUTER_LOG", args...)
}

// routesIn lists the router's routes (protocol 98) in the main table of
// ns, sorted.
func routesIn(t *testing.T, ns string) []string {
	t.Helper()
	out, err := exec(ns, "ip", "route", "show", "table", "main", "proto", "98")
	if err != nil {
		t.Fatalf("ip route in %s: %v: %s", ns, err, out)
	}
	var lines []string
	for _, line := range strings.Split(out, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			lines = append(lines, line)
		}
	}
	slices.Sort(lines)
	return lines
}

// waitRoutesIn polls the router's routes in ns until they are want.
func waitRoutesIn(t *testing.T, ns string, want []string, timeout time.Duration, p *knetns.Proc) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got := routesIn(t, ns)
		if slices.Equal(got, want) {
			return time.Since(start)
		}
		if time.Since(start) > timeout || p.Exited() {
			t.Fatalf("routes in %s after %s:\n%s\nwant:\n%s", ns, time.Since(start).Round(time.Millisecond),
				strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readyIn waits for the router in ns to be ready.
func readyIn(t *testing.T, ns string, p *knetns.Proc) {
	t.Helper()
	waitFor(t, 30*time.Second, "router ready in "+ns, func() bool {
		if p.Exited() {
			t.Fatalf("router in %s exited:\n%s", ns, p.Output())
		}
		out, err := curl(ns, fmt.Sprintf("http://127.0.0.1:%d/readyz", routerPort))
		return err == nil && strings.TrimSpace(out) == "ok"
	})
}

// devicesIn is the devices a router's datafile records.
func devicesIn(t *testing.T, datafile string) []string {
	t.Helper()
	b, err := os.ReadFile(datafile)
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Routes  []any    `json:"routes"`
		Devices []string `json:"devices"`
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatalf("datafile %s: %v\n%s", datafile, err, b)
	}
	if rec.Devices == nil {
		rec.Devices = []string{}
	}
	return rec.Devices
}

// dialFrom connects from ns, with the source address src, to dst and
// returns the answer's first line.
func dialFrom(ns, src, dst string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var c net.Conn
	err := knetns.Do(ns, func() (err error) {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err = d.DialContext(ctx, "tcp", dst)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// TestRouterVXLAN: a pod on the worker N reaches a mesh destination behind
// the gateway over the router's VXLAN, while the node network drops the
// same connection routed directly (--ipip none); the gateway moves (node
// mode G1 → G2, to N itself, to a pod-mode gateway on G2) and the tunnel
// follows, also past a killed broker's leftover device. The VXLAN always
// ends on the gateway's node: for the pod-mode gateway G2's router
// decapsulates and routes on to the pod, so a reply to a connection that
// a kube-proxy stand-in on G2 DNATed to an endpoint on N comes back through
// G2's conntrack. A strict default rp_filter is overridden on both kinds of
// decapsulating device; shutdowns remove every device.
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

	// In a real cluster only the active broker has a device; G2's, killed,
	// leaves its device behind (the router on G2 removes it below).
	b2.Kill(syscall.SIGKILL)

	t.Run("pod mode", func(t *testing.T) {
		l.podMode(ctx, t, p)
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
}

// podMode: the gateway is a pod on G2 (10.244.2.2). Its broker does not
// decapsulate (netd refuses --vxlan with --pod-cidr); N's VXLAN goes to
// G2's node IP, where G2's router owns the decapsulating device and routes
// on to the pod. So every packet to and from the gateway pod passes G2's
// network namespace and its conntrack, where kube-proxy's DNAT of the
// gateway pod's connections is recorded: the reply of a Service endpoint on
// the worker is un-DNATed on its way back. p is N's router.
func (l *vxlanLab) podMode(ctx context.Context, t *testing.T, p *knetns.Proc) {
	if out, err := exec(l.gp, "timeout", "10", l.netd, "broker", "--mode", "none", "--kubeconfig", l.env.Kubeconfig,
		"--link-address", "192.168.0.11/24", "--pod-cidr", "10.244.0.0/16", "--vxlan", "--vxlan-ip", gwPodIP); err == nil ||
		!strings.Contains(out, "--vxlan and --pod-cidr (pod mode) are mutually exclusive") {
		t.Fatalf("netd broker --vxlan --pod-cidr: %v: %s", err, out)
	}
	// G2 is a node now, not a gateway: the mesh behind it is the gateway
	// pod's, which G2's router routes to.
	l.lab.In(l.g2, "ip", "route", "del", "10.20.0.0/16")
	// A strict host for new devices: the router sets its device's
	// rp_filter to 0 through rtnetlink.
	l.lab.In(l.g2, "sysctl", "-qw", "net.ipv4.conf.default.rp_filter=1")
	bp := l.broker(l.gp, "broker-gp", "", "--pod-cidr", "10.244.0.0/16")
	g2file := filepath.Join(t.TempDir(), "router-g2.json")
	pg := l.startOn(l.g2, gw2IP, g2file, "router-g2", "--vxlan")
	// The gateway is still N (node mode): G2 sends its VXLAN there, past
	// the killed broker's leftover device, which held the VNI and port.
	waitRoutesIn(t, l.g2, viaVXLAN(nodeIP), 30*time.Second, pg)
	if hasLink(l.g2, gwDev) || !strings.Contains(pg.Output(), "leftover vxlan decapsulation device") {
		t.Fatalf("G2: the killed broker's %s %v; router output:\n%s", gwDev, hasLink(l.g2, gwDev), pg.Output())
	}

	var podRoutes []string
	for _, d := range allDsts {
		podRoutes = append(podRoutes, d+" via "+gwPodIP+" dev gp0")
	}
	slices.Sort(podRoutes)
	l.podOn(ctx, "gw-pod", gwPodIP, gw2IP)
	start := time.Now()
	l.setHolder(ctx, "gw-pod")
	// N: to G2's node IP (inner 240.50.0.2), not to the pod IP.
	l.waitRoutes("main", viaVXLAN(gw2IP), 10*time.Second, p)
	tn := time.Since(start)
	// G2: plainly to the pod, and the decapsulating device instead of the
	// encapsulating one (same VNI and port).
	waitRoutesIn(t, l.g2, podRoutes, 10*time.Second, pg)
	waitFor(t, 10*time.Second, "G2: decapsulating device instead of the node's", func() bool {
		return hasLink(l.g2, decDev) && !hasLink(l.g2, nodeDev)
	})
	t.Logf("gateway → pod on G2: N routes via 240.50.0.2 after %s, G2 routes via the pod and owns %s after %s",
		tn.Round(time.Millisecond), decDev, time.Since(start).Round(time.Millisecond))
	if !hasLink(l.node, nodeDev) || hasLink(l.node, gwDev) || !strings.Contains(p.Output(), "leftover vxlan decapsulation device") {
		t.Fatalf("N: %s %v, the killed broker's %s %v; router output:\n%s", nodeDev, hasLink(l.node, nodeDev), gwDev, hasLink(l.node, gwDev), p.Output())
	}
	if fdb := strings.TrimSpace(l.lab.Run("bridge", "-n", l.node, "fdb", "show", "dev", nodeDev)); fdb != "02:6b:0a:32:00:02 dst "+gw2IP+" self permanent" {
		t.Fatalf("N's FDB: %s", fdb)
	}
	out := l.lab.In(l.g2, "ip", "-d", "addr", "show", "dev", decDev)
	for _, w := range []string{"link/ether 02:6b:0a:32:00:02", "vxlan id 4803 local " + gw2IP, "dstport 4803", "nolearning", "inet 240.50.0.2/32 scope link"} {
		if !strings.Contains(out, w) {
			t.Errorf("G2's %s lacks %q:\n%s", decDev, w, out)
		}
	}
	if fdb := l.lab.Run("bridge", "-n", l.g2, "fdb", "show", "dev", decDev); strings.Contains(fdb, " dst ") {
		t.Errorf("G2's %s has a remote: %s", decDev, fdb)
	}
	if v := strings.TrimSpace(l.lab.In(l.g2, "cat", "/proc/sys/net/ipv4/conf/"+decDev+"/rp_filter")); v != "0" {
		t.Fatalf("rp_filter of %s on G2 is %s, want 0", decDev, v)
	}
	if d := devicesIn(t, g2file); !slices.Equal(d, []string{decDev}) {
		t.Fatalf("G2's datafile records %v", d)
	}
	if hasLink(l.gp, gwDev) || hasLink(l.gp, decDev) {
		t.Fatalf("a vxlan device in the gateway pod")
	}

	// The worker's pod reaches the mesh behind the gateway pod: N's frames
	// go to G2's node IP (never to a pod IP), G2's device takes them in.
	_, tx0 := packets(t, l.node, nodeDev)
	rx0, _ := packets(t, l.g2, decDev)
	g20, pods0, dropped := l.fabric("vxlan_g2"), l.fabric("vxlan_pods"), l.fabric("dropped")
	l.reachFrom(l.wpod, "m3", workerPodIP)
	_, tx1 := packets(t, l.node, nodeDev)
	rx1, _ := packets(t, l.g2, decDev)
	if tx1 == tx0 || rx1 == rx0 || l.fabric("vxlan_g2") == g20 || l.fabric("vxlan_pods") != pods0 || l.fabric("dropped") != dropped {
		t.Fatalf("not over VXLAN to G2: N %s tx %d→%d, G2 %s rx %d→%d, UDP to G2 %d→%d, to pods %d→%d, dropped %d→%d",
			nodeDev, tx0, tx1, decDev, rx0, rx1, g20, l.fabric("vxlan_g2"), pods0, l.fabric("vxlan_pods"), dropped, l.fabric("dropped"))
	}
	t.Logf("pod → m3 through the pod-mode gateway: N %s sent %d packets, G2's %s received %d, %d UDP/%s packets to G2's node IP, none to a pod IP",
		nodeDev, tx1-tx0, decDev, rx1-rx0, l.fabric("vxlan_g2")-g20, vxlanPort)

	// kube-proxy on G2, by a stand-in: the ClusterIP 10.96.0.10:80 is
	// DNATed to an endpoint on the worker (10.244.1.2:8081). A connection
	// from the mesh behind the gateway pod (m3, as 10.20.0.10) passes G2,
	// which DNATs it; the endpoint's reply to 10.20.0.10 takes N's mesh
	// route over VXLAN, and must come back through G2 to be un-DNATed:
	// delivered into the gateway pod directly, it would carry the
	// endpoint's address, which m3 never called.
	ln, err := knetns.Listen(l.wpod, "tcp", workerPodIP+":8081")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, "endpoint", c.RemoteAddr())
			c.Close()
		}
	}()
	kubeProxy := `table ip kubeproxy-standin {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr 10.96.0.10 tcp dport 80 dnat to ` + workerPodIP + `:8081
	}
}`
	cmd := osexec.Command("ip", "netns", "exec", l.g2, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(kubeProxy)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kube-proxy stand-in: %v: %s", err, out)
	}
	var m3 string
	for _, ns := range l.lab.Namespaces() {
		if strings.HasSuffix(ns, "-m3") {
			m3 = ns
		}
	}
	_, tx0 = packets(t, l.node, nodeDev)
	rx0, _ = packets(t, l.g2, decDev)
	got, err := dialFrom(m3, meshDst, "10.96.0.10:80", 3*time.Second)
	if err != nil {
		t.Fatalf("m3 (%s) → ClusterIP 10.96.0.10:80 (endpoint %s:8081 on the worker): %v", meshDst, workerPodIP, err)
	}
	if f := strings.Fields(got); len(f) != 2 || f[0] != "endpoint" || !strings.HasPrefix(f[1], meshDst+":") {
		t.Fatalf("m3 → ClusterIP: answer %q, want the endpoint seeing %s", got, meshDst)
	}
	_, tx1 = packets(t, l.node, nodeDev)
	rx1, _ = packets(t, l.g2, decDev)
	if tx1 == tx0 || rx1 == rx0 {
		t.Fatalf("the endpoint's reply did not take the VXLAN to G2: N tx %d→%d, G2 rx %d→%d", tx0, tx1, rx0, rx1)
	}
	t.Logf("m3 → ClusterIP DNATed on G2 to the worker's endpoint: the reply came back over VXLAN through G2 (%d packets decapsulated), un-DNATed", rx1-rx0)

	// kill -9 and an unchanged restart: no duplicate device, no writes.
	pg.Kill(syscall.SIGKILL)
	pg = l.startOn(l.g2, gw2IP, g2file, "router-g2-again", "--vxlan")
	readyIn(t, l.g2, pg)
	for _, m := range []string{"netd_router_device_writes", "netd_router_route_writes", "netd_router_datafile_writes"} {
		if w := metric(t, l.g2, routerPort, m); w != 0 {
			t.Fatalf("an unchanged restart on G2: %s %v", m, w)
		}
	}
	if out := l.lab.In(l.g2, "ip", "-o", "link", "show", "type", "vxlan"); strings.Count(out, "\n") != 1 || !strings.Contains(out, decDev) {
		t.Fatalf("G2's vxlan devices after the restart:\n%s", out)
	}
	// kill -9 and a restart without VXLAN: the recorded device goes.
	pg.Kill(syscall.SIGKILL)
	pg = l.startOn(l.g2, gw2IP, g2file, "router-g2-direct")
	waitFor(t, 10*time.Second, "G2's decapsulating device removed after the mode change", func() bool { return !hasLink(l.g2, decDev) })
	waitRoutesIn(t, l.g2, podRoutes, 10*time.Second, pg)
	pg.Kill(syscall.SIGTERM)
	pg = l.startOn(l.g2, gw2IP, g2file, "router-g2-3", "--vxlan")
	waitFor(t, 30*time.Second, "G2's decapsulating device back", func() bool { return hasLink(l.g2, decDev) })
	l.reachFrom(l.wpod, "m3", workerPodIP)

	// The gateway leaves G2: its router goes back to a node's device.
	start = time.Now()
	l.setHolder(ctx, "g1-pod")
	waitRoutesIn(t, l.g2, viaVXLAN(gw1IP), 10*time.Second, pg)
	waitFor(t, 10*time.Second, "G2: the node's device instead of the decapsulating one", func() bool {
		return !hasLink(l.g2, decDev) && hasLink(l.g2, nodeDev)
	})
	l.waitRoutes("main", viaVXLAN(gw1IP), 10*time.Second, p)
	t.Logf("gateway leaves G2: %s replaced by %s after %s", decDev, nodeDev, time.Since(start).Round(time.Millisecond))
	if d := devicesIn(t, g2file); !slices.Equal(d, []string{nodeDev}) {
		t.Fatalf("G2's datafile records %v", d)
	}
	// Back on G2, then the router's shutdown removes everything.
	l.setHolder(ctx, "gw-pod")
	waitRoutesIn(t, l.g2, podRoutes, 10*time.Second, pg)
	waitFor(t, 10*time.Second, "G2's decapsulating device back", func() bool { return hasLink(l.g2, decDev) })
	pg.Kill(syscall.SIGTERM)
	if hasLink(l.g2, decDev) || hasLink(l.g2, nodeDev) || len(routesIn(t, l.g2)) != 0 || len(devicesIn(t, g2file)) != 0 {
		t.Fatalf("G2 after the router's SIGTERM: %s %v, %s %v, routes %v, datafile %v", decDev, hasLink(l.g2, decDev),
			nodeDev, hasLink(l.g2, nodeDev), routesIn(t, l.g2), devicesIn(t, g2file))
	}
	bp.Kill(syscall.SIGTERM)
}
