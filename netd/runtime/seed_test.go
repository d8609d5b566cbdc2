package runtime

import (
	"bufio"
	"flag"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// helpFlag is a flag of the original kubelink's `--help`
// (testdata/kubelink-help.txt, its README's command-line reference).
type helpFlag struct {
	name, short string
	kind        SeedKind
}

func readHelp(t *testing.T) []helpFlag {
	t.Helper()
	f, err := os.Open("testdata/kubelink-help.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	re := regexp.MustCompile(`^\s+(?:-(\w), )?--([\w.-]+)(?: (\w+))?\s{2,}\S`)
	var out []helpFlag
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := re.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		k := SeedKind(m[3])
		if k == "" {
			k = KindBool
		}
		out = append(out, helpFlag{name: m[2], short: m[1], kind: k})
	}
	if len(out) < 100 {
		t.Fatalf("only %d flags in the reference", len(out))
	}
	return out
}

// TestSeedFlagsAreTheReference: SeedFlags is exactly the original's
// command-line reference: every flag with its kind and short form, and the
// --broker./--router. forms exactly where the reference has them.
func TestSeedFlagsAreTheReference(t *testing.T) {
	table := map[string]*SeedFlag{}
	for i := range SeedFlags {
		table[SeedFlags[i].Name] = &SeedFlags[i]
	}
	prefixed := map[string]bool{}
	for i := range SeedFlags {
		for _, p := range SeedFlags[i].Prefixed {
			prefixed[p+"."+SeedFlags[i].Name] = true
		}
	}
	seen := map[string]bool{}
	for _, h := range readHelp(t) {
		seen[h.name] = true
		if p, base, ok := strings.Cut(h.name, "."); ok && (p == RoleBroker || p == RoleRouter) {
			sf := table[base]
			switch {
			case sf == nil:
				t.Errorf("--%s: --%s is not in SeedFlags", h.name, base)
			case !prefixed[h.name]:
				t.Errorf("--%s: SeedFlags has no %s form of --%s", h.name, p, base)
			case sf.Kind != h.kind:
				t.Errorf("--%s is a %s, --%s a %s", h.name, h.kind, base, sf.Kind)
			}
			continue
		}
		sf := table[h.name]
		if sf == nil {
			t.Errorf("--%s (%s) is not in SeedFlags", h.name, h.kind)
			continue
		}
		if sf.Kind != h.kind || sf.Short != h.short {
			t.Errorf("--%s: the reference says %s -%s, SeedFlags %s -%s", h.name, h.kind, h.short, sf.Kind, sf.Short)
		}
		for _, use := range []SeedUse{sf.Broker, sf.Router} {
			if n := btoi(use.Works) + btoi(use.Why != "") + btoi(use.Other != ""); n != 1 {
				t.Errorf("--%s: %+v must be exactly one of works, ignored (why) or other role", h.name, use)
			}
		}
	}
	for name := range table {
		if !seen[name] {
			t.Errorf("SeedFlags has --%s, the reference does not", name)
		}
	}
	for name := range prefixed {
		if !seen[name] {
			t.Errorf("SeedFlags has --%s, the reference does not", name)
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// stubRole defines every flag SeedFlags says the role uses, as a role
// would, and registers the rest of the original command line.
func stubRole(t *testing.T, role string) (*flag.FlagSet, *Seed, *string) {
	t.Helper()
	fs := flag.NewFlagSet("netd "+role, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var target string
	(&SeedProcessFlags{}).Register(fs)
	for _, sf := range SeedFlags {
		if !sf.Use(role).Works || fs.Lookup(sf.Name) != nil || sf.Name == "help" || sf.Name == "namespace" {
			continue
		}
		switch sf.Kind {
		case KindBool:
			fs.Bool(sf.Name, false, "")
		case KindDuration:
			fs.Duration(sf.Name, 0, "")
		case KindInt, KindUint:
			fs.Int(sf.Name, 0, "")
		default:
			fs.String(sf.Name, "", "")
		}
	}
	fs.StringVar(&target, "target", "", "")
	aliases := map[string]string{}
	if role == RoleBroker {
		aliases["namespace"] = "target"
	}
	return fs, RegisterSeed(fs, role, aliases), &target
}

// TestSeedRegistration: prefixed forms of the role are aliases, the other
// role's are accepted with a warning naming that role, flags netd does not
// use are checked and named with their replacement; -h lists only netd's
// own flags.
func TestSeedRegistration(t *testing.T) {
	fs, s, target := stubRole(t, RoleBroker)
	err := fs.Parse([]string{"--broker.mode=bridge", "--namespace=kube-system", "--router.datafile=/x", "--coredns-configure",
		"--broker.dns-propagation=Kubernetes", "-D", "debug", "-n", "--datafile=/y"})
	if err != nil {
		t.Fatal(err)
	}
	if fs.Lookup("mode").Value.String() != "bridge" || *target != "kube-system" || fs.Lookup("log-level").Value.String() != "debug" {
		t.Errorf("aliases did not set their flags: mode %s target %s log-level %s", fs.Lookup("mode").Value, *target, fs.Lookup("log-level").Value)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	w := strings.Join(s.Warnings(set), "\n")
	for _, want := range []string{
		"--router.datafile is the original router controller's flag: pass it to netd router (as --datafile or --router.datafile); netd broker ignores it",
		"--coredns-configure is ignored by netd broker: the chart connects the cluster DNS to the kubelink DNS: dns.clusterDNSIntegration.enabled",
		"--broker.dns-propagation (--dns-propagation) is ignored by netd broker: the DNS mode is the kubelink CoreDNS plugin's: its dns-propagation option",
		"--n (--namespace-local-access-only) is ignored by netd broker: netd reads and writes what its ServiceAccount's RBAC allows",
		"--datafile is a netd router flag (the original's router controller used it): netd broker ignores it",
	} {
		if !strings.Contains(w, want) {
			t.Errorf("no warning %q in\n%s", want, w)
		}
	}
	for _, quiet := range []string{"--broker.mode", "--namespace", "-D", "--D"} {
		if strings.Contains(w, quiet+" ") {
			t.Errorf("a warning names %s, which works:\n%s", quiet, w)
		}
	}
	if c := s.CanonicalSet(set); !c["mode"] || !c["dns-propagation"] || c["broker.mode"] || !c["target"] {
		t.Errorf("canonical set %v", c)
	}
	if !s.Defined("mode") || s.Defined("coredns-configure") || s.Defined("broker.mode") {
		t.Error("Defined: mode is the role's, coredns-configure and broker.mode are not")
	}
	// An error about a flag given under an alias names the alias too.
	if err := s.Explain(errString(`--mode "x": bad`)); err.Error() != `--mode "x": bad (given as --broker.mode)` {
		t.Errorf("explained: %v", err)
	}
	if err := s.Explain(errString(`--other: bad`)); err.Error() != `--other: bad` {
		t.Errorf("explained without an alias: %v", err)
	}
	if (*Seed)(nil).Explain(nil) != nil {
		t.Error("nil")
	}

	// -h: the role's flags, not the original's.
	var help strings.Builder
	fs.SetOutput(&help)
	fs.Usage()
	if !strings.Contains(help.String(), "-mode") || strings.Contains(help.String(), "coredns") || strings.Contains(help.String(), "broker.mode") ||
		!strings.Contains(help.String(), "Migrating from the original kubelink") {
		t.Errorf("usage:\n%s", help.String())
	}
}

type errString string

func (e errString) Error() string { return string(e) }

// TestSeedValuesChecked: flags netd does not use still reject bad values,
// and the error names the flag as given.
func TestSeedValuesChecked(t *testing.T) {
	for _, tc := range []struct{ role, arg string }{
		{RoleBroker, "--dns-propagation=forward"},
		{RoleBroker, "--broker.dns-propagation=forward"},
		{RoleRouter, "--broker.dns-propagation=forward"},
		{RoleBroker, "--coredns-service-ip=bogus"},
		{RoleBroker, "--coredns-configure=maybe"},
		{RoleBroker, "--coredns-deployment=Not_A_Name"},
		{RoleBroker, "--secret-manage-mode=manual"},
		{RoleBroker, "--dns-name=bad_name"},
		{RoleBroker, "--service=a/b/c"},
		{RoleRouter, "--service-account=Kube-System/coredns"},
		{RoleBroker, "--lease-renew-deadline=-1s"},
		{RoleBroker, "--lease-retry-period=x"},
		{RoleBroker, "--ipip=gre"},
		{RoleBroker, "--router.ipip=gre"},
		{RoleBroker, "--pool.size=-1"},
		{RoleRouter, "--pod-cidr=10.0.0.0"},
		{RoleRouter, "--router.node-cidr=x"},
		{RoleRouter, "--mode=ipip"},
		{RoleRouter, "--broker.mode=ipip"},
		{RoleRouter, "--meshdns-service-ip=x"},
		{RoleRouter, "--kubeconfig.apiserver-override=api:443"},
		{RoleRouter, "--bind-address-http=not an address"},
		{RoleRouter, "--grace-period=soon"},
		{RoleRouter, "--ifce-name=a-very-long-interface"},
		{RoleBroker, "--c=Broker"},
		{RoleBroker, "-D=loud"},
	} {
		fs, _, _ := stubRole(t, tc.role)
		err := fs.Parse([]string{tc.arg})
		name := strings.TrimLeft(strings.SplitN(tc.arg, "=", 2)[0], "-")
		if err == nil || !strings.Contains(err.Error(), "-"+name+":") {
			t.Errorf("netd %s %s: error %v, want one naming -%s", tc.role, tc.arg, err, name)
		}
	}
	// Good values, in every spelling the original took.
	fs, _, _ := stubRole(t, RoleRouter)
	if err := fs.Parse([]string{"--dns-propagation=DNS", "--broker.dns-propagation=none", "--coredns-service-ip=100.64.0.11", "--service-account=kube-system/coredns",
		"--service=kubelink", "--secret-manage-mode=self", "--dns-name=kubelink.example.com.", "--bind-address-http=0.0.0.0", "--lease-renew-deadline=10s",
		"--kubeconfig.apiserver-override=https://api.example.com:6443", "--router.pool.size=0x10", "--broker.route-table=100", "--node-cidr=", "-D", "Trace"}); err != nil {
		t.Fatal(err)
	}
}

func TestSeedProcessFlags(t *testing.T) {
	for _, tc := range []struct {
		role, controllers string
		err, warn         string
	}{
		{RoleBroker, "", "", ""},
		{RoleBroker, "broker", "", ""},
		{RoleRouter, "router", "", ""},
		{RoleBroker, "router", "this is netd broker; run netd router", ""},
		{RoleRouter, "broker", "this is netd router; run netd broker", ""},
		{RoleBroker, "broker,router", "", "the router controller is netd router"},
		{RoleRouter, "all", "", "netd router runs the router controller only"},
		{RoleBroker, "kubelink", "", ""}, // a group of the original's
	} {
		p := &SeedProcessFlags{Controllers: tc.controllers}
		err := p.Validate(tc.role)
		if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) || err != nil && !strings.Contains(err.Error(), "--controllers") {
			t.Errorf("%s --controllers %q: %v, want %q", tc.role, tc.controllers, err, tc.err)
		}
		if tc.err != "" {
			continue
		}
		w := strings.Join(p.Warnings(tc.role), "\n")
		if (w == "") != (tc.warn == "") || !strings.Contains(w, tc.warn) {
			t.Errorf("%s --controllers %q: warnings %q, want %q", tc.role, tc.controllers, w, tc.warn)
		}
	}
	p := &SeedProcessFlags{}
	if _, ok := p.Level(); ok {
		t.Error("a level without --log-level")
	}
	for in, want := range map[string]string{"trace": "DEBUG", "Debug": "DEBUG", "info": "INFO", "warning": "WARN", "fatal": "ERROR", "panic": "ERROR"} {
		p.LogLevel = in
		if l, ok := p.Level(); !ok || l.String() != want {
			t.Errorf("--log-level %s is %s, want %s", in, l, want)
		}
	}
}

func TestCheckRouteTable(t *testing.T) {
	for _, tc := range []struct {
		table, prio int
		want        string
	}{
		{0, 0, ""}, {254, 0, ""}, {100, 1000, ""}, {-1, 0, "--route-table"}, {255, 0, "reserved"}, {253, 0, "reserved"},
		{100, 32766, "--rule-priority"}, {100, 0, "--rule-priority"},
	} {
		err := CheckRouteTable(tc.table, tc.prio)
		if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("table %d priority %d: %v, want %q", tc.table, tc.prio, err, tc.want)
		}
	}
}

// TestSeedWhyNamesReplacements: every reason a flag is ignored says what
// to do instead (a flag, a chart value, an option, a command, or
// "remove it").
func TestSeedWhyNamesReplacements(t *testing.T) {
	var names []string
	for _, sf := range SeedFlags {
		for _, use := range []SeedUse{sf.Broker, sf.Router} {
			if use.Why == "" {
				continue
			}
			if !regexp.MustCompile(`--[a-z]|chart|option|netd |remove it|kubeconfig|pod's|Lease`).MatchString(use.Why) {
				names = append(names, sf.Name+": "+use.Why)
			}
		}
	}
	sort.Strings(names)
	if len(names) > 0 {
		t.Errorf("reasons without a replacement:\n%s", strings.Join(names, "\n"))
	}
}
