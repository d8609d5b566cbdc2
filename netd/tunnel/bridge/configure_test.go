package bridge

import (
	"context"
	"net/netip"
	"testing"

	"github.com/kubelink/kubelink/netd/tunnel"
)

// TestConfigureKeepsConnections: a peer whose allowed IPs alone change
// keeps its peer state (and with it its connections: it is not cancelled),
// and the routes follow the new allowed IPs; a changed peer name (Host,
// checked against the certificate) replaces the peer. No endpoint is
// configured, so nothing is dialled.
func TestConfigureKeepsConnections(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := &Bridge{ctx: ctx, peers: map[string]*peer{}}
	pfx := func(s ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, x := range s {
			out = append(out, netip.MustParsePrefix(x))
		}
		return out
	}
	// No endpoint: an inbound peer, nothing is dialled.
	first := tunnel.Peer{Link: "kubelink3", AllowedIPs: pfx("100.64.32.0/20", "192.168.0.13/32")}
	if err := b.Configure(ctx, []tunnel.Peer{first}); err != nil {
		t.Fatal(err)
	}
	p := b.peers["kubelink3"]
	var cancelled bool
	p.cancel = func() { cancelled = true }

	relayed := first
	relayed.AllowedIPs = pfx("100.64.32.0/20", "100.64.16.0/20", "192.168.0.13/32")
	if err := b.Configure(ctx, []tunnel.Peer{relayed}); err != nil {
		t.Fatal(err)
	}
	if b.peers["kubelink3"] != p || cancelled {
		t.Fatalf("a change of the allowed IPs alone replaced the peer (cancelled %v)", cancelled)
	}
	if len(b.routes) != 3 || b.routes[len(b.routes)-1].peer != p {
		t.Fatalf("routes %v, want the three allowed IPs of the peer", b.routes)
	}
	if got := b.lookup(netip.MustParseAddr("100.64.16.7")); got != p {
		t.Fatalf("the new allowed IP is not routed to the peer")
	}
	writes := b.writes
	if err := b.Configure(ctx, []tunnel.Peer{relayed}); err != nil {
		t.Fatal(err)
	}
	if b.writes != writes {
		t.Fatalf("an unchanged configuration counted as a write")
	}

	moved := relayed
	moved.Host = "gw.kubelink3.example.com"
	b.peers["kubelink3"].cancel = func() { cancelled = true }
	if err := b.Configure(ctx, []tunnel.Peer{moved}); err != nil {
		t.Fatal(err)
	}
	if b.peers["kubelink3"] == p || !cancelled {
		t.Fatalf("a changed peer name must replace the peer")
	}
}
