package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/kubelink/kubelink/netd/runtime"
)

// Values the original manifests could pass, per flag (default by kind).
var seedSamples = map[string][]string{
	"advertised-port":               {"443"},
	"bind-address-http":             {"0.0.0.0"},
	"broker-port":                   {"8188"},
	"cacertfile":                    {"/etc/kubelink/ca.crt"},
	"certfile":                      {"/etc/kubelink/tls.crt", "--keyfile=/etc/kubelink/tls.key", "--cacertfile=/etc/kubelink/ca.crt"},
	"cluster-domain":                {"cluster.local"},
	"cluster-name":                  {"kubelink1"},
	"config":                        {"/etc/kubelink/config.yaml"},
	"controllers":                   {"%role"},
	"coredns-deployment":            {"kubelink-coredns"},
	"coredns-secret":                {"kubelink-coredns"},
	"coredns-service-ip":            {"100.64.0.11"},
	"cpuprofile":                    {"/tmp/netd.prof"},
	"datafile":                      {"/var/lib/kubelink/routes"},
	"dns-advertisement":             {"true", "--mode=bridge"},
	"dns-name":                      {"kubelink.kubelink1.example.com"},
	"dns-propagation":               {"kubernetes"},
	"dns-service-ip":                {"100.64.0.10"},
	"ifce-name":                     {"kubelink"},
	"ipip":                          {"shared"},
	"keyfile":                       {"/etc/kubelink/tls.key"},
	"kubeconfig":                    {"/etc/kubelink/kubeconfig"},
	"kubeconfig.apiserver-override": {"https://api.kubelink1.example.com"},
	"kubeconfig.id":                 {"default"},
	"kubeconfig.migration-ids":      {"old"},
	"lease-duration":                {"15s"},
	"lease-name":                    {"kubelink"},
	"link-address":                  {"192.168.0.11/24"},
	"log-level":                     {"debug"},
	"maintainer":                    {"kubelink"},
	"accepted-maintainers":          {"kubelink"},
	"mesh-domain":                   {"kubelink"},
	"meshdns-service-ip":            {"100.64.0.12"},
	"mode":                          {"bridge"},
	"name":                          {"kubelink"},
	"namespace":                     {"kube-system"},
	"node-cidr":                     {"10.250.0.0/16"},
	"node-ip":                       {"10.250.0.5"},
	"plugin-file":                   {"/plugins"},
	"pod-cidr":                      {"100.96.0.0/11"},
	"route-table":                   {"100"},
	"rule-priority":                 {"1000"},
	"secret":                        {"kubelink"},
	"secret-manage-mode":            {"self"},
	"served-links":                  {"kubelink2,kubelink3"},
	"server-port-http":              {"8080"},
	"service":                       {"kubelink"},
	"service-account":               {"coredns", "--mode=bridge"},
	"service-cidr":                  {"100.64.0.0/20"},
	"version":                       {"false"},
}

// Bad values; flags missing here take any string (paths, names of things
// netd does not have).
var seedBad = map[string]string{
	"bind-address-http": "not an address", "cluster-domain": "cluster..local", "cluster-name": "Kubelink_1", "controllers": "Broker!",
	"coredns-deployment": "Not_A_Name", "coredns-secret": "Not_A_Name", "coredns-service-ip": "100.64.0", "dns-name": "bad_name",
	"dns-propagation": "forward", "dns-service-ip": "100.64.0", "ifce-name": "kubelink/0", "ipip": "gre", "kubeconfig.apiserver-override": "api:443",
	"lease-name": "Kubelink_Lease", "link-address": "192.168.0.11", "log-level": "loud", "mesh-domain": "bad_domain", "meshdns-service-ip": "x",
	"mode": "ipip", "namespace": "Kube-System", "node-cidr": "10.250.0.0", "node-ip": "10.250.0", "pod-cidr": "bogus", "secret": "a/b/c",
	"secret-manage-mode": "manual", "served-links": "a,B", "service": "a/b/c", "service-account": "a/b/c", "service-cidr": "bogus",
	"advertised-port": "-1", "broker-port": "70000", "server-port-http": "70000", "lease-duration": "100ms", "lease-renew-deadline": "-1s",
	"route-table": "255", "rule-priority": "x",
}

var freeForm = map[string]bool{"accepted-maintainers": true, "cacertfile": true, "certfile": true, "keyfile": true, "config": true,
	"cpuprofile": true, "datafile": true, "kubeconfig": true, "kubeconfig.id": true, "kubeconfig.migration-ids": true, "maintainer": true,
	"name": true, "plugin-file": true}

// seedForm is one spelling of an original flag.
type seedForm struct {
	arg  string // as given, without dashes
	flag *runtime.SeedFlag
	// other: the original controller of a prefixed form that is not
	// this role's.
	other string
}

