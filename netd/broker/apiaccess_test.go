package broker

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/api/watch"
	"github.com/kubelink/kubelink/netd/broker/plan"
	"github.com/kubelink/kubelink/netd/kube"
	"github.com/kubelink/kubelink/netd/tunnel/bridge"
)

func accessHello(token, ca string) bridge.Hello {
	h := hello("", "", "")
	h.APIAccess = &bridge.HelloAPIAccess{Token: token, CA: []byte(ca)}
	return h
}

// TestAPIAccessUpdate: a peer's advertised API access becomes the Secret
// <link>-apiaccess (written only when it differs) and the link's
// spec.apiAccess, which is set only when unset.
func TestAPIAccessUpdate(t *testing.T) {
	secret := func(token, ca string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "b-apiaccess", Namespace: "kubelink", ResourceVersion: "7",
			Labels: map[string]string{LabelManagedBy: ManagedBy, "extra": "kept"}},
			Data: map[string][]byte{v1alpha1.APIAccessTokenKey: []byte(token), v1alpha1.APIAccessCAKey: []byte(ca)}}
	}
	withAccess := func(name, ns string) *v1alpha1.KubeLink {
		l := kubeLink("b", nil)
		l.Spec.APIAccess = &v1alpha1.KubeLinkAPIAccess{Name: name, Namespace: ns}
		return l
	}
	for _, tc := range []struct {
		name        string
		link        *v1alpha1.KubeLink
		hello       bridge.Hello
		old         *corev1.Secret
		wantSecret  bool
		wantAccess  bool
		wantVersion string
	}{
		{"new", kubeLink("b", nil), accessHello("t1", "ca"), nil, true, true, ""},
		{"renewed token", withAccess("b-apiaccess", "kubelink"), accessHello("t2", "ca"), secret("t1", "ca"), true, false, "7"},
		{"new CA", withAccess("b-apiaccess", "kubelink"), accessHello("t1", "ca2"), secret("t1", "ca"), true, false, "7"},
		{"the same: nothing written", withAccess("b-apiaccess", "kubelink"), accessHello("t1", "ca"), secret("t1", "ca"), false, false, ""},
		{"secret there, spec.apiAccess unset", kubeLink("b", nil), accessHello("t1", "ca"), secret("t1", "ca"), false, true, ""},
		{"user's apiAccess elsewhere kept", withAccess("mine", "other"), accessHello("t1", "ca"), nil, true, false, ""},
		{"no advertisement", kubeLink("b", nil), hello("", "", ""), nil, false, false, ""},
		{"empty token", kubeLink("b", nil), accessHello("", "ca"), nil, false, false, ""},
		{"unknown link", nil, accessHello("t1", "ca"), nil, false, false, ""},
	} {
		s, a := apiAccessUpdate(tc.link, tc.hello, "kubelink", tc.old)
		if (s != nil) != tc.wantSecret || (a != nil) != tc.wantAccess {
			t.Errorf("%s: secret %v access %v, want %v %v", tc.name, s != nil, a, tc.wantSecret, tc.wantAccess)
			continue
		}
		if s != nil {
			if s.Name != "b-apiaccess" || s.Namespace != "kubelink" || s.Labels[LabelManagedBy] != ManagedBy || s.ResourceVersion != tc.wantVersion ||
				string(s.Data[v1alpha1.APIAccessTokenKey]) != tc.hello.APIAccess.Token || string(s.Data[v1alpha1.APIAccessCAKey]) != string(tc.hello.APIAccess.CA) {
				t.Errorf("%s: secret %+v", tc.name, s)
			}
			if tc.old != nil && s.Labels["extra"] != "kept" {
				t.Errorf("%s: labels %v", tc.name, s.Labels)
			}
		}
		if a != nil && (a.Name != "b-apiaccess" || a.Namespace != "kubelink" || a.Server != "") {
			t.Errorf("%s: apiAccess %+v", tc.name, a)
		}
	}
}

