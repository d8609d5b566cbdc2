package chart_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/kube"
	authzv1 "k8s.io/api/authorization/v1"
	coordv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"

	"github.com/kubelink/kubelink/api/synced"
	"github.com/kubelink/kubelink/api/watch"
	"github.com/kubelink/kubelink/test/testenv"
)

var kubelinkGVR = schema.GroupVersionResource{Group: "kubelink.mandelsoft.org", Version: "v1alpha1", Resource: "kubelinks"}

// TestInstallExamples installs every example with the Helm SDK into a real
// kube-apiserver (CRDs from the chart's crds/ included), checks that every
// rendered object exists, proves each component's RBAC with access reviews
// and real calls as its ServiceAccount, and uninstalls again.
func TestInstallExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the test environment's kube-apiserver")
	}
	// Covers the service CIDRs of kubelink1..4, so the fixed ClusterIPs are valid.
	e := testenv.Start(t, testenv.Options{ServiceCIDR: "100.64.0.0/16"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := loadChart(t)
	admin := e.Client()

	// The bridge examples name an existing TLS secret.
	if _, _, err := e.ServiceAccountConfig(ctx, releaseNS, "setup"); err != nil { // creates the namespace
		t.Fatal(err)
	}
	tlsSecret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "kubelink-tls", Namespace: releaseNS},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{"tls.crt": []byte("cert"), "tls.key": []byte("key"), "ca.crt": []byte("ca")},
	}
	if _, err := admin.CoreV1().Secrets(releaseNS).Create(ctx, tlsSecret, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the bridge TLS secret: %v", err)
	}

	for _, f := range clusterExamples(t) {
		ok := t.Run(rel(f), func(t *testing.T) {
			ex := loadExample(t, f)
			cfg := helmConfig(t, e.Kubeconfig)
			in := action.NewInstall(cfg)
			in.ReleaseName = releaseName
			in.Namespace = releaseNS
			in.CreateNamespace = true
			in.Timeout = time.Minute
			start := time.Now()
			r, err := in.RunWithContext(ctx, c, readValues(t, f))
			if err != nil {
				t.Fatalf("helm install -f %s: %v", rel(f), err)
			}
			t.Logf("installed %s in %v", rel(f), time.Since(start).Round(time.Millisecond))
			defer uninstall(t, ctx, cfg, e.Dynamic())
			if r.Info.Status != "deployed" {
				t.Fatalf("release status %s: %s", r.Info.Status, r.Info.Description)
			}
			checkInstalled(t, ctx, e, r.Manifest)
			svc, err := admin.CoreV1().Services(releaseNS).Get(ctx, "kubelink-dns", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if svc.Spec.ClusterIP != ex.dnsService {
				t.Errorf("apiserver gave the DNS Service %s, want %s", svc.Spec.ClusterIP, ex.dnsService)
			}
			t.Run("coredns", func(t *testing.T) { checkCorefileServes(t, ctx, e, ex) })
			if ex.cluster == "kubelink1" && ex.mode == "wireguard" {
				applyEcho(t, ctx, e)
			}
			checkRBAC(t, ctx, e, ex)
			checkUpgradeKeepsState(t, ctx, e, cfg, c, f, ex)
		})
		if !ok {
			return // a failed uninstall would make the next install fail too
		}
	}

	// Options the examples leave off must be accepted by the API too.
	t.Run("variants", func(t *testing.T) {
		base := readValues(t, filepath.Join(testenv.RepoRoot(), "examples", "kubelink1", "values.yaml"))
		vals := merge(base, parseValues(t, `
mesh: {name: mesh1, domain: mesh1.example, globalDNSIP: 100.64.0.53, ingress: ["100.64.0.0/20", "!100.64.0.1/32"]}
dns: {networkPolicy: {enabled: true, metricsFrom: [{namespaceSelector: {matchLabels: {name: monitoring}}}]}, replicas: 3, log: true}
broker: {replicas: 2, service: {type: NodePort, nodePort: 30777, annotations: {example.com/lb: internal}}, podMode: false}
router: {ipip: configure, routeTable: 100, rulePriority: 1000, tolerations: [{key: dedicated, operator: Equal, value: mesh, effect: NoSchedule}]}
links: [{name: kubelink2, cidr: 100.64.16.0/20, clusterAddress: 192.168.0.12/24, endpoint: Inbound,
         publicKey: xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=, egress: [10.99.0.0/24],
         dns: {dnsIP: 100.64.16.10, baseDomain: cluster.local}}]
`))
		cfg := helmConfig(t, e.Kubeconfig)
		in := action.NewInstall(cfg)
		in.ReleaseName, in.Namespace, in.Timeout = releaseName, releaseNS, time.Minute
		r, err := in.RunWithContext(ctx, c, vals)
		if err != nil {
			t.Fatalf("helm install (variants): %v", err)
		}
		defer uninstall(t, ctx, cfg, e.Dynamic())
		checkInstalled(t, ctx, e, r.Manifest)
		if _, err := e.Dynamic().Resource(kubelinkGVR).Get(ctx, "mesh1--kubelink2", metav1.GetOptions{}); err != nil {
			t.Errorf("named-mesh link: %v", err)
		}
		// The named mesh's Corefile (no default-mesh options, with log)
		// must load in the real CoreDNS and serve the mesh from its LocalLink.
		t.Run("coredns", func(t *testing.T) {
			cm, err := e.Client().CoreV1().ConfigMaps(releaseNS).Get(ctx, "kubelink-dns", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			addr := runCoreDNS(t, ctx, cm.Data["Corefile"], e.Kubeconfig)
			cl := &dns.Client{Timeout: 2 * time.Second}
			m := new(dns.Msg)
			m.SetQuestion("kubelink2.mesh1.example.", dns.TypeA)
			var got string
			for deadline := time.Now().Add(10 * time.Second); got != "192.168.0.12" && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
				if r, _, err := cl.ExchangeContext(ctx, m, addr); err == nil && len(r.Answer) == 1 {
					if a, ok := r.Answer[0].(*dns.A); ok {
						got = a.A.String()
					}
				}
			}
			if got != "192.168.0.12" {
				t.Errorf("kubelink2.mesh1.example A = %q, want 192.168.0.12", got)
			}
		})
	})
}

