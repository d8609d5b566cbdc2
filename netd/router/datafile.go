package router

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/kubelink/kubelink/netd/routes"
	"github.com/kubelink/kubelink/netd/vxlan"
)

// Record is what the router has created in the kernel: every route (table
// and destination), the rule and an owned device (ipip, vxlan or vxlan
// decapsulation). It is kept in the datafile so that a restarted router —
// after a crash, or with another --route-table, --ipip or --vxlan — finds
// and removes what it no longer wants.
type Record struct {
	Routes  []RouteRef `json:"routes"`
	Rules   []RuleRef  `json:"rules"`
	Devices []string   `json:"devices"`
}

// RouteRef names one route of the router (the shared manager's type).
type RouteRef = routes.RouteRef

// RuleRef names one rule of the router (the shared manager's type).
type RuleRef = routes.RuleRef

// Empty reports whether nothing is recorded.
func (r *Record) Empty() bool {
	return len(r.Routes) == 0 && len(r.Rules) == 0 && len(r.Devices) == 0
}

// normalize sorts and deduplicates, so equal contents encode equally.
func (r *Record) normalize() {
	slices.SortFunc(r.Routes, func(a, b RouteRef) int {
		if a.Table != b.Table {
			return a.Table - b.Table
		}
		return compareByAddrShorterFirst(a.Dst, b.Dst)
	})
	r.Routes = slices.Compact(r.Routes)
	slices.SortFunc(r.Rules, func(a, b RuleRef) int {
		if a.Table != b.Table {
			return a.Table - b.Table
		}
		return a.Priority - b.Priority
	})
	r.Rules = slices.Compact(r.Rules)
	slices.Sort(r.Devices)
	r.Devices = slices.Compact(r.Devices)
}

func (r *Record) encode() []byte {
	c := Record{Routes: slices.Clone(r.Routes), Rules: slices.Clone(r.Rules), Devices: slices.Clone(r.Devices)}
	c.normalize()
	if c.Routes == nil {
		c.Routes = []RouteRef{}
	}
	if c.Rules == nil {
		c.Rules = []RuleRef{}
	}
	if c.Devices == nil {
		c.Devices = []string{}
	}
	b, _ := json.MarshalIndent(c, "", "  ") // plain data: cannot fail
	return append(b, '\n')
}

// Datafile keeps a Record in a file, rewritten atomically (temporary file
// + rename) only when the record changes. An empty path keeps it in memory.
type Datafile struct {
	Path string
	// last is the encoding on disk.
	last   []byte
	writes atomic.Int64
}

// Load reads the record; a missing file is an empty record.
func (d *Datafile) Load() (Record, error) {
	var r Record
	if d.Path == "" {
		return r, nil
	}
	b, err := os.ReadFile(d.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("reading datafile: %w", err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return r, nil
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, fmt.Errorf("parsing datafile %s: %w", d.Path, err)
	}
	for _, dev := range r.Devices {
		// Only ever a device the router names itself.
		if dev != OwnedDevice && dev != vxlan.NodeDevice && dev != vxlan.DecapDevice {
			return Record{}, fmt.Errorf("datafile %s records device %q, which the router never creates", d.Path, dev)
		}
	}
	r.normalize()
	d.last = r.encode()
	return r, nil
}

// Save writes the record when it differs from what is on disk.
func (d *Datafile) Save(r Record) error {
	if d.Path == "" {
		return nil
	}
	b := r.encode()
	if bytes.Equal(b, d.last) {
		return nil
	}
	dir := filepath.Dir(d.Path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating datafile directory: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(d.Path)+".*")
	if err != nil {
		return fmt.Errorf("writing datafile: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		// Durable before the rename: the record must never claim less
		// than the kernel holds after a power loss.
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, d.Path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("writing datafile %s: %w", d.Path, err)
	}
	d.last = b
	d.writes.Add(1)
	return nil
}

// Writes counts the file writes since start.
func (d *Datafile) Writes() int64 { return d.writes.Load() }

// String is the record in a short form for logs.
func (r Record) String() string {
	var parts []string
	for _, rt := range r.Routes {
		parts = append(parts, fmt.Sprintf("%s table %d", rt.Dst, rt.Table))
	}
	for _, ru := range r.Rules {
		parts = append(parts, fmt.Sprintf("rule %d lookup %d", ru.Priority, ru.Table))
	}
	for _, dev := range r.Devices {
		parts = append(parts, "device "+dev)
	}
	return strings.Join(parts, ", ")
}
