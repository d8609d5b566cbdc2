// Package nftrules tests netd's packet-rule chains (per-link firewall, MSS
// clamping) in the kernel: each test builds remote, gateway and local
// network namespaces, applies the chains inside the gateway with
// nftable.Table, and checks them with real TCP connections and nft's own
// listing.
package nftrules

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/kubelink/kubelink/netd/nftable"
	"github.com/kubelink/kubelink/test/netns"
	"github.com/kubelink/kubelink/test/testenv"
)

// dev is the gateway's tunnel device name the chains match on.
const dev = "kubelink"

// requireNft skips without the nft tool or nftables support in the kernel
// (probed in a throw-away namespace of the lab).
func requireNft(t *testing.T, lab *netns.Lab) {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		testenv.SkipOrFail(t, "nft (Debian package nftables) not installed")
	}
	ns := lab.NS("probe")
	if out, err := exec.Command("ip", "netns", "exec", ns, "nft", "add", "table", "ip", "probe").CombinedOutput(); err != nil {
		testenv.SkipOrFail(t, "kernel without nftables: %v: %s", err, out)
	}
}

// table returns a Table that applies inside ns: its netlink socket is
// opened in ns, whatever thread the test runs on.
func table(t *testing.T, ns string) *nftable.Table {
	t.Helper()
	return tableWith(t, ns)
}

// bigTable is table with socket buffers large enough for thousands of
// rules. With the default buffers (net.core.wmem_default/rmem_default,
// 208 KiB) a transaction of more than about 170 messages fails: the kernel
// commits it but its acknowledgements overflow the receive buffer
// (ENOBUFS), and a batch above the send buffer is refused (EMSGSIZE). The
// nft tool raises both buffers the same way (SO_*BUFFORCE needs
// CAP_NET_ADMIN, which changing nftables needs anyway).
func bigTable(t *testing.T, ns string) *nftable.Table {
	t.Helper()
	return tableWith(t, ns, nftables.WithSockOptions(func(c *netlink.Conn) error {
		rc, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 16<<20)
			if serr == nil {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20)
			}
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("netlink socket buffers: %w", serr)
		}
		return nil
	}))
}

func tableWith(t *testing.T, ns string, opts ...nftables.ConnOption) *nftable.Table {
	t.Helper()
	h, err := vnetns.GetFromName(ns)
	if err != nil {
		t.Fatalf("namespace %s: %v", ns, err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return &nftable.Table{Conn: func() (*nftables.Conn, error) {
		return nftables.New(append([]nftables.ConnOption{nftables.WithNetNSFd(int(h))}, opts...)...)
	}}
}

// list returns nft's listing of netd's table in ns.
func list(t *testing.T, lab *netns.Lab, ns string) string {
	t.Helper()
	return lab.In(ns, "nft", "list", "table", "ip", nftable.TableName)
}

// reference loads ruleset text with nft into a fresh namespace and returns
// nft's listing of it (what the chains must list as when netd's encoding
// equals nft's) and the namespace.
func reference(t *testing.T, lab *netns.Lab, name, ruleset string) (listing, ns string) {
	t.Helper()
	ns = lab.NS(name)
	f := t.TempDir() + "/ruleset.nft"
	if err := os.WriteFile(f, []byte(ruleset), 0o600); err != nil {
		t.Fatal(err)
	}
	lab.In(ns, "nft", "-f", f)
	return list(t, lab, ns), ns
}

// serve accepts connections on addr inside ns, answering each with "ok"
// and calling fn (if set) with the accepted connection first.
func serve(t *testing.T, ns, addr string, fn func(net.Conn)) {
	t.Helper()
	ln, err := netns.Listen(ns, "tcp", addr)
	if err != nil {
		t.Fatalf("listen %s in %s: %v", addr, ns, err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if fn != nil {
				fn(c)
			}
			_, _ = c.Write([]byte("ok"))
			_ = c.Close()
		}
	}()
}

// reach opens a TCP connection from ns to addr and reads the listener's
// answer. A connection the firewall drops times out.
func reach(ns, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := netns.DialContext(ns)(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if string(b) != "ok" {
		return errors.New("unexpected answer " + string(b))
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// lines returns the non-empty trimmed lines of s.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}
