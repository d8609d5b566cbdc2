// Package meshsvc is the pure planner of netd sync's MeshService mirrors
// (issue #13 item 5). For a remote cluster followed through a KubeLink
// with spec.apiAccess it computes, from that cluster's MeshServices, one
// EndpointSlice per MeshService whose mesh address lies inside the mesh
// CIDR, in netd's namespace. The broker (netd/broker/plan.MirrorClaims)
// makes those addresses allowed IPs and routes of the KubeLink, so a
// MeshService address inside the mesh needs no hand-written spec.egress.
// Addresses outside the mesh CIDR are never mirrored: the seed leaves
// them to the caller's spec.egress.
//
// The contract of the labels is api/synced. A mirror carries no
// kubernetes.io/service-name, so kube-proxy and the EndpointSlice
// controllers ignore it. The package does no I/O: the caller lists the
// remote MeshServices and the local mirrors (Selector), calls Desired,
// then Diff, and applies.
package meshsvc

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelink/kubelink/api/mesh"
	"github.com/kubelink/kubelink/api/synced"
	"github.com/kubelink/kubelink/api/v1alpha1"
)

// AnnotationMeshService holds <namespace>/<name> of the mirrored
// MeshService unabridged; the LabelMeshService value is abridged with a
// hash when <namespace>.<name> exceeds a label value's 63 characters.
const AnnotationMeshService = synced.LabelMeshService

const (
	// namePrefix starts every mirror's name.
	namePrefix = "meshsvc-"
	maxNameLen = 63
	// hashLen hex digits (40 bits) of SHA-256 keep an accidental
	// collision between mirrors of one namespace negligible.
	hashLen = 10
	// maxLabelLen is the limit of a label value.
	maxLabelLen = 63
)

