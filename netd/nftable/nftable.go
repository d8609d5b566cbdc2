// Package nftable owns netd's nftables table. Every packet rule netd needs
// (SNAT, MeshService DNAT, the per-link firewall, MSS clamping) is a chain
// in this one table, and every change is one netlink transaction: the
// kernel never sees half a ruleset, and a reconcile whose rules did not
// change sends nothing to the kernel. When only the contents of some
// chains changed (the usual case: a link or a MeshService came, went or
// moved), the transaction flushes and refills just those chains and
// replaces their sets; otherwise (first apply, after a restart, chains
// added, removed or re-hooked, or a refill the kernel refused) it replaces
// the whole table, so stale rules cannot survive. Nothing outside the
// table is touched.
//
// Layout (family ip, one table per tunnel device, "kubelink" by default):
// a contributor returns Chains; chain names are prefixed by their concern,
// e.g. "snat-postrouting" (nat, postrouting, srcnat-10: before a CNI's
// masquerade), "dnat-prerouting", "filter-forward", "mss-forward". The
// priorities are listed in netd/README.md.
package nftable

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// TableName is the default name of netd's table.
const TableName = "kubelink"

// Chain is one chain of the table; base chains have a Hook.
type Chain struct {
	Name     string
	Type     nftables.ChainType
	Hook     *nftables.ChainHook
	Priority *nftables.ChainPriority
	Rules    []Rule
	// Sets are constant sets and maps the chain's rules look up by name
	// (expr.Lookup.SetName); names are table-wide, so prefix them with the
	// concern. They are created before the chain's rules.
	Sets []Set
}

// Set is a constant named set (or map, with IsMap and DataType) of the table.
type Set struct {
	// Name identifies the set within the table; an Anonymous set is
	// named by the kernel and shown inline by nft, Name only links it to
	// the lookups in the same transaction.
	Name      string
	Anonymous bool
	// Interval keys are ranges: each range is an element at its start and
	// one flagged IntervalEnd after its end.
	Interval bool
	IsMap    bool
	// Concatenation: the key is a concatenation of types
	// (nftables.ConcatSetType), e.g. address . protocol . port.
	Concatenation bool
	KeyType       nftables.SetDatatype
	DataType      nftables.SetDatatype
	// KeyByteOrder tells nft how to show integer keys.
	KeyByteOrder binaryutil.ByteOrder
	Elements     []nftables.SetElement
}

// Rule is a list of expressions with a comment saying what it is for.
type Rule struct {
	Comment string
	Exprs   []expr.Any
}

// Table applies desired chains to the kernel.
type Table struct {
	// Name is the table's name (default TableName). Broker instances side
	// by side in one namespace name it after their device.
	Name string
	// Conn dials the netlink connection (default nftables.New()).
	Conn func() (*nftables.Conn, error)

	mu sync.Mutex
	// last is the fingerprint of what was last applied; loaded its
	// chains (nil: unknown, the next change replaces the whole table).
	last   [sha256.Size]byte
	loaded []loadedChain
	writes int
}

// Writes counts the transactions sent to the kernel.
func (t *Table) Writes() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.writes
}

// Apply replaces the table with these chains, unless they equal what was
// last applied. With no chains the table is removed.
func (t *Table) Apply(chains []Chain) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fps := chainFingerprints(chains)
	fp := combine(fps)
	if fp == t.last {
		return false, nil
	}
	dial := t.Conn
	if dial == nil {
		dial = func() (*nftables.Conn, error) { return nftables.New(nftables.WithSockOptions(largeBuffers)) }
	}
	tbl := &nftables.Table{Name: t.name(), Family: nftables.TableFamilyIPv4}
	if changed, ok := t.changedChains(chains, fps); ok {
		c, err := dial()
		if err != nil {
			return false, fmt.Errorf("opening nftables connection: %w", err)
		}
		loaded, err := refill(c, tbl, chains, fps, t.loaded, changed)
		if err != nil {
			return false, err
		}
		t.writes++
		if err := c.Flush(); err == nil {
			t.last, t.loaded = fp, loaded
			return true, nil
		}
		// The kernel's table is not what we think (changed behind our
		// back): replace all of it below.
		t.loaded = nil
	}
	c, err := dial()
	if err != nil {
		return false, fmt.Errorf("opening nftables connection: %w", err)
	}
	// Adding first makes the delete valid when the table does not exist
	// yet; all of it is one transaction.
	c.AddTable(tbl)
	c.DelTable(tbl)
	var loaded []loadedChain
	if len(chains) > 0 {
		c.AddTable(tbl)
		all := make([]int, len(chains))
		for i := range chains {
			all[i] = i
			c.AddChain(&nftables.Chain{Name: chains[i].Name, Table: tbl, Type: chains[i].Type, Hooknum: chains[i].Hook, Priority: chains[i].Priority})
		}
		if loaded, err = fill(c, tbl, chains, fps, make([]loadedChain, len(chains)), all); err != nil {
			return false, err
		}
	}
	t.writes++
	t.loaded = nil
	if err := c.Flush(); err != nil {
		return false, fmt.Errorf("replacing nftables table %s: %w", t.name(), err)
	}
	t.last, t.loaded = fp, loaded
	return true, nil
}

