// Package integration tests the kubelink API against a real kube-apiserver:
// CRDs, admission validation (OpenAPI + CEL), the status subresource and
// printer columns.
package integration

import (
	"context"
	"encoding/base64"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	svclinkv1alpha1 "github.com/kubelink/kubelink/api/svclink/v1alpha1"
	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/test/testenv"
)

var (
	kubeLinkGVR    = v1alpha1.SchemeGroupVersion.WithResource(v1alpha1.KubeLinkResource)
	meshServiceGVR = v1alpha1.SchemeGroupVersion.WithResource(v1alpha1.MeshServiceResource)
	clusterLinkGVR = svclinkv1alpha1.SchemeGroupVersion.WithResource(svclinkv1alpha1.ClusterLinkResource)
)

// allCRDs is every CRD the chart ships: kubelink's own, svclink's
// ClusterLink and the MCS CRDs copied from sigs.k8s.io/mcs-api.
var allCRDs = []string{
	"clusterlinks.svclink.cloudpilot.ai",
	"kubelinks.kubelink.mandelsoft.org",
	"meshservices.kubelink.mandelsoft.org",
	"serviceexports.multicluster.x-k8s.io",
	"serviceimports.multicluster.x-k8s.io",
}

// remoteKubeconfig stands for the base64 kubeconfig svclink's
// export-kubeconfig.sh prints; only its encoding matters to admission.
var remoteKubeconfig = base64.StdEncoding.EncodeToString([]byte(`apiVersion: v1
kind: Config
clusters:
- name: cluster-b
  cluster:
    server: https://100.64.16.1:443
    certificate-authority-data: ZmFrZSBjYQ==
users:
- name: svclink
  user:
    token: not-a-real-token
contexts:
- name: cluster-b
  context: {cluster: cluster-b, user: svclink}
current-context: cluster-b
`))

const validKey = "mD2KZnSwDbzr4a2vD0zQ4CqYpMr1T0qC6G4uO9mA4Ew="

func startAPI(t *testing.T) (*testenv.Env, dynamic.Interface) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs the real apiserver")
	}
	env := testenv.Start(t, testenv.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	names, err := env.InstallCRDs(ctx, testenv.CRDDir())
	if err != nil {
		t.Fatal(err)
	}
	// InstallCRDs returned only after each was Established.
	slices.Sort(names)
	if !slices.Equal(names, allCRDs) {
		t.Fatalf("installed CRDs %v, want %v", names, allCRDs)
	}
	return env, env.Dynamic()
}

func decode(t *testing.T, y string) *unstructured.Unstructured {
	t.Helper()
	objs, err := testenv.DecodeObjects([]byte(y))
	if err != nil || len(objs) != 1 {
		t.Fatalf("decoding test object: %v (%d objects)", err, len(objs))
	}
	return objs[0]
}

func resourceFor(o *unstructured.Unstructured, c dynamic.Interface) dynamic.ResourceInterface {
	ns := o.GetNamespace()
	if ns == "" {
		ns = "default"
	}
	switch o.GetKind() {
	case "MeshService":
		return c.Resource(meshServiceGVR).Namespace(ns)
	case "ClusterLink":
		return c.Resource(clusterLinkGVR).Namespace(ns)
	}
	return c.Resource(kubeLinkGVR)
}

