package watch

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	mcsv1a1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"

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

// Kinds of the objects Dir reads.
const (
	kubeLinkKind      = "KubeLink"
	meshServiceKind   = "MeshService"
	endpointSliceKind = "EndpointSlice"
	serviceImportKind = mcsv1a1.ServiceImportKindName
)

// toKubeLink converts an unstructured KubeLink into the typed object.
func toKubeLink(u *unstructured.Unstructured) (*v1alpha1.KubeLink, error) {
	return fromUnstructured[v1alpha1.KubeLink](u)
}

// fromUnstructured converts an unstructured object into a new typed one.
func fromUnstructured[T any](u *unstructured.Unstructured) (*T, error) {
	t := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, t); err != nil {
		return nil, fmt.Errorf("converting %s %q: %w", u.GetKind(), u.GetName(), err)
	}
	return t, nil
}
