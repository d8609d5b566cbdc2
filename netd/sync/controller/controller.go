// Package controller is `netd sync`: it follows the remote clusters named
// by ClusterLinks (svclink's API) and by KubeLinks with spec.apiAccess, and
// writes what they serve into the local cluster — EndpointSlices of the
// same-named local Services (package aggregate), MCS ServiceImports and
// their slices (package mcs), and mirrors of the remote MeshServices
// (package meshsvc) — level-based, writing only what differs.
//
// Two loops share one set of caches. The links loop (runtime.Loop, on a
// change of a link or every probe interval) turns links into remote
// connections, decides every cluster's health and writes link status. The
// service queue (a rate-limited work queue, several workers) reconciles one
// Service at a time — the unit a remote change touches — so a change
// reaches its slice in milliseconds however many Services there are; the
// sync interval re-queues everything.
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/kubelink/kubelink/api/synced"
	"github.com/kubelink/kubelink/api/watch"
	"github.com/kubelink/kubelink/netd/leader"
	"github.com/kubelink/kubelink/netd/runtime"
	"github.com/kubelink/kubelink/netd/sync/aggregate"
	"github.com/kubelink/kubelink/netd/sync/filter"
	"github.com/kubelink/kubelink/netd/sync/remote"
)

// Run runs netd sync until ctx ends: the active replica (the lease holder,
// or the only one) syncs; a standby waits.
func Run(ctx context.Context, cfg *Config, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	proc := runtime.NewProcess()
	clients, stop, err := runtime.StartRole(ctx, proc, cfg.Kubeconfig, cfg.ServerPortHTTP, log)
	if err != nil {
		return err
	}
	defer stop()
	// The writes of a full sync are many small requests: the default
	// client limit (5 QPS) would make converging take minutes.
	rc := rest.CopyConfig(clients.Config)
	rc.QPS, rc.Burst = float32(cfg.QPS), cfg.Burst
	if clients, err = watch.NewClients(rc, "kubelink-netd-sync"); err != nil {
		return err
	}
	election := runtime.Election{Core: clients.Core, Log: log}
	if cfg.LeaseName != "" {
		election.Lease = leader.Options{Namespace: cfg.LeaseNamespace, Name: cfg.LeaseName, Identity: cfg.Identity, Duration: cfg.LeaseDuration, OutageHold: cfg.LeaseOutageHold}
	}
	return election.Lead(ctx, proc, func(ctx context.Context) error {
		c := New(cfg, clients, proc.Registry, log)
		return c.Run(ctx, func() { proc.SetReady(true) })
	})
}

// Controller is one active netd sync.
type Controller struct {
	cfg     *Config
	log     *slog.Logger
	local   *watch.Clients
	metrics *metrics
	now     func() time.Time

	queue    workqueue.TypedRateLimitingInterface[string]
	inflight atomic.Int64
	trigger  *runtime.Trigger

	services, ours, exports, imports, mirrors cache.SharedIndexInformer
	// localSlices are the local cluster's own slices (not ours), for the
	// endpoints of local ServiceExports.
	localSlices             cache.SharedIndexInformer
	clusterLinks, kubeLinks cache.SharedIndexInformer

	recorder record.EventRecorder

	mu       sync.RWMutex
	clusters map[string]*entry
	// started is when this controller began: clusters never reached since
	// are unhealthy once the grace period has passed from here.
	started time.Time
}

// Queue keys: a Service ("svc/<namespace>/<name>") or a cluster's
// MeshService mirrors ("mesh/<cluster>").
const (
	keyService = "svc/"
	keyMesh    = "mesh/"
)

// New builds a controller on the local clients with its metrics in reg;
// Run starts it. cfg must have been validated.
func New(cfg *Config, local *watch.Clients, reg prometheus.Registerer, log *slog.Logger) *Controller {
	return &Controller{
		cfg: cfg, log: log, local: local, metrics: newMetrics(reg, log), now: time.Now,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedMaxOfRateLimiter(
				workqueue.NewTypedItemExponentialFailureRateLimiter[string](50*time.Millisecond, 30*time.Second),
			), workqueue.TypedRateLimitingQueueConfig[string]{Name: "netd-sync"}),
		trigger:  runtime.NewTrigger(),
		clusters: map[string]*entry{},
		started:  time.Now(),
	}
}

