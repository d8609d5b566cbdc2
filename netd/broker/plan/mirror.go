package plan

import (
	"net/netip"

	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/kubelink/kubelink/api/synced"
)

// MirrorSelector is the label selector of netd sync's MeshService mirrors
// (api/synced): ours by managed-by, and carrying the mesh-service label.
// The broker's informer lists only these, in its own namespace;
// MirrorClaims checks every condition again, so a selector that lets more
// through cannot widen what becomes a route.
var MirrorSelector = discoveryv1.LabelManagedBy + "=" + synced.ManagedBy + "," + synced.LabelMeshService

// MirrorClaims extracts from EndpointSlices the remote MeshService
// addresses netd sync mirrored, by KubeLink name (the source-cluster
// label). Routes are a privilege: whoever may write EndpointSlices
// somewhere must not be able to pull mesh traffic into a tunnel. So only
// slices that are exactly netd sync's mirrors count:
//   - in namespace (the broker's own; empty: none);
//   - labelled managed-by synced.ManagedBy, with the mesh-service label and
//     source kind KubeLink (a ClusterLink's name is no KubeLink's);
//   - without kubernetes.io/service-name (a mirror is no Service's slice;
//     kube-proxy would balance over one that has it);
//   - address type IPv4 or IPv6.
//
// Of those, the addresses of endpoints that are not explicitly not ready
// (the remote gateway does not serve the MeshService) are claimed. Whether
// a claim becomes a route is mesh.Set.LearnServiceAddresses' decision.
func MirrorClaims(namespace string, slices []*discoveryv1.EndpointSlice) map[string][]netip.Addr {
	if namespace == "" {
		return nil
	}
	claims := map[string][]netip.Addr{}
	for _, s := range slices {
		if s == nil || s.Namespace != namespace || s.DeletionTimestamp != nil {
			continue
		}
		lb := s.Labels
		link := lb[synced.LabelSourceCluster]
		if lb[discoveryv1.LabelManagedBy] != synced.ManagedBy || lb[synced.LabelMeshService] == "" || link == "" ||
			lb[synced.LabelSourceKind] != synced.KindKubeLink {
			continue
		}
		if _, ok := lb[discoveryv1.LabelServiceName]; ok {
			continue
		}
		if s.AddressType != discoveryv1.AddressTypeIPv4 && s.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, a := range ep.Addresses {
				addr, err := netip.ParseAddr(a)
				if err != nil || addr.Is4() != (s.AddressType == discoveryv1.AddressTypeIPv4) {
					continue
				}
				claims[link] = append(claims[link], addr)
			}
		}
	}
	return claims
}
