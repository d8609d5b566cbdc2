package netd_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelink/kubelink/api/v1alpha1"
	knetns "github.com/kubelink/kubelink/test/netns"
	"github.com/kubelink/kubelink/test/testenv"
)

const (
	routerNS      = "kubelink-system"
	routerLease   = "kubelink-broker"
	routerPort    = 18181
	routerResync  = 2 * time.Second
	nodeIP        = "10.50.0.10"
	gw1IP, gw2IP  = "10.50.0.1", "10.50.0.2"
	serviceIPLink = "100.64.2.10"
)

// routerLab is one node and two gateway candidates on a bridge, and an
// apiserver the node reaches on its loopback:
//
//	N (10.50.0.10) ─┐
//	G1 (10.50.0.1) ─┼─ br0 (in namespace sw)
//	G2 (10.50.0.2) ─┘
//
// Both gateways hold the service IP 100.64.2.10 of the link kubelink2 on
// their loopback and answer on port 8080 with their name, so a connection
// from N tells which gateway the routes lead to.
type routerLab struct {
	t          *testing.T
	lab        *knetns.Lab
	netd       string
	node       string
	g1, g2     string
	env        *testenv.Env
	kubeconfig string
	datafile   string
}

func newRouterLab(t *testing.T) *routerLab {
	requireRoot(t)
	l := &routerLab{t: t, netd: buildNetd(t), lab: knetns.New(t, "klr")}
	l.datafile = filepath.Join(t.TempDir(), "data", "router.json")
	sw := l.lab.NS("sw")
	l.lab.Bridge(sw, "br0", "")
	l.node = l.lab.NS("node")
	l.g1 = l.lab.NS("g1")
	l.g2 = l.lab.NS("g2")
	for i, x := range []struct{ ns, addr string }{{l.node, nodeIP}, {l.g1, gw1IP}, {l.g2, gw2IP}} {
		port := fmt.Sprintf("p%d", i)
		l.lab.Veth(x.ns, "eth0", x.addr+"/24", sw, port, "")
		l.lab.Attach(sw, port, "br0")
	}
	for name, ns := range map[string]string{"g1": l.g1, "g2": l.g2} {
		l.lab.In(ns, "ip", "addr", "add", serviceIPLink+"/32", "dev", "lo")
		ln, err := knetns.Listen(ns, "tcp", serviceIPLink+":8080")
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
				fmt.Fprintln(c, name)
				c.Close()
			}
		}()
	}

	ctx := context.Background()
	l.env = testenv.Start(t, testenv.Options{})
	if _, err := l.env.InstallCRDs(ctx, testenv.CRDDir()); err != nil {
		t.Fatalf("installing CRDs: %v", err)
	}
	// The apiserver listens on the host's loopback; N reaches it on its
	// own loopback through a relay the test runs.
	u, err := url.Parse(l.env.URL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := knetns.Listen(l.node, "tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go knetns.Relay(ln, u.Host, nil)

	l.grantRouter(ctx)
	c := l.env.Client()
	if _, err := c.CoreV1().ServiceAccounts(routerNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	l.pod(ctx, "g1-pod", gw1IP)
	l.pod(ctx, "g2-pod", gw2IP)
	holder := "g1-pod"
	if _, err := c.CoordinationV1().Leases(routerNS).Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: routerLease},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: ptr(int32(15))},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []*v1alpha1.KubeLink{
		routerLink("kubelink2", "100.64.2.0/24", "192.168.0.12/24", "10.20.0.0/16"),
		routerLink("kubelink3", "100.64.3.0/24", "192.168.0.13/24", "10.30.1.0/24"),
	} {
		u, err := toUnstructured(k)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.env.Dynamic().Resource(kubeLinks).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Somebody else's routes in the node's main table: the broker's
	// protocol 97 and a static one.
	l.lab.In(l.node, "ip", "route", "add", "10.77.0.0/16", "dev", "eth0", "proto", "97")
	l.lab.In(l.node, "ip", "route", "add", "10.78.0.0/16", "via", gw2IP, "proto", "static")
	return l
}

func ptr[T any](v T) *T { return &v }

func routerLink(name, cidr, addr, egress string) *v1alpha1.KubeLink {
	return &v1alpha1.KubeLink{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.KubeLinkSpec{CIDR: cidr, ClusterAddress: addr, Endpoint: "192.0.2.1:8777",
			PublicKey: "mD2KZnSwDbzr4a2vD0zQ4CqYpMr1T0qC6G4uO9mA4Ew=", Egress: []string{egress}},
	}
}

// grantRouter gives the router's service account what the chart's
// router-rbac.yaml gives it, and nothing more, and writes its kubeconfig.
func (l *routerLab) grantRouter(ctx context.Context) {
	t := l.t
	_, kubeconfig, err := l.env.ServiceAccountConfig(ctx, routerNS, "kubelink-router")
	if err != nil {
		t.Fatal(err)
	}
	l.kubeconfig = kubeconfig
	read := []string{"get", "list", "watch"}
	subject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: "kubelink-router", Namespace: routerNS}}
	rbac := l.env.Client().RbacV1()
	if _, err := rbac.ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "kubelink-router"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{v1alpha1.GroupName}, Resources: []string{"kubelinks"}, Verbs: read}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "kubelink-router"},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "kubelink-router"}, Subjects: subject}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rbac.Roles(routerNS).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "kubelink-router"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: read},
			{APIGroups: []string{""}, Resources: []string{"pods", "endpoints"}, Verbs: read},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: read},
		}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rbac.RoleBindings(routerNS).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "kubelink-router"},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "kubelink-router"}, Subjects: subject}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// pod creates a hostNetwork broker pod with the given IP in its status