// Run starts the local informers, waits for them, then runs the links loop
// and the workers until ctx ends; everything it started has stopped when it
// returns. ready is called after the first links round.
func (c *Controller) Run(ctx context.Context, ready func()) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		c.queue.ShutDown()
		wg.Wait()
		c.stopAll()
	}()
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	defer broadcaster.Shutdown()
	broadcaster.StartRecordingToSink(&eventSink{c.local})
	c.recorder = broadcaster.NewRecorder(eventScheme(), corev1.EventSource{Component: "netd-sync"})

	f := informers.NewSharedInformerFactoryWithOptions(c.local.Core, c.cfg.SyncInterval, informers.WithTransform(remote.StripManagedFields))
	c.services = f.Core().V1().Services().Informer()
	// Only our slices: the local cluster's own slices are none of our
	// business, and there may be many.
	of := informers.NewSharedInformerFactoryWithOptions(c.local.Core, c.cfg.SyncInterval, informers.WithTransform(remote.StripManagedFields),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = labels.SelectorFromSet(labels.Set{discoveryv1.LabelManagedBy: synced.ManagedBy}).String()
		}))
	c.ours = of.Discovery().V1().EndpointSlices().Informer()
	if err := c.ours.AddIndexers(cache.Indexers{
		remote.ByService: remote.ServiceIndex(discoveryv1.LabelServiceName),
		byMCSService:     remote.ServiceIndex(labelMCSService),
		byCluster:        labelIndex(synced.LabelSourceCluster),
		byMirror: func(obj any) ([]string, error) {
			if m, ok := obj.(metav1.Object); ok && m.GetLabels()[synced.LabelServiceName] != "" {
				return []string{m.GetLabels()[synced.LabelServiceNamespace] + "/" + m.GetLabels()[synced.LabelServiceName]}, nil
			}
			return nil, nil
		},
	}); err != nil {
		return fmt.Errorf("indexing our slices: %w", err)
	}
	lf := informers.NewSharedInformerFactoryWithOptions(c.local.Core, c.cfg.SyncInterval, informers.WithTransform(remote.StripManagedFields),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = discoveryv1.LabelManagedBy + "!=" + synced.ManagedBy
		}))
	c.localSlices = lf.Discovery().V1().EndpointSlices().Informer()
	if err := c.localSlices.AddIndexers(cache.Indexers{remote.ByService: remote.ServiceIndex(discoveryv1.LabelServiceName)}); err != nil {
		return fmt.Errorf("indexing local slices: %w", err)
	}
	// A local slice matters only for a locally exported Service.
	exported := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if ns, n, ok := objectKey(obj, discoveryv1.LabelServiceName); ok {
			if _, found, _ := c.exports.GetStore().GetByKey(ns + "/" + n); found {
				c.enqueueService(ns, n)
			}
		}
	}
	_, _ = c.localSlices.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: exported, UpdateFunc: func(old, o any) { exported(old); exported(o) }, DeleteFunc: exported})
	df := dynamicinformer.NewDynamicSharedInformerFactory(c.local.Dynamic, c.cfg.SyncInterval)
	c.clusterLinks = df.ForResource(ClusterLinks).Informer()
	c.kubeLinks = df.ForResource(watch.KubeLinks).Informer()
	c.exports = df.ForResource(remote.ServiceExports).Informer()
	c.imports = df.ForResource(ServiceImports).Informer()
	for _, inf := range []cache.SharedIndexInformer{c.clusterLinks, c.kubeLinks, c.exports, c.imports} {
		_ = inf.SetTransform(remote.StripManagedFields)
	}
	kick := func(any) { c.trigger.Kick() }
	for _, inf := range []cache.SharedIndexInformer{c.clusterLinks, c.kubeLinks} {
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: kick, UpdateFunc: func(_, o any) { kick(o) }, DeleteFunc: kick})
	}
	byKey := func(label string) func(any) {
		return func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if ns, n, ok := objectKey(obj, label); ok {
				c.enqueueService(ns, n)
			}
		}
	}
	for _, h := range []struct {
		inf   cache.SharedIndexInformer
		label string
	}{{c.services, ""}, {c.exports, ""}, {c.imports, ""}, {c.ours, discoveryv1.LabelServiceName}, {c.ours, labelMCSService}} {
		fire := byKey(h.label)
		_, _ = h.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: fire, UpdateFunc: func(old, o any) { fire(old); fire(o) }, DeleteFunc: fire})
	}
	f.Start(ctx.Done())
	of.Start(ctx.Done())
	lf.Start(ctx.Done())
	defer lf.Shutdown()
	df.Start(ctx.Done())
	defer f.Shutdown()
	defer of.Shutdown()
	defer df.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), c.services.HasSynced, c.ours.HasSynced, c.clusterLinks.HasSynced, c.kubeLinks.HasSynced) {
		return fmt.Errorf("local caches did not sync: %w", ctx.Err())
	}
	// ServiceExports and ServiceImports are optional: without the MCS CRDs
	// their informers never sync, and the MCS part waits for them.
	c.log.Info("netd sync running", "namespace", c.cfg.Namespace, "sync-interval", c.cfg.SyncInterval, "api-grace-period", c.cfg.APIGrace,
		"included-namespaces", c.cfg.Included, "create-services", c.cfg.CreateServices, "workers", c.cfg.Workers)

	loop := &runtime.Loop{Trigger: c.trigger, Period: c.cfg.Probe, Metrics: c.metrics.loop, Log: c.log,
		Reconcile: c.reconcileLinks, OK: ready}
	wg.Add(1)
	go func() {
		defer wg.Done()
		loop.Run(ctx)
	}()
	for i := 0; i < c.cfg.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c.work(ctx) {
			}
		}()
	}
	// The sync interval: everything again, as svclink's periodic sync.
	tick := time.NewTicker(c.cfg.SyncInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			c.enqueueAll()
		}
	}
}

