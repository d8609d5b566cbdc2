// Command benchsync (make bench-sync) measures netd sync at scale against
// real apiservers (test/testenv: etcd + kube-apiserver from bin/testenv).
//
// Setup (not measured): R remote apiservers, each with S Services and one
// EndpointSlice of E ready endpoints per Service (as the remote
// EndpointSlice controller would write it), and one local apiserver with
// the CRDs and the S same-named Services without endpoints. Each remote
// gets the read-only identity `netd kubeconfig` makes (package remotecfg:
// ServiceAccount, ClusterRole, binding, a TokenRequest token); its
// kubeconfig goes into a local Secret named by a ClusterLink's
// spec.kubeconfigSecretRef (pod address mode, as svclink).
//
// Measured, with netd sync's controller running in this process:
//
//   - converge: from the controller's start (nothing synced yet, no remote
//     connection) until every one of the R×S expected local slices exists
//     with the expected endpoints and ports. An informer of this process on
//     our slices timestamps each arrival; nothing polls the API. The local
//     apiserver is fresh, as in a new cluster: when nobody has read a CRD
//     there yet (KubeLinks here; the broker would have), the first watch of
//     it gets 429 with Retry-After: 1 while its watch cache fills, and
//     client-go waits that second before netd sync's caches are synced
//     ("start to first links round" in the table).
//   - change latency: N single-endpoint changes (one endpoint's address of a
//     random remote slice replaced), one at a time; each from the return of
//     the remote Update until the informer sees the local slice carry it;
//     p50 and p99 (nearest rank).
//   - noop_writes: netd sync's write counter (controller.Writes) before a
//     full resync (controller.Resync) of the unchanged world and after the
//     queue has stayed idle and a few link rounds have passed: must be 0.
//   - rss: the peak resident set size (VmHWM) of this process from the
//     controller's start to the end of the measurements. The peak is reset
//     (/proc/self/clear_refs) after the fill, so the fill's own garbage is
//     not counted. What remains beyond netd sync itself is this bench's
//     observer informer (its objects trimmed to names, labels, addresses
//     and ports) and the change driver's bookkeeping (R×S×E address
//     strings): nothing is subtracted, so the figure overstates netd sync
//     slightly.
//
// Baselines from the same run (the project's rule: performance as a ratio
// against a baseline measured in the same run), after netd sync stopped,
// against the same apiservers, writing the same R×S slices (same labels,
// owner, endpoints; another managed-by value and name, so netd sync's
// caches never see them):
//
//   - svclink pass: what svclink does each sync period: list every remote
//     cluster's Services and EndpointSlices, then write the slices one
//     after another. converge/svclink below 1 means netd sync gets from
//     empty to complete faster than one svclink period's work; and svclink
//     repeats that work every 30 s while netd sync's change costs one
//     Service's reconcile.
//   - write floor: the same slices created by as many parallel writers as
//     netd sync has workers, with nothing to read or compute: what the
//     local apiserver allows. converge/floor is netd sync's overhead over
//     the bare writes (connections, remote lists, planning, the queue).
//
// The last line is:
//
//	sync bench: clusters=R services=S endpoints=E converge=Xms change_p50=Yms change_p99=Zms noop_writes=N rss=MMB
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/kubelink/kubelink/api/synced"
	"github.com/kubelink/kubelink/api/watch"
	"github.com/kubelink/kubelink/netd/remotecfg"
	"github.com/kubelink/kubelink/netd/sync/controller"
	"github.com/kubelink/kubelink/test/procmem"
	"github.com/kubelink/kubelink/test/testenv"
)

const (
	// benchNS holds the Services everywhere; linkNS the ClusterLinks and
	// their Secrets here, and the reader identity in the remotes.
	benchNS = "bench"
	linkNS  = "kubelink"
	// baselineManager is the managed-by value of the baselines' slices.
	baselineManager = "bench-sync-baseline"
	// fillWorkers: parallel creates per apiserver during the fill.
	fillWorkers = 32
)

