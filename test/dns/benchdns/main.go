// Command benchdns compares the CPU cost per query of the kubelink plugin
// with the CoreDNS setups it replaces, all on loopback in one run:
//
//	(a) kubelink's local answers (<cluster>.<mesh> A, link-address PTR)
//	    vs the hosts plugin serving the same names;
//	(b) kubelink's per-cluster forwarding vs the original kubelink's
//	    generated chain (rewrite name regex ... answer name ... + forward)
//	    to the same upstream CoreDNS;
//	(c) kubelink's cached per-cluster answers (kubernetes mode:
//	    <svc>.<ns>.svc.<cluster>.<mesh> A out of netd sync's service
//	    mirrors, -services per cluster, three clusters) vs hosts serving
//	    the same names with the same addresses;
//	(d) the same answers of one cluster (A, and SRV of the named port for
//	    every 4th Service) vs CoreDNS's kubernetes plugin serving as many
//	    Services (the same names below cluster.local, the same ClusterIPs
//	    and ports) from a real kube-apiserver (bin/testenv);
//	(e) kubelink's global names (<svc>.<ns>.svc.global.<mesh> A, the union
//	    of three clusters' addresses) vs hosts serving the same names with
//	    the same three addresses.
//
// One CoreDNS process serves all setups on separate ports, kubelink from a
// manifests directory (KubeLinks and the mirrors as netd sync writes
// them). Before measuring, every query of (c), (d) and (e) is asked of both
// sides and must get the same rcode and addresses. dnsperf drives each
// setup at the same fixed rate in alternating rounds, and the CPU time
// (utime+stime from /proc/PID/stat) the process spent per query is
// compared. Each round runs kubelink and its baseline back to back (in
// ABBA order) and yields one ratio; the median ratio over the rounds is
// reported, which is robust against other load on the machine. The last
// line is
// "dns ratios: local/hosts=A forward/rewrite-forward=B cached/hosts=C cached/kubernetes=D global/hosts=E".
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kubelink/kubelink/test/dns/dnsperf"
	"github.com/kubelink/kubelink/test/testenv"
)

func main() {
	coredns := flag.String("coredns", "bin/coredns", "CoreDNS binary with the kubelink plugin")
	seconds := flag.Int("seconds", 3, "duration of one dnsperf run")
	rounds := flag.Int("rounds", 8, "rounds per comparison (kubelink and baseline in ABBA order)")
	localQPS := flag.Int("local-qps", 8000, "query rate of the runs answered from memory (local, cached, kubernetes, global)")
	fwdQPS := flag.Int("forward-qps", 4000, "query rate of the forwarding runs")
	services := flag.Int("services", 1000, "Services per followed cluster (mirrors) and in the apiserver (kubernetes plugin)")
	flag.Parse()
	if *services < 1 || *services > maxServices {
		fmt.Fprintf(os.Stderr, "benchdns: -services must be within 1..%d\n", maxServices)
		os.Exit(2)
	}
	if err := run(*coredns, *seconds, *rounds, *localQPS, *fwdQPS, *services); err != nil {
		fmt.Fprintln(os.Stderr, "benchdns:", err)
		os.Exit(1)
	}
}

