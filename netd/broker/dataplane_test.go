package broker

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/netd/nat"
	"github.com/kubelink/kubelink/netd/nftable"
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

// TestSNATEveryMode: node mode and pod mode, WireGuard and bridge, get the
// same SNAT chain (pod CIDRs repeat across clusters, so no pod source may
// enter the tunnel): one rule keeping sources inside the mesh network
// (relayed members' link addresses), unchanged when a relayed link is
// added, at srcnat-10. Only pod mode adds the MeshService DNAT.
func TestSNATEveryMode(t *testing.T) {
	key := "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY="
	links := []*v1alpha1.KubeLink{
		{ObjectMeta: metav1.ObjectMeta{Name: "b"}, Spec: v1alpha1.KubeLinkSpec{ClusterAddress: "192.168.0.12/24", CIDR: "100.64.2.0/24", Endpoint: "127.0.0.2:8777", PublicKey: key}},
	}
	relayed := append(links[:1:1], &v1alpha1.KubeLink{ObjectMeta: metav1.ObjectMeta{Name: "c"},
		Spec: v1alpha1.KubeLinkSpec{ClusterAddress: "192.168.0.13/24", CIDR: "100.64.3.0/24", GatewayLink: "b"}})
	msvcs := []*v1alpha1.MeshService{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec:       v1alpha1.MeshServiceSpec{Service: "web", MeshAddress: "192.168.0.50"},
	}}
	lookup := func(ns, name string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{ClusterIP: "100.64.1.20"}}
	}
	chain := func(out *Outcome, name string) *nftable.Chain {
		for i := range out.Chains {
			if out.Chains[i].Name == name {
				return &out.Chains[i]
			}
		}
		return nil
	}
	var first *nftable.Chain
	for _, mode := range []string{ModeWireGuard, ModeBridge} {
		for _, podCIDR := range []string{"", "10.0.0.0/16"} {
			cfg := &Config{Mode: mode, PodCIDR: podCIDR, LinkAddress: "192.168.0.11/24", ServiceCIDR: "100.64.1.0/24", IfceName: "kubelink",
				MeshDomain: "kubelink", ClusterDomain: "cluster.local", ServedLinks: "all", Keepalive: 20 * time.Second, Identity: "t"}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			what := fmt.Sprintf("mode %s, pod CIDR %q", mode, podCIDR)
			dp := NewDataplane(cfg, nil)
			out, err := dp.Reconcile(context.Background(), links, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			snat := chain(out, nat.ChainSNAT)
			if snat == nil || len(snat.Rules) != 1 || !strings.Contains(snat.Rules[0].Comment, "outside 192.168.0.0/24") ||
				*snat.Priority != *nat.SNATPriority {
				t.Fatalf("%s: SNAT chain %+v, want one rule keeping 192.168.0.0/24 at srcnat-10", what, snat)
			}
			if first == nil {
				first = snat
			} else if !reflect.DeepEqual(first, snat) {
				t.Errorf("%s: SNAT chain differs from the first mode's", what)
			}
			out, err = dp.Reconcile(context.Background(), relayed, msvcs, lookup)
			if err != nil {
				t.Fatal(err)
			}
			if got := chain(out, nat.ChainSNAT); !reflect.DeepEqual(first, got) {
				t.Errorf("%s: a relayed link changed the SNAT chain: %+v", what, got)
			}
			if dnat := chain(out, nat.ChainDNAT); (dnat != nil) != (podCIDR != "") {
				t.Errorf("%s: MeshService DNAT chain present: %v", what, dnat != nil)
			}
		}
	}
}

// TestPlanConfig: how the flags reach the plan. Only a broker serving
// every link routes whole mesh networks (plan.Config.Serves nil); keys are
// required in WireGuard mode only; pod mode is --pod-cidr.
func TestPlanConfig(t *testing.T) {
	for _, tc := range []struct {
		mode, served, podCIDR      string
		all, wireGuard, none, pods bool
	}{
		{mode: ModeWireGuard, served: "all", all: true, wireGuard: true},
		{mode: ModeWireGuard, served: "", all: true, wireGuard: true},
		{mode: ModeBridge, served: "b, c", podCIDR: "10.0.0.0/16", pods: true},
		{mode: ModeNone, served: "all", all: true, none: true},
	} {
		cfg := &Config{Mode: tc.mode, PodCIDR: tc.podCIDR, LinkAddress: "192.168.0.11/24", IfceName: "kubelink-x", AdvertisedPort: 9000,
			MeshDomain: "kubelink", ClusterDomain: "cluster.local", ServedLinks: tc.served, Keepalive: 20 * time.Second, Identity: "t"}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		pc := NewDataplane(cfg, nil).planConfig(context.Background())
		what := fmt.Sprintf("mode %s, served %q, pod CIDR %q", tc.mode, tc.served, tc.podCIDR)
		if (pc.Serves == nil) != tc.all || pc.WireGuard != tc.wireGuard || pc.NoTunnel != tc.none || pc.PodMode != tc.pods ||
			pc.Device != "kubelink-x" || pc.AdvertisedPort != 9000 || pc.Mesh.LinkAddress.String() != "192.168.0.11/24" || pc.Resolve == nil {
			t.Errorf("%s: plan config %+v", what, pc)
		}
		if pc.Serves != nil && (!pc.Serves("c") || pc.Serves("d")) {
			t.Errorf("%s: serves c %v, d %v", what, pc.Serves("c"), pc.Serves("d"))
		}
	}
}
