// Package bridge is netd's TLS bridge: a TUN device whose packets travel
// between cluster gateways over mutually authenticated TLS on TCP. A peer
// is accepted only when its certificate names (DNS SANs or CN) match the
// endpoint host of one of our KubeLinks; with auto-connect an unknown peer
// with a valid certificate is handed to a callback that registers it. After
// TLS, both sides send a hello (link addresses, service CIDRs, DNS). Data
// frames carry batches of packets read from the TUN device at once, so one
// TLS write carries many packets.
package bridge

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/kubelink/kubelink/netd/tunnel"
)

// HelloMesh describes the sender in one mesh.
type HelloMesh struct {
	Mesh    string `json:"mesh,omitempty"`
	Cluster string `json:"cluster"`
	// Address is the link address with the mesh netmask.
	Address string `json:"address"`
	CIDR    string `json:"cidr,omitempty"`
	DNSIP   string `json:"dnsIP,omitempty"`
	Domain  string `json:"clusterDomain,omitempty"`
}

// Hello is the first frame each side sends after the TLS handshake.
type Hello struct {
	// Port is where the sender accepts connections (its advertised port).
	Port   int         `json:"port"`
	Meshes []HelloMesh `json:"meshes"`
	// APIAccess is read access to the sender's API server (the original
	// kubelink's --service-account advertisement), which the receiver
	// stores in a Secret its KubeLink's spec.apiAccess names. Optional:
	// peers without it omit it, and older peers ignore it.
	APIAccess *HelloAPIAccess `json:"apiAccess,omitempty"`
}

// HelloAPIAccess is a service account token of the sender's cluster and
// the CA (PEM) of its API server. The token is a credential: it is never
// logged (String and LogValue redact it).
type HelloAPIAccess struct {
	Token string `json:"token"`
	CA    []byte `json:"certificateAuthorityData,omitempty"`
}

// String redacts the token.
func (a HelloAPIAccess) String() string {
	return fmt.Sprintf("{token:<redacted %d bytes> ca:%d bytes}", len(a.Token), len(a.CA))
}

// LogValue redacts the token in slog output.
func (a HelloAPIAccess) LogValue() slog.Value { return slog.StringValue(a.String()) }

// Options configure the bridge.
type Options struct {
	Name string
	// MTU of the TUN device (default 1420).
	MTU        int
	ListenPort int
	// TLS holds our certificate (mutual TLS) and the CA pool for peers.
	Certificate tls.Certificate
	CAs         *x509.CertPool
	// Heartbeat is sent when nothing else was; the state window derives
	// from it.
	Heartbeat        time.Duration
	HandshakeTimeout time.Duration
	// Hello is what we tell peers until SetHello replaces it.
	Hello Hello
	// OnHello is called with a known link's hello.
	OnHello func(link string, h Hello)
	// OnUnknown is called for a peer with a valid certificate that matches
	// no link (auto-connect) with the hello we sent it and its own; nil
	// rejects such peers.
	OnUnknown func(names []string, sent, got Hello)
	Log       *slog.Logger
}

// Bridge is the TUN device plus its connections.
type Bridge struct {
	opts Options
	dev  tun.Device
	ln   net.Listener
	ctx  context.Context
	stop context.CancelFunc

	mu     sync.RWMutex
	peers  map[string]*peer // by link
	routes []route          // longest prefix first
	writes int

	tunMu sync.Mutex // serializes writes to the TUN device
	pool  sync.Pool  // frame buffers

	helloMu sync.Mutex
	hello   Hello
}

type route struct {
	prefix netip.Prefix
	peer   *peer
}

type peer struct {
	cfg    tunnel.Peer
	cancel context.CancelFunc

	mu      sync.Mutex
	conns   []*conn
	lastErr string
	rx, tx  atomic.Uint64
}

type conn struct {
	c    *tls.Conn
	bc   *bufConn
	out  chan *[]byte
	done chan struct{}
	once sync.Once
}

