package chart_test

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubelink/kubelink/api/synced"
	"github.com/kubelink/kubelink/netd/remotecfg"
	"github.com/kubelink/kubelink/test/testenv"
)

// The `netd sync` part of the chart (issue #13 item 9): the Deployment, its
// RBAC (exactly what sync reads and writes, secrets only by get in the
// configured namespaces, Service and namespace creation only when asked
// for), the remote-reader ClusterRole and the values schema.

const (
	syncName         = "kubelink-sync"
	syncSA           = "system:serviceaccount:" + releaseNS + ":" + syncName
	remoteReaderName = "kubelink-mesh-reader"
)

func syncBase(t testing.TB) map[string]any {
	t.Helper()
	return readValues(t, filepath.Join(testenv.RepoRoot(), "examples", "kubelink1", "values.yaml"))
}

func renderSync(t *testing.T, overlay string) []*unstructured.Unstructured {
	t.Helper()
	objs, _ := render(t, loadChart(t), merge(syncBase(t), parseValues(t, overlay)))
	return objs
}

// syncObjects are the rendered objects of the sync and remote-reader
// components.
func syncObjects(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		switch o.GetLabels()["app.kubernetes.io/component"] {
		case "sync", "remote-reader":
			out = append(out, o)
		}
	}
	return out
}

func TestSyncDisabledByDefault(t *testing.T) {
	c := loadChart(t)
	for _, f := range exampleValues(t) {
		objs, _ := render(t, c, readValues(t, f))
		if s := syncObjects(objs); len(s) > 0 {
			t.Errorf("%s: sync objects rendered although sync.enabled defaults to false: %s", rel(f), names(s))
		}
		for _, o := range objs {
			if strings.Contains(o.GetName(), "-sync") || strings.Contains(o.GetName(), "mesh-reader") {
				t.Errorf("%s: %s/%s rendered by default", rel(f), o.GetKind(), o.GetName())
			}
		}
	}
	// Explicitly off, remote reader off: nothing either.
	if s := syncObjects(renderSync(t, `sync: {enabled: false, replicas: 3, syncServicesToLocalCluster: true, remoteReader: {enabled: false}}`)); len(s) > 0 {
		t.Errorf("sync.enabled false renders %s", names(s))
	}
}

