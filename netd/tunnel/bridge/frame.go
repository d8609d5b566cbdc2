package bridge

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Frame types.
const (
	FrameHello byte = 1
	FrameData  byte = 2
	FramePing  byte = 3
)

// Frame layout: "KL", type, reserved zero byte, payload length (uint32 big
// endian), payload. A data payload is a batch of packets, each prefixed by
// its length (uint16): one TLS write carries the whole batch instead of
// one record per packet.
const (
	headerLen = 8
	// MaxFrame bounds a payload; larger frames are rejected as garbage.
	MaxFrame = 1 << 20
	// maxPacket is the largest packet a batch may carry.
	maxPacket = 65535
)

var magic = [2]byte{'K', 'L'}

// ErrGarbage is returned for bytes that are not a frame.
var ErrGarbage = errors.New("not a kubelink bridge frame")

// AppendHeader appends a frame header for a payload of n bytes.
func AppendHeader(b []byte, typ byte, n int) []byte {
	b = append(b, magic[0], magic[1], typ, 0)
	return binary.BigEndian.AppendUint32(b, uint32(n))
}

// AppendPacket appends one packet to a data payload.
func AppendPacket(b, pkt []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(pkt)))
	return append(b, pkt...)
}

// ReadFrame reads one frame into buf (grown as needed, up to MaxFrame) and
// returns its type and payload (aliasing buf).
func ReadFrame(r io.Reader, buf []byte) (byte, []byte, []byte, error) {
	var h [headerLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, buf, err
	}
	typ, n, err := parseHeader(h[:])
	if err != nil {
		return 0, nil, buf, err
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, nil, buf, fmt.Errorf("reading frame payload: %w", err)
	}
	return typ, buf, buf, nil
}

func parseHeader(h []byte) (byte, int, error) {
	if h[0] != magic[0] || h[1] != magic[1] || h[3] != 0 {
		return 0, 0, ErrGarbage
	}
	typ := h[2]
	if typ < FrameHello || typ > FramePing {
		return 0, 0, fmt.Errorf("%w: unknown frame type %d", ErrGarbage, typ)
	}
	n := binary.BigEndian.Uint32(h[4:])
	if n > MaxFrame {
		return 0, 0, fmt.Errorf("%w: frame of %d bytes exceeds the maximum %d", ErrGarbage, n, MaxFrame)
	}
	return typ, int(n), nil
}

// SplitPackets calls fn for every packet of a data payload; a truncated or
// empty packet makes the whole payload garbage.
func SplitPackets(p []byte, fn func(pkt []byte)) error {
	for len(p) > 0 {
		if len(p) < 2 {
			return fmt.Errorf("%w: truncated packet length", ErrGarbage)
		}
		n := int(binary.BigEndian.Uint16(p))
		p = p[2:]
		if n == 0 || n > len(p) {
			return fmt.Errorf("%w: packet length %d with %d bytes left", ErrGarbage, n, len(p))
		}
		fn(p[:n])
		p = p[n:]
	}
	return nil
}
