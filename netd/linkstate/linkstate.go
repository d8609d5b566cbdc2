// Package linkstate turns tunnel statistics into link states.
//
// Detection window: every peer sends a persistent keepalive (WireGuard) or
// heartbeat (bridge) at least every keepalive interval K when it has
// nothing else to send, so a live peer's received bytes grow at least every
// K. A link is Down (WireGuard) or Idle (bridge without connection) when
// nothing was received for Window = 3*K (default K=20s, Window=60s), Up
// when something was received within the window after a handshake.
package linkstate

import (
	"fmt"
	"time"

	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/netd/tunnel"
)

// Tracker remembers when each link last received data.
type Tracker struct {
	Window time.Duration
	// Bridge selects bridge semantics (Idle without connection).
	Bridge bool
	Now    func() time.Time

	peers map[string]*entry
}

type entry struct {
	rx     uint64
	lastRx time.Time
	since  time.Time
}

func (t *Tracker) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

// Eval returns the state and message of a link from its statistics. The
// message does not change while the state stays, so status is written
// only on transitions.
func (t *Tracker) Eval(link string, s tunnel.Stats) (state, message string) {
	now := t.now()
	if t.peers == nil {
		t.peers = map[string]*entry{}
	}
	e := t.peers[link]
	if e == nil {
		e = &entry{rx: s.RxBytes, since: now}
		t.peers[link] = e
	}
	if s.RxBytes != e.rx {
		e.rx, e.lastRx = s.RxBytes, now
	}
	if s.Err != "" {
		if t.Bridge {
			return v1alpha1.StateIdle, s.Err
		}
		return v1alpha1.StateError, s.Err
	}
	if t.Bridge {
		switch {
		case !s.Connected:
			return v1alpha1.StateIdle, "no connection"
		case !e.lastRx.IsZero() && now.Sub(e.lastRx) <= t.Window:
			return v1alpha1.StateUp, "connected"
		default:
			return v1alpha1.StateIdle, "connected, no data"
		}
	}
	switch {
	case !s.LastHandshake.IsZero() && !e.lastRx.IsZero() && now.Sub(e.lastRx) <= t.Window:
		return v1alpha1.StateUp, "peer answers"
	case now.Sub(e.since) <= t.Window:
		return v1alpha1.StateIdle, "waiting for the first handshake"
	case s.LastHandshake.IsZero():
		return v1alpha1.StateDown, fmt.Sprintf("no handshake within %s", t.Window)
	default:
		return v1alpha1.StateDown, fmt.Sprintf("nothing received from the peer for more than %s", t.Window)
	}
}

// Forget drops links no longer present.
func (t *Tracker) Forget(keep map[string]bool) {
	for l := range t.peers {
		if !keep[l] {
			delete(t.peers, l)
		}
	}
}
