package router

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func parse(t *testing.T, args ...string) (*Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("netd router", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c := &Config{}
	c.Flags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	return c, c.Validate()
}

func TestConfigDefaults(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "kubelink-system")
	c, err := parse(t, "--lease-name", "kubelink-broker", "--link-address", "192.168.0.11/24")
	if err != nil {
		t.Fatal(err)
	}
	if c.IPIP != IPIPNone || c.Table() != tableMain || c.RulePriority != 32000 || c.ServerPortHTTP != 8181 ||
		c.Resync != 10*time.Second || c.LeaseNamespace != "kubelink-system" || c.Datafile != "" {
		t.Fatalf("defaults: %+v", c)
	}
	o, err := c.MeshOptions()
	if err != nil || o.LinkAddress.String() != "192.168.0.11/24" {
		t.Fatalf("mesh options %+v %v", o, err)
	}
	if c.VXLAN || c.VXLANPort != 4803 || c.VXLANVNI != 4803 || c.Encapsulation() != "none" {
		t.Fatalf("vxlan defaults: %+v", c)
	}
	c, err = parse(t, "--lease-name", "l", "--lease-namespace", "ns", "--route-table", "100", "--rule-priority", "1000")
	if err != nil || c.Table() != 100 || c.LeaseNamespace != "ns" {
		t.Fatalf("table 100: %+v %v", c, err)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{}, "--lease-name"},
		{[]string{"--lease-name", "l", "--ipip", "gre"}, "--ipip"},
		{[]string{"--lease-name", "l", "--ipip", "configure"}, "--node-ip"},
		{[]string{"--lease-name", "l", "--node-ip", "fd00::1"}, "--node-ip"},
		{[]string{"--lease-name", "l", "--node-ip", "10.0.0.300"}, "--node-ip"},
		{[]string{"--lease-name", "l", "--route-table", "-1"}, "--route-table"},
		{[]string{"--lease-name", "l", "--route-table", "255"}, "reserved"},
		{[]string{"--lease-name", "l", "--route-table", "253"}, "reserved"},
		{[]string{"--lease-name", "l", "--route-table", "100", "--rule-priority", "32766"}, "--rule-priority"},
		{[]string{"--lease-name", "l", "--route-table", "100", "--rule-priority", "0"}, "--rule-priority"},
		{[]string{"--lease-name", "l", "--resync", "100ms"}, "--resync"},
		{[]string{"--lease-name", "l", "--link-address", "192.168.0.11"}, "--link-address"},
		{[]string{"--lease-name", "l", "--service-cidr", "bogus"}, "--service-cidr"},
		{[]string{"--lease-name", "l", "--server-port-http", "70000"}, "--server-port-http"},
		{[]string{"--lease-name", "l", "--vxlan"}, "--vxlan needs --node-ip"},
		{[]string{"--lease-name", "l", "--vxlan", "--node-ip", "10.0.0.5", "--ipip", "shared"}, "mutually exclusive"},
		{[]string{"--lease-name", "l", "--vxlan", "--node-ip", "10.0.0.5", "--ipip", "configure"}, "mutually exclusive"},
		{[]string{"--lease-name", "l", "--vxlan", "--node-ip", "10.0.0.5", "--vxlan-port", "0"}, "--vxlan-port"},
		{[]string{"--lease-name", "l", "--vxlan", "--node-ip", "10.0.0.5", "--vxlan-port", "65536"}, "--vxlan-port"},
		{[]string{"--lease-name", "l", "--vxlan", "--node-ip", "10.0.0.5", "--vxlan-vni", "0"}, "--vxlan-vni"},
		{[]string{"--lease-name", "l", "--vxlan", "--node-ip", "10.0.0.5", "--vxlan-vni", "16777216"}, "--vxlan-vni"},
		{[]string{"--lease-name", "l", "--vxlan", "--node-ip", "fd00::5"}, "--node-ip"},
	} {
		_, err := parse(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one mentioning %s", tc.args, err, tc.want)
		}
	}
	// Valid combinations.
	for _, args := range [][]string{
		{"--lease-name", "l", "--ipip", "configure", "--node-ip", "10.0.0.5"},
		{"--lease-name", "l", "--ipip", "shared"},
		// The rule priority only matters with a table other than main.
		{"--lease-name", "l", "--route-table", "254", "--rule-priority", "0"},
		{"--lease-name", "l", "--cluster-name", "c1", "--mesh-domain", "mesh.", "--service-cidr", "100.64.1.0/24"},
		{"--lease-name", "l", "--vxlan", "--node-ip", "10.0.0.5", "--ipip", "none", "--vxlan-port", "4900", "--vxlan-vni", "16777215"},
		// The port and VNI only matter with --vxlan.
		{"--lease-name", "l", "--vxlan-port", "0"},
	} {
		if _, err := parse(t, args...); err != nil {
			t.Errorf("%v: %v", args, err)
		}
	}
}

func TestEncapsulation(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--ipip", "shared"}, "ipip-shared"},
		{[]string{"--ipip", "configure", "--node-ip", "10.0.0.5"}, "ipip-configure"},
		{[]string{"--vxlan", "--node-ip", "10.0.0.5"}, "vxlan"},
	} {
		c, err := parse(t, append([]string{"--lease-name", "l"}, tc.args...)...)
		if err != nil || c.Encapsulation() != tc.want {
			t.Errorf("%v: %q %v, want %q", tc.args, c.Encapsulation(), err, tc.want)
		}
	}
}
