// Package mcs is the pure planner of the Multi-Cluster Services API part of
// `netd sync` (KEP-1645, issue #13 item 6). For one namespace/name it takes
// what every member cluster (the local one and each followed remote) knows
// about the ServiceExport of that name and computes what the local cluster
// must hold: a ServiceImport, MCS EndpointSlices owned by it, and the
// conditions of the local ServiceExport. It does no I/O: the caller reads
// its snapshots, calls Desired, compares with ImportEqual / Diff /
// MergeConditions and writes only what differs, so a resync of an unchanged
// world writes nothing.
//
// # The ServiceImport
//
// A ServiceExport in any member gives a ServiceImport of the same
// namespace/name in every member (each member's netd sync plans its own).
// Its properties come from the exported Services:
//
//   - type: Headless when the winning Service is headless (clusterIP None),
//     else ClusterSetIP;
//   - ports: the union of the exported Services' ports, merged first by
//     name, then by protocol and port number (KEP-1645 "Service Port");
//   - ips: the ClusterIPs of the local Service of the same namespace/name
//     when the import is ClusterSetIP and that Service has ClusterIPs. In
//     kubelink the local same-named Service already balances over every
//     cluster's endpoints through aggregation (package aggregate), so it
//     is the clusterset VIP; without it ips stay empty;
//   - ipFamilies: the families of ips, or, without ips, the union of the
//     contributing Services' families in precedence order;
//   - sessionAffinity, sessionAffinityConfig, internalTrafficPolicy and
//     trafficDistribution: the winner's;
//   - status.clusters: the contributing clusters, sorted.
//
// ServiceExport.spec.exportedLabels/exportedAnnotations are optional in the
// KEP and not propagated.
//
// # Conflict resolution
//
// The rule is KEP-1645's "Constraints and Conflict Resolution": valid
// exports are ordered by ServiceExport creationTimestamp, oldest first (a
// tie by cluster name, so every member orders alike), and the first one
// holding a property decides it. Health does not enter the order: the
// import's shape must not flap with a link.
//
//   - type, sessionAffinity, sessionAffinityConfig, internalTrafficPolicy,
//     trafficDistribution: the oldest export's value. The other clusters
//     still contribute all their endpoints: the KEP decides these
//     properties for the service as a whole and, by namespace sameness,
//     their backends stay fungible.
//   - ports: every port joins the union unless an older export already
//     declared a port of the same name with another (port, protocol,
//     appProtocol), or the same protocol and port number under another
//     name. Then the older one stays and the newer cluster's endpoints are
//     not offered on that port, since "traffic must be directed only to
//     endpoints from constituent services that actually expose the
//     targeted port". A cluster left with no port in common (while the
//     import has ports) contributes no endpoints and is not listed in
//     status.clusters.
//   - ipFamilies: differing families among the contributing Services are
//     reported (IPFamilyConflict: traffic of one family reaches only the
//     clusters that have it) and change nothing else.
//
// Conflicts are reported on every valid export, as the KEP's policy asks
// ("a ServiceExportConflict condition will be set on all ServiceExports for
// the conflicted service"), not only on the losers: each member's netd sync
// sees the same exports and writes the Conflict condition of its own
// export. The message names each field, the winning cluster and value, and
// the clusters that differ.
//
// An export is valid when its Service exists and is not of type
// ExternalName. Invalid exports and exports being deleted take no part:
// they neither win nor contribute. Without a valid export there is no
// ServiceImport.
//
// # The EndpointSlices
//
// Per contributing cluster and address family, computed by
// aggregate.Desired against the import ports that cluster agrees with:
// remote clusters by their address mode (pod: pod IPs with target ports;
// service: the cluster's ClusterIP with the Service ports), the local
// cluster always with its own pod IPs; endpoint conditions copied; an
// unhealthy cluster's endpoints not ready. The slices carry the MCS labels
// (multicluster.kubernetes.io/service-name and source-cluster), our
// managed-by, cleanup and source-cluster labels, and never
// kubernetes.io/service-name: kube-proxy must not consume them (the local
// Service gets its endpoints from aggregation). Their controller is the
// ServiceImport, so they need its UID: until the caller knows it
// (Input.ImportUID), Desired plans no slices and sets Plan.AwaitImport.
// Names are aggregate.SliceName of "mcs-<service>" with a variant that no
// aggregation slice uses, so they never collide with aggregation slices of
// the same Service.
package mcs

