package chart_test

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubelink/kubelink/api/mesh"
	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/test/testenv"
)

// example is what a test expects from one examples values file.
type example struct {
	path        string
	cluster     string
	serviceCIDR netip.Prefix
	linkAddress string
	mode        string
	podMode     bool
	dnsIP       string // 10th address of serviceCIDR
	dnsService  string // dns.serviceIP
	links       []string
}

func loadExample(t testing.TB, path string) example {
	t.Helper()
	v := readValues(t, path)
	cl := v["cluster"].(map[string]any)
	m := v["mesh"].(map[string]any)
	b := v["broker"].(map[string]any)
	d := v["dns"].(map[string]any)
	ex := example{
		path:        path,
		cluster:     cl["name"].(string),
		serviceCIDR: netip.MustParsePrefix(cl["serviceCIDR"].(string)),
		linkAddress: m["linkAddress"].(string),
		mode:        b["mode"].(string),
		podMode:     b["podMode"].(bool),
		dnsService:  d["serviceIP"].(string),
	}
	ex.dnsIP = nth(ex.serviceCIDR, 10)
	if got, want := ex.dnsService, nth(ex.serviceCIDR, 11); got != want {
		t.Errorf("%s: dns.serviceIP %s is not the conventional 11th address %s", rel(path), got, want)
	}
	for _, l := range v["links"].([]any) {
		ex.links = append(ex.links, l.(map[string]any)["name"].(string))
	}
	return ex
}

func nth(p netip.Prefix, n int) string {
	a := p.Masked().Addr()
	for range n {
		a = a.Next()
	}
	return a.String()
}

// TestExamplesMatchManifests keeps the example values consistent with the
// mesh the plugin's `make run` serves (examples/manifests).
func TestExamplesConsistent(t *testing.T) {
	want := map[string][2]string{
		"kubelink1": {"100.64.0.0/20", "192.168.0.11/24"},
		"kubelink2": {"100.64.16.0/20", "192.168.0.12/24"},
		"kubelink3": {"100.64.32.0/20", "192.168.0.13/24"},
		// kubelink4 shares kubelink2's service CIDR (MeshServices only).
		"kubelink4": {"100.64.16.0/20", "192.168.0.14/24"},
	}
	seen := map[string]bool{}
	for _, f := range clusterExamples(t) {
		ex := loadExample(t, f)
		w, ok := want[ex.cluster]
		if !ok {
			t.Errorf("%s: unexpected cluster %q", rel(f), ex.cluster)
			continue
		}
		seen[ex.cluster] = true
		if ex.serviceCIDR.String() != w[0] || ex.linkAddress != w[1] {
			t.Errorf("%s: service CIDR %s, link address %s; want %s, %s", rel(f), ex.serviceCIDR, ex.linkAddress, w[0], w[1])
		}
		v := readValues(t, f)
		cl := v["cluster"].(map[string]any)
		if cl["podCIDR"] != "100.96.0.0/11" || cl["nodeCIDR"] != "10.250.0.0/16" {
			t.Errorf("%s: pod/node CIDR %v/%v", rel(f), cl["podCIDR"], cl["nodeCIDR"])
		}
		// Every link must describe the peer exactly as the peer describes itself.
		for _, l := range v["links"].([]any) {
			lm := l.(map[string]any)
			pw := want[lm["name"].(string)]
			if lm["cidr"] != nil && lm["cidr"] != pw[0] || lm["clusterAddress"] != pw[1] {
				t.Errorf("%s: link %v is %v/%v, want %s/%s", rel(f), lm["name"], lm["cidr"], lm["clusterAddress"], pw[0], pw[1])
			}
			// Only a peer whose service CIDR overlaps ours is linked
			// without cidr.
			if lm["cidr"] == nil && !netip.MustParsePrefix(pw[0]).Overlaps(ex.serviceCIDR) {
				t.Errorf("%s: link %v has no cidr although %s does not overlap %s", rel(f), lm["name"], pw[0], ex.serviceCIDR)
			}
		}
	}
	for c := range want {
		if !seen[c] {
			t.Errorf("no examples values file for %s", c)
		}
	}
}