const offset = 16 // headroom the TUN device needs in front of packets

// DefaultMTU is the bridge device's MTU. TCP carries the frames, so the
// tunnel itself has no path MTU: a large MTU lets locally sent TCP use
// large segments, so a read from the device moves up to 64 KiB per packet
// instead of 1.4 KiB. Forwarded traffic keeps the MTU of its origin.
const DefaultMTU = 65000

// New creates the TUN device and listens for peers.
func New(opts Options) (*Bridge, error) {
	if opts.MTU == 0 {
		opts.MTU = 1420
	}
	if opts.HandshakeTimeout == 0 {
		opts.HandshakeTimeout = 10 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	dev, err := tun.CreateTUN(opts.Name, opts.MTU)
	if err != nil {
		return nil, fmt.Errorf("creating TUN device %s: %w", opts.Name, err)
	}
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(opts.ListenPort))
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("listening on port %d: %w", opts.ListenPort, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Bridge{opts: opts, dev: dev, ln: ln, ctx: ctx, stop: cancel, peers: map[string]*peer{}, hello: opts.Hello}
	go b.readTUN()
	go b.accept()
	go b.heartbeat()
	return b, nil
}

// Device is the interface name.
func (b *Bridge) Device() string { return b.opts.Name }

// Addr is the listen address.
func (b *Bridge) Addr() net.Addr { return b.ln.Addr() }

// SetHello replaces what we tell peers from the next handshake on; the
// broker hands it the hello of every reconcile's plan. A hello that
// changed is also sent to the peers connected now, as a hello frame
// within the connection (a renewed API access token must reach them
// before the old one expires); peers that predate this ignore frames
// other than data, as they always did.
func (b *Bridge) SetHello(h Hello) {
	b.helloMu.Lock()
	changed := !reflect.DeepEqual(b.hello, h)
	b.hello = h
	b.helloMu.Unlock()
	if !changed {
		return
	}
	body, err := json.Marshal(h)
	if err != nil || len(body) > MaxFrame {
		return
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, p := range b.peers {
		f := getBuf(&b.pool)
		*f = append(AppendHeader((*f)[:0], FrameHello, len(body)), body...)
		p.send(&b.pool, f)
	}
}

func (b *Bridge) currentHello() Hello {
	b.helloMu.Lock()
	defer b.helloMu.Unlock()
	return b.hello
}

// Writes counts peer-set changes.
func (b *Bridge) Writes() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.writes
}

// Close stops everything and removes the device.
func (b *Bridge) Close() error {
	b.stop()
	_ = b.ln.Close()
	b.mu.Lock()
	for _, p := range b.peers {
		p.cancel()
		p.closeAll()
	}
	b.mu.Unlock()
	return b.dev.Close()
}

// Configure makes the peers exactly these. Unchanged peers keep their
// connections, and so do peers whose allowed IPs alone changed (a relayed
// link coming and going changes them): tearing down a working connection
// for a routing change left the link dark until the peer redialled.
func (b *Bridge) Configure(_ context.Context, peers []tunnel.Peer) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	want := map[string]tunnel.Peer{}
	for _, p := range peers {
		want[p.Link] = p
	}
	changed := false
	for name, p := range b.peers {
		w, ok := want[name]
		if ok && samePeer(p.cfg, w) {
			continue
		}
		if ok && p.cfg.Endpoint == w.Endpoint && p.cfg.Host == w.Host {
			// Only AllowedIPs differ; they are read under b.mu alone
			// (the routes below), so the connection goroutines, which
			// read the other fields, are not disturbed.
			p.cfg.AllowedIPs = append([]netip.Prefix(nil), w.AllowedIPs...)
			changed = true
			continue
		}
		p.cancel()
		p.closeAll()
		delete(b.peers, name)
		changed = true
	}
	for name, w := range want {
		if _, ok := b.peers[name]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(b.ctx)
		p := &peer{cfg: w, cancel: cancel}
		b.peers[name] = p
		changed = true
		if w.Endpoint != "" {
			go b.dialLoop(ctx, p)
		}
	}
	if changed {
		b.writes++
		b.routes = b.routes[:0]
		for _, p := range b.peers {
			for _, a := range p.cfg.AllowedIPs {
				b.routes = append(b.routes, route{a.Masked(), p})
			}
		}
		sort.Slice(b.routes, func(i, j int) bool { return b.routes[i].prefix.Bits() > b.routes[j].prefix.Bits() })
	}
	return nil
}

