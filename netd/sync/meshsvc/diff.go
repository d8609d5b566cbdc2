package meshsvc

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/kubelink/kubelink/netd/sync/aggregate"
)

// Equal reports whether current already is the mirror desired describes,
// so a resync of an unchanged world writes nothing. It compares what
// aggregate.Equal compares (our labels, address type, ports with the
// API's defaults, endpoints in any order), plus the mirror's annotation,
// and demands that current carries no kubernetes.io/service-name: a label
// someone added that would make kube-proxy use the mirror (and the broker
// ignore it) must be written away.
func Equal(desired, current *discoveryv1.EndpointSlice) bool {
	if desired == nil || current == nil {
		return desired == current
	}
	if _, ok := current.Labels[discoveryv1.LabelServiceName]; ok {
		return false
	}
	for k, v := range desired.Annotations {
		if cv, ok := current.Annotations[k]; !ok || cv != v {
			return false
		}
	}
	return aggregate.Equal(desired, current)
}

// Diff compares the desired mirrors of the KubeLink cluster with the
// current slices by name. Only current slices that are that cluster's
// mirrors (IsMirror) are considered, so the caller may pass every slice of
// the namespace: aggregated slices, other clusters' mirrors and anyone
// else's slices are never updated or deleted. A desired name held by a
// foreign slice lands in create, where the apiserver refuses it
// (AlreadyExists) instead of us taking it over. Updates are the desired
// slices carrying the current resourceVersion. All lists are sorted by
// name.
func Diff(cluster string, desired, current []*discoveryv1.EndpointSlice) (create, update, del []*discoveryv1.EndpointSlice) {
	return aggregate.DiffBy(desired, current, func(c *discoveryv1.EndpointSlice) bool { return IsMirror(cluster, c) }, Equal)
}

func protocol(p string) corev1.Protocol { return corev1.Protocol(p) }
