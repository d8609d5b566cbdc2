package mcs

import (
	"sort"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1a1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"

	"github.com/kubelink/kubelink/api/synced"
	"github.com/kubelink/kubelink/netd/sync/aggregate"
)

// maxIPs is the ServiceImport's limit on spec.ips (one per family).
const maxIPs = 2

func buildImport(in Input, m *merged) *mcsv1a1.ServiceImport {
	imp := &mcsv1a1.ServiceImport{
		ObjectMeta: metav1.ObjectMeta{Namespace: in.Namespace, Name: in.Name, Labels: managedLabels()},
		Spec: mcsv1a1.ServiceImportSpec{
			Type: m.typ,
			// Never nil: spec.ports is a required field of the CRD.
			Ports:                 make([]mcsv1a1.ServicePort, 0, len(m.ports)),
			SessionAffinity:       m.affinity,
			SessionAffinityConfig: m.affinityConfig.DeepCopy(),
			InternalTrafficPolicy: copyPtr(m.itp),
			TrafficDistribution:   copyPtr(m.td),
		},
		Status: mcsv1a1.ServiceImportStatus{
			// This implementation always publishes endpoints as MCS
			// EndpointSlices.
			EndpointSliceObjects: mcsv1a1.EndpointSliceObjectsPresent,
		},
	}
	for _, p := range m.ports {
		p.AppProtocol = copyPtr(p.AppProtocol)
		imp.Spec.Ports = append(imp.Spec.Ports, p)
	}
	if m.typ == mcsv1a1.ClusterSetIP {
		// The local same-named Service balances over all clusters'
		// endpoints (aggregation), so its ClusterIPs are the clusterset
		// VIP.
		ips := clusterIPs(in.LocalService)
		if len(ips) > maxIPs {
			ips = ips[:maxIPs]
		}
		imp.Spec.IPs = ips
		for _, ip := range ips {
			f, _ := familyOf(ip)
			imp.Spec.IPFamilies = append(imp.Spec.IPFamilies, f)
		}
	}
	if len(imp.Spec.IPs) == 0 {
		imp.Spec.IPFamilies = append([]corev1.IPFamily(nil), m.families...)
	}
	for _, e := range m.contributors {
		imp.Status.Clusters = append(imp.Status.Clusters, mcsv1a1.ClusterStatus{Cluster: e.Cluster})
	}
	sort.Slice(imp.Status.Clusters, func(i, j int) bool {
		return imp.Status.Clusters[i].Cluster < imp.Status.Clusters[j].Cluster
	})
	return imp
}

// buildSlices plans the MCS slices of every contributor by reusing the
// aggregation planner against the import ports the contributor agrees
// with, then renames, relabels and re-owns them.
func buildSlices(in Input, m *merged) ([]*discoveryv1.EndpointSlice, []aggregate.Skip) {
	var out []*discoveryv1.EndpointSlice
	var skipped []aggregate.Skip
	for _, e := range m.contributors {
		local := aggregate.LocalService{
			Namespace: in.Namespace,
			Name:      in.Name,
			UID:       in.ImportUID,
			Ports:     servicePorts(e.agreed),
			Headless:  m.typ == mcsv1a1.Headless,
		}
		c := aggregate.Cluster{
			Name:    e.Cluster,
			Mode:    e.Mode,
			Healthy: e.Healthy,
			Service: &aggregate.RemoteService{
				ClusterIPs: clusterIPs(e.Service),
				Ports:      e.Service.Spec.Ports,
				Headless:   headless(e.Service),
			},
			Slices: e.Slices,
		}
		p := aggregate.Desired(local, []aggregate.Cluster{c})
		skipped = append(skipped, p.Skipped...)
		for _, s := range p.Slices {
			fam := "ipv4"
			if s.AddressType == discoveryv1.AddressTypeIPv6 {
				fam = "ipv6"
			}
			// The aggregation name (unique per cluster, family, port
			// variant and part) becomes the variant: aggregation slices
			// never use an "mcs/" variant, so the names cannot meet.
			s.Name = SliceName(in.Namespace, in.Name, e.Cluster, fam, s.Name)
			s.Labels = SliceLabels(in.Name, e.Cluster, e.Kind)
			s.OwnerReferences = []metav1.OwnerReference{importOwner(in)}
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, skipped
}

// SliceName names an MCS slice: aggregate.SliceName of "mcs-<service>"
// with the variant prefixed "mcs/", so it reads as an MCS slice and never
// equals an aggregation slice's name.
func SliceName(namespace, service, cluster, fam, variant string) string {
	return aggregate.SliceName(namespace, "mcs-"+service, cluster, fam, "mcs/"+variant)
}

// SliceLabels are the labels of an MCS slice of service from cluster
// (kind may be empty). They deliberately lack kubernetes.io/service-name:
// kube-proxy and the EndpointSlice controller must ignore these slices.
func SliceLabels(service, cluster, kind string) map[string]string {
	l := map[string]string{
		mcsv1a1.LabelServiceName:   service,
		mcsv1a1.LabelSourceCluster: cluster,
		discoveryv1.LabelManagedBy: synced.ManagedBy,
		synced.LabelManagedBy:      synced.ManagerName,
		synced.LabelSourceCluster:  cluster,
	}
	if kind != "" {
		l[synced.LabelSourceKind] = kind
	}
	return l
}

// importOwner makes the ServiceImport the slices' controller, so deleting
// the import garbage-collects them. BlockOwnerDeletion stays unset: it
// would need update rights on serviceimports/finalizers for no benefit.
func importOwner(in Input) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion: mcsv1a1.GroupVersion.String(),
		Kind:       mcsv1a1.ServiceImportKindName,
		Name:       in.Name,
		UID:        in.ImportUID,
		Controller: ptr(true),
	}
}

func servicePorts(ps []mcsv1a1.ServicePort) []corev1.ServicePort {
	var out []corev1.ServicePort
	for _, p := range ps {
		out = append(out, corev1.ServicePort{
			Name:        p.Name,
			Protocol:    p.Protocol,
			AppProtocol: copyPtr(p.AppProtocol),
			Port:        p.Port,
		})
	}
	return out
}