func samePeer(a, b tunnel.Peer) bool {
	if a.Endpoint != b.Endpoint || a.Host != b.Host || len(a.AllowedIPs) != len(b.AllowedIPs) {
		return false
	}
	for i := range a.AllowedIPs {
		if a.AllowedIPs[i] != b.AllowedIPs[i] {
			return false
		}
	}
	return true
}

// Stats reports per link whether it is connected and its traffic.
func (b *Bridge) Stats() (map[string]tunnel.Stats, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := map[string]tunnel.Stats{}
	for name, p := range b.peers {
		p.mu.Lock()
		s := tunnel.Stats{Connected: len(p.conns) > 0, RxBytes: p.rx.Load(), TxBytes: p.tx.Load()}
		if !s.Connected && p.lastErr != "" {
			s.Err = p.lastErr
		}
		p.mu.Unlock()
		out[name] = s
	}
	return out, nil
}

func (b *Bridge) lookup(a netip.Addr) *peer {
	for _, r := range b.routes {
		if r.prefix.Contains(a) {
			return r.peer
		}
	}
	return nil
}

func dstOf(pkt []byte) (netip.Addr, bool) {
	if len(pkt) < 20 || pkt[0]>>4 != 4 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4([4]byte(pkt[16:20])), true
}

func srcOf(pkt []byte) (netip.Addr, bool) {
	if len(pkt) < 20 || pkt[0]>>4 != 4 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4([4]byte(pkt[12:16])), true
}

// frameBufSize is the capacity of pooled frame buffers: a batch is
// flushed before it would exceed it.
const frameBufSize = 512 * 1024

func getBuf(pool *sync.Pool) *[]byte {
	if b, ok := pool.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, frameBufSize)
	return &b
}

// readTUN reads batches from the device and sends each peer's packets of a
// batch as one frame. Encryption and the socket write happen in the
// connection's writer goroutine, so reading the device overlaps with them.
func (b *Bridge) readTUN() {
	n := b.dev.BatchSize()
	bufs := make([][]byte, n)
	sizes := make([]int, n)
	for i := range bufs {
		bufs[i] = make([]byte, offset+65535)
	}
	frames := map[*peer]*[]byte{}
	for {
		cnt, err := b.dev.Read(bufs, sizes, offset)
		if err != nil {
			if b.ctx.Err() != nil {
				return
			}
			if errors.Is(err, tun.ErrTooManySegments) {
				continue
			}
			b.opts.Log.Error("reading TUN device", "err", err)
			return
		}
		b.mu.RLock()
		for i := 0; i < cnt; i++ {
			pkt := bufs[i][offset : offset+sizes[i]]
			dst, ok := dstOf(pkt)
			if !ok {
				continue
			}
			p := b.lookup(dst)
			if p == nil {
				continue
			}
			f := frames[p]
			if f != nil && len(*f)+2+len(pkt) > frameBufSize {
				p.send(&b.pool, f)
				f = nil
			}
			if f == nil {
				f = getBuf(&b.pool)
				*f = AppendHeader((*f)[:0], FrameData, 0)
				frames[p] = f
			}
			*f = AppendPacket(*f, pkt)
		}
		b.mu.RUnlock()
		for p, f := range frames {
			p.send(&b.pool, f)
			delete(frames, p)
		}
	}
}

func (p *peer) current() *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.conns) == 0 {
		return nil
	}
	return p.conns[len(p.conns)-1]
}

