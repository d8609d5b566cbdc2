package broker

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelink/kubelink/api/v1alpha1"
)

// TestMeshServicesNeedPodMode: without --pod-cidr (node mode) or in mode
// none, every MeshService is Unsupported with the reason; in pod mode the
// same objects resolve.
func TestMeshServicesNeedPodMode(t *testing.T) {
	msvcs := []*v1alpha1.MeshService{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec:       v1alpha1.MeshServiceSpec{Service: "web", MeshAddress: "192.168.0.50"},
	}}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"}, Spec: corev1.ServiceSpec{ClusterIP: "100.64.0.20"}}
	lookup := func(ns, name string) *corev1.Service {
		if ns == "default" && name == "web" {
			return svc
		}
		return nil
	}
	for _, tc := range []struct {
		mode, podCIDR, state, msg string
	}{
		{ModeWireGuard, "", v1alpha1.StateUnsupported, "pod mode"},
		{ModeNone, "10.0.0.0/16", v1alpha1.StateUnsupported, "mode none"},
		{ModeWireGuard, "10.0.0.0/16", v1alpha1.StateOK, "1 forward"},
	} {
		cfg := &Config{Mode: tc.mode, PodCIDR: tc.podCIDR, LinkAddress: "192.168.0.11/24", ServiceCIDR: "100.64.0.0/20",
			MeshDomain: "kubelink", ClusterDomain: "cluster.local", ServedLinks: "all", Keepalive: 20 * time.Second, Identity: "t"}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		// No tunnel: Reconcile resolves and returns without touching the
		// kernel.
		out, err := NewDataplane(cfg, nil).Reconcile(context.Background(), nil, msvcs, lookup)
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Plans) != 1 || out.Plans[0].State != tc.state || !strings.Contains(out.Plans[0].Message, tc.msg) {
			t.Errorf("mode %s pod CIDR %q: plans %+v", tc.mode, tc.podCIDR, out.Plans[0])
		}
		if st := out.Plans[0].Status(); st.State != tc.state || st.Message == "" {
			t.Errorf("status %+v", st)
		}
	}
}
