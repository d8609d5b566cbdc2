// Command benchnetd (make bench-netd, root) measures the broker's
// reconcile at mesh scale. It runs two cases by default: a full /24 mesh
// (250 foreign WireGuard links, 1,000 MeshServices) and a /22 mesh (1,000
// links, 10,000 MeshServices), each applied by netd's own dataplane code to
// the real kernel inside network namespaces it creates (embedded WireGuard
// device, routes, the nftables table). Per case it reports the time to
// converge from empty, the median time to apply one changed link, the
// number of writes (tunnel configurations, netlink changes, nftables
// transactions) of a no-op reconcile and the peak RSS of the process that
// runs the dataplane. As a baseline from the same run, it loads the same
// routes and ruleset with the iproute2 and nft tools (`ip -batch`,
// `nft -f`) into a second namespace. Each case ends with the line:
//
//	netd converge: links=250 meshservices=1000 full=Xms change=Yms noop_writes=N rss=ZMB
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/netd/broker"
	"github.com/kubelink/kubelink/netd/tunnel/wireguard"
	"github.com/kubelink/kubelink/netd/wgkey"
	"github.com/kubelink/kubelink/test/procmem"
)

const insideEnv = "BENCHNETD_INSIDE"

// benchCase is one mesh size: foreign links and MeshServices.
type benchCase struct{ links, services int }

// defaultCases: a full /24 mesh, and a /22 mesh beyond every anchor of
// the first (issue #12).
const defaultCases = "250x1000,1000x10000"

// profiles are the profile files asked for (empty: none).
var profiles struct{ cpu, mem string }

func main() {
	cases := flag.String("cases", defaultCases, "comma-separated LINKSxMESHSERVICES cases, each in fresh namespaces")
	links := flag.Int("links", 0, "foreign links (with -meshservices: run only this case)")
	services := flag.Int("meshservices", 0, "MeshServices (with -links: run only this case)")
	changes := flag.Int("changes", 9, "single-link changes to time (median)")
	ingress := flag.Bool("ingress", false, "give every link an ingress list (the firewall then matches every link's sources)")
	flag.StringVar(&profiles.cpu, "cpuprofile", "", "write a CPU profile of the reconciles (not the baseline) to this file, suffixed with the case")
	flag.StringVar(&profiles.mem, "memprofile", "", "write a heap profile after the reconciles to this file, suffixed with the case")
	flag.Parse()
	list, err := parseCases(*cases, *links, *services)
	if err == nil {
		err = run(list, *changes, *ingress)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-netd:", err)
		os.Exit(1)
	}
}

func parseCases(s string, links, services int) ([]benchCase, error) {
	if links > 0 || services > 0 {
		if links <= 0 || services < 0 {
			return nil, fmt.Errorf("-links and -meshservices go together")
		}
		return []benchCase{{links, services}}, nil
	}
	var out []benchCase
	for _, c := range strings.Split(s, ",") {
		l, m, ok := strings.Cut(strings.TrimSpace(c), "x")
		nl, err1 := strconv.Atoi(l)
		nm, err2 := strconv.Atoi(m)
		if !ok || err1 != nil || err2 != nil || nl <= 0 || nm < 0 {
			return nil, fmt.Errorf("-cases: %q is not LINKSxMESHSERVICES", c)
		}
		out = append(out, benchCase{nl, nm})
	}
	return out, nil
}

func run(cases []benchCase, changes int, ingress bool) error {
	if os.Getenv(insideEnv) != "" {
		c := cases[0]
		return inside(c.links, c.services, changes, ingress)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (network namespaces)")
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	for i, c := range cases {
		if i > 0 {
			fmt.Println()
		}
		fmt.Printf("== case: %d links, %d MeshServices\n", c.links, c.services)
		if err := runCase(c, changes, ingress, sig); err != nil {
			return fmt.Errorf("links=%d meshservices=%d: %w", c.links, c.services, err)
		}
	}
	return nil
}

// runCase runs one case in a child process inside fresh namespaces, so
// every case starts from an empty kernel and its RSS is its own.
func runCase(c benchCase, changes int, ingress bool, sig chan os.Signal) error {
	ns := fmt.Sprintf("benchnetd%d", os.Getpid())
	base := ns + "b"
	for _, n := range []string{ns, base} {
		if out, err := exec.Command("ip", "netns", "add", n).CombinedOutput(); err != nil {
			return fmt.Errorf("ip netns add %s: %v: %s", n, err, out)
		}
		defer exec.Command("ip", "netns", "del", n).Run() //nolint:errcheck
	}
	// The peers' endpoints (172.20.0.0/16) lead into a dummy device, so
	// handshake initiations leave quietly instead of failing.
	for _, args := range [][]string{
		{"link", "add", "wan", "type", "veth", "peer", "name", "wan-peer"},
		{"link", "set", "wan-peer", "up"},
		{"addr", "add", "172.20.255.254/16", "dev", "wan"},
		{"link", "set", "wan", "up"},
		{"link", "set", "lo", "up"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("locating the bench binary: %w", err)
	}
	args := []string{"netns", "exec", ns, self, "-links", strconv.Itoa(c.links), "-meshservices", strconv.Itoa(c.services),
		"-changes", strconv.Itoa(changes), "-ingress=" + strconv.FormatBool(ingress)}
	for flag, file := range map[string]string{"-cpuprofile": profiles.cpu, "-memprofile": profiles.mem} {
		if file != "" {
			args = append(args, flag, fmt.Sprintf("%s.%dx%d", file, c.links, c.services))
		}
	}
	cmd := exec.Command("ip", args...)
	cmd.Env = append(os.Environ(), insideEnv+"="+base)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the case: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-sig:
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("interrupted")
	}
}

// meshNetwork is the smallest mesh network from 192.168.0.0 (at most a
// /24) with room for the network address, the local link address, the
// foreign links, three virtual MeshService addresses and the broadcast
// address: a /24 for 250 links, a /22 for 1,000.
func meshNetwork(nlinks int) netip.Prefix {
	bits := 24
	for 1<<(32-bits) < nlinks+6 {
		bits--
	}
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, 0, 0}), bits)
}

