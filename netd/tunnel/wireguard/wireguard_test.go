package wireguard

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/kubelink/kubelink/netd/tunnel"
	"github.com/kubelink/kubelink/netd/wgkey"
)

func TestDiff(t *testing.T) {
	k1, _ := wgkey.Generate()
	k2, _ := wgkey.Generate()
	pub1, pub2 := k1.Public(), k2.Public()
	d := &Device{keepalive: 20, links: map[string]string{}, endpoints: map[string]string{}}
	peers := []tunnel.Peer{{
		Link: "b", PublicKey: pub1.String(), Endpoint: "172.31.0.2:8777",
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("100.64.2.0/24"), netip.MustParsePrefix("192.168.0.12/32")},
	}}
	cfg, _, err := uapiDiff(d, map[string]*peerState{}, peers)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"public_key=" + pub1.Hex(), "endpoint=172.31.0.2:8777", "persistent_keepalive_interval=20", "allowed_ip=100.64.2.0/24", "allowed_ip=192.168.0.12/32"} {
		if !strings.Contains(cfg, want+"\n") {
			t.Errorf("new peer config lacks %q:\n%s", want, cfg)
		}
	}
	// The device now has the peer, which roamed to another endpoint, plus
	// a peer nobody wants.
	dump := "private_key=00\nlisten_port=8777\n" +
		"public_key=" + pub1.Hex() + "\npreshared_key=" + strings.Repeat("0", 64) + "\nendpoint=172.31.9.9:4000\n" +
		"last_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\ntx_bytes=10\nrx_bytes=20\npersistent_keepalive_interval=20\n" +
		"allowed_ip=192.168.0.12/32\nallowed_ip=100.64.2.0/24\nprotocol_version=1\n" +
		"public_key=" + pub2.Hex() + "\nendpoint=1.1.1.1:1\nallowed_ip=10.0.0.0/8\n"
	actual := parse(dump)
	if p := actual[pub1.Hex()]; p == nil || p.rx != 20 || p.handshake.Unix() != 1700000000 {
		t.Fatalf("parse: %+v", p)
	}
	cfg, links, err := uapiDiff(d, actual, peers)
	if err != nil {
		t.Fatal(err)
	}
	if cfg != "public_key="+pub2.Hex()+"\nremove=true\n" {
		t.Fatalf("want only the removal of the unwanted peer (roamed endpoint kept), got:\n%s", cfg)
	}
	if links[pub1.Hex()] != "b" {
		t.Fatalf("links %v", links)
	}
	delete(actual, pub2.Hex())
	if cfg, _, _ := uapiDiff(d, actual, peers); cfg != "" {
		t.Fatalf("unchanged peers must write nothing, got:\n%s", cfg)
	}
	// The KubeLink's endpoint changes: now it is written, as an update.
	peers[0].Endpoint = "172.31.0.3:8777"
	cfg, _, _ = uapiDiff(d, actual, peers)
	if cfg != "public_key="+pub1.Hex()+"\nupdate_only=true\nendpoint=172.31.0.3:8777\n" {
		t.Fatalf("endpoint change:\n%s", cfg)
	}
	peers[0].PublicKey = "bogus"
	if _, _, err := uapiDiff(d, actual, peers); err == nil {
		t.Fatalf("want an error for a bad key")
	}
}

func uapiDiff(d *Device, actual map[string]*peerState, peers []tunnel.Peer) (string, map[string]string, error) {
	changes, links, err := d.diff(actual, peers)
	var b strings.Builder
	for _, c := range changes {
		b.WriteString(c.uapi())
	}
	return b.String(), links, err
}

func TestChangeWgtypes(t *testing.T) {
	k, _ := wgkey.Generate()
	psk := strings.Repeat("ab", 32)
	ka := 5
	c := change{key: k.Hex(), update: true, psk: &psk, endpoint: "172.31.0.2:8777", keepalive: &ka, replace: true, allowed: []string{"100.64.2.0/24"}}
	pc, err := c.wgtypes()
	if err != nil {
		t.Fatal(err)
	}
	if pc.PublicKey.String() != k.String() || !pc.UpdateOnly || pc.PresharedKey == nil || pc.Endpoint.String() != "172.31.0.2:8777" ||
		*pc.PersistentKeepaliveInterval != 5*time.Second || !pc.ReplaceAllowedIPs || len(pc.AllowedIPs) != 1 || pc.AllowedIPs[0].String() != "100.64.2.0/24" {
		t.Fatalf("converted: %+v", pc)
	}
	if got := c.uapi(); !strings.Contains(got, "update_only=true\npreshared_key="+psk+"\nendpoint=172.31.0.2:8777\npersistent_keepalive_interval=5\nreplace_allowed_ips=true\nallowed_ip=100.64.2.0/24\n") {
		t.Fatalf("uapi: %q", got)
	}
}
