// Command benchclusterset measures the CPU cost per query of clusterset.local
// (issue #14 item 3) answered by the kubelink plugin (its clusterset
// option, what the chart serves) against the hosts plugin serving the same
// names with the same addresses, in one run, the way benchdns measures the
// kubelink plugin; CoreDNS's kubernetes plugin with the `multicluster`
// option, the alternative that was measured and not chosen, is measured
// the same way for the record:
//
//   - a real etcd + kube-apiserver (bin/testenv) holds -services
//     ClusterSetIP ServiceImports (dual-stack spec.ips, MCS slices from 3
//     clusters) and as many headless ones (2 ready endpoints with
//     hostnames per cluster), labelled as netd sync labels them, and the
//     KubeLinks of the three clusters (Up);
//   - one bin/coredns serves clusterset.local three times on separate
//     ports: the kubelink block (informers on the apiserver), the
//     kubernetes block with multicluster, and a hosts block whose hosts
//     file lists every name the queries ask with the same addresses (hosts
//     is the in-memory baseline);
//   - the answers of all three are compared first; then dnsperf drives
//     each subject and hosts at the same fixed rate in ABBA rounds and the
//     CPU time of the process (utime+stime from /proc/PID/stat) per
//     completed query is compared, one ratio per round, the median
//     reported.
//
// The queries: <svc> A and AAAA (ClusterSetIP: spec.ips), <headless> A (6
// endpoint IPs) and <hostname>.<cluster>.<headless> A. The last line is
// "dns ratios: clusterset/hosts=X multicluster/hosts=Y" (X: the kubelink
// plugin, target <= 1.1; Y: the kubernetes plugin's multicluster).
//
//	make testenv coredns && go run ./test/dns/benchclusterset -coredns bin/coredns
//
// BenchmarkClustersetServeDNS measures the same per query kind in process,
// without sockets: in plugin/ for the kubelink plugin, in test/dns for the
// kubernetes plugin.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/test/dns/dnsperf"
	"github.com/kubelink/kubelink/test/testenv"
)

func main() {
	coredns := flag.String("coredns", "bin/coredns", "CoreDNS binary of the custom build")
	services := flag.Int("services", 100, "ClusterSetIP imports, and as many headless ones")
	seconds := flag.Int("seconds", 3, "duration of one dnsperf run")
	rounds := flag.Int("rounds", 8, "rounds per subject (subject and hosts in ABBA order)")
	qps := flag.Int("qps", 8000, "query rate of every run")
	flag.Parse()
	if err := run(*coredns, *services, *seconds, *rounds, *qps); err != nil {
		fmt.Fprintln(os.Stderr, "benchclusterset:", err)
		os.Exit(1)
	}
}

