package chart_test

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestAdditionalBrokerExample renders each additional-release example (a
// second broker in a cluster, e.g. examples/kubelink1/values-kubelink3-bridge.yaml)
// as release kubelink-bridge beside the cluster's main release
// (values.yaml of the same directory, node mode, serving the other links,
// as the file's header says): the second release adds only a broker and
// its links, with its own device, HTTP port, lease and secret, does not
// publish the LocalLink status, and together the two releases serve every
// link exactly once and render a valid mesh.
func TestAdditionalBrokerExample(t *testing.T) {
	c := loadChart(t)
	n := 0
	for _, f := range exampleValues(t) {
		if !additionalRelease(t, f) {
			continue
		}
		n++
		t.Run(rel(f), func(t *testing.T) {
			v := readValues(t, f)
			mainFile := filepath.Join(filepath.Dir(f), "values.yaml")
			base := readValues(t, mainFile)
			if got, want := toYAML(v["cluster"]), toYAML(base["cluster"]); got != want {
				t.Errorf("cluster differs from %s:\n%s\nwant:\n%s", rel(mainFile), got, want)
			}
			for _, k := range []string{"name", "domain", "linkAddress"} {
				if v["mesh"].(map[string]any)[k] != base["mesh"].(map[string]any)[k] {
					t.Errorf("mesh.%s differs from %s", k, rel(mainFile))
				}
			}
			extra, _ := renderRelease(t, c, "kubelink-bridge", v)
			var servedExtra []string
			for _, l := range v["links"].([]any) {
				servedExtra = append(servedExtra, l.(map[string]any)["name"].(string))
			}
			var servedMain []string
			var servedMainValue []any // as YAML decodes a list (the schema wants that)
			for _, l := range base["links"].([]any) {
				if name := l.(map[string]any)["name"].(string); !slices.Contains(servedExtra, name) {
					servedMain = append(servedMain, name)
					servedMainValue = append(servedMainValue, name)
				}
			}
			mainObjs, _ := render(t, c, merge(base, map[string]any{"broker": map[string]any{"podMode": false, "servedLinks": servedMainValue}}))

			for _, o := range extra {
				switch o.GetKind() {
				case "KubeLink":
					if e, _, _ := unstructured.NestedString(o.Object, "spec", "endpoint"); e == "LocalLink" {
						t.Errorf("the additional release renders a LocalLink")
					}
				case "DaemonSet", "ConfigMap":
					t.Errorf("the additional release renders %s/%s (router or DNS)", o.GetKind(), o.GetName())
				case "Deployment":
					if o.GetName() != "kubelink-bridge-broker" {
						t.Errorf("the additional release renders Deployment %s", o.GetName())
					}
				}
			}
			broker := find(t, extra, "Deployment", "kubelink-bridge-broker")
			a := args(t, broker)
			for _, w := range []string{"--mode=bridge", "--ifce-name=kubelink-br", "--served-links=" + strings.Join(servedExtra, ","), "--local-status=false",
				"--lease-name=kubelink-bridge-broker", "--secret=kubelink-tls", "--server-port-http=8788"} {
				if !slices.Contains(a, w) {
					t.Errorf("additional broker args lack %q: %v", w, a)
				}
			}
			if hn, _, _ := unstructured.NestedBool(broker.Object, "spec", "template", "spec", "hostNetwork"); !hn {
				t.Errorf("the additional broker is not in node mode: it must share the main broker's network namespace")
			}
			if aff := toYAML(broker.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["affinity"]); !strings.Contains(aff, "podAffinity") || !strings.Contains(aff, "app.kubernetes.io/instance: kubelink\n") {
				t.Errorf("the additional broker is not bound to the main broker's node:\n%s", aff)
			}
			ma := args(t, find(t, mainObjs, "Deployment", "kubelink-broker"))
			if !slices.Contains(ma, "--served-links="+strings.Join(servedMain, ",")) || slices.Contains(ma, "--local-status=false") ||
				slices.ContainsFunc(ma, func(s string) bool { return strings.HasPrefix(s, "--ifce-name=") }) {
				t.Errorf("main broker args: %v", ma)
			}
			// Node mode: the host ports of both brokers and the router differ.
			var ports []string
			for _, o := range []*unstructured.Unstructured{broker, find(t, mainObjs, "Deployment", "kubelink-broker"), find(t, mainObjs, "DaemonSet", "kubelink-router")} {
				for _, x := range args(t, o) {
					if strings.HasPrefix(x, "--server-port-http=") {
						if slices.Contains(ports, x) {
							t.Errorf("%s shares the host port %s", o.GetName(), x)
						}
						ports = append(ports, x)
					}
				}
			}
			// Every link is served exactly once; all KubeLinks form a valid mesh.
			if len(servedMain) == 0 || len(servedExtra) == 0 {
				t.Errorf("links served by the main release %v, by the additional one %v", servedMain, servedExtra)
			}
			allLinksValid(t, append(mainObjs, extra...))
		})
	}
	if n == 0 {
		t.Fatalf("no additional-release example (mesh.localLink: false) under examples/")
	}
}

func renderRelease(t testing.TB, c *chart.Chart, release string, vals map[string]any) ([]*unstructured.Unstructured, string) {
	t.Helper()
	objs, notes, err := renderReleaseErr(c, release, vals)
	if err != nil {
		t.Fatalf("rendering release %s: %v", release, err)
	}
	return objs, notes
}
