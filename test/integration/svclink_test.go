package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	svclinkv1alpha1 "github.com/kubelink/kubelink/api/svclink/v1alpha1"
	"github.com/kubelink/kubelink/test/testenv"
)

// svclink's manifests must apply as they are, with kubectl apply, into the
// namespace given on the command line (its example has none).
func TestClusterLinkApplyUnchanged(t *testing.T) {
	env, c := startAPI(t)
	ctx := context.Background()
	f := filepath.Join(t.TempDir(), "clusterlink.yaml")
	if err := os.WriteFile(f, []byte(validObjects["svclink README ClusterLink"]), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := env.Kubectl(ctx, "apply", "-n", "default", "-f", f); err != nil {
		testenv.SkipOrFail(t, "kubectl apply: %v: %s", err, out)
	}
	got, err := c.Resource(clusterLinkGVR).Namespace("default").Get(ctx, "cluster-b", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if kc, _, _ := unstructured.NestedString(got.Object, "spec", "kubeconfig"); kc != remoteKubeconfig {
		t.Fatalf("kubeconfig not kept as given")
	}
	// A second apply of the same manifest changes nothing.
	if out, err := env.Kubectl(ctx, "apply", "-n", "default", "-f", f); err != nil || !strings.Contains(out, "unchanged") {
		t.Fatalf("re-apply: %q %v", out, err)
	}
}

// The CRD defaults: enabled true, the secret key kubeconfig; an explicit
// enabled: false stays false.
func TestClusterLinkDefaults(t *testing.T) {
	_, c := startAPI(t)
	ctx := context.Background()
	res := c.Resource(clusterLinkGVR).Namespace("default")
	o := decode(t, validObjects["ClusterLink with kubeconfigSecretRef"])
	created, err := res.Create(ctx, o, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var cl svclinkv1alpha1.ClusterLink
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(created.Object, &cl); err != nil {
		t.Fatal(err)
	}
	if cl.Spec.Enabled == nil || !*cl.Spec.Enabled {
		t.Fatalf("enabled not defaulted to true: %v", cl.Spec.Enabled)
	}
	if cl.Spec.KubeconfigSecretRef == nil || cl.Spec.KubeconfigSecretRef.Key != "kubeconfig" {
		t.Fatalf("secret key not defaulted to kubeconfig: %+v", cl.Spec.KubeconfigSecretRef)
	}
	off := decode(t, validObjects["disabled ClusterLink with kubeconfigSecretRef and key"])
	created, err = res.Create(ctx, off, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if en, found, _ := unstructured.NestedBool(created.Object, "spec", "enabled"); !found || en {
		t.Fatalf("enabled: false not kept: %v %v", en, found)
	}
	if k, _, _ := unstructured.NestedString(created.Object, "spec", "kubeconfigSecretRef", "key"); k != "cluster-d.yaml" {
		t.Fatalf("key %q", k)
	}
}

// kubectl get clusterlinks shows svclink's columns, filled from status
// written through the status subresource.
func TestClusterLinkPrinterColumns(t *testing.T) {
	env, c := startAPI(t)
	ctx := context.Background()
	res := c.Resource(clusterLinkGVR).Namespace("default")
	created, err := res.Create(ctx, decode(t, validObjects["ClusterLink with kubeconfigSecretRef"]), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created.Object["status"] = map[string]any{
		"connected":     true,
		"version":       "v1.37.1",
		"lastConnected": time.Now().UTC().Format(time.RFC3339),
		"conditions": []any{map[string]any{
			"type": svclinkv1alpha1.ConditionReady, "status": "True", "reason": "Connected",
			"message": "", "lastTransitionTime": time.Now().UTC().Format(time.RFC3339),
		}},
	}
	if _, err := res.UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	out, err := env.Kubectl(ctx, "get", "clusterlinks", "-n", "default")
	if err != nil {
		testenv.SkipOrFail(t, "kubectl: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("kubectl get clusterlinks: %q", out)
	}
	if got := strings.Join(strings.Fields(lines[0]), " "); got != "NAME ENABLED CONNECTED VERSION AGE LAST CONNECTED" {
		t.Fatalf("columns %q", got)
	}
	row := strings.Fields(lines[1])
	want := []string{"cluster-c", "true", "true", "v1.37.1"}
	for i, w := range want {
		if i >= len(row) || row[i] != w {
			t.Fatalf("row %v, want prefix %v", row, want)
		}
	}
	// -o wide adds the secret reference and the last error.
	out, err = env.Kubectl(ctx, "get", "clusterlink", "cluster-c", "-n", "default", "-o", "wide")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "SECRET") || !strings.Contains(out, "ERROR") || !strings.Contains(out, "cluster-c-kubeconfig") {
		t.Fatalf("kubectl get -o wide: %q", out)
	}
}

// The MCS CRDs come from sigs.k8s.io/mcs-api; objects built from that
// module's Go types must be accepted in both served versions.
func TestMCSCRDs(t *testing.T) {
	_, c := startAPI(t) // fails unless every CRD, MCS included, is Established
	ctx := context.Background()
	export := &mcsv1beta1.ServiceExport{
		TypeMeta:   metav1.TypeMeta{APIVersion: mcsv1beta1.SchemeGroupVersion.String(), Kind: "ServiceExport"},
		ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: "default"},
	}
	imp := &mcsv1beta1.ServiceImport{
		TypeMeta:   metav1.TypeMeta{APIVersion: mcsv1beta1.SchemeGroupVersion.String(), Kind: "ServiceImport"},
		ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: "default"},
		Spec: mcsv1beta1.ServiceImportSpec{
			Type:  mcsv1beta1.ClusterSetIP,
			Ports: []mcsv1beta1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}
	oldExport := &mcsv1alpha1.ServiceExport{
		TypeMeta:   metav1.TypeMeta{APIVersion: mcsv1alpha1.SchemeGroupVersion.String(), Kind: "ServiceExport"},
		ObjectMeta: metav1.ObjectMeta{Name: "echo-v1alpha1", Namespace: "default"},
	}
	for _, o := range []runtime.Object{export, imp, oldExport} {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{Object: m}
		gvr := u.GroupVersionKind().GroupVersion().WithResource(strings.ToLower(u.GetKind()) + "s")
		if _, err := c.Resource(gvr).Namespace("default").Create(ctx, u, metav1.CreateOptions{}); err != nil {
			t.Errorf("%s %s: %v", u.GetAPIVersion(), u.GetKind(), err)
		}
	}
}
