package chart_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubelink/kubelink/test/testenv"
)

// binary returns bin/<name>, or skips (fails in CI) when it is not built.
func binary(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(testenv.RepoRoot(), "bin", name)
	if _, err := os.Stat(p); err != nil {
		testenv.SkipOrFail(t, "%s not built: run `make %s`", p, name)
	}
	return p
}

var flagName = regexp.MustCompile(`^--?([a-z][-a-z0-9]*)`)

// TestNetdFlags checks every flag the chart passes to `netd broker` and
// `netd router` against the flags the real binary defines, so the chart
// and netd cannot drift apart.
func TestNetdFlags(t *testing.T) {
	netd := binary(t, "netd")
	c := loadChart(t)
	base := readValues(t, filepath.Join(testenv.RepoRoot(), "examples", "kubelink1", "values.yaml"))
	// Every optional flag switched on; VXLAN excludes IPIP, so it is a
	// variant of its own, with a node-mode broker (the only one that
	// decapsulates).
	for _, v := range []struct{ name, values string }{
		{"ipip", `
mesh: {globalDNSIP: 100.64.0.53}
broker: {mode: bridge, secretName: tls, autoConnect: true, dnsAdvertisement: true, advertisedPort: 443, interfaceName: kl0, servedLinks: [kubelink2]}
router: {routeTable: 100, rulePriority: 1000, ipip: shared}
`},
		{"vxlan", `
broker: {podMode: false}
router: {vxlan: {enabled: true, port: 4900, vni: 77}}
`},
	} {
		objs, _ := render(t, c, merge(base, parseValues(t, v.values)))
		checkNetdFlags(t, netd, v.name, objs)
	}
}