// linkClient is a fake dynamic client holding the KubeLink l.
func linkClient(t *testing.T, l *v1alpha1.KubeLink) *dynfake.FakeDynamicClient {
	t.Helper()
	l = l.DeepCopy()
	l.APIVersion, l.Kind = v1alpha1.SchemeGroupVersion.String(), "KubeLink"
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(l)
	if err != nil {
		t.Fatal(err)
	}
	return dynfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{kube.KubeLinks: "KubeLinkList"}, &unstructured.Unstructured{Object: obj})
}

// TestInboundAPIAccess: the peer's advertisement is written into the Secret
// and spec.apiAccess; the same hello again writes nothing; a user's
// spec.apiAccess is not replaced; a Secret that is not netd's is left
// alone.
func TestInboundAPIAccess(t *testing.T) {
	ctx := context.Background()
	newLink := func(l *v1alpha1.KubeLink) *dynfake.FakeDynamicClient { return linkClient(t, l) }
	writes := func(cs *fake.Clientset, dyn *dynfake.FakeDynamicClient) (n int) {
		for _, a := range append(cs.Actions(), dyn.Actions()...) {
			if v := a.GetVerb(); v == "create" || v == "update" || v == "patch" {
				n++
			}
		}
		return n
	}
	link := kubeLink("b", nil)
	dyn := newLink(link.DeepCopy())
	cs := fake.NewSimpleClientset()
	var logs strings.Builder
	b := &broker{cfg: &Config{Mode: ModeBridge, Namespace: "kubelink"}, clients: &watch.Clients{Core: cs, Dynamic: dyn}, log: slog.New(slog.NewTextHandler(&logs, nil))}
	b.inboundAPIAccess(ctx, "b", accessHello("secret-token-1", "CA1"), link)
	s, err := cs.CoreV1().Secrets("kubelink").Get(ctx, "b-apiaccess", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("no secret: %v (log: %s)", err, logs.String())
	}
	if string(s.Data["token"]) != "secret-token-1" || string(s.Data["certificate-authority-data"]) != "CA1" || s.Labels[LabelManagedBy] != ManagedBy {
		t.Errorf("secret %+v", s)
	}
	u, err := dyn.Resource(kube.KubeLinks).Get(ctx, "b", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	name, _, _ := unstructured.NestedString(u.Object, "spec", "apiAccess", "name")
	ns, _, _ := unstructured.NestedString(u.Object, "spec", "apiAccess", "namespace")
	if name != "b-apiaccess" || ns != "kubelink" {
		t.Errorf("spec.apiAccess %q/%q", ns, name)
	}
	if strings.Contains(logs.String(), "secret-token-1") {
		t.Errorf("the token is logged:\n%s", logs.String())
	}

	// The same hello with the link as it is now: nothing written.
	cs.ClearActions()
	dyn.ClearActions()
	link.Spec.APIAccess = &v1alpha1.KubeLinkAPIAccess{Name: "b-apiaccess", Namespace: "kubelink"}
	b.inboundAPIAccess(ctx, "b", accessHello("secret-token-1", "CA1"), link)
	if n := writes(cs, dyn); n != 0 {
		t.Errorf("the same advertisement: %d writes", n)
	}
	// A renewed token: the Secret only.
	b.inboundAPIAccess(ctx, "b", accessHello("secret-token-2", "CA1"), link)
	if s, _ := cs.CoreV1().Secrets("kubelink").Get(ctx, "b-apiaccess", metav1.GetOptions{}); string(s.Data["token"]) != "secret-token-2" {
		t.Errorf("token not renewed")
	}
	if n := writes(cs, dyn); n != 1 {
		t.Errorf("renewed token: %d writes, want 1", n)
	}

	// A user's spec.apiAccess (here: set in the API, the cache not yet
	// knowing) is never replaced.
	user := kubeLink("b", nil)
	user.Spec.APIAccess = &v1alpha1.KubeLinkAPIAccess{Name: "mine", Namespace: "other"}
	dyn = newLink(user)
	b.clients = &watch.Clients{Core: fake.NewSimpleClientset(), Dynamic: dyn}
	b.inboundAPIAccess(ctx, "b", accessHello("t", "CA"), kubeLink("b", nil))
	u, _ = dyn.Resource(kube.KubeLinks).Get(ctx, "b", metav1.GetOptions{})
	if name, _, _ := unstructured.NestedString(u.Object, "spec", "apiAccess", "name"); name != "mine" {
		t.Errorf("user's spec.apiAccess replaced: %q", name)
	}

	// A Secret of that name that is not netd's is left alone.
	foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "b-apiaccess", Namespace: "kubelink"}, Data: map[string][]byte{"token": []byte("x")}}
	cs = fake.NewSimpleClientset(foreign)
	b.clients = &watch.Clients{Core: cs, Dynamic: newLink(kubeLink("b", nil))}
	b.inboundAPIAccess(ctx, "b", accessHello("t", "CA"), kubeLink("b", nil))
	if s, _ := cs.CoreV1().Secrets("kubelink").Get(ctx, "b-apiaccess", metav1.GetOptions{}); string(s.Data["token"]) != "x" {
		t.Errorf("foreign secret overwritten")
	}
}

