// Package procmem reads this process's resident memory from /proc, for the
// benchmarks' RSS figures.
package procmem

import (
	"os"
	"strconv"
	"strings"
)

// Usage is resident memory in MB.
type Usage struct {
	// RSS is the current resident set size (VmRSS).
	RSS float64
	// Peak is the highest resident set size so far (VmHWM).
	Peak float64
}

// Self returns this process's usage; zero where /proc/self/status cannot be
// read.
func Self() Usage {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return Usage{}
	}
	return parse(string(b))
}

func parse(status string) Usage {
	var u Usage
	for _, l := range strings.Split(status, "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			continue
		}
		n, _ := strconv.ParseFloat(f[0], 64)
		switch k {
		case "VmRSS":
			u.RSS = n / 1024
		case "VmHWM":
			u.Peak = n / 1024
		}
	}
	return u
}
