package router

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kubelink/kubelink/netd/vxlan"
)

func TestDatafileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "router.json")
	d := &Datafile{Path: path}
	r, err := d.Load()
	if err != nil || !r.Empty() {
		t.Fatalf("missing file: %+v %v", r, err)
	}
	rec := Record{
		Routes: []RouteRef{
			{Table: 254, Dst: netip.MustParsePrefix("192.168.0.0/24")},
			{Table: 100, Dst: netip.MustParsePrefix("100.64.2.0/24")},
			{Table: 254, Dst: netip.MustParsePrefix("100.64.2.0/24")},
			{Table: 254, Dst: netip.MustParsePrefix("192.168.0.0/24")}, // duplicate
		},
		Rules:   []RuleRef{{Table: 100, Priority: 1000}},
		Devices: []string{OwnedDevice},
	}
	if err := d.Save(rec); err != nil {
		t.Fatal(err)
	}
	if d.Writes() != 1 {
		t.Fatalf("writes %d", d.Writes())
	}
	// Unchanged content (in another order) is not written again.
	rec.Routes[0], rec.Routes[1] = rec.Routes[1], rec.Routes[0]
	if err := d.Save(rec); err != nil || d.Writes() != 1 {
		t.Fatalf("unchanged save wrote: %d %v", d.Writes(), err)
	}
	// No temporary files are left next to it.
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want only the datafile", len(entries))
	}
	got, err := (&Datafile{Path: path}).Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Routes) != 3 || got.Routes[0].Table != 100 || got.Routes[1].Dst.String() != "100.64.2.0/24" ||
		got.Rules[0] != (RuleRef{Table: 100, Priority: 1000}) || got.Devices[0] != OwnedDevice {
		t.Fatalf("loaded %+v", got)
	}
	if s := got.String(); !strings.Contains(s, "rule 1000 lookup 100") || !strings.Contains(s, "100.64.2.0/24 table 100") {
		t.Fatalf("String: %s", s)
	}
	// Clearing writes an empty record.
	if err := d.Save(Record{}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), `"routes": []`) {
		t.Fatalf("cleared datafile:\n%s", b)
	}
	if r, err := (&Datafile{Path: path}).Load(); err != nil || !r.Empty() {
		t.Fatalf("cleared: %+v %v", r, err)
	}
}

func TestDatafileInvalid(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"garbage": "{not json",
		"device":  `{"routes":[],"rules":[],"devices":["eth0"]}`,
		// The broker's decapsulating device is never the router's.
		"broker device": `{"routes":[],"rules":[],"devices":["kubelink-vxgw"]}`,
		"prefix":        `{"routes":[{"table":254,"dst":"300.1.2.0/24"}]}`,
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := (&Datafile{Path: p}).Load(); err == nil {
			t.Errorf("%s: loaded without error", name)
		}
	}
	// The router's own vxlan devices load.
	p := filepath.Join(dir, "vxlan")
	_ = os.WriteFile(p, []byte(`{"routes":[],"rules":[],"devices":["kubelink-vxdec","kubelink-vxlan"]}`), 0o644)
	if r, err := (&Datafile{Path: p}).Load(); err != nil || !slices.Equal(r.Devices, []string{vxlan.DecapDevice, vxlan.NodeDevice}) {
		t.Errorf("vxlan devices: %+v %v", r, err)
	}
	// An empty file (e.g. created by hand) is an empty record.
	p = filepath.Join(dir, "empty")
	_ = os.WriteFile(p, nil, 0o644)
	if r, err := (&Datafile{Path: p}).Load(); err != nil || !r.Empty() {
		t.Errorf("empty file: %+v %v", r, err)
	}
	// Without a path nothing is written.
	d := &Datafile{}
	if err := d.Save(Record{Devices: []string{OwnedDevice}}); err != nil || d.Writes() != 0 {
		t.Errorf("no path: %d %v", d.Writes(), err)
	}
}
