package nftrules

import (
	"context"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kubelink/kubelink/netd/mss"
	"github.com/kubelink/kubelink/netd/nftable"
	"github.com/kubelink/kubelink/test/netns"
)

const mssRuleset = `table ip kubelink {
	chain mss-forward {
		type filter hook forward priority mangle; policy accept;
		oifname "kubelink" tcp flags & (syn|rst) == syn tcp option maxseg size set rt mtu comment "clamp TCP MSS to the route MTU"
	}
}
`

// maxSeg reads TCP_MAXSEG of a connection: the MSS the peer announced,
// limited by the own route and less the timestamp option; -1 when it
// cannot be read.
func maxSeg(c net.Conn) int {
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return -1
	}
	v := -1
	_ = rc.Control(func(fd uintptr) {
		if m, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG); err == nil {
			v = m
		}
	})
	return v
}

// TestMSSClamp: R ── G ── L, G's device towards R is named like the tunnel
// device and has MTU 1280 (R's end keeps 1500). Connections both ways: R
// reads the MSS L announced in its SYN (L dials) or SYN/ACK (R dials) —
// 1460 for L's MTU 1500 unless G clamped it to its route towards R.
func TestMSSClamp(t *testing.T) {
	lab := netns.New(t, "klmss")
	requireNft(t, lab)
	r, g, l := lab.NS("r"), lab.NS("g"), lab.NS("l")
	lab.Veth(r, "eth0", "10.99.0.2/24", g, dev, "10.99.0.1/24")
	lab.Run("ip", "-n", g, "link", "set", dev, "mtu", "1280")
	lab.Veth(g, "lan", "10.98.0.1/24", l, "eth0", "10.98.0.2/24")
	lab.In(r, "ip", "route", "add", "default", "via", "10.99.0.1")
	lab.In(l, "ip", "route", "add", "default", "via", "10.98.0.1")
	lab.Forwarding(g)

	accepted := make(chan int, 1)
	serve(t, r, "10.99.0.2:8080", func(c net.Conn) { accepted <- maxSeg(c) })
	serve(t, l, "10.98.0.2:8080", nil)
	// fromL: L connects to R, R's accepted socket; fromR: R connects to L.
	measure := func() (fromL, fromR int) {
		t.Helper()
		if err := reach(l, "10.99.0.2:8080", 3*time.Second); err != nil {
			t.Fatalf("L → R: %v", err)
		}
		select {
		case fromL = <-accepted:
		case <-time.After(3 * time.Second):
			t.Fatal("R accepted no connection")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		c, err := netns.DialContext(r)(ctx, "tcp", "10.98.0.2:8080")
		if err != nil {
			t.Fatalf("R → L: %v", err)
		}
		defer c.Close()
		fromR = maxSeg(c)
		if fromL < 0 || fromR < 0 {
			t.Fatal("reading TCP_MAXSEG failed")
		}
		return fromL, fromR
	}

	if a, b := measure(); a < 1400 || b < 1400 {
		t.Fatalf("without clamping R sees MSS %d (L dialed) and %d (R dialed), want ≥ 1400", a, b)
	}
	tbl := table(t, g)
	if _, err := tbl.Apply([]nftable.Chain{mss.Clamp(dev)}); err != nil {
		t.Fatal(err)
	}
	want, ref := reference(t, lab, "ref", mssRuleset)
	if got := list(t, lab, g); got != want {
		t.Errorf("table differs from nft's own encoding of the rule:\n%s\nwant:\n%s", got, want)
	}
	// The debug listing shows the expressions: they must be nft's, not
	// merely print the same.
	debug := func(ns string) string {
		return lab.In(ns, "nft", "--debug=netlink", "list", "table", "ip", nftable.TableName)
	}
	if got, want := debug(g), debug(ref); got != want {
		t.Errorf("expressions differ from nft's:\n%s\nwant:\n%s", got, want)
	}
	a, b := measure()
	if a > 1280-40 || b > 1280-40 {
		t.Errorf("with clamping R sees MSS %d (L dialed) and %d (R dialed), want ≤ %d", a, b, 1280-40)
	}
	t.Logf("MSS seen by R with clamping: %d (L dialed), %d (R dialed)", a, b)
}
