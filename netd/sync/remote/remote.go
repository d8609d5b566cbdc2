// Package remote is netd sync's connection to one remote cluster: its
// informers (Services, EndpointSlices, and, where the remote cluster has
// the kinds, ServiceExports and MeshServices), a probe of its API that
// tracks whether it is reachable, and the health that gates its endpoints.
// The informers' stores survive outages, so what a cluster last said stays
// known while it is away; health says how long it has been away.
package remote

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"

	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/api/watch"
)

// Resources read in a remote cluster besides the core ones.
var (
	ServiceExports = mcsv1alpha1.SchemeGroupVersion.WithResource("serviceexports")
	MeshServices   = watch.MeshServices
)

// ByService indexes EndpointSlices by "<namespace>/<kubernetes.io/service-name>".
const ByService = "byService"

// ServiceIndex is the ByService index function, shared with the local
// cluster's caches.
func ServiceIndex(label string) cache.IndexFunc {
	return func(obj any) ([]string, error) {
		m, err := meta.Accessor(obj)
		if err != nil {
			return nil, nil
		}
		if s := m.GetLabels()[label]; s != "" {
			return []string{m.GetNamespace() + "/" + s}, nil
		}
		return nil, nil
	}
}

// StripManagedFields drops managedFields before objects enter a store:
// nobody here reads them, and they are a large part of every object.
func StripManagedFields(obj any) (any, error) {
	if m, err := meta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// Target says how to reach a remote cluster.
type Target struct {
	// Name of the cluster (source-cluster label), Kind of its link.
	Name, Kind string
	Clients    *watch.Clients
	// Fingerprint changes when the credentials or the server change; a
	// cluster is restarted then.
	Fingerprint string
}

// Options of every cluster connection.
type Options struct {
	// Resync of the informers (the sync interval).
	Resync time.Duration
	// Probe is the period of the API probe.
	Probe time.Duration
	// Grace is how long the API may be unreachable before the cluster is
	// unhealthy.
	Grace time.Duration
	// OnEvent is called for every change of a Service (namespace, name) of
	// the cluster: its Service, its slices, its ServiceExport.
	OnEvent func(cluster, namespace, name string)
	// OnMeshServices is called when the cluster's MeshServices change.
	OnMeshServices func(cluster string)
	// OnHealth is called when the cluster's health or connection changes.
	OnHealth func(cluster string)
	Log      *slog.Logger
}

// Health is what the probe knows.
type Health struct {
	// Connected: the last probe was answered.
	Connected bool
	// Synced: the informers have synced once; before, the cluster's view
	// is incomplete and must not delete anything.
	Synced  bool
	Version string
	// Since is when Connected last changed (the first probe counts as a
	// change); LastConnected is when the API last answered.
	Since, LastConnected time.Time
	// Error is the last probe's or list's error while not connected.
	Error string
}

// Healthy reports whether the cluster's endpoints may be ready at now: it
// is connected, or it has been away for less than grace.
func (h Health) Healthy(now time.Time, grace time.Duration) bool {
	if h.Connected {
		return true
	}
	return !h.LastConnected.IsZero() && now.Sub(h.LastConnected) < grace
}

// Cluster is one running connection.
type Cluster struct {
	Target
	opts   Options
	cancel context.CancelFunc
	wg     sync.WaitGroup

	services, slices  cache.SharedIndexInformer
	mu                sync.Mutex
	exports, meshSvcs cache.SharedIndexInformer
	health            Health
	started           time.Time
}

// Start connects to the cluster: informers and the probe run until Stop.
func Start(ctx context.Context, t Target, opts Options) *Cluster {
	ctx, cancel := context.WithCancel(ctx)
	c := &Cluster{Target: t, opts: opts, cancel: cancel, started: time.Now()}
	f := informers.NewSharedInformerFactoryWithOptions(t.Clients.Core, opts.Resync, informers.WithTransform(StripManagedFields))
	c.services = f.Core().V1().Services().Informer()
	c.slices = f.Discovery().V1().EndpointSlices().Informer()
	if err := c.slices.AddIndexers(cache.Indexers{ByService: ServiceIndex(discoveryv1.LabelServiceName)}); err != nil {
		opts.Log.Error("indexing remote slices", "cluster", t.Name, "err", err)
	}
	c.handle(c.services, func(obj any) (string, string, bool) {
		m, err := meta.Accessor(obj)
		if err != nil {
			return "", "", false
		}
		return m.GetNamespace(), m.GetName(), true
	})
	c.handle(c.slices, func(obj any) (string, string, bool) {
		m, err := meta.Accessor(obj)
		if err != nil || m.GetLabels()[discoveryv1.LabelServiceName] == "" {
			return "", "", false
		}
		return m.GetNamespace(), m.GetLabels()[discoveryv1.LabelServiceName], true
	})
	for _, inf := range []cache.SharedIndexInformer{c.services, c.slices} {
		_ = inf.SetWatchErrorHandler(c.watchError)
	}
	f.Start(ctx.Done())
	c.wg.Add(2)
	go func() {
		defer c.wg.Done()
		// Shutdown returns once the informers have stopped (ctx ended).
		defer f.Shutdown()
		f.WaitForCacheSync(ctx.Done())
		if ctx.Err() != nil {
			return
		}
		c.mu.Lock()
		c.health.Synced = true
		c.mu.Unlock()
		opts.Log.Info("remote cluster synced", "cluster", t.Name, "kind", t.Kind)
		c.opts.OnHealth(t.Name)
		<-ctx.Done()
	}()
	go func() {
		defer c.wg.Done()
		c.probeLoop(ctx)
	}()
	return c
}

// handle forwards the informer's events as service keys.
func (c *Cluster) handle(inf cache.SharedIndexInformer, key func(any) (string, string, bool)) {
	fire := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if ns, n, ok := key(obj); ok {
			c.opts.OnEvent(c.Name, ns, n)
		}
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    fire,
		UpdateFunc: func(old, obj any) { fire(old); fire(obj) },
		DeleteFunc: fire,
	})
}