// loadedChain is what the last successful Apply left of one chain in the
// kernel.
type loadedChain struct {
	name string
	head [sha256.Size]byte
	fp   [sha256.Size]byte
	// sets are the names of the chain's sets (ours); named those the
	// kernel holds by that name (not anonymous), which a refill deletes.
	sets, named []string
}

// changedChains returns the indexes of the chains whose rules or sets
// changed when nothing else did: the same chains (names, types, hooks,
// priorities) in the same order as loaded, and no unchanged chain looking
// up a set of a changed one. Only then can a transaction replace just
// those chains' contents; ok is false when the whole table must be
// replaced. At mesh scale this is what keeps one changed link from
// reloading every MeshService: a table of 10,000 forwards takes ~200 ms to
// replace, its one changed chain a fraction of that.
func (t *Table) changedChains(chains []Chain, fps []chainPrint) ([]int, bool) {
	if t.loaded == nil || len(chains) == 0 || len(chains) != len(t.loaded) {
		return nil, false
	}
	var changed []int
	sets := map[string]bool{}
	for i := range chains {
		l := &t.loaded[i]
		if l.name != chains[i].Name || l.head != fps[i].head {
			return nil, false
		}
		if l.fp == fps[i].all {
			continue
		}
		changed = append(changed, i)
		for _, n := range l.sets {
			sets[n] = true
		}
		for _, st := range chains[i].Sets {
			sets[st.Name] = true
		}
	}
	for i := range chains {
		if t.loaded[i].fp != fps[i].all {
			continue
		}
		for _, r := range chains[i].Rules {
			for _, e := range r.Exprs {
				if l, ok := e.(*expr.Lookup); ok && sets[l.SetName] {
					return nil, false
				}
			}
		}
	}
	return changed, true
}

// refill queues the replacement of the changed chains' contents: their
// rules are flushed (which frees their anonymous sets), their named sets
// deleted, then sets and rules added anew, all in the connection's one
// transaction. Chains stay, so jumps to them stay valid.
func refill(c *nftables.Conn, tbl *nftables.Table, chains []Chain, fps []chainPrint, old []loadedChain, changed []int) ([]loadedChain, error) {
	for _, i := range changed {
		c.FlushChain(&nftables.Chain{Name: chains[i].Name, Table: tbl})
	}
	for _, i := range changed {
		for _, n := range old[i].named {
			c.DelSet(&nftables.Set{Table: tbl, Name: n})
		}
	}
	return fill(c, tbl, chains, fps, append([]loadedChain(nil), old...), changed)
}

// fill queues the sets and rules of the chains at the given indexes (the
// chains exist by then) and records them in loaded. Sets come first, as
// rules look them up.
func fill(c *nftables.Conn, tbl *nftables.Table, chains []Chain, fps []chainPrint, loaded []loadedChain, which []int) ([]loadedChain, error) {
	ids := map[string]setRef{}
	for _, i := range which {
		ch := &chains[i]
		l := loadedChain{name: ch.Name, head: fps[i].head, fp: fps[i].all}
		for _, st := range ch.Sets {
			chunks := chunkElements(st.Elements)
			// Only the first chunk can go with an anonymous set, so a
			// larger one becomes a named constant set: the same lookup,
			// listed by name instead of inline.
			anon := st.Anonymous && len(chunks) <= 1
			if st.Anonymous && !anon && st.Interval {
				chunks = chunkElements(explicitEnds(st.Elements))
			}
			ns := &nftables.Set{Table: tbl, Name: st.Name, Anonymous: anon, Constant: true, Interval: st.Interval, IsMap: st.IsMap,
				Concatenation: st.Concatenation, KeyType: st.KeyType, DataType: st.DataType, KeyByteOrder: st.KeyByteOrder}
			if len(chunks) > 1 {
				// The library sizes a constant set by the elements it is
				// created with; the kernel refuses more.
				ns.Size = uint32(len(st.Elements))
			}
			if err := c.AddSet(ns, chunks[0]); err != nil {
				return nil, fmt.Errorf("nftables set %s: %w", st.Name, err)
			}
			for _, more := range chunks[1:] {
				if err := c.SetAddElements(ns, more); err != nil {
					return nil, fmt.Errorf("nftables set %s: %w", st.Name, err)
				}
			}
			ids[st.Name] = setRef{ns.Name, ns.ID}
			l.sets = append(l.sets, st.Name)
			if !anon {
				l.named = append(l.named, st.Name)
			}
		}
		loaded[i] = l
	}
	for _, i := range which {
		nc := &nftables.Chain{Name: chains[i].Name, Table: tbl}
		for _, r := range chains[i].Rules {
			nr := &nftables.Rule{Table: tbl, Chain: nc, Exprs: withSetIDs(r.Exprs, ids)}
			if r.Comment != "" {
				nr.UserData = userComment(r.Comment)
			}
			c.AddRule(nr)
		}
	}
	return loaded, nil
}

