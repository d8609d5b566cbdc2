package nat_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables/expr"

	"github.com/kubelink/kubelink/api/mesh"
	"github.com/kubelink/kubelink/netd/nat"
	"github.com/kubelink/kubelink/netd/nftable"
	"github.com/kubelink/kubelink/test/netns"
	"github.com/kubelink/kubelink/test/testenv"
)

func fwd(owner, addr, proto string, port uint16, targets ...string) nat.Forward {
	f := nat.Forward{Owner: owner, Forward: mesh.Forward{Address: netip.MustParseAddr(addr), Protocol: proto, Port: port}}
	for _, t := range targets {
		if ap, err := netip.ParseAddrPort(t); err == nil {
			f.Targets = append(f.Targets, mesh.Target{Address: ap.Addr(), Port: ap.Port()})
			continue
		}
		f.Targets = append(f.Targets, mesh.Target{Address: netip.MustParseAddr(t)})
	}
	return f
}

func TestDNATChains(t *testing.T) {
	if got := nat.DNAT("kubelink", nil); got != nil {
		t.Fatalf("no forwards: want no chains, got %d", len(got))
	}
	chains := nat.DNAT("kubelink", []nat.Forward{
		fwd("default/web", "192.168.7.50", "", 0, "10.98.0.2"),
		fwd("default/lb", "192.168.7.1", "TCP", 8080, "10.98.0.2:80", "10.98.0.3:81"),
	})
	// The round robin chain comes first: dnat-prerouting jumps to it.
	if len(chains) != 3 || chains[0].Name != nat.ChainRoundRobin || chains[1].Name != nat.ChainDNAT || chains[2].Name != nat.ChainMasq {
		t.Fatalf("chains: %+v", chains)
	}
	rr, pre := chains[0], chains[1]
	// The whole address with one target is an element of the address map
	// (one rule), then the jump to the round robin rules.
	if len(pre.Rules) != 2 || len(pre.Sets) != 1 || pre.Sets[0].Name != "dnat-addrs" || len(pre.Sets[0].Elements) != 1 {
		t.Fatalf("want the address map rule with 1 element and the jump: %+v", pre)
	}
	if v, ok := pre.Rules[1].Exprs[0].(*expr.Verdict); !ok || v.Chain != nat.ChainRoundRobin {
		t.Fatalf("no jump to %s: %+v", nat.ChainRoundRobin, pre.Rules[1])
	}
	if c := pre.Sets[0].Elements[0].Comment; !strings.Contains(c, "default/web") {
		t.Fatalf("element comment %q does not name the MeshService", c)
	}
	if len(rr.Rules) != 1 || len(rr.Sets) != 1 || !rr.Sets[0].IsMap || !rr.Sets[0].Anonymous || len(rr.Sets[0].Elements) != 2 {
		t.Fatalf("want one round robin rule with an address . port map of 2 elements: %+v", rr)
	}
	var numgen bool
	for _, e := range rr.Rules[0].Exprs {
		if n, ok := e.(*expr.Numgen); ok && n.Modulus == 2 {
			numgen = true
		}
	}
	if !numgen {
		t.Fatalf("two targets without numgen mod 2")
	}
	if !strings.Contains(rr.Rules[0].Comment, "default/lb") {
		t.Fatalf("comment %q does not name the MeshService", rr.Rules[0].Comment)
	}
	if got := len(chains[2].Sets[0].Elements); got != 2 {
		t.Fatalf("masquerade set: want 2 addresses, got %d", got)
	}
}

