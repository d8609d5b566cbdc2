package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"

	"github.com/kubelink/kubelink/api/mesh"
	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/api/watch"
	"github.com/kubelink/kubelink/netd/broker/plan"
	"github.com/kubelink/kubelink/netd/kube"
	"github.com/kubelink/kubelink/netd/leader"
	"github.com/kubelink/kubelink/netd/linkstate"
	"github.com/kubelink/kubelink/netd/metrics"
	"github.com/kubelink/kubelink/netd/runtime"
	"github.com/kubelink/kubelink/netd/tunnel"
	"github.com/kubelink/kubelink/netd/tunnel/wireguard"
	"github.com/kubelink/kubelink/netd/vxlan"
	"github.com/kubelink/kubelink/netd/wgkey"
)

// Run runs the broker until ctx ends or it loses its lease.
func Run(ctx context.Context, cfg *Config, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	proc := runtime.NewProcess()
	o := &observe{proc: proc, m: metrics.New(proc.Registry), loop: runtime.NewLoopMetrics(proc.Registry, "netd", 0.0005)}
	clients, stopServing, err := runtime.StartRole(ctx, proc, cfg.Kubeconfig, cfg.ServerPortHTTP, log)
	if err != nil {
		return err
	}
	// The server ends with Run, also before ctx ends (a lost lease).
	defer stopServing()
	ns := cfg.LeaseNamespace
	if ns == "" {
		ns = kube.Namespace()
	}
	election := runtime.Election{Core: clients.Core, Log: log}
	if cfg.LeaseName != "" {
		election.Lease = leader.Options{Namespace: ns, Name: cfg.LeaseName, Identity: cfg.Identity, Duration: cfg.LeaseDuration, OutageHold: cfg.LeaseOutageHold}
	}
	// Lead returns only after runActive (and with it the cleanup of the
	// device, routes, rule and table) has returned.
	err = election.Lead(ctx, proc, func(actx context.Context) error {
		if cfg.LeaseName != "" {
			log.Info("became the active gateway", "identity", cfg.Identity)
		}
		o.m.Leader.Set(1)
		defer o.m.Leader.Set(0)
		return runActive(actx, cfg, clients, o, log)
	})
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	return nil
}

// observe is the process's readiness and the broker's metrics.
type observe struct {
	proc *runtime.Process
	m    *metrics.Metrics
	loop *runtime.LoopMetrics
}

// broker is the active gateway's state.
type broker struct {
	cfg     *Config
	clients *watch.Clients
	metrics *metrics.Metrics
	log     *slog.Logger
	// cache is the KubeLinks, MeshServices, Services and MeshService
	// mirrors; watcher its KubeLink view.
	cache    *watch.Cache
	watcher  watch.KubeLinkView
	tun      tunnel.Tunnel
	dp       *Dataplane
	tracker  *linkstate.Tracker
	recorder record.EventRecorder
	pubKey   string
	// linkErrs are per-link configuration errors of the last reconcile.
	linkErrs map[string]string
	// written are MeshService statuses written but maybe not yet seen
	// by the informer.
	written map[string]v1alpha1.MeshServiceStatus
	// decap is the VXLAN decapsulating device (--vxlan), else nil.
	decap *vxlan.Gateway
	// learned is what logMirrors last logged.
	learned string
	// apiToken is the API access the hello advertises (--service-account).
	apiToken apiAccessToken
	// inbound are the peers' hellos still to be written into their links.
	inbound inboundHellos
}

