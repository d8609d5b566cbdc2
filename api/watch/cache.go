package watch

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	mcsv1a1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"

	"github.com/kubelink/kubelink/api/v1alpha1"
)

// Resources of kubelink's kinds, and the MCS API's ServiceImports.
var (
	KubeLinks      = v1alpha1.SchemeGroupVersion.WithResource(v1alpha1.KubeLinkResource)
	MeshServices   = v1alpha1.SchemeGroupVersion.WithResource(v1alpha1.MeshServiceResource)
	ServiceImports = mcsv1a1.SchemeGroupVersion.WithResource(mcsv1a1.ServiceImportPluralName)
)

// MCSSliceSelector selects the EndpointSlices of the MCS API (KEP-1645):
// those labelled multicluster.kubernetes.io/service-name, whatever the value.
const MCSSliceSelector = mcsv1a1.LabelServiceName

// Ref names one namespaced object.
type Ref struct{ Namespace, Name string }

// Needs declares what a consumer reads; only those informers run.
type Needs struct {
	KubeLinks bool
	// MeshServices, Services and EndpointSlices: all namespaces.
	MeshServices   bool
	Services       bool
	EndpointSlices bool
	// Lease, when Name is set: that one Lease (a field-selected watch).
	Lease Ref
	// PodNamespace, when set: the pods of that namespace.
	PodNamespace string
	// SelectedSlices, when its Namespace is set: the EndpointSlices of
	// that one namespace matching its label selector (the broker reads
	// netd sync's MeshService mirrors so, with a namespaced Role and
	// without caching every EndpointSlice of the cluster).
	SelectedSlices Selection
	// ServiceImports: the MCS ServiceImports (multicluster.x-k8s.io
	// v1alpha1) of all namespaces.
	ServiceImports bool
	// MCSSlices: the EndpointSlices of all namespaces matching
	// MCSSliceSelector (a label-selected informer: the cluster's other
	// slices are not cached).
	MCSSlices bool
	// Resync is the informers' resync period (0: 10 minutes).
	Resync time.Duration
}

// Selection is a namespace and a label selector ("" selects all).
type Selection struct{ Namespace, Selector string }

// Cache is the informer caches of what a consumer needs. Every change of
// any of them calls the one onChange given to Start; consumers coalesce
// there (netd/runtime.Trigger) and read the views, which return deep
// copies.
type Cache struct {
	links, meshServices, services, slices, leases, pods cache.SharedIndexInformer
	lease                                               Ref
	podNamespace                                        string
	onError                                             func(error)
	wg                                                  sync.WaitGroup

	// selected are the EndpointSlices of Needs.SelectedSlices.
	selected cache.SharedIndexInformer
	// imports and mcsSlices: Needs.ServiceImports and Needs.MCSSlices.
	imports, mcsSlices cache.SharedIndexInformer
}

// Start starts the informers of needs on clients and waits until their
// caches have synced. They run until ctx ends; Wait waits for them.
// Objects that do not convert are skipped and reported to onError (nil:
// dropped).
func Start(ctx context.Context, c *Clients, needs Needs, onChange func(), onError func(error)) (*Cache, error) {
	resync := needs.Resync
	if resync == 0 {
		resync = 10 * time.Minute
	}
	w := &Cache{lease: needs.Lease, podNamespace: needs.PodNamespace, onError: onError}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { onChange() },
		UpdateFunc: func(any, any) { onChange() },
		DeleteFunc: func(any) { onChange() },
	}
	var started []cache.SharedIndexInformer
	add := func(what string, inf cache.SharedIndexInformer) (cache.SharedIndexInformer, error) {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return nil, fmt.Errorf("watching %s: %w", what, err)
		}
		started = append(started, inf)
		return inf, nil
	}
	var err error
	if needs.KubeLinks || needs.MeshServices || needs.ServiceImports {
		df := dynamicinformer.NewDynamicSharedInformerFactory(c.Dynamic, resync)
		if needs.KubeLinks {
			if w.links, err = add("KubeLinks", df.ForResource(KubeLinks).Informer()); err != nil {
				return nil, err
			}
		}
		if needs.MeshServices {
			if w.meshServices, err = add("MeshServices", df.ForResource(MeshServices).Informer()); err != nil {
				return nil, err
			}
		}
		if needs.ServiceImports {
			if w.imports, err = add("ServiceImports", df.ForResource(ServiceImports).Informer()); err != nil {
				return nil, err
			}
		}
	}
	if needs.Services || needs.EndpointSlices {
		f := informers.NewSharedInformerFactory(c.Core, resync)
		if needs.Services {
			if w.services, err = add("Services", f.Core().V1().Services().Informer()); err != nil {
				return nil, err
			}
		}
		if needs.EndpointSlices {
			if w.slices, err = add("EndpointSlices", f.Discovery().V1().EndpointSlices().Informer()); err != nil {
				return nil, err
			}
		}
	}
	if needs.Lease.Name != "" {
		lf := informers.NewSharedInformerFactoryWithOptions(c.Core, resync, informers.WithNamespace(needs.Lease.Namespace),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) {
				o.FieldSelector = fields.OneTermEqualSelector("metadata.name", needs.Lease.Name).String()
			}))
		if w.leases, err = add("Lease "+needs.Lease.Namespace+"/"+needs.Lease.Name, lf.Coordination().V1().Leases().Informer()); err != nil {
			return nil, err
		}
	}
	if needs.PodNamespace != "" {
		pf := informers.NewSharedInformerFactoryWithOptions(c.Core, resync, informers.WithNamespace(needs.PodNamespace))
		if w.pods, err = add("pods in "+needs.PodNamespace, pf.Core().V1().Pods().Informer()); err != nil {
			return nil, err
		}
	}
	if sel := needs.SelectedSlices; sel.Namespace != "" {
		sf := informers.NewSharedInformerFactoryWithOptions(c.Core, resync, informers.WithNamespace(sel.Namespace),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = sel.Selector }))
		if w.selected, err = add("EndpointSlices in "+sel.Namespace+" ("+sel.Selector+")", sf.Discovery().V1().EndpointSlices().Informer()); err != nil {
			return nil, err
		}
	}
	if needs.MCSSlices {
		mf := informers.NewSharedInformerFactoryWithOptions(c.Core, resync,
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = MCSSliceSelector }))
		if w.mcsSlices, err = add("EndpointSlices ("+MCSSliceSelector+")", mf.Discovery().V1().EndpointSlices().Informer()); err != nil {
			return nil, err
		}
	}
	synced := make([]cache.InformerSynced, 0, len(started))
	for _, inf := range started {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			inf.RunWithContext(ctx)
		}()
		synced = append(synced, inf.HasSynced)
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return nil, fmt.Errorf("caches did not sync: %w", ctx.Err())
	}
	return w, nil
}

