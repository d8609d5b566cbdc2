package linkstate

import (
	"testing"
	"time"

	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/netd/tunnel"
)

func TestWireGuardStates(t *testing.T) {
	now := time.Unix(1000, 0)
	tr := &Tracker{Window: 30 * time.Second, Now: func() time.Time { return now }}
	check := func(s tunnel.Stats, want string) {
		t.Helper()
		if got, msg := tr.Eval("a", s); got != want {
			t.Fatalf("state %s (%s), want %s", got, msg, want)
		}
	}
	check(tunnel.Stats{}, v1alpha1.StateIdle)
	now = now.Add(31 * time.Second)
	check(tunnel.Stats{}, v1alpha1.StateDown)
	hs := now
	check(tunnel.Stats{LastHandshake: hs, RxBytes: 92}, v1alpha1.StateUp)
	now = now.Add(20 * time.Second)
	check(tunnel.Stats{LastHandshake: hs, RxBytes: 124}, v1alpha1.StateUp)
	now = now.Add(29 * time.Second)
	check(tunnel.Stats{LastHandshake: hs, RxBytes: 124}, v1alpha1.StateUp)
	now = now.Add(2 * time.Second)
	check(tunnel.Stats{LastHandshake: hs, RxBytes: 124}, v1alpha1.StateDown)
	check(tunnel.Stats{LastHandshake: hs, RxBytes: 124, Err: "bad key"}, v1alpha1.StateError)
}

func TestBridgeStates(t *testing.T) {
	now := time.Unix(1000, 0)
	tr := &Tracker{Window: 30 * time.Second, Bridge: true, Now: func() time.Time { return now }}
	if s, _ := tr.Eval("a", tunnel.Stats{}); s != v1alpha1.StateIdle {
		t.Fatalf("got %s", s)
	}
	if s, _ := tr.Eval("a", tunnel.Stats{Connected: true, RxBytes: 10}); s != v1alpha1.StateUp {
		t.Fatalf("got %s", s)
	}
	now = now.Add(31 * time.Second)
	if s, _ := tr.Eval("a", tunnel.Stats{Connected: true, RxBytes: 10}); s != v1alpha1.StateIdle {
		t.Fatalf("got %s", s)
	}
	if s, _ := tr.Eval("a", tunnel.Stats{Connected: false, RxBytes: 10}); s != v1alpha1.StateIdle {
		t.Fatalf("got %s", s)
	}
}