func runActive(ctx context.Context, cfg *Config, clients *watch.Clients, o *observe, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b := &broker{
		cfg: cfg, clients: clients, metrics: o.m, log: log,
		tracker: &linkstate.Tracker{Window: 3 * cfg.Keepalive, Bridge: cfg.Mode == ModeBridge},
		written: map[string]v1alpha1.MeshServiceStatus{},
	}
	rec, stop := kube.Recorder(ctx, clients.Core, "kubelink-netd")
	defer stop()
	b.recorder = rec
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		log.Warn("cannot enable IP forwarding", "err", err)
	}
	trigger := runtime.NewTrigger()
	kick := trigger.Kick
	needs := watch.Needs{KubeLinks: true, MeshServices: true, Services: true}
	if b.mirrorsReadable(ctx) {
		// netd sync's MeshService mirrors: only in the broker's own
		// namespace (a namespaced Role suffices; slices elsewhere are
		// never cached).
		needs.SelectedSlices = watch.Selection{Namespace: cfg.Namespace, Selector: plan.MirrorSelector}
	}
	c, stopWatching, err := runtime.Watch(ctx, clients, needs, kick, log)
	if err != nil {
		return err
	}
	// The informers end with runActive (a lost lease ends only it).
	defer stopWatching()
	b.cache, b.watcher = c, c.KubeLinks()
	if err := b.openTunnel(ctx, kick); err != nil {
		return err
	}
	b.dp = NewDataplane(cfg, b.tun)
	if cfg.VXLAN {
		// Created by the reconciles (it may have to wait for the router
		// on this node to give up the VNI and port); removed when the
		// broker stops being the active gateway.
		if b.decap, err = vxlan.NewGateway(netip.MustParseAddr(cfg.VXLANIP), cfg.VXLANVNI, cfg.VXLANPort, log); err != nil {
			return err
		}
		defer func() {
			if err := b.decap.Close(); err != nil {
				log.Warn("cleaning up", "err", err)
			}
		}()
	}
	if b.tun != nil {
		defer func() {
			// Leave nothing behind: the device (and with it its routes and
			// addresses) and the nftables table go away.
			_ = b.tun.Close()
			if err := b.dp.Close(); err != nil {
				log.Warn("cleaning up", "err", err)
			}
		}()
	}
	loop := &runtime.Loop{Trigger: trigger, Period: time.Second, Metrics: o.loop, Log: log,
		Reconcile: b.reconcile, OK: func() { o.proc.SetReady(true) }}
	loop.Run(ctx)
	return nil
}

// mirrorsReadable probes whether the broker may list EndpointSlices in
// its namespace. An informer without that right would never sync and hold
// the whole broker up; without it the broker runs on, without remote
// MeshService addresses, and says what is missing. Other errors are left
// to the informer, which retries.
func (b *broker) mirrorsReadable(ctx context.Context) bool {
	_, err := b.clients.Core.DiscoveryV1().EndpointSlices(b.cfg.Namespace).List(ctx, metav1.ListOptions{LabelSelector: plan.MirrorSelector, Limit: 1})
	if apierrors.IsForbidden(err) {
		b.log.Warn("remote MeshService addresses disabled: the broker may not list endpointslices in its namespace (grant get, list, watch on endpointslices.discovery.k8s.io there and restart)",
			"namespace", b.cfg.Namespace, "err", err)
		return false
	}
	return true
}

func (b *broker) openTunnel(ctx context.Context, kick func()) error {
	switch b.cfg.Mode {
	case ModeNone:
		return nil
	case ModeWireGuard:
		key, err := b.privateKey(ctx)
		if err != nil {
			return err
		}
		b.pubKey = key.Public().String()
		d, err := wireguard.New(wireguard.Options{Name: b.cfg.IfceName, ListenPort: b.cfg.BrokerPort, PrivateKey: key, Keepalive: b.cfg.Keepalive, Verbose: b.cfg.Verbose})
		if err != nil {
			return err
		}
		b.tun = d
		b.log.Info("WireGuard device up", "device", b.cfg.IfceName, "kernel", d.Kernel, "port", b.cfg.BrokerPort, "publicKey", b.pubKey)
		return nil
	case ModeBridge:
		return b.openBridge(ctx, kick)
	}
	return fmt.Errorf("unknown mode %q", b.cfg.Mode)
}

func (b *broker) privateKey(ctx context.Context) (wgkey.Key, error) {
	gen := func() (string, error) {
		k, err := wgkey.Generate()
		return k.String(), err
	}
	if b.cfg.Secret == "" {
		b.log.Warn("no --secret: using a new WireGuard key that changes on every start")
		s, err := gen()
		if err != nil {
			return wgkey.Key{}, err
		}
		return wgkey.Parse(s)
	}
	data, err := kube.SecretData(ctx, b.clients.Core, b.cfg.Secret)
	if err != nil {
		return wgkey.Key{}, err
	}
	s, key, conflict := wireGuardKey(data)
	if conflict != "" {
		b.log.Warn(conflict, "secret", b.cfg.Secret)
	}
	if s == "" {
		// Neither spelling: generate one, stored under the current name.
		if s, err = kube.EnsureSecretKey(ctx, b.clients.Core, b.cfg.Secret, SecretKeyWireGuard, gen); err != nil {
			return wgkey.Key{}, err
		}
		key = SecretKeyWireGuard
	}
	k, err := wgkey.Parse(s)
	if err != nil {
		return k, fmt.Errorf("secret %s key %s: %w", b.cfg.Secret, key, err)
	}
	return k, nil
}