// TestExamplesMatchManifests compares the KubeLinks the chart renders with
// the objects of examples/manifests (the mesh as seen from kubelink1, served
// by `make run`): the same cluster must be described the same way.
func TestExamplesMatchManifests(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(testenv.RepoRoot(), "examples", "manifests", "*.yaml"))
	if len(files) == 0 {
		t.Skip("no examples/manifests")
	}
	manifests := map[string]map[string]any{}
	for _, f := range files {
		objs, err := testenv.ReadObjects(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if o.GetKind() == "KubeLink" {
				manifests[o.GetName()] = o.Object["spec"].(map[string]any)
			}
		}
	}
	c := loadChart(t)
	for _, f := range clusterExamples(t) {
		if _, ok := manifests[loadExample(t, f).cluster]; !ok {
			continue // not a member kubelink1 knows (kubelink4)
		}
		objs, _ := render(t, c, readValues(t, f))
		for _, o := range objs {
			if o.GetKind() != "KubeLink" {
				continue
			}
			want, ok := manifests[o.GetName()]
			if !ok {
				continue
			}
			got := o.Object["spec"].(map[string]any)
			local := got["endpoint"] == "LocalLink"
			for _, k := range []string{"cidr", "clusterAddress", "endpoint"} {
				if k == "endpoint" && (local || want["endpoint"] == "LocalLink") {
					continue // the local cluster of one file is a foreign link in another
				}
				if fmt.Sprint(got[k]) != fmt.Sprint(want[k]) {
					t.Errorf("%s: KubeLink %s %s=%v, examples/manifests has %v", rel(f), o.GetName(), k, got[k], want[k])
				}
			}
		}
	}
}

func TestRenderExamples(t *testing.T) {
	c := loadChart(t)
	for _, f := range clusterExamples(t) {
		t.Run(rel(f), func(t *testing.T) {
			ex := loadExample(t, f)
			objs, notes := render(t, c, readValues(t, f))
			t.Logf("NOTES.txt:\n%s", notes)
			checkLabels(t, objs)
			checkKubeLinks(t, ex, objs)
			checkDNS(t, ex, objs, notes)
			checkBroker(t, ex, objs)
			checkRouter(t, ex, objs)
			checkRBACRules(t, ex, objs)
		})
	}
}

func checkLabels(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	for _, o := range objs {
		l := o.GetLabels()
		for k, v := range map[string]string{
			"app.kubernetes.io/name":       "kubelink",
			"app.kubernetes.io/instance":   releaseName,
			"app.kubernetes.io/managed-by": "Helm",
			"app.kubernetes.io/part-of":    "kubelink",
			"app.kubernetes.io/version":    "0.1.0",
		} {
			if l[k] != v {
				t.Errorf("%s/%s: label %s=%q, want %q", o.GetKind(), o.GetName(), k, l[k], v)
			}
		}
		if l["app.kubernetes.io/component"] == "" {
			t.Errorf("%s/%s: no app.kubernetes.io/component label", o.GetKind(), o.GetName())
		}
		if !strings.HasPrefix(l["helm.sh/chart"], "kubelink-") {
			t.Errorf("%s/%s: helm.sh/chart=%q", o.GetKind(), o.GetName(), l["helm.sh/chart"])
		}
		// Pod templates carry the selector labels.
		if sel, ok, _ := unstructured.NestedStringMap(o.Object, "spec", "selector", "matchLabels"); ok && o.GetKind() != "PodDisruptionBudget" {
			pl, _, _ := unstructured.NestedStringMap(o.Object, "spec", "template", "metadata", "labels")
			for k, v := range sel {
				if pl[k] != v {
					t.Errorf("%s/%s: pod template lacks selector label %s=%s", o.GetKind(), o.GetName(), k, v)
				}
			}
		}
	}
}

// checkKubeLinks converts the rendered KubeLinks to the API types and has the
// mesh library judge them: the chart must produce a valid mesh.
func checkKubeLinks(t *testing.T, ex example, objs []*unstructured.Unstructured) {
	t.Helper()
	var links []*v1alpha1.KubeLink
	for _, o := range objs {
		if o.GetKind() != "KubeLink" {
			continue
		}
		var l v1alpha1.KubeLink
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &l); err != nil {
			t.Fatalf("KubeLink %s: %v", o.GetName(), err)
		}
		links = append(links, &l)
	}
	if len(links) != 1+len(ex.links) {
		t.Fatalf("rendered %d KubeLinks, want the LocalLink plus %d", len(links), len(ex.links))
	}
	local := find(t, objs, "KubeLink", ex.cluster)
	if got := str(t, local, "spec", "endpoint"); got != "LocalLink" {
		t.Errorf("LocalLink endpoint %q", got)
	}
	if got := str(t, local, "spec", "cidr"); got != ex.serviceCIDR.String() {
		t.Errorf("LocalLink cidr %s, want %s", got, ex.serviceCIDR)
	}
	if got := str(t, local, "spec", "clusterAddress"); got != ex.linkAddress {
		t.Errorf("LocalLink clusterAddress %s, want %s", got, ex.linkAddress)
	}
	if got := str(t, local, "spec", "dns", "baseDomain"); got != "kubelink" {
		t.Errorf("LocalLink dns.baseDomain %s", got)
	}
	set := mesh.Build(links, mesh.Options{})
	m := set.Meshes[""]
	if m == nil || m.Local == nil || m.Local.Cluster != ex.cluster {
		t.Fatalf("mesh library found no default mesh with local cluster %s", ex.cluster)
	}
	if m.Network.String() != "192.168.0.0/24" || m.Domain != "kubelink" {
		t.Errorf("mesh network %s domain %s", m.Network, m.Domain)
	}
	for _, name := range ex.links {
		l := m.Link(name)
		if l == nil {
			t.Errorf("link %s not usable: %+v", name, set.Links[name].Verdict)
			continue
		}
		if !l.Verdict.OK() {
			t.Errorf("link %s: %+v", name, l.Verdict)
		}
	}
}

