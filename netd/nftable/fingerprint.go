package nftable

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"math"
	"reflect"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
)

// fingerprint digests everything Apply would send for chains, so equal
// fingerprints mean an equal table. It runs on every reconcile, also when
// nothing changed, so it must stay cheap at mesh scale (tens of thousands
// of expressions and set elements): the expression types netd uses are
// encoded field by field, anything else generically by reflection. Every
// value is length- or type-prefixed, so different inputs cannot run
// together into the same byte stream.
func fingerprint(chains []Chain) [sha256.Size]byte {
	return combine(chainFingerprints(chains))
}

// chainPrint is the fingerprint of one chain: of its head (name, type,
// hook, priority), and of all of it.
type chainPrint struct{ head, all [sha256.Size]byte }

func chainFingerprints(chains []Chain) []chainPrint {
	out := make([]chainPrint, len(chains))
	e := &encoder{h: sha256.New(), buf: make([]byte, 0, 64<<10)}
	for i := range chains {
		e.h.Reset()
		e.head(&chains[i])
		e.flush()
		e.h.Sum(out[i].head[:0])
		e.h.Reset()
		e.chain(&chains[i])
		e.flush()
		e.h.Sum(out[i].all[:0])
	}
	return out
}

// combine is the fingerprint of the table from those of its chains.
func combine(fps []chainPrint) [sha256.Size]byte {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(fps)))
	h.Write(n[:]) //nolint:errcheck // hash writes never fail
	for i := range fps {
		h.Write(fps[i].all[:]) //nolint:errcheck // hash writes never fail
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// encoder batches small writes into buf before they reach the hash.
type encoder struct {
	h   hash.Hash
	buf []byte
}

func (e *encoder) flush() {
	e.h.Write(e.buf) //nolint:errcheck // hash writes never fail
	e.buf = e.buf[:0]
}

func (e *encoder) grow() {
	if len(e.buf) > cap(e.buf)-256 {
		e.flush()
	}
}

func (e *encoder) uint(v uint64) {
	e.grow()
	e.buf = binary.AppendUvarint(e.buf, v)
}

// uints encodes a run of integer fields, the bulk of an expression.
func (e *encoder) uints(vs ...uint64) {
	for _, v := range vs {
		e.uint(v)
	}
}

func (e *encoder) bool(b bool) {
	if b {
		e.uint(1)
	} else {
		e.uint(0)
	}
}

func (e *encoder) bytes(b []byte) {
	e.uint(uint64(len(b)))
	if len(b) > 256 {
		e.flush()
		e.h.Write(b) //nolint:errcheck // hash writes never fail
		return
	}
	e.buf = append(e.buf, b...)
}

// bools encodes a run of flag fields.
func (e *encoder) bools(bs ...bool) {
	for _, b := range bs {
		e.bool(b)
	}
}

func (e *encoder) string(s string) {
	e.uint(uint64(len(s)))
	if len(s) > 256 {
		e.flush()
		e.h.Write([]byte(s)) //nolint:errcheck // hash writes never fail
		return
	}
	e.buf = append(e.buf, s...)
}

func (e *encoder) head(ch *Chain) {
	e.string(ch.Name)
	e.string(string(ch.Type))
	e.bool(ch.Hook != nil)
	if ch.Hook != nil {
		e.uint(uint64(*ch.Hook))
	}
	e.bool(ch.Priority != nil)
	if ch.Priority != nil {
		e.uint(uint64(uint32(*ch.Priority)))
	}
}

// chain encodes all of a chain; it starts with its head, as head encodes
// it alone.
func (e *encoder) chain(ch *Chain) {
	e.head(ch)
	e.uint(uint64(len(ch.Sets)))
	for i := range ch.Sets {
		e.set(&ch.Sets[i])
	}
	e.uint(uint64(len(ch.Rules)))
	for i := range ch.Rules {
		r := &ch.Rules[i]
		e.string(r.Comment)
		e.uint(uint64(len(r.Exprs)))
		for _, x := range r.Exprs {
			e.expr(x)
		}
	}
}

func (e *encoder) datatype(t nftables.SetDatatype) {
	e.string(t.Name)
	e.uint(uint64(t.Bytes))
	e.uint(uint64(t.GetNFTMagic()))
}

func (e *encoder) set(s *Set) {
	e.string(s.Name)
	e.bool(s.Anonymous)
	e.bool(s.Interval)
	e.bool(s.IsMap)
	e.bool(s.Concatenation)
	e.datatype(s.KeyType)
	e.datatype(s.DataType)
	switch s.KeyByteOrder {
	case nil:
		e.uint(0)
	case binaryutil.NativeEndian:
		e.uint(1)
	case binaryutil.BigEndian:
		e.uint(2)
	default:
		e.uint(3)
		e.string(fmt.Sprintf("%T", s.KeyByteOrder))
	}
	e.uint(uint64(len(s.Elements)))
	for i := range s.Elements {
		el := &s.Elements[i]
		e.bytes(el.Key)
		e.bytes(el.Val)
		e.bytes(el.KeyEnd)
		e.bool(el.IntervalEnd)
		e.bool(el.VerdictData != nil)
		if el.VerdictData != nil {
			e.uint(uint64(uint32(el.VerdictData.Kind)))
			e.string(el.VerdictData.Chain)
		}
		e.uint(uint64(el.Timeout))
		e.uint(uint64(el.Expires))
		e.bool(el.Counter != nil)
		if el.Counter != nil {
			e.uint(el.Counter.Bytes)
			e.uint(el.Counter.Packets)
		}
		e.string(el.Comment)
	}
}

// Expression kinds of the fast path; each starts with its own tag.
const (
	tagOther = iota
	tagNil
	tagPayload
	tagCmp
	tagMeta
	tagImmediate
	tagLookup
	tagNumgen
	tagVerdict
	tagBitwise
	tagCt
	tagMasq
	tagNAT
	tagExthdr
	tagRt
	tagByteorder
	tagCounter
)

func (e *encoder) expr(x expr.Any) {
	switch v := x.(type) {
	case nil:
		e.uint(tagNil)
	case *expr.Payload:
		e.uints(tagPayload, uint64(v.OperationType), uint64(v.DestRegister), uint64(v.SourceRegister),
			uint64(v.Base), uint64(v.Offset), uint64(v.Len), uint64(v.CsumType), uint64(v.CsumOffset), uint64(v.CsumFlags))
	case *expr.Cmp:
		e.uints(tagCmp, uint64(v.Op), uint64(v.Register))
		e.bytes(v.Data)
	case *expr.Meta:
		e.uints(tagMeta, uint64(v.Key))
		e.bool(v.SourceRegister)
		e.uint(uint64(v.Register))
	case *expr.Immediate:
		e.uints(tagImmediate, uint64(v.Register))
		e.bytes(v.Data)
	case *expr.Lookup:
		e.uints(tagLookup, uint64(v.SourceRegister), uint64(v.DestRegister))
		e.bool(v.IsDestRegSet)
		e.uint(uint64(v.SetID))
		e.string(v.SetName)
		e.bool(v.Invert)
	case *expr.Numgen:
		e.uints(tagNumgen, uint64(v.Register), uint64(v.Modulus), uint64(v.Type), uint64(v.Offset))
	case *expr.Verdict:
		e.uints(tagVerdict, uint64(uint32(v.Kind)))
		e.string(v.Chain)
	case *expr.Bitwise:
		e.uints(tagBitwise, uint64(v.SourceRegister), uint64(v.DestRegister), uint64(v.Len))
		e.bytes(v.Mask)
		e.bytes(v.Xor)
	case *expr.Ct:
		e.uints(tagCt, uint64(v.Register))
		e.bool(v.SourceRegister)
		e.uints(uint64(v.Key), uint64(v.Direction))
	case *expr.Masq:
		e.uint(tagMasq)
		e.bools(v.Random, v.FullyRandom, v.Persistent, v.ToPorts)
		e.uints(uint64(v.RegProtoMin), uint64(v.RegProtoMax))
	case *expr.NAT:
		e.uints(tagNAT, uint64(v.Type), uint64(v.Family),
			uint64(v.RegAddrMin), uint64(v.RegAddrMax), uint64(v.RegProtoMin), uint64(v.RegProtoMax))
		e.bools(v.Random, v.FullyRandom, v.Persistent, v.Prefix, v.Specified)
	case *expr.Exthdr:
		e.uints(tagExthdr, uint64(v.DestRegister), uint64(v.Type), uint64(v.Offset), uint64(v.Len),
			uint64(v.Flags), uint64(v.Op), uint64(v.SourceRegister))
	case *expr.Rt:
		e.uints(tagRt, uint64(v.Register), uint64(v.Key))
	case *expr.Byteorder:
		e.uints(tagByteorder, uint64(v.SourceRegister), uint64(v.DestRegister), uint64(v.Op), uint64(v.Len), uint64(v.Size))
	case *expr.Counter:
		e.uints(tagCounter, v.Bytes, v.Packets)
	default:
		// Types netd does not use today: their type name and every
		// field, whatever they are.
		e.uint(tagOther)
		e.string(reflect.TypeOf(x).String())
		e.value(reflect.ValueOf(x))
	}
}

// value encodes any value generically (the slow path).
func (e *encoder) value(v reflect.Value) {
	switch v.Kind() {
	case reflect.Invalid:
		e.uint(0)
	case reflect.Bool:
		e.bool(v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		e.uint(uint64(v.Int()))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		e.uint(v.Uint())
	case reflect.Float32, reflect.Float64:
		e.uint(math.Float64bits(v.Float()))
	case reflect.String:
		e.string(v.String())
	case reflect.Pointer, reflect.Interface:
		e.bool(v.IsNil())
		if !v.IsNil() {
			if v.Kind() == reflect.Interface {
				e.string(v.Elem().Type().String())
			}
			e.value(v.Elem())
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 && v.Kind() == reflect.Slice {
			e.bytes(v.Bytes())
			return
		}
		e.uint(uint64(v.Len()))
		for i := 0; i < v.Len(); i++ {
			e.value(v.Index(i))
		}
	case reflect.Struct:
		// Unexported fields too: reflect reads them, and they are part
		// of what the library sends.
		e.uint(uint64(v.NumField()))
		for i := 0; i < v.NumField(); i++ {
			e.value(v.Field(i))
		}
	default:
		// Maps, channels and functions have no place in an expression;
		// their kind at least keeps the encoding unambiguous.
		e.string(v.Kind().String())
	}
}
