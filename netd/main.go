// Command netd is kubelink's network daemon: `netd broker` is the cluster's
// mesh gateway; `netd router` routes every node's mesh traffic to it;
// `netd sync` turns remote clusters' services into local endpoints;
// `netd kubeconfig` creates a read-only identity in a remote cluster and
// prints or stores its credential; `netd keygen` prints a WireGuard key pair; `netd version` prints the
// version.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/kubelink/kubelink/netd/broker"
	"github.com/kubelink/kubelink/netd/remotecfg"
	"github.com/kubelink/kubelink/netd/router"
	"github.com/kubelink/kubelink/netd/runtime"
	"github.com/kubelink/kubelink/netd/sync/controller"
	"github.com/kubelink/kubelink/netd/vxlan"
	"github.com/kubelink/kubelink/netd/wgkey"
)

// version is set at build time (-ldflags -X main.version=...).
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func usage(w io.Writer) {
	fmt.Fprintln(w, `usage: netd <command> [flags]

commands:
  broker     run the cluster's mesh gateway (tunnels, routes, SNAT, link status)
  router     route this node's mesh traffic to the active gateway (DaemonSet)
  sync       follow the clusters of ClusterLinks and KubeLink apiAccess: their endpoints into local
             EndpointSlices of the same-named Services, MCS ServiceImports, MeshService mirrors
  ipforward  enable IPv4 forwarding in this network namespace (init container of a pod-mode gateway);
             --loose-rp-filter also turns strict reverse-path filtering loose (VXLAN from the routers)
  kubeconfig run against a REMOTE cluster (--kubeconfig, --context): create its read-only
             ServiceAccount, ClusterRole, binding and token; print the credential for ClusterLink
             spec.kubeconfig (default, base64), or write it as a Secret (--output secret|apiaccess)
  keygen     print a new WireGuard key pair
  version    print the version

netd broker -h, netd router -h, netd sync -h and netd kubeconfig -h list their flags.`)
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "version":
		fmt.Fprintln(stdout, version)
		return 0
	case "keygen":
		k, err := wgkey.Generate()
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: %s\npublicKey: %s\n", broker.SecretKeyWireGuard, k, k.Public())
		return 0
	case "broker", "router", "sync":
		return daemon(roleOf(args[0]), args[1:], stdout, stderr)
	case "ipforward":
		return ipforward(args[1:], stdout, stderr)
	case "kubeconfig":
		return kubeconfig(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "netd: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

// ipforward is the init container of a pod-mode gateway: containers see
// /proc/sys read-only, a privileged init container does not.
func ipforward(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("netd ipforward", flag.ContinueOnError)
	fs.SetOutput(stderr)
	loose := fs.Bool("loose-rp-filter", false, "also set net.ipv4.conf.all.rp_filter=2 when it is 1 (strict): strict filtering drops VXLAN-decapsulated packets, whose sources are routed back over the node network (the gateway's node decapsulates: a node-mode broker, or the router beside a pod-mode gateway)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		fmt.Fprintln(stderr, "netd ipforward:", err)
		return 1
	}
	fmt.Fprintln(stdout, "net.ipv4.ip_forward = 1")
	if *loose {
		before, err := vxlan.LoosenRPFilter()
		if err != nil {
			fmt.Fprintln(stderr, "netd ipforward:", err)
			return 1
		}
		after := before
		if before == 1 {
			after = 2
		}
		fmt.Fprintf(stdout, "net.ipv4.conf.all.rp_filter = %d (was %d)\n", after, before)
	}
	return 0
}

// kubeconfig is `netd kubeconfig`, a one-shot command: stdout carries only
// the requested output, so it can be piped or captured.
func kubeconfig(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("netd kubeconfig", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := &remotecfg.Config{}
	cfg.Flags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "netd kubeconfig: unexpected arguments %q\n", fs.Args())
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := remotecfg.Run(ctx, cfg, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "netd kubeconfig:", err)
		return 1
	}
	return 0
}

// role is one of netd's long-running roles.
type role struct {
	name  string
	flags func(*flag.FlagSet)
	// verbose is -v; proc the original kubelink's process flags (nil:
	// the role takes none, netd sync).
	verbose *bool
	proc    *runtime.SeedProcessFlags
	// ignored names the flags set (names as given) that the role accepts
	// but does not use (the original manifests pass them), with what
	// replaces them.
	ignored func(set map[string]bool) []string
	// validate checks the flags (the role's run does too).
	validate func() error
	run      func(context.Context, *slog.Logger) error
	// attrs are logged at the start.
	attrs func() []any
}

func roleOf(name string) role {
	switch name {
	case "broker":
		cfg := &broker.Config{}
		return role{name: name, flags: cfg.Flags, verbose: &cfg.Verbose, proc: &cfg.Process, ignored: cfg.Ignored, validate: cfg.Validate,
			run:   func(ctx context.Context, log *slog.Logger) error { return broker.Run(ctx, cfg, log) },
			attrs: func() []any { return []any{"mode", cfg.Mode} }}
	case "router":
		cfg := &router.Config{}
		return role{name: name, flags: cfg.Flags, verbose: &cfg.Verbose, proc: &cfg.Process, ignored: cfg.Ignored, validate: cfg.Validate,
			run:   func(ctx context.Context, log *slog.Logger) error { return router.Run(ctx, cfg, log) },
			attrs: func() []any { return []any{"encapsulation", cfg.Encapsulation()} }}
	case "sync":
		cfg := &controller.Config{}
		return role{name: name, flags: cfg.Flags, verbose: &cfg.Verbose, ignored: cfg.Ignored, validate: cfg.Validate,
			run:   func(ctx context.Context, log *slog.Logger) error { return controller.Run(ctx, cfg, log) },
			attrs: func() []any { return []any{"cluster", cfg.ClusterName} }}
	}
	panic("netd: no role " + name)
}

// parse parses a role's command line; set are the flags given (names as
// given).
func (r role) parse(args []string, stderr io.Writer) (set map[string]bool, err error) {
	fs := flag.NewFlagSet("netd "+r.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	r.flags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err // the flag package said why
	}
	set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set, nil
}

// level is the log level: -v is debug, else --log-level, else info.
func (r role) level() slog.Level {
	if *r.verbose {
		return slog.LevelDebug
	}
	if r.proc != nil {
		if l, ok := r.proc.Level(); ok {
			return l
		}
	}
	return slog.LevelInfo
}

// daemon runs one of netd's long-running roles: flags, a logger (debug
// with -v, or --log-level), the warnings about flags set that the role
// accepts but does not use, and the role until SIGINT or SIGTERM.
func daemon(r role, args []string, stdout, stderr io.Writer) int {
	set, err := r.parse(args, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil:
		return 2
	}
	if r.proc != nil && r.proc.Version {
		fmt.Fprintln(stdout, version)
		return 0
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: r.level()}))
	log.Info("netd "+r.name+" starting", append([]any{"version", version}, r.attrs()...)...)
	for _, w := range r.ignored(set) {
		log.Warn(w)
	}
	if r.proc != nil && r.proc.CPUProfile != "" {
		stopProfile, err := cpuProfile(r.proc.CPUProfile)
		if err != nil {
			log.Error("netd "+r.name+" failed", "err", err)
			return 1
		}
		defer stopProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := r.run(ctx, log); err != nil {
		log.Error("netd "+r.name+" failed", "err", err)
		return 1
	}
	return 0
}

// cpuProfile profiles the CPU into file until the returned stop.
func cpuProfile(file string) (stop func(), err error) {
	f, err := os.Create(file)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