// The original kubelink's README examples must apply unchanged.
var validObjects = map[string]string{
	"foreign link with public key": `
apiVersion: kubelink.mandelsoft.org/v1alpha1
kind: KubeLink
metadata:
  name: kubelink2
spec:
  cidr: 100.64.16.0/20
  clusterAddress: 192.168.0.12/24
  endpoint: kubelink.kubelink2.ringdev.shoot.dev.k8s-hana.ondemand.com
  publicKey: ` + validKey + `
`,
	"LocalLink of a named mesh with dns": `
apiVersion: kubelink.mandelsoft.org/v1alpha1
kind: KubeLink
metadata:
  name: mesh--kubelink1
spec:
  cidr: 100.64.0.0/20
  clusterAddress: 192.168.1.11/24
  endpoint: LocalLink
  ingress:
  - 100.64.0.0/20
  - "!100.64.0.1/32"
  dns:
    baseDomain: mesh.kubelink
    dnsIP: 100.64.0.11
`,
	"inbound peer with egress, psk, port and dns": `
apiVersion: kubelink.mandelsoft.org/v1alpha1
kind: KubeLink
metadata:
  name: kubelink3
spec:
  cidr: 100.64.32.0/20
  clusterAddress: 192.168.0.13/24
  endpoint: Inbound
  presharedKey: ` + validKey + `
  egress:
  - 10.200.0.0/16
  gatewayLink: kubelink2
  apiAccess:
    name: kubelink3-api
    namespace: kube-system
  dns:
    omitDNSPropagation: false
    dnsIP: 100.64.32.10
    baseDomain: cluster.local
`,
	"endpoint with IP and port": `
apiVersion: kubelink.mandelsoft.org/v1alpha1
kind: KubeLink
metadata:
  name: kubelink4
spec:
  clusterAddress: 192.168.0.14/24
  endpoint: 10.1.2.3:8777
`,
	"endpoint with bracketed IPv6": `
apiVersion: kubelink.mandelsoft.org/v1alpha1
kind: KubeLink
metadata:
  name: kubelink5
spec:
  clusterAddress: 192.168.0.15/24
  endpoint: "[fd00::1]:443"
`,
	"foreign link with apiAccess server": `
apiVersion: kubelink.mandelsoft.org/v1alpha1
kind: KubeLink
metadata:
  name: kubelink6
spec:
  cidr: 100.64.96.0/20
  clusterAddress: 192.168.0.16/24
  endpoint: gw6.example:8777
  apiAccess:
    name: kubelink6-api
    server: https://100.64.96.1:443
`,
	// svclink's README example, unchanged but for a real base64 value
	// where it has a placeholder.
	"svclink README ClusterLink": `
apiVersion: svclink.cloudpilot.ai/v1alpha1
kind: ClusterLink
metadata:
  name: cluster-b
spec:
  enabled: true
  kubeconfig: ` + remoteKubeconfig + `
`,
	"svclink ClusterLink with every filter": `
apiVersion: svclink.cloudpilot.ai/v1alpha1
kind: ClusterLink
metadata:
  name: production-east
  namespace: default
spec:
  enabled: true
  kubeconfig: ` + remoteKubeconfig + `
  includedNamespaces:
    - default
    - production
    - staging
  excludedNamespaces:
    - monitoring
  excludedServices:
    - production/internal-api
  excludedServiceNames:
    - admin-panel
    - kubernetes
`,
	"ClusterLink with kubeconfigSecretRef": `
apiVersion: svclink.cloudpilot.ai/v1alpha1
kind: ClusterLink
metadata:
  name: cluster-c
spec:
  kubeconfigSecretRef:
    name: cluster-c-kubeconfig
`,
	"disabled ClusterLink with kubeconfigSecretRef and key": `
apiVersion: svclink.cloudpilot.ai/v1alpha1
kind: ClusterLink
metadata:
  name: cluster-d
spec:
  enabled: false
  kubeconfigSecretRef:
    name: remotes
    key: cluster-d.yaml
`,
	"MeshService with mesh address": `
apiVersion: kubelink.mandelsoft.org/v1alpha1
kind: MeshService
metadata:
  name: echo
  namespace: default
spec:
  service: echo
  meshAddress: 192.168.0.100
`,
	"MeshService with port mappings to a named target port": `
apiVersion: kubelink.mandelsoft.org/v1alpha1
kind: MeshService
metadata:
  name: echo-ports
  namespace: default
spec:
  service: echo
  mesh: mesh
  ports:
  - name: http
    port: 8080
    protocol: TCP
  endpoints:
  - portMappings:
    - port: http
      targetPort: http
    - port: 8081
      protocol: UDP
      targetPort: 53
`,
	"MeshService with explicit endpoints": `
apiVersion: kubelink.mandelsoft.org/v1alpha1
kind: MeshService
metadata:
  name: explicit
  namespace: default
spec:
  meshAddress: 192.168.0.101
  endpoints:
  - address: 100.64.0.20
    portMappings:
    - port: 80
      targetPort: 8080
  - address: 100.64.0.21
`,
}

