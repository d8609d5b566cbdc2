package watch

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
)

const snapshotYAML = `apiVersion: kubelink.mandelsoft.org/v1alpha1
kind: KubeLink
metadata:
  name: kubelink2
spec:
  clusterAddress: 192.168.0.12/24
  dns:
    mode: kubernetes
---
apiVersion: kubelink.mandelsoft.org/v1alpha1
kind: MeshService
metadata:
  name: web
  namespace: demo
spec:
  service: web
status:
  state: Ok
  targets:
  - address: 192.168.0.100
    targets: ["100.64.0.20"]
---
apiVersion: v1
kind: List
items:
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata:
    name: svc-b
    namespace: kubelink
    labels:
      kubelink.mandelsoft.org/service-name: web
  addressType: IPv4
  endpoints:
  - addresses: ["100.64.16.20"]
    hostname: web-0
  ports:
  - name: http
    port: 80
- apiVersion: discovery.k8s.io/v1beta1
  kind: EndpointSlice
  metadata:
    name: old-api
    namespace: kubelink
  addressType: IPv4
  endpoints: []
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: ignored
`

func TestDecodeSnapshot(t *testing.T) {
	s, err := DecodeSnapshot([]byte(snapshotYAML))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.KubeLinks) != 1 || s.KubeLinks[0].Spec.DNS.Mode != "kubernetes" {
		t.Errorf("KubeLinks %+v", s.KubeLinks)
	}
	if len(s.MeshServices) != 1 || s.MeshServices[0].Status.Targets[0].Targets[0] != "100.64.0.20" {
		t.Errorf("MeshServices %+v", s.MeshServices)
	}
	if len(s.EndpointSlices) != 1 {
		t.Fatalf("EndpointSlices %+v, want the v1 one", s.EndpointSlices)
	}
	es := s.EndpointSlices[0]
	if es.Namespace != "kubelink" || *es.Endpoints[0].Hostname != "web-0" || *es.Ports[0].Port != 80 || es.Labels["kubelink.mandelsoft.org/service-name"] != "web" {
		t.Errorf("EndpointSlice %+v", es)
	}
	// An EndpointSlice that does not convert is an error, as for KubeLinks.
	if _, err := DecodeSnapshot([]byte("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: x}\naddressType: [1]\n")); err == nil {
		t.Error("a broken EndpointSlice was accepted")
	}

	// A directory: every file, each list sorted.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "b.yaml"), []byte(snapshotYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	more := "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: a, namespace: kubelink}\naddressType: IPv6\nendpoints: []\n"
	if err := os.WriteFile(filepath.Join(dir, "c.yaml"), []byte(more), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err = (&Dir{Path: dir}).LoadSnapshot()
	if err != nil || len(s.KubeLinks) != 1 || len(s.MeshServices) != 1 || len(s.EndpointSlices) != 2 || s.EndpointSlices[0].Name != "a" {
		t.Errorf("directory: %v %+v", err, s)
	}
}

// TestSnapshotSelectedSlices: the Kube source's snapshots carry the
// selected EndpointSlices, and only those.
func TestSnapshotSelectedSlices(t *testing.T) {
	slice := func(ns, name string, labels map[string]string) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}, AddressType: discoveryv1.AddressTypeIPv4}
	}
	mirror := map[string]string{"mirror": "yes"}
	core := fake.NewClientset(slice("kubelink", "b", mirror), slice("kubelink", "a", mirror), slice("kubelink", "other", nil), slice("default", "c", mirror))
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{KubeLinks: "KubeLinkList"})
	c := &Clients{Core: core, Dynamic: dyn}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := Start(ctx, c, Needs{KubeLinks: true, SelectedSlices: Selection{Namespace: "kubelink", Selector: "mirror"}}, func() {}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := w.Snapshot()
	if len(s.EndpointSlices) != 2 || s.EndpointSlices[0].Name != "a" || s.EndpointSlices[1].Name != "b" {
		t.Errorf("selected slices %v", s.EndpointSlices)
	}
	cancel()
	w.Wait()
	// Not needed: none.
	w, stop, err := Open(context.Background(), c, Needs{KubeLinks: true}, func() {}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if s := w.Snapshot(); s.EndpointSlices != nil {
		t.Errorf("slices without being needed: %v", s.EndpointSlices)
	}
}