// work processes one queue item; false when the queue shut down.
func (c *Controller) work(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	c.inflight.Add(1)
	defer c.inflight.Add(-1)
	start := c.now()
	var err error
	defer func() {
		c.metrics.duration.Observe(c.now().Sub(start).Seconds())
	}()
	switch {
	case strings.HasPrefix(key, keyService):
		ns, name, _ := strings.Cut(strings.TrimPrefix(key, keyService), "/")
		err = c.syncService(ctx, ns, name)
	case strings.HasPrefix(key, keyMesh):
		err = c.syncMeshServices(ctx, strings.TrimPrefix(key, keyMesh))
	}
	if errors.Is(err, errStale) {
		// Our cache had not seen our own write yet: look again shortly
		// (backing off, should a foreign object really hold the name),
		// without counting an error.
		c.queue.AddRateLimited(key)
		return true
	}
	if err != nil {
		c.metrics.errors.Inc()
		if ctx.Err() == nil {
			c.log.Warn("sync", "key", key, "err", err)
		}
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	return true
}

func (c *Controller) enqueueService(namespace, name string) {
	c.queue.Add(keyService + namespace + "/" + name)
}

// enqueueAll queues every Service known locally or in any cluster, and
// every cluster's mirrors.
func (c *Controller) enqueueAll() {
	for _, k := range c.services.GetStore().ListKeys() {
		c.queue.Add(keyService + k)
	}
	for _, k := range c.ours.GetIndexer().ListIndexFuncValues(remote.ByService) {
		c.queue.Add(keyService + k)
	}
	for _, k := range c.ours.GetIndexer().ListIndexFuncValues(byMCSService) {
		c.queue.Add(keyService + k)
	}
	for _, k := range c.ours.GetIndexer().ListIndexFuncValues(byMirror) {
		c.queue.Add(keyService + k)
	}
	for _, k := range c.exports.GetStore().ListKeys() {
		c.queue.Add(keyService + k)
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	for name, e := range c.clusters {
		c.queue.Add(keyMesh + name)
		if e.conn != nil {
			for _, k := range e.conn.ServiceKeys() {
				c.queue.Add(keyService + k)
			}
			for _, k := range e.conn.ExportKeys() {
				c.queue.Add(keyService + k)
			}
		}
	}
}

// enqueueCluster queues what one cluster's change may touch.
func (c *Controller) enqueueCluster(name string) {
	c.queue.Add(keyMesh + name)
	c.enqueueClusterServices(name)
}

// enqueueClusterServices queues the Services of one cluster: those with
// our objects from it and those it has.
func (c *Controller) enqueueClusterServices(name string) {
	// Our slices of the cluster (they may have to go) and its Services.
	objs, _ := c.ours.GetIndexer().ByIndex(byCluster, name)
	for _, o := range objs {
		if ns, n, ok := objectKey(o, discoveryv1.LabelServiceName); ok {
			c.enqueueService(ns, n)
		}
		if ns, n, ok := objectKey(o, labelMCSService); ok {
			c.enqueueService(ns, n)
		}
		if m, ok := o.(metav1.Object); ok && m.GetLabels()[synced.LabelServiceName] != "" {
			c.enqueueService(m.GetLabels()[synced.LabelServiceNamespace], m.GetLabels()[synced.LabelServiceName])
		}
	}
	var conn *remote.Cluster
	c.mu.RLock()
	if e := c.clusters[name]; e != nil {
		conn = e.conn
	}
	c.mu.RUnlock()
	if conn != nil {
		for _, k := range conn.ServiceKeys() {
			c.queue.Add(keyService + k)
		}
		for _, k := range conn.ExportKeys() {
			c.queue.Add(keyService + k)
		}
	}
}

// view is one cluster as a reconcile of a Service sees it.
type view struct {
	name, kind string
	mode       aggregate.AddressMode
	filter     filter.Filter
	// frozen: the cluster's slices stay as they are (a disabled
	// ClusterLink, or a cluster whose view is not complete yet).
	frozen  bool
	healthy bool
	conn    *remote.Cluster
	// cidr is the KubeLink's spec.cidr (KubeLink clusters).
	cidr netip.Prefix
}

// views are the clusters, sorted by name.
func (c *Controller) views() []view {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]view, 0, len(c.clusters))
	for _, e := range c.clusters {
		v := view{name: e.name, kind: e.kind, mode: e.mode, filter: e.filter, healthy: e.healthy, conn: e.conn, cidr: e.cidr}
		v.frozen = e.disabled || e.conn == nil || !e.conn.Health().Synced
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// syncService reconciles the aggregated slices (and the MCS objects) of
// one Service.
func (c *Controller) syncService(ctx context.Context, ns, name string) error {
	svc := c.localService(ns, name)
	views := c.views()
	current := c.ourSlices(remote.ByService, ns, name)
	var clusters []aggregate.Cluster
	var keep []*discoveryv1.EndpointSlice
	var firstRemote *corev1.Service
	for _, v := range views {
		if v.frozen {
			keep = append(keep, gate(bySource(current, v.name), v.healthy || v.conn == nil)...)
			continue
		}
		if !v.filter.Allows(ns, name) {
			continue
		}
		rs := v.conn.Service(ns, name)
		if rs == nil || rs.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		if firstRemote == nil || rs.CreationTimestamp.Before(&firstRemote.CreationTimestamp) {
			firstRemote = rs
		}
		clusters = append(clusters, aggregate.Cluster{Name: v.name, Kind: v.kind, Mode: v.mode, Healthy: v.healthy,
			Service: remoteService(rs), Slices: v.conn.Slices(ns, name)})
	}
	if err := c.syncMCS(ctx, ns, name, svc, views); err != nil {
		return err
	}
	if err := c.syncMirrors(ctx, ns, name, views); err != nil {
		return err
	}
	if svc == nil {
		if c.cfg.CreateServices && firstRemote != nil {
			return c.createService(ctx, firstRemote)
		}
		// Our slices are owned by the Service: the garbage collector
		// removes them with it.
		return nil
	}
	var desired []*discoveryv1.EndpointSlice
	if svc.Spec.Type != corev1.ServiceTypeExternalName {
		desired = append(aggregate.Desired(localService(svc), clusters).Slices, keep...)
	}
	create, update, del := aggregate.Diff(desired, current)
	return c.applySlices(ctx, create, update, del)
}

// gate turns the endpoints of kept slices not ready when their cluster is
// unhealthy (copies; healthy slices are returned as they are).
func gate(slices []*discoveryv1.EndpointSlice, healthy bool) []*discoveryv1.EndpointSlice {
	if healthy {
		return slices
	}
	out := make([]*discoveryv1.EndpointSlice, 0, len(slices))
	for _, s := range slices {
		s = s.DeepCopy()
		for i := range s.Endpoints {
			f := false
			s.Endpoints[i].Conditions.Ready = &f
		}
		out = append(out, s)
	}
	return out
}

func bySource(slices []*discoveryv1.EndpointSlice, cluster string) []*discoveryv1.EndpointSlice {
	var out []*discoveryv1.EndpointSlice
	for _, s := range slices {
		if s.Labels[synced.LabelSourceCluster] == cluster {
			out = append(out, s)
		}
	}
	return out
}

func localService(s *corev1.Service) aggregate.LocalService {
	return aggregate.LocalService{Namespace: s.Namespace, Name: s.Name, UID: s.UID, Ports: s.Spec.Ports,
		Headless: s.Spec.ClusterIP == corev1.ClusterIPNone}
}

func remoteService(s *corev1.Service) *aggregate.RemoteService {
	ips := s.Spec.ClusterIPs
	if len(ips) == 0 && s.Spec.ClusterIP != "" {
		ips = []string{s.Spec.ClusterIP}
	}
	return &aggregate.RemoteService{ClusterIPs: ips, Ports: s.Spec.Ports, Headless: s.Spec.ClusterIP == corev1.ClusterIPNone}
}

func (c *Controller) localService(ns, name string) *corev1.Service {
	o, ok, err := c.services.GetStore().GetByKey(ns + "/" + name)
	if err != nil || !ok {
		return nil
	}
	return o.(*corev1.Service)
}

// ourSlices are our slices of one Service by the given index.
func (c *Controller) ourSlices(index, ns, name string) []*discoveryv1.EndpointSlice {
	objs, err := c.ours.GetIndexer().ByIndex(index, ns+"/"+name)
	if err != nil {
		return nil
	}
	out := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.(*discoveryv1.EndpointSlice))
	}
	return out
}