func TestValidObjectsAccepted(t *testing.T) {
	_, c := startAPI(t)
	ctx := context.Background()
	for name, y := range validObjects {
		o := decode(t, y)
		if _, err := resourceFor(o, c).Create(ctx, o, metav1.CreateOptions{}); err != nil {
			t.Errorf("%s: rejected: %v", name, err)
		}
	}
}

// invalid objects: each must be rejected with a message naming the field.
var invalidObjects = []struct {
	name, field, yaml string
}{
	{"cidr octet > 255", "spec.cidr", link(`cidr: 100.64.300.0/20`)},
	{"cidr prefix > 32", "spec.cidr", link(`cidr: 100.64.0.0/33`)},
	{"cidr without prefix", "spec.cidr", link(`cidr: 100.64.0.0`)},
	{"cidr garbage", "spec.cidr", link(`cidr: not-a-cidr`)},
	{"clusterAddress without prefix", "spec.clusterAddress", linkRaw(`clusterAddress: 192.168.0.12`)},
	{"clusterAddress octet > 255", "spec.clusterAddress", linkRaw(`clusterAddress: 192.168.0.256/24`)},
	{"clusterAddress prefix > 32", "spec.clusterAddress", linkRaw(`clusterAddress: 192.168.0.12/40`)},
	{"clusterAddress missing", "spec.clusterAddress", linkRaw(`cidr: 100.64.0.0/20`)},
	{"endpoint bad host", "spec.endpoint", link(`endpoint: bad_host.example`)},
	{"endpoint port 0", "spec.endpoint", link(`endpoint: gw.example:0`)},
	{"endpoint port 65536", "spec.endpoint", link(`endpoint: gw.example:65536`)},
	{"endpoint port too long", "spec.endpoint", link(`endpoint: gw.example:123456`)},
	{"endpoint IP octet > 255", "spec.endpoint", link(`endpoint: 300.1.2.3`)},
	{"endpoint unbracketed IPv6", "spec.endpoint", link(`endpoint: "fd00::1"`)},
	{"endpoint with scheme", "spec.endpoint", link(`endpoint: https://gw.example`)},
	{"publicKey too short", "spec.publicKey", link(`publicKey: YWJjZA==`)},
	{"publicKey not base64", "spec.publicKey", link(`publicKey: "mD2KZnSwDbzr4a2vD0zQ4CqYpMr1T0qC6G4uO9mA4E*="`)},
	{"publicKey 33 bytes", "spec.publicKey", link(`publicKey: mD2KZnSwDbzr4a2vD0zQ4CqYpMr1T0qC6G4uO9mA4EwA`)},
	{"presharedKey wrong", "spec.presharedKey", link(`presharedKey: short`)},
	{"ingress not a CIDR", "spec.ingress", link("ingress:\n  - 10.0.0.0/8\n  - nonsense")},
	{"ingress double bang", "spec.ingress", link("ingress:\n  - \"!!10.0.0.0/8\"")},
	{"egress with bang", "spec.egress", link("egress:\n  - \"!10.0.0.0/8\"")},
	{"egress not a CIDR", "spec.egress", link("egress:\n  - 10.0.0.300/8")},
	{"dns.dnsIP not an IP", "spec.dns.dnsIP", link("dns:\n    dnsIP: 100.64.0.1000")},
	{"dns.baseDomain not a DNS name", "spec.dns.baseDomain", link("dns:\n    baseDomain: bad..domain")},
	{"dns.baseDomain with underscore", "spec.dns.baseDomain", link("dns:\n    baseDomain: my_domain.local")},
	{"dns.mode unknown", "spec.dns.mode", link("dns:\n    mode: forward")},
	{"gatewayLink is itself", "spec.gatewayLink", link(`gatewayLink: bad`)},
	{"egress on LocalLink", "spec.egress", linkRaw("clusterAddress: 192.168.0.11/24\n  endpoint: LocalLink\n  egress:\n  - 10.0.0.0/8")},
	{"meshAddress not an IP", "spec.meshAddress", msvc("service: echo\n  meshAddress: 192.168.0.300")},
	{"port 0", "spec.ports[0].port", msvc("service: echo\n  ports:\n  - port: 0")},
	{"port 70000", "spec.ports[0].port", msvc("service: echo\n  ports:\n  - port: 70000")},
	{"protocol SCTP", "spec.ports[0].protocol", msvc("service: echo\n  ports:\n  - port: 80\n    protocol: SCTP")},
	{"mapping protocol ICMP", "spec.endpoints[0].portMappings[0].protocol", msvc("service: echo\n  endpoints:\n  - portMappings:\n    - port: 80\n      targetPort: 80\n      protocol: ICMP")},
	{"targetPort 0", "spec.endpoints[0].portMappings[0].targetPort", msvc("service: echo\n  endpoints:\n  - portMappings:\n    - port: 80\n      targetPort: 0")},
	{"targetPort 65536", "spec.endpoints[0].portMappings[0].targetPort", msvc("service: echo\n  endpoints:\n  - portMappings:\n    - port: 80\n      targetPort: 65536")},
	{"targetPort bad name", "spec.endpoints[0].portMappings[0].targetPort", msvc("service: echo\n  endpoints:\n  - portMappings:\n    - port: 80\n      targetPort: Not_A_Name")},
	{"mapping port 99999", "spec.endpoints[0].portMappings[0].port", msvc("service: echo\n  endpoints:\n  - portMappings:\n    - port: 99999\n      targetPort: 80")},
	{"endpoint address not an IP", "spec.endpoints[0].address", msvc("endpoints:\n  - address: backend.example")},
	{"no target at all", "spec", msvc("meshAddress: 192.168.0.100")},
	{"endpoints without address and no service", "spec", msvc("endpoints:\n  - portMappings:\n    - port: 80\n      targetPort: 80")},
	{"service not a DNS label", "spec.service", msvc("service: Echo_Service")},
	{"mesh not a DNS label", "spec.mesh", msvc("service: echo\n  mesh: My.Mesh")},
	{"port name invalid", "spec.ports[0].name", msvc("service: echo\n  ports:\n  - port: 80\n    name: HTTP_1")},
	{"gatewayLink not a name", "spec.gatewayLink", link(`gatewayLink: Other_Link`)},
	{"apiAccess server not https", "spec.apiAccess.server", link("apiAccess:\n    name: api\n    server: http://100.64.0.1:443")},
	{"apiAccess server not a URL", "spec.apiAccess.server", link("apiAccess:\n    name: api\n    server: 100.64.0.1:443")},
	{"apiAccess without name", "spec.apiAccess.name", link("apiAccess:\n    namespace: kube-system")},
	{"apiAccess namespace not a label", "spec.apiAccess.namespace", link("apiAccess:\n    name: api\n    namespace: Kube_System")},
	{"ClusterLink with kubeconfig and kubeconfigSecretRef", "spec.kubeconfig", clink("kubeconfig: " + remoteKubeconfig + "\n  kubeconfigSecretRef:\n    name: remote")},
	{"ClusterLink with neither kubeconfig nor kubeconfigSecretRef", "spec.kubeconfig", clink("enabled: true")},
	{"ClusterLink kubeconfig not base64", "spec.kubeconfig", clink("kubeconfig: \"apiVersion: v1\"")},
	{"ClusterLink kubeconfig placeholder xxx", "spec.kubeconfig", clink("kubeconfig: xxx")},
	{"ClusterLink kubeconfig empty", "spec.kubeconfig", clink(`kubeconfig: ""`)},
	{"ClusterLink excludedServices without namespace", "spec.excludedServices", clink("kubeconfig: " + remoteKubeconfig + "\n  excludedServices:\n    - default/ok\n    - internal-db")},
	{"ClusterLink excludedServices with two slashes", "spec.excludedServices", clink("kubeconfig: " + remoteKubeconfig + "\n  excludedServices:\n    - a/b/c")},
	{"ClusterLink includedNamespaces not a label", "spec.includedNamespaces", clink("kubeconfig: " + remoteKubeconfig + "\n  includedNamespaces:\n    - Production")},
	{"ClusterLink excludedNamespaces not a label", "spec.excludedNamespaces", clink("kubeconfig: " + remoteKubeconfig + "\n  excludedNamespaces:\n    - kube.system")},
	{"ClusterLink excludedServiceNames not a name", "spec.excludedServiceNames", clink("kubeconfig: " + remoteKubeconfig + "\n  excludedServiceNames:\n    - 1st-service")},
	{"ClusterLink secret name invalid", "spec.kubeconfigSecretRef.name", clink("kubeconfigSecretRef:\n    name: Remote_Secret")},
	{"ClusterLink secret key invalid", "spec.kubeconfigSecretRef.key", clink("kubeconfigSecretRef:\n    name: remote\n    key: a/b")},
	{"ClusterLink secret ref without name", "spec.kubeconfigSecretRef.name", clink("kubeconfigSecretRef:\n    key: kubeconfig")},
}

