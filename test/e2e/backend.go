package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/kubelink/kubelink/test/netns"
)

// newHTTPServer answers every request with a line naming the backend and
// the caller's address, so tests see where traffic came from.
func newHTTPServer(name string) *http.Server {
	return &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s, you are %s\n", name, r.RemoteAddr)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
}

// relay forwards TCP connections and UDP datagrams accepted on ln/pc to
// target, dialling from inside namespace ns. It returns a stop function.
func relay(ln net.Listener, pc net.PacketConn, ns, target string) func() {
	ctx, cancel := context.WithCancel(context.Background())
	dial := netns.DialContext(ns)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		netns.Relay(ln, target, dial)
	}()
	go func() {
		defer wg.Done()
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := append([]byte(nil), buf[:n]...)
			go func() {
				u, err := dial(ctx, "udp", target)
				if err != nil {
					return
				}
				defer u.Close()
				_ = u.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := u.Write(q); err != nil {
					return
				}
				resp := make([]byte, 65535)
				n, err := u.Read(resp)
				if err != nil {
					return
				}
				_, _ = pc.WriteTo(resp[:n], from)
			}()
		}
	}()
	return func() {
		cancel()
		ln.Close()
		pc.Close()
		wg.Wait()
	}
}
