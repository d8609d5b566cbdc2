// Package dnsmirror is the pure planner of netd sync's service mirrors
// (the contract is in api/synced): for one Service of a mesh member that
// netd sync follows through its KubeLink, the EndpointSlices in netd's
// namespace from which the kubelink DNS plugin answers
// <svc>.<ns>.svc.<cluster>.<mesh> and the global names, with addresses
// this cluster can reach.
package dnsmirror

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelink/kubelink/api/synced"
	"github.com/kubelink/kubelink/netd/sync/aggregate"
)

// Remote is what the mirrors of one cluster depend on besides the Service.
type Remote struct {
	// Cluster is the KubeLink's name (the source-cluster label).
	Cluster string
	// CIDR is the KubeLink's spec.cidr: the ClusterIPs routed through the
	// mesh (invalid: none, e.g. a cluster sharing our service CIDR).
	CIDR netip.Prefix
	// MeshAddresses are the addresses of the cluster's MeshServices per
	// Service ("namespace/name"): a meshAddress, or the cluster's link
	// address for MeshServices bound to its ports.
	MeshAddresses map[string][]netip.Addr
}

// Desired plans the mirrors of svc (nil: none) of r in namespace;
// slices are the Service's slices in its cluster (for headless Services),
// exported says whether the cluster exports it.
func Desired(namespace string, r Remote, svc *corev1.Service, slices []*discoveryv1.EndpointSlice, exported bool) []*discoveryv1.EndpointSlice {
	if svc == nil || svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	key := svc.Namespace + "/" + svc.Name
	if len(r.MeshAddresses[key]) > 0 {
		exported = true
	}
	var out []*discoveryv1.EndpointSlice
	if svc.Spec.ClusterIP == corev1.ClusterIPNone {
		return headless(namespace, r, svc, slices, exported)
	}
	byFam := map[discoveryv1.AddressType][]string{}
	for _, ip := range clusterIPs(svc) {
		if a, err := netip.ParseAddr(ip); err == nil && r.CIDR.IsValid() && r.CIDR.Contains(a) {
			byFam[family(a)] = append(byFam[family(a)], a.String())
		}
	}
	if len(byFam) == 0 {
		// Not routed here: the MeshService addresses are the way in.
		for _, a := range r.MeshAddresses[key] {
			byFam[family(a)] = append(byFam[family(a)], a.String())
		}
	}
	var ports []discoveryv1.EndpointPort
	for _, p := range svc.Spec.Ports {
		ports = append(ports, discoveryv1.EndpointPort{Name: ptr(p.Name), Port: ptr(p.Port), Protocol: ptr(protocol(p.Protocol))})
	}
	for fam, addrs := range byFam {
		s := mirror(namespace, r.Cluster, svc, fam, synced.ServiceTypeClusterIP, exported)
		sort.Strings(addrs)
		for _, a := range addrs {
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{a},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}})
		}
		s.Ports = ports
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// headless mirrors the remote endpoints: per family, with hostnames and
// conditions, the ports of the first slice of the family (DNS needs the
// names, not per-endpoint port variants).
func headless(namespace string, r Remote, svc *corev1.Service, slices []*discoveryv1.EndpointSlice, exported bool) []*discoveryv1.EndpointSlice {
	byFam := map[discoveryv1.AddressType]*discoveryv1.EndpointSlice{}
	seen := map[string]bool{}
	sorted := append([]*discoveryv1.EndpointSlice(nil), slices...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	for _, rs := range sorted {
		if rs.Labels[discoveryv1.LabelManagedBy] == synced.ManagedBy {
			continue // ours, in the remote cluster: not its own endpoints
		}
		for _, ep := range rs.Endpoints {
			if len(ep.Addresses) == 0 {
				continue
			}
			a, err := netip.ParseAddr(ep.Addresses[0])
			if err != nil || seen[a.String()] {
				continue
			}
			seen[a.String()] = true
			fam := family(a)
			s := byFam[fam]
			if s == nil {
				s = mirror(namespace, r.Cluster, svc, fam, synced.ServiceTypeHeadless, exported)
				for _, p := range rs.Ports {
					s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: copyPtr(p.Name), Port: copyPtr(p.Port), Protocol: copyPtr(p.Protocol)})
				}
				byFam[fam] = s
			}
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{a.String()}, Hostname: copyPtr(ep.Hostname),
				Conditions: discoveryv1.EndpointConditions{Ready: copyPtr(ep.Conditions.Ready), Serving: copyPtr(ep.Conditions.Serving),
					Terminating: copyPtr(ep.Conditions.Terminating)}})
		}
	}
	var out []*discoveryv1.EndpointSlice
	for _, s := range byFam {
		if len(s.Endpoints) > aggregate.MaxEndpoints {
			s.Endpoints = s.Endpoints[:aggregate.MaxEndpoints]
		}
		sort.Slice(s.Endpoints, func(i, j int) bool { return s.Endpoints[i].Addresses[0] < s.Endpoints[j].Addresses[0] })
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func mirror(namespace, cluster string, svc *corev1.Service, fam discoveryv1.AddressType, typ string, exported bool) *discoveryv1.EndpointSlice {
	l := map[string]string{
		discoveryv1.LabelManagedBy:   synced.ManagedBy,
		synced.LabelManagedBy:        synced.ManagerName,
		synced.LabelSourceCluster:    cluster,
		synced.LabelSourceKind:       synced.KindKubeLink,
		synced.LabelServiceNamespace: svc.Namespace,
		synced.LabelServiceName:      svc.Name,
		synced.LabelServiceType:      typ,
	}
	if exported {
		l[synced.LabelExported] = "true"
	}
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: namespace, Name: Name(cluster, svc.Namespace, svc.Name, string(fam)), Labels: l},
		AddressType: fam,
	}
}