// maxElementBytes bounds the encoded elements of one set element message.
// They are one netlink attribute, whose length field has 16 bits: the
// library does not split them, and beyond 64 KiB the length wraps and the
// kernel parses garbage (ENOENT, or silently fewer elements). nft splits
// the same way.
const maxElementBytes = 48 << 10

// chunkElements splits elements into chunks whose encoding stays below
// maxElementBytes; there is always at least one (maybe empty) chunk.
func chunkElements(els []nftables.SetElement) [][]nftables.SetElement {
	var out [][]nftables.SetElement
	start, size := 0, 0
	for i := range els {
		n := elementBytes(&els[i])
		if i > start && size+n > maxElementBytes {
			out = append(out, els[start:i])
			start, size = i, 0
		}
		size += n
	}
	return append(out, els[start:])
}

// explicitEnds gives every range of an interval set its end element. An
// anonymous set may leave it out where the next range begins (the kernel
// accepts two starts in a row only in anonymous sets, which are constant);
// a named set needs it, at the next start's key: the kernel keeps an end
// and a start with the same key apart. Elements must be sorted by key, as
// interval sets are built.
func explicitEnds(els []nftables.SetElement) []nftables.SetElement {
	out := make([]nftables.SetElement, 0, len(els)+len(els)/2)
	for i, e := range els {
		out = append(out, e)
		if e.IntervalEnd || i+1 == len(els) {
			continue
		}
		if next := els[i+1]; !next.IntervalEnd && bytes.Compare(next.Key, e.Key) > 0 {
			out = append(out, nftables.SetElement{Key: next.Key, IntervalEnd: true})
		}
	}
	return out
}

// elementBytes is an upper bound of one element's encoding: attribute
// headers (4 bytes each, nested ones for key, value, verdict and the
// element itself) and the payloads padded to 4 bytes.
func elementBytes(e *nftables.SetElement) int {
	pad := func(n int) int { return (n + 3) &^ 3 }
	n := 64 + pad(len(e.Key)) + pad(len(e.Val)) + pad(len(e.KeyEnd)) + pad(len(e.Comment)+3)
	if e.VerdictData != nil {
		n += 32 + pad(len(e.VerdictData.Chain)+1)
	}
	return n
}

// IfName is an interface name as nftables compares it (meta iifname and
// oifname load 16 bytes, zero padded).
func IfName(n string) []byte {
	b := make([]byte, 16)
	copy(b, n)
	return b
}

func (t *Table) name() string {
	if t.Name == "" {
		return TableName
	}
	return t.Name
}

// largeBuffers lets one transaction carry a whole table: the batch goes
// out in a single sendmsg, which fails with EMSGSIZE beyond the socket's
// send buffer (a few thousand rules at mesh scale). Forcing the size needs
// CAP_NET_ADMIN, which netd has; without it the regular limit applies.
func largeBuffers(c *netlink.Conn) error {
	const size = 32 << 20
	raw, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		for _, opt := range [][2]int{{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}, {unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}} {
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt[0], size) != nil {
				if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt[1], size); err != nil {
					serr = err
				}
			}
		}
	}); err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("netlink socket buffers: %w", serr)
	}
	return nil
}

type setRef struct {
	name string
	id   uint32
}

// withSetIDs points lookups at the sets of this transaction: a new set is
// found by its transaction ID (and an anonymous one by the name the library
// gave it), not by our name.
func withSetIDs(exprs []expr.Any, ids map[string]setRef) []expr.Any {
	out := make([]expr.Any, len(exprs))
	for i, e := range exprs {
		if l, ok := e.(*expr.Lookup); ok && l.SetName != "" {
			if ref, ok := ids[l.SetName]; ok {
				c := *l
				c.SetName, c.SetID = ref.name, ref.id
				e = &c
			}
		}
		out[i] = e
	}
	return out
}

// userComment encodes a rule comment the way the nft tool shows it.
func userComment(s string) []byte {
	if len(s) > 127 {
		s = s[:127]
	}
	b := append([]byte{0, byte(len(s) + 1)}, s...)
	return append(b, 0)
}
