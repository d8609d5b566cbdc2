package watch

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubelink/kubelink/api/v1alpha1"
)

// Source runs until ctx ends, calling update with every new snapshot. The
// first call marks the first complete sync; a consumer rebuilds from each
// snapshot and never sees partial state.
type Source interface {
	Run(ctx context.Context, update func(Snapshot)) error
}

// Kube is the Source of a cluster's API: a Cache of Needs, one snapshot
// per burst of changes, delivered right after the burst (no fixed delay).
// The informers' stores survive API outages, so the last known state stays
// in force until the watch resumes.
type Kube struct {
	Clients *Clients
	Needs   Needs
	// OnError reports objects that do not convert (skipped).
	OnError func(error)
}

// Run implements Source.
func (k *Kube) Run(ctx context.Context, update func(Snapshot)) error {
	changed := make(chan struct{}, 1)
	c, stop, err := Open(ctx, k.Clients, k.Needs, func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}, k.OnError)
	if err != nil {
		return err
	}
	defer stop()
	for {
		update(c.Snapshot())
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}

// kubeLinkKind is the kind of the objects Dir reads.
const kubeLinkKind = "KubeLink"

// toKubeLink converts an unstructured KubeLink into the typed object.
func toKubeLink(u *unstructured.Unstructured) (*v1alpha1.KubeLink, error) {
	var kl v1alpha1.KubeLink
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &kl); err != nil {
		return nil, fmt.Errorf("converting KubeLink %q: %w", u.GetName(), err)
	}
	return &kl, nil
}