// Wait waits for the informers to stop (after Start's ctx ended).
func (w *Cache) Wait() { w.wg.Wait() }

// Open is Start on a context of its own, for consumers that must end the
// informers before ctx ends (a role's active side, a Source's run): stop
// ends them and returns once they have stopped, and must be called.
func Open(ctx context.Context, c *Clients, needs Needs, onChange func(), onError func(error)) (w *Cache, stop func(), err error) {
	ctx, cancel := context.WithCancel(ctx)
	if w, err = Start(ctx, c, needs, onChange, onError); err != nil {
		cancel()
		return nil, nil, err
	}
	return w, func() {
		cancel()
		w.Wait()
	}, nil
}

func (w *Cache) reportErr(err error) {
	if w.onError != nil {
		w.onError(err)
	}
}

// Snapshot is a consistent-enough copy of what a consumer reads: every
// list sorted, every KubeLink and MeshService a deep copy.
type Snapshot struct {
	KubeLinks    []*v1alpha1.KubeLink
	MeshServices []*v1alpha1.MeshService
	// EndpointSlices are the slices of Needs.SelectedSlices (Kube) or every
	// EndpointSlice of the directory (Dir), sorted by namespace and name.
	// Not copied: they are shared with the informer's cache, read only.
	EndpointSlices []*discoveryv1.EndpointSlice
	// ServiceImports are the MCS ServiceImports (Needs.ServiceImports, or
	// every one of the directory), deep copies sorted by namespace and
	// name.
	ServiceImports []*mcsv1a1.ServiceImport
	// MCSSlices are the EndpointSlices labelled
	// multicluster.kubernetes.io/service-name (Needs.MCSSlices, or those of
	// the directory, which are in EndpointSlices too), sorted by namespace
	// and name. Shared like EndpointSlices: read only.
	MCSSlices []*discoveryv1.EndpointSlice
}

// Snapshot copies the KubeLinks, MeshServices and ServiceImports and lists
// the selected and the MCS EndpointSlices (each when needed).
func (w *Cache) Snapshot() Snapshot {
	return Snapshot{KubeLinks: w.KubeLinks().List(), MeshServices: w.MeshServices().List(), EndpointSlices: w.SelectedSlices(),
		ServiceImports: w.ServiceImports(), MCSSlices: w.MCSSlices()}
}