// Desired returns the mirrors, in namespace (netd's), of the MeshServices
// of the remote cluster followed through the KubeLink named cluster, whose
// mesh network is meshCIDR. Each MeshService with a spec.meshAddress
// inside meshCIDR gets one slice, sorted by name, with:
//   - a name that is a DNS label and a function of (cluster, namespace,
//     name) only (Name);
//   - the labels of api/synced: managed-by (the EndpointSlice label and
//     ours), source cluster and kind KubeLink, and the mesh-service label;
//   - one endpoint, the mesh address, ready (and serving) only while the
//     remote gateway reports the MeshService Ok for its current spec: an
//     address nobody serves, or one the remote gateway refused (e.g. a
//     conflicting claim), must not pull traffic into the tunnel;
//   - the ports the remote gateway offers (mesh.OfferedPorts); a
//     MeshService forwarding its whole address offers every port, which
//     an EndpointSlice says with a port without number (one per protocol).
//
// Not mirrored: MeshServices without spec.meshAddress (they bind ports of
// the remote link address, which the link routes already), addresses
// outside meshCIDR (spec.egress covers those), MeshServices being deleted,
// and those whose ports do not resolve (their gateway refuses them too).
// The mesh name in spec.mesh is not compared: mesh names are local to each
// cluster's LocalLinks, the CIDR is what both sides share.
//
// cluster is used verbatim as the source-cluster label value; a KubeLink
// name longer than a label value allows (63) makes the apiserver refuse the
// write, which the caller reports.
func Desired(namespace, cluster string, meshCIDR netip.Prefix, remote []*v1alpha1.MeshService) []*discoveryv1.EndpointSlice {
	if !meshCIDR.IsValid() {
		return nil
	}
	meshCIDR = meshCIDR.Masked()
	var out []*discoveryv1.EndpointSlice
	for _, ms := range remote {
		if ms == nil || ms.DeletionTimestamp != nil || ms.Spec.MeshAddress == "" {
			continue
		}
		addr, err := netip.ParseAddr(ms.Spec.MeshAddress)
		if err != nil || !meshCIDR.Contains(addr.Unmap()) {
			continue
		}
		addr = addr.Unmap()
		offered, err := mesh.OfferedPorts(&ms.Spec)
		if err != nil {
			continue
		}
		ok := ms.Status.State == v1alpha1.StateOK && ms.Status.ObservedGeneration == ms.Generation
		at := discoveryv1.AddressTypeIPv4
		if addr.Is6() {
			at = discoveryv1.AddressTypeIPv6
		}
		out = append(out, &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{
				Name:        Name(cluster, ms.Namespace, ms.Name),
				Namespace:   namespace,
				Labels:      Labels(cluster, ms.Namespace, ms.Name),
				Annotations: map[string]string{AnnotationMeshService: ms.Namespace + "/" + ms.Name},
			},
			AddressType: at,
			Endpoints: []discoveryv1.Endpoint{{
				Addresses:  []string{addr.String()},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr(ok), Serving: ptr(ok)},
			}},
			Ports: ports(offered),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Labels are the labels of the mirror of MeshService namespace/name of the
// cluster followed through KubeLink cluster (api/synced).
func Labels(cluster, namespace, name string) map[string]string {
	return map[string]string{
		discoveryv1.LabelManagedBy: synced.ManagedBy,
		synced.LabelManagedBy:      synced.ManagerName,
		synced.LabelSourceCluster:  cluster,
		synced.LabelSourceKind:     synced.KindKubeLink,
		synced.LabelMeshService:    ServiceLabel(namespace, name),
	}
}

// ServiceLabel is the LabelMeshService value of namespace/name:
// "<namespace>.<name>", or, beyond 63 characters, its first 52 characters,
// "-" and a hash of the whole (a label value must fit 63, and a plain cut
// would let two long names share one value).
func ServiceLabel(namespace, name string) string {
	v := namespace + "." + name
	if len(v) <= maxLabelLen {
		return v
	}
	suffix := "-" + hash(namespace+"\x00"+name)
	return strings.TrimRight(v[:maxLabelLen-len(suffix)], "-.") + suffix
}

// Name names the mirror of MeshService namespace/name of KubeLink cluster:
// "meshsvc-<cluster>-<namespace>-<name>" lowered to DNS-label characters,
// cut to leave room for "-" and a hash of the exact tuple, which is always
// appended. The readable part may collide or be cut ("a-b"+"c" and "a"+"b-c"
// meet); the hash keeps names apart.
func Name(cluster, namespace, name string) string {
	suffix := "-" + hash(cluster+"\x00"+namespace+"\x00"+name)
	readable := namePrefix + sanitize(cluster+"-"+namespace+"-"+name)
	if len(readable) > maxNameLen-len(suffix) {
		readable = readable[:maxNameLen-len(suffix)]
	}
	return strings.TrimRight(readable, "-") + suffix
}

// Selector selects the mirrors netd sync wrote for the KubeLink cluster:
// the set Diff compares Desired against, for a List or an informer.
func Selector(cluster string) string {
	return discoveryv1.LabelManagedBy + "=" + synced.ManagedBy + "," +
		synced.LabelSourceCluster + "=" + cluster + "," +
		synced.LabelSourceKind + "=" + synced.KindKubeLink + "," +
		synced.LabelMeshService
}

// IsMirror reports whether s is a mirror netd sync wrote for the KubeLink
// cluster (the labels of Selector).
func IsMirror(cluster string, s *discoveryv1.EndpointSlice) bool {
	if s == nil {
		return false
	}
	l := s.Labels
	_, svc := l[synced.LabelMeshService]
	return svc && l[discoveryv1.LabelManagedBy] == synced.ManagedBy &&
		l[synced.LabelSourceCluster] == cluster && l[synced.LabelSourceKind] == synced.KindKubeLink
}

// ports turns the offered ports into endpoint ports. Names must be
// unique within a slice: a port's own name, else "" when it is the only
// port, else "<protocol>-<port>"; a generated name another port already
// uses gets a number appended. No offered port means the whole address:
// a port without number for TCP and one for UDP.
func ports(offered []v1alpha1.ServicePort) []discoveryv1.EndpointPort {
	if len(offered) == 0 {
		return []discoveryv1.EndpointPort{
			{Name: ptr("tcp"), Protocol: ptr(protocol(v1alpha1.ProtocolTCP))},
			{Name: ptr("udp"), Protocol: ptr(protocol(v1alpha1.ProtocolUDP))},
		}
	}
	used := map[string]bool{}
	for _, p := range offered {
		if p.Name != "" {
			used[p.Name] = true
		}
	}
	out := make([]discoveryv1.EndpointPort, 0, len(offered))
	for _, p := range offered {
		proto := p.Protocol
		if proto == "" {
			proto = v1alpha1.ProtocolTCP
		}
		n := p.Name
		if n == "" && len(offered) > 1 {
			base := strings.ToLower(proto) + "-" + strconv.Itoa(int(p.Port))
			n = base
			for i := 2; used[n]; i++ {
				n = base + "-" + strconv.Itoa(i)
			}
			used[n] = true
		}
		out = append(out, discoveryv1.EndpointPort{Name: ptr(n), Protocol: ptr(protocol(proto)), Port: ptr(p.Port)})
	}
	return out
}

func hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:hashLen]
}

// sanitize lowers s to DNS-label characters; uniqueness comes from the
// hash, so the mapping need not be injective.
func sanitize(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	return b.String()
}

func ptr[T any](v T) *T { return &v }
