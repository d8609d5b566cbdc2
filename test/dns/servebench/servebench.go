// Package servebench is what the in-process ServeDNS benchmarks share (the
// kubelink plugin's clusterset zone in plugin/, CoreDNS's kubernetes
// multicluster in test/dns): the hosts plugin as the baseline holding the
// same names, and a comparison that first checks that every contender
// gives the same addresses, then measures each one's ServeDNS with its
// reply packed as process CPU time per query.
package servebench

import (
	"context"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	coretest "github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"

	// The hosts plugin registers its setup function for caddy.
	_ "github.com/coredns/coredns/plugin/hosts"
)

// Contender is one handler under measurement.
type Contender struct {
	Name  string
	Serve func(context.Context, dns.ResponseWriter, *dns.Msg) (int, error)
}

// Hosts is the hosts plugin for zone holding hostsFile's lines inline,
// answering with ttl 5 and without reverse records.
func Hosts(tb testing.TB, zone, hostsFile string) plugin.Handler {
	tb.Helper()
	var conf strings.Builder
	conf.WriteString("hosts {\n")
	for _, l := range strings.Split(strings.TrimSpace(hostsFile), "\n") {
		conf.WriteString("    " + l + "\n")
	}
	conf.WriteString("    ttl 5\n    no_reverse\n    reload 0\n}")
	hc := caddy.NewTestController("dns", conf.String())
	hc.ServerBlockKeys = []string{zone}
	setup, err := caddy.DirectiveAction("dns", "hosts")
	if err != nil {
		tb.Fatal(err)
	}
	if err := setup(hc); err != nil {
		tb.Fatal(err)
	}
	return dnsserver.GetConfig(hc).Plugin[0](nil)
}

// Compare runs, for the query "name TYPE", one sub-benchmark
// "<kind>/<contender>" per contender, after checking that all of them
// answer with the same, non-empty set of addresses.
func Compare(b *testing.B, ctx context.Context, kind, query string, cs ...Contender) {
	b.Helper()
	f := strings.Fields(query)
	req := new(dns.Msg)
	req.SetQuestion(f[0], dns.StringToType[f[1]])
	want := ""
	for i, c := range cs {
		w := &packingWriter{}
		if _, err := c.Serve(ctx, w, req); err != nil {
			b.Fatal(err)
		}
		got := Addrs(w.last)
		if got == "" || i > 0 && got != want {
			b.Fatalf("%s: %s answers %q, %s %q", query, c.Name, got, cs[0].Name, want)
		}
		want = got
	}
	for _, c := range cs {
		b.Run(kind+"/"+c.Name, func(b *testing.B) {
			w := &packingWriter{}
			b.ReportAllocs()
			before := cpuNanos()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.Serve(ctx, w, req); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuNanos()-before)/float64(b.N), "cpu-ns/op")
		})
	}
}

// Addrs are the A/AAAA addresses of m's answer, sorted, joined by commas.
func Addrs(m *dns.Msg) string {
	if m == nil {
		return ""
	}
	return strings.Join(AnswerAddrs(m.Answer), ",")
}

// AnswerAddrs are the A/AAAA addresses of rrs, sorted.
func AnswerAddrs(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		switch v := rr.(type) {
		case *dns.A:
			out = append(out, v.A.String())
		case *dns.AAAA:
			out = append(out, v.AAAA.String())
		}
	}
	sort.Strings(out)
	return out
}

// packingWriter packs every reply as the server would before sending it.
type packingWriter struct {
	coretest.ResponseWriter
	last *dns.Msg
}

func (w *packingWriter) WriteMsg(m *dns.Msg) error {
	w.last = m
	_, err := m.Pack()
	return err
}

// cpuNanos is the process's CPU time (user and system).
func cpuNanos() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}