// applyEcho creates examples/echo (Deployment, Service, MeshServices): the
// CRD validation must accept the example MeshServices.
func applyEcho(t *testing.T, ctx context.Context, e *testenv.Env) {
	t.Helper()
	objs, err := testenv.ReadObjects(filepath.Join(testenv.RepoRoot(), "examples", "echo", "echo.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(e.Client().Discovery()))
	msvcs := 0
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s: %v", gvk, err)
		}
		var ri dynamic.ResourceInterface = e.Dynamic().Resource(m.Resource)
		if o.GetNamespace() != "" {
			ri = e.Dynamic().Resource(m.Resource).Namespace(o.GetNamespace())
		}
		if _, err := ri.Create(ctx, o, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Errorf("examples/echo: creating %s %s: %v", gvk.Kind, o.GetName(), err)
		}
		if gvk.Kind == "MeshService" {
			msvcs++
		}
	}
	if msvcs != 2 {
		t.Errorf("examples/echo has %d MeshServices, want 2", msvcs)
	}
}

// checkUpgradeKeepsState: `helm upgrade` must keep what netd wrote — the
// generated WireGuard key in the chart-created secret and the LocalLink
// status — while applying the new values.
func checkUpgradeKeepsState(t *testing.T, ctx context.Context, e *testenv.Env, cfg *action.Configuration, c *chart.Chart, values string, ex example) {
	t.Helper()
	up := action.NewUpgrade(cfg)
	up.Namespace, up.Timeout = releaseNS, time.Minute
	vals := merge(readValues(t, values), parseValues(t, `dns: {ttl: 30}`))
	if _, err := up.RunWithContext(ctx, releaseName, c, vals); err != nil {
		t.Fatalf("helm upgrade: %v", err)
	}
	cm, err := e.Client().CoreV1().ConfigMaps(releaseNS).Get(ctx, "kubelink-dns", metav1.GetOptions{})
	if err != nil || !strings.Contains(cm.Data["Corefile"], "ttl 30\n") {
		t.Errorf("upgrade did not apply dns.ttl: %v", err)
	}
	ll, err := e.Dynamic().Resource(kubelinkGVR).Get(ctx, ex.cluster, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st, _, _ := unstructured.NestedString(ll.Object, "status", "state"); st != "Up" {
		t.Errorf("LocalLink status lost on upgrade: %v", ll.Object["status"])
	}
	if ex.mode != "wireguard" {
		return
	}
	s, err := e.Client().CoreV1().Secrets(releaseNS).Get(ctx, "kubelink-broker", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(s.Data["WireguardPrivateKey"]) != "generated-by-netd" {
		t.Errorf("upgrade dropped the generated WireGuard key: %v", s.Data)
	}
}

func helmConfig(t *testing.T, kubeconfig string) *action.Configuration {
	t.Helper()
	cfg := new(action.Configuration)
	if err := cfg.Init(kube.GetConfig(kubeconfig, "", releaseNS), releaseNS, "secret", t.Logf); err != nil {
		t.Fatalf("helm configuration: %v", err)
	}
	return cfg
}

func uninstall(t *testing.T, ctx context.Context, cfg *action.Configuration, dyn dynamic.Interface) {
	t.Helper()
	u := action.NewUninstall(cfg)
	u.Timeout = time.Minute
	if _, err := u.Run(releaseName); err != nil {
		t.Fatalf("helm uninstall: %v", err)
	}
	// KubeLinks are cluster-scoped and shared by name between examples.
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		l, err := dyn.Resource(kubelinkGVR).List(ctx, metav1.ListOptions{})
		return err == nil && len(l.Items) == 0, nil
	})
	if err != nil {
		t.Fatalf("KubeLinks not gone after uninstall: %v", err)
	}
}