type params struct {
	clusters, services, endpoints, changes int
	workers, burst                         int
	qps                                    float64
	pace, timeout                          time.Duration
	cpuprofile, memprofile                 string
	verbose                                bool
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func main() {
	began := time.Now()
	var p params
	flag.IntVar(&p.clusters, "clusters", envInt("BENCH_SYNC_CLUSTERS", 3), "remote apiservers (env BENCH_SYNC_CLUSTERS)")
	flag.IntVar(&p.services, "services", envInt("BENCH_SYNC_SERVICES", 1000), "Services per cluster (env BENCH_SYNC_SERVICES)")
	flag.IntVar(&p.endpoints, "endpoints", envInt("BENCH_SYNC_ENDPOINTS", 10), "endpoints per remote Service (env BENCH_SYNC_ENDPOINTS)")
	flag.IntVar(&p.changes, "changes", envInt("BENCH_SYNC_CHANGES", 200), "single-endpoint remote changes to time (env BENCH_SYNC_CHANGES)")
	flag.IntVar(&p.workers, "workers", 16, "netd sync --workers")
	flag.Float64Var(&p.qps, "kube-api-qps", 1000, "netd sync --kube-api-qps (local writes)")
	flag.IntVar(&p.burst, "kube-api-burst", 2000, "netd sync --kube-api-burst")
	flag.DurationVar(&p.pace, "pace", 10*time.Millisecond, "pause between two changes (each waits for the previous one to arrive)")
	flag.DurationVar(&p.timeout, "timeout", 5*time.Minute, "give up converging (or one change arriving) after this long")
	flag.StringVar(&p.cpuprofile, "cpuprofile", "", "write a CPU profile of the measurements (controller start to the no-op resync) to this file")
	flag.StringVar(&p.memprofile, "memprofile", "", "write a heap profile after the no-op resync to this file")
	flag.BoolVar(&p.verbose, "v", false, "netd sync's log on stderr")
	flag.Parse()
	if err := run(p, began); err != nil {
		fmt.Fprintln(os.Stderr, "bench-sync:", err)
		os.Exit(1)
	}
}

func (p params) validate() error {
	switch {
	case p.clusters < 1 || p.clusters > 15:
		return fmt.Errorf("-clusters %d: 1 to 15", p.clusters)
	case p.services < 1 || p.endpoints < 1 || p.services*p.endpoints >= 1<<20:
		return fmt.Errorf("-services × -endpoints must be between 1 and %d", 1<<20-1)
	case p.endpoints > 1000:
		return fmt.Errorf("-endpoints %d: at most 1000 (one remote slice per Service)", p.endpoints)
	case p.changes < 0 || p.workers < 1 || p.qps <= 0 || p.burst < 1:
		return fmt.Errorf("-changes, -workers, -kube-api-qps and -kube-api-burst must be positive")
	}
	return nil
}

func clusterName(r int) string { return fmt.Sprintf("remote%d", r) }
func serviceName(i int) string { return fmt.Sprintf("svc-%05d", i) }

// podAddr is endpoint n of remote cluster r: 10.0.0.0/8 split into one
// /12 per cluster.
func podAddr(r, n int) string {
	v := uint32(10)<<24 | uint32(r)<<20 | uint32(n)
	return fmt.Sprintf("%d.%d.%d.%d", v>>24, v>>16&255, v>>8&255, v&255)
}

// changedAddr is the address of the k-th change (11.0.0.0/8: never taken).
func changedAddr(k int) string {
	v := uint32(11)<<24 | uint32(k+1)
	return fmt.Sprintf("%d.%d.%d.%d", v>>24, v>>16&255, v>>8&255, v&255)
}

var httpPort = []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}

// remoteSlice is a remote cluster's own slice of Service i.
func remoteSlice(i int, addrs []string, rv string) *discoveryv1.EndpointSlice {
	yes := true
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: serviceName(i) + "-own", ResourceVersion: rv, Labels: map[string]string{
			discoveryv1.LabelServiceName: serviceName(i), discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080)), Protocol: ptr(corev1.ProtocolTCP)}},
	}
	for _, a := range addrs {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, Conditions: discoveryv1.EndpointConditions{Ready: &yes}})
	}
	return s
}

func ptr[T any](v T) *T { return &v }

