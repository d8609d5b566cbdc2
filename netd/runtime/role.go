package runtime

import (
	"context"
	"log/slog"

	"github.com/kubelink/kubelink/api/watch"
)

// StartRole is how every role starts talking to the world: it builds the
// API clients from kubeconfig ("" = in-cluster) and serves proc's
// /metrics, /healthz and /readyz on port (0 = off). stop ends the server
// and returns once it has shut down; the role defers it, so the server
// ends with the role's Run, also when Run returns before ctx ends (a
// failure, a lost lease).
func StartRole(ctx context.Context, proc *Process, kubeconfig string, port int, log *slog.Logger) (clients *watch.Clients, stop func(), err error) {
	rc, err := watch.LocalConfig(kubeconfig, "")
	if err != nil {
		return nil, nil, err
	}
	if clients, err = watch.NewClients(rc, "kubelink-netd"); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	wait, err := proc.Serve(ctx, port, log)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return clients, func() {
		cancel()
		wait()
	}, nil
}

// Watch starts a role's informers of needs (watch.Open): onChange on
// every change, objects that do not convert skipped with a warning (one
// bad object must not stop the role). stop ends the informers and returns
// once they have stopped; the role defers it where its informers end.
func Watch(ctx context.Context, clients *watch.Clients, needs watch.Needs, onChange func(), log *slog.Logger) (c *watch.Cache, stop func(), err error) {
	return watch.Open(ctx, clients, needs, onChange, func(err error) { log.Warn("skipping an object", "err", err) })
}