// applySlices writes a diff: creates, updates, deletes, each counted.
func (c *Controller) applySlices(ctx context.Context, create, update, del []*discoveryv1.EndpointSlice) error {
	var errs []error
	stale := false
	for _, s := range create {
		_, err := c.local.Core.DiscoveryV1().EndpointSlices(s.Namespace).Create(ctx, s, metav1.CreateOptions{FieldManager: fieldManager})
		if apierrors.IsAlreadyExists(err) {
			// Written by us a moment ago (the informer lags behind our
			// own writes), or held by someone else: the next round, on
			// a fresher cache, decides.
			stale = true
			continue
		}
		c.metrics.write("endpointslice", "create", err)
		if err != nil {
			errs = append(errs, fmt.Errorf("creating EndpointSlice %s/%s: %w", s.Namespace, s.Name, err))
		}
	}
	for _, s := range update {
		_, err := c.local.Core.DiscoveryV1().EndpointSlices(s.Namespace).Update(ctx, s, metav1.UpdateOptions{FieldManager: fieldManager})
		if apierrors.IsConflict(err) {
			stale = true
			continue
		}
		c.metrics.write("endpointslice", "update", err)
		if err != nil {
			errs = append(errs, fmt.Errorf("updating EndpointSlice %s/%s: %w", s.Namespace, s.Name, err))
		}
	}
	for _, s := range del {
		err := c.local.Core.DiscoveryV1().EndpointSlices(s.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{
			Preconditions: &metav1.Preconditions{UID: &s.UID}})
		if apierrors.IsNotFound(err) {
			err = nil
		}
		c.metrics.write("endpointslice", "delete", err)
		if err != nil {
			errs = append(errs, fmt.Errorf("deleting EndpointSlice %s/%s: %w", s.Namespace, s.Name, err))
		}
	}
	if err := joinErrs(errs); err != nil {
		return err
	}
	if stale {
		return errStale
	}
	return nil
}

