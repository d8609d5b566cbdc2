package chart_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"helm.sh/helm/v3/pkg/action"

	"github.com/kubelink/kubelink/test/testenv"
)

// TestInstallSyncRBAC installs the chart with netd sync into a real
// apiserver and proves its least privilege with access reviews as the
// sync and broker ServiceAccounts: what sync needs (its writes, secret get
// in the secret namespaces only, Service and namespace creation only with
// syncServicesToLocalCluster) and nothing notably more; and the broker's
// read access to the mirrors in its namespace only.
func TestInstallSyncRBAC(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the test environment's kube-apiserver")
	}
	e := testenv.Start(t, testenv.Options{ServiceCIDR: "100.64.0.0/16"})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if _, _, err := e.ServiceAccountConfig(ctx, releaseNS, "setup"); err != nil { // creates the namespace
		t.Fatal(err)
	}
	if _, err := e.Client().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "links"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c := loadChart(t)
	ns := releaseNS
	for _, create := range []bool{false, true} {
		t.Run(map[bool]string{false: "default", true: "syncServicesToLocalCluster"}[create], func(t *testing.T) {
			values := merge(syncBase(t), map[string]any{"sync": map[string]any{
				"enabled": true, "syncServicesToLocalCluster": create, "secretNamespaces": []any{ns, "links"}}})
			cfg := helmConfig(t, e.Kubeconfig)
			in := action.NewInstall(cfg)
			in.ReleaseName, in.Namespace, in.CreateNamespace, in.Timeout = releaseName, ns, true, time.Minute
			if _, err := in.RunWithContext(ctx, c, values); err != nil {
				t.Fatalf("helm install with sync: %v", err)
			}
			defer uninstall(t, ctx, cfg, e.Dynamic())
			allow := []access{
				{"list", "", "services", "", "", ""}, {"watch", "discovery.k8s.io", "endpointslices", "", "", ""},
				{"create", "discovery.k8s.io", "endpointslices", "", "demo", ""}, {"update", "discovery.k8s.io", "endpointslices", "", "demo", "x"},
				{"delete", "discovery.k8s.io", "endpointslices", "", "demo", "x"},
				{"list", "svclink.cloudpilot.ai", "clusterlinks", "", "", ""}, {"patch", "svclink.cloudpilot.ai", "clusterlinks", "status", "links", "east"},
				{"watch", klGroup, "kubelinks", "", "", ""}, {"patch", klGroup, "kubelinks", "status", "", "kubelink2"},
				{"watch", "multicluster.x-k8s.io", "serviceexports", "", "", ""}, {"patch", "multicluster.x-k8s.io", "serviceexports", "status", "demo", "web"},
				{"create", "multicluster.x-k8s.io", "serviceimports", "", "demo", ""}, {"update", "multicluster.x-k8s.io", "serviceimports", "status", "demo", "web"},
				{"get", "", "secrets", "", ns, "east-kubeconfig"}, {"get", "", "secrets", "", "links", "east-kubeconfig"},
				{"create", "", "events", "", "links", ""},
			}
			deny := []access{
				{"get", "", "secrets", "", "default", "x"}, {"list", "", "secrets", "", ns, ""}, {"watch", "", "secrets", "", "links", ""},
				{"update", "svclink.cloudpilot.ai", "clusterlinks", "", "links", "east"}, {"update", klGroup, "kubelinks", "", "", "kubelink2"},
				{"delete", "", "services", "", "demo", "web"}, {"update", "", "services", "", "demo", "web"},
				{"create", "", "pods", "", ns, ""}, {"list", "", "nodes", "", "", ""},
				{"update", "multicluster.x-k8s.io", "serviceexports", "", "demo", "web"},
			}
			if create {
				allow = append(allow, access{"create", "", "services", "", "demo", ""}, access{"create", "", "namespaces", "", "", ""})
			} else {
				deny = append(deny, access{"create", "", "services", "", "demo", ""}, access{"create", "", "namespaces", "", "", ""})
			}
			review := func(sa string, allow, deny []access) {
				rc, _, err := e.ServiceAccountConfig(ctx, ns, sa)
				if err != nil {
					t.Fatal(err)
				}
				rc.QPS, rc.Burst = 200, 400
				cs := kubernetes.NewForConfigOrDie(rc)
				for _, a := range allow {
					if !can(t, ctx, cs, a) {
						t.Errorf("%s cannot %s", sa, a)
					}
				}
				for _, a := range deny {
					if can(t, ctx, cs, a) {
						t.Errorf("%s may %s", sa, a)
					}
				}
				// sync reads Secrets whose names users choose (ClusterLink
				// kubeconfigSecretRef, KubeLink apiAccess), so its get is not
				// limited by name in the secret namespaces: checked above
				// (get only; no list, no watch, no other namespace).
				if sa != "kubelink-sync" {
					noWildcards(t, ctx, cs, sa, ns)
				}
				noWildcards(t, ctx, cs, sa, "default")
			}
			review("kubelink-sync", allow, deny)
			review("kubelink-broker",
				[]access{{"list", "discovery.k8s.io", "endpointslices", "", ns, ""}, {"watch", "discovery.k8s.io", "endpointslices", "", ns, ""}},
				[]access{{"list", "discovery.k8s.io", "endpointslices", "", "demo", ""}, {"create", "discovery.k8s.io", "endpointslices", "", ns, ""}})
		})
	}
}