// TestRefreshAPIAccess: with --service-account the hello carries a
// TokenRequest token of that ServiceAccount (24h asked, renewed at half
// life) and the API server's CA; without it, or outside bridge mode,
// none. A failure is retried after apiAccessRetry, the old token kept
// until it expires.
func TestRefreshAPIAccess(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cs := fake.NewSimpleClientset()
	var requests []string
	var fail bool
	cs.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "token" {
			return false, nil, nil
		}
		ca := a.(k8stesting.CreateActionImpl)
		tr := ca.GetObject().(*authenticationv1.TokenRequest)
		requests = append(requests, ca.GetNamespace()+"/"+ca.Name)
		if fail {
			return true, nil, io.ErrUnexpectedEOF
		}
		if tr.Spec.ExpirationSeconds == nil || *tr.Spec.ExpirationSeconds != 86400 {
			t.Errorf("expiration %v, want 24h", tr.Spec.ExpirationSeconds)
		}
		out := tr.DeepCopy()
		out.Status.Token = "tok-" + now.Format(time.TimeOnly)
		out.Status.ExpirationTimestamp = metav1.NewTime(now.Add(24 * time.Hour))
		return true, out, nil
	})
	var logs strings.Builder
	cfg := &Config{Mode: ModeBridge, LinkAddress: "192.168.0.11/24", ServiceCIDR: "100.64.1.0/24", IfceName: "kubelink", MeshDomain: "kubelink",
		Keepalive: 20e9, Identity: "t", Namespace: "kubelink", ServiceAccount: "reader"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	b := &broker{cfg: cfg, clients: &watch.Clients{Core: cs, Config: &rest.Config{TLSClientConfig: rest.TLSClientConfig{CAData: []byte("PEM")}}},
		log: slog.New(slog.NewTextHandler(&logs, nil)), dp: NewDataplane(cfg, nil)}
	ctx := context.Background()
	if err := b.refreshAPIAccess(ctx, now); err != nil {
		t.Fatal(err)
	}
	p := plan.Make(b.dp.planConfig(ctx), nil, nil, nil)
	if a := p.Hello.APIAccess; a == nil || a.Token != "tok-00:00:00" || string(a.CA) != "PEM" || len(requests) != 1 || requests[0] != "kubelink/reader" {
		t.Fatalf("hello %v, requests %v", a, requests)
	}
	// Before half life: no new request.
	now = now.Add(11 * time.Hour)
	_ = b.refreshAPIAccess(ctx, now)
	if len(requests) != 1 {
		t.Errorf("renewed before half life: %v", requests)
	}
	// After half life: a new token.
	now = now.Add(2 * time.Hour)
	_ = b.refreshAPIAccess(ctx, now)
	if len(requests) != 2 || b.dp.APIAccess.Token != "tok-13:00:00" {
		t.Errorf("not renewed at half life: %v %v", requests, b.dp.APIAccess)
	}
	// Failing: the old token stays until it expires, retried every 30s.
	fail = true
	now = now.Add(13 * time.Hour)
	if err := b.refreshAPIAccess(ctx, now); err == nil || b.dp.APIAccess == nil {
		t.Errorf("failure: err %v, access %v", err, b.dp.APIAccess)
	}
	_ = b.refreshAPIAccess(ctx, now.Add(10*time.Second))
	if len(requests) != 3 {
		t.Errorf("retried within %s: %v", apiAccessRetry, requests)
	}
	now = now.Add(12 * time.Hour) // past the expiry (13h+24h)
	_ = b.refreshAPIAccess(ctx, now)
	if b.dp.APIAccess != nil {
		t.Errorf("expired token still advertised")
	}
	if strings.Contains(logs.String(), "tok-") {
		t.Errorf("the token is logged:\n%s", logs.String())
	}

	// Off without --service-account and outside bridge mode.
	for _, c := range []*Config{{Mode: ModeBridge}, {Mode: ModeWireGuard, ServiceAccount: "reader"}} {
		b := &broker{cfg: c, clients: &watch.Clients{Core: cs}, log: b.log, dp: &Dataplane{cfg: c}}
		n := len(requests)
		if err := b.refreshAPIAccess(ctx, now); err != nil || b.dp.APIAccess != nil || len(requests) != n {
			t.Errorf("%+v: access %v err %v", c, b.dp.APIAccess, err)
		}
	}
}