// parallel runs f(0..n-1) on workers goroutines; the first error stops it.
func parallel(ctx context.Context, n, workers int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	for w := 0; w < min(workers, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(ctx, i); err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return first
}

// fastClient is an unthrottled admin client (the fill and the baselines'
// writers; never netd sync's).
func fastClient(cfg *rest.Config) kubernetes.Interface {
	c := rest.CopyConfig(cfg)
	c.QPS, c.Burst = -1, 0
	return kubernetes.NewForConfigOrDie(c)
}

func createNS(ctx context.Context, c kubernetes.Interface, names ...string) error {
	for _, n := range names {
		if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	return nil
}

// world is the bench's set-up and what it expects netd sync to write.
type world struct {
	p      params
	local  *testenv.Env
	remote []*testenv.Env
	// addrs[r*S+i] are the current endpoint addresses of remote r's
	// Service i, rv[r*S+i] its slice's resourceVersion.
	addrs [][]string
	rv    []string
}

func run(p params, began time.Time) error {
	if err := p.validate(); err != nil {
		return err
	}
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(testenv.BinDir(), b)); err != nil {
			return fmt.Errorf("%s not found in %s: run `make testenv`", b, testenv.BinDir())
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root, err := os.MkdirTemp("", "benchsync-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)

	// The apiservers, started in parallel; a service range large enough
	// for S ClusterIPs.
	w := &world{p: p, remote: make([]*testenv.Env, p.clusters)}
	envs := make([]*testenv.Env, p.clusters+1)
	setupStart := time.Now()
	err = parallel(ctx, len(envs), len(envs), func(_ context.Context, i int) error {
		name := "local"
		if i > 0 {
			name = clusterName(i - 1)
		}
		e, err := testenv.New(filepath.Join(root, name), testenv.Options{ServiceCIDR: "10.96.0.0/12"})
		envs[i] = e
		if err != nil {
			return fmt.Errorf("starting apiserver %s: %w", name, err)
		}
		return nil
	})
	defer func() {
		for _, e := range envs {
			if e != nil {
				e.Stop()
			}
		}
	}()
	if err != nil {
		return err
	}
	w.local, w.remote = envs[0], envs[1:]
	apiUp := time.Since(setupStart)
	fillStart := time.Now()
	if err := w.fill(ctx); err != nil {
		return fmt.Errorf("fill: %w", err)
	}
	fill := time.Since(fillStart)
	fmt.Fprintf(os.Stderr, "bench-sync: %d+1 apiservers up in %s, filled in %s (%d remote Services, %d endpoints)\n",
		p.clusters, apiUp.Round(time.Millisecond), fill.Round(time.Millisecond), p.clusters*p.services, p.clusters*p.services*p.endpoints)

	res, err := w.measure(ctx)
	if err != nil {
		return err
	}
	svclink, err := w.baseline(ctx, 1, "bl1")
	if err != nil {
		return fmt.Errorf("svclink baseline: %w", err)
	}
	floor, err := w.baseline(ctx, p.workers, "blp")
	if err != nil {
		return fmt.Errorf("write floor baseline: %w", err)
	}

	R, S, E := p.clusters, p.services, p.endpoints
	fmt.Printf("%-52s %12s\n", "measurement", "value")
	fmt.Printf("%-52s %12d\n", "remote clusters", R)
	fmt.Printf("%-52s %12d\n", "Services per cluster", S)
	fmt.Printf("%-52s %12d\n", "endpoints per remote Service", E)
	fmt.Printf("%-52s %12d\n", "local slices expected", R*S)
	fmt.Printf("%-52s %11.1fs\n", "set-up: apiservers + fill (not measured)", (apiUp + fill).Seconds())
	fmt.Printf("%-52s %10.0fms\n", "converge from empty (netd sync)", ms(res.converge))
	fmt.Printf("%-52s %10.0fms\n", "  of which start to first links round (caches)", ms(res.ready))
	fmt.Printf("%-52s %12.0f\n", "  writes to converge (ok)", res.convergeWrites)
	fmt.Printf("%-52s %12.0f\n", "  failed writes / failed reconciles", res.failed)
	fmt.Printf("%-52s %10.0fms\n", "svclink pass: list all, write sequentially", ms(svclink))
	fmt.Printf("%-52s %10.0fms\n", fmt.Sprintf("write floor: %d parallel writers, nothing else", p.workers), ms(floor))
	fmt.Printf("%-52s %10.1fms\n", fmt.Sprintf("one remote change, p50 of %d", len(res.changes)), ms(res.p50))
	fmt.Printf("%-52s %10.1fms\n", fmt.Sprintf("one remote change, p99 of %d", len(res.changes)), ms(res.p99))
	fmt.Printf("%-52s %10.1fms\n", "one remote change, max", ms(res.max))
	fmt.Printf("%-52s %10.0fms\n", fmt.Sprintf("no-op resync of %d Services until idle", S), ms(res.noopTime))
	fmt.Printf("%-52s %12.0f\n", "writes of the no-op resync", res.noopWrites)
	fmt.Printf("%-52s %10.0fMB\n", "RSS peak from controller start (VmHWM)", res.peakMB)
	fmt.Printf("%-52s %10.0fMB\n", "RSS at the end (VmRSS)", res.rssMB)
	fmt.Printf("%-52s %10.0fMB\n", "Go heap live after GC at the end", res.heapMB)
	fmt.Printf("%-52s %11.1fs\n", "wall time of the bench", time.Since(began).Seconds())
	fmt.Printf("ratios (same run): converge/svclink_pass=%.2f converge/write_floor=%.2f change_p99/converge=%.4f\n",
		float64(res.converge)/float64(svclink), float64(res.converge)/float64(floor), float64(res.p99)/float64(res.converge))
	fmt.Printf("sync bench: clusters=%d services=%d endpoints=%d converge=%dms change_p50=%dms change_p99=%dms noop_writes=%d rss=%.0fMB\n",
		R, S, E, res.converge.Milliseconds(), res.p50.Milliseconds(), res.p99.Milliseconds(), int64(math.Round(res.noopWrites)), res.peakMB)
	return nil
}

// fill writes the world: every remote's Services and slices, the local
// Services, the reader identities, the Secrets and the ClusterLinks.
func (w *world) fill(ctx context.Context) error {
	R, S, E := w.p.clusters, w.p.services, w.p.endpoints
	w.addrs = make([][]string, R*S)
	w.rv = make([]string, R*S)
	if _, err := w.local.InstallCRDs(ctx, testenv.CRDDir()); err != nil {
		return fmt.Errorf("local CRDs: %w", err)
	}
	return parallel(ctx, R+1, R+1, func(ctx context.Context, k int) error {
		if k == R {
			lc := fastClient(w.local.Config)
			if err := createNS(ctx, lc, benchNS, linkNS); err != nil {
				return err
			}
			return parallel(ctx, S, fillWorkers, func(ctx context.Context, i int) error {
				_, err := lc.CoreV1().Services(benchNS).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: serviceName(i)},
					Spec: corev1.ServiceSpec{Ports: httpPort}}, metav1.CreateOptions{})
				return err
			})
		}
		r, env := k, w.remote[k]
		rc := fastClient(env.Config)
		if err := createNS(ctx, rc, benchNS); err != nil {
			return err
		}
		err := parallel(ctx, S, fillWorkers, func(ctx context.Context, i int) error {
			if _, err := rc.CoreV1().Services(benchNS).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: serviceName(i)},
				Spec: corev1.ServiceSpec{Ports: httpPort, Selector: map[string]string{"app": serviceName(i)}}}, metav1.CreateOptions{}); err != nil {
				return err
			}
			addrs := make([]string, E)
			for j := range addrs {
				addrs[j] = podAddr(r, i*E+j)
			}
			s, err := rc.DiscoveryV1().EndpointSlices(benchNS).Create(ctx, remoteSlice(i, addrs, ""), metav1.CreateOptions{})
			if err != nil {
				return err
			}
			w.addrs[r*S+i], w.rv[r*S+i] = addrs, s.ResourceVersion
			return nil
		})
		if err != nil {
			return fmt.Errorf("%s: %w", clusterName(r), err)
		}
		// The credentials netd kubeconfig hands out: a read-only
		// ServiceAccount and a token, as a kubeconfig in a local Secret.
		cred, err := remotecfg.Ensure(ctx, &remotecfg.Config{Namespace: linkNS, ServiceAccount: "kubelink-remote-reader", TokenDuration: 2 * time.Hour},
			rc, env.Config, io.Discard)
		if err != nil {
			return fmt.Errorf("%s: reader identity: %w", clusterName(r), err)
		}
		lc := fastClient(w.local.Config)
		if err := createNS(ctx, lc, linkNS); err != nil {
			return err
		}
		name := clusterName(r)
		if _, err := lc.CoreV1().Secrets(linkNS).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: linkNS, Name: name + "-kubeconfig"},
			Data: map[string][]byte{"kubeconfig": remotecfg.Kubeconfig(name, cred)}}, metav1.CreateOptions{}); err != nil {
			return err
		}
		cl := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "svclink.cloudpilot.ai/v1alpha1", "kind": "ClusterLink",
			"metadata": map[string]any{"namespace": linkNS, "name": name},
			"spec":     map[string]any{"kubeconfigSecretRef": map[string]any{"name": name + "-kubeconfig"}}}}
		_, err = w.local.Dynamic().Resource(controller.ClusterLinks).Namespace(linkNS).Create(ctx, cl, metav1.CreateOptions{})
		return err
	})
}

