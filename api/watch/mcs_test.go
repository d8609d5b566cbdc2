package watch

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	mcsv1a1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
)

const mcsYAML = `apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceImport
metadata:
  name: web
  namespace: demo
spec:
  type: ClusterSetIP
  ips: ["100.64.0.20"]
  ports:
  - name: http
    port: 80
    protocol: TCP
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceImport
metadata:
  name: db
  namespace: demo
spec:
  type: Headless
  ports: []
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-east
  namespace: demo
  labels:
    multicluster.kubernetes.io/service-name: db
    multicluster.kubernetes.io/source-cluster: east
addressType: IPv4
endpoints:
- addresses: ["10.144.1.5"]
  hostname: db-0
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-local
  namespace: demo
  labels:
    kubernetes.io/service-name: db
addressType: IPv4
endpoints: []
---
apiVersion: multicluster.x-k8s.io/v1beta1
kind: ServiceImport
metadata:
  name: other-version
  namespace: demo
`

// TestDecodeMCS: ServiceImports (v1alpha1 only) and the MCS slices, which
// stay among the EndpointSlices too; a directory sorts them.
func TestDecodeMCS(t *testing.T) {
	s, err := DecodeSnapshot([]byte(mcsYAML))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.ServiceImports) != 2 || s.ServiceImports[0].Name != "web" || s.ServiceImports[0].Spec.Type != mcsv1a1.ClusterSetIP ||
		s.ServiceImports[0].Spec.IPs[0] != "100.64.0.20" || s.ServiceImports[0].Spec.Ports[0].Name != "http" {
		t.Errorf("ServiceImports %+v", s.ServiceImports)
	}
	if len(s.EndpointSlices) != 2 || len(s.MCSSlices) != 1 || s.MCSSlices[0].Name != "db-east" {
		t.Errorf("slices %d, MCS slices %+v", len(s.EndpointSlices), s.MCSSlices)
	}
	if _, err := DecodeSnapshot([]byte("apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceImport\nmetadata: {name: x}\nspec: {ips: 7}\n")); err == nil {
		t.Error("a broken ServiceImport was accepted")
	}

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(mcsYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err = (&Dir{Path: dir}).LoadSnapshot()
	if err != nil || len(s.ServiceImports) != 2 || s.ServiceImports[0].Name != "db" || len(s.MCSSlices) != 1 {
		t.Errorf("directory: %v %+v", err, s)
	}
}

// TestSnapshotMCS: the Kube source's snapshots carry the ServiceImports and
// the MCS slices of every namespace (only those), when needed.
func TestSnapshotMCS(t *testing.T) {
	slice := func(ns, name string, labels map[string]string) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}, AddressType: discoveryv1.AddressTypeIPv4}
	}
	mcs := map[string]string{mcsv1a1.LabelServiceName: "db", mcsv1a1.LabelSourceCluster: "east"}
	core := fake.NewClientset(slice("demo", "b", mcs), slice("apps", "a", mcs), slice("demo", "a", mcs),
		slice("demo", "plain", map[string]string{discoveryv1.LabelServiceName: "db"}))
	imp := func(ns, name string) runtime.Object {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion(mcsv1a1.SchemeGroupVersion.String())
		u.SetKind(mcsv1a1.ServiceImportKindName)
		u.SetNamespace(ns)
		u.SetName(name)
		_ = unstructured.SetNestedField(u.Object, string(mcsv1a1.Headless), "spec", "type")
		return u
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		KubeLinks: "KubeLinkList", ServiceImports: "ServiceImportList"}, imp("demo", "web"), imp("apps", "db"), imp("demo", "db"))
	c := &Clients{Core: core, Dynamic: dyn}
	w, stop, err := Open(context.Background(), c, Needs{KubeLinks: true, ServiceImports: true, MCSSlices: true}, func() {}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := w.Snapshot()
	stop()
	var names []string
	for _, si := range s.ServiceImports {
		names = append(names, si.Namespace+"/"+si.Name+":"+string(si.Spec.Type))
	}
	if len(names) != 3 || names[0] != "apps/db:Headless" || names[1] != "demo/db:Headless" || names[2] != "demo/web:Headless" {
		t.Errorf("ServiceImports %v", names)
	}
	names = nil
	for _, sl := range s.MCSSlices {
		names = append(names, sl.Namespace+"/"+sl.Name)
	}
	if len(names) != 3 || names[0] != "apps/a" || names[1] != "demo/a" || names[2] != "demo/b" {
		t.Errorf("MCS slices %v", names)
	}
	if s.EndpointSlices != nil {
		t.Errorf("selected slices without being needed: %v", s.EndpointSlices)
	}

	w, stop, err = Open(context.Background(), c, Needs{KubeLinks: true}, func() {}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if s := w.Snapshot(); s.ServiceImports != nil || s.MCSSlices != nil {
		t.Errorf("MCS objects without being needed: %+v", s)
	}
}