// send fills in the frame length and queues it on the newest connection;
// without connection the packets are dropped, as on any link that is down.
func (p *peer) send(pool *sync.Pool, f *[]byte) {
	c := p.current()
	if c == nil {
		pool.Put(f)
		return
	}
	n := len(*f) - headerLen
	(*f)[4], (*f)[5], (*f)[6], (*f)[7] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	size := uint64(len(*f)) // f belongs to the writer once queued
	select {
	case c.out <- f:
		p.tx.Add(size)
	case <-c.done:
		pool.Put(f)
	}
}

func newConn(tc *tls.Conn, bc *bufConn, pool *sync.Pool) *conn {
	c := &conn{c: tc, bc: bc, out: make(chan *[]byte, 64), done: make(chan struct{})}
	go c.writer(pool)
	return c
}

// writer encrypts and writes queued frames.
func (c *conn) writer(pool *sync.Pool) {
	for {
		select {
		case <-c.done:
			return
		case f := <-c.out:
			_ = c.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			_, err := c.c.Write(*f)
			pool.Put(f)
			if err == nil && len(c.out) == 0 {
				// One socket write for all records of the queued frames.
				err = c.bc.Flush()
			}
			if err != nil {
				c.close()
				return
			}
		}
	}
}

func (c *conn) close() {
	c.once.Do(func() {
		close(c.done)
		_ = c.c.Close()
	})
}

func (p *peer) add(c *conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conns = append(p.conns, c)
	p.lastErr = ""
}

func (p *peer) remove(c *conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, x := range p.conns {
		if x == c {
			p.conns = append(p.conns[:i], p.conns[i+1:]...)
			break
		}
	}
}

func (p *peer) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.close()
	}
	p.conns = nil
}

func (p *peer) setErr(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lastErr = err.Error()
}

func (b *Bridge) heartbeat() {
	t := time.NewTicker(b.opts.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
		}
		b.mu.RLock()
		for _, p := range b.peers {
			f := getBuf(&b.pool)
			*f = AppendHeader((*f)[:0], FramePing, 0)
			p.send(&b.pool, f)
		}
		b.mu.RUnlock()
	}
}

func (b *Bridge) tlsConfig() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{b.opts.Certificate},
		RootCAs:      b.opts.CAs,
		ClientCAs:    b.opts.CAs,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}
}

// dialLoop keeps a connection to the peer, with exponential backoff, as
// long as the peer has none (it may also have dialed us).
func (b *Bridge) dialLoop(ctx context.Context, p *peer) {
	backoff := 500 * time.Millisecond
	for ctx.Err() == nil {
		if p.current() == nil {
			err := b.dial(ctx, p)
			if err == nil {
				backoff = 500 * time.Millisecond
				continue
			}
			if ctx.Err() != nil {
				return
			}
			p.setErr(err)
			b.opts.Log.Debug("bridge dial", "link", p.cfg.Link, "err", err)
			backoff = min(backoff*2, 15*time.Second)
		}
		jitter := time.Duration(rand.Int64N(int64(backoff) / 4))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff + jitter):
		}
	}
}

// dial connects, checks the server's name against the endpoint host and
// serves the connection until it breaks.
func (b *Bridge) dial(ctx context.Context, p *peer) error {
	cfg := b.tlsConfig()
	cfg.ServerName = p.cfg.Host
	d := &net.Dialer{Timeout: b.opts.HandshakeTimeout, KeepAlive: 15 * time.Second}
	hctx, cancel := context.WithTimeout(ctx, b.opts.HandshakeTimeout)
	defer cancel()
	nc, err := d.DialContext(hctx, "tcp", p.cfg.Endpoint)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", p.cfg.Endpoint, err)
	}
	bc := &bufConn{Conn: nc}
	tc := tls.Client(bc, cfg)
	if err := tc.HandshakeContext(hctx); err != nil {
		_ = tc.Close()
		return fmt.Errorf("TLS with %s: %w", p.cfg.Endpoint, err)
	}
	h, r, err := b.exchangeHello(tc, b.currentHello())
	if err != nil {
		_ = tc.Close()
		return fmt.Errorf("hello with %s: %w", p.cfg.Endpoint, err)
	}
	b.serve(ctx, p, tc, bc, r, h)
	return nil
}

