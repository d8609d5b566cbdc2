package testenv

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

func TestEnvironment(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real apiserver")
	}
	env := Start(t, Options{ServiceCIDR: "100.64.16.0/20"})
	ctx := context.Background()

	v, err := env.Client().Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != "v1.37.1" {
		t.Fatalf("apiserver reports %s, want v1.37.1 (version ldflags)", v.GitVersion)
	}

	// RBAC is enforced for ServiceAccount credentials.
	cfg, kubeconfig, err := env.ServiceAccountConfig(ctx, "kube-system", "probe")
	if err != nil {
		t.Fatal(err)
	}
	sa := kubernetes.NewForConfigOrDie(cfg)
	if _, err := sa.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("service account listed secrets without a grant: %v", err)
	}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: "kube-system"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"list"}}},
	}
	if _, err := env.Client().RbacV1().Roles("kube-system").Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: "kube-system"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "probe"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "probe", Namespace: "kube-system"}},
	}
	if _, err := env.Client().RbacV1().RoleBindings("kube-system").Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The RBAC authorizer reads bindings through informers: a grant takes
	// effect a moment after it is written, not with the write.
	var listErr error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if _, listErr = sa.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{}); listErr == nil {
			break
		}
	}
	if listErr != nil {
		t.Fatalf("service account cannot list secrets 10s after the grant: %v", listErr)
	}
	if kubeconfig == "" {
		t.Fatal("no kubeconfig written for the service account")
	}

	// Services get ClusterIPs from the configured range.
	out, err := env.Kubectl(ctx, "create", "service", "clusterip", "echo", "--tcp=80:8080")
	if err != nil {
		t.Fatal(err)
	}
	svc, err := env.Client().CoreV1().Services("default").Get(ctx, "echo", metav1.GetOptions{})
	if err != nil || !strings.HasPrefix(svc.Spec.ClusterIP, "100.64.") {
		t.Fatalf("service %v: clusterIP %q (%s)", err, svc.Spec.ClusterIP, out)
	}

	// An outage and a restart keep the data.
	env.StopAPIServer()
	if _, err := env.Client().Discovery().ServerVersion(); err == nil {
		t.Fatal("apiserver still answers after StopAPIServer")
	}
	if err := env.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client().CoreV1().Services("default").Get(ctx, "echo", metav1.GetOptions{}); err != nil {
		t.Fatalf("service lost across an apiserver restart: %v", err)
	}

	// Stop kills every process.
	var pids []int
	env.mu.Lock()
	for _, c := range env.procs {
		pids = append(pids, c.Process.Pid)
	}
	env.mu.Unlock()
	env.Stop()
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("process %d still running after Stop", pid)
		}
	}
}