// wireGuardKey picks the WireGuard private key from the secret's data:
// under SecretKeyWireGuard, else under the original kubelink's spelling
// SecretKeyWireGuardSeed; key names the one used (value "": neither). When
// both hold different keys the current name wins and conflict says so.
func wireGuardKey(data map[string][]byte) (value, key, conflict string) {
	cur := strings.TrimSpace(string(data[SecretKeyWireGuard]))
	seed := strings.TrimSpace(string(data[SecretKeyWireGuardSeed]))
	switch {
	case cur != "" && seed != "" && cur != seed:
		return cur, SecretKeyWireGuard, fmt.Sprintf("the secret holds two different WireGuard keys: using %s, ignoring %s (the original kubelink's spelling); remove one",
			SecretKeyWireGuard, SecretKeyWireGuardSeed)
	case cur != "":
		return cur, SecretKeyWireGuard, ""
	case seed != "":
		return seed, SecretKeyWireGuardSeed, ""
	}
	return "", "", ""
}

// reconcile brings device, routes, nftables and status to the level the
// KubeLinks and MeshServices describe.
func (b *broker) reconcile(ctx context.Context) error {
	// A missing token only leaves the hello without API access (retried
	// every apiAccessRetry); it does not fail the reconcile.
	if err := b.refreshAPIAccess(ctx, time.Now()); err != nil {
		b.log.Error("reconcile", "err", err)
	}
	b.applyInbound(ctx)
	out, err := b.dp.ReconcileObjects(ctx, plan.Objects{Links: b.watcher.List(), Services: b.cache.MeshServices().List(),
		Lookup: b.cache.Service, Mirrors: b.cache.SelectedSlices()})
	b.linkErrs = out.LinkErrs
	b.logMirrors(out)
	b.metrics.TableWrites.Set(float64(b.dp.table.Writes()))
	if w, ok := b.tun.(interface{ Writes() int }); ok {
		b.metrics.TunnelWrites.Set(float64(w.Writes()))
	}
	var decapErr error
	if b.decap != nil {
		decapErr = b.decap.Ensure()
	}
	return errors.Join(err, decapErr, b.updateStatus(ctx, out.Set), b.updateServiceStatus(ctx, out.Plans))
}

// logMirrors logs the remote MeshService addresses learned from netd
// sync's mirrors, and those refused, whenever they change.
func (b *broker) logMirrors(out *Outcome) {
	var learned []string
	for _, l := range out.Set.Usable() {
		if len(l.Learned) > 0 && b.cfg.Serves(l.Name) {
			learned = append(learned, fmt.Sprintf("%s=%v", l.Name, l.Learned))
		}
	}
	var rejected []string
	for _, r := range out.MirrorRejects {
		rejected = append(rejected, r.String())
	}
	sum := fmt.Sprint(learned, rejected)
	first := b.learned == ""
	if sum == b.learned || first && len(learned)+len(rejected) == 0 {
		b.learned = sum
		return
	}
	b.learned = sum
	if len(rejected) > 0 {
		b.log.Warn("MeshService mirrors: addresses refused", "refused", rejected)
	}
	b.log.Info("MeshService mirrors: learned addresses", "learned", learned)
}

// updateServiceStatus writes every MeshService status that changed and
// records an event when it does.
func (b *broker) updateServiceStatus(ctx context.Context, plans []*mesh.ServicePlan) error {
	var errs []error
	seen := make(map[string]bool, len(plans))
	for _, p := range plans {
		key := p.Namespace + "/" + p.Name
		seen[key] = true
		cur := b.cache.MeshServices().Get(p.Namespace, p.Name)
		if cur == nil {
			continue
		}
		want := p.Status()
		if reflect.DeepEqual(cur.Status, want) {
			delete(b.written, key)
			continue
		}
		if w, ok := b.written[key]; ok && reflect.DeepEqual(w, want) {
			// Written already; the cache has not caught up yet.
			continue
		}
		if err := kube.PatchServiceStatus(ctx, b.clients.Dynamic, p.Namespace, p.Name, want); err != nil {
			errs = append(errs, err)
			continue
		}
		b.written[key] = want
		typ := corev1.EventTypeNormal
		if want.State != v1alpha1.StateOK {
			typ = corev1.EventTypeWarning
		}
		cur.APIVersion, cur.Kind = v1alpha1.SchemeGroupVersion.String(), "MeshService"
		b.recorder.Eventf(cur, typ, want.State, "MeshService %s: %s", want.State, want.Message)
		b.log.Info("meshservice state", "meshservice", key, "state", want.State, "message", want.Message)
	}
	// Forget what was written for MeshServices that are gone.
	for key := range b.written {
		if !seen[key] {
			delete(b.written, key)
		}
	}
	return errors.Join(errs...)
}