// (none when ip is empty).
func (l *routerLab) pod(ctx context.Context, name, ip string) {
	l.t.Helper()
	pods := l.env.Client().CoreV1().Pods(routerNS)
	p, err := pods.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{NodeName: "node-" + name, HostNetwork: true,
			Containers: []corev1.Container{{Name: "netd", Image: "kubelink/netd"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		l.t.Fatal(err)
	}
	if ip == "" {
		return
	}
	p.Status.Phase = corev1.PodRunning
	p.Status.HostIP, p.Status.PodIP = ip, ip
	p.Status.HostIPs = []corev1.HostIP{{IP: ip}}
	p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	if _, err := pods.UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		l.t.Fatal(err)
	}
}

// setHolder makes holder the lease's holder ("" = released).
func (l *routerLab) setHolder(ctx context.Context, holder string) {
	l.t.Helper()
	leases := l.env.Client().CoordinationV1().Leases(routerNS)
	ls, err := leases.Get(ctx, routerLease, metav1.GetOptions{})
	if err != nil {
		l.t.Fatal(err)
	}
	ls.Spec.HolderIdentity = &holder
	if _, err := leases.Update(ctx, ls, metav1.UpdateOptions{}); err != nil {
		l.t.Fatal(err)
	}
}

func (l *routerLab) deleteLink(ctx context.Context, name string) {
	l.t.Helper()
	if err := l.env.Dynamic().Resource(kubeLinks).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		l.t.Fatal(err)
	}
}

// start runs netd router in N.
func (l *routerLab) start(name string, extra ...string) *knetns.Proc {
	l.t.Helper()
	args := append([]string{l.netd, "router", "--kubeconfig", l.kubeconfig, "--link-address", "192.168.0.11/24",
		"--node-ip", nodeIP, "--lease-name", routerLease, "--lease-namespace", routerNS,
		"--datafile", l.datafile, "--server-port-http", strconv.Itoa(routerPort), "--resync", routerResync.String()}, extra...)
	return startNetd(l.t, l.lab, l.node, name, nil, "ROUTER_LOG", args...)
}

// routes lists the routes of a protocol in a table of N, sorted, without
// trailing blanks.
func (l *routerLab) routes(proto, table string) []string {
	out, err := exec(l.node, "ip", "route", "show", "table", table, "proto", proto)
	if err != nil {
		l.t.Fatalf("ip route: %v: %s", err, out)
	}
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" {
			lines = append(lines, s)
		}
	}
	slices.Sort(lines)
	return lines
}

// via is the routes expected for the destinations through a gateway.
func via(gw string, dsts ...string) []string {
	var out []string
	for _, d := range dsts {
		out = append(out, d+" via "+gw+" dev eth0")
	}
	slices.Sort(out)
	return out
}

var allDsts = []string{"10.20.0.0/16", "10.30.1.0/24", "100.64.2.0/24", "100.64.3.0/24", "192.168.0.0/24"}