// entry is how the observer writes one endpoint of a local slice: ports,
// address, readiness; expected says the same of a remote endpoint.
func entry(ports, addr string, ready bool) string {
	r := "ready"
	if !ready {
		r = "notready"
	}
	return ports + " " + addr + "/" + r
}

const wantPorts = "http/TCP/8080"

func expected(addrs []string) string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = entry(wantPorts, a, true)
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// observer follows our local slices and timestamps when they match.
type observer struct {
	mu       sync.Mutex
	want     map[string]string            // key (service|cluster) → expected
	slices   map[string]map[string]string // key → slice name → its entries
	matched  map[string]bool
	nmatched int

	convergedAt time.Time
	converged   chan struct{}
	pending     *change
}

type change struct {
	key  string
	at   time.Time
	done chan struct{}
}

func key(service, cluster string) string { return service + "|" + cluster }

// trim keeps what the observer reads (its store holds R×S slices in the
// bench's own RSS).
func trim(obj any) (any, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return obj, nil
	}
	t := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name, ResourceVersion: s.ResourceVersion,
		Labels: map[string]string{discoveryv1.LabelServiceName: s.Labels[discoveryv1.LabelServiceName], synced.LabelSourceCluster: s.Labels[synced.LabelSourceCluster]}},
		Ports: s.Ports}
	for _, e := range s.Endpoints {
		t.Endpoints = append(t.Endpoints, discoveryv1.Endpoint{Addresses: e.Addresses, Conditions: discoveryv1.EndpointConditions{Ready: e.Conditions.Ready}})
	}
	return t, nil
}