import (
	"sort"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	mcsv1a1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"

	"github.com/kubelink/kubelink/api/synced"
	"github.com/kubelink/kubelink/netd/sync/aggregate"
)

// Export is one member cluster's export of the service.
type Export struct {
	// Cluster is the member's name: the value of the MCS source-cluster
	// and synced.LabelSourceCluster labels, and of status.clusters.
	Cluster string
	// Kind is the kind of link a remote cluster is followed through
	// (synced.KindClusterLink or synced.KindKubeLink); when set it labels
	// the slices with synced.LabelSourceKind. Empty for the local cluster.
	Kind string
	// Local marks the local cluster's own export; Desired returns its
	// conditions.
	Local bool
	// Export is the cluster's ServiceExport; nil entries are ignored.
	Export *mcsv1a1.ServiceExport
	// Service is the exported Service in that cluster; nil when missing.
	Service *corev1.Service
	// Slices are that cluster's own EndpointSlices of the Service
	// (kubernetes.io/service-name); slices netd sync wrote there are
	// skipped.
	Slices []*discoveryv1.EndpointSlice
	// Mode and Healthy apply to remote clusters as in package aggregate.
	// The local cluster always uses its pod IPs and is always healthy.
	Mode    aggregate.AddressMode
	Healthy bool
}

// Input is everything Desired needs for one namespace/name.
type Input struct {
	Namespace, Name string
	// LocalService is the same-named local Service (nil if none); its
	// ClusterIPs become the import's ips.
	LocalService *corev1.Service
	// ImportUID is the UID of the existing local ServiceImport, "" if none
	// exists yet.
	ImportUID types.UID
	// Exports of every member, in any order; one per cluster (a later
	// duplicate of a cluster name is ignored).
	Exports []Export
}

// ClusterValue is one cluster's value of a conflicting property.
type ClusterValue struct {
	Cluster string
	Value   string
}

// Conflict is one property on which valid exports disagree.
type Conflict struct {
	Reason mcsv1a1.ServiceExportConditionReason
	// Field names the property: "type", "ports[http]", "ports[80/TCP]",
	// "sessionAffinity", ...
	Field string
	// Winner is the cluster of the oldest export holding the property and
	// Value its value, which the ServiceImport uses.
	Winner string
	Value  string
	// Others are the clusters with a different value, sorted by cluster.
	Others []ClusterValue
}

// Plan is the outcome of Desired.
type Plan struct {
	// Import is the desired ServiceImport; nil means there must be none.
	Import *mcsv1a1.ServiceImport
	// AwaitImport is set when an import is wanted but Input.ImportUID is
	// empty: Slices are not planned (they need the owner's UID). The
	// caller creates the import and plans again, and must not apply a
	// slice Diff meanwhile.
	AwaitImport bool
	// Slices are the desired MCS EndpointSlices, sorted by name.
	Slices []*discoveryv1.EndpointSlice
	// LocalConditions are Valid, Ready and Conflict for the local
	// ServiceExport, to be merged with MergeConditions; nil when the local
	// cluster does not export the service.
	LocalConditions []metav1.Condition
	// Conflicts among the valid exports, sorted by reason and field, for
	// events and metrics.
	Conflicts []Conflict
	// Skipped exports contribute no endpoints; the reasons say why.
	Skipped []aggregate.Skip
}