func checkDNS(t *testing.T, ex example, objs []*unstructured.Unstructured, notes string) {
	t.Helper()
	cm := find(t, objs, "ConfigMap", "kubelink-dns")
	corefile := str(t, cm, "data", "Corefile")
	block := fmt.Sprintf(`    kubelink {
        mesh-domain kubelink
        cluster-name %s
        link-address %s
        cluster-domain cluster.local
        local-dns %s
        namespace %s
        clusterset
        ttl 5
    }
`, ex.cluster, ex.linkAddress, ex.dnsIP, releaseNS)
	if !strings.Contains(corefile, block) {
		t.Errorf("Corefile lacks the kubelink block\n%s\ngot:\n%s", block, corefile)
	}
	for _, line := range []string{".:8053 {", "    errors\n", "    health :8080 {", "    ready :8181\n", "    prometheus :9153\n", "    cache 5\n", "    forward . " + ex.dnsIP + " {\n        except kubelink 0.168.192.in-addr.arpa clusterset.local\n    }\n"} {
		if !strings.Contains(corefile, line) {
			t.Errorf("Corefile lacks %q:\n%s", line, corefile)
		}
	}
	if strings.Contains(corefile, "meshdns-service-ip") {
		t.Errorf("Corefile sets meshdns-service-ip without mesh.globalDNSIP")
	}

	svc := find(t, objs, "Service", "kubelink-dns")
	if got := str(t, svc, "spec", "clusterIP"); got != ex.dnsService {
		t.Errorf("DNS Service clusterIP %s, want %s", got, ex.dnsService)
	}
	ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	var protos []string
	for _, p := range ports {
		pm := p.(map[string]any)
		if pm["name"] == "metrics" {
			continue
		}
		if fmt.Sprint(pm["port"]) != "53" {
			t.Errorf("DNS Service port %v", pm["port"])
		}
		protos = append(protos, pm["protocol"].(string))
	}
	slices.Sort(protos)
	if !slices.Equal(protos, []string{"TCP", "UDP"}) {
		t.Errorf("DNS Service protocols %v", protos)
	}

	dep := find(t, objs, "Deployment", "kubelink-dns")
	ctr := container(t, dep)
	if got := toYAML(ctr["livenessProbe"]); !strings.Contains(got, "path: /health\n") || !strings.Contains(got, "port: 8080") {
		t.Errorf("DNS liveness probe:\n%s", got)
	}
	if got := toYAML(ctr["readinessProbe"]); !strings.Contains(got, "path: /ready\n") || !strings.Contains(got, "port: 8181") {
		t.Errorf("DNS readiness probe:\n%s", got)
	}
	if got := toYAML(ctr["ports"]); !strings.Contains(got, "containerPort: 9153") {
		t.Errorf("DNS has no metrics port:\n%s", got)
	}
	sc := ctr["securityContext"].(map[string]any)
	if caps := sc["capabilities"].(map[string]any); caps["add"] != nil {
		t.Errorf("DNS adds capabilities %v", caps["add"])
	}
	if str(t, dep, "spec", "template", "spec", "securityContext", "runAsNonRoot") != "true" {
		t.Errorf("DNS does not run as non-root")
	}
	if a := args(t, dep); !slices.Equal(a, []string{"-conf", "/etc/coredns/Corefile"}) {
		t.Errorf("DNS args %v", a)
	}

	stub := find(t, objs, "ConfigMap", "coredns-custom")
	if stub.GetNamespace() != "kube-system" {
		t.Errorf("coredns-custom in namespace %q", stub.GetNamespace())
	}
	server := str(t, stub, "data", "kubelink.server")
	want := fmt.Sprintf("kubelink:53 192.168.0.0/24:53 clusterset.local:53 {\n    errors\n    cache 5\n    forward . %s\n}", ex.dnsService)
	if strings.TrimSpace(server) != want {
		t.Errorf("cluster DNS server block:\n%s\nwant:\n%s", server, want)
	}
	if !strings.Contains(notes, "forward . "+ex.dnsService) || !strings.Contains(notes, "kubelink:53") {
		t.Errorf("NOTES.txt lacks the stub-domain snippet:\n%s", notes)
	}
}