// updateStatus writes every link's status that changed and records events
// on state transitions.
func (b *broker) updateStatus(ctx context.Context, set *mesh.Set) error {
	stats := map[string]tunnel.Stats{}
	if b.tun != nil {
		var err error
		if stats, err = b.tun.Stats(); err != nil {
			return err
		}
	}
	keep := map[string]bool{}
	var samples []metrics.LinkSample
	var errs []error
	for _, l := range set.Sorted() {
		if l.Object == nil || l.Local && !b.cfg.LocalStatus || !l.Local && !b.cfg.Serves(l.Name) {
			continue
		}
		want := v1alpha1.KubeLinkStatus{Gateway: b.cfg.Identity}
		switch {
		case l.Local:
			want.State, want.Message = v1alpha1.StateUp, "active gateway "+b.cfg.Identity
			if !l.Verdict.OK() {
				want.State, want.Message = l.Verdict.State, l.Verdict.Message
			}
			want.PublicKey = b.pubKey
		case !l.Verdict.OK():
			want.State, want.Message = l.Verdict.State, l.Verdict.Message
		case b.linkErrs[l.Name] != "":
			want.State, want.Message = v1alpha1.StateError, b.linkErrs[l.Name]
		case b.tun == nil:
			want.State, want.Message = v1alpha1.StateIdle, "broker mode none: no tunnel"
		case l.GatewayLink != "":
			gs := stats[l.GatewayLink]
			want.State, want.Message = b.tracker.Eval(l.GatewayLink, gs)
			want.Message = "via " + l.GatewayLink + ": " + want.Message
		default:
			keep[l.Name] = true
			s := stats[l.Name]
			want.State, want.Message = b.tracker.Eval(l.Name, s)
			samples = append(samples, metrics.LinkSample{Link: l.Name, State: want.State, LastHandshake: s.LastHandshake, RxBytes: s.RxBytes, TxBytes: s.TxBytes})
		}
		if !l.Local && !keep[l.Name] {
			samples = append(samples, metrics.LinkSample{Link: l.Name, State: want.State})
		}
		if err := b.writeStatus(ctx, l.Name, want); err != nil {
			errs = append(errs, err)
		}
	}
	b.tracker.Forget(keep)
	b.metrics.SetLinks(samples)
	return errors.Join(errs...)
}

func (b *broker) writeStatus(ctx context.Context, name string, want v1alpha1.KubeLinkStatus) error {
	cur := b.watcher.Get(name)
	if cur == nil {
		return nil
	}
	have := cur.Status
	if have.State == want.State && have.Message == want.Message && have.Gateway == want.Gateway && have.PublicKey == want.PublicKey {
		return nil
	}
	want.Conditions = append([]metav1.Condition(nil), have.Conditions...)
	cond := metav1.Condition{Type: "Ready", Status: metav1.ConditionFalse, Reason: want.State, Message: want.Message, ObservedGeneration: cur.Generation}
	if want.State == v1alpha1.StateUp {
		cond.Status = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&want.Conditions, cond)
	if err := kube.PatchStatus(ctx, b.clients.Dynamic, name, want); err != nil {
		return err
	}
	if have.State != want.State {
		typ := corev1.EventTypeNormal
		if want.State != v1alpha1.StateUp && want.State != v1alpha1.StateIdle {
			typ = corev1.EventTypeWarning
		}
		cur.APIVersion, cur.Kind = v1alpha1.SchemeGroupVersion.String(), "KubeLink"
		b.recorder.Eventf(cur, typ, want.State, "link %s: %s", want.State, want.Message)
		b.log.Info("link state", "link", name, "state", want.State, "message", want.Message)
	}
	return nil
}

// resolver caches endpoint host lookups and re-resolves them after ttl.
type resolver struct {
	ttl   time.Duration
	mu    sync.Mutex
	cache map[string]resolved
}

type resolved struct {
	addr    netip.Addr
	expires time.Time
}

func (r *resolver) resolve(ctx context.Context, host string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return a, nil
	}
	r.mu.Lock()
	c, ok := r.cache[host]
	r.mu.Unlock()
	if ok && time.Now().Before(c.expires) {
		return c.addr, nil
	}
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(lctx, "ip4", host)
	if err != nil || len(addrs) == 0 {
		if ok {
			// Keep the last good address while DNS is unavailable.
			return c.addr, nil
		}
		return netip.Addr{}, fmt.Errorf("resolving endpoint host %s: %w", host, err)
	}
	r.mu.Lock()
	r.cache[host] = resolved{addr: addrs[0].Unmap(), expires: time.Now().Add(r.ttl)}
	r.mu.Unlock()
	return addrs[0].Unmap(), nil
}