// TestSyncDeployment checks the workload: image, args from values, probes,
// port, security context, scheduling, rollout.
func TestSyncDeployment(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		objs := renderSync(t, `sync: {enabled: true}`)
		d := find(t, objs, "Deployment", syncName)
		want := []string{
			"sync",
			"--cluster-name=kubelink1",
			"--namespace=" + releaseNS,
			"--server-port-http=8182",
			"--sync-interval=30s",
			"--sync-services-to-local-cluster=false",
			"--api-grace-period=30s",
			"--clusterlink-address-mode=pod",
			"--kubelink-address-mode=service",
			"--workers=8",
			"--kube-api-qps=500",
			"--kube-api-burst=1000",
		}
		if got := args(t, d); !slices.Equal(got, want) {
			t.Errorf("args\n got %q\nwant %q", got, want)
		}
		if got := str(t, d, "spec", "replicas"); got != "1" {
			t.Errorf("replicas %s", got)
		}
		ctr := container(t, d)
		broker := container(t, find(t, objs, "Deployment", "kubelink-broker"))
		if ctr["image"] != broker["image"] || ctr["imagePullPolicy"] != broker["imagePullPolicy"] {
			t.Errorf("sync image %v (%v), broker image %v (%v)", ctr["image"], ctr["imagePullPolicy"], broker["image"], broker["imagePullPolicy"])
		}
		if got := str(t, d, "spec", "template", "spec", "serviceAccountName"); got != syncName {
			t.Errorf("serviceAccountName %s", got)
		}
		checkSyncPod(t, d)
		// Rollout as the broker's, the other leader-elected Deployment.
		for _, k := range []string{"maxUnavailable", "maxSurge"} {
			if got, want := str(t, d, "spec", "strategy", "rollingUpdate", k), str(t, find(t, objs, "Deployment", "kubelink-broker"), "spec", "strategy", "rollingUpdate", k); got != want {
				t.Errorf("rollingUpdate.%s %s, the broker's %s", k, got, want)
			}
		}
		if got := toYAML(ctr["resources"]); !strings.Contains(got, "memory: 64Mi") {
			t.Errorf("default resources:\n%s", got)
		}
		// No election with one replica: no lease flags, no Lease Role.
		if has(objs, "Role", syncName) || has(objs, "RoleBinding", syncName) {
			t.Errorf("lease Role rendered without leader election")
		}
	})

	t.Run("every value", func(t *testing.T) {
		objs := renderSync(t, `
sync:
  enabled: true
  replicas: 1
  leaderElection: true
  leaseDuration: 20s
  syncInterval: 1m30s
  includedNamespaces: [default, shop]
  syncServicesToLocalCluster: true
  apiGracePeriod: 45s
  clusterLinkAddressMode: service
  kubeLinkAddressMode: pod
  workers: 16
  kubeAPIQPS: 1000000
  kubeAPIBurst: 2000
  httpPort: 9182
  verbose: true
  extraArgs: [--extra=1]
  extraEnv: [{name: GOMEMLIMIT, value: 400MiB}]
  resources: {requests: {cpu: 10m}, limits: {memory: 1Gi}}
  nodeSelector: {node-role.kubernetes.io/infra: ""}
  tolerations: [{key: infra, operator: Exists, effect: NoSchedule}]
  affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: zone, operator: In, values: [a]}]}]}}}
  priorityClassName: system-cluster-critical
  podAnnotations: {prometheus.io/scrape: "true"}
  podLabels: {team: net}
`)
		d := find(t, objs, "Deployment", syncName)
		want := []string{
			"sync",
			"--cluster-name=kubelink1",
			"--namespace=" + releaseNS,
			"--server-port-http=9182",
			"--sync-interval=1m30s",
			"--included-namespaces=default,shop",
			"--sync-services-to-local-cluster=true",
			"--api-grace-period=45s",
			"--clusterlink-address-mode=service",
			"--kubelink-address-mode=pod",
			"--workers=16",
			"--kube-api-qps=1000000",
			"--kube-api-burst=2000",
			"--lease-name=kubelink-sync",
			"--lease-namespace=" + releaseNS,
			"--lease-duration=20s",
			"-v",
			"--extra=1",
		}
		if got := args(t, d); !slices.Equal(got, want) {
			t.Errorf("args\n got %q\nwant %q", got, want)
		}
		checkSyncPod(t, d)
		spec, _, _ := unstructured.NestedMap(d.Object, "spec", "template", "spec")
		y := toYAML(spec)
		for _, w := range []string{
			"priorityClassName: system-cluster-critical",
			"node-role.kubernetes.io/infra: \"\"",
			"key: infra",
			"key: zone",
			"name: GOMEMLIMIT",
			"memory: 1Gi",
			"containerPort: 9182",
		} {
			if !strings.Contains(y, w) {
				t.Errorf("pod spec lacks %q:\n%s", w, y)
			}
		}
		if strings.Contains(y, "podAntiAffinity") {
			t.Errorf("affinity not replaced by sync.affinity:\n%s", y)
		}
		meta, _, _ := unstructured.NestedStringMap(d.Object, "spec", "template", "metadata", "annotations")
		labels, _, _ := unstructured.NestedStringMap(d.Object, "spec", "template", "metadata", "labels")
		if meta["prometheus.io/scrape"] != "true" || labels["team"] != "net" {
			t.Errorf("pod annotations %v, labels %v", meta, labels)
		}
	})

	t.Run("leader election", func(t *testing.T) {
		for _, tc := range []struct {
			values string
			elect  bool
		}{
			{`sync: {enabled: true, replicas: 1}`, false},
			{`sync: {enabled: true, replicas: 0}`, false},
			{`sync: {enabled: true, replicas: 1, leaderElection: true}`, true},
			{`sync: {enabled: true, replicas: 2}`, true},
			{`sync: {enabled: true, replicas: 3, leaderElection: false}`, true},
		} {
			objs := renderSync(t, tc.values)
			a := args(t, find(t, objs, "Deployment", syncName))
			lease := slices.ContainsFunc(a, func(s string) bool { return strings.HasPrefix(s, "--lease-") })
			if lease != tc.elect {
				t.Errorf("%s: lease flags %v, want election %v: %v", tc.values, lease, tc.elect, a)
			}
			if tc.elect && !(slices.Contains(a, "--lease-name=kubelink-sync") && slices.Contains(a, "--lease-namespace="+releaseNS) && slices.Contains(a, "--lease-duration=15s")) {
				t.Errorf("%s: lease flags %v", tc.values, a)
			}
			rbac := newRBAC(objs)
			if got := rbac.can(syncSA, "update", "coordination.k8s.io", "leases", releaseNS, "kubelink-sync"); got != tc.elect {
				t.Errorf("%s: may update its Lease: %v, want %v", tc.values, got, tc.elect)
			}
			if tc.elect {
				// Exactly what client-go's Lease lock does, on its own Lease.
				r := find(t, objs, "Role", syncName)
				got := ruleSet(t, r)
				want := tuples(
					rule{"coordination.k8s.io", "leases", "kubelink-sync", "get update"},
					rule{"coordination.k8s.io", "leases", "", "create"},
				)
				if !reflect.DeepEqual(got, want) {
					t.Errorf("lease Role rules\n got %v\nwant %v", got, want)
				}
				if rbac.can(syncSA, "get", "coordination.k8s.io", "leases", releaseNS, "kubelink-broker") {
					t.Errorf("sync may read the broker's Lease")
				}
			}
		}
	})
}

