package netns

import (
	"bufio"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kubelink/kubelink/test/testenv"
)

func TestLab(t *testing.T) {
	l := New(t, "klt")
	a, b := l.NS("a"), l.NS("b")
	l.Veth(a, "eth0", "10.77.0.1/24", b, "eth0", "10.77.0.2/24")

	// A listener in b, dialled from a by the test process itself.
	ln, err := Listen(b, "tcp", "10.77.0.2:7000")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, _ = c.Write([]byte("hello " + c.RemoteAddr().String() + "\n"))
			c.Close()
		}
	}()
	c, err := DialContext(a)(context.Background(), "tcp", "10.77.0.2:7000")
	if err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if !strings.HasPrefix(line, "hello 10.77.0.1:") {
		t.Fatalf("got %q, want a greeting to 10.77.0.1", line)
	}
	// The socket lives in b, not in the test's own namespace.
	if out := l.In(b, "ss", "-Htln"); !strings.Contains(out, "10.77.0.2:7000") {
		t.Fatalf("listener not inside %s: %q", b, out)
	}

	p := l.Start(a, "sleeper", nil, nil, "sleep", "300")
	l.Close()
	if !p.Exited() {
		t.Fatal("process survived Close")
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, n := range []string{a, b} {
		if strings.Contains(string(out), n) {
			t.Fatalf("namespace %s survived Close", n)
		}
	}
}

// TestAPIServerInNamespace runs the test environment inside a namespace and
// talks to it through DialContext.
func TestAPIServerInNamespace(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real apiserver")
	}
	l := New(t, "klt")
	ns := l.NS("api")
	env := testenv.Start(t, testenv.Options{Wrap: []string{"ip", "netns", "exec", ns}, Dial: DialContext(ns)})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := env.InstallCRDs(ctx, testenv.CRDDir()); err != nil {
		t.Fatal(err)
	}
	out, err := env.Kubectl(ctx, "get", "crd", "-o", "name")
	if err != nil || !strings.Contains(out, "kubelinks.kubelink.mandelsoft.org") {
		t.Fatalf("kubectl inside the namespace: %q %v", out, err)
	}
}
