package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"

	"github.com/kubelink/kubelink/api/mesh"
	"github.com/kubelink/kubelink/api/watch"
	"github.com/kubelink/kubelink/netd/runtime"
	"github.com/kubelink/kubelink/netd/vxlan"
)

// Run runs the router until ctx ends. Whenever it returns it removes
// everything it created (routes, rule, owned ipip or vxlan device) and
// leaves an empty datafile; only a killed router leaves state behind, which
// the next start finds through the datafile and its protocol number.
func Run(ctx context.Context, cfg *Config, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	nl, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("opening netlink: %w", err)
	}
	defer nl.Close()
	file := &Datafile{Path: cfg.Datafile}
	rec, err := file.Load()
	if err != nil {
		// Routes in the current table are still found by their protocol.
		log.Warn("ignoring the datafile", "err", err)
		rec = Record{}
	}
	if !rec.Empty() {
		log.Info("found the previous run's record", "datafile", cfg.Datafile, "record", rec.String())
	}
	r := &router{cfg: cfg, log: log, kernel: NewKernel(nl, file, rec)}
	if cfg.NodeIP != "" {
		r.nodeIP = netip.MustParseAddr(cfg.NodeIP) // validated
	}
	proc := runtime.NewProcess()
	r.metrics = newMetrics(proc.Registry, r.kernel, file)
	defer r.shutdown()
	// The device first: a kernel without ipip fails at once and clearly.
	if _, err := r.kernel.EnsureDevice(cfg.IPIP, r.nodeIP); err != nil {
		return err
	}
	clients, stopServing, err := runtime.StartRole(ctx, proc, cfg.Kubeconfig, cfg.ServerPortHTTP, log)
	if err != nil {
		return err
	}
	// The server ends with Run, also when it fails before ctx ends.
	defer stopServing()
	trigger := runtime.NewTrigger()
	kick := trigger.Kick
	// The KubeLinks, the broker's Lease and the pods of its namespace
	// (the holder's IPs), so finding the gateway never calls the API.
	c, stopWatching, err := runtime.Watch(ctx, clients, watch.Needs{KubeLinks: true, Lease: watch.Ref{Namespace: cfg.LeaseNamespace, Name: cfg.LeaseName},
		PodNamespace: cfg.LeaseNamespace}, kick, log)
	if err != nil {
		return err
	}
	defer stopWatching()
	r.cache = c
	log.Info("watching", "lease", cfg.LeaseNamespace+"/"+cfg.LeaseName, "table", cfg.Table(), "encapsulation", cfg.Encapsulation(), "resync", cfg.Resync)
	loop := &runtime.Loop{Trigger: trigger, Period: cfg.Resync, Metrics: r.metrics.loop, Log: log,
		Reconcile: func(context.Context) error { return r.reconcile() }, OK: func() { proc.SetReady(true) }}
	loop.Run(ctx)
	return nil
}

// router is the running router's state.
type router struct {
	cfg     *Config
	log     *slog.Logger
	kernel  *Kernel
	metrics *metrics
	cache   *watch.Cache
	nodeIP  netip.Addr

	// lastGW is the gateway the routes lead to, lastHost its node; kept
	// while the lease's holder has no IP for a moment.
	lastGW, lastHost netip.Addr
	// reported is what was logged last, so changes are logged once.
	reported string
	routedTo string
	// rpChecked is the gateway (node) whose reverse path was last checked.
	rpChecked netip.Addr
	conflicts []netip.Prefix
	skipped   []netip.Prefix
}

// where is the gateway as seen from this node.
type where struct {
	// gw is the gateway's IP (the holder pod's), host the IP of its node.
	gw, host netip.Addr
	// local: the gateway is this node itself (node mode here).
	local bool
	// onNode: a pod-mode gateway runs on this node (only found with
	// --vxlan, where it changes the way: this node decapsulates).
	onNode bool
}

