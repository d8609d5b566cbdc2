package broker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/api/watch"
	"github.com/kubelink/kubelink/netd/broker/plan"
	"github.com/kubelink/kubelink/netd/kube"
	"github.com/kubelink/kubelink/netd/tunnel/bridge"
	"github.com/kubelink/kubelink/netd/wgkey"
)

func hello(mesh, dnsIP, domain string) bridge.Hello {
	return bridge.Hello{Port: 8777, Meshes: []bridge.HelloMesh{{Mesh: mesh, Cluster: "b", Address: "192.168.0.12/24", CIDR: "100.64.2.0/24", DNSIP: dnsIP, Domain: domain}}}
}

func kubeLink(name string, dns *v1alpha1.KubeLinkDNS) *v1alpha1.KubeLink {
	return &v1alpha1.KubeLink{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.KubeLinkSpec{ClusterAddress: "192.168.0.12/24", DNS: dns}}
}

// TestAdvertisedDNS: a peer's advertised DNS becomes its link's spec.dns
// (omitDNSPropagation kept); nothing changes without an advertisement,
// for the same values, or for another mesh's entry.
func TestAdvertisedDNS(t *testing.T) {
	omit := true
	for _, tc := range []struct {
		name  string
		link  *v1alpha1.KubeLink
		hello bridge.Hello
		want  *v1alpha1.KubeLinkDNS
	}{
		{"new", kubeLink("b", nil), hello("", "100.64.2.53", "cluster.b"), &v1alpha1.KubeLinkDNS{DNSIP: "100.64.2.53", BaseDomain: "cluster.b"}},
		{"changed, omitDNSPropagation kept", kubeLink("b", &v1alpha1.KubeLinkDNS{DNSIP: "100.64.2.10", OmitDNSPropagation: &omit}), hello("", "100.64.2.53", "cluster.b"),
			&v1alpha1.KubeLinkDNS{DNSIP: "100.64.2.53", BaseDomain: "cluster.b", OmitDNSPropagation: &omit}},
		{"the same", kubeLink("b", &v1alpha1.KubeLinkDNS{DNSIP: "100.64.2.53", BaseDomain: "cluster.b"}), hello("", "100.64.2.53", "cluster.b"), nil},
		{"no advertisement: spec.dns stays", kubeLink("b", &v1alpha1.KubeLinkDNS{DNSIP: "100.64.2.10"}), hello("", "", ""), nil},
		{"named mesh", kubeLink("blue--b", nil), hello("blue", "100.64.2.53", "cluster.b"), &v1alpha1.KubeLinkDNS{DNSIP: "100.64.2.53", BaseDomain: "cluster.b"}},
		{"another mesh's entry", kubeLink("blue--b", nil), hello("", "100.64.2.53", "cluster.b"), nil},
		{"unknown link", nil, hello("", "100.64.2.53", "cluster.b"), nil},
	} {
		got := advertisedDNS(tc.link, tc.hello)
		if (got == nil) != (tc.want == nil) || got != nil && (got.DNSIP != tc.want.DNSIP || got.BaseDomain != tc.want.BaseDomain ||
			(got.OmitDNSPropagation == nil) != (tc.want.OmitDNSPropagation == nil)) {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// TestInboundDNSAlwaysOn: the inbound update does not depend on
// --dns-advertisement (which is the outbound side): a broker without it
// writes the peer's advertised DNS into the KubeLink.
func TestInboundDNSAlwaysOn(t *testing.T) {
	link := kubeLink("b", nil)
	link.APIVersion, link.Kind = v1alpha1.SchemeGroupVersion.String(), "KubeLink"
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(link)
	if err != nil {
		t.Fatal(err)
	}
	dyn := dynfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{kube.KubeLinks: "KubeLinkList"}, &unstructured.Unstructured{Object: obj})
	var logs strings.Builder
	b := &broker{cfg: &Config{Mode: ModeBridge, DNSAdvertisement: false}, clients: &watch.Clients{Dynamic: dyn}, log: slog.New(slog.NewTextHandler(&logs, nil))}
	ctx := context.Background()
	b.inboundDNS(ctx, "b", hello("", "100.64.2.53", "cluster.b"), link)
	u, err := dyn.Resource(kube.KubeLinks).Get(ctx, "b", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ip, _, _ := unstructured.NestedString(u.Object, "spec", "dns", "dnsIP")
	domain, _, _ := unstructured.NestedString(u.Object, "spec", "dns", "baseDomain")
	if ip != "100.64.2.53" || domain != "cluster.b" {
		t.Errorf("spec.dns %q/%q after the peer's advertisement, want 100.64.2.53/cluster.b (log: %s)", ip, domain, logs.String())
	}

	// Without the right to patch KubeLinks the log says what is missing.
	dyn.PrependReactor("patch", "kubelinks", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "kubelink.mandelsoft.org", Resource: "kubelinks"}, "b", errors.New("no"))
	})
	b.inboundDNS(ctx, "b", hello("", "100.64.2.54", "cluster.b"), link)
	if !strings.Contains(logs.String(), "needs patch on kubelinks") {
		t.Errorf("no hint about the missing right:\n%s", logs.String())
	}
}

