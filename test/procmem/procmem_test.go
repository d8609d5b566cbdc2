package procmem

import "testing"

func TestParse(t *testing.T) {
	u := parse("Name:\tbench\nVmPeak:\t  900000 kB\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nThreads:\t12\n")
	if u.RSS != 100 || u.Peak != 200 {
		t.Errorf("parse: %+v, want RSS 100 MB, Peak 200 MB", u)
	}
}

func TestSelf(t *testing.T) {
	u := Self()
	if u.RSS <= 0 || u.Peak < u.RSS {
		t.Errorf("Self: %+v, want 0 < RSS <= Peak", u)
	}
}