// waitRoutes polls N's router routes in table until they are want.
func (l *routerLab) waitRoutes(table string, want []string, timeout time.Duration, p *knetns.Proc) {
	l.t.Helper()
	start := time.Now()
	for {
		got := l.routes("98", table)
		if slices.Equal(got, want) {
			return
		}
		if time.Since(start) > timeout || (p != nil && p.Exited()) {
			l.t.Fatalf("routes (protocol 98, table %s) after %s:\n%s\nwant:\n%s", table, time.Since(start).Round(time.Millisecond),
				strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkForeign asserts the routes of other protocols are untouched.
func (l *routerLab) checkForeign() {
	l.t.Helper()
	if got := l.routes("97", "main"); !slices.Equal(got, []string{"10.77.0.0/16 dev eth0 scope link"}) {
		l.t.Fatalf("protocol 97 routes changed: %q", got)
	}
	if got := l.routes("static", "main"); !slices.Equal(got, []string{"10.78.0.0/16 via " + gw2IP + " dev eth0"}) {
		l.t.Fatalf("static routes changed: %q", got)
	}
}

// reach connects from N to the link's service IP and returns the name
// the gateway answers with.
func (l *routerLab) reach() string {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := knetns.DialContext(l.node)(ctx, "tcp", serviceIPLink+":8080")
	if err != nil {
		l.t.Fatalf("connecting from N to %s:8080: %v", serviceIPLink, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		l.t.Fatalf("reading from %s:8080: %v", serviceIPLink, err)
	}
	return strings.TrimSpace(line)
}

func (l *routerLab) waitReady(p *knetns.Proc) {
	l.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out, err := curl(l.node, fmt.Sprintf("http://127.0.0.1:%d/readyz", routerPort))
		if err == nil && strings.TrimSpace(out) == "ok" {
			return
		}
		if time.Now().After(deadline) || p.Exited() {
			l.t.Fatalf("router not ready: %v %s", err, out)
		}
	}
}

func (l *routerLab) gatewayInfo() string {
	l.t.Helper()
	out, err := curl(l.node, fmt.Sprintf("http://127.0.0.1:%d/metrics", routerPort))
	if err != nil {
		l.t.Fatalf("metrics: %v", err)
	}
	m := regexp.MustCompile(`(?m)^netd_router_gateway_info\{(.*)\} 1$`).FindStringSubmatch(out)
	if m == nil {
		l.t.Fatalf("no netd_router_gateway_info in:\n%s", out)
	}
	return m[1]
}

func (l *routerLab) record() map[string]any {
	l.t.Helper()
	b, err := os.ReadFile(l.datafile)
	if err != nil {
		l.t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(b, &rec); err != nil {
		l.t.Fatalf("datafile: %v\n%s", err, b)
	}
	return rec
}

func (l *routerLab) checkRecordEmpty() {
	l.t.Helper()
	rec := l.record()
	for _, k := range []string{"routes", "rules", "devices"} {
		if v, _ := rec[k].([]any); len(v) != 0 {
			l.t.Fatalf("datafile not cleared: %v", rec)
		}
	}
}

// TestRouter: routes to the lease holder, a gateway switch, a holder
// without IP, a released lease, a gateway on the node itself, a deleted
// link, a quiet period without writes, others' routes untouched, and a
// clean SIGTERM.
func TestRouter(t *testing.T) {
	l := newRouterLab(t)
	ctx := context.Background()
	l.checkForeign()
	began := time.Now()
	p := l.start("router")
	l.waitRoutes("main", via(gw1IP, allDsts...), 30*time.Second, p)
	t.Logf("routes via g1 %s after the start", time.Since(began).Round(time.Millisecond))
	l.waitReady(p)
	if got := l.reach(); got != "g1" {
		t.Fatalf("connection from N reached %q, want g1", got)
	}
	if info := l.gatewayInfo(); info != `gateway="10.50.0.1",holder="g1-pod",state="known"` {
		t.Fatalf("gateway info %s", info)
	}

	// A quiet period: reconciles run (resync) but write nothing.
	writes := metric(t, l.node, routerPort, "netd_router_route_writes")
	files := metric(t, l.node, routerPort, "netd_router_datafile_writes")
	oks := metric(t, l.node, routerPort, `netd_router_reconciles_total{result="ok"}`)
	time.Sleep(2*routerResync + time.Second)
	w2 := metric(t, l.node, routerPort, "netd_router_route_writes")
	f2 := metric(t, l.node, routerPort, "netd_router_datafile_writes")
	o2 := metric(t, l.node, routerPort, `netd_router_reconciles_total{result="ok"}`)
	if o2-oks < 2 || w2 != writes || f2 != files {
		t.Fatalf("quiet period: %v reconciles, route writes %v→%v, datafile writes %v→%v", o2-oks, writes, w2, files, f2)
	}
	t.Logf("quiet period: %v reconciles, 0 route writes (total %v), 0 datafile writes", o2-oks, w2)
	if n := metric(t, l.node, routerPort, "netd_router_routes"); n != 5 {
		t.Fatalf("netd_router_routes %v", n)
	}

	// Gateway switch.
	start := time.Now()
	l.setHolder(ctx, "g2-pod")
	l.waitRoutes("main", via(gw2IP, allDsts...), 10*time.Second, p)
	t.Logf("gateway switch g1→g2: all routes moved %s after the lease update was sent", time.Since(start).Round(time.Millisecond))
	if got := l.reach(); got != "g2" {
		t.Fatalf("after the switch N reached %q, want g2", got)
	}
	if w := metric(t, l.node, routerPort, "netd_router_route_writes"); w-w2 != 5 {
		t.Fatalf("switch wrote %v routes, want 5 replacements", w-w2)
	}

	// A holder whose pod has no IP yet, then a missing pod: the routes
	// stay with the last gateway.
	l.pod(ctx, "g3-pod", "")
	l.setHolder(ctx, "g3-pod")
	time.Sleep(500 * time.Millisecond)
	l.setHolder(ctx, "gone-pod")
	time.Sleep(500 * time.Millisecond)
	if got := l.routes("98", "main"); !slices.Equal(got, via(gw2IP, allDsts...)) {
		t.Fatalf("routes changed while the holder had no IP:\n%s", strings.Join(got, "\n"))
	}
	if info := l.gatewayInfo(); info != `gateway="",holder="gone-pod",state="unknown"` {
		t.Fatalf("gateway info %s", info)
	}

	// Released lease: no gateway, no routes; the router stays ready.
	start = time.Now()
	l.setHolder(ctx, "")
	l.waitRoutes("main", nil, 10*time.Second, p)
	t.Logf("released lease: routes removed %s after the lease update was sent", time.Since(start).Round(time.Millisecond))
	l.waitReady(p)
	start = time.Now()
	l.setHolder(ctx, "g1-pod")
	l.waitRoutes("main", via(gw1IP, allDsts...), 10*time.Second, p)
	t.Logf("new holder g1: routes back %s after the lease update was sent", time.Since(start).Round(time.Millisecond))

	// The gateway runs on this node (node mode): the broker's device
	// routes serve it, the router has none.
	l.pod(ctx, "n-pod", nodeIP)
	l.setHolder(ctx, "n-pod")
	l.waitRoutes("main", nil, 10*time.Second, p)
	if info := l.gatewayInfo(); info != `gateway="10.50.0.10",holder="n-pod",state="local"` {
		t.Fatalf("gateway info %s", info)
	}
	l.setHolder(ctx, "g1-pod")
	l.waitRoutes("main", via(gw1IP, allDsts...), 10*time.Second, p)

	// A deleted link takes its routes along.
	start = time.Now()
	l.deleteLink(ctx, "kubelink3")
	l.waitRoutes("main", via(gw1IP, "10.20.0.0/16", "100.64.2.0/24", "192.168.0.0/24"), 10*time.Second, p)
	t.Logf("deleted link: its routes gone %s after the delete was sent", time.Since(start).Round(time.Millisecond))
	if got := l.reach(); got != "g1" {
		t.Fatalf("N reached %q, want g1", got)
	}
	// The datafile is rewritten right after the removal (it never claims
	// less than the kernel holds), so it may trail the routes briefly.
	for deadline := time.Now().Add(5 * time.Second); ; {
		rec := l.record()
		if rs, _ := rec["routes"].([]any); len(rs) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("datafile: %v", rec)
		}
		time.Sleep(50 * time.Millisecond)
	}
	l.checkForeign()

	// SIGTERM: everything the router created goes.
	p.Kill(syscall.SIGTERM)
	if !strings.Contains(p.Output(), "removed the router's routes") {
		t.Fatalf("no clean shutdown:\n%s", p.Output())
	}
	if got := l.routes("98", "all"); len(got) != 0 {
		t.Fatalf("routes left after SIGTERM:\n%s", strings.Join(got, "\n"))
	}
	l.checkRecordEmpty()
	l.checkForeign()
}

// TestRouterRestart: a table with its rule; kill -9; the state changes and
// the router restarts with the main table and the same datafile: the old
// table's routes and the rule go, and a second restart writes nothing.
func TestRouterRestart(t *testing.T) {
	l := newRouterLab(t)
	ctx := context.Background()
	// Somebody else's route in table 100 too.
	l.lab.In(l.node, "ip", "route", "add", "10.77.0.0/16", "dev", "eth0", "table", "100", "proto", "97")
	p := l.start("router-table100", "--route-table", "100", "--rule-priority", "1000")
	l.waitRoutes("100", via(gw1IP, allDsts...), 30*time.Second, p)
	if got := l.routes("98", "main"); len(got) != 0 {
		t.Fatalf("routes in main with --route-table 100: %q", got)
	}
	rule := func() string {
		out, err := exec(l.node, "ip", "rule", "show", "priority", "1000")
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}
	if r := rule(); r != "1000:\tfrom all lookup 100 proto 98" {
		t.Fatalf("rule %q", r)
	}
	if got := l.reach(); got != "g1" {
		t.Fatalf("through table 100 N reached %q, want g1", got)
	}
	l.waitReady(p)

	p.Kill(syscall.SIGKILL)
	if got := l.routes("98", "100"); len(got) != 5 {
		t.Fatalf("kill -9 removed routes: %q", got)
	}
	rec := l.record()
	if len(rec["routes"].([]any)) != 5 || len(rec["rules"].([]any)) != 1 {
		t.Fatalf("datafile after kill -9: %v", rec)
	}
	l.deleteLink(ctx, "kubelink3")

	start := time.Now()
	p = l.start("router-main")
	l.waitRoutes("main", via(gw1IP, "10.20.0.0/16", "100.64.2.0/24", "192.168.0.0/24"), 30*time.Second, p)
	l.waitRoutes("100", nil, 5*time.Second, p)
	if r := rule(); r != "" {
		t.Fatalf("stale rule %q", r)
	}
	t.Logf("restart with the main table: old table and rule cleaned up, new routes %s after the start", time.Since(start).Round(time.Millisecond))
	if got := l.routes("97", "100"); !slices.Equal(got, []string{"10.77.0.0/16 dev eth0 scope link"}) {
		t.Fatalf("protocol 97 route in table 100 touched: %q", got)
	}
	l.waitReady(p)

	// Killed again and restarted unchanged: nothing to write.
	p.Kill(syscall.SIGKILL)
	p = l.start("router-again")
	l.waitReady(p)
	if w := metric(t, l.node, routerPort, "netd_router_route_writes"); w != 0 {
		t.Fatalf("an unchanged restart wrote %v routes", w)
	}
	if w := metric(t, l.node, routerPort, "netd_router_datafile_writes"); w != 0 {
		t.Fatalf("an unchanged restart wrote the datafile %v times", w)
	}

	p.Kill(syscall.SIGTERM)
	if got := l.routes("98", "all"); len(got) != 0 {
		t.Fatalf("routes left after SIGTERM:\n%s", strings.Join(got, "\n"))
	}
	l.checkRecordEmpty()
	l.checkForeign()
	if got := l.routes("97", "100"); len(got) != 1 {
		t.Fatalf("protocol 97 route in table 100 touched: %q", got)
	}
}

// TestRouterIPIP: with --ipip configure the router owns an ipip device
// and routes through it on-link; without kernel ipip support it fails at
// once with a clear error (checked), and the test skips.
func TestRouterIPIP(t *testing.T) {
	requireRoot(t)
	probe := knetns.New(t, "klri")
	ns := probe.NS("probe")
	if out, err := exec(ns, "ip", "link", "add", "probe0", "type", "ipip"); err != nil {
		netd := buildNetd(t)
		p := probe.Start(ns, "router", nil, nil, netd, "router", "--ipip", "configure", "--node-ip", nodeIP,
			"--lease-name", routerLease, "--kubeconfig", "/nonexistent", "--server-port-http", "0")
		select {
		case <-p.Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("router without kernel ipip did not fail:\n%s", p.Output())
		}
		if !strings.Contains(p.Output(), "the kernel has no ipip support") {
			t.Fatalf("unclear failure without kernel ipip:\n%s", p.Output())
		}
		t.Skipf("kernel has no ipip support (ip link add type ipip: %s); checked the router's error", strings.TrimSpace(out))
	}
	l := newRouterLab(t)
	p := l.start("router-ipip", "--ipip", "configure")
	want := []string{}
	for _, d := range allDsts {
		want = append(want, d+" via "+gw1IP+" dev kubelink-ipip onlink")
	}
	slices.Sort(want)
	l.waitRoutes("main", want, 30*time.Second, p)
	if out, err := exec(l.node, "ip", "-d", "link", "show", "kubelink-ipip"); err != nil || !strings.Contains(out, "local "+nodeIP) {
		t.Fatalf("ipip device: %v %s", err, out)
	}
	p.Kill(syscall.SIGTERM)
	if out, err := exec(l.node, "ip", "link", "show", "kubelink-ipip"); err == nil {
		t.Fatalf("ipip device left after SIGTERM: %s", out)
	}
	l.checkRecordEmpty()
}