func clink(spec string) string {
	return "apiVersion: svclink.cloudpilot.ai/v1alpha1\nkind: ClusterLink\nmetadata:\n  name: bad\n  namespace: default\nspec:\n  " + spec + "\n"
}

func link(extra string) string {
	return linkRaw("clusterAddress: 192.168.0.12/24\n  " + extra)
}

func linkRaw(spec string) string {
	return "apiVersion: kubelink.mandelsoft.org/v1alpha1\nkind: KubeLink\nmetadata:\n  name: bad\nspec:\n  " + spec + "\n"
}

func msvc(spec string) string {
	return "apiVersion: kubelink.mandelsoft.org/v1alpha1\nkind: MeshService\nmetadata:\n  name: bad\n  namespace: default\nspec:\n  " + spec + "\n"
}

func TestInvalidObjectsRejected(t *testing.T) {
	if len(invalidObjects) < 30 {
		t.Fatalf("only %d invalid objects; the contract asks for at least 30", len(invalidObjects))
	}
	_, c := startAPI(t)
	ctx := context.Background()
	for _, tc := range invalidObjects {
		t.Run(tc.name, func(t *testing.T) {
			o := decode(t, tc.yaml)
			_, err := resourceFor(o, c).Create(ctx, o, metav1.CreateOptions{})
			if err == nil {
				_ = resourceFor(o, c).Delete(ctx, o.GetName(), metav1.DeleteOptions{})
				t.Fatalf("accepted, want rejection naming %s", tc.field)
			}
			msg := err.Error()
			t.Log(msg)
			// The apiserver prefixes each cause with the field path; the
			// rule's own message names the field too and says what is
			// expected.
			if !strings.Contains(msg, tc.field+":") && !strings.Contains(msg, tc.field+" ") {
				t.Fatalf("rejection does not name %s: %s", tc.field, msg)
			}
			if !strings.Contains(msg, "must") && !strings.Contains(msg, "Unsupported value") && !strings.Contains(msg, "should be") && !strings.Contains(msg, "Required value") {
				t.Fatalf("rejection does not say what is expected: %s", msg)
			}
		})
	}
}

