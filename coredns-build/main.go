// Command coredns is CoreDNS v1.15.0 with the kubelink plugin compiled in.
//
// Only the plugins a kubelink deployment (and its tests and benchmarks)
// needs are linked; kubelink runs before kubernetes so the mesh domain is
// answered before the cluster domain is considered.
package main

import (
	"fmt"
	"os"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	// The plugins of this build, in no particular order: the execution
	// order is the directives list below.
	_ "github.com/coredns/coredns/plugin/any"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/debug"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/file"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/k8s_external"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/pprof"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/rewrite"
	_ "github.com/coredns/coredns/plugin/template"
	_ "github.com/coredns/coredns/plugin/whoami"

	_ "github.com/kubelink/kubelink/plugin"
)

// directives is the plugin execution order: CoreDNS's own order for the
// linked plugins with kubelink inserted right before kubernetes.
var directives = []string{
	"reload",
	"bind",
	"debug",
	"ready",
	"health",
	"pprof",
	"prometheus",
	"errors",
	"log",
	"any",
	"loadbalance",
	"rewrite",
	"cache",
	"template",
	"hosts",
	"k8s_external",
	"kubelink",
	"kubernetes",
	"file",
	"loop",
	"forward",
	"whoami",
}

func main() {
	if err := dnsserver.SetDirectives(directives); err != nil {
		fmt.Fprintf(os.Stderr, "coredns: setting the plugin order: %v\n", err)
		os.Exit(1)
	}
	coremain.Run()
}
