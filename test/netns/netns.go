// Package netns builds throw-away network topologies for root tests: network
// namespaces, veth pairs and bridges, processes inside them, and sockets
// opened inside them from the test process. Everything is created with a
// per-lab prefix and removed when the test ends, even on failure; the root
// network namespace is never touched.
package netns

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	vnetns "github.com/vishvananda/netns"

	"github.com/kubelink/kubelink/test/testenv"
)

// Require skips the test (or fails it in CI) unless it runs as root with
// the ip tool available.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.SkipOrFail(t, "needs root for network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		testenv.SkipOrFail(t, "ip not installed (Debian package iproute2)")
	}
}

// Lab owns the namespaces and processes of one test.
type Lab struct {
	t      testing.TB
	prefix string

	mu    sync.Mutex
	nss   []string
	procs []*Proc
	links int
}

// New creates a lab; its namespaces are named <prefix><pid>-<name>.
func New(t testing.TB, prefix string) *Lab {
	t.Helper()
	Require(t)
	l := &Lab{t: t, prefix: fmt.Sprintf("%s%d-", prefix, os.Getpid()%100000)}
	t.Cleanup(l.Close)
	return l
}

// Run runs a command and fails the test on error.
func (l *Lab) Run(args ...string) string {
	l.t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// NS creates a network namespace with loopback up and returns its name.
func (l *Lab) NS(name string) string {
	l.t.Helper()
	n := l.prefix + name
	_ = exec.Command("ip", "netns", "del", n).Run() // left over from a killed run
	l.Run("ip", "netns", "add", n)
	l.mu.Lock()
	l.nss = append(l.nss, n)
	l.mu.Unlock()
	l.Run("ip", "-n", n, "link", "set", "lo", "up")
	return n
}

// In runs a command inside a namespace and fails the test on error.
func (l *Lab) In(ns string, args ...string) string {
	l.t.Helper()
	return l.Run(append([]string{"ip", "netns", "exec", ns}, args...)...)
}

// Veth joins two namespaces with a veth pair; addresses are CIDRs (empty:
// none).
func (l *Lab) Veth(ns1, if1, addr1, ns2, if2, addr2 string) {
	l.t.Helper()
	l.mu.Lock()
	l.links++
	tmp := fmt.Sprintf("%sv%d", strings.ReplaceAll(l.prefix, "-", ""), l.links)
	l.mu.Unlock()
	if len(tmp) > 13 {
		tmp = tmp[len(tmp)-13:]
	}
	// Created inside ns1 so that no interface ever appears in the root
	// namespace.
	l.Run("ip", "-n", ns1, "link", "add", if1, "type", "veth", "peer", "name", tmp)
	l.Run("ip", "-n", ns1, "link", "set", tmp, "netns", ns2)
	l.Run("ip", "-n", ns2, "link", "set", tmp, "name", if2)
	for _, x := range [][3]string{{ns1, if1, addr1}, {ns2, if2, addr2}} {
		if x[2] != "" {
			l.Run("ip", "-n", x[0], "addr", "add", x[2], "dev", x[1])
		}
		l.Run("ip", "-n", x[0], "link", "set", x[1], "up")
	}
}

// Bridge creates a bridge device inside ns.
func (l *Lab) Bridge(ns, name, addr string) {
	l.t.Helper()
	l.Run("ip", "-n", ns, "link", "add", name, "type", "bridge")
	if addr != "" {
		l.Run("ip", "-n", ns, "addr", "add", addr, "dev", name)
	}
	l.Run("ip", "-n", ns, "link", "set", name, "up")
}

// Attach plugs interface ifc of ns into bridge br of the same namespace.
func (l *Lab) Attach(ns, ifc, br string) {
	l.t.Helper()
	l.Run("ip", "-n", ns, "link", "set", ifc, "master", br)
}

// Forwarding enables IPv4 forwarding inside ns.
func (l *Lab) Forwarding(ns string) {
	l.t.Helper()
	l.In(ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
}

// Proc is a process started by the lab.
type Proc struct {
	Name string
	cmd  *exec.Cmd
	out  *SyncBuffer
	done chan struct{}
}

// Start starts a long-running process inside ns (ns "" = the test's own
// namespace); it is killed at the end of the test. Output goes to log (nil:
// kept in memory, see Output).
func (l *Lab) Start(ns, name string, env []string, log io.Writer, args ...string) *Proc {
	l.t.Helper()
	argv := args
	if ns != "" {
		argv = append([]string{"ip", "netns", "exec", ns}, args...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &Proc{Name: name, cmd: cmd, out: &SyncBuffer{}, done: make(chan struct{})}
	var w io.Writer = p.out
	if log != nil {
		w = io.MultiWriter(p.out, log)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("starting %s: %v", name, err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p
}

// Output returns what the process printed so far.
func (p *Proc) Output() string { return p.out.String() }

// Done is closed when the process has ended.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill kills the process group with sig and waits for the process.
func (p *Proc) Kill(sig syscall.Signal) {
	if p.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// Close kills every process and deletes every namespace; it runs at test
// end automatically.
func (l *Lab) Close() {
	l.mu.Lock()
	procs, nss := l.procs, l.nss
	l.procs, l.nss = nil, nil
	l.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Kill(syscall.SIGTERM)
	}
	for _, n := range nss {
		_ = exec.Command("ip", "netns", "del", n).Run()
	}
}

// Namespaces lists the lab's namespaces.
func (l *Lab) Namespaces() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.nss...)
}

// Do runs fn inside namespace ns (e.g. netlink or nftables calls that act
// on the calling thread's namespace).
func Do(ns string, fn func() error) error { return inNS(ns, fn) }

// inNS runs fn on a thread switched into namespace ns. Sockets created by fn
// stay in ns whatever thread uses them later.
func inNS(ns string, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := vnetns.Get()
	if err != nil {
		return fmt.Errorf("current network namespace: %w", err)
	}
	defer orig.Close()
	target, err := vnetns.GetFromName(ns)
	if err != nil {
		return fmt.Errorf("network namespace %s: %w", ns, err)
	}
	defer target.Close()
	if err := vnetns.Set(target); err != nil {
		return fmt.Errorf("entering %s: %w", ns, err)
	}
	ferr := fn()
	if err := vnetns.Set(orig); err != nil {
		// The thread is unusable now; keep it locked so it dies with the
		// goroutine instead of returning to the scheduler.
		runtime.LockOSThread()
		return fmt.Errorf("leaving %s: %w", ns, err)
	}
	return ferr
}

// DialContext returns a dialer that opens connections from inside ns, e.g.
// for rest.Config.Dial to reach an apiserver that listens in ns.
func DialContext(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := inNS(ns, func() error {
			var err error
			c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// Listen opens a listener inside ns.
func Listen(ns, network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := inNS(ns, func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// ListenPacket opens a packet socket inside ns.
func ListenPacket(ns, network, addr string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := inNS(ns, func() error {
		var err error
		pc, err = net.ListenPacket(network, addr)
		return err
	})
	return pc, err
}

// SyncBuffer collects a process's output while a test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Relay copies every connection accepted on ln to a connection to target
// opened with dial (nil: a plain dialer in the caller's namespace). It
// returns when ln is closed; run it in a goroutine.
func Relay(ln net.Listener, target string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) {
	if dial == nil {
		dial = (&net.Dialer{Timeout: 5 * time.Second}).DialContext
	}
	for {
		in, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer in.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			out, err := dial(ctx, "tcp", target)
			cancel()
			if err != nil {
				return
			}
			defer out.Close()
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(out, in); done <- struct{}{} }()
			go func() { _, _ = io.Copy(in, out); done <- struct{}{} }()
			<-done
		}()
	}
}