// TestDNATKernel loads the chains into a gateway namespace and sends real
// connections through it: R (mesh side, device "kubelink") → G → T
// (targets, no route back to R, so only masquerade makes replies work).
func TestDNATKernel(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		testenv.SkipOrFail(t, "nft not installed (Debian package nftables)")
	}
	lab := netns.New(t, "dn")
	r, g, tg := lab.NS("r"), lab.NS("g"), lab.NS("t")
	lab.Veth(g, "kubelink", "10.99.0.1/24", r, "eth0", "10.99.0.2/24")
	lab.Veth(g, "eth1", "10.98.0.1/24", tg, "eth0", "10.98.0.2/24")
	lab.In(tg, "ip", "addr", "add", "10.98.0.3/24", "dev", "eth0")
	lab.In(r, "ip", "route", "add", "192.168.7.0/24", "via", "10.99.0.1")
	lab.Forwarding(g)

	chains := nat.DNAT("kubelink", []nat.Forward{
		fwd("default/web", "192.168.7.50", "", 0, "10.98.0.2"),
		fwd("default/lb", "192.168.7.1", "TCP", 8080, "10.98.0.2:80", "10.98.0.3:81"),
		fwd("default/dns", "192.168.7.1", "UDP", 53, "10.98.0.3:5353"),
	})
	tbl := &nftable.Table{}
	apply := func() {
		t.Helper()
		if err := netns.Do(g, func() error { _, err := tbl.Apply(chains); return err }); err != nil {
			t.Fatal(err)
		}
	}
	apply()
	listing := lab.In(g, "nft", "list", "table", "ip", nftable.TableName)
	for _, want := range []string{"numgen inc mod 2 map { 0 : 10.98.0.2 . 80, ", "masquerade", "default/lb", "192.168.7.50",
		"map @dnat-ports", `192.168.7.1 . udp . 53 comment "default/dns: 192.168.7.1 UDP/53 to 10.98.0.3:5353" : 10.98.0.3 . 5353`,
		"map @dnat-addrs", `192.168.7.50 comment "default/web: 192.168.7.50 to 10.98.0.2" : 10.98.0.2`} {
		if !strings.Contains(listing, want) {
			t.Errorf("nft listing lacks %q:\n%s", want, listing)
		}
	}
	for i := 0; i < 100; i++ {
		apply()
	}
	if again := lab.In(g, "nft", "list", "table", "ip", nftable.TableName); again != listing {
		t.Fatalf("100 applies changed the table:\n%s\n---\n%s", listing, again)
	}
	if tbl.Writes() != 1 {
		t.Fatalf("100 unchanged applies: want 1 write in all, got %d", tbl.Writes())
	}

	// Listeners in T report who connected.
	seen := make(chan string, 16)
	for _, addr := range []string{"10.98.0.2:80", "10.98.0.3:81", "10.98.0.2:7777"} {
		ln, err := netns.Listen(tg, "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func(addr string) {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				seen <- addr + " from " + c.RemoteAddr().(*net.TCPAddr).IP.String()
				_, _ = c.Write([]byte("hi"))
				c.Close()
			}
		}(addr)
	}
	dial := netns.DialContext(r)
	connect := func(addr string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		c, err := dial(ctx, "tcp", addr)
		if err != nil {
			t.Fatalf("dial %s from the mesh side: %v", addr, err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil || string(b) != "hi" {
			t.Fatalf("%s: read %q, %v", addr, b, err)
		}
		select {
		case s := <-seen:
			return s
		case <-time.After(3 * time.Second):
			t.Fatalf("%s: no target saw the connection", addr)
		}
		return ""
	}
	// A whole virtual address keeps the port; the target sees the gateway
	// (masquerade), since it has no route back to the mesh.
	if got := connect("192.168.7.50:7777"); got != "10.98.0.2:7777 from 10.98.0.1" {
		t.Fatalf("virtual address: %s", got)
	}
	// Round robin over both endpoints.
	count := map[string]int{}
	for i := 0; i < 6; i++ {
		got := connect("192.168.7.1:8080")
		count[strings.Fields(got)[0]]++
	}
	if count["10.98.0.2:80"] != 3 || count["10.98.0.3:81"] != 3 {
		t.Fatalf("round robin over two endpoints: %v", count)
	}

	// UDP port forward.
	pc, err := netns.ListenPacket(tg, "udp", "10.98.0.3:5353")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(fmt.Sprintf("%s@%s", buf[:n], from.(*net.UDPAddr).IP)), from)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	uc, err := dial(ctx, "udp", "192.168.7.1:53")
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	_ = uc.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := uc.Write([]byte("q")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := uc.Read(buf)
	if err != nil || string(buf[:n]) != "q@10.98.0.1" {
		t.Fatalf("udp forward: %q %v", buf[:n], err)
	}

	// Removing the forwards removes the table.
	if err := netns.Do(g, func() error { _, err := tbl.Apply(nil); return err }); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "netns", "exec", g, "nft", "list", "table", "ip", nftable.TableName).CombinedOutput(); err == nil {
		t.Fatalf("table still there:\n%s", out)
	}
}

// Many forwards with one target cost two rules, whatever their number;
// conflicting forwards keep the first claim, as mesh.ResolveServices does.
func TestDNATMaps(t *testing.T) {
	var fs []nat.Forward
	for i := 0; i < 1000; i++ {
		fs = append(fs, fwd(fmt.Sprintf("default/p%d", i), "192.168.7.1", "TCP", uint16(10000+i), fmt.Sprintf("10.98.%d.%d:80", i/250, i%250+1)))
	}
	fs = append(fs,
		fwd("default/udp", "192.168.7.1", "UDP", 10000, "10.98.9.1"),
		fwd("default/whole", "192.168.7.9", "", 0, "10.98.9.2"),
		fwd("default/dup", "192.168.7.1", "TCP", 10000, "10.98.9.3:80"),          // same key as p0
		fwd("default/shadowed", "192.168.7.9", "TCP", 80, "10.98.9.4:80"),        // address forwarded whole before
		fwd("default/late-whole", "192.168.7.1", "", 0, "10.98.9.5"),             // address has ports before
		fwd("default/rr", "192.168.7.2", "TCP", 80, "10.98.9.6:80", "10.98.9.7"), // round robin
	)
	chains := nat.DNAT("kubelink", fs)
	if len(chains) != 3 {
		t.Fatalf("want the round robin, DNAT and masquerade chains, got %d", len(chains))
	}
	rr, pre, post := chains[0], chains[1], chains[2]
	if len(pre.Rules) != 3 || len(rr.Rules) != 1 {
		t.Fatalf("want 3 DNAT rules (ports map, address map, jump) and 1 round robin rule, got %d and %d", len(pre.Rules), len(rr.Rules))
	}
	sizes := map[string]int{}
	for _, s := range pre.Sets {
		sizes[s.Name] = len(s.Elements)
	}
	if sizes["dnat-ports"] != 1001 || sizes["dnat-addrs"] != 1 {
		t.Fatalf("map sizes: %v", sizes)
	}
	if got := len(post.Sets[0].Elements); got != 1004 {
		t.Fatalf("masquerade set: want the 1,004 targets of the kept forwards, got %d", got)
	}
	// Without round robin forwards there is no round robin chain.
	if got := nat.DNAT("kubelink", fs[:1000]); len(got) != 2 || got[0].Name != nat.ChainDNAT || len(got[0].Rules) != 1 {
		t.Fatalf("one-target forwards only: %+v", got)
	}
}
