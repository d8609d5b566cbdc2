package dns

// `make run` (issue #14 item 6): the whole DNS contract offline. The test
// runs `make run` itself, as a user does (same Makefile recipe, Corefile,
// manifests and zones; only the ports are free ones), and checks every dig
// command it prints against the answer printed beside it, and that the
// README's quick start lists exactly what `make run` prints.

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/kubelink/kubelink/api/mesh"
	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/api/watch"
	knetns "github.com/kubelink/kubelink/test/netns"
	"github.com/kubelink/kubelink/test/testenv"
)

// The defaults of the Makefile's run target, as the README shows them.
const (
	runDefaultAddr = "127.0.0.1"
	runDefaultPort = "1053"
	// readmeMarker precedes the README's block of dig commands.
	readmeMarker = "<!-- TestMakeRun:"
)

func TestMakeRun(t *testing.T) {
	requireDig(t)
	makeBin, err := exec.LookPath("make")
	if err != nil {
		testenv.SkipOrFail(t, "make not found")
	}
	root := testenv.RepoRoot()
	t.Run("offline", func(t *testing.T) { checkRunOffline(t, root) })
	t.Run("same clusters as examples/manifests", func(t *testing.T) { checkRunMatchesManifests(t, root) })

	port, standin := freePort(t), freePort(t)
	args := []string{"--no-print-directory", "run", "DNS_RUN_ADDR=" + runDefaultAddr,
		"DNS_RUN_PORT=" + strconv.Itoa(port), "DNS_RUN_STANDIN_PORT=" + strconv.Itoa(standin)}
	if _, err := os.Stat(filepath.Join(root, "bin", "coredns")); err == nil {
		// Like every test of this package: the bin/coredns `make test`
		// built, not rebuilt under the feet of the others.
		args = append([]string{"-o", "coredns"}, args...)
	}
	out := &knetns.SyncBuffer{}
	cmd := exec.Command(makeBin, args...)
	cmd.Dir = root
	// Under `make test` the environment carries the outer make's flags
	// (jobserver, command-line variables): make run starts as from a shell.
	for _, e := range os.Environ() {
		if k, _, _ := strings.Cut(e, "="); k != "MAKEFLAGS" && k != "MFLAGS" && k != "MAKELEVEL" && k != "MAKEOVERRIDES" {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("make run: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("make run output:\n%s", tail(out.String(), 8000))
		}
	})

	// Ready when the plugin answers the apex (before its first snapshot
	// CoreDNS answers SERVFAIL; `make run` may first build bin/coredns).
	kl := &coreDNS{addr: fmt.Sprintf("%s:%d", runDefaultAddr, port)}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		select {
		case <-done:
			t.Fatalf("make run exited:\n%s", tail(out.String(), 8000))
		default:
		}
		if r, _, err := kl.query("kubelink.", dns.TypeSOA); err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("make run: no answer on %s after 5m", kl.addr)
		}
		time.Sleep(100 * time.Millisecond)
	}

	printed := printedDigs(out.String())
	var digs int
	for _, l := range printed {
		if strings.HasPrefix(l, "dig ") {
			digs++
		}
	}
	if digs < 10 {
		t.Fatalf("make run printed %d dig commands:\n%s", digs, out.String())
	}

	t.Run("README lists what make run prints", func(t *testing.T) {
		readme := readmeDigs(t, filepath.Join(root, "README.md"))
		from := fmt.Sprintf(" -p %d ", port)
		var want []string
		for _, l := range printed {
			want = append(want, strings.Replace(l, from, " -p "+runDefaultPort+" ", 1))
		}
		if strings.Join(readme, "\n") != strings.Join(want, "\n") {
			t.Errorf("the README's block (after %q) differs from what make run prints (with -p %s):\nREADME:\n%s\n\nmake run:\n%s",
				readmeMarker, runDefaultPort, strings.Join(readme, "\n"), strings.Join(want, "\n"))
		}
	})

	for _, l := range printed {
		if !strings.HasPrefix(l, "dig ") {
			continue
		}
		command, want, ok := strings.Cut(l, " # ")
		if !ok {
			t.Errorf("no expected answer: %s", l)
			continue
		}
		// Subtests are named by the query (dig @ADDR -p PORT +norec QUERY).
		name := command
		if f := strings.Fields(command); len(f) > 5 {
			name = strings.Join(f[5:], " ")
		}
		t.Run(name, func(t *testing.T) {
			if strings.ContainsAny(command, `'"$\;|&`) {
				t.Fatalf("not a plain dig command: %s", command)
			}
			// Bounded, as a test must be; the answers are immediate.
			argv := append(strings.Fields(command)[1:], "+time=3", "+tries=1")
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			b, err := exec.CommandContext(ctx, "dig", argv...).CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v\n%s", command, err, b)
			}
			if got := digAnswer(string(b)); !answerMatches(want, got) {
				t.Errorf("%s\n got: %s\nwant: %s\n%s", command, got, want, b)
			}
		})
	}
}