// errStale: a write met a newer state than our cache knows (our own
// create or update, not yet seen); the key is retried with backoff.
var errStale = errors.New("the cache is behind our writes")

// createService creates the namespace (if missing) and a selector-less
// Service like the remote one (--sync-services-to-local-cluster), labelled
// as ours; its event brings the Service back to the queue for its slices.
func (c *Controller) createService(ctx context.Context, rs *corev1.Service) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: rs.Namespace, Labels: map[string]string{synced.LabelManagedBy: synced.ManagerName}}}
	_, err := c.local.Core.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{FieldManager: fieldManager})
	switch {
	case err == nil:
		c.metrics.write("namespace", "create", nil)
	case apierrors.IsAlreadyExists(err):
	default:
		c.metrics.write("namespace", "create", err)
		return fmt.Errorf("creating namespace %s for Service %s: %w", rs.Namespace, rs.Name, err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: rs.Namespace, Name: rs.Name, Labels: map[string]string{synced.LabelManagedBy: synced.ManagerName}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, SessionAffinity: rs.Spec.SessionAffinity,
			IPFamilyPolicy: rs.Spec.IPFamilyPolicy, IPFamilies: rs.Spec.IPFamilies, PublishNotReadyAddresses: rs.Spec.PublishNotReadyAddresses},
	}
	if rs.Spec.ClusterIP == corev1.ClusterIPNone {
		svc.Spec.ClusterIP = corev1.ClusterIPNone
	}
	for _, p := range rs.Spec.Ports {
		// No selector: targetPort only documents; the slices carry the
		// ports. NodePorts are the remote cluster's own.
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: p.Name, Protocol: p.Protocol, Port: p.Port,
			TargetPort: p.TargetPort, AppProtocol: p.AppProtocol})
	}
	_, err = c.local.Core.CoreV1().Services(rs.Namespace).Create(ctx, svc, metav1.CreateOptions{FieldManager: fieldManager})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	c.metrics.write("service", "create", err)
	if err != nil {
		return fmt.Errorf("creating Service %s/%s: %w", rs.Namespace, rs.Name, err)
	}
	c.log.Info("created the local Service of a remote one", "service", rs.Namespace+"/"+rs.Name)
	return nil
}