func checkBroker(t *testing.T, ex example, objs []*unstructured.Unstructured) {
	t.Helper()
	dep := find(t, objs, "Deployment", "kubelink-broker")
	a := args(t, dep)
	secret := "kubelink-broker"
	if ex.mode == "bridge" {
		secret = "kubelink-tls"
	}
	want := []string{
		"broker", "--mode=" + ex.mode, "--cluster-name=" + ex.cluster, "--link-address=" + ex.linkAddress,
		"--service-cidr=" + ex.serviceCIDR.String(),
		"--broker-port=8777", "--secret=" + secret, "--cluster-domain=cluster.local",
		"--dns-service-ip=" + ex.dnsIP, "--lease-name=kubelink-broker", "--lease-namespace=" + releaseNS,
		"--server-port-http=8778",
	}
	if ex.podMode {
		want = append(want, "--pod-cidr=100.96.0.0/11")
	}
	if ex.mode == "bridge" {
		want = append(want, "--dns-advertisement")
	}
	for _, w := range want {
		if !slices.Contains(a, w) {
			t.Errorf("broker args lack %q: %v", w, a)
		}
	}
	if a[0] != "broker" {
		t.Errorf("broker args start with %q", a[0])
	}
	if !ex.podMode && slices.ContainsFunc(a, func(s string) bool { return strings.HasPrefix(s, "--pod-cidr") }) {
		t.Errorf("node mode broker has --pod-cidr: %v", a)
	}
	hostNet, _, _ := unstructured.NestedBool(dep.Object, "spec", "template", "spec", "hostNetwork")
	if hostNet == ex.podMode {
		t.Errorf("broker hostNetwork=%v with podMode=%v", hostNet, ex.podMode)
	}
	if r := str(t, dep, "spec", "replicas"); r != "1" {
		t.Errorf("broker replicas %s", r)
	}
	checkNetAdmin(t, dep)
	ctr := container(t, dep)
	if env := toYAML(ctr["env"]); !strings.Contains(env, "name: NODE_IP\n  valueFrom:\n    fieldRef:\n      fieldPath: status.hostIP") {
		t.Errorf("broker NODE_IP not from the downward API:\n%s", env)
	}
	vols := toYAML(dep.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["volumes"])
	if !strings.Contains(vols, "path: /dev/net/tun\n    type: CharDevice") {
		t.Errorf("broker does not mount /dev/net/tun:\n%s", vols)
	}
	if !strings.Contains(toYAML(ctr["volumeMounts"]), "mountPath: /dev/net/tun") {
		t.Errorf("broker container does not mount /dev/net/tun")
	}

	svc := find(t, objs, "Service", "kubelink-broker")
	if got := str(t, svc, "spec", "type"); got != "LoadBalancer" {
		t.Errorf("broker Service type %s", got)
	}
	ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	if len(ports) != 1 {
		t.Fatalf("broker Service ports %v", ports)
	}
	p := ports[0].(map[string]any)
	wantProto := map[string]string{"wireguard": "UDP", "bridge": "TCP"}[ex.mode]
	if fmt.Sprint(p["port"]) != "8777" || p["protocol"] != wantProto {
		t.Errorf("broker Service port %v/%v, want 8777/%s", p["port"], p["protocol"], wantProto)
	}
	// WireGuard without a given secret: the chart creates the one netd fills.
	if ex.mode == "wireguard" {
		s := find(t, objs, "Secret", "kubelink-broker")
		if s.GetAnnotations()["helm.sh/resource-policy"] != "keep" {
			t.Errorf("broker secret is not kept on uninstall")
		}
	} else if has(objs, "Secret", "kubelink-broker") {
		t.Errorf("bridge mode with an existing secret still renders a Secret")
	}
	// One broker replica by default (see values.yaml): no broker PDB.
	if !has(objs, "PodDisruptionBudget", "kubelink-dns") || has(objs, "PodDisruptionBudget", "kubelink-broker") {
		t.Errorf("PodDisruptionBudgets: %s", names(objs))
	}
}

func checkNetAdmin(t *testing.T, o *unstructured.Unstructured) {
	t.Helper()
	sc := container(t, o)["securityContext"].(map[string]any)
	caps := sc["capabilities"].(map[string]any)
	if got := fmt.Sprint(caps["add"]); got != "[NET_ADMIN]" {
		t.Errorf("%s/%s adds capabilities %s, want only NET_ADMIN", o.GetKind(), o.GetName(), got)
	}
	if got := fmt.Sprint(caps["drop"]); got != "[ALL]" {
		t.Errorf("%s/%s drops %s, want ALL", o.GetKind(), o.GetName(), got)
	}
	if sc["privileged"] != false || sc["allowPrivilegeEscalation"] != false {
		t.Errorf("%s/%s: privileged=%v allowPrivilegeEscalation=%v", o.GetKind(), o.GetName(), sc["privileged"], sc["allowPrivilegeEscalation"])
	}
}