// nthAddr is the address n places after p's network address.
func nthAddr(p netip.Prefix, n int) netip.Addr {
	a := p.Masked().Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) + uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// objects builds the mesh: local link address .1 of the mesh network
// (meshNetwork), foreign links from .2 on with a /24 service CIDR each, and
// MeshServices: most bind a port of the link address to a Service, some to
// two endpoints, a few use virtual addresses (the last three below the
// broadcast address, the only ones the links leave in a full /24).
func objects(nlinks, nservices int, ingress bool) ([]*v1alpha1.KubeLink, []*v1alpha1.MeshService, map[string]*corev1.Service, error) {
	network := meshNetwork(nlinks)
	size := 1 << (32 - network.Bits())
	var links []*v1alpha1.KubeLink
	for i := 0; i < nlinks; i++ {
		k, err := wgkey.Generate()
		if err != nil {
			return nil, nil, nil, err
		}
		links = append(links, &v1alpha1.KubeLink{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cluster%03d", i), CreationTimestamp: metav1.NewTime(time.Unix(1_700_000_000+int64(i), 0))},
			Spec: v1alpha1.KubeLinkSpec{
				ClusterAddress: netip.PrefixFrom(nthAddr(network, i+2), network.Bits()).String(),
				CIDR:           fmt.Sprintf("100.%d.%d.0/24", 65+i/256, i%256),
				Endpoint:       fmt.Sprintf("172.20.%d.%d:8777", i/250, i%250+1),
				PublicKey:      k.Public().String(),
			},
		})
		if ingress {
			links[i].Spec.Ingress = []string{"100.64.0.0/16", "!100.64.9.0/24"}
		}
	}
	svcs := map[string]*corev1.Service{}
	var msvcs []*v1alpha1.MeshService
	for i := 0; i < nservices; i++ {
		name := fmt.Sprintf("svc%04d", i)
		ms := &v1alpha1.MeshService{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, CreationTimestamp: metav1.NewTime(time.Unix(1_700_000_000+int64(i), 0))}}
		switch {
		case i < 3:
			ms.Spec = v1alpha1.MeshServiceSpec{Service: name, MeshAddress: nthAddr(network, size-4+i).String()}
		case i%10 == 0:
			ms.Spec = v1alpha1.MeshServiceSpec{
				Ports: []v1alpha1.ServicePort{{Port: int32(20000 + i)}},
				Endpoints: []v1alpha1.ServiceEndpoint{
					{Address: fmt.Sprintf("10.1.%d.%d", i/250, i%250+1), PortMappings: []v1alpha1.PortMapping{{Port: intstr.FromInt32(int32(20000 + i)), TargetPort: intstr.FromInt32(8080)}}},
					{Address: fmt.Sprintf("10.2.%d.%d", i/250, i%250+1), PortMappings: []v1alpha1.PortMapping{{Port: intstr.FromInt32(int32(20000 + i)), TargetPort: intstr.FromInt32(8080)}}},
				},
			}
		default:
			ms.Spec = v1alpha1.MeshServiceSpec{
				Service: name,
				Ports:   []v1alpha1.ServicePort{{Name: "web", Port: int32(20000 + i)}},
				Endpoints: []v1alpha1.ServiceEndpoint{{PortMappings: []v1alpha1.PortMapping{
					{Port: intstr.FromString("web"), TargetPort: intstr.FromString("http")},
				}}},
			}
		}
		msvcs = append(msvcs, ms)
		svcs["default/"+name] = &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
			Spec: corev1.ServiceSpec{ClusterIP: fmt.Sprintf("100.64.%d.%d", i/250, i%250+1),
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}},
		}
	}
	return links, msvcs, svcs, nil
}

