package kubelink

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	clog "github.com/coredns/coredns/plugin/pkg/log"

	"github.com/kubelink/kubelink/api/mesh"
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
			if err := src.Run(ctx, func(s watch.Snapshot) { ctl.update(s.KubeLinks) }); err != nil && !errors.Is(err, context.Canceled) {
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
	return &watch.Kube{Clients: clients, Needs: watch.Needs{KubeLinks: true}, OnError: func(err error) { log.Warningf("%v", err) }}, nil
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
func (ctl *controller) update(objs []*v1alpha1.KubeLink) {
	ctl.mu.Lock()
	defer ctl.mu.Unlock()
	set := mesh.Build(objs, ctl.cfg.opts)
	ctl.serial = max(ctl.serial+1, uint32(time.Now().Unix())) // #nosec G115 -- SOA serials wrap by design
	ctl.pool.begin()
	idx := buildIndex(set, ctl.cfg.ttl, ctl.cfg.upstreamPort, ctl.serial, ctl.pool)
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
	log.Infof("serving %d meshes from %d links", len(idx.zones), len(set.Links))
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