func checkRouter(t *testing.T, ex example, objs []*unstructured.Unstructured) {
	t.Helper()
	ds := find(t, objs, "DaemonSet", "kubelink-router")
	a := args(t, ds)
	for _, w := range []string{"router", "--ipip=none", "--lease-name=kubelink-broker", "--lease-namespace=" + releaseNS, "--node-ip=$(NODE_IP)"} {
		if !slices.Contains(a, w) {
			t.Errorf("router args lack %q: %v", w, a)
		}
	}
	if hn, _, _ := unstructured.NestedBool(ds.Object, "spec", "template", "spec", "hostNetwork"); !hn {
		t.Errorf("router is not on the host network")
	}
	checkNetAdmin(t, ds)
}

// checkRBACRules inspects the rendered roles: no wildcards, secrets only by
// name in the release namespace.
func checkRBACRules(t *testing.T, ex example, objs []*unstructured.Unstructured) {
	t.Helper()
	n := 0
	for _, o := range objs {
		if o.GetKind() != "ClusterRole" && o.GetKind() != "Role" {
			continue
		}
		n++
		rules, _, _ := unstructured.NestedSlice(o.Object, "rules")
		for _, r := range rules {
			rm := r.(map[string]any)
			for _, k := range []string{"verbs", "resources", "apiGroups", "resourceNames"} {
				vs, _ := rm[k].([]any)
				for _, v := range vs {
					if strings.Contains(fmt.Sprint(v), "*") {
						t.Errorf("%s/%s: wildcard %s in %v", o.GetKind(), o.GetName(), k, rm)
					}
				}
			}
			if slices.Contains(rm["resources"].([]any), any("secrets")) {
				names, _ := rm["resourceNames"].([]any)
				verbs := fmt.Sprint(rm["verbs"])
				switch {
				case o.GetKind() != "Role":
					t.Errorf("%s/%s grants secrets beyond the release namespace: %v", o.GetKind(), o.GetName(), rm)
				case len(names) == 0 && (ex.mode != "bridge" || verbs != "[create]"):
					// create cannot be limited by name: only the bridge
					// broker's inbound API access needs it.
					t.Errorf("%s/%s grants secrets without names: %v", o.GetKind(), o.GetName(), rm)
				case ex.mode == "bridge" && verbs == "[get update]":
					// The inbound API access Secrets of the links.
					for _, n := range names {
						if !strings.HasSuffix(fmt.Sprint(n), "-apiaccess") || verbs != "[get update]" {
							t.Errorf("%s/%s grants secrets beyond the links' API access: %v", o.GetKind(), o.GetName(), rm)
						}
					}
				case len(names) > 1:
					t.Errorf("%s/%s grants secrets beyond one named secret: %v", o.GetKind(), o.GetName(), rm)
				}
			}
		}
	}
	if n != 6 {
		t.Errorf("rendered %d roles, want 6 (ClusterRole per component, Role for dns, broker and router)", n)
	}
}

// allLinksValid has the mesh library judge every rendered KubeLink.
func allLinksValid(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	var links []*v1alpha1.KubeLink
	for _, o := range objs {
		if o.GetKind() == "KubeLink" {
			var l v1alpha1.KubeLink
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &l); err != nil {
				t.Fatal(err)
			}
			links = append(links, &l)
		}
	}
	for name, l := range mesh.Build(links, mesh.Options{}).Links {
		if !l.Verdict.OK() {
			t.Errorf("KubeLink %s: %s %s", name, l.Verdict.State, l.Verdict.Message)
		}
	}
}