func seedForms() []seedForm {
	var out []seedForm
	for i := range runtime.SeedFlags {
		sf := &runtime.SeedFlags[i]
		out = append(out, seedForm{arg: sf.Name, flag: sf})
		if sf.Short != "" {
			out = append(out, seedForm{arg: sf.Short, flag: sf})
		}
		for _, p := range sf.Prefixed {
			out = append(out, seedForm{arg: p + "." + sf.Name, flag: sf, other: p})
		}
	}
	return out
}

func baseline(role string) []string {
	if role == "router" {
		return []string{"--lease-name=kubelink"} // required
	}
	return nil
}

func sampleArgs(f seedForm, role string) []string {
	v := seedSamples[f.flag.Name]
	if len(v) == 0 {
		switch f.flag.Kind {
		case runtime.KindBool:
			v = []string{"true"}
		case runtime.KindDuration:
			v = []string{"30s"}
		case runtime.KindInt, runtime.KindUint:
			v = []string{"4"}
		default:
			v = []string{"x"}
		}
	}
	val := strings.ReplaceAll(v[0], "%role", role)
	return append(append(baseline(role), "--"+f.arg+"="+val), v[1:]...)
}

// parseRole parses and checks a role's command line as netd does.
func parseRole(role string, args []string) (warnings []string, err error) {
	r := roleOf(role)
	set, err := r.parse(args, io.Discard)
	if err != nil {
		return nil, err
	}
	if err := r.validate(); err != nil {
		return nil, err
	}
	return r.ignored(set), nil
}

// TestSeedFlags: every flag of the original kubelink's command-line
// reference, in every spelling (short, --broker., --router.), parses in
// both roles. Where the role uses it nothing is said; otherwise the
// warning names the flag as given and what replaces it (or the netd role
// that takes it).
func TestSeedFlags(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "kubelink")
	for _, role := range []string{"broker", "router"} {
		for _, f := range seedForms() {
			if f.flag.Name == "help" {
				continue
			}
			args := sampleArgs(f, role)
			w, err := parseRole(role, args)
			if err != nil {
				t.Errorf("netd %s %v: %v", role, args, err)
				continue
			}
			all := strings.Join(w, "\n")
			use := f.flag.Use(role)
			mine := f.other == "" || f.other == role
			switch {
			case !mine:
				want := "--" + f.arg + " is the original " + f.other + " controller's flag: pass it to netd " + f.other
				if !strings.Contains(all, want) {
					t.Errorf("netd %s %v: warnings %q, want %q", role, args, w, want)
				}
			case use.Works:
				if strings.Contains(all, "--"+f.arg+" ") {
					t.Errorf("netd %s %v: a warning names a flag that works: %q", role, args, w)
				}
			case use.Other != "":
				want := "is a netd " + use.Other + " flag"
				if !strings.Contains(all, "--"+f.arg) || !strings.Contains(all, want) {
					t.Errorf("netd %s %v: warnings %q, want --%s %s", role, args, w, f.arg, want)
				}
			default:
				why := strings.ReplaceAll(use.Why, "<role>", role)
				if !strings.Contains(all, "--"+f.arg) || !strings.Contains(all, "is ignored by netd "+role+": "+why) {
					t.Errorf("netd %s %v: warnings %q, want --%s with %q", role, args, w, f.arg, why)
				}
			}
		}
	}
}

// TestSeedFlagsBadValues: a bad value of every original flag that takes
// one fails in both roles, and the error names the flag as given.
func TestSeedFlagsBadValues(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "kubelink")
	for _, role := range []string{"broker", "router"} {
		for _, f := range seedForms() {
			name := f.flag.Name
			if name == "help" {
				continue
			}
			bad, ok := seedBad[name]
			if !ok {
				switch f.flag.Kind {
				case runtime.KindBool:
					bad = "maybe"
				case runtime.KindDuration, runtime.KindInt, runtime.KindUint:
					bad = "x"
				default:
					if !freeForm[name] {
						t.Errorf("--%s: no bad value to test, and not a free-form string", name)
					}
					continue
				}
			}
			args := append(baseline(role), "--"+f.arg+"="+bad)
			if name == "lease-duration" {
				args = append(args, "--lease-name=kubelink") // only matters with an election
			}
			if _, err := parseRole(role, args); err == nil || !strings.Contains(err.Error(), "-"+f.arg) {
				t.Errorf("netd %s %v: error %v, want one naming -%s", role, args, err, f.arg)
			}
		}
	}
}

