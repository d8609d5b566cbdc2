// Command benchnetd (make bench-netd, root) measures the broker's
// reconcile at the scale of a full /24 mesh: 250 foreign WireGuard links
// and 1,000 MeshServices, applied by netd's own dataplane code to the real
// kernel inside a network namespace it creates (embedded WireGuard device,
// routes, the nftables table). It reports the time to converge from
// empty, the median time to apply one changed link, and the number of
// writes (tunnel configurations, netlink changes, nftables transactions)
// of a no-op reconcile. As a baseline from the same run, it loads the same
// routes and ruleset with the iproute2 and nft tools (`ip -batch`,
// `nft -f`) into a second namespace. The last line is:
//
//	netd converge: links=250 meshservices=1000 full=Xms change=Yms noop_writes=N
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sort"
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
)

const insideEnv = "BENCHNETD_INSIDE"

func main() {
	links := flag.Int("links", 250, "foreign links")
	services := flag.Int("meshservices", 1000, "MeshServices")
	changes := flag.Int("changes", 9, "single-link changes to time (median)")
	ingress := flag.Bool("ingress", false, "give every link an ingress list (the firewall then matches every link's sources)")
	flag.Parse()
	if err := run(*links, *services, *changes, *ingress); err != nil {
		fmt.Fprintln(os.Stderr, "bench-netd:", err)
		os.Exit(1)
	}
}

func run(links, services, changes int, ingress bool) error {
	if os.Getenv(insideEnv) != "" {
		return inside(links, services, changes, ingress)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (network namespaces)")
	}
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
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, self}, os.Args[1:]...)...)
	cmd.Env = append(os.Environ(), insideEnv+"="+base)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return err
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

// objects builds the mesh: local link address 192.168.0.1/24, foreign
// links .2-.251 with a /24 service CIDR each, and MeshServices: most bind
// a port of the link address to a Service, some to two endpoints, a few
// use virtual addresses (the /24 has only .252-.254 left).
func objects(nlinks, nservices int, ingress bool) ([]*v1alpha1.KubeLink, []*v1alpha1.MeshService, map[string]*corev1.Service, error) {
	var links []*v1alpha1.KubeLink
	for i := 0; i < nlinks; i++ {
		k, err := wgkey.Generate()
		if err != nil {
			return nil, nil, nil, err
		}
		links = append(links, &v1alpha1.KubeLink{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cluster%03d", i), CreationTimestamp: metav1.NewTime(time.Unix(1_700_000_000+int64(i), 0))},
			Spec: v1alpha1.KubeLinkSpec{
				ClusterAddress: fmt.Sprintf("192.168.0.%d/24", i+2),
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
			ms.Spec = v1alpha1.MeshServiceSpec{Service: name, MeshAddress: fmt.Sprintf("192.168.0.%d", 252+i)}
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
	cfg := &broker.Config{Mode: broker.ModeWireGuard, ClusterName: "local", LinkAddress: "192.168.0.1/24",
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

	full, err := reconcile()
	if err != nil {
		return fmt.Errorf("converging: %w", err)
	}
	// What the kernel holds now.
	routes := lines("ip", "route", "show", "proto", "97")
	table := output("nft", "list", "table", "ip", "kubelink")
	rules := strings.Count(table, "comment \"")
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

	// No-op reconciles: nothing may be written.
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
	if after := output("nft", "list", "table", "ip", "kubelink"); after != table {
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
	fmt.Printf("%-42s %9.1fms\n", "converge from empty (netd)", ms(full))
	fmt.Printf("%-42s %9.1fms\n", "same routes+ruleset via ip -batch + nft -f", ms(baseline))
	fmt.Printf("%-42s %9.1fms\n", "one changed link (median of "+fmt.Sprint(nchanges)+")", ms(change))
	fmt.Printf("%-42s %9.1fms\n", "no-op reconcile (mean of 3)", ms(noop/3))
	fmt.Printf("ratios: full/tools=%.2f change/full=%.3f\n", float64(full)/float64(baseline), float64(change)/float64(full))
	fmt.Printf("netd converge: links=%d meshservices=%d full=%dms change=%dms noop_writes=%d\n",
		nlinks, nservices, full.Milliseconds(), change.Milliseconds(), noopWrites)
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