// checkSyncPod: no privileges of any kind, probes and the metrics port.
func checkSyncPod(t *testing.T, d *unstructured.Unstructured) {
	t.Helper()
	spec, _, _ := unstructured.NestedMap(d.Object, "spec", "template", "spec")
	for _, k := range []string{"hostNetwork", "hostPID", "hostIPC", "initContainers"} {
		if v, ok := spec[k]; ok && v != false {
			t.Errorf("pod spec sets %s: %v", k, v)
		}
	}
	psc, _ := spec["securityContext"].(map[string]any)
	if psc["runAsNonRoot"] != true {
		t.Errorf("pod securityContext without runAsNonRoot: %v", psc)
	}
	if uid := fmt.Sprint(psc["runAsUser"]); uid == "0" || uid == "<nil>" {
		t.Errorf("pod runs as uid %v (the netd image's USER is 0)", psc["runAsUser"])
	}
	if _, ok := psc["sysctls"]; ok {
		t.Errorf("pod sysctls: %v", psc)
	}
	if spec["automountServiceAccountToken"] == false {
		t.Errorf("sync needs its ServiceAccount token")
	}
	ctr := container(t, d)
	sc, _ := ctr["securityContext"].(map[string]any)
	caps, _ := sc["capabilities"].(map[string]any)
	if fmt.Sprint(caps["drop"]) != "[ALL]" || caps["add"] != nil {
		t.Errorf("capabilities %v, want drop [ALL] and nothing added", caps)
	}
	for k, want := range map[string]any{"readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false, "privileged": false, "runAsNonRoot": true} {
		if sc[k] != want {
			t.Errorf("container securityContext.%s = %v, want %v", k, sc[k], want)
		}
	}
	if fmt.Sprint(sc["runAsUser"]) == "0" {
		t.Errorf("container runs as root")
	}
	// The port /metrics, /healthz and /readyz are served on, by name.
	a := args(t, d)
	i := slices.IndexFunc(a, func(s string) bool { return strings.HasPrefix(s, "--server-port-http=") })
	if i < 0 {
		t.Fatalf("no --server-port-http: %v", a)
	}
	port := strings.TrimPrefix(a[i], "--server-port-http=")
	ports, _ := ctr["ports"].([]any)
	portName := ""
	for _, p := range ports {
		pm := p.(map[string]any)
		if fmt.Sprint(pm["containerPort"]) == port && pm["protocol"] == "TCP" {
			portName, _ = pm["name"].(string)
		}
	}
	if portName != "metrics" {
		t.Errorf("container port %s named %q, want metrics: %v", port, portName, ports)
	}
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		p, _ := ctr[probe].(map[string]any)
		hg, _ := p["httpGet"].(map[string]any)
		if hg["path"] != path || (fmt.Sprint(hg["port"]) != portName && fmt.Sprint(hg["port"]) != port) {
			t.Errorf("%s %v, want %s on %s (%s)", probe, p, path, portName, port)
		}
	}
	env := toYAML(ctr["env"])
	for _, w := range []string{"name: POD_NAME\n  valueFrom:\n    fieldRef:\n      fieldPath: metadata.name", "name: POD_NAMESPACE\n  valueFrom:\n    fieldRef:\n      fieldPath: metadata.namespace"} {
		if !strings.Contains(env, w) {
			t.Errorf("env lacks %q:\n%s", w, env)
		}
	}
}

