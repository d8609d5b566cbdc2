// Command netd is kubelink's network daemon: `netd broker` is the cluster's
// mesh gateway; `netd router` routes every node's mesh traffic to it;
// `netd sync` turns remote clusters' services into local endpoints;
// `netd kubeconfig` creates a read-only identity in a remote cluster and
// prints or stores its credential; `netd keygen` prints a WireGuard key pair; `netd version` prints the
// version.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/kubelink/kubelink/netd/broker"
	"github.com/kubelink/kubelink/netd/remotecfg"
	"github.com/kubelink/kubelink/netd/router"
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
	case "broker":
		cfg := &broker.Config{}
		return daemon("broker", args[1:], stderr, cfg.Flags, &cfg.Verbose, cfg.Ignored,
			func(ctx context.Context, log *slog.Logger) error { return broker.Run(ctx, cfg, log) },
			func() []any { return []any{"mode", cfg.Mode} })
	case "router":
		cfg := &router.Config{}
		return daemon("router", args[1:], stderr, cfg.Flags, &cfg.Verbose, cfg.Ignored,
			func(ctx context.Context, log *slog.Logger) error { return router.Run(ctx, cfg, log) },
			func() []any { return []any{"encapsulation", cfg.Encapsulation()} })
	case "sync":
		cfg := &controller.Config{}
		return daemon("sync", args[1:], stderr, cfg.Flags, &cfg.Verbose, cfg.Ignored,
			func(ctx context.Context, log *slog.Logger) error { return controller.Run(ctx, cfg, log) },
			func() []any { return []any{"cluster", cfg.ClusterName} })
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

// daemon runs one of netd's long-running roles: flags, a logger (debug
// with -v), and the role until SIGINT or SIGTERM. attrs are logged at the
// start; ignored names the flags set that the role accepts but does not
// use (the original manifests pass them), each logged as a warning.
func daemon(role string, args []string, stderr io.Writer, flags func(*flag.FlagSet), verbose *bool,
	ignored func(set map[string]bool) []string, run func(context.Context, *slog.Logger) error, attrs func() []any) int {
	fs := flag.NewFlagSet("netd "+role, flag.ContinueOnError)
	fs.SetOutput(stderr)
	flags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	log.Info("netd "+role+" starting", append([]any{"version", version}, attrs()...)...)
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, w := range ignored(set) {
		log.Warn(w)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log); err != nil {
		log.Error("netd "+role+" failed", "err", err)
		return 1
	}
	return 0
}
