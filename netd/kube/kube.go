// Package kube is netd's access to the cluster: client configuration, the
// KubeLink informer, the key/certificate secret, status writes and events.
package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	clientscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"

	"github.com/kubelink/kubelink/api/v1alpha1"
)

// KubeLinks is the resource of KubeLink objects.
var KubeLinks = v1alpha1.SchemeGroupVersion.WithResource(v1alpha1.KubeLinkResource)

// Clients bundles the clients netd uses.
type Clients struct {
	Config  *rest.Config
	Core    kubernetes.Interface
	Dynamic dynamic.Interface
}

// NewClients loads the kubeconfig (in-cluster config when empty).
func NewClients(kubeconfig string) (*Clients, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig == "" {
		cfg, err = rest.InClusterConfig()
	} else {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %q: %w", kubeconfig, err)
	}
	cfg.UserAgent = "kubelink-netd"
	core, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating dynamic client: %w", err)
	}
	return &Clients{Config: cfg, Core: core, Dynamic: dyn}, nil
}

// Namespace is the namespace netd runs in: $POD_NAMESPACE, else the
// in-cluster service account's, else "default".
func Namespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
		return strings.TrimSpace(string(b))
	}
	return "default"
}

// SplitRef splits "namespace/name" (namespace defaulted).
func SplitRef(ref string) (ns, name string) {
	if i := strings.Index(ref, "/"); i >= 0 {
		return ref[:i], ref[i+1:]
	}
	return Namespace(), ref
}

// LinkWatcher keeps KubeLinks in an informer cache and calls back on every
// change.
type LinkWatcher struct {
	informer cache.SharedIndexInformer
}

// WatchLinks starts the informer and waits for its cache to sync.
func WatchLinks(ctx context.Context, dyn dynamic.Interface, onChange func()) (*LinkWatcher, error) {
	f := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 10*time.Minute)
	inf := f.ForResource(KubeLinks).Informer()
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { onChange() },
		UpdateFunc: func(any, any) { onChange() },
		DeleteFunc: func(any) { onChange() },
	})
	if err != nil {
		return nil, fmt.Errorf("watching KubeLinks: %w", err)
	}
	go inf.Run(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return nil, fmt.Errorf("KubeLink cache did not sync: %w", ctx.Err())
	}
	return &LinkWatcher{informer: inf}, nil
}

// List returns the cached KubeLinks (deep copies) sorted by name.
func (w *LinkWatcher) List() []*v1alpha1.KubeLink {
	var out []*v1alpha1.KubeLink
	for _, o := range w.informer.GetStore().List() {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		l := &v1alpha1.KubeLink{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, l); err != nil {
			continue
		}
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Get returns a cached KubeLink or nil.
func (w *LinkWatcher) Get(name string) *v1alpha1.KubeLink {
	o, ok, err := w.informer.GetStore().GetByKey(name)
	if err != nil || !ok {
		return nil
	}
	u, ok := o.(*unstructured.Unstructured)
	if !ok {
		return nil
	}
	l := &v1alpha1.KubeLink{}
	if runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, l) != nil {
		return nil
	}
	return l
}

// PatchStatus writes a KubeLink's status (merge patch on the status
// subresource).
func PatchStatus(ctx context.Context, dyn dynamic.Interface, name string, st v1alpha1.KubeLinkStatus) error {
	b, err := json.Marshal(map[string]any{"status": st})
	if err != nil {
		return fmt.Errorf("encoding status of %s: %w", name, err)
	}
	_, err = dyn.Resource(KubeLinks).Patch(ctx, name, types.MergePatchType, b, metav1.PatchOptions{FieldManager: "kubelink-netd"}, "status")
	if err != nil {
		return fmt.Errorf("writing status of KubeLink %s: %w", name, err)
	}
	return nil
}

// PatchSpecDNS writes a KubeLink's spec.dns (bridge DNS advertisement).
func PatchSpecDNS(ctx context.Context, dyn dynamic.Interface, name string, dns *v1alpha1.KubeLinkDNS) error {
	b, err := json.Marshal(map[string]any{"spec": map[string]any{"dns": dns}})
	if err != nil {
		return fmt.Errorf("encoding spec.dns of %s: %w", name, err)
	}
	if _, err := dyn.Resource(KubeLinks).Patch(ctx, name, types.MergePatchType, b, metav1.PatchOptions{FieldManager: "kubelink-netd"}); err != nil {
		return fmt.Errorf("writing spec.dns of KubeLink %s: %w", name, err)
	}
	return nil
}

// CreateLink creates a KubeLink (bridge auto-connect).
func CreateLink(ctx context.Context, dyn dynamic.Interface, l *v1alpha1.KubeLink) error {
	l.APIVersion, l.Kind = v1alpha1.SchemeGroupVersion.String(), "KubeLink"
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(l)
	if err != nil {
		return fmt.Errorf("encoding KubeLink %s: %w", l.Name, err)
	}
	if _, err := dyn.Resource(KubeLinks).Create(ctx, &unstructured.Unstructured{Object: m}, metav1.CreateOptions{FieldManager: "kubelink-netd"}); err != nil {
		return fmt.Errorf("creating KubeLink %s: %w", l.Name, err)
	}
	return nil
}

// SecretData reads a secret; nil data when it does not exist.
func SecretData(ctx context.Context, core kubernetes.Interface, ref string) (map[string][]byte, error) {
	ns, name := SplitRef(ref)
	s, err := core.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading secret %s/%s: %w", ns, name, err)
	}
	return s.Data, nil
}