// TestOutboundDNSAdvertisement: the plan's hello carries this cluster's
// DNS exactly with --dns-advertisement.
func TestOutboundDNSAdvertisement(t *testing.T) {
	for _, on := range []bool{false, true} {
		cfg := &Config{Mode: ModeBridge, LinkAddress: "192.168.0.11/24", ServiceCIDR: "100.64.1.0/24", IfceName: "kubelink", MeshDomain: "kubelink",
			ClusterDomain: "cluster.a", DNSAdvertisement: on, Keepalive: 20e9, Identity: "t"}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		p := plan.Make(NewDataplane(cfg, nil).planConfig(context.Background()), nil, nil, nil)
		if len(p.Hello.Meshes) != 1 {
			t.Fatalf("hello %+v, want the default mesh", p.Hello)
		}
		m := p.Hello.Meshes[0]
		if got := m.DNSIP == "100.64.1.10" && m.Domain == "cluster.a"; got != on {
			t.Errorf("--dns-advertisement=%v: the hello tells DNS %q/%q", on, m.DNSIP, m.Domain)
		}
		if m.Address != "192.168.0.11/24" || m.CIDR != "100.64.1.0/24" {
			t.Errorf("hello %+v", m)
		}
	}
}

// TestWireGuardKeyNames: the key is read under WireguardPrivateKey and
// under the original's spelling WireGuardPrivateKey; with two different
// keys the current name wins, with a warning.
func TestWireGuardKeyNames(t *testing.T) {
	for _, tc := range []struct {
		name       string
		data       map[string][]byte
		value, key string
		conflict   bool
	}{
		{"none", nil, "", "", false},
		{"current", map[string][]byte{"WireguardPrivateKey": []byte("k1\n")}, "k1", "WireguardPrivateKey", false},
		{"original spelling", map[string][]byte{"WireGuardPrivateKey": []byte("k2")}, "k2", "WireGuardPrivateKey", false},
		{"both, equal", map[string][]byte{"WireguardPrivateKey": []byte("k1"), "WireGuardPrivateKey": []byte("k1")}, "k1", "WireguardPrivateKey", false},
		{"both, different", map[string][]byte{"WireguardPrivateKey": []byte("k1"), "WireGuardPrivateKey": []byte("k2")}, "k1", "WireguardPrivateKey", true},
		{"empty current", map[string][]byte{"WireguardPrivateKey": []byte(" "), "WireGuardPrivateKey": []byte("k2")}, "k2", "WireGuardPrivateKey", false},
	} {
		v, key, conflict := wireGuardKey(tc.data)
		if v != tc.value || key != tc.key || (conflict != "") != tc.conflict {
			t.Errorf("%s: %q %q %q", tc.name, v, key, conflict)
		}
		if tc.conflict && !strings.Contains(conflict, "using WireguardPrivateKey") {
			t.Errorf("%s: conflict %q does not say which key is used", tc.name, conflict)
		}
	}
}

// TestPrivateKeyFromOriginalSecret: a secret of the original kubelink
// (WireGuardPrivateKey) gives its key and is not rewritten; an empty one
// gets a generated key under WireguardPrivateKey.
func TestPrivateKeyFromOriginalSecret(t *testing.T) {
	k, err := wgkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	cs := fake.NewClientset(
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "wireguard", Namespace: "kubelink"}, Data: map[string][]byte{"WireGuardPrivateKey": []byte(k.String())}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "empty", Namespace: "kubelink"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "bad", Namespace: "kubelink"}, Data: map[string][]byte{"WireGuardPrivateKey": []byte("garbage")}},
	)
	ctx := context.Background()
	b := &broker{cfg: &Config{Secret: "kubelink/wireguard"}, clients: &watch.Clients{Core: cs}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	got, err := b.privateKey(ctx)
	if err != nil || got.String() != k.String() {
		t.Fatalf("key %v (%v), want the original secret's", got, err)
	}
	s, _ := cs.CoreV1().Secrets("kubelink").Get(ctx, "wireguard", metav1.GetOptions{})
	if _, ok := s.Data["WireguardPrivateKey"]; ok || len(s.Data) != 1 {
		t.Errorf("the original secret was rewritten: %v", s.Data)
	}
	b.cfg.Secret = "kubelink/empty"
	gen, err := b.privateKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s, _ = cs.CoreV1().Secrets("kubelink").Get(ctx, "empty", metav1.GetOptions{})
	if string(s.Data["WireguardPrivateKey"]) != gen.String() {
		t.Errorf("generated key not stored under WireguardPrivateKey: %v", s.Data)
	}
	b.cfg.Secret = "kubelink/bad"
	if _, err := b.privateKey(ctx); err == nil || !strings.Contains(err.Error(), "WireGuardPrivateKey") {
		t.Errorf("a bad key: %v, want an error naming the key WireGuardPrivateKey", err)
	}
}
