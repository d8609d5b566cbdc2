// Package dnsperf is what the DNS benchmarks (make bench-dns) share: CoreDNS
// processes started and stopped as a group, free loopback ports, one
// dnsperf run measured as the server process's CPU time per completed
// query — the steady measure on a noisy machine —, the rounds of subject
// against baseline in ABBA order and their ratios, and the clusterset
// benchmarks' data set.
package dnsperf

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Median of a non-empty sample.
func Median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

var (
	completedRE = regexp.MustCompile(`Queries completed:\s+(\d+)`)
	qpsRE       = regexp.MustCompile(`Queries per second:\s+([\d.]+)`)
	lostRE      = regexp.MustCompile(`Queries lost:\s+(\d+)`)
)

// Measure runs dnsperf with the queries file against 127.0.0.1:port at
// qps for seconds and returns the CPU microseconds of process pid per
// completed query, the achieved rate and the count; name labels the
// setup in messages.
func Measure(pid, port int, name, queries string, qps, seconds int) (float64, float64, int, error) {
	before, err := CPUTicks(pid)
	if err != nil {
		return 0, 0, 0, err
	}
	out, err := exec.Command("dnsperf", "-s", "127.0.0.1", "-p", strconv.Itoa(port), "-d", queries,
		"-l", strconv.Itoa(seconds), "-Q", strconv.Itoa(qps), "-c", "4", "-t", "2").CombinedOutput()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("dnsperf %s: %w\n%s", name, err, out)
	}
	after, err := CPUTicks(pid)
	if err != nil {
		return 0, 0, 0, err
	}
	m, q := completedRE.FindSubmatch(out), qpsRE.FindSubmatch(out)
	if m == nil || q == nil {
		return 0, 0, 0, fmt.Errorf("unexpected dnsperf output:\n%s", out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	got, _ := strconv.ParseFloat(string(q[1]), 64)
	if l := lostRE.FindSubmatch(out); l != nil && string(l[1]) != "0" {
		fmt.Printf("  (%s: %s queries lost)\n", name, l[1])
	}
	if n == 0 {
		return 0, 0, 0, fmt.Errorf("dnsperf %s: no query completed:\n%s", name, out)
	}
	return float64(after-before) / clockTicks * 1e6 / float64(n), got, n, nil
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// CPUTicks is utime+stime of a process.
func CPUTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may contain spaces; fields follow the last ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	return u + st, nil
}

// Start starts CoreDNS bin with conf (working directory: conf's), its
// output in logPath, in a process group of its own for Stop.
func Start(ctx context.Context, bin, conf, logPath string) (*exec.Cmd, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, "-conf", conf, "-quiet")
	cmd.Dir = filepath.Dir(conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	return cmd, nil
}

// Stop ends a process group started by Start and waits for it.
func Stop(cmd *exec.Cmd) {
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	_ = cmd.Wait()
}

// FreePorts finds n ports free on 127.0.0.1 for both UDP and TCP.
func FreePorts(n int) ([]int, error) {
	var out []int
	var hold []net.PacketConn
	defer func() {
		for _, h := range hold {
			h.Close()
		}
	}()
	for len(out) < n {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		hold = append(hold, c)
		p := c.LocalAddr().(*net.UDPAddr).Port
		if l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p)); err == nil {
			l.Close()
			out = append(out, p)
		}
	}
	return out, nil
}

// WaitDNS waits until a server accepts TCP on 127.0.0.1:port, at most
// timeout.
func WaitDNS(port int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no DNS server on port %d after %s", port, timeout)
}
