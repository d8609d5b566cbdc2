package dnsperf

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Setup is one server block under measurement: its port, dnsperf's query
// file and rate, and per round the CPU microseconds per query and the rate
// achieved.
type Setup struct {
	Name    string
	Port    int
	Queries string
	QPS     int
	CPU     []float64
	QPSAll  []float64
}

// Pair is one subject (A) measured against its baseline (B); Ratios holds
// one A/B ratio of CPU per query per round.
type Pair struct {
	Ratio  string
	A, B   *Setup
	Ratios []float64
}

// CheckTools fails when dnsperf is not installed or the test environment's
// etcd and kube-apiserver are not in binDir.
func CheckTools(binDir string) error {
	if _, err := exec.LookPath("dnsperf"); err != nil {
		return errors.New("dnsperf not found (Debian package dnsperf)")
	}
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			return fmt.Errorf("%s not found in %s: run `make testenv`", b, binDir)
		}
	}
	return nil
}

// Rounds warms every setup up (one 1 s run), then measures rounds rounds
// of seconds each against the CoreDNS process pid, the two sides of every
// pair in ABBA order (which cancels slow drifts of the machine's load),
// printing each run with names padded to width.
func Rounds(pid int, pairs []*Pair, rounds, seconds, width int) error {
	for _, p := range pairs {
		for _, s := range []*Setup{p.A, p.B} {
			if _, _, _, err := Measure(pid, s.Port, s.Name, s.Queries, s.QPS, 1); err != nil {
				return err
			}
		}
	}
	for r := 0; r < rounds; r++ {
		for _, p := range pairs {
			order := []*Setup{p.A, p.B}
			if r%2 == 1 {
				order = []*Setup{p.B, p.A}
			}
			for _, s := range order {
				cpu, qps, n, err := Measure(pid, s.Port, s.Name, s.Queries, s.QPS, seconds)
				if err != nil {
					return err
				}
				fmt.Printf("round %d %-*s %8d queries %9.0f qps %8.2f us CPU/query\n", r+1, width, s.Name, n, qps, cpu)
				s.CPU = append(s.CPU, cpu)
				s.QPSAll = append(s.QPSAll, qps)
			}
			p.Ratios = append(p.Ratios, p.A.CPU[r]/p.B.CPU[r])
		}
	}
	return nil
}

// PrintRatios prints every pair's median, minimum and maximum ratio, and
// the line `dns ratios: <ratio>=<median> ...` that make bench-dns ends with.
func PrintRatios(pairs []*Pair) {
	var last []string
	for _, p := range pairs {
		sorted := append([]float64(nil), p.Ratios...)
		sort.Float64s(sorted)
		fmt.Printf("%-24s median %.3f  min %.3f  max %.3f\n", p.Ratio, Median(p.Ratios), sorted[0], sorted[len(sorted)-1])
		last = append(last, fmt.Sprintf("%s=%.3f", p.Ratio, Median(p.Ratios)))
	}
	fmt.Printf("dns ratios: %s\n", strings.Join(last, " "))
}
