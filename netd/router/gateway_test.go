package router

import (
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestResolveGateway(t *testing.T) {
	holder := func(h string) *coordinationv1.Lease {
		return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "l"}, Spec: coordinationv1.LeaseSpec{HolderIdentity: &h}}
	}
	pods := map[string]*corev1.Pod{
		"node-mode": {Spec: corev1.PodSpec{HostNetwork: true}, Status: corev1.PodStatus{PodIP: "10.0.0.5", HostIP: "10.0.0.5"}},
		"host-only": {Spec: corev1.PodSpec{HostNetwork: true}, Status: corev1.PodStatus{HostIP: "10.0.0.6"}},
		"pod-mode":  {Status: corev1.PodStatus{PodIP: "10.1.0.7", HostIP: "10.0.0.7"}},
		"pending":   {Status: corev1.PodStatus{HostIP: "10.0.0.8"}},
		"ipv6":      {Status: corev1.PodStatus{PodIP: "fd00::1"}},
	}
	pod := func(n string) *corev1.Pod { return pods[n] }
	for _, tc := range []struct {
		lease *coordinationv1.Lease
		state string
		ip    string
	}{
		{nil, GatewayNone, ""},
		{&coordinationv1.Lease{}, GatewayNone, ""},
		{holder(""), GatewayNone, ""},
		{holder("missing"), GatewayUnknown, ""},
		{holder("node-mode"), GatewayKnown, "10.0.0.5"},
		{holder("host-only"), GatewayKnown, "10.0.0.6"},
		{holder("pod-mode"), GatewayKnown, "10.1.0.7"},
		// A pod-mode broker without a pod IP is not at its node's IP.
		{holder("pending"), GatewayUnknown, ""},
		{holder("ipv6"), GatewayUnknown, ""},
	} {
		g := ResolveGateway(tc.lease, pod)
		ip := ""
		if g.IP.IsValid() {
			ip = g.IP.String()
		}
		if g.State != tc.state || ip != tc.ip {
			t.Errorf("%v: got %+v, want %s %s", tc.lease, g, tc.state, tc.ip)
		}
		if g.State != GatewayKnown && g.Reason == "" {
			t.Errorf("%v: no reason given for %s", tc.lease, g.State)
		}
	}
}
