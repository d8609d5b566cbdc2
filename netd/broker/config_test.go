package broker

import (
	"flag"
	"io"
	"strings"
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
	// The original's DNS flags are accepted (checked, warned about), not
	// the broker's own.
	for _, dns := range []string{"dns-propagation", "coredns-deployment", "coredns-secret", "coredns-configure"} {
		if fs.Lookup(dns) == nil || c.Seed.Defined(dns) {
			t.Errorf("flag --%s: accepted, but not the broker's", dns)
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
		{"--vxlan", "--vxlan-ip", "10.0.0.1", "--vxlan-vni", "16777216"},
		{"--node-cidr", "10.250.0.0"}, {"--broker-port", "70000"}, {"--advertised-port", "-1"}, {"--certfile", "/c"},
		{"--cluster-name", "Kubelink_1"}, {"--cluster-domain", "cluster..local"}, {"--ifce-name", "kubelink/0"}, {"--secret", "a/b/c"},
		{"--served-links", "a,B"}, {"--service-account", "a/b/c"}, {"--lease-name", "l", "--lease-duration", "100ms"}, {"--route-table", "255"},
		{"--controllers", "router"}, {"--namespace", "Kube-System"}} {
		c := &Config{}
		fs := flag.NewFlagSet("broker", flag.ContinueOnError)
		c.Flags(fs)
		if err := fs.Parse(bad); err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), bad[0]) && !strings.Contains(err.Error(), "--lease-duration") {
			t.Errorf("%v: error %v, want one naming %s", bad, err, bad[0])
		}
	}
}

// TestOriginalFlagsWork: the original's names that netd broker honours do
// what they did: --broker.X is --X, --namespace the Lease's namespace,
// --omit-lease turns the election off, --broker-port 0 the default port.
func TestOriginalFlagsWork(t *testing.T) {
	c := &Config{}
	fs := flag.NewFlagSet("broker", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.Flags(fs)
	if err := fs.Parse([]string{"--broker.mode=bridge", "--broker.dns-advertisement", "--broker.served-links=a,b", "--namespace=kube-system",
		"--lease-name=kubelink", "--omit-lease", "--broker.broker-port=0", "--broker.advertised-port=443", "-c", "broker", "-D", "debug"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Mode != ModeBridge || !c.DNSAdvertisement || !c.Serves("b") || c.Serves("c") || c.LeaseNamespace != "kube-system" || c.LeaseName != "" ||
		c.BrokerPort != 8777 || c.AdvertisedPort != 443 || c.Process.Controllers != "broker" || c.Process.LogLevel != "debug" {
		t.Errorf("config %+v", c)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if w := c.Ignored(set); len(w) != 0 {
		t.Errorf("warnings for flags that work: %q", w)
	}
	// A bad value under the prefixed name names it.
	c = &Config{}
	fs = flag.NewFlagSet("broker", flag.ContinueOnError)
	c.Flags(fs)
	if err := fs.Parse([]string{"--broker.mode=ipip"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--broker.mode") {
		t.Errorf("error %v, want it to name --broker.mode", err)
	}
}

// TestDNSAdvertisementWarning: --dns-advertisement works in bridge mode
// only, the only mode with a hello.
func TestDNSAdvertisementWarning(t *testing.T) {
	for mode, want := range map[string]bool{ModeBridge: false, ModeWireGuard: true, ModeNone: true} {
		c := &Config{Mode: mode}
		w := strings.Join(c.Ignored(map[string]bool{"dns-advertisement": true}), "\n")
		if strings.Contains(w, "--dns-advertisement has no effect") != want {
			t.Errorf("mode %s: warnings %q", mode, w)
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
