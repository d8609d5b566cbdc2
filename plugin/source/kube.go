package source

import (
	"context"
	"fmt"
	"sort"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubelink/kubelink/api/v1alpha1"
)

// Kube watches KubeLinks through a client-go informer. The informer's store
// survives API outages, so the last known state stays in force until the
// watch resumes.
type Kube struct {
	Config *rest.Config
	// Resync is the informer resync period (0: none).
	Resync time.Duration
	// OnError reports conversion errors of single objects (skipped).
	OnError func(error)
}

// RestConfig loads a rest config: from a kubeconfig file (with optional
// context) when path is set, else the in-cluster config.
func RestConfig(path, kubeContext string) (*rest.Config, error) {
	if path == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster config: %w", err)
		}
		return cfg, nil
	}
	rules := &clientcmd.ClientConfigLoadingRules{ExplicitPath: path}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: kubeContext}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %s: %w", path, err)
	}
	return cfg, nil
}

// Run implements Source. Events are coalesced: a burst of changes gives one
// snapshot, delivered right after the burst (no fixed delay).
func (k *Kube) Run(ctx context.Context, update func([]*v1alpha1.KubeLink)) error {
	client, err := dynamic.NewForConfig(k.Config)
	if err != nil {
		return fmt.Errorf("creating dynamic client: %w", err)
	}
	factory := dynamicinformer.NewDynamicSharedInformerFactory(client, k.Resync)
	gvr := v1alpha1.SchemeGroupVersion.WithResource(v1alpha1.KubeLinkResource)
	inf := factory.ForResource(gvr).Informer()

	changed := make(chan struct{}, 1)
	poke := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke() },
		UpdateFunc: func(any, any) { poke() },
		DeleteFunc: func(any) { poke() },
	}); err != nil {
		return fmt.Errorf("adding KubeLink event handler: %w", err)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return fmt.Errorf("KubeLink informer did not sync: %w", ctx.Err())
	}
	for {
		update(k.snapshot(inf.GetStore()))
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}

func (k *Kube) snapshot(store cache.Store) []*v1alpha1.KubeLink {
	items := store.List()
	out := make([]*v1alpha1.KubeLink, 0, len(items))
	for _, it := range items {
		u, ok := it.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		kl, err := toKubeLink(u)
		if err != nil {
			if k.OnError != nil {
				k.OnError(err)
			}
			continue
		}
		out = append(out, kl)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
