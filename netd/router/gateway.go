package router

import (
	"fmt"
	"net/netip"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
)

// Gateway states.
const (
	// GatewayKnown: the holder's pod has an IP.
	GatewayKnown = "known"
	// GatewayUnknown: the lease has a holder but its pod is missing or has
	// no IP yet; the router keeps the routes it has.
	GatewayUnknown = "unknown"
	// GatewayNone: no lease or no holder (released, or never elected); the
	// router removes its routes.
	GatewayNone = "none"
)

// Gateway is the active gateway as the Lease and the pods describe it.
type Gateway struct {
	State  string
	Holder string
	// IP is the holder pod's IP (the node IP for a hostNetwork broker).
	IP netip.Addr
	// HostIP is the holder pod's status.hostIP, the address of its node
	// on the node network, where the VXLAN of the other nodes goes (zero
	// when the pod has none, or not an IPv4 one). It differs from IP for
	// a pod-mode gateway.
	HostIP netip.Addr
	// Reason says why the state is not known, for logs.
	Reason string
}

// ResolveGateway finds the gateway: the lease's holder is the name of a
// broker pod in the lease's namespace; its pod IP is the gateway (the node
// IP for hostNetwork brokers), its host IP the gateway's node. The host IP
// is also a fallback for the pod IP of hostNetwork pods, where it is the
// same address.
func ResolveGateway(lease *coordinationv1.Lease, pod func(name string) *corev1.Pod) Gateway {
	if lease == nil {
		return Gateway{State: GatewayNone, Reason: "no lease"}
	}
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
		return Gateway{State: GatewayNone, Reason: "the lease has no holder"}
	}
	g := Gateway{State: GatewayUnknown, Holder: *lease.Spec.HolderIdentity}
	p := pod(g.Holder)
	if p == nil {
		g.Reason = "holder pod not found"
		return g
	}
	ip := p.Status.PodIP
	if ip == "" && p.Spec.HostNetwork {
		ip = p.Status.HostIP
	}
	if ip == "" {
		g.Reason = "holder pod has no IP yet"
		return g
	}
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Is4() {
		g.Reason = fmt.Sprintf("holder pod IP %q is not an IPv4 address", ip)
		return g
	}
	g.State, g.IP, g.Reason = GatewayKnown, a, ""
	if h, err := netip.ParseAddr(p.Status.HostIP); err == nil && h.Is4() {
		g.HostIP = h
	}
	return g
}