func (b *Bridge) accept() {
	for {
		nc, err := b.ln.Accept()
		if err != nil {
			if b.ctx.Err() == nil {
				b.opts.Log.Error("accepting bridge connections", "err", err)
			}
			return
		}
		go b.handleInbound(nc)
	}
}

func (b *Bridge) handleInbound(nc net.Conn) {
	bc := &bufConn{Conn: nc}
	tc := tls.Server(bc, b.tlsConfig())
	_ = tc.SetDeadline(time.Now().Add(b.opts.HandshakeTimeout))
	if err := tc.HandshakeContext(b.ctx); err != nil {
		b.opts.Log.Info("bridge: rejected connection", "remote", nc.RemoteAddr(), "err", err)
		_ = tc.Close()
		return
	}
	names := certNames(tc.ConnectionState().PeerCertificates[0])
	b.mu.RLock()
	var p *peer
	for _, x := range b.peers {
		if x.cfg.Host != "" && matches(names, x.cfg.Host) {
			p = x
			break
		}
	}
	b.mu.RUnlock()
	if p == nil && b.opts.OnUnknown == nil {
		b.opts.Log.Warn("bridge: rejected peer: its certificate names no endpoint host of our KubeLinks", "remote", nc.RemoteAddr(), "names", names)
		_ = tc.Close()
		return
	}
	sent := b.currentHello()
	h, r, err := b.exchangeHello(tc, sent)
	if err != nil {
		b.opts.Log.Info("bridge: hello failed", "remote", nc.RemoteAddr(), "err", err)
		_ = tc.Close()
		return
	}
	if p == nil {
		// Auto-connect: register the peer; it reconnects once its KubeLink
		// exists.
		b.opts.OnUnknown(names, sent, h)
		_ = tc.Close()
		return
	}
	b.serve(b.ctx, p, tc, bc, r, h)
}

// exchangeHello sends our hello and reads the peer's within the handshake
// timeout.
func (b *Bridge) exchangeHello(tc *tls.Conn, ours Hello) (Hello, *bufio.Reader, error) {
	var h Hello
	_ = tc.SetDeadline(time.Now().Add(b.opts.HandshakeTimeout))
	body, err := json.Marshal(ours)
	if err != nil {
		return h, nil, fmt.Errorf("encoding hello: %w", err)
	}
	if _, err := tc.Write(append(AppendHeader(nil, FrameHello, len(body)), body...)); err != nil {
		return h, nil, fmt.Errorf("sending hello: %w", err)
	}
	r := bufio.NewReaderSize(tc, 256*1024)
	typ, payload, _, err := ReadFrame(r, nil)
	if err != nil {
		return h, nil, fmt.Errorf("reading hello: %w", err)
	}
	if typ != FrameHello {
		return h, nil, fmt.Errorf("%w: expected hello, got frame type %d", ErrGarbage, typ)
	}
	if err := json.Unmarshal(payload, &h); err != nil {
		return h, nil, fmt.Errorf("%w: bad hello: %v", ErrGarbage, err)
	}
	_ = tc.SetDeadline(time.Time{})
	return h, r, nil
}