// EnsureSecretKey returns data[key] of the secret, storing gen() there when
// the secret or the key is missing. Concurrent writers converge on the value
// stored first.
func EnsureSecretKey(ctx context.Context, core kubernetes.Interface, ref, key string, gen func() (string, error)) (string, error) {
	ns, name := SplitRef(ref)
	for attempt := 0; attempt < 5; attempt++ {
		s, err := core.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return "", fmt.Errorf("reading secret %s/%s: %w", ns, name, err)
		}
		if err == nil {
			if v := strings.TrimSpace(string(s.Data[key])); v != "" {
				return v, nil
			}
		}
		v, gerr := gen()
		if gerr != nil {
			return "", gerr
		}
		if apierrors.IsNotFound(err) {
			_, err = core.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
				Data:       map[string][]byte{key: []byte(v)},
			}, metav1.CreateOptions{})
		} else {
			if s.Data == nil {
				s.Data = map[string][]byte{}
			}
			s.Data[key] = []byte(v)
			_, err = core.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{})
		}
		if err == nil {
			return v, nil
		}
		if !apierrors.IsAlreadyExists(err) && !apierrors.IsConflict(err) {
			return "", fmt.Errorf("storing %s in secret %s/%s: %w", key, ns, name, err)
		}
	}
	return "", fmt.Errorf("storing %s in secret %s/%s: too many conflicts", key, ns, name)
}

// Recorder returns an event recorder for KubeLinks (events land in the
// default namespace, as for every cluster-scoped object).
func Recorder(ctx context.Context, core kubernetes.Interface, component string) (record.EventRecorder, func()) {
	s := runtime.NewScheme()
	_ = clientscheme.AddToScheme(s)
	_ = v1alpha1.AddToScheme(s)
	b := record.NewBroadcaster(record.WithContext(ctx))
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: core.CoreV1().Events("")})
	return b.NewRecorder(s, corev1.EventSource{Component: component}), b.Shutdown
}

// MeshServices is the resource of MeshService objects.
var MeshServices = v1alpha1.SchemeGroupVersion.WithResource(v1alpha1.MeshServiceResource)

// ServiceWatcher keeps MeshServices and the Services they may point at in
// informer caches and calls back on every change.
type ServiceWatcher struct {
	meshServices cache.SharedIndexInformer
	services     cache.SharedIndexInformer
}

// WatchServices starts both informers (all namespaces) and waits for them
// to sync.
func WatchServices(ctx context.Context, dyn dynamic.Interface, core kubernetes.Interface, onChange func()) (*ServiceWatcher, error) {
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { onChange() },
		UpdateFunc: func(any, any) { onChange() },
		DeleteFunc: func(any) { onChange() },
	}
	df := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 10*time.Minute)
	ms := df.ForResource(MeshServices).Informer()
	if _, err := ms.AddEventHandler(h); err != nil {
		return nil, fmt.Errorf("watching MeshServices: %w", err)
	}
	sf := informers.NewSharedInformerFactory(core, 10*time.Minute)
	svc := sf.Core().V1().Services().Informer()
	if _, err := svc.AddEventHandler(h); err != nil {
		return nil, fmt.Errorf("watching Services: %w", err)
	}
	go ms.Run(ctx.Done())
	go svc.Run(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), ms.HasSynced, svc.HasSynced) {
		return nil, fmt.Errorf("MeshService/Service caches did not sync: %w", ctx.Err())
	}
	return &ServiceWatcher{meshServices: ms, services: svc}, nil
}

// List returns the cached MeshServices (deep copies) sorted by
// namespace/name.
func (w *ServiceWatcher) List() []*v1alpha1.MeshService {
	var out []*v1alpha1.MeshService
	for _, o := range w.meshServices.GetStore().List() {
		if ms := toMeshService(o); ms != nil {
			out = append(out, ms)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Namespace+"/"+out[i].Name < out[j].Namespace+"/"+out[j].Name
	})
	return out
}

// Get returns a cached MeshService or nil.
func (w *ServiceWatcher) Get(namespace, name string) *v1alpha1.MeshService {
	o, ok, err := w.meshServices.GetStore().GetByKey(namespace + "/" + name)
	if err != nil || !ok {
		return nil
	}
	return toMeshService(o)
}

// Service returns a cached Service or nil (mesh.ServiceLookup).
func (w *ServiceWatcher) Service(namespace, name string) *corev1.Service {
	o, ok, err := w.services.GetStore().GetByKey(namespace + "/" + name)
	if err != nil || !ok {
		return nil
	}
	s, _ := o.(*corev1.Service)
	return s
}

func toMeshService(o any) *v1alpha1.MeshService {
	u, ok := o.(*unstructured.Unstructured)
	if !ok {
		return nil
	}
	ms := &v1alpha1.MeshService{}
	if runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, ms) != nil {
		return nil
	}
	return ms
}

// PatchServiceStatus writes a MeshService's status (merge patch on the
// status subresource; targets are replaced as a whole).
func PatchServiceStatus(ctx context.Context, dyn dynamic.Interface, namespace, name string, st v1alpha1.MeshServiceStatus) error {
	// A merge patch keeps fields it omits: empty ones are sent as null.
	var targets any
	if len(st.Targets) > 0 {
		targets = st.Targets
	}
	var message any
	if st.Message != "" {
		message = st.Message
	}
	b, err := json.Marshal(map[string]any{"status": map[string]any{
		"state": st.State, "message": message, "targets": targets, "observedGeneration": st.ObservedGeneration,
	}})
	if err != nil {
		return fmt.Errorf("encoding status of %s/%s: %w", namespace, name, err)
	}
	_, err = dyn.Resource(MeshServices).Namespace(namespace).Patch(ctx, name, types.MergePatchType, b, metav1.PatchOptions{FieldManager: "kubelink-netd"}, "status")
	if err != nil {
		return fmt.Errorf("writing status of MeshService %s/%s: %w", namespace, name, err)
	}
	return nil
}