// TestHelloAPIAccessJSON: the field round-trips; a hello without it
// encodes as before, and a decoder that does not know it (an older peer)
// reads the rest; String and %v do not show the token.
func TestHelloAPIAccessJSON(t *testing.T) {
	h := accessHello("secret-token", "CA")
	body, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var got bridge.Hello
	if err := json.Unmarshal(body, &got); err != nil || got.APIAccess == nil || got.APIAccess.Token != "secret-token" || string(got.APIAccess.CA) != "CA" {
		t.Errorf("round trip: %v %v", got.APIAccess, err)
	}
	var old struct {
		Port   int                `json:"port"`
		Meshes []bridge.HelloMesh `json:"meshes"`
	}
	if err := json.Unmarshal(body, &old); err != nil || old.Port != 8777 || len(old.Meshes) != 1 {
		t.Errorf("older peer: %+v %v", old, err)
	}
	plain, _ := json.Marshal(hello("", "", ""))
	if strings.Contains(string(plain), "apiAccess") {
		t.Errorf("no API access, but %s", plain)
	}
	var logs strings.Builder
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "access", h.APIAccess, "value", *h.APIAccess)
	if s := h.APIAccess.String() + logs.String(); strings.Contains(s, "secret-token") {
		t.Errorf("token shown: %s", s)
	}
}