// reconcile computes the wanted routes from the KubeLinks and the gateway
// and brings the kernel there.
func (r *router) reconcile() error {
	opts, _ := r.cfg.MeshOptions() // validated
	dsts := Destinations(mesh.Build(r.cache.KubeLinks().List(), opts))
	g := ResolveGateway(r.cache.Lease(), r.cache.Pod)
	st := r.baseState()
	w := where{gw: r.lastGW, host: r.lastHost}
	switch g.State {
	case GatewayKnown:
		w.gw, w.host = g.IP, g.HostIP
	case GatewayNone:
		w.gw, w.host = netip.Addr{}, netip.Addr{}
	case GatewayUnknown:
		// Keep routing to the last gateway; after a restart there is none
		// known, so the routes stay as they are.
		st.HoldRoutes = !w.gw.IsValid()
	}
	var errs []error
	if w.gw.IsValid() {
		var err error
		if w.local, err = r.isLocal(w.gw); err != nil {
			return err
		}
		if !w.local && r.cfg.VXLAN && w.host.IsValid() && w.host != w.gw {
			if w.onNode, err = r.isLocal(w.host); err != nil {
				return err
			}
		}
		if w.onNode {
			// The other nodes' way in; the routes to the pod do not
			// depend on it, so a failure here does not hold them.
			if err := r.ensureDecap(w); err != nil {
				errs = append(errs, err)
			}
		}
		if !w.local {
			nh, err := r.nexthop(w)
			if err != nil {
				// Without a way to the gateway nothing better is known:
				// leave the routes.
				st.HoldRoutes = true
				errs = append(errs, err)
			} else {
				var skipped []netip.Prefix
				st.Routes, skipped = Plan(dsts, nh)
				if !slices.Equal(skipped, r.skipped) && len(skipped) > 0 {
					r.log.Warn("not routing destinations that contain the gateway itself", "gateway", w.gw, "destinations", skipped)
				}
				r.skipped = skipped
			}
		}
	}
	// With a pod-mode gateway on this node, the router's decapsulating
	// device stays. Otherwise the owned vxlan device stays while routes
	// lead through it or are held; without a gateway, or with the gateway
	// on this node in node mode, it goes (the broker here needs the VNI
	// and port for its own).
	if r.cfg.VXLAN {
		switch {
		case w.onNode:
			st.Device = vxlan.DecapDevice
		case w.gw.IsValid() && !w.local:
			st.Device = vxlan.NodeDevice
		case st.HoldRoutes:
			st.Device = r.kernel.RecordedVXLAN()
		}
	}
	r.report(g, w)
	ch, err := r.kernel.Apply(st)
	if err != nil {
		errs = append(errs, err)
	}
	if ch.Any() {
		r.log.Info("routes changed", "gateway", w.gw, "added", ch.Added, "replaced", ch.Replaced, "removed", ch.Removed, "routes", r.kernel.Routes())
	}
	if !slices.Equal(ch.Conflicts, r.conflicts) && len(ch.Conflicts) > 0 {
		r.log.Warn("routes of another protocol hold these destinations; left alone", "destinations", ch.Conflicts)
	}
	r.conflicts = ch.Conflicts
	if !st.HoldRoutes {
		r.lastGW, r.lastHost = w.gw, w.host
	}
	return errors.Join(errs...)
}

// baseState is the table, rule and device the flags ask for, without
// routes.
func (r *router) baseState() State {
	st := State{Table: r.cfg.Table()}
	if st.Table != tableMain {
		st.Rule = &RuleRef{Table: st.Table, Priority: r.cfg.RulePriority}
	}
	if r.cfg.IPIP == IPIPConfigure {
		st.Device = OwnedDevice
	}
	return st
}

func (r *router) isLocal(gw netip.Addr) (bool, error) {
	if gw == r.nodeIP {
		return true, nil
	}
	return r.kernel.IsLocal(gw)
}

// nexthop is the way to the gateway: through the vxlan or ipip device
// (re-ensured, so a device removed or changed behind the router's back
// comes back), or as the kernel routes to it.
//
// With --vxlan the other nodes' VXLAN goes to the gateway's node (its
// host IP), never into a pod-mode gateway's pod: the gateway node's router
// decapsulates, and routes on to the pod as the kernel routes to it. So
// every packet to and from the gateway pod passes its node's network
// namespace, and with it the conntrack of kube-proxy's DNAT there: the
// reply of a Service endpoint on another node to a connection the gateway
// pod forwarded is un-DNATed on the way back, instead of arriving at the
// gateway pod with the endpoint's address as source.
func (r *router) nexthop(w where) (Nexthop, error) {
	if r.cfg.VXLAN {
		if w.onNode {
			return r.kernel.Nexthop(w.gw)
		}
		outer := w.host
		if !outer.IsValid() {
			// Sending to the pod IP instead would bypass the gateway
			// node's conntrack (pod mode): rather hold the routes.
			return Nexthop{}, fmt.Errorf("vxlan: the gateway pod %s has no IPv4 host IP (status.hostIP), the node its VXLAN goes to", w.gw)
		}
		nh, stale, err := r.kernel.EnsureVXLAN(r.nodeIP, outer, r.cfg.VXLANVNI, r.cfg.VXLANPort)
		r.warnStale(stale, w.gw)
		if err == nil && outer != r.rpChecked {
			r.rpChecked = outer
			r.checkReversePath(outer)
		}
		return nh, err
	}
	if r.cfg.IPIP == IPIPNone {
		return r.kernel.Nexthop(w.gw)
	}
	idx, err := r.kernel.EnsureDevice(r.cfg.IPIP, r.nodeIP)
	if err != nil {
		return Nexthop{}, err
	}
	return Nexthop{Gw: w.gw, LinkIndex: idx, OnLink: true}, nil
}

