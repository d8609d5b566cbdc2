// Package nftable owns netd's nftables table. Every packet rule netd needs
// (SNAT, MeshService DNAT, the per-link firewall, MSS clamping) is a chain in this one table, and the table is replaced as a whole in a
// single netlink transaction: the kernel never sees half a ruleset, stale
// rules cannot survive, and a reconcile whose rules did not change sends
// nothing to the kernel. Nothing outside the table is touched.
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
	// last is the fingerprint of what was last applied.
	last   [sha256.Size]byte
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
	fp := fingerprint(chains)
	if fp == t.last {
		return false, nil
	}
	dial := t.Conn
	if dial == nil {
		dial = func() (*nftables.Conn, error) { return nftables.New(nftables.WithSockOptions(largeBuffers)) }
	}
	c, err := dial()
	if err != nil {
		return false, fmt.Errorf("opening nftables connection: %w", err)
	}
	tbl := &nftables.Table{Name: t.name(), Family: nftables.TableFamilyIPv4}
	// Adding first makes the delete valid when the table does not exist
	// yet; all of it is one transaction.
	c.AddTable(tbl)
	c.DelTable(tbl)
	if len(chains) > 0 {
		c.AddTable(tbl)
		// Chains first: verdict maps may jump to them. Then sets, which
		// rules look up. Then the rules.
		ncs := make([]*nftables.Chain, len(chains))
		for i, ch := range chains {
			ncs[i] = c.AddChain(&nftables.Chain{Name: ch.Name, Table: tbl, Type: ch.Type, Hooknum: ch.Hook, Priority: ch.Priority})
		}
		ids := map[string]setRef{}
		for _, ch := range chains {
			for _, st := range ch.Sets {
				chunks := chunkElements(st.Elements)
				// Only the first chunk can go with an anonymous set, so
				// a larger one becomes a named constant set: the same
				// lookup, listed by name instead of inline.
				anon := st.Anonymous && len(chunks) <= 1
				if st.Anonymous && !anon && st.Interval {
					chunks = chunkElements(explicitEnds(st.Elements))
				}
				ns := &nftables.Set{Table: tbl, Name: st.Name, Anonymous: anon, Constant: true, Interval: st.Interval, IsMap: st.IsMap,
					Concatenation: st.Concatenation, KeyType: st.KeyType, DataType: st.DataType, KeyByteOrder: st.KeyByteOrder}
				if len(chunks) > 1 {
					// The library sizes a constant set by the elements
					// it is created with; the kernel refuses more.
					ns.Size = uint32(len(st.Elements))
				}
				if err := c.AddSet(ns, chunks[0]); err != nil {
					return false, fmt.Errorf("nftables set %s: %w", st.Name, err)
				}
				for _, more := range chunks[1:] {
					if err := c.SetAddElements(ns, more); err != nil {
						return false, fmt.Errorf("nftables set %s: %w", st.Name, err)
					}
				}
				ids[st.Name] = setRef{ns.Name, ns.ID}
			}
		}
		for i, ch := range chains {
			for _, r := range ch.Rules {
				nr := &nftables.Rule{Table: tbl, Chain: ncs[i], Exprs: withSetIDs(r.Exprs, ids)}
				if r.Comment != "" {
					nr.UserData = userComment(r.Comment)
				}
				c.AddRule(nr)
			}
		}
	}
	t.writes++
	if err := c.Flush(); err != nil {
		return false, fmt.Errorf("replacing nftables table %s: %w", t.name(), err)
	}
	t.last = fp
	return true, nil
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
