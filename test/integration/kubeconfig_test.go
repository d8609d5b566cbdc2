package integration

import (
	"bytes"
	"context"
	"encoding/base64"
	"flag"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/api/watch"
	"github.com/kubelink/kubelink/netd/remotecfg"
	"github.com/kubelink/kubelink/test/testenv"
)

// netdKubeconfig runs `netd kubeconfig` with args through its Go entry
// point (the flags as the command line parses them) and returns stdout and
// stderr.
func netdKubeconfig(t *testing.T, ctx context.Context, args ...string) (string, string) {
	t.Helper()
	fs := flag.NewFlagSet("netd kubeconfig", flag.ContinueOnError)
	cfg := &remotecfg.Config{}
	cfg.Flags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if err := remotecfg.Run(ctx, cfg, &out, &errb); err != nil {
		t.Fatalf("netd kubeconfig %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), errb.String()
}

// remoteState is the resourceVersion of every object netd kubeconfig
// writes in the remote cluster.
func remoteState(t *testing.T, ctx context.Context, c kubernetes.Interface) map[string]string {
	t.Helper()
	m := map[string]string{}
	get := func(what string, o metav1.Object, err error) {
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		m[what] = o.GetResourceVersion()
	}
	ns, err := c.CoreV1().Namespaces().Get(ctx, "kubelink", metav1.GetOptions{})
	get("namespace", ns, err)
	sa, err := c.CoreV1().ServiceAccounts("kubelink").Get(ctx, "kubelink-remote-reader", metav1.GetOptions{})
	get("serviceaccount", sa, err)
	cr, err := c.RbacV1().ClusterRoles().Get(ctx, "kubelink-remote-reader", metav1.GetOptions{})
	get("clusterrole", cr, err)
	crb, err := c.RbacV1().ClusterRoleBindings().Get(ctx, "kubelink-remote-reader", metav1.GetOptions{})
	get("clusterrolebinding", crb, err)
	s, err := c.CoreV1().Secrets("kubelink").Get(ctx, "kubelink-remote-reader-token", metav1.GetOptions{})
	get("secret", s, err)
	secrets, err := c.CoreV1().Secrets("kubelink").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=" + remotecfg.ManagedBy})
	if err != nil {
		t.Fatal(err)
	}
	if len(secrets.Items) != 1 {
		t.Fatalf("%d token Secrets, want 1", len(secrets.Items))
	}
	return m
}

// netd kubeconfig against a remote cluster: a read-only identity whose
// base64 kubeconfig reads exactly what netd sync reads, idempotent, and the
// secret and apiaccess outputs in a local cluster.
func TestNetdKubeconfig(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs the real apiserver")
	}
	remote := testenv.Start(t, testenv.Options{})
	if err := remote.StartControllerManager(); err != nil {
		testenv.SkipOrFail(t, "%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	admin := remote.Client()

	out, progress := netdKubeconfig(t, ctx, "--kubeconfig", remote.Kubeconfig)
	if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
		t.Fatalf("base64 output is not one line: %q", out)
	}
	kc, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("output is not base64: %v", err)
	}
	raw, err := clientcmd.Load(kc)
	if err != nil {
		t.Fatal(err)
	}
	token := raw.AuthInfos[raw.Contexts[raw.CurrentContext].AuthInfo].Token
	if token == "" {
		t.Fatalf("no token in the kubeconfig")
	}
	if strings.Contains(progress, token) {
		t.Fatalf("the token was printed to stderr")
	}
	cfg, err := watch.RemoteConfig(kc, "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != remote.URL {
		t.Fatalf("server %s, want %s", cfg.Host, remote.URL)
	}
	reader := kubernetes.NewForConfigOrDie(cfg)

	// What netd sync reads: allowed, by trying.
	if _, err := reader.CoreV1().Services("").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("list services: %v", err)
	}
	if _, err := reader.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("list endpointslices: %v", err)
	}
	if _, err := reader.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("list namespaces: %v", err)
	}
	// Secrets and writes: forbidden, by trying.
	if _, err := reader.CoreV1().Secrets("kubelink").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list secrets: want forbidden, got %v", err)
	}
	if _, err := reader.CoreV1().Secrets("kubelink").Get(ctx, "kubelink-remote-reader-token", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("get the token secret: want forbidden, got %v", err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: "default"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	if _, err := reader.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("create service: want forbidden, got %v", err)
	}
	if err := reader.CoreV1().Services("default").Delete(ctx, "kubernetes", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("delete service: want forbidden, got %v", err)
	}
	// The whole matrix, including the CRDs' resources (not installed
	// here: RBAC does not need them), through SubjectAccessReviews.
	user := "system:serviceaccount:kubelink:kubelink-remote-reader"
	for _, c := range []struct {
		group, resource, verb string
		allowed               bool
	}{
		{"", "services", "list", true}, {"", "services", "watch", true}, {"", "services", "get", true},
		{"discovery.k8s.io", "endpointslices", "watch", true}, {"", "namespaces", "get", true},
		{"multicluster.x-k8s.io", "serviceexports", "list", true}, {v1alpha1.GroupName, "meshservices", "watch", true},
		{"", "secrets", "get", false}, {"", "secrets", "list", false}, {"", "configmaps", "get", false}, {"", "pods", "list", false},
		{"", "services", "create", false}, {"", "services", "update", false}, {"", "services", "delete", false},
		{"discovery.k8s.io", "endpointslices", "create", false}, {"", "namespaces", "create", false},
		{"multicluster.x-k8s.io", "serviceimports", "list", false}, {v1alpha1.GroupName, "kubelinks", "list", false},
		{"multicluster.x-k8s.io", "serviceexports", "patch", false},
	} {
		sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{User: user,
			Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:kubelink", "system:authenticated"},
			ResourceAttributes: &authzv1.ResourceAttributes{Group: c.group, Resource: c.resource, Verb: c.verb, Namespace: "default"}}}
		got, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Status.Allowed != c.allowed {
			t.Errorf("%s %s.%s: allowed=%v, want %v", c.verb, c.resource, c.group, got.Status.Allowed, c.allowed)
		}
	}

	// Run with the reader's own kubeconfig, it may not create what it
	// needs: the error names the object and the cluster.
	kcFile := filepath.Join(t.TempDir(), "reader.kubeconfig")
	if err := os.WriteFile(kcFile, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	rcfg := &remotecfg.Config{}
	rcfg.Flags(flag.NewFlagSet("", flag.ContinueOnError))
	rcfg.Kubeconfig = kcFile
	err = remotecfg.Run(ctx, rcfg, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "creating ServiceAccount kubelink/kubelink-remote-reader in the remote cluster: ") || !apierrors.IsForbidden(err) {
		t.Fatalf("run without rights: %v", err)
	}

	// A second run changes nothing and hands out the same credential.
	before := remoteState(t, ctx, admin)
	out2, progress2 := netdKubeconfig(t, ctx, "--kubeconfig", remote.Kubeconfig)
	if after := remoteState(t, ctx, admin); !maps.Equal(before, after) {
		t.Fatalf("second run changed objects: before %v after %v\n%s", before, after, progress2)
	}
	if strings.Contains(progress2, "created") || strings.Contains(progress2, "updated") || strings.Count(progress2, "unchanged") != 5 {
		t.Fatalf("second run:\n%s", progress2)
	}
	if out2 != out {
		t.Fatalf("second run printed another kubeconfig")
	}

	// A widened role is narrowed back to exactly the rules.
	cr, err := admin.RbacV1().ClusterRoles().Get(ctx, "kubelink-remote-reader", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cr.Rules[0].Resources = append(cr.Rules[0].Resources, "secrets")
	if _, err := admin.RbacV1().ClusterRoles().Update(ctx, cr, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, progress3 := netdKubeconfig(t, ctx, "--kubeconfig", remote.Kubeconfig)
	if !strings.Contains(progress3, "ClusterRole kubelink-remote-reader: updated") {
		t.Fatalf("widened role not repaired:\n%s", progress3)
	}
	if _, err := reader.CoreV1().Secrets("kubelink").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list secrets after repair: want forbidden, got %v", err)
	}

	// --output kubeconfig with --server: the YAML, with the server given.
	yamlOut, _ := netdKubeconfig(t, ctx, "--kubeconfig", remote.Kubeconfig, "--output", "kubeconfig", "--server", "https://remote.example:6443")
	raw2, err := clientcmd.Load([]byte(yamlOut))
	if err != nil {
		t.Fatalf("kubeconfig output: %v", err)
	}
	if s := raw2.Clusters[raw2.Contexts[raw2.CurrentContext].Cluster].Server; s != "https://remote.example:6443" {
		t.Fatalf("server %q", s)
	}

	// --token-duration: a bounded token from the TokenRequest API that
	// reads services too.
	tr, _ := netdKubeconfig(t, ctx, "--kubeconfig", remote.Kubeconfig, "--output", "kubeconfig", "--token-duration", "1h")
	trCfg, err := watch.RemoteConfig([]byte(tr), "")
	if err != nil {
		t.Fatal(err)
	}
	if trCfg.BearerToken == token {
		t.Fatalf("--token-duration returned the Secret's token")
	}
	if _, err := kubernetes.NewForConfigOrDie(trCfg).CoreV1().Services("").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("TokenRequest token: list services: %v", err)
	}

	// --output secret into a second, local cluster: the kubeconfig under
	// the key ClusterLink's secret reference defaults to; a rerun does not
	// rewrite it.
	local := testenv.Start(t, testenv.Options{})
	lc := local.Client()
	snippet, _ := netdKubeconfig(t, ctx, "--kubeconfig", remote.Kubeconfig, "--output", "secret",
		"--secret-name", "cluster-b", "--secret-namespace", "default", "--local-kubeconfig", local.Kubeconfig)
	if !strings.Contains(snippet, "kubeconfigSecretRef") || strings.Contains(snippet, token) {
		t.Fatalf("secret output:\n%s", snippet)
	}
	s, err := lc.CoreV1().Secrets("default").Get(ctx, "cluster-b", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.Data[remotecfg.SecretKey], kc) || len(s.Data) != 1 {
		t.Fatalf("local Secret keys %v, want exactly the kubeconfig", slices.Sorted(maps.Keys(s.Data)))
	}
	netdKubeconfig(t, ctx, "--kubeconfig", remote.Kubeconfig, "--output", "secret",
		"--secret-name", "cluster-b", "--secret-namespace", "default", "--local-kubeconfig", local.Kubeconfig)
	if s2, err := lc.CoreV1().Secrets("default").Get(ctx, "cluster-b", metav1.GetOptions{}); err != nil || s2.ResourceVersion != s.ResourceVersion {
		t.Fatalf("rerun rewrote the local Secret: %v", err)
	}

	// --output apiaccess: exactly token and certificate-authority-data,
	// enough for a client of the remote cluster.
	netdKubeconfig(t, ctx, "--kubeconfig", remote.Kubeconfig, "--output", "apiaccess",
		"--secret-name", "cluster-b-api", "--secret-namespace", "default", "--local-kubeconfig", local.Kubeconfig)
	a, err := lc.CoreV1().Secrets("default").Get(ctx, "cluster-b-api", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if keys := slices.Sorted(maps.Keys(a.Data)); !slices.Equal(keys, []string{v1alpha1.APIAccessCAKey, v1alpha1.APIAccessTokenKey}) {
		t.Fatalf("apiaccess keys %v", keys)
	}
	// --apply=false prints the Secret instead, the snippet commented out,
	// so the output applies as it is.
	printed, _ := netdKubeconfig(t, ctx, "--kubeconfig", remote.Kubeconfig, "--output", "apiaccess", "--apply=false",
		"--secret-name", "cluster-c-api", "--secret-namespace", "default", "--local-kubeconfig", local.Kubeconfig)
	var ps corev1.Secret
	if err := sigsyaml.Unmarshal([]byte(strings.Split(printed, "---\n")[0]), &ps); err != nil {
		t.Fatalf("printed Secret: %v\n%s", err, printed)
	}
	if ps.Name != "cluster-c-api" || !bytes.Equal(ps.Data[v1alpha1.APIAccessTokenKey], a.Data[v1alpha1.APIAccessTokenKey]) || len(ps.Data) != 2 {
		t.Fatalf("printed Secret %s with keys %v", ps.Name, slices.Sorted(maps.Keys(ps.Data)))
	}
	for _, l := range strings.Split(strings.TrimSpace(strings.Split(printed, "---\n")[1]), "\n") {
		if !strings.HasPrefix(l, "#") {
			t.Fatalf("snippet line %q not commented out", l)
		}
	}
	if _, err := lc.CoreV1().Secrets("default").Get(ctx, "cluster-c-api", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("--apply=false wrote the Secret: %v", err)
	}
	apiCfg, err := watch.TokenConfig(remote.URL, string(a.Data[v1alpha1.APIAccessTokenKey]), a.Data[v1alpha1.APIAccessCAKey])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kubernetes.NewForConfigOrDie(apiCfg).CoreV1().Services("").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("apiaccess credential: list services: %v", err)
	}
}
