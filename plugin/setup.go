package kubelink

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	clog "github.com/coredns/coredns/plugin/pkg/log"
	"github.com/miekg/dns"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelink/kubelink/api/mesh"
	"github.com/kubelink/kubelink/api/synced"
	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/api/watch"
)

const pluginName = "kubelink"

var log = clog.NewWithPlugin(pluginName)

func init() { plugin.Register(pluginName, setup) }

// config is the parsed plugin block.
type config struct {
	kubeconfig   string
	kubeContext  string
	manifests    string
	opts         mesh.Options
	ttl          uint32
	upstreamPort string
	// namespace holds netd sync's service mirrors (empty with manifests:
	// any namespace).
	namespace string
	// propagation is the default DNS mode of links without spec.dns.mode.
	propagation string
	// clusterset is the lower-case FQDN of the clusterset zone (KEP-1645)
	// the plugin serves; empty: none.
	clusterset string
}

func setup(c *caddy.Controller) error {
	k, cfg, err := parse(c)
	if err != nil {
		return plugin.Error(pluginName, err)
	}
	src, err := cfg.source()
	if err != nil {
		return plugin.Error(pluginName, err)
	}
	ctl := newController(k, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	c.OnStartup(func() error {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := src.Run(ctx, ctl.update); err != nil && !errors.Is(err, context.Canceled) {
				log.Errorf("source stopped: %v", err)
			}
		}()
		return nil
	})
	c.OnShutdown(func() error {
		cancel()
		wg.Wait()
		ctl.pool.stopAll()
		return nil
	})
	dnsserver.GetConfig(c).AddPlugin(func(next plugin.Handler) plugin.Handler {
		k.Next = next
		return k
	})
	return nil
}

func (cfg *config) source() (watch.Source, error) {
	if cfg.manifests != "" {
		return &watch.Dir{Path: cfg.manifests, OnError: func(err error) { log.Warningf("manifests: %v", err) }}, nil
	}
	rc, err := watch.LocalConfig(cfg.kubeconfig, cfg.kubeContext)
	if err != nil {
		return nil, err
	}
	clients, err := watch.NewClients(rc, "coredns-kubelink")
	if err != nil {
		return nil, err
	}
	if cfg.namespace == "" {
		cfg.namespace = podNamespace()
	}
	return &kubeSource{clients: clients, namespace: cfg.namespace, clusterset: cfg.clusterset != ""}, nil
}

// serviceAccountNamespace is where Kubernetes mounts the pod's namespace.
var serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// podNamespace is the namespace the plugin runs in: $POD_NAMESPACE, else
// the service account's, else "default".
func podNamespace() string {
	if ns := strings.TrimSpace(os.Getenv("POD_NAMESPACE")); ns != "" {
		return ns
	}
	if b, err := os.ReadFile(serviceAccountNamespace); err == nil {
		if ns := strings.TrimSpace(string(b)); ns != "" {
			return ns
		}
	}
	return "default"
}

// kubeSource is the API source: KubeLinks, the MeshServices (the local
// cluster's exported Services) and netd sync's service mirrors in
// namespace (a label-selected informer of that namespace only); with
// clusterset also the ServiceImports and the MCS EndpointSlices of every
// namespace (label-selected). Kinds it may not read, or that do not exist,
// are left out with a warning rather than holding the plugin up forever:
// an informer without them never syncs.
type kubeSource struct {
	clients    *watch.Clients
	namespace  string
	clusterset bool
}

func (s *kubeSource) Run(ctx context.Context, update func(watch.Snapshot)) error {
	needs := watch.Needs{KubeLinks: true}
	one := metav1.ListOptions{Limit: 1}
	if s.readable("MeshServices (the local cluster's own Services stay out of the global names)", func() error {
		_, err := s.clients.Dynamic.Resource(watch.MeshServices).List(ctx, one)
		return err
	}) {
		needs.MeshServices = true
	}
	sel := metav1.ListOptions{Limit: 1, LabelSelector: synced.MirrorSelector}
	if s.readable("endpointslices in namespace "+s.namespace+" (netd sync's service mirrors: kubernetes mode and global names stay empty)", func() error {
		_, err := s.clients.Core.DiscoveryV1().EndpointSlices(s.namespace).List(ctx, sel)
		return err
	}) {
		needs.SelectedSlices = watch.Selection{Namespace: s.namespace, Selector: synced.MirrorSelector}
	}
	if s.clusterset {
		if s.readable("ServiceImports (the clusterset zone stays empty)", func() error {
			_, err := s.clients.Dynamic.Resource(watch.ServiceImports).List(ctx, one)
			return err
		}) {
			needs.ServiceImports = true
		}
		mcs := metav1.ListOptions{Limit: 1, LabelSelector: watch.MCSSliceSelector}
		if s.readable("endpointslices of all namespaces (the MCS slices: headless clusterset names stay empty)", func() error {
			_, err := s.clients.Core.DiscoveryV1().EndpointSlices("").List(ctx, mcs)
			return err
		}) {
			needs.MCSSlices = true
		}
	}
	k := &watch.Kube{Clients: s.clients, Needs: needs, OnError: func(err error) { log.Warningf("%v", err) }}
	return k.Run(ctx, update)
}