func (c *Cluster) watchError(_ *cache.Reflector, err error) {
	c.opts.Log.Debug("remote watch", "cluster", c.Name, "err", err)
}

// probeLoop asks for the version every Probe, and starts the informers of
// the optional kinds once the cluster has them.
func (c *Cluster) probeLoop(ctx context.Context) {
	tick := time.NewTicker(c.opts.Probe)
	defer tick.Stop()
	var dyn dynamicinformer.DynamicSharedInformerFactory
	defer func() {
		if dyn != nil {
			dyn.Shutdown()
		}
	}()
	for {
		c.probe(ctx)
		if c.exports == nil || c.meshSvcs == nil {
			if dyn == nil {
				dyn = dynamicinformer.NewFilteredDynamicSharedInformerFactory(c.Clients.Dynamic, c.opts.Resync, metav1.NamespaceAll, nil)
			}
			c.startOptional(ctx, dyn)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// startOptional starts the ServiceExport and MeshService informers when
// the remote cluster serves the kinds: a cluster without the MCS CRDs is
// normal and must not leave a list failing forever.
func (c *Cluster) startOptional(ctx context.Context, dyn dynamicinformer.DynamicSharedInformerFactory) {
	has := func(gvr schema.GroupVersionResource) bool {
		rl, err := c.Clients.Core.Discovery().ServerResourcesForGroupVersion(gvr.GroupVersion().String())
		if err != nil {
			return false
		}
		for _, r := range rl.APIResources {
			if r.Name == gvr.Resource {
				return true
			}
		}
		return false
	}
	started := false
	if c.exports == nil && has(ServiceExports) {
		inf := dyn.ForResource(ServiceExports).Informer()
		_ = inf.SetTransform(StripManagedFields)
		c.handle(inf, func(obj any) (string, string, bool) {
			m, err := meta.Accessor(obj)
			if err != nil {
				return "", "", false
			}
			return m.GetNamespace(), m.GetName(), true
		})
		c.mu.Lock()
		c.exports = inf
		c.mu.Unlock()
		started = true
	}
	if c.meshSvcs == nil && has(MeshServices) {
		inf := dyn.ForResource(MeshServices).Informer()
		_ = inf.SetTransform(StripManagedFields)
		fire := func(any) { c.opts.OnMeshServices(c.Name) }
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: fire, UpdateFunc: func(any, any) { fire(nil) }, DeleteFunc: fire})
		c.mu.Lock()
		c.meshSvcs = inf
		c.mu.Unlock()
		started = true
	}
	if started {
		dyn.Start(ctx.Done())
	}
}

// probe asks the remote API for its version.
func (c *Cluster) probe(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, min(c.opts.Probe, 5*time.Second))
	defer cancel()
	v, err := c.Clients.Core.Discovery().RESTClient().Get().AbsPath("/version").Do(pctx).Raw()
	if ctx.Err() != nil {
		return
	}
	now := time.Now()
	c.mu.Lock()
	was := c.health
	h := &c.health
	if err == nil {
		var info struct {
			GitVersion string `json:"gitVersion"`
		}
		if jerr := json.Unmarshal(v, &info); jerr == nil {
			h.Version = info.GitVersion
		}
		h.Connected, h.LastConnected, h.Error = true, now, ""
	} else {
		h.Connected, h.Error = false, fmt.Sprintf("probing %s: %v", c.Clients.Config.Host, err)
	}
	if h.Connected != was.Connected || h.Since.IsZero() {
		h.Since = now
	}
	changed := h.Connected != was.Connected || h.Version != was.Version || h.Error != was.Error
	c.mu.Unlock()
	if changed {
		c.opts.Log.Info("remote cluster", "cluster", c.Name, "connected", h.Connected, "version", h.Version, "err", h.Error)
		c.opts.OnHealth(c.Name)
	}
}

