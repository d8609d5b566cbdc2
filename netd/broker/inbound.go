package broker

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"

	"github.com/kubelink/kubelink/netd/tunnel/bridge"
)

// inboundHellos are the peers' hellos whose inbound updates (spec.dns,
// the API access Secret and spec.apiAccess) are not written yet. The
// bridge adds them as they arrive; the reconcile writes them and keeps
// those whose writes failed for its next round.
type inboundHellos struct {
	mu sync.Mutex
	// seq numbers the hellos, so a hello written is not dropped in place
	// of a newer one that arrived meanwhile.
	seq     uint64
	pending map[string]pendingHello
}

type pendingHello struct {
	hello bridge.Hello
	seq   uint64
}

// put records a link's newest hello.
func (in *inboundHellos) put(link string, h bridge.Hello) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.pending == nil {
		in.pending = map[string]pendingHello{}
	}
	in.seq++
	in.pending[link] = pendingHello{hello: h, seq: in.seq}
}

// apply calls write for every pending hello, in link order, and forgets
// those written; the rest wait for the next call. It holds no lock while
// writing.
func (in *inboundHellos) apply(write func(link string, h bridge.Hello) error) error {
	in.mu.Lock()
	todo := maps.Clone(in.pending)
	in.mu.Unlock()
	var errs []error
	for _, link := range slices.Sorted(maps.Keys(todo)) {
		p := todo[link]
		if err := write(link, p.hello); err != nil {
			errs = append(errs, err)
			continue
		}
		in.mu.Lock()
		if cur, ok := in.pending[link]; ok && cur.seq == p.seq {
			delete(in.pending, link)
		}
		in.mu.Unlock()
	}
	return errors.Join(errs...)
}

// waiting is the number of hellos not yet written.
func (in *inboundHellos) waiting() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.pending)
}

// applyInbound writes the pending hellos' inbound updates against the
// links as the cache has them. A failed write is logged where it
// happens and retried by the next reconcile; it does not fail this one,
// which is about the data path.
func (b *broker) applyInbound(ctx context.Context) {
	_ = b.inbound.apply(func(link string, h bridge.Hello) error {
		cur := b.watcher.Get(link)
		return errors.Join(b.inboundDNS(ctx, link, h, cur), b.inboundAPIAccess(ctx, link, h, cur))
	})
}