// serve reads frames from a connection until it breaks; a second
// goroutine writes their packets into the TUN device, so decryption and
// device writes overlap.
func (b *Bridge) serve(ctx context.Context, p *peer, tc *tls.Conn, bc *bufConn, r *bufio.Reader, h Hello) {
	bc.startBuffering()
	c := newConn(tc, bc, &b.pool)
	p.add(c)
	in := make(chan *[]byte, 64)
	defer func() {
		p.remove(c)
		c.close()
		close(in)
	}()
	stop := context.AfterFunc(ctx, c.close)
	defer stop()
	go b.toTUN(p, c, in)
	if b.opts.OnHello != nil {
		b.opts.OnHello(p.cfg.Link, h)
	}
	b.opts.Log.Info("bridge connected", "link", p.cfg.Link, "remote", tc.RemoteAddr())
	idle := 4 * b.opts.Heartbeat
	for {
		_ = tc.SetReadDeadline(time.Now().Add(idle))
		buf := getBuf(&b.pool)
		typ, payload, nb, err := ReadFrame(r, (*buf)[:0])
		if err != nil {
			b.pool.Put(buf)
			b.opts.Log.Info("bridge connection closed", "link", p.cfg.Link, "err", err)
			return
		}
		p.rx.Add(uint64(len(payload) + headerLen))
		if typ == FrameHello {
			// The peer's hello changed while connected.
			var nh Hello
			err := json.Unmarshal(payload, &nh)
			b.pool.Put(buf)
			if err != nil {
				b.opts.Log.Warn("bridge: bad hello from peer, ignored", "link", p.cfg.Link, "err", err)
			} else if b.opts.OnHello != nil {
				b.opts.OnHello(p.cfg.Link, nh)
			}
			continue
		}
		if typ != FrameData {
			b.pool.Put(buf)
			continue
		}
		*buf = nb
		in <- buf
	}
}

// toTUN writes the packets of received data frames into the device.
func (b *Bridge) toTUN(p *peer, c *conn, in <-chan *[]byte) {
	bufs := make([][]byte, 0, 128)
	pool := make([][]byte, 0, 128)
	for buf := range in {
		bufs = bufs[:0]
		err := SplitPackets(*buf, func(pkt []byte) {
			src, ok := srcOf(pkt)
			if !ok {
				return
			}
			// Only sources the peer may use (its link address, CIDRs).
			b.mu.RLock()
			owner := b.lookup(src)
			b.mu.RUnlock()
			if owner != p {
				return
			}
			i := len(bufs)
			if i == len(pool) {
				pool = append(pool, make([]byte, offset+65535))
			}
			nbuf := pool[i][:offset+len(pkt)]
			copy(nbuf[offset:], pkt)
			bufs = append(bufs, nbuf)
		})
		b.pool.Put(buf)
		if err != nil {
			b.opts.Log.Warn("bridge: garbage from peer, closing", "link", p.cfg.Link, "err", err)
			c.close()
			continue
		}
		if len(bufs) > 0 {
			b.tunMu.Lock()
			_, werr := b.dev.Write(bufs, offset)
			b.tunMu.Unlock()
			if werr != nil && !errors.Is(werr, tun.ErrTooManySegments) {
				b.opts.Log.Debug("writing to TUN device", "err", werr)
			}
		}
	}
}

// bufConn buffers the TLS records of a frame so that a frame becomes one
// socket write instead of one per 16 KiB record. Until buffering starts
// (after the hello) every write goes straight out, so handshakes never wait.
type bufConn struct {
	net.Conn
	mu  sync.Mutex
	w   *bufio.Writer
	buf bool
}

func (c *bufConn) startBuffering() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.w = bufio.NewWriterSize(c.Conn, frameBufSize+64*1024)
	c.buf = true
}

func (c *bufConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.buf {
		return c.Conn.Write(p)
	}
	return c.w.Write(p)
}

// Flush writes out what is buffered.
func (c *bufConn) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.buf {
		return nil
	}
	return c.w.Flush()
}

func certNames(c *x509.Certificate) []string {
	names := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if c.Subject.CommonName != "" {
		names = append(names, c.Subject.CommonName)
	}
	return names
}

func matches(names []string, host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	for _, n := range names {
		if strings.TrimSuffix(strings.ToLower(n), ".") == host {
			return true
		}
	}
	return false
}
