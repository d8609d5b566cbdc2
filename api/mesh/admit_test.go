package mesh

import (
	"fmt"
	"math/rand"
	"net/netip"
	"testing"

	"github.com/kubelink/kubelink/api/v1alpha1"
)

// TestAdmitIndexAgrees admits random links, many of them conflicting
// (shared addresses, nested and overlapping CIDRs, egress around link
// addresses), with the indexed admit and with the walk over all admitted
// links it replaced; every verdict must be the same.
func TestAdmitIndexAgrees(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	network := netip.MustParsePrefix("192.168.0.0/22")
	prefix := func() netip.Prefix {
		bits := 16 + rng.Intn(13)
		a := netip.AddrFrom4([4]byte{100, byte(64 + rng.Intn(2)), byte(rng.Intn(4)), byte(rng.Intn(256))})
		if rng.Intn(10) == 0 {
			// Sometimes into the mesh network (egress of MeshServices).
			a, bits = netip.AddrFrom4([4]byte{192, 168, byte(rng.Intn(4)), byte(rng.Intn(256))}), 26+rng.Intn(7)
		}
		return netip.PrefixFrom(a, bits).Masked()
	}
	for round := 0; round < 20; round++ {
		local := &Link{Name: "local", Cluster: "local", Local: true, Address: netip.MustParseAddr("192.168.0.1"), Network: network,
			CIDR: netip.MustParsePrefix("100.66.0.0/16")}
		fast := &Mesh{Network: network, Local: local}
		slow := &Mesh{Network: network, Local: local}
		idx := newAdmitted()
		for i := 0; i < 400; i++ {
			l := &Link{Name: fmt.Sprintf("l%d", i), Cluster: fmt.Sprintf("c%d", i), Network: network,
				Address: netip.AddrFrom4([4]byte{192, 168, byte(rng.Intn(4)), byte(rng.Intn(256))}), CIDR: prefix()}
			for n := rng.Intn(3); n > 0; n-- {
				l.Egress = append(l.Egress, prefix())
			}
			if rng.Intn(4) == 0 {
				l.CIDR = netip.Prefix{}
			}
			got, want := fast.admit(l, idx), slow.slowAdmit(l)
			if got != want {
				t.Fatalf("round %d, link %d (%s %s %v): indexed %+v, walk %+v", round, i, l.Address, l.CIDR, l.Egress, got, want)
			}
		}
		if len(fast.Links) != len(slow.Links) || len(fast.Links) < 20 {
			t.Fatalf("round %d: admitted %d vs %d", round, len(fast.Links), len(slow.Links))
		}
	}
}

// slowAdmit is admit as it was before the index: every check walks the
// links admitted so far.
func (m *Mesh) slowAdmit(l *Link) Verdict {
	invalid := func(format string, args ...any) Verdict {
		return Verdict{v1alpha1.StateInvalid, fmt.Sprintf(format, args...)}
	}
	if !m.Network.Contains(l.Address) {
		return invalid("link address %s is outside the mesh network %s", l.Address, m.Network)
	}
	if l.Network.Bits() != m.Network.Bits() {
		return invalid("spec.clusterAddress netmask /%d differs from the mesh netmask /%d", l.Network.Bits(), m.Network.Bits())
	}
	if l.Address == m.Network.Addr() {
		return invalid("link address %s is the mesh network address", l.Address)
	}
	if m.Local != nil && l.Address == m.Local.Address {
		return invalid("link address %s is the local cluster's link address", l.Address)
	}
	if m.Local != nil && l.Cluster == m.Local.Cluster {
		return invalid("cluster name %q is the local cluster's name in mesh %q", l.Cluster, meshLabel(m.Name))
	}
	for _, o := range m.Links {
		if o.Address == l.Address {
			return invalid("link address %s is already used by link %q", l.Address, o.Name)
		}
		for _, q := range o.Egress {
			if q.Contains(l.Address) {
				return invalid("link address %s is inside spec.egress %s of link %q", l.Address, q, o.Name)
			}
		}
	}
	for _, p := range l.Routes() {
		if p.Overlaps(m.Network) {
			// Only egress may reach into the mesh network: addresses of
			// the cluster's MeshServices, which are not link addresses.
			if p == l.CIDR || p.Bits() <= m.Network.Bits() {
				return invalid("CIDR %s overlaps the mesh network %s", p, m.Network)
			}
			if p.Contains(m.Network.Addr()) {
				return invalid("spec.egress %s contains the mesh network address", p)
			}
			if m.Local != nil && p.Contains(m.Local.Address) {
				return invalid("spec.egress %s contains the local link address %s", p, m.Local.Address)
			}
			if p.Contains(l.Address) {
				return invalid("spec.egress %s contains the link's own address %s", p, l.Address)
			}
			for _, o := range m.Links {
				if p.Contains(o.Address) {
					return invalid("spec.egress %s contains the link address of %q", p, o.Name)
				}
			}
		}
		if m.Local != nil && m.Local.CIDR.IsValid() && p.Overlaps(m.Local.CIDR) {
			return invalid("CIDR %s overlaps the local service CIDR %s", p, m.Local.CIDR)
		}
		for _, o := range m.Links {
			for _, q := range o.Routes() {
				if p.Overlaps(q) {
					return invalid("CIDR %s overlaps %s of link %q", p, q, o.Name)
				}
			}
		}
	}
	m.Links = append(m.Links, l)
	return Verdict{}
}