// ensureDecap keeps the decapsulating device of the pod-mode gateway on
// this node (re-ensured, so a device removed or changed behind the
// router's back comes back).
func (r *router) ensureDecap(w where) error {
	stale, err := r.kernel.EnsureDecap(w.host, r.cfg.VXLANVNI, r.cfg.VXLANPort)
	r.warnStale(stale, w.gw)
	if err != nil {
		return err
	}
	if w.host != r.rpChecked {
		r.rpChecked = w.host
		r.checkDecapReversePath()
	}
	return nil
}

func (r *router) warnStale(stale bool, gw netip.Addr) {
	if stale {
		r.log.Warn("removed a broker's leftover vxlan decapsulation device: the gateway is elsewhere, and the router's device needs its VNI and port", "device", vxlan.GatewayDevice, "gateway", gw)
	}
}

// checkDecapReversePath warns when strict reverse-path filtering would
// drop what the decapsulating device takes in: the sources (pods on other
// nodes) are routed back over the node network. The device's own setting
// is 0; the kernel applies the larger of it and "all".
func (r *router) checkDecapReversePath() {
	mode, err := vxlan.RPFilter(vxlan.DecapDevice)
	if err != nil {
		r.log.Warn("cannot read rp_filter", "err", err)
		return
	}
	if mode == 1 {
		r.log.Warn("strict reverse-path filtering (net.ipv4.conf.all.rp_filter=1) drops the packets the other nodes send to the gateway pod over VXLAN: set it to 2 (loose)", "device", vxlan.DecapDevice)
	}
}

// checkReversePath warns when strict reverse-path filtering would drop
// the replies: they come back from the gateway over the node network, while
// the route to their source (a mesh destination) leads through the tunnel.
func (r *router) checkReversePath(gw netip.Addr) {
	rs, err := r.kernel.nl.RouteGet(gw.AsSlice())
	if err != nil || len(rs) == 0 {
		return
	}
	link, err := r.kernel.nl.LinkByIndex(rs[0].LinkIndex)
	if err != nil {
		return
	}
	mode, err := vxlan.RPFilter(link.Attrs().Name)
	if err != nil {
		r.log.Warn("cannot read rp_filter", "err", err)
		return
	}
	if mode == 1 {
		r.log.Warn("strict reverse-path filtering drops the mesh's replies, which arrive over the node network: set net.ipv4.conf.all.rp_filter and net.ipv4.conf."+link.Attrs().Name+".rp_filter to 2 (loose)", "device", link.Attrs().Name)
	}
}

// report logs gateway changes once and exports them.
func (r *router) report(g Gateway, w where) {
	gw, local := w.gw, w.local
	r.metrics.setGateway(g, local)
	key := fmt.Sprintf("%s/%s/%s/%s/%v/%v/%s", g.State, g.Holder, gw, w.host, local, w.onNode, g.Reason)
	if to := fmt.Sprintf("%s/%v", gw, local); to != r.routedTo {
		if r.routedTo != "" {
			r.metrics.changes.Inc()
		}
		r.routedTo = to
	}
	if key == r.reported {
		return
	}
	r.reported = key
	switch {
	case local:
		r.log.Info("the gateway runs on this node: no routes (the broker's device routes serve it)", "holder", g.Holder, "gateway", gw)
	case w.onNode:
		r.log.Info("the gateway pod runs on this node: decapsulating the other nodes' VXLAN here and routing to the pod", "holder", g.Holder, "gateway", gw, "device", vxlan.DecapDevice)
	case g.State == GatewayKnown:
		r.log.Info("gateway", "holder", g.Holder, "gateway", gw, "node", w.host)
	case g.State == GatewayNone:
		r.log.Warn("no gateway: removing the routes", "reason", g.Reason)
	case gw.IsValid():
		r.log.Warn("gateway unknown: keeping the routes to the last one", "holder", g.Holder, "reason", g.Reason, "gateway", gw)
	default:
		r.log.Warn("gateway unknown: leaving the routes as they are", "holder", g.Holder, "reason", g.Reason)
	}
}

// shutdown removes everything the router created and empties the datafile.
func (r *router) shutdown() {
	st := State{Table: r.cfg.Table()}
	ch, err := r.kernel.Apply(st)
	if err != nil {
		r.log.Error("removing the router's routes", "err", err)
		return
	}
	r.log.Info("removed the router's routes, rule and device", "routes", ch.Removed)
}
