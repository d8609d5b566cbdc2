package v1alpha1

import (
	"encoding/json"
	"testing"
)

// The CRD defaults enabled to true and the secret key to kubeconfig; the
// helpers must agree for objects that never passed the apiserver (files,
// tests, fake clients).
func TestDefaults(t *testing.T) {
	var s ClusterLinkSpec
	if !s.IsEnabled() {
		t.Fatal("unset enabled must mean enabled")
	}
	off := false
	s.Enabled = &off
	if s.IsEnabled() {
		t.Fatal("enabled: false must disable")
	}
	var r KubeconfigSecretReference
	if r.SecretKey() != DefaultKubeconfigKey || DefaultKubeconfigKey != "kubeconfig" {
		t.Fatalf("default key %q", r.SecretKey())
	}
	r.Key = "config"
	if r.SecretKey() != "config" {
		t.Fatalf("key %q", r.SecretKey())
	}
}

// enabled: false must survive a Go round trip; a plain bool with omitempty
// would drop it and the CRD default would turn the link back on.
func TestEnabledFalseRoundTrip(t *testing.T) {
	var l ClusterLink
	if err := json.Unmarshal([]byte(`{"spec":{"enabled":false,"kubeconfigSecretRef":{"name":"b"}}}`), &l); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(l.Spec)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	_ = json.Unmarshal(b, &back)
	if v, ok := back["enabled"]; !ok || v != false {
		t.Fatalf("enabled not kept as false: %s", b)
	}
	if _, ok := back["kubeconfig"]; ok {
		t.Fatalf("empty kubeconfig written, would trip the one-of rule: %s", b)
	}
}