// printedDigs are the headings and dig commands `make run` printed,
// whitespace collapsed.
func printedDigs(out string) []string {
	var l []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		s := strings.Join(strings.Fields(sc.Text()), " ")
		if strings.HasPrefix(s, "# ") || strings.HasPrefix(s, "dig ") {
			l = append(l, s)
		}
	}
	return l
}

// readmeDigs are the lines of the README's fenced block after the marker,
// blank lines dropped and whitespace collapsed.
func readmeDigs(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, readmeMarker)
	if i < 0 {
		t.Fatalf("%s: no %q", path, readmeMarker)
	}
	var l []string
	in := false
	for _, line := range strings.Split(s[i:], "\n")[1:] {
		switch {
		case !in && strings.HasPrefix(line, "```"):
			in = true
		case in && strings.HasPrefix(line, "```"):
			return l
		case in && strings.TrimSpace(line) != "":
			l = append(l, strings.Join(strings.Fields(line), " "))
		}
	}
	t.Fatalf("%s: no fenced block after %q", path, readmeMarker)
	return nil
}

var (
	digStatus = regexp.MustCompile(`status: ([A-Z]+)`)
	// dig 9.18: "; EDE: 22 (No Reachable Authority): (text)".
	digEDE = regexp.MustCompile(`(?m)^; (EDE: .*)$`)
)

// digAnswer renders a dig reply as examples/run/digs.txt writes answers:
// the answer section's record data joined by ", ", NODATA, NXDOMAIN, or
// the status with the Extended DNS Error.
func digAnswer(out string) string {
	m := digStatus.FindStringSubmatch(out)
	if m == nil {
		return "no reply"
	}
	var data []string
	in := false
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, ";; ANSWER SECTION:"):
			in = true
		case in && strings.TrimSpace(line) == "":
			in = false
		case in && !strings.HasPrefix(line, ";"):
			// owner TTL class type data...
			if f := strings.Fields(line); len(f) > 4 {
				data = append(data, strings.Join(f[4:], " "))
			}
		}
	}
	switch {
	case m[1] == "NOERROR" && len(data) == 0:
		return "NODATA"
	case m[1] == "NOERROR":
		return strings.Join(data, ", ")
	}
	if e := digEDE.FindStringSubmatch(out); e != nil {
		return m[1] + ", " + e[1]
	}
	return m[1]
}

var placeholder = regexp.MustCompile(`<[a-z]+>`)

