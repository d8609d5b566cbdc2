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
		"node-mode":  {Spec: corev1.PodSpec{HostNetwork: true}, Status: corev1.PodStatus{PodIP: "10.0.0.5", HostIP: "10.0.0.5"}},
		"host-only":  {Spec: corev1.PodSpec{HostNetwork: true}, Status: corev1.PodStatus{HostIP: "10.0.0.6"}},
		"pod-mode":   {Status: corev1.PodStatus{PodIP: "10.1.0.7", HostIP: "10.0.0.7"}},
		"pending":    {Status: corev1.PodStatus{HostIP: "10.0.0.8"}},
		"ipv6":       {Status: corev1.PodStatus{PodIP: "fd00::1"}},
		"no-host-ip": {Status: corev1.PodStatus{PodIP: "10.1.0.9"}},
		"ipv6-host":  {Status: corev1.PodStatus{PodIP: "10.1.0.10", HostIP: "fd00::2"}},
	}
	pod := func(n string) *corev1.Pod { return pods[n] }
	for _, tc := range []struct {
		lease *coordinationv1.Lease
		state string
		ip    string
		host  string
	}{
		{nil, GatewayNone, "", ""},
		{&coordinationv1.Lease{}, GatewayNone, "", ""},
		{holder(""), GatewayNone, "", ""},
		{holder("missing"), GatewayUnknown, "", ""},
		{holder("node-mode"), GatewayKnown, "10.0.0.5", "10.0.0.5"},
		{holder("host-only"), GatewayKnown, "10.0.0.6", "10.0.0.6"},
		// The other nodes' VXLAN goes to the pod-mode gateway's node.
		{holder("pod-mode"), GatewayKnown, "10.1.0.7", "10.0.0.7"},
		{holder("no-host-ip"), GatewayKnown, "10.1.0.9", ""},
		{holder("ipv6-host"), GatewayKnown, "10.1.0.10", ""},
		// A pod-mode broker without a pod IP is not at its node's IP.
		{holder("pending"), GatewayUnknown, "", ""},
		{holder("ipv6"), GatewayUnknown, "", ""},
	} {
		g := ResolveGateway(tc.lease, pod)
		ip, host := "", ""
		if g.IP.IsValid() {
			ip = g.IP.String()
		}
		if g.HostIP.IsValid() {
			host = g.HostIP.String()
		}
		if g.State != tc.state || ip != tc.ip || host != tc.host {
			t.Errorf("%v: got %+v, want %s %s host %s", tc.lease, g, tc.state, tc.ip, tc.host)
		}
		if g.State != GatewayKnown && g.Reason == "" {
			t.Errorf("%v: no reason given for %s", tc.lease, g.State)
		}
	}
}