// checkInstalled reads back every object of the release manifest.
func checkInstalled(t *testing.T, ctx context.Context, e *testenv.Env, manifest string) {
	t.Helper()
	objs, err := testenv.DecodeObjects([]byte(manifest))
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(e.Client().Discovery()))
	dyn := e.Dynamic()
	kinds := map[string]int{}
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Errorf("%s: %v", gvk, err)
			continue
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if o.GetNamespace() != "" || m.Scope.Name() == "namespace" {
			ns := o.GetNamespace()
			if ns == "" {
				ns = releaseNS
			}
			ri = dyn.Resource(m.Resource).Namespace(ns)
		}
		got, err := ri.Get(ctx, o.GetName(), metav1.GetOptions{})
		if err != nil {
			t.Errorf("%s %s not in the apiserver: %v", gvk.Kind, o.GetName(), err)
			continue
		}
		if got.GetLabels()["app.kubernetes.io/managed-by"] != "Helm" {
			t.Errorf("%s %s lost its labels", gvk.Kind, o.GetName())
		}
		kinds[gvk.Kind]++
	}
	for _, k := range []string{"KubeLink", "Deployment", "DaemonSet", "Service", "ConfigMap", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "PodDisruptionBudget"} {
		if kinds[k] == 0 {
			t.Errorf("release has no %s", k)
		}
	}
	t.Logf("installed objects: %v", kinds)
}

// access is one access-review question.
type access struct {
	verb, group, resource, sub, ns, name string
}

func (a access) String() string {
	r := a.resource
	if a.sub != "" {
		r += "/" + a.sub
	}
	if a.group != "" {
		r += "." + a.group
	}
	return fmt.Sprintf("%s %s name=%q ns=%q", a.verb, r, a.name, a.ns)
}

const klGroup = "kubelink.mandelsoft.org"

