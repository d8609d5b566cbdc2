// Command ocibuild writes a single-binary OCI image archive without a
// container daemon (see package image). `make images` uses it:
//
//	ocibuild -binary bin/netd -ref kubelink/netd:v1 -user 0 -label k=v -o bin/images/netd.tar
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/kubelink/kubelink/hack/ocibuild/image"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "ocibuild:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("ocibuild", flag.ContinueOnError)
	var s image.Spec
	var labels, ports, dirs, env list
	var entrypoint, cmd, out string
	fs.StringVar(&s.Binary, "binary", "", "static binary to package (required)")
	fs.StringVar(&s.Path, "path", "", "path of the binary in the image (default /<basename>)")
	fs.StringVar(&entrypoint, "entrypoint", "", "comma-separated entrypoint (default: the binary)")
	fs.StringVar(&cmd, "cmd", "", "comma-separated default arguments")
	fs.StringVar(&s.User, "user", image.NonRootUser, "uid[:gid] the container runs as")
	fs.StringVar(&s.Ref, "ref", "", "image reference recorded in the archive, e.g. kubelink/netd:v1")
	fs.StringVar(&s.Arch, "arch", "", "architecture (default: from the binary)")
	fs.Var(&labels, "label", "config label key=value (repeatable)")
	fs.Var(&ports, "port", "exposed port, e.g. 53/udp (repeatable)")
	fs.Var(&dirs, "dir", "writable directory to create, e.g. /tmp (repeatable)")
	fs.Var(&env, "env", "environment variable KEY=VALUE (repeatable)")
	fs.StringVar(&out, "o", "", "output archive (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if s.Binary == "" || out == "" {
		fs.Usage()
		return fmt.Errorf("-binary and -o are required")
	}
	if entrypoint != "" {
		s.Entrypoint = strings.Split(entrypoint, ",")
	}
	if cmd != "" {
		s.Cmd = strings.Split(cmd, ",")
	}
	s.Labels = map[string]string{}
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return fmt.Errorf("label %q is not key=value", l)
		}
		s.Labels[k] = v
	}
	s.ExposedPorts, s.Dirs, s.Env = ports, dirs, env
	// Reproducible builds: SOURCE_DATE_EPOCH sets every timestamp.
	if e := os.Getenv("SOURCE_DATE_EPOCH"); e != "" {
		sec, err := strconv.ParseInt(e, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", e, err)
		}
		s.Created = time.Unix(sec, 0).UTC()
	}
	img, err := image.Build(s)
	if err != nil {
		return err
	}
	if err := image.WriteArchive(out, img, s.Ref); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s: %s %s\n", out, s.Ref, d)
	return nil
}