// Health is the cluster's health now.
func (c *Cluster) Health() Health {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.health
}

// Stop ends the connection and waits for its goroutines.
func (c *Cluster) Stop() {
	c.cancel()
	c.wg.Wait()
}

// Service is the remote Service namespace/name (nil: none).
func (c *Cluster) Service(namespace, name string) *corev1.Service {
	o, ok, err := c.services.GetStore().GetByKey(namespace + "/" + name)
	if err != nil || !ok {
		return nil
	}
	return o.(*corev1.Service)
}

// Slices are the remote EndpointSlices of the Service namespace/name (not
// copies: callers must not modify them).
func (c *Cluster) Slices(namespace, name string) []*discoveryv1.EndpointSlice {
	objs, err := c.slices.GetIndexer().ByIndex(ByService, namespace+"/"+name)
	if err != nil {
		return nil
	}
	out := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.(*discoveryv1.EndpointSlice))
	}
	return out
}

// ServiceKeys are the "namespace/name" keys of every remote Service.
func (c *Cluster) ServiceKeys() []string { return c.services.GetStore().ListKeys() }

// Export is the remote ServiceExport namespace/name (nil: none, or the
// cluster has no ServiceExports).
func (c *Cluster) Export(namespace, name string) (*mcsv1alpha1.ServiceExport, error) {
	c.mu.Lock()
	inf := c.exports
	c.mu.Unlock()
	if inf == nil {
		return nil, nil
	}
	o, ok, err := inf.GetStore().GetByKey(namespace + "/" + name)
	if err != nil || !ok {
		return nil, err
	}
	var e mcsv1alpha1.ServiceExport
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.(*unstructured.Unstructured).Object, &e); err != nil {
		return nil, fmt.Errorf("cluster %s: converting ServiceExport %s/%s: %w", c.Name, namespace, name, err)
	}
	return &e, nil
}

// ExportKeys are the "namespace/name" keys of every remote ServiceExport.
func (c *Cluster) ExportKeys() []string {
	c.mu.Lock()
	inf := c.exports
	c.mu.Unlock()
	if inf == nil {
		return nil
	}
	return inf.GetStore().ListKeys()
}

// MeshServices are the remote cluster's MeshServices (those that convert;
// the others are reported to onError).
func (c *Cluster) MeshServices(onError func(error)) []*v1alpha1.MeshService {
	c.mu.Lock()
	inf := c.meshSvcs
	c.mu.Unlock()
	if inf == nil {
		return nil
	}
	var out []*v1alpha1.MeshService
	for _, o := range inf.GetStore().List() {
		var m v1alpha1.MeshService
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.(*unstructured.Unstructured).Object, &m); err != nil {
			onError(fmt.Errorf("cluster %s: converting MeshService: %w", c.Name, err))
			continue
		}
		out = append(out, &m)
	}
	return out
}

// MeshServicesKnown reports whether the cluster serves MeshServices and
// their informer has synced (before, an empty list means "not known yet").
func (c *Cluster) MeshServicesKnown() bool {
	c.mu.Lock()
	inf := c.meshSvcs
	c.mu.Unlock()
	return inf != nil && inf.HasSynced()
}
