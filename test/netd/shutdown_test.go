package netd_test

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelink/kubelink/api/v1alpha1"
	knetns "github.com/kubelink/kubelink/test/netns"
	"github.com/kubelink/kubelink/test/testenv"
)

const (
	shutdownLease = "kubelink-broker"
	shutdownTable = "100"
)

// shutdownLab is one cluster's apiserver and gateway namespaces, each
// reaching the apiserver on its own loopback through a relay.
type shutdownLab struct {
	t    *testing.T
	lab  *knetns.Lab
	env  *testenv.Env
	netd string
}

func newShutdownLab(t *testing.T) *shutdownLab {
	requireRoot(t)
	l := &shutdownLab{t: t, lab: knetns.New(t, "sd"), netd: buildNetd(t)}
	l.env = testenv.Start(t, testenv.Options{})
	ctx := context.Background()
	if _, err := l.env.InstallCRDs(ctx, testenv.CRDDir()); err != nil {
		t.Fatalf("installing CRDs: %v", err)
	}
	local := &v1alpha1.KubeLink{ObjectMeta: metav1.ObjectMeta{Name: "a"},
		Spec: v1alpha1.KubeLinkSpec{ClusterAddress: "192.168.0.11/24", CIDR: "100.64.1.0/24", Endpoint: v1alpha1.EndpointLocalLink}}
	// A peer that never answers: its routes exist all the same.
	peer := &v1alpha1.KubeLink{ObjectMeta: metav1.ObjectMeta{Name: "b"},
		Spec: v1alpha1.KubeLinkSpec{ClusterAddress: "192.168.0.12/24", CIDR: "100.64.2.0/24", Endpoint: "192.0.2.1:8777", PublicKey: publicKey(t)}}
	for _, k := range []*v1alpha1.KubeLink{local, peer} {
		u, err := toUnstructured(k)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.env.Dynamic().Resource(kubeLinks).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// gateway creates a gateway namespace that reaches the apiserver.
func (l *shutdownLab) gateway(name string) string {
	ns := l.lab.NS(name)
	u, err := url.Parse(l.env.URL)
	if err != nil {
		l.t.Fatal(err)
	}
	ln := listenIn(l.t, ns, u.Host)
	l.t.Cleanup(func() { _ = ln.Close() })
	go knetns.Relay(ln, u.Host, nil)
	return ns
}

// broker starts netd broker in ns as identity with a table-100 rule.
func (l *shutdownLab) broker(ns, identity string, port int, extra ...string) *knetns.Proc {
	l.t.Helper()
	args := append([]string{l.netd, "broker", "--mode", "wireguard", "--kubeconfig", l.env.Kubeconfig,
		"--keepalive", keepalive.String(), "--server-port-http", strconv.Itoa(port),
		"--route-table", shutdownTable, "--rule-priority", "1000"}, extra...)
	return startNetd(l.t, l.lab, ns, identity, []string{"POD_NAME=" + identity}, "BROKER_LOG", args...)
}

// active reports whether ns holds the whole of an active broker's state.
func active(t *testing.T, ns string) bool {
	t.Helper()
	left := strings.Join(brokerState(t, ns, shutdownTable), "\n")
	return strings.Contains(left, "device:") && strings.Contains(left, "nftables table") &&
		strings.Contains(left, "100.64.2.0/24") && strings.Contains(left, "rule:")
}

// waitActive waits until the broker in ns is active and /readyz says so.
func waitActive(t *testing.T, ns string, port int, p *knetns.Proc) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !active(t, ns) || readyz(ns, port) != 200 {
		if p.Exited() || time.Now().After(deadline) {
			t.Fatalf("%s: not active and ready within 30s (exited %v, /readyz %d): %q", p.Name, p.Exited(), readyz(ns, port), brokerState(t, ns, shutdownTable))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// readyz is the HTTP status of /readyz in ns (0: no answer).
func readyz(ns string, port int) int {
	out, err := exec(ns, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2", fmt.Sprintf("http://127.0.0.1:%d/readyz", port))
	if err != nil {
		return 0
	}
	code, _ := strconv.Atoi(strings.TrimSpace(out))
	return code
}

// waitExit waits for p to end by itself.
func waitExit(t *testing.T, p *knetns.Proc, within time.Duration) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(within):
		t.Fatalf("%s did not exit within %s", p.Name, within)
	}
}

func checkClean(t *testing.T, what, ns string) {
	t.Helper()
	if left := brokerState(t, ns, shutdownTable); len(left) > 0 {
		t.Errorf("%s left behind:\n%s", what, strings.Join(left, "\n"))
	}
}

// TestShutdownNoElection: a broker without leader election removes its
// device, nftables table, routes and rule on SIGTERM.
func TestShutdownNoElection(t *testing.T) {
	l := newShutdownLab(t)
	ns := l.gateway("gw")
	p := l.broker(ns, "gw-a", 18190)
	waitActive(t, ns, 18190, p)
	p.Kill(syscall.SIGTERM)
	checkClean(t, "SIGTERM without election", ns)
}

// TestShutdownLeaderElection: with --lease-name only the active replica
// is ready; SIGTERM to it cleans up before the lease is released (the
// standby takes over at once), and a replica that loses its lease (taken
// over by another identity) cleans up and exits to restart as a standby.
func TestShutdownLeaderElection(t *testing.T) {
	l := newShutdownLab(t)
	ctx := context.Background()
	ns1, ns2 := l.gateway("gw1"), l.gateway("gw2")
	lease := []string{"--lease-name", shutdownLease, "--lease-namespace", "default", "--lease-duration", "4s"}
	p1 := l.broker(ns1, "gw-1", 18191, lease...)
	waitActive(t, ns1, 18191, p1)
	p2 := l.broker(ns2, "gw-2", 18192, lease...)
	// The standby serves /healthz but is not ready, and holds nothing.
	deadline := time.Now().Add(10 * time.Second)
	for readyz(ns2, 18192) == 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	if code := readyz(ns2, 18192); code != 503 {
		t.Errorf("standby /readyz: %d, want 503", code)
	}
	if code := readyz(ns1, 18191); code != 200 {
		t.Errorf("active /readyz: %d, want 200", code)
	}
	if left := brokerState(t, ns2, shutdownTable); len(left) > 0 {
		t.Errorf("the standby configured the kernel: %q", left)
	}

	// SIGTERM to the active replica: it cleans up, then releases the
	// lease, so the standby takes over well within the lease duration.
	start := time.Now()
	p1.Kill(syscall.SIGTERM)
	checkClean(t, "SIGTERM to the active replica", ns1)
	waitActive(t, ns2, 18192, p2)
	t.Logf("MEASURED: the standby was active and ready %.1fs after SIGTERM to the leader (lease duration 4s)", time.Since(start).Seconds())
	if !strings.Contains(p1.Output(), "became the active gateway") {
		t.Errorf("gw-1 never led")
	}

	// Another identity takes the lease over: gw-2 stops renewing within
	// the renew deadline, cleans up and exits (to restart as a standby).
	start = time.Now()
	takeLease(ctx, t, l.env, "thief")
	waitExit(t, p2, 20*time.Second)
	t.Logf("MEASURED: gw-2 exited %.1fs after its lease was taken", time.Since(start).Seconds())
	if !strings.Contains(p2.Output(), "lost the lease") {
		t.Errorf("gw-2 did not report the lost lease")
	}
	checkClean(t, "a lost lease", ns2)
}

// takeLease makes holder the lease's holder for an hour.
func takeLease(ctx context.Context, t *testing.T, env *testenv.Env, holder string) {
	t.Helper()
	leases := env.Client().CoordinationV1().Leases("default")
	for i := 0; ; i++ {
		ls, err := leases.Get(ctx, shutdownLease, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		now := metav1.NewMicroTime(time.Now())
		ls.Spec = coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: ptr(int32(3600)), AcquireTime: &now, RenewTime: &now}
		_, err = leases.Update(ctx, ls, metav1.UpdateOptions{})
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) || i == 10 {
			t.Fatalf("taking the lease: %v", err)
		}
	}
}

// TestShutdownAPIServerGone: an active replica whose apiserver goes away
// cannot renew its lease. Nobody else can take it over either, so it keeps
// its data path (device, table, routes, rule) and stays ready past the
// renew deadline for as long as the outage lasts, and renews when the
// apiserver is back, without a restart. With --lease-outage-hold it gives
// up after the renew deadline plus the hold, removes what it created (which
// needs no apiserver) and exits.
func TestShutdownAPIServerGone(t *testing.T) {
	l := newShutdownLab(t)
	ctx := context.Background()
	ns := l.gateway("gw")
	p := l.broker(ns, "gw-1", 18193, "--lease-name", shutdownLease, "--lease-namespace", "default", "--lease-duration", "4s")
	waitActive(t, ns, 18193, p)
	l.env.StopAPIServer()
	// Three lease durations more: the renew deadline (2.7s) is long past.
	time.Sleep(12 * time.Second)
	if p.Exited() || !active(t, ns) || readyz(ns, 18193) != 200 {
		t.Fatalf("12s into the apiserver outage: exited %v, /readyz %d, state %q; want the active gateway kept", p.Exited(), readyz(ns, 18193), brokerState(t, ns, shutdownTable))
	}
	if v := metric(t, ns, 18193, "netd_lease_renewal_failing"); v != 1 {
		t.Errorf("netd_lease_renewal_failing %v during the outage, want 1", v)
	}
	if err := l.env.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	var renewed time.Duration
	for {
		ls, err := l.env.Client().CoordinationV1().Leases("default").Get(ctx, shutdownLease, metav1.GetOptions{})
		if err == nil && ls.Spec.RenewTime != nil && ls.Spec.RenewTime.After(back) {
			if h := *ls.Spec.HolderIdentity; h != "gw-1" {
				t.Fatalf("after the outage the lease is held by %q, want gw-1", h)
			}
			renewed = time.Since(back)
			break
		}
		if time.Since(back) > 30*time.Second {
			t.Fatalf("the lease was not renewed within 30s of the apiserver's return: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if p.Exited() || !active(t, ns) || strings.Contains(p.Output(), "lost the lease") {
		t.Fatalf("after the outage: exited %v, active %v; want the same process still active", p.Exited(), active(t, ns))
	}
	if v := metric(t, ns, 18193, "netd_lease_renewal_failing"); v != 0 {
		t.Errorf("netd_lease_renewal_failing %v after the renewal, want 0", v)
	}
	t.Logf("MEASURED: the gateway kept its data path through the apiserver outage and renewed its lease %.1fs after the apiserver was back", renewed.Seconds())

	// Bounded: a second gateway (a lease of its own) with a hold of 2s.
	ns2 := l.gateway("gw2")
	p2 := l.broker(ns2, "gw-2", 18194, "--lease-name", shutdownLease+"-held", "--lease-namespace", "default", "--lease-duration", "4s", "--lease-outage-hold", "2s")
	waitActive(t, ns2, 18194, p2)
	start := time.Now()
	l.env.StopAPIServer()
	stopped := time.Since(start)
	waitExit(t, p2, 30*time.Second)
	// The stop itself takes a while (the apiserver drains); the broker's
	// own account says how long it went without renewing.
	gaveUp := ""
	for _, line := range strings.Split(p2.Output(), "\n") {
		if strings.Contains(line, "not renewed for") {
			gaveUp = line
		}
	}
	if gaveUp == "" || !strings.Contains(p2.Output(), "lost the lease") {
		t.Errorf("gw-2 did not say that and why it gave up the lease:\n%s", p2.Output())
	}
	t.Logf("MEASURED: with --lease-outage-hold 2s the leader exited %.1fs after its apiserver began to stop (the stop took %.1fs): %s", time.Since(start).Seconds(), stopped.Seconds(), gaveUp)
	checkClean(t, "a lease given up after the outage hold", ns2)
	if p.Exited() || !active(t, ns) {
		t.Errorf("gw-1 (no hold) did not keep its data path through the second outage")
	}
}
