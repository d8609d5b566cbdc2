package kubelink

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/coredns/coredns/plugin/pkg/proxy"
	"github.com/coredns/coredns/plugin/pkg/transport"
	"github.com/coredns/coredns/request"
	"github.com/miekg/dns"
)

// Upstream timing: one attempt waits attemptTimeout for the reply and a
// query gets at most budget in total, so a dead cluster DNS costs a client
// about two seconds, never more.
const (
	attemptTimeout = time.Second
	budget         = 2 * time.Second
)

// upstream is one cluster DNS server with pooled connections (CoreDNS's
// proxy package: UDP and TCP sockets are reused, not dialled per query).
type upstream struct {
	addr  string
	proxy *proxy.Proxy
}

func newUpstream(addr string) *upstream {
	p := proxy.NewProxy("kubelink", addr, transport.DNS)
	p.SetReadTimeout(attemptTimeout)
	p.SetExpire(10 * time.Second)
	p.Start(time.Second)
	return &upstream{addr: addr, proxy: p}
}

func (u *upstream) stop() { u.proxy.Stop() }

// exchange sends req upstream: over the client's transport first, again
// over TCP when a UDP reply comes back truncated, and once more after a
// failure while the budget lasts.
func (u *upstream) exchange(ctx context.Context, w dns.ResponseWriter, req *dns.Msg, obs *observers) (*dns.Msg, error) {
	// No context deadline: it would cost a timer per query, and the proxy
	// uses the context only for dialling; reads are bounded by
	// attemptTimeout and the loop by the budget.
	deadline := time.Now().Add(budget)
	state := request.Request{W: w, Req: req}
	opts := proxy.Options{}
	var lastErr error
	for attempt := 0; attempt < 4; attempt++ {
		start := time.Now()
		ret, _, _, err := u.proxy.Connect(ctx, state, opts)
		if err == nil {
			obs.observe(time.Since(start), ret.Rcode)
			if ret.Truncated && !opts.ForceTCP && state.Proto() == "udp" {
				opts.ForceTCP = true
				continue
			}
			return ret, nil
		}
		obs.observe(time.Since(start), -1)
		lastErr = err
		if errors.Is(err, proxy.ErrInvalidRequest) {
			break
		}
		// A stale pooled connection is retried at once; anything else only
		// when there is time for a full attempt.
		if !errors.Is(err, proxy.ErrCachedClosed) && time.Until(deadline) < attemptTimeout/2 {
			break
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("upstream %s: %w", u.addr, lastErr)
}

// upstreamPool keeps the upstreams by address across index rebuilds.
type upstreamPool struct {
	mu   sync.Mutex
	live map[string]*upstream
	// next collects the upstreams the index being built uses.
	next map[string]*upstream
}

func newUpstreamPool() *upstreamPool {
	return &upstreamPool{live: map[string]*upstream{}}
}

// begin starts a rebuild; get hands out upstreams for it; commit stops the
// upstreams the new index no longer uses. Rebuilds are serialised by the
// caller.
func (p *upstreamPool) begin() { p.next = map[string]*upstream{} }

func (p *upstreamPool) get(addr string) *upstream {
	p.mu.Lock()
	defer p.mu.Unlock()
	if u, ok := p.next[addr]; ok {
		return u
	}
	u, ok := p.live[addr]
	if !ok {
		u = newUpstream(addr)
	}
	p.next[addr] = u
	return u
}

func (p *upstreamPool) commit() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, u := range p.live {
		if _, ok := p.next[addr]; !ok {
			u.stop()
		}
	}
	p.live, p.next = p.next, nil
}

func (p *upstreamPool) stopAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, u := range p.live {
		u.stop()
	}
	p.live = map[string]*upstream{}
}