// Desired computes the plan for in. now is the LastTransitionTime of the
// planned conditions; MergeConditions keeps the existing one where the
// status does not change, so re-plans at another time write nothing.
func Desired(in Input, now metav1.Time) Plan {
	var plan Plan
	exports, local := collect(in)
	var valid []*export
	for _, e := range exports {
		if e.invalid == "" {
			valid = append(valid, e)
		} else {
			plan.Skipped = append(plan.Skipped, aggregate.Skip{Cluster: e.Cluster, Reason: e.invalidMsg})
		}
	}
	var m *merged
	if len(valid) > 0 {
		m = merge(valid)
		plan.Conflicts = m.conflicts
		plan.Import = buildImport(in, m)
		for _, e := range valid {
			if !e.contributes {
				plan.Skipped = append(plan.Skipped, aggregate.Skip{Cluster: e.Cluster,
					Reason: "no port of its Service agrees with the ServiceImport"})
			}
		}
		if in.ImportUID == "" {
			plan.AwaitImport = true
		} else {
			var skipped []aggregate.Skip
			plan.Slices, skipped = buildSlices(in, m)
			plan.Skipped = append(plan.Skipped, skipped...)
		}
	}
	if local != nil {
		plan.LocalConditions = localConditions(in, local, m, now)
	}
	return plan
}

// export is an Export with what the planner derived from it.
type export struct {
	Export
	// invalid is the Valid condition's False reason, "" when valid;
	// invalidMsg its message.
	invalid    mcsv1a1.ServiceExportConditionReason
	invalidMsg string
	// agreed are the import ports this cluster serves; contributes says
	// whether it offers endpoints at all.
	agreed      []mcsv1a1.ServicePort
	contributes bool
}

// collect drops nil, withdrawn and duplicate exports, checks validity and
// orders the rest by precedence. It also returns the local export, which
// gets conditions even when invalid.
func collect(in Input) ([]*export, *export) {
	var out []*export
	var local *export
	seen := map[string]bool{}
	for _, x := range in.Exports {
		if x.Export == nil || x.Export.DeletionTimestamp != nil || seen[x.Cluster] {
			continue
		}
		seen[x.Cluster] = true
		e := &export{Export: x}
		if e.Local {
			// The local pods are reachable from here without the mesh, and
			// our own cluster is never gated by link health.
			e.Mode = aggregate.ModePod
			e.Healthy = true
			if local == nil {
				local = e
			}
		}
		switch {
		case e.Service == nil:
			e.invalid = mcsv1a1.ServiceExportReasonNoService
			e.invalidMsg = "Service " + in.Namespace + "/" + in.Name + " not found in cluster " + e.Cluster
		case e.Service.Spec.Type == corev1.ServiceTypeExternalName:
			e.invalid = mcsv1a1.ServiceExportReasonInvalidServiceType
			e.invalidMsg = "Service " + in.Namespace + "/" + in.Name + " in cluster " + e.Cluster +
				" is of type ExternalName, which cannot be exported"
		}
		out = append(out, e)
	}
	sort.SliceStable(out, func(i, j int) bool { return older(out[i], out[j]) })
	return out, local
}

// older orders exports by creationTimestamp, then cluster name, so every
// member that sees the same exports picks the same winner.
func older(a, b *export) bool {
	ta, tb := a.serviceExport().CreationTimestamp, b.serviceExport().CreationTimestamp
	if !ta.Equal(&tb) {
		return ta.Before(&tb)
	}
	return a.Cluster < b.Cluster
}

func ptr[T any](v T) *T { return &v }

// managedLabels mark everything we write for the cleanup selector.
func managedLabels() map[string]string {
	return map[string]string{synced.LabelManagedBy: synced.ManagerName}
}

// serviceExport is the cluster's ServiceExport object (the embedded
// Export's field of the same name).
func (e *export) serviceExport() *mcsv1a1.ServiceExport { return e.Export.Export }