func (o *observer) handle(obj any, deleted bool) {
	now := time.Now()
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj, deleted = d.Obj, true
	}
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return
	}
	var ports []string
	for _, p := range s.Ports {
		n, proto, port := "", "", int32(0)
		if p.Name != nil {
			n = *p.Name
		}
		if p.Protocol != nil {
			proto = string(*p.Protocol)
		}
		if p.Port != nil {
			port = *p.Port
		}
		ports = append(ports, fmt.Sprintf("%s/%s/%d", n, proto, port))
	}
	sort.Strings(ports)
	var entries []string
	for _, e := range s.Endpoints {
		for _, a := range e.Addresses {
			entries = append(entries, entry(strings.Join(ports, ","), a, e.Conditions.Ready == nil || *e.Conditions.Ready))
		}
	}
	k := key(s.Labels[discoveryv1.LabelServiceName], s.Labels[synced.LabelSourceCluster])
	o.mu.Lock()
	defer o.mu.Unlock()
	m := o.slices[k]
	if m == nil {
		m = map[string]string{}
		o.slices[k] = m
	}
	if deleted {
		delete(m, s.Name)
	} else {
		sort.Strings(entries)
		m[s.Name] = strings.Join(entries, "\n")
	}
	o.recheck(k, now)
}

// recheck compares key k with what is expected (o.mu held).
func (o *observer) recheck(k string, now time.Time) {
	var all []string
	for _, e := range o.slices[k] {
		if e != "" {
			all = append(all, strings.Split(e, "\n")...)
		}
	}
	sort.Strings(all)
	want, known := o.want[k]
	ok := known && strings.Join(all, "\n") == want
	if ok != o.matched[k] {
		o.matched[k] = ok
		if ok {
			o.nmatched++
		} else {
			o.nmatched--
		}
	}
	if o.nmatched == len(o.want) && o.convergedAt.IsZero() {
		o.convergedAt = now
		close(o.converged)
	}
	if p := o.pending; ok && p != nil && p.key == k {
		p.at = now
		close(p.done)
		o.pending = nil
	}
}

