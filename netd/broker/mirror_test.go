package broker

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubelink/kubelink/api/watch"
	"github.com/kubelink/kubelink/netd/broker/plan"
)

// TestMirrorNamespace: the broker trusts MeshService mirrors in its own
// namespace only: $POD_NAMESPACE (as the chart sets it), else the service
// account's; the plan gets exactly that namespace.
func TestMirrorNamespace(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "kubelink-system")
	cfg := &Config{Mode: ModeWireGuard, LinkAddress: "192.168.0.11/24", IfceName: "kubelink", Keepalive: 20 * time.Second, Identity: "t"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Namespace != "kubelink-system" {
		t.Errorf("namespace %q, want $POD_NAMESPACE", cfg.Namespace)
	}
	if pc := NewDataplane(cfg, nil).planConfig(context.Background()); pc.MirrorNamespace != "kubelink-system" {
		t.Errorf("plan trusts mirrors in %q, want kubelink-system", pc.MirrorNamespace)
	}
	// A namespace set by the caller (tests, embedding) stays.
	cfg = &Config{Mode: ModeNone, LinkAddress: "192.168.0.11/24", IfceName: "kubelink", Keepalive: 20 * time.Second, Identity: "t", Namespace: "mine"}
	if err := cfg.Validate(); err != nil || cfg.Namespace != "mine" {
		t.Errorf("namespace %q (err %v), want mine", cfg.Namespace, err)
	}
}

// TestMirrorsReadable: without the right to list EndpointSlices in its
// namespace the broker runs on without mirrors (an informer would never
// sync and hold it up) and says what to grant; with it, or on other
// errors (the informer retries those), it watches them.
func TestMirrorsReadable(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"allowed", nil, true},
		{"forbidden", apierrors.NewForbidden(schema.GroupResource{Group: "discovery.k8s.io", Resource: "endpointslices"}, "", errors.New("no")), false},
		{"unavailable", apierrors.NewServiceUnavailable("later"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := fake.NewClientset()
			var asked string
			cs.PrependReactor("list", "endpointslices", func(a k8stesting.Action) (bool, runtime.Object, error) {
				asked = a.GetNamespace() + " " + a.(k8stesting.ListAction).GetListRestrictions().Labels.String()
				return tc.err != nil, nil, tc.err
			})
			var logs strings.Builder
			b := &broker{cfg: &Config{Namespace: "kubelink"}, clients: &watch.Clients{Core: cs}, log: slog.New(slog.NewTextHandler(&logs, nil))}
			if got := b.mirrorsReadable(context.Background()); got != tc.want {
				t.Errorf("readable %v, want %v", got, tc.want)
			}
			if want := "kubelink " + plan.MirrorSelector; asked != want {
				t.Errorf("probed %q, want %q", asked, want)
			}
			if !tc.want && !strings.Contains(logs.String(), "grant get, list, watch on endpointslices") {
				t.Errorf("no hint what to grant: %s", logs.String())
			}
		})
	}
}