// answerMatches compares an expected answer with a rendered one: records
// in any order, <name> placeholders standing for one word.
func answerMatches(want, got string) bool {
	for _, s := range []string{"NODATA", "NXDOMAIN", "SERVFAIL", "REFUSED"} {
		if strings.HasPrefix(want, s) {
			return want == got
		}
	}
	ws, gs := strings.Split(want, ", "), strings.Split(got, ", ")
	if len(ws) != len(gs) {
		return false
	}
	used := make([]bool, len(gs))
	for _, w := range ws {
		parts := placeholder.Split(w, -1)
		for i := range parts {
			parts[i] = regexp.QuoteMeta(parts[i])
		}
		re := regexp.MustCompile(`^` + strings.Join(parts, `\S+`) + `$`)
		found := false
		for i, g := range gs {
			if !used[i] && re.MatchString(g) {
				used[i], found = true, true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// checkRunOffline checks that every server the plugin of `make run` may
// ask is a loopback address: the local cluster DNS (the Corefile's
// local-dns), the DNS of every dns-mode link and the mesh-global DNS; that
// the stand-ins listen on loopback; and that nothing is forwarded
// elsewhere.
func checkRunOffline(t *testing.T, root string) {
	path := filepath.Join(root, "coredns-build", "Corefile.example")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var opts mesh.Options
	manifests := ""
	for _, l := range strings.Split(string(b), "\n") {
		l, _, _ = strings.Cut(l, "#")
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "forward", "grpc", "proxy":
			t.Errorf("%s: make run must not use %s: %s", path, f[0], l)
		case "manifests":
			manifests = strings.Join(f[1:], " ")
		case "local-dns":
			if len(f) != 2 {
				t.Fatalf("%s: %s", path, l)
			}
			if opts.LocalDNS, err = netip.ParseAddr(f[1]); err != nil {
				t.Fatal(err)
			}
		case "bind":
			for _, a := range f[1:] {
				if a == "{$DNS_RUN_ADDR}" {
					continue
				}
				if ip, err := netip.ParseAddr(a); err != nil || !ip.IsLoopback() {
					t.Errorf("%s: a server of make run binds %s, not a loopback address", path, a)
				}
			}
		}
	}
	// make run serves from examples/run.
	if manifests != "mesh" {
		t.Fatalf("%s: manifests %q, want mesh (examples/run/mesh)", path, manifests)
	}
	dir := filepath.Join(root, "examples", "run", "mesh")
	snap, err := (&watch.Dir{Path: dir}).LoadSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	set := mesh.Build(snap.KubeLinks, opts)
	if len(set.Meshes) != 1 {
		t.Errorf("%d meshes, want the default mesh", len(set.Meshes))
	}
	asked := func(what string, a netip.Addr) {
		if a.IsValid() && !a.IsLoopback() {
			t.Errorf("%s: the plugin would ask %s, outside the machine", what, a)
		}
	}
	for _, m := range set.Meshes {
		asked("the mesh-global DNS", m.GlobalDNS)
	}
	modes := map[string]bool{}
	for _, l := range set.Sorted() {
		if !l.Verdict.OK() {
			t.Errorf("KubeLink %s: %s: %s", l.Name, l.Verdict.State, l.Verdict.Message)
		}
		if l.Local {
			if !l.DNSIP.IsValid() {
				t.Errorf("no local cluster DNS")
			}
			asked("the local cluster DNS", l.DNSIP)
			continue
		}
		mode := l.EffectiveDNSMode(mesh.DNSPropagationAuto)
		modes[mode] = true
		if mode == v1alpha1.DNSModeDNS {
			asked("KubeLink "+l.Name, l.DNSIP)
		}
	}
	if !modes[v1alpha1.DNSModeDNS] || !modes[v1alpha1.DNSModeKubernetes] {
		t.Errorf("make run shows the DNS modes %v, want dns and kubernetes", modes)
	}
}

// checkRunMatchesManifests checks that the clusters of examples/run that
// examples/manifests has too are described alike (the real mesh's
// addresses; only DNS settings and status may differ).
func checkRunMatchesManifests(t *testing.T, root string) {
	load := func(dir string) map[string]*v1alpha1.KubeLink {
		snap, err := (&watch.Dir{Path: filepath.Join(root, "examples", dir)}).LoadSnapshot()
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]*v1alpha1.KubeLink{}
		for _, k := range snap.KubeLinks {
			m[k.Name] = k
		}
		return m
	}
	run, manifests := load(filepath.Join("run", "mesh")), load("manifests")
	for name, want := range manifests {
		got, ok := run[name]
		if !ok {
			t.Errorf("examples/run/mesh has no KubeLink %s", name)
			continue
		}
		if got.Spec.CIDR != want.Spec.CIDR || got.Spec.ClusterAddress != want.Spec.ClusterAddress || got.Spec.Endpoint != want.Spec.Endpoint {
			t.Errorf("KubeLink %s: examples/run has %s %s %s, examples/manifests %s %s %s", name,
				got.Spec.CIDR, got.Spec.ClusterAddress, got.Spec.Endpoint, want.Spec.CIDR, want.Spec.ClusterAddress, want.Spec.Endpoint)
		}
	}
}
