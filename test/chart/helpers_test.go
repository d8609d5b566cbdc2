// Package chart_test tests the Helm chart chart/kubelink through the Helm Go
// SDK: lint, rendering of every examples values file, the values schema,
// and installation into a real kube-apiserver with RBAC checks.
package chart_test

import (
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	kubefake "helm.sh/helm/v3/pkg/kube/fake"
	"helm.sh/helm/v3/pkg/storage"
	"helm.sh/helm/v3/pkg/storage/driver"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/kubelink/kubelink/test/testenv"
)

const (
	releaseName = "kubelink"
	releaseNS   = "kubelink"
)

// kubeVersion is the test environment's apiserver version; the SDK's
// default (without helm's build-time ldflags) is too old for the chart.
var kubeVersion = chartutil.KubeVersion{Version: "v1.37.1", Major: "1", Minor: "37"}

func chartDir() string { return filepath.Join(testenv.RepoRoot(), "chart", "kubelink") }

func loadChart(t testing.TB) *chart.Chart {
	t.Helper()
	c, err := loader.Load(chartDir())
	if err != nil {
		t.Fatalf("loading chart %s: %v", chartDir(), err)
	}
	return c
}

// exampleValues lists every values file under examples/ (relative names).
func exampleValues(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(testenv.RepoRoot(), "examples", "*", "values*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 4 {
		t.Fatalf("expected at least 4 example values files, found %d", len(files))
	}
	sort.Strings(files)
	return files
}

// additionalRelease reports whether a values file is an additional
// release beside a cluster's main one (mesh.localLink: false, e.g. a bridge
// broker next to WireGuard): no LocalLink, DNS or router of its own.
// TestAdditionalBrokerExample covers those files.
func additionalRelease(t testing.TB, path string) bool {
	t.Helper()
	m, _ := readValues(t, path)["mesh"].(map[string]any)
	local, ok := m["localLink"].(bool)
	return ok && !local
}

// clusterExamples lists the example values files of clusters' main
// releases.
func clusterExamples(t testing.TB) []string {
	t.Helper()
	var out []string
	for _, f := range exampleValues(t) {
		if !additionalRelease(t, f) {
			out = append(out, f)
		}
	}
	return out
}

func rel(path string) string {
	r, err := filepath.Rel(testenv.RepoRoot(), path)
	if err != nil {
		return path
	}
	return r
}

func readValues(t testing.TB, path string) map[string]any {
	t.Helper()
	v, err := chartutil.ReadValuesFile(path)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	return v.AsMap()
}

func parseValues(t testing.TB, text string) map[string]any {
	t.Helper()
	v, err := chartutil.ReadValues([]byte(text))
	if err != nil {
		t.Fatalf("parsing values: %v\n%s", err, text)
	}
	return v.AsMap()
}

// merge returns base with overlay merged in (maps recursively, everything
// else replaced).
func merge(base, overlay map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range overlay {
		if om, ok := v.(map[string]any); ok {
			if bm, ok := out[k].(map[string]any); ok {
				out[k] = merge(bm, om)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// renderErr renders the chart client-side (like `helm template`) and
// returns the objects of the manifest plus NOTES.txt.
func renderErr(c *chart.Chart, vals map[string]any) ([]*unstructured.Unstructured, string, error) {
	return renderReleaseErr(c, releaseName, vals)
}

// renderReleaseErr is renderErr for another release name.
func renderReleaseErr(c *chart.Chart, release string, vals map[string]any) ([]*unstructured.Unstructured, string, error) {
	cfg := &action.Configuration{
		Releases:     storage.Init(driver.NewMemory()),
		KubeClient:   &kubefake.PrintingKubeClient{Out: io.Discard},
		Capabilities: chartutil.DefaultCapabilities.Copy(),
		Log:          func(string, ...any) {},
	}
	cfg.Capabilities.KubeVersion = kubeVersion
	in := action.NewInstall(cfg)
	in.DryRun = true
	in.ClientOnly = true
	kv := kubeVersion
	in.KubeVersion = &kv
	in.Replace = true
	in.ReleaseName = release
	in.Namespace = releaseNS
	r, err := in.Run(c, vals)
	if err != nil {
		return nil, "", err
	}
	objs, err := testenv.DecodeObjects([]byte(r.Manifest))
	if err != nil {
		return nil, "", fmt.Errorf("decoding rendered manifest: %w", err)
	}
	return objs, r.Info.Notes, nil
}

func render(t testing.TB, c *chart.Chart, vals map[string]any) ([]*unstructured.Unstructured, string) {
	t.Helper()
	objs, notes, err := renderErr(c, vals)
	if err != nil {
		t.Fatalf("rendering: %v", err)
	}
	return objs, notes
}

// find returns the one object of that kind and name, failing otherwise.
func find(t testing.TB, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %q rendered; have: %s", kind, name, names(objs))
	return nil
}

func has(objs []*unstructured.Unstructured, kind, name string) bool {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return true
		}
	}
	return false
}

func names(objs []*unstructured.Unstructured) string {
	var s []string
	for _, o := range objs {
		s = append(s, o.GetKind()+"/"+o.GetName())
	}
	return strings.Join(s, ", ")
}

func str(t testing.TB, o *unstructured.Unstructured, path ...string) string {
	t.Helper()
	v, ok, err := unstructured.NestedFieldNoCopy(o.Object, path...)
	if err != nil || !ok {
		t.Fatalf("%s/%s: no field %s", o.GetKind(), o.GetName(), strings.Join(path, "."))
	}
	return fmt.Sprint(v)
}

// container returns the first container of a workload's pod template.
func container(t testing.TB, o *unstructured.Unstructured) map[string]any {
	t.Helper()
	cs, ok, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
	if !ok || len(cs) == 0 {
		t.Fatalf("%s/%s has no containers", o.GetKind(), o.GetName())
	}
	return cs[0].(map[string]any)
}

func args(t testing.TB, o *unstructured.Unstructured) []string {
	t.Helper()
	var out []string
	for _, a := range container(t, o)["args"].([]any) {
		out = append(out, a.(string))
	}
	return out
}

func toYAML(v any) string {
	b, _ := yaml.Marshal(v)
	return string(b)
}