func run(coredns string, seconds, rounds, localQPS, fwdQPS, services int) error {
	coredns, err := filepath.Abs(coredns)
	if err != nil {
		return err
	}
	if err := dnsperf.CheckTools(testenv.BinDir()); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "kubelink-benchdns-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ports, err := dnsperf.FreePorts(7)
	if err != nil {
		return err
	}
	upPort, klPort, hostsPort, rwPort, meshHostsPort, k8sPort := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]

	// The kubernetes plugin's Services, in a real apiserver.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env, err := testenv.New(filepath.Join(dir, "env"), testenv.Options{ServiceCIDR: k8sServiceCIDR})
	if env != nil {
		defer env.Stop()
	}
	if err != nil {
		return err
	}
	began := time.Now()
	if err := createServices(ctx, env, services); err != nil {
		return err
	}
	fmt.Printf("%d Services written to the apiserver in %v\n", services, time.Since(began).Round(time.Millisecond))
	mem, err := memoryData(services)
	if err != nil {
		return err
	}

	files := map[string]string{
		"cluster.local.zone": `$ORIGIN cluster.local.
@                         30 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 30
@                         30 IN NS  ns.dns.cluster.local.
ns.dns                    30 IN A   127.0.0.1
web.demo.svc              30 IN A   10.0.0.50
api.demo.svc              30 IN A   10.0.0.51
_http._tcp.web.demo.svc   30 IN SRV 0 100 80 web.demo.svc.cluster.local.
`,
		"manifests/links.yaml": `apiVersion: kubelink.mandelsoft.org/v1alpha1
kind: KubeLink
metadata: {name: kubelink1}
spec: {endpoint: LocalLink, cidr: 100.64.0.0/20, clusterAddress: 192.168.0.11/24, dns: {baseDomain: kubelink}}
---
apiVersion: kubelink.mandelsoft.org/v1alpha1
kind: KubeLink
metadata: {name: kubelink2}
spec: {cidr: 100.64.16.0/20, clusterAddress: 192.168.0.12/24, endpoint: gw2.example.com, dns: {dnsIP: 127.0.0.1}}
status: {state: Up}
---
apiVersion: kubelink.mandelsoft.org/v1alpha1
kind: KubeLink
metadata: {name: kubelink3}
spec: {cidr: 100.64.32.0/20, clusterAddress: 192.168.0.13/24, endpoint: gw3.example.com, dns: {dnsIP: 127.0.0.1}}
status: {state: Up}
` + mem.links,
		"manifests/mirrors.json": string(mem.mirrors),
		"mesh.hosts":             mem.hosts,
		"cached.txt":             mem.cached,
		"east.txt":               mem.east,
		"k8s.txt":                mem.k8s,
		"global.txt":             mem.global,
		"local.txt":              "kubelink2.kubelink A\nkubelink3.kubelink A\n12.0.168.192.in-addr.arpa PTR\n13.0.168.192.in-addr.arpa PTR\n",
		"forward.txt":            "web.demo.svc.kubelink2.kubelink A\napi.demo.svc.kubelink2.kubelink A\n_http._tcp.web.demo.svc.kubelink2.kubelink SRV\n",
	}
	// The subject: kubelink, hosts, the original kubelink chain, hosts with
	// the cached and global names, and the kubernetes plugin.
	files["Corefile"] = fmt.Sprintf(`.:%[1]d {
    bind 127.0.0.1
    kubelink {
        manifests %[5]s
        namespace %[10]s
        upstream-port %[4]d
    }
}
.:%[2]d {
    bind 127.0.0.1
    hosts {
        192.168.0.12 kubelink2.kubelink
        192.168.0.13 kubelink3.kubelink
        ttl 5
    }
}
kubelink2.kubelink.:%[3]d {
    bind 127.0.0.1
    rewrite stop name regex (.*)\.kubelink2\.kubelink\.$ {1}.cluster.local. answer name (.*)\.cluster\.local\.$ {1}.kubelink2.kubelink.
    forward . 127.0.0.1:%[4]d
}
kubelink.:%[6]d {
    bind 127.0.0.1
    hosts %[7]s {
        ttl 5
        reload 0
    }
}
cluster.local.:%[8]d {
    bind 127.0.0.1
    kubernetes cluster.local {
        kubeconfig %[9]s
        ttl 5
    }
}
`, klPort, hostsPort, rwPort, upPort, filepath.Join(dir, "manifests"),
		meshHostsPort, filepath.Join(dir, "mesh.hosts"), k8sPort, env.Kubeconfig, mirrorNamespace)
	files["Corefile.upstream"] = fmt.Sprintf(`cluster.local.:%d {
    bind 127.0.0.1
    file %s
}
`, upPort, filepath.Join(dir, "cluster.local.zone"))
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
	}

	up, err := dnsperf.Start(ctx, coredns, filepath.Join(dir, "Corefile.upstream"), filepath.Join(dir, "upstream.log"))
	if err != nil {
		return err
	}
	defer dnsperf.Stop(up)
	subject, err := dnsperf.Start(ctx, coredns, filepath.Join(dir, "Corefile"), filepath.Join(dir, "subject.log"))
	if err != nil {
		return err
	}
	defer dnsperf.Stop(subject)
	for _, p := range []int{upPort, klPort, hostsPort, rwPort, meshHostsPort, k8sPort} {
		if err := dnsperf.WaitDNS(p, 30*time.Second); err != nil {
			b, _ := os.ReadFile(filepath.Join(dir, "subject.log"))
			return fmt.Errorf("%w\n%s", err, b)
		}
	}
	// kubelink serves once its manifests are read.
	if err := waitKubelink(klPort); err != nil {
		return err
	}

	q := func(name string) string { return filepath.Join(dir, name) }
	groups := []*dnsperf.Pair{
		{Ratio: "local/hosts",
			A: &dnsperf.Setup{Name: "kubelink local", Port: klPort, Queries: q("local.txt"), QPS: localQPS},
			B: &dnsperf.Setup{Name: "hosts", Port: hostsPort, Queries: q("local.txt"), QPS: localQPS}},
		{Ratio: "forward/rewrite-forward",
			A: &dnsperf.Setup{Name: "kubelink forward", Port: klPort, Queries: q("forward.txt"), QPS: fwdQPS},
			B: &dnsperf.Setup{Name: "rewrite+forward", Port: rwPort, Queries: q("forward.txt"), QPS: fwdQPS}},
		{Ratio: "cached/hosts",
			A: &dnsperf.Setup{Name: "kubelink cached", Port: klPort, Queries: q("cached.txt"), QPS: localQPS},
			B: &dnsperf.Setup{Name: "hosts cached", Port: meshHostsPort, Queries: q("cached.txt"), QPS: localQPS}},
		{Ratio: "cached/kubernetes",
			A: &dnsperf.Setup{Name: "kubelink cached east", Port: klPort, Queries: q("east.txt"), QPS: localQPS},
			B: &dnsperf.Setup{Name: "kubernetes", Port: k8sPort, Queries: q("k8s.txt"), QPS: localQPS}},
		{Ratio: "global/hosts",
			A: &dnsperf.Setup{Name: "kubelink global", Port: klPort, Queries: q("global.txt"), QPS: localQPS},
			B: &dnsperf.Setup{Name: "hosts global", Port: meshHostsPort, Queries: q("global.txt"), QPS: localQPS}},
	}
	// Both sides of the answers from memory answer alike, every name.
	for _, g := range groups[2:] {
		qa, _ := os.ReadFile(g.A.Queries)
		qb, _ := os.ReadFile(g.B.Queries)
		if err := sameAnswers(g.A, g.B, string(qa), string(qb)); err != nil {
			b, _ := os.ReadFile(filepath.Join(dir, "subject.log"))
			return fmt.Errorf("%s: %w\n%s", g.Ratio, err, b)
		}
		fmt.Printf("%s and %s give the same answers to all %d queries\n", g.A.Name, g.B.Name, strings.Count(string(qa), "\n"))
	}
	if err := dnsperf.Rounds(subject.Process.Pid, groups, rounds, seconds, 20); err != nil {
		return err
	}
	fmt.Println()
	fmt.Printf("%-20s %10s %16s   (medians of %d rounds of %ds, %d Services per cluster)\n", "setup", "qps", "us CPU/query", rounds, seconds, services)
	for _, g := range groups {
		for _, s := range []*dnsperf.Setup{g.A, g.B} {
			fmt.Printf("%-20s %10.0f %16.2f\n", s.Name, dnsperf.Median(s.QPSAll), dnsperf.Median(s.CPU))
		}
	}
	fmt.Println()
	dnsperf.PrintRatios(groups)
	return nil
}

func waitKubelink(port int) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		out, _ := exec.Command("dig", "@127.0.0.1", "-p", strconv.Itoa(port), "+short", "+time=1", "+tries=1", "kubelink2.kubelink", "A").Output()
		if s := bufio.NewScanner(strings.NewReader(string(out))); s.Scan() && s.Text() == "192.168.0.12" {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("kubelink did not answer kubelink2.kubelink within 10s")
}