func inside(nlinks, nservices, nchanges int, ingress bool) error {
	ctx := context.Background()
	baseNS := os.Getenv(insideEnv)
	links, msvcs, svcs, err := objects(nlinks, nservices, ingress)
	if err != nil {
		return err
	}
	lookup := func(ns, name string) *corev1.Service { return svcs[ns+"/"+name] }
	cfg := &broker.Config{Mode: broker.ModeWireGuard, ClusterName: "local", LinkAddress: netip.PrefixFrom(nthAddr(meshNetwork(nlinks), 1), meshNetwork(nlinks).Bits()).String(),
		ServiceCIDR: "100.64.0.0/16", PodCIDR: "10.0.0.0/16", IfceName: "kubelink", BrokerPort: 8777,
		MeshDomain: "kubelink", ClusterDomain: "cluster.local", ServedLinks: "all", RulePriority: 32000,
		Keepalive: 20 * time.Second, Identity: "bench"}
	if err := cfg.Validate(); err != nil {
		return err
	}
	key, err := wgkey.Generate()
	if err != nil {
		return err
	}
	dev, err := wireguard.New(wireguard.Options{Name: cfg.IfceName, ListenPort: cfg.BrokerPort, PrivateKey: key, Keepalive: cfg.Keepalive})
	if err != nil {
		return fmt.Errorf("wireguard device: %w", err)
	}
	defer dev.Close()
	dp := broker.NewDataplane(cfg, dev)
	defer dp.Close() //nolint:errcheck

	reconcile := func() (time.Duration, error) {
		start := time.Now()
		out, err := dp.Reconcile(ctx, links, msvcs, lookup)
		d := time.Since(start)
		if err != nil {
			return d, err
		}
		if len(out.LinkErrs) > 0 {
			return d, fmt.Errorf("link errors: %v", out.LinkErrs)
		}
		for _, p := range out.Plans {
			if p.State != v1alpha1.StateOK {
				return d, fmt.Errorf("MeshService %s/%s: %s: %s", p.Namespace, p.Name, p.State, p.Message)
			}
		}
		for _, l := range out.Set.Sorted() {
			if !l.Verdict.OK() {
				return d, fmt.Errorf("link %s: %s", l.Name, l.Verdict.Message)
			}
		}
		return d, nil
	}

	if profiles.cpu != "" {
		f, err := os.Create(profiles.cpu)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	full, err := reconcile()
	if err != nil {
		return fmt.Errorf("converging: %w", err)
	}
	// What the kernel holds now.
	routes := lines("ip", "route", "show", "proto", "97")
	table := output("nft", "list", "table", "ip", "kubelink")
	rules, elements, err := ruleCount()
	if err != nil {
		return err
	}
	stats, err := dev.Stats()
	if err != nil {
		return err
	}
	peers := len(stats)

	// One link changes (its service CIDR moves back and forth).
	var times []time.Duration
	victim := links[nlinks/2]
	orig := victim.Spec.CIDR
	for i := 0; i < nchanges; i++ {
		if i%2 == 0 {
			victim.Spec.CIDR = "100.99.0.0/24"
		} else {
			victim.Spec.CIDR = orig
		}
		d, err := reconcile()
		if err != nil {
			return fmt.Errorf("change %d: %w", i, err)
		}
		times = append(times, d)
	}
	victim.Spec.CIDR = orig
	if _, err := reconcile(); err != nil {
		return err
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	change := times[len(times)/2]

	// One MeshService changes (its mesh port moves back and forth): the
	// DNAT chains are rewritten, not the others.
	var svcChange time.Duration
	if v := nservices/2 + 1; v < nservices && v%10 != 0 && v >= 3 {
		var stimes []time.Duration
		ms := msvcs[v]
		port := ms.Spec.Ports[0].Port
		for i := 0; i < nchanges; i++ {
			if i%2 == 0 {
				ms.Spec.Ports[0].Port = 40000
			} else {
				ms.Spec.Ports[0].Port = port
			}
			d, err := reconcile()
			if err != nil {
				return fmt.Errorf("MeshService change %d: %w", i, err)
			}
			stimes = append(stimes, d)
		}
		ms.Spec.Ports[0].Port = port
		if _, err := reconcile(); err != nil {
			return err
		}
		sort.Slice(stimes, func(i, j int) bool { return stimes[i] < stimes[j] })
		svcChange = stimes[len(stimes)/2]
	}

	// No-op reconciles: nothing may be written. (The listing is taken
	// again: a changed chain's named sets were re-created, and nft lists
	// sets in creation order.)
	settled := output("nft", "list", "table", "ip", "kubelink")
	before := dp.Writes()
	var noop time.Duration
	for i := 0; i < 3; i++ {
		d, err := reconcile()
		if err != nil {
			return err
		}
		noop += d
	}
	noopWrites := dp.Writes() - before
	pprof.StopCPUProfile()
	if profiles.mem != "" {
		if err := writeHeap(profiles.mem); err != nil {
			return err
		}
	}
	// The process holds what a broker holds: the objects (its informer
	// caches), the dataplane's state and the embedded WireGuard device.
	m := procmem.Self()
	rss, peak := m.RSS, m.Peak
	if after := output("nft", "list", "table", "ip", "kubelink"); after != settled {
		return fmt.Errorf("no-op reconciles changed the nftables table")
	}

	// Baseline: the same routes and ruleset loaded by the tools into a
	// fresh namespace with a device of the same name.
	baseline, err := toolBaseline(baseNS, routes, table)
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}

	fmt.Printf("%-42s %10s\n", "measurement", "value")
	fmt.Printf("%-42s %10d\n", "wireguard peers", peers)
	fmt.Printf("%-42s %10d\n", "routes (proto 97)", len(routes))
	fmt.Printf("%-42s %10d\n", "nftables rules", rules)
	fmt.Printf("%-42s %10d\n", "nftables set and map elements", elements)
	fmt.Printf("%-42s %9.1fms\n", "converge from empty (netd)", ms(full))
	fmt.Printf("%-42s %9.1fms\n", "same routes+ruleset via ip -batch + nft -f", ms(baseline))
	fmt.Printf("%-42s %9.1fms\n", "one changed link (median of "+fmt.Sprint(nchanges)+")", ms(change))
	if svcChange > 0 {
		fmt.Printf("%-42s %9.1fms\n", "one changed MeshService (median of "+fmt.Sprint(nchanges)+")", ms(svcChange))
	}
	fmt.Printf("%-42s %9.1fms\n", "no-op reconcile (mean of 3)", ms(noop/3))
	fmt.Printf("%-42s %8.1fMB\n", "RSS of the dataplane process (now)", rss)
	fmt.Printf("%-42s %8.1fMB\n", "RSS of the dataplane process (peak)", peak)
	fmt.Printf("ratios: full/tools=%.2f change/full=%.3f\n", float64(full)/float64(baseline), float64(change)/float64(full))
	fmt.Printf("netd converge: links=%d meshservices=%d full=%dms change=%dms noop_writes=%d rss=%.0fMB\n",
		nlinks, nservices, full.Milliseconds(), change.Milliseconds(), noopWrites, peak)
	return nil
}

func toolBaseline(ns string, routes []string, table string) (time.Duration, error) {
	in := func(args ...string) *exec.Cmd {
		return exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	}
	if out, err := in("ip", "link", "add", "kubelink", "type", "veth", "peer", "name", "kubelink-peer").CombinedOutput(); err != nil {
		return 0, fmt.Errorf("%v: %s", err, out)
	}
	if out, err := in("ip", "link", "set", "kubelink", "up").CombinedOutput(); err != nil {
		return 0, fmt.Errorf("%v: %s", err, out)
	}
	if out, err := in("ip", "addr", "add", "192.168.0.1/32", "dev", "kubelink").CombinedOutput(); err != nil {
		return 0, fmt.Errorf("%v: %s", err, out)
	}
	var batch strings.Builder
	for _, r := range routes {
		fmt.Fprintf(&batch, "route add %s\n", r)
	}
	start := time.Now()
	cmd := in("ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(batch.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("ip -batch: %v: %s", err, out)
	}
	cmd = in("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(table)
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("nft -f: %v: %s", err, out)
	}
	return time.Since(start), nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func output(args ...string) string {
	out, _ := exec.Command(args[0], args[1:]...).Output()
	return string(out)
}

func lines(args ...string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(output(args...)), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

func writeHeap(file string) error {
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	return nil
}

// ruleCount counts the rules and the set and map elements of netd's table.
func ruleCount() (rules, elements int, err error) {
	out, err := exec.Command("nft", "-j", "list", "table", "ip", "kubelink").Output()
	if err != nil {
		return 0, 0, fmt.Errorf("nft -j list table: %w", err)
	}
	var doc struct {
		Nftables []struct {
			Rule *json.RawMessage
			Set  *struct{ Elem []json.RawMessage }
			Map  *struct{ Elem []json.RawMessage }
		}
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return 0, 0, fmt.Errorf("nft -j list table: %w", err)
	}
	for _, o := range doc.Nftables {
		switch {
		case o.Rule != nil:
			rules++
		case o.Set != nil:
			elements += len(o.Set.Elem)
		case o.Map != nil:
			elements += len(o.Map.Elem)
		}
	}
	return rules, elements, nil
}
