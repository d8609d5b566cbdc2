// Package source delivers the KubeLink objects the kubelink plugin serves:
// from the Kubernetes API through an informer, or from a directory of YAML
// manifests. Both hand complete snapshots to a callback, so the consumer
// rebuilds its index from scratch and never sees partial state.
package source

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubelink/kubelink/api/v1alpha1"
)

// Source runs until ctx ends, calling update with every new snapshot of
// the KubeLinks. The first call marks the first complete sync.
type Source interface {
	Run(ctx context.Context, update func([]*v1alpha1.KubeLink)) error
}

// Kind is the object kind the sources read.
const Kind = "KubeLink"

// toKubeLink converts an unstructured KubeLink into the typed object.
func toKubeLink(u *unstructured.Unstructured) (*v1alpha1.KubeLink, error) {
	var kl v1alpha1.KubeLink
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &kl); err != nil {
		return nil, fmt.Errorf("converting KubeLink %q: %w", u.GetName(), err)
	}
	return &kl, nil
}