func run(coredns string, services, seconds, rounds, qps int) error {
	coredns, err := filepath.Abs(coredns)
	if err != nil {
		return err
	}
	if err := dnsperf.CheckTools(testenv.BinDir()); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "kubelink-benchclusterset-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	e, err := testenv.New(filepath.Join(dir, "env"), testenv.Options{})
	defer e.Stop()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := e.InstallCRDs(ctx, testenv.CRDDir()); err != nil {
		return err
	}
	if err := writeLinks(ctx, e); err != nil {
		return err
	}
	began := time.Now()
	hosts, queries, err := dnsperf.LoadClusterset(ctx, e.Client(), e.Dynamic(), services)
	if err != nil {
		return err
	}
	fmt.Printf("%d ServiceImports and %d MCS EndpointSlices written in %v\n",
		2*services, 2*services*len(dnsperf.ClustersetClusters()), time.Since(began).Round(time.Millisecond))

	ports, err := dnsperf.FreePorts(3)
	if err != nil {
		return err
	}
	k8sPort, hostsPort, klPort := ports[0], ports[1], ports[2]
	files := map[string]string{
		"hosts":       hosts,
		"queries.txt": queries,
		"Corefile": fmt.Sprintf(`clusterset.local.:%[1]d {
    bind 127.0.0.1
    kubernetes clusterset.local {
        kubeconfig %[3]s
        multicluster clusterset.local
        noendpoints
        ttl 5
    }
}
clusterset.local.:%[2]d {
    bind 127.0.0.1
    hosts %[4]s {
        ttl 5
        no_reverse
        reload 0
    }
}
clusterset.local.:%[5]d {
    bind 127.0.0.1
    kubelink {
        kubeconfig %[3]s
        namespace kubelink-system
        clusterset
        ttl 5
    }
}
`, k8sPort, hostsPort, e.Kubeconfig, filepath.Join(dir, "hosts"), klPort),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	subject, err := dnsperf.Start(ctx, coredns, filepath.Join(dir, "Corefile"), filepath.Join(dir, "coredns.log"))
	if err != nil {
		return err
	}
	defer dnsperf.Stop(subject)
	for _, p := range ports {
		if err := dnsperf.WaitDNS(p, 60*time.Second); err != nil {
			b, _ := os.ReadFile(filepath.Join(dir, "coredns.log"))
			return fmt.Errorf("%w\n%s", err, b)
		}
	}
	for _, p := range []struct {
		name string
		port int
	}{{"kubelink", klPort}, {"kubernetes", k8sPort}} {
		if err := sameAnswers(p.name, p.port, hostsPort, queries); err != nil {
			return err
		}
	}
	fmt.Printf("the three blocks give the same addresses for all %d query names\n", strings.Count(queries, "\n"))

	qfile := filepath.Join(dir, "queries.txt")
	hostsSide := func() *dnsperf.Setup {
		return &dnsperf.Setup{Name: "hosts", Port: hostsPort, Queries: qfile, QPS: qps}
	}
	kl := &dnsperf.Setup{Name: "kubelink clusterset", Port: klPort, Queries: qfile, QPS: qps}
	k8s := &dnsperf.Setup{Name: "kubernetes multicluster", Port: k8sPort, Queries: qfile, QPS: qps}
	groups := []*dnsperf.Pair{{Ratio: "clusterset/hosts", A: kl, B: hostsSide()}, {Ratio: "multicluster/hosts", A: k8s, B: hostsSide()}}
	if err := dnsperf.Rounds(subject.Process.Pid, groups, rounds, seconds, 24); err != nil {
		return err
	}
	fmt.Println()
	fmt.Printf("%-24s %10s %16s   (medians of %d rounds of %ds, %d+%d imports)\n", "setup", "qps", "us CPU/query", rounds, seconds, services, services)
	for _, s := range []*dnsperf.Setup{kl, k8s, groups[0].B} {
		fmt.Printf("%-24s %10.0f %16.2f\n", s.Name, dnsperf.Median(s.QPSAll), dnsperf.Median(s.CPU))
	}
	dnsperf.PrintRatios(groups)
	return nil
}

// writeLinks writes the KubeLinks of the clusters: the first is the local
// cluster (LocalLink), the others foreign and Up (the kubelink plugin takes
// the endpoints of a cluster whose link is not Up out of its answers); and
// the namespace of the plugin's service mirrors.
func writeLinks(ctx context.Context, e *testenv.Env) error {
	if _, err := e.Client().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kubelink-system"}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	links := e.Dynamic().Resource(v1alpha1.SchemeGroupVersion.WithResource(v1alpha1.KubeLinkResource))
	for i, c := range dnsperf.ClustersetClusters() {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": v1alpha1.SchemeGroupVersion.String(),
			"kind":       "KubeLink",
			"metadata":   map[string]any{"name": c},
			"spec": map[string]any{
				"cidr":           fmt.Sprintf("100.64.%d.0/20", 16*(i+1)),
				"clusterAddress": fmt.Sprintf("192.168.0.%d/24", 11+i),
				"endpoint":       fmt.Sprintf("gw.%s.example.com:8777", c),
			},
		}}
		if i == 0 {
			_ = unstructured.SetNestedField(u.Object, "LocalLink", "spec", "endpoint")
		}
		created, err := links.Create(ctx, u, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("creating KubeLink %s: %w", c, err)
		}
		created.Object["status"] = map[string]any{"state": v1alpha1.StateUp}
		if _, err := links.UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("writing the status of KubeLink %s: %w", c, err)
		}
	}
	return nil
}

// sameAnswers checks that the subject's block (port a) answers every query
// with the rcode and addresses of the hosts block (port b).
func sameAnswers(name string, a, b int, queries string) error {
	cl := &dns.Client{Timeout: 2 * time.Second}
	ask := func(port int, name string, t uint16) (string, error) {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), t)
		r, _, err := cl.Exchange(m, "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			return "", err
		}
		var addrs []string
		for _, rr := range r.Answer {
			switch v := rr.(type) {
			case *dns.A:
				addrs = append(addrs, v.A.String())
			case *dns.AAAA:
				addrs = append(addrs, v.AAAA.String())
			}
		}
		sort.Strings(addrs)
		return dns.RcodeToString[r.Rcode] + " " + strings.Join(addrs, ","), nil
	}
	for _, l := range strings.Split(strings.TrimSpace(queries), "\n") {
		f := strings.Fields(l)
		t := dns.StringToType[f[1]]
		// The subject answers once its informers synced.
		var ka string
		var err error
		for deadline := time.Now().Add(30 * time.Second); ; {
			ka, err = ask(a, f[0], t)
			if err == nil && strings.HasPrefix(ka, "NOERROR ") && len(ka) > len("NOERROR ") {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: %s block answers %q (%v)", l, name, ka, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		ha, err := ask(b, f[0], t)
		if err != nil {
			return err
		}
		if ka != ha {
			return fmt.Errorf("%s: %s %q, hosts %q", l, name, ka, ha)
		}
	}
	return nil
}
