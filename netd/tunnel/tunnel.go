// Package tunnel defines what the broker needs from a tunnel device
// (WireGuard or TLS bridge): configure peers level-based, report per-peer
// traffic for link state and metrics.
package tunnel

import (
	"context"
	"net/netip"
	"time"
)

// Peer is one foreign link as the tunnel sees it.
type Peer struct {
	// Link is the KubeLink name; it identifies the peer in stats.
	Link         string
	PublicKey    string
	PresharedKey string
	// Endpoint is ip:port (resolved) or empty for inbound peers.
	Endpoint string
	// Host is the endpoint host as written in the KubeLink (for TLS name
	// checks).
	Host       string
	AllowedIPs []netip.Prefix
}

// Stats is a peer's traffic as seen by the device.
type Stats struct {
	LastHandshake time.Time
	RxBytes       uint64
	TxBytes       uint64
	// Connected is set by tunnels with connections (bridge).
	Connected bool
	// Err is a configuration error of this peer (bad key, dial failure).
	Err string
}

// Tunnel is a configured tunnel device.
type Tunnel interface {
	// Device is the network interface name packets are routed into.
	Device() string
	// Configure makes the peers exactly these; unchanged peers are left
	// alone (their sessions survive).
	Configure(ctx context.Context, peers []Peer) error
	// Stats returns per-link statistics.
	Stats() (map[string]Stats, error)
	Close() error
}
