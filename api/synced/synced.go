// Package synced is the contract of the objects `netd sync` writes into
// the local cluster: the labels that mark them, name their source cluster
// and tie them to what they mirror. netd sync writes them; the broker
// (remote MeshService addresses, issue #13 item 5), the CoreDNS plugin and
// the cleanup selector read them. Keeping the keys here, outside the
// writer, lets readers depend on the contract and not on the controller.
package synced

const (
	// ManagedBy is our value of the EndpointSlice label
	// endpointslice.kubernetes.io/managed-by. The EndpointSlice controller
	// and the mirroring controller leave slices with a foreign value alone;
	// netd sync only ever updates or deletes slices carrying it.
	ManagedBy = "netd-sync.kubelink.mandelsoft.org"

	// LabelManagedBy marks every object netd sync writes (EndpointSlices,
	// ServiceImports, Services and namespaces it creates) with the value
	// ManagerName. CleanupSelector selects them all.
	LabelManagedBy = "kubelink.mandelsoft.org/managed-by"
	// ManagerName is the value of LabelManagedBy.
	ManagerName = "netd-sync"
	// CleanupSelector selects everything netd sync ever wrote:
	//   kubectl delete endpointslices,serviceimports,services -A -l kubelink.mandelsoft.org/managed-by=netd-sync
	CleanupSelector = LabelManagedBy + "=" + ManagerName

	// LabelSourceCluster names the remote cluster an object was built from:
	// the ClusterLink's name, or the KubeLink's name for clusters followed
	// through spec.apiAccess.
	LabelSourceCluster = "kubelink.mandelsoft.org/source-cluster"
	// LabelSourceKind says which kind of link the source cluster is
	// followed through: ClusterLink or KubeLink.
	LabelSourceKind = "kubelink.mandelsoft.org/source-kind"

	// LabelSvclinkCluster is svclink's own cluster label; slices built for
	// a ClusterLink carry it too, so svclink's cleanup tooling
	// (svclink.cloudpilot.ai/cluster=*) still finds them after a migration.
	LabelSvclinkCluster = "svclink.cloudpilot.ai/cluster"

	// LabelMeshService marks a mirror of a remote cluster's MeshService
	// (an EndpointSlice without kubernetes.io/service-name, so kube-proxy
	// ignores it) in netd's namespace; the value is <namespace>.<name> of the
	// remote MeshService. Its endpoints are the MeshService's mesh
	// addresses; the broker makes those inside the mesh CIDR allowed IPs
	// and routes of the source cluster's link.
	LabelMeshService = "kubelink.mandelsoft.org/mesh-service"
)

// Service mirrors: netd sync writes, in netd's namespace, one EndpointSlice
// per address family for every Service of every cluster it follows through
// a KubeLink (the mesh members; filters apply). Without
// kubernetes.io/service-name, so kube-proxy ignores them; the kubelink DNS
// plugin answers <svc>.<ns>.svc.<cluster>.<mesh> (kubernetes mode) and the
// global names from them.
//
// Endpoints are addresses this cluster can reach: for a ClusterIP Service
// its ClusterIPs where the KubeLink's spec.cidr holds them, else the mesh
// address of a MeshService of the remote cluster for that Service, else
// the Service gets no mirror (unreachable from here); ClusterIP endpoints
// are always ready (DNS answers a ClusterIP whatever its backends). For a
// headless Service the remote endpoints with their hostnames and
// conditions. Ports: the Service's ports (ClusterIP) or the endpoint ports
// (headless), with their names, for SRV.
const (
	// LabelServiceNamespace and LabelServiceName name the remote Service.
	LabelServiceNamespace = "kubelink.mandelsoft.org/service-namespace"
	LabelServiceName      = "kubelink.mandelsoft.org/service-name"
	// LabelServiceType is ServiceTypeClusterIP or ServiceTypeHeadless.
	LabelServiceType = "kubelink.mandelsoft.org/service-type"
	// LabelExported is "true" when the remote cluster exports the Service
	// (a ServiceExport, or a MeshService for it): it then joins the global
	// name <svc>.<ns>.svc.global.<mesh>.
	LabelExported = "kubelink.mandelsoft.org/exported"

	ServiceTypeClusterIP = "ClusterIP"
	ServiceTypeHeadless  = "Headless"
)

// MirrorSelector selects the service mirrors of every cluster.
const MirrorSelector = LabelManagedBy + "=" + ManagerName + "," + LabelServiceName

// Source kinds, values of LabelSourceKind.
const (
	KindClusterLink = "ClusterLink"
	KindKubeLink    = "KubeLink"
)
