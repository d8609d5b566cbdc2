package watch

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kubelink/kubelink/api/v1alpha1"
)

const linkYAML = `apiVersion: kubelink.mandelsoft.org/v1alpha1
kind: KubeLink
metadata:
  name: kubelink2
spec:
  cidr: 100.64.16.0/20
  clusterAddress: 192.168.0.12/24
status:
  state: %s
---
apiVersion: kubelink.mandelsoft.org/v1alpha1
kind: MeshService
metadata:
  name: ignored
  namespace: default
spec: {}
`

func TestDecodeKubeLinks(t *testing.T) {
	objs, err := DecodeKubeLinks([]byte(`{"apiVersion":"v1","kind":"List","items":[
		{"apiVersion":"kubelink.mandelsoft.org/v1alpha1","kind":"KubeLink","metadata":{"name":"a"},"spec":{"clusterAddress":"192.168.0.1/24"}},
		{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"b"}}]}`))
	if err != nil || len(objs) != 1 || objs[0].Name != "a" || objs[0].Spec.ClusterAddress != "192.168.0.1/24" {
		t.Fatalf("list: %v %v", objs, err)
	}
	if _, err := DecodeKubeLinks([]byte("kind: [")); err == nil {
		t.Error("bad YAML accepted")
	}
}

func TestDirWatch(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "links.yaml")
	write := func(state string) {
		t.Helper()
		data := []byte(fmtState(state))
		tmp := file + ".tmp"
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	write("Up")
	var mu sync.Mutex
	var got [][]*v1alpha1.KubeLink
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = (&Dir{Path: dir, Interval: 50 * time.Millisecond}).Run(ctx, func(s Snapshot) {
			mu.Lock()
			got = append(got, s.KubeLinks)
			mu.Unlock()
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	wait := func(n int, state string) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			ok := len(got) >= n && len(got[n-1]) == 1 && got[n-1][0].Status.State == state
			mu.Unlock()
			if ok {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("snapshot %d with state %s not seen within 2s (got %d snapshots)", n, state, len(got))
	}
	wait(1, "Up")
	time.Sleep(20 * time.Millisecond) // distinct mtime even on coarse clocks
	write("Down")
	wait(2, "Down")
	// A broken file keeps the last good snapshot.
	if err := os.WriteFile(file, []byte("kind: ["), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	n := len(got)
	mu.Unlock()
	if n != 2 {
		t.Errorf("broken file produced a snapshot")
	}
}

func fmtState(state string) string {
	return fmt.Sprintf(linkYAML, state)
}
