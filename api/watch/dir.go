package watch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	mcsv1a1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"

	"github.com/kubelink/kubelink/api/v1alpha1"
)

// Dir is the Source of a directory of manifests (CoreDNS's "manifests DIR"):
// it reads KubeLinks and MeshServices (status included), EndpointSlices
// (discovery.k8s.io/v1, e.g. netd sync's service mirrors and MCS slices) and
// MCS ServiceImports (multicluster.x-k8s.io/v1alpha1) from the *.yaml,
// *.yml and *.json files of a directory; other kinds are skipped. It polls: a stat of a handful of files every
// Interval is cheap and, unlike inotify, also works on ConfigMap volumes
// whose files are swapped through symlinks.
type Dir struct {
	Path string
	// Interval between scans; default 500ms, so changes show within 2 s.
	Interval time.Duration
	// OnError reports read errors; the last good snapshot stays in force.
	OnError func(error)
}

// fileStamp identifies a version of a file cheaply.
type fileStamp struct {
	size    int64
	modTime time.Time
}

// Run implements Source.
func (d *Dir) Run(ctx context.Context, update func(Snapshot)) error {
	interval := d.Interval
	if interval <= 0 {
		interval = 500 * time.Millisecond
	}
	var last map[string]fileStamp
	first := true
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		stamps, err := d.stamps()
		if err == nil && (first || !sameStamps(stamps, last)) {
			var snap Snapshot
			snap, err = d.LoadSnapshot()
			if err == nil {
				last, first = stamps, false
				update(snap)
			}
		}
		if err != nil && d.OnError != nil {
			d.OnError(err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (d *Dir) files() ([]string, error) {
	entries, err := os.ReadDir(d.Path)
	if err != nil {
		return nil, fmt.Errorf("reading manifests directory %s: %w", d.Path, err)
	}
	var out []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		switch filepath.Ext(name) {
		case ".yaml", ".yml", ".json":
			out = append(out, filepath.Join(d.Path, name))
		}
	}
	sort.Strings(out)
	return out, nil
}

func (d *Dir) stamps() (map[string]fileStamp, error) {
	files, err := d.files()
	if err != nil {
		return nil, err
	}
	out := make(map[string]fileStamp, len(files))
	for _, f := range files {
		fi, err := os.Stat(f) // follows symlinks
		if err != nil {
			return nil, fmt.Errorf("stat %s: %w", f, err)
		}
		out[f] = fileStamp{fi.Size(), fi.ModTime()}
	}
	return out, nil
}

func sameStamps(a, b map[string]fileStamp) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w.size != v.size || !w.modTime.Equal(v.modTime) {
			return false
		}
	}
	return true
}

// Load reads every KubeLink of the directory once. Objects of other kinds
// (MeshServices, anything else) are skipped.
func (d *Dir) Load() ([]*v1alpha1.KubeLink, error) {
	s, err := d.LoadSnapshot()
	return s.KubeLinks, err
}