// Name is a mirror's name: readable "svc-<cluster>-<ns>-<name>" cut to
// fit, then a hash of the whole tuple, so names never collide.
func Name(cluster, namespace, name, fam string) string {
	sum := sha256.Sum256([]byte(cluster + "\x00" + namespace + "\x00" + name + "\x00" + fam))
	h := hex.EncodeToString(sum[:])[:10]
	base := strings.ToLower("svc-" + cluster + "-" + namespace + "-" + name)
	if max := 63 - len(h) - 1; len(base) > max {
		base = strings.TrimRight(base[:max], "-.")
	}
	return base + "-" + h
}

// Key is the "cluster/namespace/name" a mirror belongs to ("" if s is not
// a service mirror of ours).
func Key(s *discoveryv1.EndpointSlice) string {
	l := s.Labels
	if l[discoveryv1.LabelManagedBy] != synced.ManagedBy || l[synced.LabelServiceName] == "" || l[discoveryv1.LabelServiceName] != "" {
		return ""
	}
	return l[synced.LabelSourceCluster] + "/" + l[synced.LabelServiceNamespace] + "/" + l[synced.LabelServiceName]
}

// Diff compares desired with the current mirrors of one Service of one
// cluster (current may hold anything; only mirrors of that key count).
func Diff(key string, desired, current []*discoveryv1.EndpointSlice) (create, update, del []*discoveryv1.EndpointSlice) {
	return aggregate.DiffBy(desired, current, func(c *discoveryv1.EndpointSlice) bool { return Key(c) == key }, Equal)
}

// Equal is aggregate.Equal, which ignores labels current has beyond
// desired's, except for the exported label: it is ours and must go when
// the export does.
func Equal(desired, current *discoveryv1.EndpointSlice) bool {
	if _, has := current.Labels[synced.LabelExported]; has && desired.Labels[synced.LabelExported] == "" {
		return false
	}
	return aggregate.Equal(desired, current)
}

func clusterIPs(s *corev1.Service) []string {
	if len(s.Spec.ClusterIPs) > 0 {
		return s.Spec.ClusterIPs
	}
	if s.Spec.ClusterIP != "" {
		return []string{s.Spec.ClusterIP}
	}
	return nil
}

func family(a netip.Addr) discoveryv1.AddressType {
	if a.Is4() || a.Is4In6() {
		return discoveryv1.AddressTypeIPv4
	}
	return discoveryv1.AddressTypeIPv6
}

func protocol(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

func ptr[T any](v T) *T { return &v }

func copyPtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
