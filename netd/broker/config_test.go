package broker

import (
	"flag"
	"io"
	"testing"
)

// TestFlags checks that the broker keeps the original kubelink's flag
// names and that the removed DNS flags are gone.
func TestFlags(t *testing.T) {
	fs := flag.NewFlagSet("broker", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c := &Config{}
	c.Flags(fs)
	for _, name := range []string{"mode", "cluster-name", "link-address", "mesh-domain", "meshdns-service-ip", "service-cidr",
		"pod-cidr", "node-cidr", "node-ip", "ifce-name", "broker-port", "advertised-port", "auto-connect", "secret",
		"certfile", "keyfile", "cacertfile", "dns-advertisement", "cluster-domain", "dns-service-ip", "served-links",
		"route-table", "rule-priority", "kubeconfig", "server-port-http", "lease-name", "lease-namespace", "lease-duration"} {
		if fs.Lookup(name) == nil {
			t.Errorf("flag --%s missing", name)
		}
	}
	for _, gone := range []string{"dns-propagation", "coredns-deployment", "coredns-secret", "coredns-configure"} {
		if fs.Lookup(gone) != nil {
			t.Errorf("flag --%s should be gone", gone)
		}
	}
	if err := fs.Parse([]string{"--mode", "bridge", "--link-address", "192.168.0.11/24", "--service-cidr", "100.64.1.0/24", "--served-links", "a, b"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	o, _ := c.MeshOptions()
	if o.LocalDNS.String() != "100.64.1.10" || c.AdvertisedPort != 8777 {
		t.Errorf("defaults: dns %s port %d", o.LocalDNS, c.AdvertisedPort)
	}
	if !c.Serves("b") || c.Serves("c") {
		t.Errorf("served links")
	}
	if c.VXLAN || c.VXLANPort != 4803 || c.VXLANVNI != 4803 {
		t.Errorf("vxlan defaults: %+v", c)
	}
	t.Setenv("POD_IP", "")
	for _, bad := range [][]string{{"--mode", "ipip"}, {"--link-address", "192.168.0.11"}, {"--node-ip", "x"}, {"--keepalive", "10ms"},
		{"--vxlan"}, {"--vxlan", "--vxlan-ip", "fd00::1"}, {"--vxlan", "--vxlan-ip", "10.0.0.1", "--vxlan-port", "0"},
		{"--vxlan", "--vxlan-ip", "10.0.0.1", "--vxlan-vni", "16777216"}} {
		c := &Config{}
		fs := flag.NewFlagSet("broker", flag.ContinueOnError)
		c.Flags(fs)
		if err := fs.Parse(bad); err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); err == nil {
			t.Errorf("%v: want an error", bad)
		}
	}
}

// TestVXLANIP: the decapsulating device's IP defaults to $POD_IP (the IP
// the routers take from the holder's pod).
func TestVXLANIP(t *testing.T) {
	t.Setenv("POD_IP", "10.244.2.7")
	c := &Config{}
	fs := flag.NewFlagSet("broker", flag.ContinueOnError)
	c.Flags(fs)
	if err := fs.Parse([]string{"--mode", "none", "--vxlan"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil || c.VXLANIP != "10.244.2.7" {
		t.Fatalf("--vxlan-ip %q %v, want $POD_IP", c.VXLANIP, err)
	}
}
