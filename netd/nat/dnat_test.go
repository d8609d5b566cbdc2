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
	if len(chains) != 2 || chains[0].Name != nat.ChainDNAT || chains[1].Name != nat.ChainMasq {
		t.Fatalf("chains: %+v", chains)
	}
	pre := chains[0]
	// The whole address with one target is an element of the address map
	// (one rule); the round robin forward has a rule of its own.
	if len(pre.Rules) != 2 {
		t.Fatalf("want 2 DNAT rules, got %d", len(pre.Rules))
	}
	if len(pre.Sets) != 2 || !pre.Sets[0].IsMap || !pre.Sets[0].Anonymous || len(pre.Sets[0].Elements) != 2 ||
		pre.Sets[1].Name != "dnat-addrs" || len(pre.Sets[1].Elements) != 1 {
		t.Fatalf("want the round robin map of 2 elements and the address map of 1: %+v", pre.Sets)
	}
	var numgen bool
	for _, e := range pre.Rules[1].Exprs {
		if n, ok := e.(*expr.Numgen); ok && n.Modulus == 2 {
			numgen = true
		}
	}
	if !numgen {
		t.Fatalf("two targets without numgen mod 2")
	}
	if !strings.Contains(pre.Rules[1].Comment, "default/lb") {
		t.Fatalf("comment %q does not name the MeshService", pre.Rules[1].Comment)
	}
	if c := pre.Sets[1].Elements[0].Comment; !strings.Contains(c, "default/web") {
		t.Fatalf("element comment %q does not name the MeshService", c)
	}
	if got := len(chains[1].Sets[0].Elements); got != 2 {
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