// LoadSnapshot reads the KubeLinks, MeshServices, EndpointSlices and
// ServiceImports of the directory once, each list sorted (KubeLinks by
// name, the others by namespace and name).
func (d *Dir) LoadSnapshot() (Snapshot, error) {
	files, err := d.files()
	if err != nil {
		return Snapshot{}, err
	}
	var out Snapshot
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return Snapshot{}, fmt.Errorf("reading %s: %w", f, err)
		}
		s, err := DecodeSnapshot(data)
		if err != nil {
			return Snapshot{}, fmt.Errorf("%s: %w", f, err)
		}
		out.KubeLinks = append(out.KubeLinks, s.KubeLinks...)
		out.MeshServices = append(out.MeshServices, s.MeshServices...)
		out.EndpointSlices = append(out.EndpointSlices, s.EndpointSlices...)
		out.ServiceImports = append(out.ServiceImports, s.ServiceImports...)
		out.MCSSlices = append(out.MCSSlices, s.MCSSlices...)
	}
	sort.SliceStable(out.KubeLinks, func(i, j int) bool { return out.KubeLinks[i].Name < out.KubeLinks[j].Name })
	sort.SliceStable(out.MeshServices, func(i, j int) bool {
		a, b := out.MeshServices[i], out.MeshServices[j]
		return a.Namespace < b.Namespace || a.Namespace == b.Namespace && a.Name < b.Name
	})
	sort.SliceStable(out.EndpointSlices, func(i, j int) bool {
		a, b := out.EndpointSlices[i], out.EndpointSlices[j]
		return a.Namespace < b.Namespace || a.Namespace == b.Namespace && a.Name < b.Name
	})
	sort.SliceStable(out.MCSSlices, func(i, j int) bool {
		a, b := out.MCSSlices[i], out.MCSSlices[j]
		return a.Namespace < b.Namespace || a.Namespace == b.Namespace && a.Name < b.Name
	})
	sort.SliceStable(out.ServiceImports, func(i, j int) bool {
		a, b := out.ServiceImports[i], out.ServiceImports[j]
		return a.Namespace < b.Namespace || a.Namespace == b.Namespace && a.Name < b.Name
	})
	return out, nil
}

// DecodeKubeLinks decodes the KubeLinks of a multi-document YAML or JSON
// stream (a List of items is flattened).
func DecodeKubeLinks(data []byte) ([]*v1alpha1.KubeLink, error) {
	s, err := DecodeSnapshot(data)
	return s.KubeLinks, err
}

// DecodeSnapshot decodes the KubeLinks, MeshServices, EndpointSlices
// (discovery.k8s.io/v1; those labelled multicluster.kubernetes.io/service-name
// are in MCSSlices too) and ServiceImports (multicluster.x-k8s.io/v1alpha1)
// of a multi-document YAML or JSON stream (a List of items is flattened), in
// stream order; other kinds are skipped.
func DecodeSnapshot(data []byte) (Snapshot, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out Snapshot
	for {
		var u unstructured.Unstructured
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return Snapshot{}, fmt.Errorf("decoding YAML: %w", err)
		}
		if u.Object == nil {
			continue
		}
		items := []unstructured.Unstructured{u}
		if u.IsList() {
			l, err := u.ToList()
			if err != nil {
				return Snapshot{}, fmt.Errorf("decoding list: %w", err)
			}
			items = l.Items
		}
		for i := range items {
			it := &items[i]
			gvk := it.GroupVersionKind()
			var err error
			switch {
			case gvk.Group == v1alpha1.SchemeGroupVersion.Group && gvk.Kind == kubeLinkKind:
				var kl *v1alpha1.KubeLink
				if kl, err = toKubeLink(it); err == nil {
					out.KubeLinks = append(out.KubeLinks, kl)
				}
			case gvk.Group == v1alpha1.SchemeGroupVersion.Group && gvk.Kind == meshServiceKind:
				var ms *v1alpha1.MeshService
				if ms, err = fromUnstructured[v1alpha1.MeshService](it); err == nil {
					out.MeshServices = append(out.MeshServices, ms)
				}
			case gvk.Group == discoveryv1.GroupName && gvk.Version == "v1" && gvk.Kind == endpointSliceKind:
				var es *discoveryv1.EndpointSlice
				if es, err = fromUnstructured[discoveryv1.EndpointSlice](it); err == nil {
					out.EndpointSlices = append(out.EndpointSlices, es)
					if _, ok := es.Labels[MCSSliceSelector]; ok {
						out.MCSSlices = append(out.MCSSlices, es)
					}
				}
			case gvk.Group == mcsv1a1.GroupName && gvk.Version == mcsv1a1.SchemeGroupVersion.Version && gvk.Kind == serviceImportKind:
				var si *mcsv1a1.ServiceImport
				if si, err = fromUnstructured[mcsv1a1.ServiceImport](it); err == nil {
					out.ServiceImports = append(out.ServiceImports, si)
				}
			}
			if err != nil {
				return Snapshot{}, err
			}
		}
	}
}