// readable probes a list; only a refusal or a missing kind says no (other
// errors are the informer's to retry).
func (s *kubeSource) readable(what string, list func() error) bool {
	err := list()
	if apierrors.IsForbidden(err) || apierrors.IsNotFound(err) {
		log.Warningf("not reading %s: %v (grant get, list, watch and restart)", what, err)
		return false
	}
	return true
}

// controller turns snapshots of the objects into indexes.
type controller struct {
	k      *Kubelink
	cfg    *config
	pool   *upstreamPool
	mu     sync.Mutex // serialises rebuilds
	serial uint32
}

func newController(k *Kubelink, cfg *config) *controller {
	return &controller{k: k, cfg: cfg, pool: newUpstreamPool()}
}

// update rebuilds and swaps the index; queries in flight keep the old one.
func (ctl *controller) update(s watch.Snapshot) {
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	set := mesh.Build(s.KubeLinks, ctl.cfg.opts)
	ctl.serial = max(ctl.serial+1, uint32(time.Now().Unix())) // #nosec G115 -- SOA serials wrap by design
	mirrors := collectMirrors(ctl.cfg.namespace, s.EndpointSlices)
	in := buildInput{ttl: ctl.cfg.ttl, port: ctl.cfg.upstreamPort, serial: ctl.serial, ups: ctl.pool,
		propagation: ctl.cfg.propagation, mirrors: mirrors, local: localExports(s.MeshServices)}
	if ctl.cfg.clusterset != "" {
		in.clusterset = &clustersetInput{zone: ctl.cfg.clusterset, imports: s.ServiceImports, slices: s.MCSSlices,
			local: localClusterNames(set, ctl.cfg.opts.ClusterName)}
	}
	ctl.pool.begin()
	idx := buildIndex(set, in)
	ctl.k.index.Store(idx)
	ctl.pool.commit()
	linkCount.Reset()
	for _, l := range set.Sorted() {
		state, _ := l.EffectiveState()
		linkCount.WithLabelValues(l.Mesh, state).Inc()
	}
	for _, l := range set.Sorted() {
		if !l.Verdict.OK() {
			log.Warningf("link %s not served: %s: %s", l.Name, l.Verdict.State, l.Verdict.Message)
		}
	}
	n := 0
	for _, svcs := range mirrors {
		n += len(svcs)
	}
	if idx.clusterset == nil {
		log.Infof("serving %d meshes from %d links, %d mirrored services", len(idx.zones), len(set.Links), n)
		return
	}
	log.Infof("serving %d meshes from %d links, %d mirrored services, %s from %d ServiceImports", len(idx.zones), len(set.Links), n,
		idx.clusterset.zone.name, len(s.ServiceImports))
}

// localClusterNames are the names the local cluster's MCS slices carry as
// source cluster (netd sync's --cluster-name): the LocalLinks' object
// names and the cluster-name option.
func localClusterNames(set *mesh.Set, clusterName string) map[string]bool {
	out := map[string]bool{}
	if clusterName != "" {
		out[clusterName] = true
	}
	for name, l := range set.Links {
		if l.Local {
			out[name] = true
		}
	}
	return out
}

// parse reads the plugin block; only one kubelink block per server.
func parse(c *caddy.Controller) (*Kubelink, *config, error) {
	k := &Kubelink{}
	cfg := &config{ttl: 5, upstreamPort: "53"}
	i := 0
	for c.Next() {
		if i > 0 {
			return nil, nil, plugin.ErrOnce
		}
		i++
		if args := c.RemainingArgs(); len(args) > 0 {
			return nil, nil, c.ArgErr()
		}
		for c.NextBlock() {
			if err := parseOption(c, k, cfg); err != nil {
				return nil, nil, err
			}
		}
	}
	if cfg.manifests != "" && cfg.kubeconfig != "" {
		return nil, nil, c.Err("manifests and kubeconfig exclude each other")
	}
	return k, cfg, nil
}