// checkRBAC proves, as each component's ServiceAccount, that it can do
// what it needs and nothing notably more.
func checkRBAC(t *testing.T, ctx context.Context, e *testenv.Env, ex example) {
	t.Helper()
	ns := releaseNS
	secret := "kubelink-broker"
	if ex.mode == "bridge" {
		secret = "kubelink-tls"
	}
	// Denied to every component.
	common := []access{
		{"list", "", "secrets", "", "", ""},
		{"get", "", "secrets", "", "kube-system", "kubelink-broker"},
		{"watch", "", "secrets", "", "", ""},
		{"list", "", "secrets", "", ns, ""},
		{"get", "", "secrets", "", ns, "other"},
		{"delete", klGroup, "kubelinks", "", "", ex.cluster},
		{"create", "", "pods", "", ns, ""},
		{"create", "rbac.authorization.k8s.io", "rolebindings", "", ns, ""},
		{"update", "", "configmaps", "", "kube-system", "coredns"},
	}
	// The bridge broker's inbound API access: the links' <link>-apiaccess
	// Secrets (create cannot be limited by name); no tokens without
	// broker.serviceAccountAdvertisement.
	var brokerAllow, brokerDeny []access
	brokerDeny = append(brokerDeny, access{"create", "", "serviceaccounts", "token", ns, "kubelink-broker"})
	if ex.mode == "bridge" {
		brokerAllow = append(brokerAllow, access{"create", "", "secrets", "", ns, ""})
		for _, l := range ex.links {
			brokerAllow = append(brokerAllow, access{"get", "", "secrets", "", ns, l + "-apiaccess"}, access{"update", "", "secrets", "", ns, l + "-apiaccess"})
		}
		brokerDeny = append(brokerDeny, access{"create", "", "secrets", "", "default", ""}, access{"update", "", "secrets", "", ns, "other-apiaccess"},
			access{"delete", "", "secrets", "", ns, ex.links[0] + "-apiaccess"})
	} else {
		brokerDeny = append(brokerDeny, access{"create", "", "secrets", "", ns, ""})
	}
	components := []struct {
		sa            string
		allow, deny   []access
		realOperation func(t *testing.T, cs kubernetes.Interface, dyn dynamic.Interface)
	}{
		{
			sa: "kubelink-dns",
			allow: []access{
				{"get", klGroup, "kubelinks", "", "", ""}, {"list", klGroup, "kubelinks", "", "", ""}, {"watch", klGroup, "kubelinks", "", "", ""},
				{"list", klGroup, "meshservices", "", "", ""}, {"watch", klGroup, "meshservices", "", "", ""},
				// netd sync's service mirrors in the release namespace.
				{"list", "discovery.k8s.io", "endpointslices", "", ns, ""}, {"watch", "discovery.k8s.io", "endpointslices", "", ns, ""},
				// clusterset.local (dns.clusterset.enabled): ServiceImports
				// and the MCS slices of every namespace.
				{"list", "multicluster.x-k8s.io", "serviceimports", "", "", ""}, {"watch", "multicluster.x-k8s.io", "serviceimports", "", "", ""},
				{"list", "discovery.k8s.io", "endpointslices", "", "", ""}, {"watch", "discovery.k8s.io", "endpointslices", "", "default", ""},
			},
			deny: []access{
				{"create", "discovery.k8s.io", "endpointslices", "", ns, ""}, {"update", "discovery.k8s.io", "endpointslices", "", "default", "x"},
				{"create", "multicluster.x-k8s.io", "serviceimports", "", "default", ""}, {"update", "multicluster.x-k8s.io", "serviceimports", "status", "default", "x"},
				{"list", "multicluster.x-k8s.io", "serviceexports", "", "", ""}, {"list", "", "services", "", "", ""},
				{"update", klGroup, "kubelinks", "status", "", ex.cluster}, {"update", klGroup, "kubelinks", "", "", ex.cluster},
				{"create", "", "events", "", "default", ""}, {"get", "coordination.k8s.io", "leases", "", ns, "kubelink-broker"},
				{"get", "", "secrets", "", ns, secret},
			},
			realOperation: func(t *testing.T, cs kubernetes.Interface, dyn dynamic.Interface) {
				l, err := dyn.Resource(kubelinkGVR).List(ctx, metav1.ListOptions{})
				if err != nil || len(l.Items) != 1+len(ex.links) {
					t.Errorf("dns: listing KubeLinks: %v (%d items)", err, len(l.Items))
				}
				// What the plugin's informer does: the mirrors by label.
				if _, err := cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: synced.MirrorSelector}); err != nil {
					t.Errorf("dns: listing the service mirrors: %v", err)
				}
				// The clusterset zone's informers.
				if _, err := cs.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{LabelSelector: watch.MCSSliceSelector}); err != nil {
					t.Errorf("dns: listing the MCS slices: %v", err)
				}
				if _, err := dyn.Resource(watch.ServiceImports).List(ctx, metav1.ListOptions{}); err != nil {
					t.Errorf("dns: listing ServiceImports: %v", err)
				}
			},
		},
		{
			sa: "kubelink-broker",
			allow: append([]access{
				{"list", klGroup, "kubelinks", "", "", ""}, {"watch", klGroup, "kubelinks", "", "", ""},
				{"update", klGroup, "kubelinks", "status", "", ex.cluster}, {"patch", klGroup, "kubelinks", "status", "", "kubelink2"},
				{"list", klGroup, "meshservices", "", "", ""}, {"update", klGroup, "meshservices", "status", "demo", "echo"},
				{"list", "", "services", "", "", ""}, {"watch", "", "services", "", "", ""},
				{"create", "", "events", "", "default", ""}, {"patch", "", "events", "", "demo", ""}, {"create", "events.k8s.io", "events", "", "default", ""},
				{"create", "coordination.k8s.io", "leases", "", ns, ""}, {"update", "coordination.k8s.io", "leases", "", ns, "kubelink-broker"},
				{"get", "", "secrets", "", ns, secret}, {"update", "", "secrets", "", ns, secret}, {"watch", "", "secrets", "", ns, secret},
			}, brokerAllow...),
			deny: append([]access{
				{"update", "coordination.k8s.io", "leases", "", ns, "other"}, {"create", "coordination.k8s.io", "leases", "", "kube-system", ""},
				{"get", "", "secrets", "", "default", secret}, {"delete", "", "secrets", "", ns, secret},
				{"delete", klGroup, "meshservices", "", "demo", "echo"}, {"create", "", "services", "", ns, ""},
				{"list", "", "nodes", "", "", ""},
			}, brokerDeny...),
			realOperation: func(t *testing.T, cs kubernetes.Interface, dyn dynamic.Interface) {
				brokerReal(t, ctx, cs, dyn, ex, secret)
			},
		},
		{
			sa: "kubelink-router",
			allow: []access{
				{"list", klGroup, "kubelinks", "", "", ""}, {"watch", klGroup, "kubelinks", "", "", ""},
				{"get", "coordination.k8s.io", "leases", "", ns, "kubelink-broker"}, {"watch", "coordination.k8s.io", "leases", "", ns, ""},
				{"list", "", "pods", "", ns, ""}, {"list", "discovery.k8s.io", "endpointslices", "", ns, ""},
			},
			deny: []access{
				{"update", "coordination.k8s.io", "leases", "", ns, "kubelink-broker"}, {"list", "", "pods", "", "", ""},
				{"update", klGroup, "kubelinks", "status", "", ex.cluster}, {"get", "", "secrets", "", ns, secret},
				{"create", "", "events", "", "default", ""},
			},
			realOperation: func(t *testing.T, cs kubernetes.Interface, dyn dynamic.Interface) {
				if _, err := dyn.Resource(kubelinkGVR).Get(ctx, ex.cluster, metav1.GetOptions{}); err != nil {
					t.Errorf("router: reading the LocalLink: %v", err)
				}
				if _, err := cs.CoordinationV1().Leases(ns).List(ctx, metav1.ListOptions{}); err != nil {
					t.Errorf("router: listing leases: %v", err)
				}
			},
		},
	}
	for _, comp := range components {
		t.Run(comp.sa, func(t *testing.T) {
			rc, _, err := e.ServiceAccountConfig(ctx, ns, comp.sa)
			if err != nil {
				t.Fatal(err)
			}
			rc.QPS, rc.Burst = 200, 400 // many reviews; client-go's default 5 QPS would dominate
			cs := kubernetes.NewForConfigOrDie(rc)
			dyn := dynamic.NewForConfigOrDie(rc)
			for _, a := range comp.allow {
				if !can(t, ctx, cs, a) {
					t.Errorf("%s cannot %s", comp.sa, a)
				}
			}
			for _, a := range append(comp.deny, common...) {
				if can(t, ctx, cs, a) {
					t.Errorf("%s may %s", comp.sa, a)
				}
			}
			noWildcards(t, ctx, cs, comp.sa, ns)
			noWildcards(t, ctx, cs, comp.sa, "default")
			comp.realOperation(t, cs, dyn)
		})
	}
}