// TestInboundAPIAccessRetried: a conflict on spec.apiAccess (here: this
// broker's own status write between the read and the patch, as seen in
// CI) is retried at once; a failure that outlasts those retries is an
// error, so the reconcile keeps the hello and writes it in its next round;
// a missing right is not retried.
func TestInboundAPIAccessRetried(t *testing.T) {
	ctx := context.Background()
	l := kubeLink("b", nil)
	// patches counts the patches of spec.apiAccess; the next fail of
	// them answer err.
	var patches, fail int
	var err error
	linkFailing := func() *dynfake.FakeDynamicClient {
		dyn := linkClient(t, l)
		dyn.PrependReactor("patch", "kubelinks", func(k8stesting.Action) (bool, runtime.Object, error) {
			patches++
			if fail > 0 {
				fail--
				return true, nil, err
			}
			return false, nil, nil
		})
		return dyn
	}
	dyn := linkFailing()
	cs := fake.NewSimpleClientset()
	var logs strings.Builder
	b := &broker{cfg: &Config{Mode: ModeBridge, Namespace: "kubelink"}, clients: &watch.Clients{Core: cs, Dynamic: dyn}, log: slog.New(slog.NewTextHandler(&logs, nil))}
	apiAccessName := func() string {
		u, err := dyn.Resource(kube.KubeLinks).Get(ctx, "b", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		name, _, _ := unstructured.NestedString(u.Object, "spec", "apiAccess", "name")
		return name
	}
	write := func(link string, h bridge.Hello) error { return b.inboundAPIAccess(ctx, link, h, l) }
	var in inboundHellos

	// Two conflicts: retried at once, set in the same round.
	conflict := apierrors.NewConflict(schema.GroupResource{Group: v1alpha1.GroupName, Resource: "kubelinks"}, "b", io.ErrUnexpectedEOF)
	fail, err = 2, conflict
	in.put("b", accessHello("t1", "CA"))
	if err := in.apply(write); err != nil || in.waiting() != 0 || apiAccessName() != "b-apiaccess" || patches != 3 {
		t.Fatalf("conflicts not retried: err %v, pending %d, apiAccess %q, %d patches\n%s", err, in.waiting(), apiAccessName(), patches, logs.String())
	}

	// The API server failing: the hello stays pending and is written in
	// the next round.
	dyn = linkFailing()
	b.clients = &watch.Clients{Core: fake.NewSimpleClientset(), Dynamic: dyn}
	fail, err = 1, apierrors.NewServiceUnavailable("etcd leader changed")
	in.put("b", accessHello("t1", "CA"))
	if err := in.apply(write); err == nil || in.waiting() != 1 || apiAccessName() != "" {
		t.Fatalf("failure: err %v, pending %d, apiAccess %q", err, in.waiting(), apiAccessName())
	}
	if err := in.apply(write); err != nil || in.waiting() != 0 || apiAccessName() != "b-apiaccess" {
		t.Fatalf("next round: err %v, pending %d, apiAccess %q", err, in.waiting(), apiAccessName())
	}
	if err := in.apply(write); err != nil || in.waiting() != 0 {
		t.Fatalf("nothing pending: err %v, pending %d", err, in.waiting())
	}

	// Forbidden: logged, not retried every round.
	dyn = linkFailing()
	fail, err = 1, apierrors.NewForbidden(schema.GroupResource{Group: v1alpha1.GroupName, Resource: "kubelinks"}, "b", io.EOF)
	b.clients = &watch.Clients{Core: fake.NewSimpleClientset(), Dynamic: dyn}
	in.put("b", accessHello("t1", "CA"))
	if err := in.apply(write); err != nil || in.waiting() != 0 || !strings.Contains(logs.String(), "needs patch on kubelinks") {
		t.Fatalf("forbidden: err %v, pending %d\n%s", err, in.waiting(), logs.String())
	}
}

// TestInboundHellosNewest: a hello that arrives while an older one of the
// same link is written stays pending; failures of one link do not hold
// up another; links are written in name order.
func TestInboundHellosNewest(t *testing.T) {
	var in inboundHellos
	in.put("a", hello("", "100.64.2.53", "cluster.a"))
	in.put("b", hello("", "100.64.3.53", "cluster.b"))
	var order []string
	err := in.apply(func(link string, h bridge.Hello) error {
		order = append(order, link+"="+h.Meshes[0].DNSIP)
		if link == "a" {
			// A newer hello of b arrives while a is written.
			in.put("b", hello("", "100.64.3.54", "cluster.b"))
			return io.ErrUnexpectedEOF
		}
		return nil
	})
	if err == nil || strings.Join(order, " ") != "a=100.64.2.53 b=100.64.3.53" || in.waiting() != 2 {
		t.Fatalf("err %v, order %v, pending %d", err, order, in.waiting())
	}
	order = nil
	if err := in.apply(func(link string, h bridge.Hello) error {
		order = append(order, link+"="+h.Meshes[0].DNSIP)
		return nil
	}); err != nil || strings.Join(order, " ") != "a=100.64.2.53 b=100.64.3.54" || in.waiting() != 0 {
		t.Fatalf("err %v, order %v, pending %d", err, order, in.waiting())
	}
}