// TestSeedManifests: the original example manifests' argument lists start
// as they are, with a warning for each flag netd does not use.
func TestSeedManifests(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "kubelink")
	for _, tc := range []struct {
		role string
		args []string
		warn []string
	}{
		{"router", []string{"--controllers=router", "--server-port-http=8080", "--pod-cidr=100.96.0.0/11", "--node-cidr=10.250.0.0/16", "--lease-name=kubelink"},
			[]string{"--pod-cidr is ignored by netd router", "--node-cidr is ignored by netd router"}},
		{"broker", []string{"--controllers=broker", "--mode=bridge", "--secret=kubelink", "--server-port-http=8180", "--broker-port=8188",
			"--pod-cidr=100.96.0.0/11", "--node-cidr=10.250.0.0/16", "--service-cidr=100.64.0.0/20", "--ifce-name=kubelink", "--ipip=shared",
			"--dns-advertisement", "--dns-propagation=dns", "--coredns-configure"},
			[]string{"--node-cidr is ignored", "--ipip is ignored by netd broker: the encapsulation towards the gateway is the routers': netd router --ipip",
				"--dns-propagation is ignored by netd broker: the DNS mode is the kubelink CoreDNS plugin's: its dns-propagation option",
				"--coredns-configure is ignored by netd broker: the chart connects the cluster DNS to the kubelink DNS: dns.clusterDNSIntegration.enabled"}},
		// The seed's "typical option set" for the full DNS service.
		{"broker", []string{"--mode=bridge", "--dns-advertisement", "--service-account=coredns", "--dns-propagation=kubernetes", "--cluster-name=kubelink1", "--coredns-configure"},
			[]string{"--dns-propagation is ignored by netd broker"}},
		// --service-account works in bridge mode only: no hello otherwise.
		{"broker", []string{"--mode=wireguard", "--secret=wireguard", "--service-account=kube-system/coredns"},
			[]string{"--service-account has no effect in mode wireguard", "netd kubeconfig --kubeconfig <this cluster> --output apiaccess"}},
		{"broker", []string{"--mode=wireguard", "--secret=wireguard", "--node-ip=10.250.0.5", "--lease-renew-deadline=10s", "--lease-retry-period=2s", "--router.datafile=/x"},
			[]string{"--node-ip is ignored by netd broker", "--lease-retry-period is ignored by netd broker: the retry period is derived from --lease-duration",
				"--router.datafile is the original router controller's flag"}},
	} {
		w, err := parseRole(tc.role, tc.args)
		if err != nil {
			t.Errorf("netd %s %v: %v", tc.role, tc.args, err)
			continue
		}
		all := strings.Join(w, "\n")
		for _, want := range tc.warn {
			if !strings.Contains(all, want) {
				t.Errorf("netd %s: no warning %q in\n%s", tc.role, want, all)
			}
		}
	}
}

// TestSeedProcessFlagsWork: -h prints the role's flags and exits 0,
// --version prints the version, --controllers naming the other role stops
// it, --log-level sets the level.
func TestSeedProcessFlagsWork(t *testing.T) {
	var out, errb bytes.Buffer
	if rc := run([]string{"broker", "-h"}, &out, &errb); rc != 0 || !strings.Contains(errb.String(), "-mode") || strings.Contains(errb.String(), "coredns") {
		t.Errorf("-h rc=%d:\n%s", rc, errb.String())
	}
	out.Reset()
	if rc := run([]string{"router", "--version"}, &out, &errb); rc != 0 || strings.TrimSpace(out.String()) != version {
		t.Errorf("--version rc=%d out=%q", rc, out.String())
	}
	errb.Reset()
	if rc := run([]string{"broker", "--controllers=router", "--kubeconfig", "/nonexistent"}, &out, &errb); rc != 1 || !strings.Contains(errb.String(), "run netd router") {
		t.Errorf("--controllers=router in netd broker rc=%d:\n%s", rc, errb.String())
	}
	r := roleOf("router")
	if _, err := r.parse([]string{"-D", "warning"}, io.Discard); err != nil || r.level().String() != "WARN" {
		t.Errorf("-D warning: level %s (%v)", r.level(), err)
	}
	r = roleOf("router")
	if _, err := r.parse([]string{"--log-level=error", "-v"}, io.Discard); err != nil || r.level().String() != "DEBUG" {
		t.Errorf("-v beats --log-level: level %s (%v)", r.level(), err)
	}
	if _, err := roleOf("broker").parse([]string{"--help"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: %v", err)
	}
	// --cpuprofile writes a profile even when the role fails.
	prof := t.TempDir() + "/cpu.prof"
	if rc := run([]string{"broker", "--cpuprofile", prof, "--kubeconfig", "/nonexistent"}, &out, &errb); rc != 1 {
		t.Errorf("rc=%d", rc)
	}
	if st, err := os.Stat(prof); err != nil || st.Size() == 0 {
		t.Errorf("no CPU profile: %v", err)
	}
}

// TestREADMEMigrationTable: the README's migration table lists every flag
// of the original's reference.
func TestREADMEMigrationTable(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "### Migrating from the original kubelink")
	if i < 0 {
		t.Fatal("no migration section in README.md")
	}
	s = s[i:]
	if j := strings.Index(s[4:], "\n## "); j > 0 {
		s = s[:j+4]
	}
	for _, sf := range runtime.SeedFlags {
		if !strings.Contains(s, "`--"+sf.Name+"`") {
			t.Errorf("the migration table does not list --%s", sf.Name)
		}
	}
	for _, p := range []string{"`--broker.", "`--router."} {
		if !strings.Contains(s, p) {
			t.Errorf("the migration section does not explain the %s forms", p)
		}
	}
}
