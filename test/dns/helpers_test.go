// Package dns tests the real bin/coredns with the kubelink plugin: against
// a real kube-apiserver (KubeLinks through informers, the remote cluster's
// DNS a second real CoreDNS with the kubernetes plugin), and with the
// manifests source. Queries go through dig and a Go client.
package dns

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/kubelink/kubelink/test/testenv"
)

var (
	buildOnce sync.Once
	builtPath string
	buildErr  error
)

// corednsBinary is bin/coredns (built by `make coredns`, which `make test`
// runs first), or a fresh build into a temporary directory when it is
// missing.
func corednsBinary(t *testing.T) string {
	t.Helper()
	p := filepath.Join(testenv.RepoRoot(), "bin", "coredns")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kubelink-coredns-")
		if err != nil {
			buildErr = err
			return
		}
		builtPath = filepath.Join(dir, "coredns")
		cmd := exec.Command("go", "build", "-o", builtPath, "./coredns-build")
		cmd.Dir = testenv.RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./coredns-build: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("building coredns: %v", buildErr)
	}
	return builtPath
}

func requireDig(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("dig"); err != nil {
		testenv.SkipOrFail(t, "dig not found (Debian package bind9-dnsutils)")
	}
}

// freePort returns a port free for both UDP and TCP on 127.0.0.1.
func freePort(t *testing.T) int {
	t.Helper()
	for i := 0; i < 50; i++ {
		u, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := u.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		u.Close()
		if err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// coreDNS is one running bin/coredns.
type coreDNS struct {
	addr      string // host:port of its DNS
	readyAddr string
	log       string
}

// startCoreDNS runs bin/coredns with the Corefile (ports filled in by the
// caller) and waits until the ready plugin reports ready.
func startCoreDNS(t *testing.T, name, corefile, addr, readyAddr string) *coreDNS {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "Corefile")
	if err := os.WriteFile(conf, []byte(corefile), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &coreDNS{addr: addr, readyAddr: readyAddr, log: filepath.Join(dir, name+".log")}
	logf, err := os.Create(c.log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(corednsBinary(t), "-conf", conf)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting coredns %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(c.log)
			t.Logf("coredns %s log:\n%s", name, tail(string(b), 4000))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-done:
			b, _ := os.ReadFile(c.log)
			t.Fatalf("coredns %s exited:\n%s", name, tail(string(b), 4000))
		default:
		}
		resp, err := http.Get("http://" + readyAddr + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return c
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(c.log)
			t.Fatalf("coredns %s not ready after 60s:\n%s", name, tail(string(b), 4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// dig runs dig against the server and returns its full output.
func (c *coreDNS) dig(t *testing.T, args ...string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(c.addr)
	argv := append([]string{"@" + host, "-p", port, "+norec", "+time=3", "+tries=1"}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "dig", argv...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

// query asks the server with a Go client (EDNS0 on, so EDEs come back).
func (c *coreDNS) query(name string, qtype uint16) (*dns.Msg, time.Duration, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = false
	m.SetEdns0(1232, false)
	cl := &dns.Client{Timeout: 3 * time.Second}
	r, rtt, err := cl.Exchange(m, c.addr)
	return r, rtt, err
}

// eventually polls fn until it returns nil or the timeout passes; it
// returns how long it took.
func eventually(t *testing.T, timeout time.Duration, what string, fn func() error) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < timeout {
		if err = fn(); err == nil {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v: %v", what, timeout, err)
	return 0
}

func answerA(r *dns.Msg) string {
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			return a.A.String()
		}
	}
	return ""
}

func ede(r *dns.Msg) *dns.EDNS0_EDE {
	if o := r.IsEdns0(); o != nil {
		for _, opt := range o.Option {
			if e, ok := opt.(*dns.EDNS0_EDE); ok {
				return e
			}
		}
	}
	return nil
}

// expectA waits until name has the A record want ("" means NXDOMAIN).
func expectA(t *testing.T, c *coreDNS, timeout time.Duration, name, want string) time.Duration {
	t.Helper()
	return eventually(t, timeout, fmt.Sprintf("%s A %q", name, want), func() error {
		r, _, err := c.query(name, dns.TypeA)
		if err != nil {
			return err
		}
		if want == "" {
			if r.Rcode != dns.RcodeNameError {
				return fmt.Errorf("rcode %s", dns.RcodeToString[r.Rcode])
			}
			return nil
		}
		if got := answerA(r); got != want {
			return fmt.Errorf("got %q (rcode %s)", got, dns.RcodeToString[r.Rcode])
		}
		return nil
	})
}