func can(t *testing.T, ctx context.Context, cs kubernetes.Interface, a access) bool {
	t.Helper()
	r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authzv1.SelfSubjectAccessReview{
		Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authzv1.ResourceAttributes{
			Verb: a.verb, Group: a.group, Resource: a.resource, Subresource: a.sub, Namespace: a.ns, Name: a.name,
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("access review %s: %v", a, err)
	}
	return r.Status.Allowed
}

// noWildcards asks the apiserver for the ServiceAccount's effective rules.
func noWildcards(t *testing.T, ctx context.Context, cs kubernetes.Interface, sa, ns string) {
	t.Helper()
	r, err := cs.AuthorizationV1().SelfSubjectRulesReviews().Create(ctx, &authzv1.SelfSubjectRulesReview{
		Spec: authzv1.SelfSubjectRulesReviewSpec{Namespace: ns},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("rules review: %v", err)
	}
	if r.Status.Incomplete {
		t.Errorf("%s: rules review incomplete: %s", sa, r.Status.EvaluationError)
	}
	for _, rule := range r.Status.ResourceRules {
		for _, s := range [][]string{rule.Verbs, rule.Resources, rule.APIGroups} {
			for _, v := range s {
				if strings.Contains(v, "*") {
					t.Errorf("%s has a wildcard rule in %s: %+v", sa, ns, rule)
				}
			}
		}
		for _, res := range rule.Resources {
			// create cannot be limited by name (the bridge broker's
			// inbound API access Secrets); it reads nothing.
			createOnly := len(rule.Verbs) == 1 && rule.Verbs[0] == "create"
			if res == "secrets" && len(rule.ResourceNames) == 0 && !createOnly {
				t.Errorf("%s may access all secrets in %s: %+v", sa, ns, rule)
			}
		}
	}
	for _, rule := range r.Status.NonResourceRules {
		for _, v := range rule.Verbs {
			if v == "*" {
				t.Errorf("%s has wildcard non-resource verbs: %+v", sa, rule)
			}
		}
	}
}

// brokerReal does, as the broker, what netd does: take the Lease, fill its
// secret, write the LocalLink status.
func brokerReal(t *testing.T, ctx context.Context, cs kubernetes.Interface, dyn dynamic.Interface, ex example, secret string) {
	t.Helper()
	leases := cs.CoordinationV1().Leases(releaseNS)
	holder := "kubelink-broker-0"
	l, err := leases.Create(ctx, &coordv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "kubelink-broker"},
		Spec:       coordv1.LeaseSpec{HolderIdentity: &holder},
	}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		l, err = leases.Get(ctx, "kubelink-broker", metav1.GetOptions{})
	}
	if err != nil {
		t.Fatalf("broker: taking the lease: %v", err)
	}
	other := "kubelink-broker-1"
	l.Spec.HolderIdentity = &other
	if _, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
		t.Errorf("broker: renewing the lease: %v", err)
	}

	s, err := cs.CoreV1().Secrets(releaseNS).Get(ctx, secret, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("broker: reading its secret: %v", err)
	}
	if ex.mode == "wireguard" {
		if s.Data == nil {
			s.Data = map[string][]byte{}
		}
		s.Data["WireguardPrivateKey"] = []byte("generated-by-netd")
		if _, err := cs.CoreV1().Secrets(releaseNS).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Errorf("broker: storing the generated key: %v", err)
		}
	}
	if _, err := cs.CoreV1().Secrets(releaseNS).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("broker: listing all secrets of its namespace: %v, want forbidden", err)
	}

	ll, err := dyn.Resource(kubelinkGVR).Get(ctx, ex.cluster, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("broker: reading the LocalLink: %v", err)
	}
	ll.Object["status"] = map[string]any{"state": "Up", "publicKey": "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="}
	if _, err := dyn.Resource(kubelinkGVR).UpdateStatus(ctx, ll, metav1.UpdateOptions{}); err != nil {
		t.Errorf("broker: writing the LocalLink status: %v", err)
	}
	msvc := schema.GroupVersionResource{Group: klGroup, Version: "v1alpha1", Resource: "meshservices"}
	if ms, err := dyn.Resource(msvc).Namespace("demo").Get(ctx, "echo-vip", metav1.GetOptions{}); err == nil {
		ms.Object["status"] = map[string]any{"state": "Ok", "message": "exposed on 192.168.0.111"}
		if _, err := dyn.Resource(msvc).Namespace("demo").UpdateStatus(ctx, ms, metav1.UpdateOptions{}); err != nil {
			t.Errorf("broker: writing a MeshService status: %v", err)
		}
	} else if !apierrors.IsNotFound(err) {
		t.Errorf("broker: reading a MeshService: %v", err)
	}
	if _, err := cs.CoreV1().Events("default").Create(ctx, &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: "kubelink-"},
		InvolvedObject: corev1.ObjectReference{APIVersion: "kubelink.mandelsoft.org/v1alpha1", Kind: "KubeLink", Name: ex.cluster},
		Reason:         "StateChanged", Message: "Up", Type: corev1.EventTypeNormal,
		Source: corev1.EventSource{Component: "netd"},
	}, metav1.CreateOptions{}); err != nil {
		t.Errorf("broker: recording an event: %v", err)
	}
}