// expect sets what key k must show next and returns the change to wait for.
func (o *observer) expect(k, want string) *change {
	o.mu.Lock()
	defer o.mu.Unlock()
	c := &change{key: k, done: make(chan struct{})}
	o.pending = c
	o.want[k] = want
	o.recheck(k, time.Now())
	return c
}

func (o *observer) progress() (int, int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.nmatched, len(o.want)
}

type results struct {
	converge, ready        time.Duration
	convergeWrites, failed float64
	changes                []time.Duration
	p50, p99, max          time.Duration
	noopTime               time.Duration
	noopWrites             float64
	peakMB, rssMB, heapMB  float64
}

func (w *world) measure(ctx context.Context) (*results, error) {
	R, S := w.p.clusters, w.p.services
	res := &results{}
	// The observer: an informer on our slices, started (and synced, empty)
	// before netd sync.
	obs := &observer{want: map[string]string{}, slices: map[string]map[string]string{}, matched: map[string]bool{}, converged: make(chan struct{})}
	for r := 0; r < R; r++ {
		for i := 0; i < S; i++ {
			obs.want[key(serviceName(i), clusterName(r))] = expected(w.addrs[r*S+i])
		}
	}
	oc := rest.CopyConfig(w.local.Config)
	oc.QPS, oc.Burst = -1, 0
	of := informers.NewSharedInformerFactoryWithOptions(kubernetes.NewForConfigOrDie(oc), 0, informers.WithNamespace(benchNS), informers.WithTransform(trim),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = labels.SelectorFromSet(labels.Set{discoveryv1.LabelManagedBy: synced.ManagedBy}).String()
		}))
	inf := of.Discovery().V1().EndpointSlices().Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { obs.handle(o, false) },
		UpdateFunc: func(_, o any) { obs.handle(o, false) },
		DeleteFunc: func(o any) { obs.handle(o, true) },
	})
	octx, ostop := context.WithCancel(ctx)
	of.Start(octx.Done())
	defer func() {
		ostop()
		of.Shutdown() // returns once the informer stopped
	}()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return nil, fmt.Errorf("observer did not sync")
	}
	remotes := make([]kubernetes.Interface, R)
	for r := range remotes {
		remotes[r] = fastClient(w.remote[r].Config)
	}

	// The fill's garbage goes, then the peak RSS starts from here.
	runtime.GC()
	debug.FreeOSMemory()
	hwmReset := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil

	cfg := &controller.Config{Namespace: linkNS, SyncInterval: time.Hour, APIGrace: 30 * time.Second, Probe: time.Second,
		ClusterLinkMode: "pod", KubeLinkMode: "service", Workers: w.p.workers, QPS: w.p.qps, Burst: w.p.burst, Identity: "bench-sync"}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// netd sync's own local client, as controller.Run makes it.
	lcfg := rest.CopyConfig(w.local.Config)
	lcfg.QPS, lcfg.Burst = float32(cfg.QPS), cfg.Burst
	clients, err := watch.NewClients(lcfg, "kubelink-netd-sync")
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if w.p.verbose {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if w.p.cpuprofile != "" {
		f, err := os.Create(w.p.cpuprofile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}

	reg := prometheus.NewRegistry()
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	done := make(chan error, 1)
	start := time.Now()
	ctrl := controller.New(cfg, clients, reg, log)
	var readyAt atomic.Int64
	go func() { done <- ctrl.Run(runCtx, func() { readyAt.CompareAndSwap(0, time.Now().UnixNano()) }) }()
	stopped := false
	defer func() {
		if !stopped {
			stopRun()
			<-done
		}
	}()

	// Converge.
	tick := time.NewTicker(5 * time.Second)
	deadline := time.After(w.p.timeout)
wait:
	for {
		select {
		case <-obs.converged:
			break wait
		case err := <-done:
			stopped = true
			return nil, fmt.Errorf("netd sync stopped while converging: %v", err)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline:
			n, total := obs.progress()
			return nil, fmt.Errorf("not converged after %s: %d of %d slices as expected", w.p.timeout, n, total)
		case <-tick.C:
			n, total := obs.progress()
			fmt.Fprintf(os.Stderr, "bench-sync: converging: %d of %d slices after %s\n", n, total, time.Since(start).Round(time.Second))
		}
	}
	tick.Stop()
	obs.mu.Lock()
	res.converge = obs.convergedAt.Sub(start)
	if r := readyAt.Load(); r != 0 {
		res.ready = time.Unix(0, r).Sub(start)
	}
	if w.p.verbose {
		fmt.Fprintf(os.Stderr, "bench-sync: netd sync started %s, first links round done %s, converged %s\n", start.UTC().Format(time.StampMicro),
			time.Unix(0, readyAt.Load()).UTC().Format(time.StampMicro), obs.convergedAt.UTC().Format(time.StampMicro))
	}
	obs.mu.Unlock()
	if err := waitIdle(ctx, ctrl, 300*time.Millisecond); err != nil {
		return nil, err
	}
	res.convergeWrites = ctrl.Writes()

	// Changes, one at a time.
	rnd := rand.New(rand.NewSource(1))
	for k := 0; k < w.p.changes; k++ {
		r, i := rnd.Intn(R), rnd.Intn(S)
		idx := r*S + i
		addrs := append([]string(nil), w.addrs[idx]...)
		addrs[rnd.Intn(len(addrs))] = changedAddr(k)
		c := obs.expect(key(serviceName(i), clusterName(r)), expected(addrs))
		s, err := remotes[r].DiscoveryV1().EndpointSlices(benchNS).Update(ctx, remoteSlice(i, addrs, w.rv[idx]), metav1.UpdateOptions{})
		sent := time.Now()
		if err != nil {
			return nil, fmt.Errorf("change %d: %w", k, err)
		}
		w.addrs[idx], w.rv[idx] = addrs, s.ResourceVersion
		select {
		case <-c.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(w.p.timeout):
			return nil, fmt.Errorf("change %d (%s of %s) did not arrive within %s", k, serviceName(i), clusterName(r), w.p.timeout)
		}
		obs.mu.Lock()
		d := c.at.Sub(sent)
		obs.mu.Unlock()
		// The watch event may overtake the Update's response.
		res.changes = append(res.changes, max(d, 0))
		time.Sleep(w.p.pace)
	}
	if len(res.changes) > 0 {
		sorted := append([]time.Duration(nil), res.changes...)
		sort.Slice(sorted, func(a, b int) bool { return sorted[a] < sorted[b] })
		rank := func(q float64) time.Duration { return sorted[int(math.Ceil(q*float64(len(sorted))))-1] }
		res.p50, res.p99, res.max = rank(0.50), rank(0.99), sorted[len(sorted)-1]
	}

	// A no-op resync: everything queued again, nothing to write. Link
	// rounds (every probe interval) run meanwhile and write nothing either.
	if err := waitIdle(ctx, ctrl, 500*time.Millisecond); err != nil {
		return nil, err
	}
	before := ctrl.Writes()
	t0 := time.Now()
	ctrl.Resync()
	for !ctrl.Idle() {
		if time.Since(t0) > time.Minute {
			return nil, errors.New("netd sync did not become idle within a minute of the resync")
		}
		time.Sleep(time.Millisecond)
	}
	res.noopTime = time.Since(t0)
	if err := waitIdle(ctx, ctrl, 500*time.Millisecond); err != nil {
		return nil, err
	}
	time.Sleep(2 * cfg.Probe)
	if err := waitIdle(ctx, ctrl, 300*time.Millisecond); err != nil {
		return nil, err
	}
	res.noopWrites = ctrl.Writes() - before
	pprof.StopCPUProfile()
	if n, total := obs.progress(); n != total {
		return nil, fmt.Errorf("after the no-op resync only %d of %d slices are as expected", n, total)
	}
	res.failed = failures(reg)

	m := procmem.Self()
	res.peakMB, res.rssMB = m.Peak, m.RSS
	if !hwmReset {
		fmt.Fprintln(os.Stderr, "bench-sync: could not reset VmHWM; the peak includes the fill")
	}
	runtime.GC()
	var msz runtime.MemStats
	runtime.ReadMemStats(&msz)
	res.heapMB = float64(msz.HeapAlloc) / (1 << 20)
	if w.p.memprofile != "" {
		f, err := os.Create(w.p.memprofile)
		if err != nil {
			return nil, err
		}
		err = pprof.WriteHeapProfile(f)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	stopRun()
	stopped = true
	if err := <-done; err != nil {
		return nil, fmt.Errorf("netd sync: %w", err)
	}
	return res, nil
}

// waitIdle waits until netd sync's queue is empty and nothing is in
// progress for stable in a row.
func waitIdle(ctx context.Context, c *controller.Controller, stable time.Duration) error {
	deadline := time.Now().Add(time.Minute)
	var since time.Time
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		now := time.Now()
		if !c.Idle() {
			since = time.Time{}
		} else if since.IsZero() {
			since = now
		} else if now.Sub(since) >= stable {
			return nil
		}
		if now.After(deadline) {
			return errors.New("netd sync did not become idle within a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// failures sums netd sync's failed writes and failed reconciles.
func failures(reg *prometheus.Registry) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return -1
	}
	var n float64
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "netd_sync_errors_total":
				n += m.GetCounter().GetValue()
			case "netd_sync_writes_total":
				if label(m, "result") == "error" {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// baseline writes the R×S slices without netd sync: it lists every remote
// cluster's Services and EndpointSlices and the local Services (as svclink
// does each period), then creates one slice per remote Service and cluster
// with writers goroutines. Names start with prefix; the managed-by value is
// the baseline's own.
func (w *world) baseline(ctx context.Context, writers int, prefix string) (time.Duration, error) {
	lc := fastClient(w.local.Config)
	remotes := make([]kubernetes.Interface, len(w.remote))
	for r := range remotes {
		remotes[r] = fastClient(w.remote[r].Config)
	}
	// A warm connection to every apiserver, as netd sync had.
	for _, c := range append([]kubernetes.Interface{lc}, remotes...) {
		if _, err := c.Discovery().ServerVersion(); err != nil {
			return 0, err
		}
	}
	start := time.Now()
	local, err := lc.CoreV1().Services(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, err
	}
	uids := map[string]*corev1.Service{}
	for i := range local.Items {
		s := &local.Items[i]
		uids[s.Namespace+"/"+s.Name] = s
	}
	var todo []*discoveryv1.EndpointSlice
	for r, rc := range remotes {
		svcs, err := rc.CoreV1().Services(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
		if err != nil {
			return 0, err
		}
		sl, err := rc.DiscoveryV1().EndpointSlices(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
		if err != nil {
			return 0, err
		}
		bySvc := map[string][]*discoveryv1.EndpointSlice{}
		for i := range sl.Items {
			s := &sl.Items[i]
			k := s.Namespace + "/" + s.Labels[discoveryv1.LabelServiceName]
			bySvc[k] = append(bySvc[k], s)
		}
		for _, rs := range svcs.Items {
			if rs.Namespace == "kube-system" || rs.Name == "kubernetes" {
				continue
			}
			ls := uids[rs.Namespace+"/"+rs.Name]
			if ls == nil {
				continue
			}
			out := &discoveryv1.EndpointSlice{
				ObjectMeta: metav1.ObjectMeta{Namespace: ls.Namespace, Name: prefix + "-" + ls.Name + "-" + clusterName(r),
					Labels: map[string]string{discoveryv1.LabelServiceName: ls.Name, discoveryv1.LabelManagedBy: baselineManager,
						synced.LabelSourceCluster: clusterName(r)},
					OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: ls.Name, UID: ls.UID, Controller: ptr(true)}}},
				AddressType: discoveryv1.AddressTypeIPv4,
			}
			for _, s := range bySvc[rs.Namespace+"/"+rs.Name] {
				out.Ports = s.Ports
				for _, e := range s.Endpoints {
					out.Endpoints = append(out.Endpoints, discoveryv1.Endpoint{Addresses: e.Addresses, Conditions: e.Conditions})
				}
			}
			todo = append(todo, out)
		}
	}
	if len(todo) != len(w.remote)*w.p.services {
		return 0, fmt.Errorf("%d slices to write, want %d", len(todo), len(w.remote)*w.p.services)
	}
	err = parallel(ctx, len(todo), writers, func(ctx context.Context, i int) error {
		_, err := lc.DiscoveryV1().EndpointSlices(todo[i].Namespace).Create(ctx, todo[i], metav1.CreateOptions{})
		return err
	})
	return time.Since(start), err
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
