package mcs

import (
	"sort"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	mcsv1a1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"

	"github.com/kubelink/kubelink/api/synced"
	"github.com/kubelink/kubelink/netd/sync/aggregate"
)

// ImportEqual reports whether current already carries everything desired
// sets: ImportSpecEqual and ImportStatusEqual. Status is a subresource of
// ServiceImport, so a caller that writes needs the two halves separately.
func ImportEqual(desired, current *mcsv1a1.ServiceImport) bool {
	if desired == nil || current == nil {
		return desired == current
	}
	return ImportSpecEqual(desired, current) && ImportStatusEqual(desired, current)
}

// ImportSpecEqual compares what an Update writes: our labels (other labels
// on current are someone else's and ignored) and the spec. nil and empty
// lists compare equal, as they do after a round trip through the
// apiserver.
func ImportSpecEqual(desired, current *mcsv1a1.ServiceImport) bool {
	if desired == nil || current == nil {
		return desired == current
	}
	for k, v := range desired.Labels {
		if cv, ok := current.Labels[k]; !ok || cv != v {
			return false
		}
	}
	return equality.Semantic.DeepEqual(normSpec(desired.Spec), normSpec(current.Spec))
}

// ImportStatusEqual compares what an UpdateStatus writes: the set of
// clusters and endpointSliceObjects. Import conditions are not ours.
func ImportStatusEqual(desired, current *mcsv1a1.ServiceImport) bool {
	if desired == nil || current == nil {
		return desired == current
	}
	return desired.Status.EndpointSliceObjects == current.Status.EndpointSliceObjects &&
		equality.Semantic.DeepEqual(clusters(desired), clusters(current))
}

// UpdateImport returns a copy of current with the fields desired owns (our
// labels, spec, status.clusters and endpointSliceObjects) taken from
// desired; everything else, including resourceVersion and foreign labels,
// is current's. Use it for Update and UpdateStatus.
func UpdateImport(desired, current *mcsv1a1.ServiceImport) *mcsv1a1.ServiceImport {
	u := current.DeepCopy()
	if u.Labels == nil {
		u.Labels = map[string]string{}
	}
	for k, v := range desired.Labels {
		u.Labels[k] = v
	}
	desired.Spec.DeepCopyInto(&u.Spec)
	u.Status.Clusters = append([]mcsv1a1.ClusterStatus(nil), desired.Status.Clusters...)
	u.Status.EndpointSliceObjects = desired.Status.EndpointSliceObjects
	return u
}

// normSpec applies the protocol default to a copy, so a hand-written
// import without protocols compares alike.
func normSpec(s mcsv1a1.ServiceImportSpec) mcsv1a1.ServiceImportSpec {
	out := *s.DeepCopy()
	for i := range out.Ports {
		out.Ports[i].Protocol = protocol(out.Ports[i].Protocol)
	}
	return out
}

func clusters(imp *mcsv1a1.ServiceImport) []string {
	var out []string
	for _, c := range imp.Status.Clusters {
		out = append(out, c.Cluster)
	}
	sort.Strings(out)
	return out
}

// Equal reports whether the current MCS slice carries everything desired
// sets (aggregate.Equal: our labels, address type, ports, endpoints, owner)
// and no kubernetes.io/service-name label, which would hand it to
// kube-proxy.
func Equal(desired, current *discoveryv1.EndpointSlice) bool {
	if current != nil {
		if _, ok := current.Labels[discoveryv1.LabelServiceName]; ok {
			return false
		}
	}
	return aggregate.Equal(desired, current)
}

// ours says whether current is an MCS slice netd sync wrote for service.
// Aggregation slices of the same Service carry our managed-by too; they
// never carry the MCS service-name label and are owned by the Service, and
// either keeps them out, so a caller passing the whole namespace cannot
// make Diff delete them.
func ours(service string, s *discoveryv1.EndpointSlice) bool {
	if s == nil || s.Labels[mcsv1a1.LabelServiceName] != service ||
		s.Labels[discoveryv1.LabelManagedBy] != synced.ManagedBy {
		return false
	}
	for _, o := range s.OwnerReferences {
		if o.Controller != nil && *o.Controller && o.Kind == "Service" && o.APIVersion == "v1" {
			return false
		}
	}
	return true
}

// Diff compares desired MCS slices of service with the current ones by
// name. Only current slices that are ours (MCS service-name label of
// service, our managed-by, not owned by a Service) are updated or deleted.
// A desired name held by someone else's slice lands in create, where the
// apiserver refuses it (AlreadyExists) instead of us taking it over.
// Updates are the desired slices carrying the current resourceVersion, ready
// for an Update call. All three lists are sorted by name.
func Diff(service string, desired, current []*discoveryv1.EndpointSlice) (create, update, del []*discoveryv1.EndpointSlice) {
	return aggregate.DiffBy(desired, current, func(c *discoveryv1.EndpointSlice) bool { return ours(service, c) }, Equal)
}