// rule is one (apiGroup, resource, resourceName, verbs) of a role.
type rule struct{ group, resource, name, verbs string }

// tuples expands rules to the sorted set of "group/resource[/name]:verb".
func tuples(rs ...rule) []string {
	var out []string
	for _, r := range rs {
		for _, v := range strings.Fields(r.verbs) {
			out = append(out, tuple(r.group, r.resource, r.name, v))
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

func tuple(group, resource, name, verb string) string {
	s := group + "/" + resource
	if name != "" {
		s += "/" + name
	}
	return s + ":" + verb
}

func policyRules(t testing.TB, o *unstructured.Unstructured) []rbacv1.PolicyRule {
	t.Helper()
	var r struct {
		Rules []rbacv1.PolicyRule `json:"rules"`
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &r); err != nil {
		t.Fatalf("%s/%s: %v", o.GetKind(), o.GetName(), err)
	}
	return r.Rules
}

// ruleSet is a role's rules as tuples; wildcards and non-resource URLs fail.
func ruleSet(t testing.TB, o *unstructured.Unstructured) []string {
	t.Helper()
	var out []string
	for _, r := range policyRules(t, o) {
		if len(r.NonResourceURLs) > 0 {
			t.Errorf("%s/%s: non-resource URLs %v", o.GetKind(), o.GetName(), r.NonResourceURLs)
		}
		names := r.ResourceNames
		if len(names) == 0 {
			names = []string{""}
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, n := range names {
					for _, v := range r.Verbs {
						if strings.Contains(g+res+n+v, "*") {
							t.Errorf("%s/%s: wildcard in %+v", o.GetKind(), o.GetName(), r)
						}
						out = append(out, tuple(g, res, n, v))
					}
				}
			}
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// The ClusterRole of netd sync, exactly the brief of issue #13: reads of
// the local catalogue and the links, status of the links and exports,
// writes of EndpointSlices, ServiceImports and events.
var syncClusterRules = []rule{
	{"", "services", "", "get list watch"},
	{"", "namespaces", "", "get list watch"},
	{"discovery.k8s.io", "endpointslices", "", "get list watch create update patch delete"},
	{"svclink.cloudpilot.ai", "clusterlinks", "", "get list watch"},
	{"svclink.cloudpilot.ai", "clusterlinks/status", "", "get update patch"},
	{"kubelink.mandelsoft.org", "kubelinks", "", "get list watch"},
	{"kubelink.mandelsoft.org", "kubelinks/status", "", "get patch"},
	{"multicluster.x-k8s.io", "serviceexports", "", "get list watch"},
	{"multicluster.x-k8s.io", "serviceexports/status", "", "get update patch"},
	{"multicluster.x-k8s.io", "serviceimports", "", "get list watch create update patch delete"},
	{"multicluster.x-k8s.io", "serviceimports/status", "", "get update patch"},
	{"", "events", "", "create patch"},
	{"events.k8s.io", "events", "", "create patch"},
}

func TestSyncRBAC(t *testing.T) {
	for _, tc := range []struct {
		name, values string
		create       bool     // services and namespaces
		secretNS     []string // where secrets may be read
	}{
		{"defaults", `sync: {enabled: true}`, false, []string{releaseNS}},
		{"create services", `sync: {enabled: true, syncServicesToLocalCluster: true}`, true, []string{releaseNS}},
		{"secret namespaces", `sync: {enabled: true, secretNamespaces: [links, team-a]}`, false, []string{"links", "team-a"}},
		{"secret namespaces with the release namespace", `sync: {enabled: true, replicas: 2, secretNamespaces: [team-a, kubelink]}`, false, []string{"team-a", releaseNS}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := renderSync(t, tc.values)
			want := slices.Clone(syncClusterRules)
			if tc.create {
				want = append(want, rule{"", "services", "", "create"}, rule{"", "namespaces", "", "create"})
			}
			if got, w := ruleSet(t, find(t, objs, "ClusterRole", syncName)), tuples(want...); !reflect.DeepEqual(got, w) {
				t.Errorf("ClusterRole %s rules\n got %v\nwant %v\nextra %v\nmissing %v", syncName, got, w, minus(got, w), minus(w, got))
			}
			crb := find(t, objs, "ClusterRoleBinding", syncName)
			if got := toYAML(crb.Object["subjects"]); got != "- kind: ServiceAccount\n  name: kubelink-sync\n  namespace: kubelink\n" {
				t.Errorf("ClusterRoleBinding subjects:\n%s", got)
			}
			if got := str(t, crb, "roleRef", "name"); got != syncName {
				t.Errorf("ClusterRoleBinding roleRef %s", got)
			}
			find(t, objs, "ServiceAccount", syncName)

			// Effective access of the ServiceAccount over everything rendered.
			rbac := newRBAC(objs)
			for _, ns := range []string{releaseNS, "links", "team-a", "default", "kube-system", ""} {
				wantGet := slices.Contains(tc.secretNS, ns)
				if got := rbac.can(syncSA, "get", "", "secrets", ns, "any"); got != wantGet {
					t.Errorf("get secrets in %q: %v, want %v", ns, got, wantGet)
				}
				for _, v := range []string{"list", "watch", "create", "update", "patch", "delete", "deletecollection"} {
					if rbac.can(syncSA, v, "", "secrets", ns, "") {
						t.Errorf("%s secrets in %q allowed", v, ns)
					}
				}
				for _, res := range []string{"services", "namespaces"} {
					if got := rbac.can(syncSA, "create", "", res, ns, ""); got != tc.create {
						t.Errorf("create %s in %q: %v, want %v", res, ns, got, tc.create)
					}
					for _, v := range []string{"update", "patch", "delete"} {
						if rbac.can(syncSA, v, "", res, ns, "") {
							t.Errorf("%s %s in %q allowed", v, res, ns)
						}
					}
				}
			}
			// One get-only secrets Role per namespace, nothing more.
			var roleNS []string
			for _, o := range objs {
				if o.GetKind() == "Role" && o.GetName() == syncName+"-secrets" {
					roleNS = append(roleNS, o.GetNamespace())
					if got := ruleSet(t, o); !reflect.DeepEqual(got, []string{"/secrets:get"}) {
						t.Errorf("Role %s/%s rules %v", o.GetNamespace(), o.GetName(), got)
					}
				}
			}
			sort.Strings(roleNS)
			wantNS := slices.Sorted(slices.Values(tc.secretNS))
			if !slices.Equal(roleNS, wantNS) {
				t.Errorf("secrets Roles in %v, want %v", roleNS, wantNS)
			}
			// No ClusterRole of the chart grants secrets.
			for _, o := range objs {
				if o.GetKind() == "ClusterRole" && slices.ContainsFunc(ruleSet(t, o), func(s string) bool { return strings.HasPrefix(s, "/secrets") }) {
					t.Errorf("ClusterRole %s grants secrets", o.GetName())
				}
			}
			for _, o := range syncObjects(objs) {
				if o.GetKind() == "Role" || o.GetKind() == "ClusterRole" {
					ruleSet(t, o) // fails on wildcards
				}
			}
		})
	}
}

func minus(a, b []string) []string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}

// TestSyncRemoteReader: the ClusterRole other clusters' netd sync use here
// is exactly `netd kubeconfig`'s, with or without the local sync.
func TestSyncRemoteReader(t *testing.T) {
	for _, v := range []string{
		`sync: {remoteReader: {enabled: true}}`,
		`sync: {enabled: true, remoteReader: {enabled: true}}`,
	} {
		objs := renderSync(t, v)
		cr := find(t, objs, "ClusterRole", remoteReaderName)
		if got := policyRules(t, cr); !reflect.DeepEqual(got, remotecfg.Rules) {
			t.Errorf("%s: remote-reader rules differ from netd kubeconfig's (netd/remotecfg.Rules)\n got %+v\nwant %+v", v, got, remotecfg.Rules)
		}
		ruleSet(t, cr)
		for _, o := range objs {
			// A role only: who may use it is the operator's decision.
			if (o.GetKind() == "ClusterRoleBinding" || o.GetKind() == "RoleBinding") && str(t, o, "roleRef", "name") == remoteReaderName {
				t.Errorf("%s/%s binds the remote reader", o.GetKind(), o.GetName())
			}
		}
	}
	for _, v := range []string{`sync: {enabled: true}`, `sync: {enabled: true, remoteReader: {enabled: false}}`} {
		if objs := renderSync(t, v); has(objs, "ClusterRole", remoteReaderName) {
			t.Errorf("%s renders the remote reader", v)
		}
	}
}

func TestSyncSchemaRejects(t *testing.T) {
	c := loadChart(t)
	base := syncBase(t)
	for _, tc := range []struct {
		name, values string
		want         []string
	}{
		{"ClusterLink address mode", `sync: {enabled: true, clusterLinkAddressMode: node}`, []string{"/sync/clusterLinkAddressMode", "pod", "service"}},
		{"KubeLink address mode", `sync: {kubeLinkAddressMode: Service}`, []string{"/sync/kubeLinkAddressMode", "pod", "service"}},
		{"sync interval without unit", `sync: {enabled: true, syncInterval: "30"}`, []string{"/sync/syncInterval", "does not match pattern"}},
		{"sync interval in words", `sync: {syncInterval: 30 seconds}`, []string{"/sync/syncInterval"}},
		{"API grace period as a number", `sync: {apiGracePeriod: 30}`, []string{"/sync/apiGracePeriod"}},
		{"lease duration", `sync: {leaseDuration: 15 s}`, []string{"/sync/leaseDuration"}},
		{"unknown key", `sync: {enabled: true, syncIntervall: 30s}`, []string{"/sync", "syncIntervall"}},
		{"remote reader unknown key", `sync: {remoteReader: {enable: true}}`, []string{"/sync/remoteReader", "enable"}},
		{"included namespace malformed", `sync: {includedNamespaces: [Shop_1]}`, []string{"/sync/includedNamespaces/0"}},
		{"included namespaces not a list", `sync: {includedNamespaces: "a,b"}`, []string{"/sync/includedNamespaces"}},
		{"secret namespace malformed", `sync: {secretNamespaces: [kubelink, "-x"]}`, []string{"/sync/secretNamespaces/1"}},
		{"workers zero", `sync: {workers: 0}`, []string{"/sync/workers"}},
		{"QPS a string", `sync: {kubeAPIQPS: "100"}`, []string{"/sync/kubeAPIQPS"}},
		{"burst fractional", `sync: {kubeAPIBurst: 1.5}`, []string{"/sync/kubeAPIBurst"}},
		{"negative replicas", `sync: {replicas: -1}`, []string{"/sync/replicas"}},
		{"sync services not a boolean", `sync: {syncServicesToLocalCluster: "yes"}`, []string{"/sync/syncServicesToLocalCluster"}},
		{"resources malformed", `sync: {resources: {limits: {memory: lots}}}`, []string{"/sync/resources/limits/memory"}},
		{"http port out of range", `sync: {httpPort: 70000}`, []string{"/sync/httpPort"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := renderErr(c, merge(base, parseValues(t, tc.values)))
			if err == nil {
				t.Fatalf("values accepted:\n%s", tc.values)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
	// And the documented forms pass.
	if _, _, err := renderErr(c, merge(base, parseValues(t, `
sync: {enabled: true, syncInterval: 1h2m3.5s, apiGracePeriod: 500ms, leaseDuration: 15s, clusterLinkAddressMode: service, kubeLinkAddressMode: pod, includedNamespaces: [a, b-1], secretNamespaces: [kubelink]}
`))); err != nil {
		t.Errorf("valid sync values rejected: %v", err)
	}
}

// TestSyncLint: `helm lint --strict` with everything of sync on.
func TestSyncLint(t *testing.T) {
	l := newLint()
	res := l.Run([]string{chartDir()}, merge(syncBase(t), parseValues(t, `sync: {enabled: true, replicas: 2, syncServicesToLocalCluster: true, secretNamespaces: [kubelink, links], remoteReader: {enabled: true}}`)))
	for _, m := range res.Messages {
		t.Logf("%s", m)
	}
	if len(res.Errors) > 0 || res.TotalChartsLinted != 1 {
		t.Errorf("helm lint --strict: %d charts linted, errors: %v", res.TotalChartsLinted, res.Errors)
	}
}

// TestSyncDocumented: the chart README names the cleanup selector of
// api/synced, every sync value of values.yaml, and the remote-reader rules.
func TestSyncDocumented(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chartDir(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	if w := "kubectl delete endpointslices,serviceimports,services -A -l " + synced.CleanupSelector; !strings.Contains(readme, w) {
		t.Errorf("chart README lacks the cleanup command %q", w)
	}
	// NOTES.txt says where secrets are read and how to find what sync wrote.
	_, notes := render(t, loadChart(t), merge(syncBase(t), parseValues(t, `sync: {enabled: true, secretNamespaces: [kubelink, links], remoteReader: {enabled: true}}`)))
	t.Logf("NOTES.txt:\n%s", notes)
	for _, w := range []string{"-l " + synced.CleanupSelector, "get only) in: kubelink, links.", "ClusterRole " + remoteReaderName} {
		if !strings.Contains(notes, w) {
			t.Errorf("NOTES.txt lacks %q", w)
		}
	}
	if _, notes := render(t, loadChart(t), syncBase(t)); strings.Contains(notes, "netd sync") || strings.Contains(notes, "remote-reader") {
		t.Errorf("NOTES.txt mentions sync although disabled:\n%s", notes)
	}
	defaults, err := os.ReadFile(filepath.Join(chartDir(), "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	sv, _ := parseValues(t, string(defaults))["sync"].(map[string]any)
	if len(sv) == 0 {
		t.Fatal("values.yaml has no sync section")
	}
	if sv["enabled"] != false {
		t.Errorf("sync.enabled defaults to %v", sv["enabled"])
	}
	for k := range sv {
		if !strings.Contains(readme, "`sync."+k) && !strings.Contains(readme, "`"+k+"`") {
			t.Errorf("chart README does not document sync.%s", k)
		}
	}
}

func newLint() *action.Lint {
	l := action.NewLint()
	l.Strict = true
	l.Namespace = releaseNS
	kv := kubeVersion
	l.KubeVersion = &kv
	return l
}

// rbacModel answers authorization questions over rendered RBAC objects the
// way the RBAC authorizer does (bindings, role references, wildcards,
// resource names), so the tests judge effective access and not the shape of
// one role.
type rbacModel struct {
	roles    map[string][]rbacv1.PolicyRule // "<ns>/<name>" for Roles, "/<name>" for ClusterRoles
	bindings []binding
}

type binding struct {
	namespace string // "" for a ClusterRoleBinding
	subjects  []rbacv1.Subject
	ref       rbacv1.RoleRef
}

func newRBAC(objs []*unstructured.Unstructured) *rbacModel {
	m := &rbacModel{roles: map[string][]rbacv1.PolicyRule{}}
	for _, o := range objs {
		switch o.GetKind() {
		case "Role", "ClusterRole":
			var r struct {
				Rules []rbacv1.PolicyRule `json:"rules"`
			}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &r); err != nil {
				panic(err)
			}
			ns := o.GetNamespace()
			if o.GetKind() == "ClusterRole" {
				ns = ""
			}
			m.roles[ns+"/"+o.GetName()] = r.Rules
		case "RoleBinding", "ClusterRoleBinding":
			var b struct {
				Subjects []rbacv1.Subject `json:"subjects"`
				RoleRef  rbacv1.RoleRef   `json:"roleRef"`
			}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &b); err != nil {
				panic(err)
			}
			ns := o.GetNamespace()
			if o.GetKind() == "ClusterRoleBinding" {
				ns = ""
			}
			m.bindings = append(m.bindings, binding{namespace: ns, subjects: b.Subjects, ref: b.RoleRef})
		}
	}
	return m
}

// can reports whether user (system:serviceaccount:<ns>:<name>) may do verb
// on group/resource (named name, "" for none) in namespace ns ("" for a
// cluster-scoped request).
func (m *rbacModel) can(user, verb, group, resource, ns, name string) bool {
	parts := strings.Split(user, ":")
	saNS, saName := parts[2], parts[3]
	for _, b := range m.bindings {
		if b.namespace != "" && b.namespace != ns {
			continue
		}
		if !slices.ContainsFunc(b.subjects, func(s rbacv1.Subject) bool {
			switch s.Kind {
			case rbacv1.ServiceAccountKind:
				return s.Name == saName && s.Namespace == saNS
			case rbacv1.UserKind:
				return s.Name == user
			case rbacv1.GroupKind:
				return s.Name == "system:serviceaccounts" || s.Name == "system:serviceaccounts:"+saNS || s.Name == "system:authenticated"
			}
			return false
		}) {
			continue
		}
		key := "/" + b.ref.Name
		if b.ref.Kind == "Role" {
			key = b.namespace + key
		}
		for _, r := range m.roles[key] {
			if matches(r.APIGroups, group) && matches(r.Resources, resource) && matches(r.Verbs, verb) &&
				(len(r.ResourceNames) == 0 || (name != "" && slices.Contains(r.ResourceNames, name))) {
				return true
			}
		}
	}
	return false
}

func matches(list []string, v string) bool {
	return slices.Contains(list, v) || slices.Contains(list, "*")
}