func parseOption(c *caddy.Controller, k *Kubelink, cfg *config) error {
	opt := c.Val()
	args := c.RemainingArgs()
	one := func() (string, error) {
		if len(args) != 1 {
			return "", c.ArgErr()
		}
		return args[0], nil
	}
	var err error
	switch opt {
	case "kubeconfig":
		if len(args) < 1 || len(args) > 2 {
			return c.ArgErr()
		}
		cfg.kubeconfig = args[0]
		if len(args) == 2 {
			cfg.kubeContext = args[1]
		}
	case "manifests":
		cfg.manifests, err = one()
	case "mesh-domain":
		var d string
		if d, err = one(); err == nil {
			if !mesh.IsDNSName(d) {
				return c.Errf("mesh-domain %q is not a DNS name", d)
			}
			cfg.opts.Domain = d
		}
	case "cluster-name":
		var n string
		if n, err = one(); err == nil {
			if !validLabel(n) || !mesh.IsDNSName(n) {
				return c.Errf("cluster-name %q must be a single DNS label", n)
			}
			cfg.opts.ClusterName = n
		}
	case "link-address":
		var s string
		if s, err = one(); err == nil {
			p, perr := mesh.ParseAddressPrefix(s)
			if perr != nil {
				return c.Errf("link-address: %v", perr)
			}
			cfg.opts.LinkAddress = p
		}
	case "service-cidr":
		var s string
		if s, err = one(); err == nil {
			p, perr := mesh.ParseCIDR(s)
			if perr != nil {
				return c.Errf("service-cidr: %v", perr)
			}
			cfg.opts.ServiceCIDR = p
		}
	case "meshdns-service-ip", "local-dns":
		var s string
		if s, err = one(); err == nil {
			a, perr := netip.ParseAddr(s)
			if perr != nil {
				return c.Errf("%s %q is not an IP address", opt, s)
			}
			if opt == "local-dns" {
				cfg.opts.LocalDNS = a
			} else {
				cfg.opts.GlobalDNS = a
			}
		}
	case "cluster-domain":
		var d string
		if d, err = one(); err == nil {
			if !mesh.IsDNSName(d) {
				return c.Errf("cluster-domain %q is not a DNS name", d)
			}
			cfg.opts.ClusterDomain = d
		}
	case "ttl":
		var s string
		if s, err = one(); err == nil {
			t, perr := strconv.Atoi(s)
			if perr != nil || t < 0 || t > 3600 {
				return c.Errf("ttl must be 0..3600 seconds, not %q", s)
			}
			cfg.ttl = uint32(t) // #nosec G115 -- range checked
		}
	case "upstream-port":
		var s string
		if s, err = one(); err == nil {
			p, perr := strconv.Atoi(s)
			if perr != nil || p < 1 || p > 65535 {
				return c.Errf("upstream-port must be 1..65535, not %q", s)
			}
			cfg.upstreamPort = s
		}
	case "namespace":
		var ns string
		if ns, err = one(); err == nil {
			if !isLabel(ns) {
				return c.Errf("namespace %q is not a namespace name", ns)
			}
			cfg.namespace = ns
		}
	case "dns-propagation":
		var m string
		if m, err = one(); err == nil {
			switch m {
			case mesh.DNSPropagationAuto, v1alpha1.DNSModeKubernetes, v1alpha1.DNSModeDNS, mesh.DNSPropagationNone:
				cfg.propagation = m
			default:
				return c.Errf("dns-propagation must be auto, kubernetes, dns or none, not %q", m)
			}
		}
	case "clusterset":
		if len(args) > 1 {
			return c.ArgErr()
		}
		zone := DefaultClustersetZone
		if len(args) == 1 {
			zone = args[0]
		}
		if !mesh.IsDNSName(zone) || strings.Trim(zone, ".") == "" {
			return c.Errf("clusterset %q is not a DNS name", zone)
		}
		cfg.clusterset = dns.Fqdn(strings.ToLower(zone))
	case "fallthrough":
		k.Fall.SetZonesFromArgs(args)
	default:
		return c.Errf("unknown property %q", opt)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", opt, err)
	}
	return nil
}