const fieldManager = "netd-sync"

// objectKey is the namespace and name of obj, or the value of label as the
// name ("" label: the object's own name).
func objectKey(obj any, label string) (string, string, bool) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return "", "", false
	}
	if label == "" {
		return m.GetNamespace(), m.GetName(), true
	}
	if v := m.GetLabels()[label]; v != "" {
		return m.GetNamespace(), v, true
	}
	return "", "", false
}

func labelIndex(label string) cache.IndexFunc {
	return func(obj any) ([]string, error) {
		if m, ok := obj.(metav1.Object); ok {
			if v := m.GetLabels()[label]; v != "" {
				return []string{v}, nil
			}
		}
		return nil, nil
	}
}

const (
	byMCSService = "byMCSService"
	byCluster    = "byCluster"
	// byMirror indexes service mirrors by the mirrored Service's
	// "namespace/name".
	byMirror = "byMirror"
)

func joinErrs(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return fmt.Errorf("%d errors: %s", len(errs), strings.Join(msgs, "; "))
}

// metrics of netd sync.
type metrics struct {
	loop     *runtime.LoopMetrics
	writes   *prometheus.CounterVec
	errors   prometheus.Counter
	duration prometheus.Histogram
	clusters *prometheus.GaugeVec
	log      *slog.Logger
}

func newMetrics(reg prometheus.Registerer, log *slog.Logger) *metrics {
	m := &metrics{log: log,
		loop: runtime.NewLoopMetrics(reg, "netd_sync_links", 0.0005),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "netd_sync_writes_total", Help: "Writes to the local API by resource, verb and result; a resync of an unchanged world adds none.",
		}, []string{"resource", "verb", "result"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "netd_sync_errors_total", Help: "Service or mirror reconciles that failed (retried with backoff).",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "netd_sync_reconcile_duration_seconds", Help: "Duration of one Service's (or one cluster's mirrors') reconcile.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		clusters: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "netd_sync_cluster_state", Help: "Per followed cluster: connected (API answers), synced (view complete), healthy (endpoints may be ready), enabled; 1 or 0.",
		}, []string{"cluster", "kind", "state"}),
	}
	reg.MustRegister(m.writes, m.errors, m.duration, m.clusters)
	return m
}

func (m *metrics) write(resource, verb string, err error) {
	if m.log != nil {
		m.log.Debug("write", "resource", resource, "verb", verb, "err", err)
	}
	r := "ok"
	if err != nil {
		r = "error"
	}
	m.writes.WithLabelValues(resource, verb, r).Inc()
}

// Resync queues everything, as the sync interval does.
func (c *Controller) Resync() { c.enqueueAll() }

// Idle reports whether nothing is queued or in progress.
func (c *Controller) Idle() bool { return c.queue.Len() == 0 && c.inflight.Load() == 0 }

// Writes is the number of successful writes so far (tests and the bench:
// a no-op resync must not add any).
func (c *Controller) Writes() float64 {
	mfs, err := prometheusGather(c.metrics.writes)
	if err != nil {
		return -1
	}
	return mfs
}
