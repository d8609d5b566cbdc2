package remotecfg

import (
	"flag"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
)

func parse(t *testing.T, args ...string) *Config {
	t.Helper()
	c := &Config{}
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	c.Flags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		args []string
		err  string
	}{
		{nil, ""},
		{[]string{"--output", "kubeconfig"}, ""},
		{[]string{"--output", "yaml"}, `--output "yaml"`},
		{[]string{"--output", "secret"}, "needs --secret-name and --secret-namespace"},
		{[]string{"--output", "apiaccess", "--secret-name", "a"}, "needs --secret-name and --secret-namespace"},
		{[]string{"--output", "apiaccess", "--secret-name", "a", "--secret-namespace", "b"}, ""},
		{[]string{"--token-duration", "1m"}, "at least 10m"},
		{[]string{"--token-duration", "24h"}, ""},
		{[]string{"--namespace", ""}, "must not be empty"},
	} {
		err := parse(t, c.args...).Validate()
		if (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%v: error %v, want %q", c.args, err, c.err)
		}
	}
}

// The rules are the read-only set netd sync needs, nothing more.
func TestRulesReadOnly(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range Rules {
		if strings.Join(r.Verbs, ",") != "get,list,watch" || len(r.ResourceNames) != 0 || len(r.NonResourceURLs) != 0 {
			t.Errorf("rule %+v is not plain read-only", r)
		}
		for _, res := range r.Resources {
			seen[r.APIGroups[0]+"/"+res] = true
		}
	}
	want := []string{"/services", "/namespaces", "discovery.k8s.io/endpointslices", "multicluster.x-k8s.io/serviceexports", "kubelink.mandelsoft.org/meshservices"}
	if len(seen) != len(want) {
		t.Errorf("resources %v, want %v", seen, want)
	}
	for _, w := range want {
		if !seen[w] {
			t.Errorf("%s not granted", w)
		}
	}
}

func TestKubeconfigRoundTrip(t *testing.T) {
	b := Kubeconfig("x", &Credential{Server: "https://10.0.0.1:6443", CA: []byte("-----BEGIN CERTIFICATE-----\n"), Token: "tok"})
	raw, err := clientcmd.Load(b)
	if err != nil {
		t.Fatal(err)
	}
	if raw.CurrentContext != "x" || raw.Clusters["x"].Server != "https://10.0.0.1:6443" || raw.AuthInfos["x"].Token != "tok" {
		t.Fatalf("kubeconfig:\n%s", b)
	}
}