func TestStatusSubresource(t *testing.T) {
	_, c := startAPI(t)
	ctx := context.Background()
	res := c.Resource(kubeLinkGVR)
	o := decode(t, validObjects["foreign link with public key"])
	o.Object["status"] = map[string]any{"state": "Up"}
	created, err := res.Create(ctx, o, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s, _, _ := unstructured.NestedString(created.Object, "status", "state"); s != "" {
		t.Fatalf("status written through the main resource on create: %q", s)
	}
	// Status through the main resource is ignored.
	_ = unstructured.SetNestedField(created.Object, "Up", "status", "state")
	upd, err := res.Update(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s, _, _ := unstructured.NestedString(upd.Object, "status", "state"); s != "" {
		t.Fatalf("status written through the main resource on update: %q", s)
	}
	// Status through /status is written; spec changes there are ignored.
	_ = unstructured.SetNestedField(upd.Object, "Down", "status", "state")
	_ = unstructured.SetNestedField(upd.Object, "peer silent", "status", "message")
	_ = unstructured.SetNestedField(upd.Object, "100.64.48.0/20", "spec", "cidr")
	st, err := res.UpdateStatus(ctx, upd, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s, _, _ := unstructured.NestedString(st.Object, "status", "state"); s != "Down" {
		t.Fatalf("status not written through /status: %q", s)
	}
	if cidr, _, _ := unstructured.NestedString(st.Object, "spec", "cidr"); cidr != "100.64.16.0/20" {
		t.Fatalf("spec changed through /status: %q", cidr)
	}
}

func TestPrinterColumns(t *testing.T) {
	env, c := startAPI(t)
	ctx := context.Background()
	o := decode(t, validObjects["foreign link with public key"])
	created, err := c.Resource(kubeLinkGVR).Create(ctx, o, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_ = unstructured.SetNestedField(created.Object, "Up", "status", "state")
	_ = unstructured.SetNestedField(created.Object, "gw-0", "status", "gateway")
	if _, err := c.Resource(kubeLinkGVR).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	out, err := env.Kubectl(ctx, "get", "klink")
	if err != nil {
		testenv.SkipOrFail(t, "kubectl: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("kubectl get klink: %q", out)
	}
	if got := strings.Fields(lines[0]); strings.Join(got, " ") != "NAME CIDR ADDRESS ENDPOINT GATEWAY STATE AGE" {
		t.Fatalf("columns %v", got)
	}
	row := strings.Fields(lines[1])
	want := []string{"kubelink2", "100.64.16.0/20", "192.168.0.12/24", "kubelink.kubelink2.ringdev.shoot.dev.k8s-hana.ondemand.com", "gw-0", "Up"}
	for i, w := range want {
		if i >= len(row) || row[i] != w {
			t.Fatalf("row %v, want prefix %v", row, want)
		}
	}
	// The short name and the category work too.
	for _, args := range [][]string{{"get", "kubelinks.kubelink.mandelsoft.org", "-o", "name"}, {"get", "kubelink", "-o", "name"}} {
		out, err := env.Kubectl(ctx, args...)
		if err != nil || !strings.Contains(out, "kubelink2") {
			t.Fatalf("kubectl %v: %q %v", args, out, err)
		}
	}
	// MeshService columns point at real fields.
	ms := decode(t, validObjects["MeshService with mesh address"])
	if _, err := c.Resource(meshServiceGVR).Namespace("default").Create(ctx, ms, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	out, err = env.Kubectl(ctx, "get", "msvc", "-n", "default")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "192.168.0.100") || !strings.Contains(out, "echo") || !strings.HasPrefix(out, "NAME") {
		t.Fatalf("kubectl get msvc: %q", out)
	}
}

// TestCRDMetadata checks the installed CRDs' names, scope and short names.
func TestCRDMetadata(t *testing.T) {
	env, _ := startAPI(t)
	ctx := context.Background()
	crds := env.Dynamic().Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	for name, want := range map[string][2]string{
		"kubelinks.kubelink.mandelsoft.org":    {"Cluster", "klink"},
		"meshservices.kubelink.mandelsoft.org": {"Namespaced", "msvc"},
		"clusterlinks.svclink.cloudpilot.ai":   {"Namespaced", ""},
	} {
		o, err := crds.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		scope, _, _ := unstructured.NestedString(o.Object, "spec", "scope")
		short, _, _ := unstructured.NestedStringSlice(o.Object, "spec", "names", "shortNames")
		if want[1] == "" && len(short) == 0 && scope == want[0] {
			continue // svclink defines no short name; adding one could clash
		}
		if scope != want[0] || len(short) != 1 || short[0] != want[1] {
			t.Errorf("%s: scope %s short names %v, want %v", name, scope, short, want)
		}
	}
}
