package broker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"time"

	"github.com/kubelink/kubelink/api/mesh"
	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/netd/broker/plan"
	"github.com/kubelink/kubelink/netd/nftable"
	"github.com/kubelink/kubelink/netd/routes"
	"github.com/kubelink/kubelink/netd/tunnel"
	"github.com/kubelink/kubelink/netd/tunnel/bridge"
)

// Dataplane applies the broker's plan (package plan) to the kernel: tunnel
// peers, the device's addresses and routes, and netd's nftables table.
// Every step diffs first, so an unchanged Reconcile writes nothing.
type Dataplane struct {
	cfg         *Config
	tun         tunnel.Tunnel
	routes      *routes.Manager
	table       *nftable.Table
	resolver    *resolver
	routeWrites int
	// APIAccess is what the hello advertises of the local API server
	// (--service-account); the broker refreshes it before a reconcile.
	APIAccess *bridge.HelloAPIAccess
}

// NewDataplane returns the dataplane of a broker configured by cfg around
// an open tunnel device (nil for mode none). cfg must be validated.
func NewDataplane(cfg *Config, tun tunnel.Tunnel) *Dataplane {
	return &Dataplane{
		cfg:      cfg,
		tun:      tun,
		routes:   &routes.Manager{Protocol: routes.Protocol, Device: cfg.IfceName, Table: cfg.RouteTable, RulePriority: cfg.RulePriority},
		table:    &nftable.Table{Name: cfg.IfceName},
		resolver: &resolver{ttl: 30 * time.Second, cache: map[string]resolved{}},
	}
}

// Outcome is what a Reconcile decided, for status.
type Outcome struct {
	Set   *mesh.Set
	Plans []*mesh.ServicePlan
	// LinkErrs are per-link errors (link name → message): the plan's
	// configuration errors, and a tunnel device failure for every peer.
	LinkErrs map[string]string
	// Chains is netd's nftables table as this reconcile wants it; it is
	// applied only when there is a tunnel.
	Chains []nftable.Chain
	// MirrorRejects are the remote MeshService addresses of mirrors that
	// did not become routes, with the reason.
	MirrorRejects []mesh.Rejected
}

// Writes counts the writes sent to the kernel and the tunnel device so far
// (tunnel configurations, address/route/rule changes, nftables
// transactions).
func (d *Dataplane) Writes() int {
	n := d.routeWrites + d.table.Writes()
	if w, ok := d.tun.(interface{ Writes() int }); ok {
		n += w.Writes()
	}
	return n
}

// Close removes the nftables table and the routes and rule (the device,
// with its addresses, goes with the tunnel).
func (d *Dataplane) Close() error {
	_, rerr := d.routes.RemoveAll()
	if rerr != nil {
		rerr = fmt.Errorf("removing routes and rule: %w", rerr)
	}
	if _, err := d.table.Apply(nil); err != nil {
		return errors.Join(rerr, fmt.Errorf("removing nftables table: %w", err))
	}
	return rerr
}

// Reconcile plans links and MeshServices (no MeshService mirrors) and
// brings the kernel to that plan.
func (d *Dataplane) Reconcile(ctx context.Context, links []*v1alpha1.KubeLink, services []*v1alpha1.MeshService, lookup mesh.ServiceLookup) (*Outcome, error) {
	return d.ReconcileObjects(ctx, plan.Objects{Links: links, Services: services, Lookup: lookup})
}

// ReconcileObjects plans the objects, with netd sync's MeshService
// mirrors, and brings the kernel to that plan.
func (d *Dataplane) ReconcileObjects(ctx context.Context, in plan.Objects) (*Outcome, error) {
	return d.apply(ctx, plan.MakeFrom(d.planConfig(ctx), in))
}

// planConfig is the plan's view of the flags. Endpoint hosts resolve
// through the cached resolver bound to this reconcile's context.
func (d *Dataplane) planConfig(ctx context.Context) plan.Config {
	opts, _ := d.cfg.MeshOptions() // validated with the Config
	pc := plan.Config{
		Device:         d.cfg.IfceName,
		Mesh:           opts,
		WireGuard:      d.cfg.Mode == ModeWireGuard,
		NoTunnel:       d.cfg.Mode == ModeNone,
		PodMode:        d.cfg.PodCIDR != "",
		AdvertisedPort: d.cfg.AdvertisedPort,
		AdvertiseDNS:   d.cfg.DNSAdvertisement,
		APIAccess:      d.APIAccess,
		Resolve:        func(host string) (netip.Addr, error) { return d.resolver.resolve(ctx, host) },
		// Mirrors are trusted in the broker's own namespace only, where
		// netd sync writes them.
		MirrorNamespace: d.cfg.Namespace,
	}
	if d.cfg.ServedLinks != "" && d.cfg.ServedLinks != "all" {
		pc.Serves = d.cfg.Serves
	}
	return pc
}

// helloTunnel is a tunnel that introduces us to its peers (the bridge).
type helloTunnel interface {
	SetHello(bridge.Hello)
}

// apply drives the tunnel, the routes and the nftables table to the plan.
// Without a tunnel (mode none) nothing is written.
func (d *Dataplane) apply(ctx context.Context, p *plan.Plan) (*Outcome, error) {
	out := &Outcome{Set: p.Set, Plans: p.Services, LinkErrs: maps.Clone(p.LinkErrs), Chains: p.Chains, MirrorRejects: p.MirrorRejects}
	if d.tun == nil {
		return out, nil
	}
	if h, ok := d.tun.(helloTunnel); ok {
		h.SetHello(p.Hello)
	}
	if err := d.tun.Configure(ctx, p.Peers); err != nil {
		// A device failure is every served link's error.
		for _, peer := range p.Peers {
			out.LinkErrs[peer.Link] = "tunnel device: " + err.Error()
		}
		return out, fmt.Errorf("configuring the tunnel: %w", err)
	}
	ch, err := d.routes.SyncDevice(p.Addresses, p.Routes)
	d.routeWrites += ch.Writes()
	if err != nil {
		return out, fmt.Errorf("addresses and routes: %w", err)
	}
	if _, err := d.table.Apply(p.Chains); err != nil {
		return out, fmt.Errorf("nftables: %w", err)
	}
	return out, nil
}
