package nftable

import (
	"reflect"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
)

// poke sets field i of the struct v points to a non-zero value; false
// when the field's kind is not one the test knows.
func poke(v reflect.Value, i int) bool {
	f := v.Elem().Field(i)
	switch f.Kind() {
	case reflect.Bool:
		f.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		f.SetInt(1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		f.SetUint(1)
	case reflect.String:
		f.SetString("x")
	case reflect.Slice:
		if f.Type().Elem().Kind() != reflect.Uint8 {
			return false
		}
		f.SetBytes([]byte{1})
	case reflect.Pointer:
		f.Set(reflect.New(f.Type().Elem()))
	default:
		return false
	}
	return true
}

// Every field of every expression type on the fast path must reach the
// fingerprint: a field the encoder forgets would let a changed rule pass
// as unchanged (no write). A library upgrade that adds a field fails here.
func TestFingerprintCoversEveryExprField(t *testing.T) {
	for _, x := range []expr.Any{
		&expr.Payload{}, &expr.Cmp{}, &expr.Meta{}, &expr.Immediate{}, &expr.Lookup{}, &expr.Numgen{},
		&expr.Verdict{}, &expr.Bitwise{}, &expr.Ct{}, &expr.Masq{}, &expr.NAT{}, &expr.Exthdr{},
		&expr.Rt{}, &expr.Byteorder{}, &expr.Counter{},
		&expr.Log{}, // not on the fast path: the generic encoder
	} {
		typ := reflect.TypeOf(x).Elem()
		fp := func(x expr.Any) [32]byte {
			return fingerprint([]Chain{{Name: "c", Rules: []Rule{{Exprs: []expr.Any{x}}}}})
		}
		zero := fp(x)
		for i := 0; i < typ.NumField(); i++ {
			if !typ.Field(i).IsExported() {
				t.Errorf("%s.%s is unexported: the fast path cannot see it", typ, typ.Field(i).Name)
				continue
			}
			v := reflect.New(typ)
			if !poke(v, i) {
				t.Errorf("%s.%s: field kind %s unknown to the test", typ, typ.Field(i).Name, typ.Field(i).Type.Kind())
				continue
			}
			if fp(v.Interface().(expr.Any)) == zero {
				t.Errorf("%s.%s does not change the fingerprint", typ, typ.Field(i).Name)
			}
		}
	}
}

func TestFingerprintCoversSets(t *testing.T) {
	fp := func(s Set) [32]byte { return fingerprint([]Chain{{Name: "c", Sets: []Set{s}}}) }
	el := reflect.TypeOf(nftables.SetElement{})
	zero := fp(Set{Elements: []nftables.SetElement{{}}})
	for i := 0; i < el.NumField(); i++ {
		v := reflect.New(el)
		if !poke(v, i) {
			t.Errorf("SetElement.%s: field kind unknown to the test", el.Field(i).Name)
			continue
		}
		if fp(Set{Elements: []nftables.SetElement{v.Elem().Interface().(nftables.SetElement)}}) == zero {
			t.Errorf("SetElement.%s does not change the fingerprint", el.Field(i).Name)
		}
	}
	st := reflect.TypeOf(Set{})
	zero = fp(Set{})
	for i := 0; i < st.NumField(); i++ {
		v := reflect.New(st)
		switch st.Field(i).Name {
		case "KeyType", "DataType":
			v.Elem().Field(i).Set(reflect.ValueOf(nftables.TypeIPAddr))
		case "KeyByteOrder":
			v.Elem().Field(i).Set(reflect.ValueOf(binaryutil.BigEndian))
		case "Elements":
			v.Elem().Field(i).Set(reflect.ValueOf([]nftables.SetElement{{}}))
		default:
			if !poke(v, i) {
				t.Errorf("Set.%s: field kind unknown to the test", st.Field(i).Name)
				continue
			}
		}
		if fp(v.Elem().Interface().(Set)) == zero {
			t.Errorf("Set.%s does not change the fingerprint", st.Field(i).Name)
		}
	}
	if fp(Set{KeyByteOrder: binaryutil.BigEndian}) == fp(Set{KeyByteOrder: binaryutil.NativeEndian}) {
		t.Errorf("key byte order does not change the fingerprint")
	}
}

func TestFingerprintChains(t *testing.T) {
	hook, prio := nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest
	base := func() []Chain {
		return []Chain{{Name: "a", Type: nftables.ChainTypeNAT, Hook: hook, Priority: prio,
			Rules: []Rule{{Comment: "r", Exprs: []expr.Any{&expr.Cmp{Data: []byte{1, 2}}, &expr.Verdict{Kind: expr.VerdictAccept}}}}}}
	}
	want := fingerprint(base())
	if fingerprint(base()) != want {
		t.Fatalf("not deterministic")
	}
	for name, change := range map[string]func(c []Chain) []Chain{
		"name":     func(c []Chain) []Chain { c[0].Name = "b"; return c },
		"type":     func(c []Chain) []Chain { c[0].Type = nftables.ChainTypeFilter; return c },
		"hook":     func(c []Chain) []Chain { c[0].Hook = nil; return c },
		"priority": func(c []Chain) []Chain { c[0].Priority = nftables.ChainPriorityFilter; return c },
		"comment":  func(c []Chain) []Chain { c[0].Rules[0].Comment = "s"; return c },
		"data":     func(c []Chain) []Chain { c[0].Rules[0].Exprs[0] = &expr.Cmp{Data: []byte{1, 3}}; return c },
		// Bytes moving between adjacent values must not look the same.
		"boundary": func(c []Chain) []Chain {
			c[0].Rules[0].Exprs[0] = &expr.Cmp{Data: []byte{1}}
			c[0].Rules[0].Comment = "r\x02"
			return c
		},
		"rule order": func(c []Chain) []Chain {
			c[0].Rules = append(c[0].Rules, Rule{Comment: "r2"})
			c[0].Rules[0], c[0].Rules[1] = c[0].Rules[1], c[0].Rules[0]
			return c
		},
		"empty rule": func(c []Chain) []Chain { c[0].Rules = append(c[0].Rules, Rule{}); return c },
		"no chains":  func([]Chain) []Chain { return nil },
	} {
		if fingerprint(change(base())) == want {
			t.Errorf("%s: fingerprint unchanged", name)
		}
	}
	if fingerprint(nil) == ([32]byte{}) {
		t.Errorf("the fingerprint of no chains is the zero value: a new Table would skip removing the table")
	}
}
