package wgkey

import "testing"

func TestGenerateParse(t *testing.T) {
	k, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(k.String())
	if err != nil || p != k {
		t.Fatalf("round trip: %v %v", p, err)
	}
	if k.Public().IsZero() || k.Public() == k {
		t.Fatalf("bad public key")
	}
	if _, err := Parse("abc"); err == nil {
		t.Fatalf("want error for short key")
	}
	// RFC 7748 test vector (Alice).
	a, _ := Parse("dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=")
	if got, want := a.Public().String(), "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo="; got != want {
		t.Fatalf("public key %s, want %s", got, want)
	}
}