// TestRenderVariants covers what the examples do not: a named mesh, the
// global DNS, cert-manager, router options, the NetworkPolicy, disabled parts.
func TestRenderVariants(t *testing.T) {
	c := loadChart(t)
	base := readValues(t, testenv.RepoRoot()+"/examples/kubelink1/values.yaml")

	t.Run("named mesh and global DNS", func(t *testing.T) {
		objs, _ := render(t, c, merge(base, parseValues(t, `
mesh: {name: mesh1, globalDNSIP: 100.64.0.53, domain: mesh1.example}
dns: {serviceIP: ""}
`)))
		allLinksValid(t, objs)
		local := find(t, objs, "KubeLink", "mesh1--kubelink1")
		if got := str(t, local, "spec", "dns", "dnsIP"); got != "100.64.0.53" {
			t.Errorf("LocalLink dnsIP %s", got)
		}
		find(t, objs, "KubeLink", "mesh1--kubelink2")
		corefile := str(t, find(t, objs, "ConfigMap", "kubelink-dns"), "data", "Corefile")
		// A named mesh comes from its LocalLink, not from default-mesh options.
		if strings.Contains(corefile, "cluster-name") || strings.Contains(corefile, "link-address") {
			t.Errorf("named mesh Corefile configures a default mesh:\n%s", corefile)
		}
		// dns.serviceIP defaults to the 11th address of the service CIDR.
		if got := str(t, find(t, objs, "Service", "kubelink-dns"), "spec", "clusterIP"); got != "100.64.0.11" {
			t.Errorf("default DNS clusterIP %s", got)
		}
		server := str(t, find(t, objs, "ConfigMap", "coredns-custom"), "data", "kubelink.server")
		if !strings.HasPrefix(server, "mesh1.example:53 192.168.0.0/24:53 clusterset.local:53 {") {
			t.Errorf("server block %q", server)
		}
		// netd's default-mesh flags would invent a second, default mesh.
		for _, w := range []struct{ kind, name string }{{"Deployment", "kubelink-broker"}, {"DaemonSet", "kubelink-router"}} {
			a := args(t, find(t, objs, w.kind, w.name))
			if slices.ContainsFunc(a, func(s string) bool {
				return strings.HasPrefix(s, "--link-address") || strings.HasPrefix(s, "--cluster-name") || strings.HasPrefix(s, "--meshdns-service-ip")
			}) {
				t.Errorf("%s with a named mesh configures the default mesh: %v", w.name, a)
			}
		}
		// Without a name, the global DNS reaches the kubelink DNS (the
		// broker has no use for it).
		objs, _ = render(t, c, merge(base, parseValues(t, `mesh: {globalDNSIP: 100.64.0.53}`)))
		if a := args(t, find(t, objs, "Deployment", "kubelink-broker")); slices.ContainsFunc(a, func(s string) bool { return strings.HasPrefix(s, "--meshdns-service-ip") }) {
			t.Errorf("broker args %v", a)
		}
		if cf := str(t, find(t, objs, "ConfigMap", "kubelink-dns"), "data", "Corefile"); !strings.Contains(cf, "        meshdns-service-ip 100.64.0.53\n") {
			t.Errorf("Corefile without meshdns-service-ip:\n%s", cf)
		}
	})

	t.Run("pod mode: IPv4 forwarding by init container, sysctl or not at all", func(t *testing.T) {
		spec := func(ipForward string) map[string]any {
			objs, _ := render(t, c, merge(base, parseValues(t, "broker: {podMode: true, ipForward: "+ipForward+"}")))
			d := find(t, objs, "Deployment", "kubelink-broker")
			s, _, _ := unstructured.NestedMap(d.Object, "spec", "template", "spec")
			return s
		}
		s := spec("initContainer")
		ics, _ := s["initContainers"].([]any)
		if len(ics) != 1 {
			t.Fatalf("initContainers %v", s["initContainers"])
		}
		ic := ics[0].(map[string]any)
		if fmt.Sprint(ic["args"]) != "[ipforward]" || fmt.Sprint(ic["securityContext"].(map[string]any)["privileged"]) != "true" {
			t.Errorf("init container %v", ic)
		}
		if s := spec("sysctl"); s["initContainers"] != nil || !strings.Contains(toYAML(s["securityContext"]), "net.ipv4.ip_forward") {
			t.Errorf("sysctl: %v", s["securityContext"])
		}
		if s := spec("none"); s["initContainers"] != nil || strings.Contains(toYAML(s["securityContext"]), "sysctls") {
			t.Errorf("none: %v", s)
		}
		// Node mode never touches the node's sysctl from the chart.
		objs, _ := render(t, c, merge(base, parseValues(t, "broker: {podMode: false}")))
		d := find(t, objs, "Deployment", "kubelink-broker")
		if s, _, _ := unstructured.NestedMap(d.Object, "spec", "template", "spec"); s["initContainers"] != nil {
			t.Errorf("node mode with an init container")
		}
	})

	t.Run("cert-manager bridge", func(t *testing.T) {
		objs, _ := render(t, c, merge(base, parseValues(t, `
broker:
  mode: bridge
  autoConnect: true
  certManager: {enabled: true, dnsNames: [gw.kubelink1.example.com], issuerRef: {name: mesh-ca, kind: ClusterIssuer}}
`)))
		cert := find(t, objs, "Certificate", "kubelink-broker")
		if got := str(t, cert, "spec", "secretName"); got != "kubelink-broker-tls" {
			t.Errorf("Certificate secretName %s", got)
		}
		if got := str(t, cert, "spec", "issuerRef", "name"); got != "mesh-ca" {
			t.Errorf("issuer %s", got)
		}
		if u := fmt.Sprint(cert.Object["spec"].(map[string]any)["usages"]); !strings.Contains(u, "client auth") || !strings.Contains(u, "server auth") {
			t.Errorf("usages %s", u)
		}
		a := args(t, find(t, objs, "Deployment", "kubelink-broker"))
		if !slices.Contains(a, "--secret=kubelink-broker-tls") || !slices.Contains(a, "--auto-connect") {
			t.Errorf("broker args %v", a)
		}
		if has(objs, "Secret", "kubelink-broker") || has(objs, "Secret", "kubelink-broker-tls") {
			t.Errorf("chart renders a Secret next to cert-manager")
		}
		// auto-connect creates KubeLinks.
		cr := find(t, objs, "ClusterRole", "kubelink-broker")
		if !strings.Contains(toYAML(cr.Object["rules"]), "- create") {
			t.Errorf("auto-connect broker cannot create KubeLinks:\n%s", toYAML(cr.Object["rules"]))
		}
	})

	t.Run("API access advertisement", func(t *testing.T) {
		bridgeValues := readValues(t, testenv.RepoRoot()+"/examples/kubelink1/values-bridge.yaml")
		objs, _ := render(t, c, merge(bridgeValues, parseValues(t, `
broker: {serviceAccountAdvertisement: kubelink-reader}
`)))
		a := args(t, find(t, objs, "Deployment", "kubelink-broker"))
		if !slices.Contains(a, "--service-account=kubelink-reader") {
			t.Errorf("broker args %v", a)
		}
		rules := toYAML(find(t, objs, "Role", "kubelink-broker").Object["rules"])
		if !strings.Contains(rules, "serviceaccounts/token") || !strings.Contains(rules, "kubelink-reader") || !strings.Contains(rules, "kubelink2-apiaccess") {
			t.Errorf("broker Role without the token or inbound Secret rights:\n%s", rules)
		}
		// Off by default, and never outside bridge mode.
		for _, v := range []map[string]any{bridgeValues, merge(base, parseValues(t, `
broker: {serviceAccountAdvertisement: kubelink-reader}
`))} {
			objs, _ := render(t, c, v)
			if a := args(t, find(t, objs, "Deployment", "kubelink-broker")); slices.ContainsFunc(a, func(s string) bool { return strings.HasPrefix(s, "--service-account") }) {
				t.Errorf("broker args %v", a)
			}
			if rules := toYAML(find(t, objs, "Role", "kubelink-broker").Object["rules"]); strings.Contains(rules, "serviceaccounts") {
				t.Errorf("token rights without the advertisement:\n%s", rules)
			}
		}
	})

	t.Run("router options, network policy, NodePort", func(t *testing.T) {
		objs, _ := render(t, c, merge(base, parseValues(t, `
router: {ipip: configure, routeTable: 100, rulePriority: 1000}
dns: {networkPolicy: {enabled: true}, replicas: 1}
broker: {service: {type: NodePort, nodePort: 30777}, replicas: 3, readinessPath: /readyz/active}
`)))
		a := args(t, find(t, objs, "DaemonSet", "kubelink-router"))
		for _, w := range []string{"--ipip=configure", "--route-table=100", "--rule-priority=1000"} {
			if !slices.Contains(a, w) {
				t.Errorf("router args lack %s: %v", w, a)
			}
		}
		np := find(t, objs, "NetworkPolicy", "kubelink-dns")
		if y := toYAML(np.Object["spec"]); !strings.Contains(y, "k8s-app: kube-dns") || !strings.Contains(y, "port: 8053") {
			t.Errorf("NetworkPolicy:\n%s", y)
		}
		svc := find(t, objs, "Service", "kubelink-broker")
		if !strings.Contains(toYAML(svc.Object["spec"]), "nodePort: 30777") {
			t.Errorf("NodePort not set")
		}
		if has(objs, "PodDisruptionBudget", "kubelink-dns") {
			t.Errorf("PDB rendered for a single DNS replica")
		}
		broker := find(t, objs, "Deployment", "kubelink-broker")
		if str(t, broker, "spec", "replicas") != "3" || has(objs, "PodDisruptionBudget", "kubelink-broker") {
			t.Errorf("broker standbys: replicas %s, PDB rendered %v", str(t, broker, "spec", "replicas"), has(objs, "PodDisruptionBudget", "kubelink-broker"))
		}
		if p := toYAML(container(t, broker)["readinessProbe"]); !strings.Contains(p, "path: /readyz/active") {
			t.Errorf("readiness probe:\n%s", p)
		}
	})

	t.Run("vxlan", func(t *testing.T) {
		hasVXLAN := func(a []string) bool {
			return slices.ContainsFunc(a, func(s string) bool { return strings.HasPrefix(s, "--vxlan") })
		}
		initArgs := func(o *unstructured.Unstructured) string {
			ics, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "initContainers")
			if len(ics) != 1 {
				t.Fatalf("broker init containers: %v", ics)
			}
			return fmt.Sprint(ics[0].(map[string]any)["args"])
		}
		// Off by default: neither side, and the plain init container.
		objs, _ := render(t, c, base)
		broker := find(t, objs, "Deployment", "kubelink-broker")
		if a := args(t, find(t, objs, "DaemonSet", "kubelink-router")); hasVXLAN(a) {
			t.Errorf("router has VXLAN by default: %v", a)
		}
		if a := args(t, broker); hasVXLAN(a) {
			t.Errorf("broker has VXLAN by default: %v", a)
		}
		if got := initArgs(broker); got != "[ipforward]" {
			t.Errorf("init container args %s", got)
		}

		objs, _ = render(t, c, merge(base, parseValues(t, `router: {vxlan: {enabled: true, port: 4900, vni: 77}}`)))
		a := args(t, find(t, objs, "DaemonSet", "kubelink-router"))
		for _, w := range []string{"--ipip=none", "--vxlan", "--vxlan-port=4900", "--vxlan-vni=77", "--node-ip=$(NODE_IP)"} {
			if !slices.Contains(a, w) {
				t.Errorf("router args lack %s: %v", w, a)
			}
		}
		// kubelink1 is a pod-mode gateway: the router on its node
		// decapsulates, the broker (netd refuses --vxlan with --pod-cidr)
		// does not; the init container still loosens a strict rp_filter,
		// or the pod sysctl does.
		broker = find(t, objs, "Deployment", "kubelink-broker")
		if a := args(t, broker); hasVXLAN(a) || !slices.ContainsFunc(a, func(s string) bool { return strings.HasPrefix(s, "--pod-cidr=") }) {
			t.Errorf("pod-mode broker args: %v", a)
		}
		if got := initArgs(broker); got != "[ipforward --loose-rp-filter]" {
			t.Errorf("init container args %s", got)
		}
		objs, _ = render(t, c, merge(base, parseValues(t, `{router: {vxlan: {enabled: true}}, broker: {ipForward: sysctl}}`)))
		sc := toYAML(find(t, objs, "Deployment", "kubelink-broker").Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["securityContext"])
		if !strings.Contains(sc, "name: net.ipv4.conf.all.rp_filter\n  value: \"2\"") {
			t.Errorf("pod sysctls:\n%s", sc)
		}

		// A node-mode (hostNetwork) broker decapsulates on its node IP.
		objs, _ = render(t, c, merge(base, parseValues(t, `{router: {vxlan: {enabled: true, port: 4900, vni: 77}}, broker: {podMode: false}}`)))
		broker = find(t, objs, "Deployment", "kubelink-broker")
		a = args(t, broker)
		for _, w := range []string{"--vxlan", "--vxlan-port=4900", "--vxlan-vni=77", "--vxlan-ip=$(POD_IP)"} {
			if !slices.Contains(a, w) {
				t.Errorf("node-mode broker args lack %s: %v", w, a)
			}
		}
		if slices.ContainsFunc(a, func(s string) bool { return strings.HasPrefix(s, "--pod-cidr") }) {
			t.Errorf("node-mode broker in pod mode: %v", a)
		}
		if env := toYAML(container(t, broker)["env"]); !strings.Contains(env, "name: POD_IP\n  valueFrom:\n    fieldRef:\n      fieldPath: status.podIP") {
			t.Errorf("broker POD_IP not the pod IP (the node IP with hostNetwork):\n%s", env)
		}

		// Without the router nobody encapsulates: the broker does not
		// decapsulate.
		objs, _ = render(t, c, merge(base, parseValues(t, `router: {enabled: false, vxlan: {enabled: true}}`)))
		if a := args(t, find(t, objs, "Deployment", "kubelink-broker")); hasVXLAN(a) {
			t.Errorf("broker decapsulates without routers: %v", a)
		}
	})

	t.Run("parts disabled", func(t *testing.T) {
		objs, _ := render(t, c, merge(base, parseValues(t, `
router: {enabled: false}
broker: {mode: none}
dns: {clusterDNSIntegration: {enabled: false}}
`)))
		for _, o := range []struct{ kind, name string }{{"DaemonSet", "kubelink-router"}, {"Service", "kubelink-broker"}, {"Secret", "kubelink-broker"}, {"ConfigMap", "coredns-custom"}} {
			if has(objs, o.kind, o.name) {
				t.Errorf("%s/%s rendered although disabled", o.kind, o.name)
			}
		}
		a := args(t, find(t, objs, "Deployment", "kubelink-broker"))
		if slices.ContainsFunc(a, func(s string) bool { return strings.HasPrefix(s, "--secret") }) {
			t.Errorf("mode none passes a secret: %v", a)
		}
	})
}
