package bridge

import (
	"bytes"
	"errors"
	"testing"
)

func encodeData(pkts ...[]byte) []byte {
	var payload []byte
	for _, p := range pkts {
		payload = AppendPacket(payload, p)
	}
	return append(AppendHeader(nil, FrameData, len(payload)), payload...)
}

func TestFrameRoundTrip(t *testing.T) {
	pkts := [][]byte{bytes.Repeat([]byte{1}, 1500), {0x45, 0, 0, 20}, bytes.Repeat([]byte{2}, maxPacket)}
	b := encodeData(pkts...)
	b = append(b, AppendHeader(nil, FramePing, 0)...)
	r := bytes.NewReader(b)
	typ, payload, _, err := ReadFrame(r, nil)
	if err != nil || typ != FrameData {
		t.Fatalf("typ %d err %v", typ, err)
	}
	var got [][]byte
	if err := SplitPackets(payload, func(p []byte) { got = append(got, append([]byte(nil), p...)) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(pkts) || !bytes.Equal(got[2], pkts[2]) {
		t.Fatalf("got %d packets", len(got))
	}
	if typ, payload, _, err := ReadFrame(r, nil); err != nil || typ != FramePing || len(payload) != 0 {
		t.Fatalf("ping: %d %v", typ, err)
	}
}

func TestFrameGarbage(t *testing.T) {
	for name, b := range map[string][]byte{
		"http":      []byte("GET / HTTP/1.1\r\n\r\n"),
		"type":      {'K', 'L', 9, 0, 0, 0, 0, 0},
		"reserved":  {'K', 'L', 2, 1, 0, 0, 0, 0},
		"too large": AppendHeader(nil, FrameData, MaxFrame+1),
	} {
		if _, _, _, err := ReadFrame(bytes.NewReader(b), nil); !errors.Is(err, ErrGarbage) {
			t.Errorf("%s: err %v, want garbage", name, err)
		}
	}
	if err := SplitPackets([]byte{0, 10, 1, 2}, func([]byte) {}); !errors.Is(err, ErrGarbage) {
		t.Errorf("truncated packet: %v", err)
	}
	if err := SplitPackets([]byte{0, 0}, func([]byte) {}); !errors.Is(err, ErrGarbage) {
		t.Errorf("empty packet: %v", err)
	}
}

// FuzzDecode feeds arbitrary bytes to the decoder: it must never panic,
// never return a payload larger than the maximum, and packets it accepts
// must re-encode to the same payload.
func FuzzDecode(f *testing.F) {
	f.Add(encodeData([]byte{0x45, 1, 2, 3}, bytes.Repeat([]byte{9}, 300)))
	f.Add(AppendHeader(nil, FramePing, 0))
	f.Add(append(AppendHeader(nil, FrameHello, 2), '{', '}'))
	f.Add([]byte("KL\x02\x00\x00\x00\x00\x03\x00\x05a"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		var buf []byte
		for {
			typ, payload, nb, err := ReadFrame(r, buf)
			buf = nb
			if err != nil {
				return
			}
			if len(payload) > MaxFrame {
				t.Fatalf("payload of %d bytes", len(payload))
			}
			if typ != FrameData {
				continue
			}
			var re []byte
			if err := SplitPackets(payload, func(p []byte) { re = AppendPacket(re, p) }); err == nil && !bytes.Equal(re, payload) {
				t.Fatalf("re-encoding differs")
			}
		}
	})
}