// ServiceImports returns copies of the cached ServiceImports sorted by
// namespace/name (nil unless needed).
func (w *Cache) ServiceImports() []*mcsv1a1.ServiceImport {
	out := convertAll[mcsv1a1.ServiceImport](w, w.imports, "ServiceImport")
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// MCSSlices returns the cached MCS EndpointSlices sorted by
// namespace/name (read only; nil unless needed).
func (w *Cache) MCSSlices() []*discoveryv1.EndpointSlice {
	if w.mcsSlices == nil {
		return nil
	}
	out := listSlices(w.mcsSlices)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out
}

func listSlices(inf cache.SharedIndexInformer) []*discoveryv1.EndpointSlice {
	items := inf.GetStore().List()
	out := make([]*discoveryv1.EndpointSlice, 0, len(items))
	for _, o := range items {
		if s, ok := o.(*discoveryv1.EndpointSlice); ok {
			out = append(out, s)
		}
	}
	return out
}

// KubeLinkView reads the cached KubeLinks.
type KubeLinkView struct{ w *Cache }

// KubeLinks is the KubeLink view (empty unless needed).
func (w *Cache) KubeLinks() KubeLinkView { return KubeLinkView{w} }

// List returns the KubeLinks sorted by name.
func (v KubeLinkView) List() []*v1alpha1.KubeLink {
	out := convertAll[v1alpha1.KubeLink](v.w, v.w.links, "KubeLink")
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Get returns a KubeLink or nil.
func (v KubeLinkView) Get(name string) *v1alpha1.KubeLink {
	return convertOne[v1alpha1.KubeLink](v.w, v.w.links, "KubeLink", name)
}

// MeshServiceView reads the cached MeshServices.
type MeshServiceView struct{ w *Cache }

// MeshServices is the MeshService view (empty unless needed).
func (w *Cache) MeshServices() MeshServiceView { return MeshServiceView{w} }

// List returns the MeshServices sorted by namespace/name.
func (v MeshServiceView) List() []*v1alpha1.MeshService {
	out := convertAll[v1alpha1.MeshService](v.w, v.w.meshServices, "MeshService")
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Get returns a MeshService or nil.
func (v MeshServiceView) Get(namespace, name string) *v1alpha1.MeshService {
	return convertOne[v1alpha1.MeshService](v.w, v.w.meshServices, "MeshService", namespace+"/"+name)
}

// Service returns a cached Service or nil (the cache's object: read only;
// it is a mesh.ServiceLookup).
func (w *Cache) Service(namespace, name string) *corev1.Service {
	return get[corev1.Service](w.services, namespace+"/"+name)
}

// EndpointSlices returns the cached EndpointSlices of a Service (read
// only).
func (w *Cache) EndpointSlices(namespace, service string) []*discoveryv1.EndpointSlice {
	if w.slices == nil {
		return nil
	}
	var out []*discoveryv1.EndpointSlice
	for _, o := range w.slices.GetStore().List() {
		s, ok := o.(*discoveryv1.EndpointSlice)
		if ok && s.Namespace == namespace && s.Labels[discoveryv1.LabelServiceName] == service {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// SelectedSlices returns the cached EndpointSlices of
// Needs.SelectedSlices sorted by name (read only).
func (w *Cache) SelectedSlices() []*discoveryv1.EndpointSlice {
	if w.selected == nil {
		return nil
	}
	items := w.selected.GetStore().List()
	out := make([]*discoveryv1.EndpointSlice, 0, len(items))
	for _, o := range items {
		if s, ok := o.(*discoveryv1.EndpointSlice); ok {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Lease returns the watched Lease or nil (read only).
func (w *Cache) Lease() *coordinationv1.Lease {
	return get[coordinationv1.Lease](w.leases, w.lease.Namespace+"/"+w.lease.Name)
}

// Pod returns a cached pod of the watched namespace or nil (read only).
func (w *Cache) Pod(name string) *corev1.Pod {
	return get[corev1.Pod](w.pods, w.podNamespace+"/"+name)
}

func get[T any](inf cache.SharedIndexInformer, key string) *T {
	if inf == nil {
		return nil
	}
	o, ok, err := inf.GetStore().GetByKey(key)
	if err != nil || !ok {
		return nil
	}
	t, _ := o.(*T)
	return t
}

// convertAll converts every object inf caches (none without inf: not
// needed), skipping those that do not convert.
func convertAll[T any](w *Cache, inf cache.SharedIndexInformer, kind string) []*T {
	if inf == nil {
		return nil
	}
	items := inf.GetStore().List()
	out := make([]*T, 0, len(items))
	for _, o := range items {
		if t := convert[T](w, kind, o); t != nil {
			out = append(out, t)
		}
	}
	return out
}

// convertOne converts the object inf caches at key, or returns nil.
func convertOne[T any](w *Cache, inf cache.SharedIndexInformer, kind, key string) *T {
	if inf == nil {
		return nil
	}
	o, ok, err := inf.GetStore().GetByKey(key)
	if err != nil || !ok {
		return nil
	}
	return convert[T](w, kind, o)
}

// convert turns a cached unstructured object into a new typed one.
func convert[T any](w *Cache, kind string, o any) *T {
	u, ok := o.(*unstructured.Unstructured)
	if !ok {
		return nil
	}
	t := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, t); err != nil {
		w.reportErr(fmt.Errorf("converting %s %s: %w", kind, cache.MetaObjectToName(u), err))
		return nil
	}
	return t
}