func checkNetdFlags(t *testing.T, netd, variant string, objs []*unstructured.Unstructured) {
	for _, w := range []struct{ kind, name, sub string }{
		{"Deployment", "kubelink-broker", "broker"},
		{"DaemonSet", "kubelink-router", "router"},
	} {
		t.Run(variant+"/"+w.sub, func(t *testing.T) {
			a := args(t, find(t, objs, w.kind, w.name))
			if a[0] != w.sub {
				t.Fatalf("args start with %q", a[0])
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, _ := exec.CommandContext(ctx, netd, w.sub, "-h").CombinedOutput()
			if !bytes.Contains(out, []byte("Usage of netd "+w.sub)) {
				t.Fatalf("netd %s -h:\n%s", w.sub, out)
			}
			for _, arg := range a[1:] {
				m := flagName.FindStringSubmatch(arg)
				if m == nil {
					t.Errorf("argument %q is not a flag", arg)
					continue
				}
				if !bytes.Contains(out, []byte("\n  -"+m[1]+" ")) && !bytes.Contains(out, []byte("\n  -"+m[1]+"\n")) {
					t.Errorf("netd %s has no flag -%s (chart passes %q)", w.sub, m[1], arg)
				}
			}
		})
	}
}

// runCoreDNS starts bin/coredns with the chart's Corefile (from the
// installed release) reading the apiserver through kubeconfig, on free
// loopback ports, and waits until /ready answers OK.
func runCoreDNS(t *testing.T, ctx context.Context, corefile, kubeconfig string) string {
	t.Helper()
	coredns := binary(t, "coredns")
	ports := freePorts(t, 4)
	repl := strings.NewReplacer(
		".:8053 {", fmt.Sprintf(".:%d {", ports[0]),
		"health :8080", fmt.Sprintf("health 127.0.0.1:%d", ports[1]),
		"ready :8181", fmt.Sprintf("ready 127.0.0.1:%d", ports[2]),
		"prometheus :9153", fmt.Sprintf("prometheus 127.0.0.1:%d", ports[3]),
		"    kubelink {\n", "    bind 127.0.0.1\n    kubelink {\n        kubeconfig "+kubeconfig+"\n",
	)
	conf := repl.Replace(corefile)
	startCoreDNS(t, coredns, "coredns", conf)
	ready := fmt.Sprintf("http://127.0.0.1:%d/ready", ports[2])
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(ready)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("coredns with the chart's Corefile not ready: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Sprintf("127.0.0.1:%d", ports[0])
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// checkCorefileServes runs the real kubelink CoreDNS with the Corefile of
// the installed release and asks it for the local and a foreign cluster.
func checkCorefileServes(t *testing.T, ctx context.Context, e *testenv.Env, ex example) {
	t.Helper()
	cm, err := e.Client().CoreV1().ConfigMaps(releaseNS).Get(ctx, "kubelink-dns", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	addr := runCoreDNS(t, ctx, cm.Data["Corefile"], e.Kubeconfig)
	want := map[string]string{ex.cluster + ".kubelink.": strings.Split(ex.linkAddress, "/")[0]}
	if len(ex.links) > 0 {
		want[ex.links[0]+".kubelink."] = map[string]string{"kubelink1": "192.168.0.11", "kubelink2": "192.168.0.12", "kubelink3": "192.168.0.13"}[ex.links[0]]
	}
	cl := &dns.Client{Timeout: 2 * time.Second}
	defer func() {
		// An unused mesh address: the cluster DNS forwards the mesh's reverse
		// zone here, so it must not be forwarded back (a loop). The
		// upstream in the Corefile is unreachable in this test: an answer
		// within a second proves nothing was forwarded.
		m := new(dns.Msg)
		m.SetQuestion("250.0.168.192.in-addr.arpa.", dns.TypePTR)
		start := time.Now()
		r, _, err := cl.ExchangeContext(ctx, m, addr)
		if err != nil || time.Since(start) > time.Second {
			t.Errorf("PTR of an unused mesh address: %v after %v, want a local answer", err, time.Since(start))
		} else {
			t.Logf("PTR of an unused mesh address: %s in %v", dns.RcodeToString[r.Rcode], time.Since(start).Round(time.Millisecond))
		}
	}()
	// The server block for the cluster's CoreDNS (coredns-custom), run by a
	// second CoreDNS in front of the kubelink one, as in a cluster.
	stub, err := e.Client().CoreV1().ConfigMaps("kube-system").Get(ctx, "coredns-custom", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("cluster DNS integration ConfigMap: %v", err)
	}
	stubAddr := runStub(t, stub.Data["kubelink.server"], ex.dnsService, addr)
	checkNXDOMAIN(t, ctx, addr)
	m := new(dns.Msg)
	m.SetQuestion(strings.Join(reverse(strings.Split(strings.Split(ex.linkAddress, "/")[0], ".")), ".")+".in-addr.arpa.", dns.TypePTR)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		r, _, err := cl.ExchangeContext(ctx, m, stubAddr)
		if err == nil && len(r.Answer) == 1 {
			if ptr, ok := r.Answer[0].(*dns.PTR); ok && ptr.Ptr == ex.cluster+".kubelink." {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Errorf("PTR of the link address through the cluster DNS server block: %v %v", r, err)
			break
		}
	}
	checkClusterset(t, ctx, stubAddr)
	for _, srv := range []string{addr, stubAddr} {
		for name, ip := range want {
			var got string
			// The plugin's informers sync after ready; allow a moment.
			for deadline := time.Now().Add(10 * time.Second); ; {
				m := new(dns.Msg)
				m.SetQuestion(name, dns.TypeA)
				r, _, err := cl.ExchangeContext(ctx, m, srv)
				if err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1 {
					if a, ok := r.Answer[0].(*dns.A); ok {
						got = a.A.String()
					}
				}
				if got == ip || time.Now().After(deadline) {
					if got != ip {
						t.Errorf("%s A via %s: %v %v, want %s", name, srv, r, err, ip)
					}
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
	}
}

// checkClusterset: clusterset.local (dns.clusterset.enabled, the default)
// reaches the kubelink DNS through the cluster DNS server block and is
// answered there: dns-version (KEP-1645's schema) and an authoritative
// NXDOMAIN for an import nobody exports.
func checkClusterset(t *testing.T, ctx context.Context, stubAddr string) {
	t.Helper()
	cl := &dns.Client{Timeout: 2 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion("dns-version.clusterset.local.", dns.TypeTXT)
	var r *dns.Msg
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		r, _, err = cl.ExchangeContext(ctx, m, stubAddr)
		if err == nil && len(r.Answer) == 1 {
			if txt, ok := r.Answer[0].(*dns.TXT); ok && strings.Join(txt.Txt, "") == "1.0.0" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Errorf("dns-version.clusterset.local TXT through the cluster DNS server block: %v %v", r, err)
			return
		}
	}
	m.SetQuestion("nosuch.demo.svc.clusterset.local.", dns.TypeA)
	if r, _, err = cl.ExchangeContext(ctx, m, stubAddr); err != nil || r.Rcode != dns.RcodeNameError {
		t.Errorf("nosuch.demo.svc.clusterset.local A through the cluster DNS server block: %v %v, want NXDOMAIN", r, err)
	}
}

// checkNXDOMAIN: a name the mesh does not know is NXDOMAIN from the
// plugin itself (authoritative), not passed on to the forward plugin, which
// excludes the mesh domain and would answer SERVFAIL.
func checkNXDOMAIN(t *testing.T, ctx context.Context, addr string) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion("nosuch.kubelink.", dns.TypeA)
	r, _, err := (&dns.Client{Timeout: 2 * time.Second}).ExchangeContext(ctx, m, addr)
	if err != nil || r.Rcode != dns.RcodeNameError || !r.Authoritative {
		t.Errorf("nosuch.kubelink A via the chart's Corefile: %v %v, want an authoritative NXDOMAIN", r, err)
	}
}

func reverse(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

// runStub runs bin/coredns with the chart's cluster-DNS server block,
// pointed at the kubelink DNS on loopback instead of its ClusterIP.
func runStub(t *testing.T, block, serviceIP, kubelinkAddr string) string {
	t.Helper()
	port := freePorts(t, 1)[0]
	if !strings.Contains(block, "forward . "+serviceIP+"\n") || !strings.Contains(block, ":53 ") {
		t.Fatalf("unexpected server block:\n%s", block)
	}
	conf := strings.ReplaceAll(block, ":53", fmt.Sprintf(":%d", port))
	conf = strings.Replace(conf, "forward . "+serviceIP, "bind 127.0.0.1\n    forward . "+kubelinkAddr, 1)
	startCoreDNS(t, binary(t, "coredns"), "stub coredns", conf)
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// startCoreDNS runs a CoreDNS binary with Corefile conf until the test ends;
// on failure its output is logged under label.
func startCoreDNS(t *testing.T, bin, label, conf string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Corefile"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd := exec.Command(bin, "-conf", filepath.Join(dir, "Corefile"))
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s\nCorefile:\n%s", label, logs.String(), conf)
		}
	})
}
