package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/kubelink/kubelink/netd/wgkey"
)

func TestKeygenVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if rc := run([]string{"keygen"}, &out, &errb); rc != 0 {
		t.Fatalf("keygen rc=%d: %s", rc, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "WireguardPrivateKey: ") || !strings.HasPrefix(lines[1], "publicKey: ") {
		t.Fatalf("keygen output:\n%s", out.String())
	}
	priv, err := wgkey.Parse(strings.TrimPrefix(lines[0], "WireguardPrivateKey: "))
	if err != nil {
		t.Fatal(err)
	}
	if priv.Public().String() != strings.TrimPrefix(lines[1], "publicKey: ") {
		t.Fatalf("public key does not belong to the private key")
	}
	out.Reset()
	if rc := run([]string{"version"}, &out, &errb); rc != 0 || strings.TrimSpace(out.String()) == "" {
		t.Fatalf("version rc=%d out=%q", rc, out.String())
	}
	if rc := run([]string{"bogus"}, &out, &errb); rc != 2 {
		t.Fatalf("unknown command rc=%d", rc)
	}
	errb.Reset()
	if rc := run([]string{"router", "--ipip", "gre", "--lease-name", "l", "--kubeconfig", "/nonexistent"}, &out, &errb); rc != 1 || !strings.Contains(errb.String(), "--ipip") {
		t.Fatalf("bad ipip mode rc=%d: %s", rc, errb.String())
	}
	if rc := run([]string{"broker", "--mode", "bogus", "--kubeconfig", "/nonexistent"}, &out, &errb); rc != 1 || !strings.Contains(errb.String(), "--mode") {
		t.Fatalf("bad mode rc=%d: %s", rc, errb.String())
	}
	errb.Reset()
	if rc := run([]string{"router", "--vxlan", "--ipip", "shared", "--node-ip", "10.0.0.5", "--lease-name", "l", "--kubeconfig", "/nonexistent"}, &out, &errb); rc != 1 || !strings.Contains(errb.String(), "mutually exclusive") {
		t.Fatalf("vxlan with ipip rc=%d: %s", rc, errb.String())
	}
	// Flags the original manifests pass that netd does not use: accepted,
	// each named in a warning with its replacement.
	errb.Reset()
	if rc := run([]string{"broker", "--node-cidr", "10.250.0.0/16", "--node-ip", "10.250.0.5", "--mesh-domain", "kubelink", "--meshdns-service-ip", "100.64.0.11",
		"--kubeconfig", "/nonexistent"}, &out, &errb); rc != 1 {
		t.Fatalf("broker with /nonexistent kubeconfig rc=%d", rc)
	}
	for _, w := range []string{"--node-cidr is ignored", "--node-ip is ignored by netd broker: the node IP the routers' VXLAN goes to is --vxlan-ip",
		"--mesh-domain is ignored by netd broker", "--meshdns-service-ip is ignored by netd broker"} {
		if !strings.Contains(errb.String(), w) {
			t.Errorf("no warning %q in:\n%s", w, errb.String())
		}
	}
	errb.Reset()
	if rc := run([]string{"broker", "--kubeconfig", "/nonexistent"}, &out, &errb); rc != 1 || strings.Contains(errb.String(), "ignored") {
		t.Errorf("warnings without the flags (rc=%d):\n%s", rc, errb.String())
	}
	errb.Reset()
	// (--ipip gre stops the router before it touches anything.)
	if rc := run([]string{"router", "--mesh-domain", "kubelink", "--ipip", "gre", "--lease-name", "l"}, &out, &errb); rc != 1 ||
		!strings.Contains(errb.String(), "--mesh-domain is ignored by netd router") {
		t.Errorf("router --mesh-domain rc=%d:\n%s", rc, errb.String())
	}
	// A bad flag stops ipforward before it writes anything.
	if rc := run([]string{"ipforward", "--bogus"}, &out, &errb); rc != 2 {
		t.Fatalf("ipforward with a bad flag rc=%d", rc)
	}
}
