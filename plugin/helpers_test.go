package kubelink

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/coredns/coredns/request"
	"github.com/miekg/dns"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelink/kubelink/api/mesh"
	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/api/watch"
)

// fakeDNS is a cluster DNS on 127.0.0.1 (UDP and TCP on one port) serving
// cluster.local (kubelink2), local.test (the local cluster) and
// *.global.kubelink (the mesh-global DNS).
type fakeDNS struct {
	port string
	mu   sync.Mutex
	// last is the last query received, with its transport.
	last      *dns.Msg
	lastProto string
	queries   int
}

func (f *fakeDNS) lastQuery() (*dns.Msg, string, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last, f.lastProto, f.queries
}

func startFakeDNS(t testing.TB) *fakeDNS {
	t.Helper()
	f := &fakeDNS{}
	var udp net.PacketConn
	var tcp net.Listener
	for i := 0; ; i++ {
		var err error
		udp, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen udp: %v", err)
		}
		_, f.port, _ = net.SplitHostPort(udp.LocalAddr().String())
		tcp, err = net.Listen("tcp", "127.0.0.1:"+f.port)
		if err == nil {
			break
		}
		udp.Close()
		if i > 20 {
			t.Fatalf("no free port pair: %v", err)
		}
	}
	handler := dns.HandlerFunc(f.serve)
	for _, s := range []*dns.Server{{PacketConn: udp, Handler: handler}, {Listener: tcp, Handler: handler}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go func() { _ = s.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = s.Shutdown() })
	}
	return f
}

func (f *fakeDNS) serve(w dns.ResponseWriter, r *dns.Msg) {
	state := request.Request{W: w, Req: r}
	f.mu.Lock()
	f.last, f.lastProto = r.Copy(), state.Proto()
	f.queries++
	f.mu.Unlock()

	if len(r.Question) != 1 {
		return
	}
	q := r.Question[0]
	name := q.Name // answers use the asker's spelling, like CoreDNS does
	lname := strings.ToLower(name)
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	// Fuzzed names may not survive the text form: such records are left out.
	add := func(sec *[]dns.RR, s string) {
		if r, err := dns.NewRR(s); err == nil && r != nil {
			*sec = append(*sec, r)
		}
	}
	switch {
	case strings.HasSuffix(lname, ".global.kubelink."):
		add(&m.Answer, name+" 30 IN A 10.0.0.1")
	case lname == "web.default.svc.cluster.local." || lname == "web.default.svc.local.test.":
		if q.Qtype == dns.TypeA {
			add(&m.Answer, name+" 30 IN A 100.64.16.20")
		} else {
			add(&m.Ns, "cluster.local. 30 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 2 3 4 30")
		}
	case lname == "_http._tcp.web.default.svc.cluster.local.":
		add(&m.Answer, name+" 30 IN SRV 0 100 80 web.default.svc.cluster.local.")
		add(&m.Extra, "web.default.svc.cluster.local. 30 IN A 100.64.16.20")
		add(&m.Extra, "stray.example.org. 30 IN A 192.0.2.9")
	case lname == "alias.default.svc.cluster.local.":
		add(&m.Answer, name+" 30 IN CNAME web.default.svc.cluster.local.")
		add(&m.Answer, "web.default.svc.cluster.local. 30 IN A 100.64.16.20")
	case lname == "ext.default.svc.cluster.local.":
		add(&m.Answer, name+" 30 IN CNAME www.example.org.")
		add(&m.Answer, "www.example.org. 30 IN A 192.0.2.1")
	case lname == "mx.cluster.local.":
		add(&m.Answer, name+" 30 IN MX 10 mail.cluster.local.")
	case lname == "ns.cluster.local.":
		add(&m.Answer, name+" 30 IN NS ns.dns.cluster.local.")
		add(&m.Extra, "ns.dns.cluster.local. 30 IN A 100.64.16.10")
	case lname == "dname.cluster.local.":
		add(&m.Answer, name+" 30 IN DNAME other.cluster.local.")
	case lname == "ptr.cluster.local.":
		add(&m.Answer, name+" 30 IN PTR web.default.svc.cluster.local.")
	case lname == "big.cluster.local.":
		for i := 0; i < 40; i++ {
			add(&m.Answer, name+" 30 IN TXT \"record-"+strconv.Itoa(i)+"-"+strings.Repeat("x", 40)+"\"")
		}
	default:
		m.Rcode = dns.RcodeNameError
		add(&m.Ns, "cluster.local. 30 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 2 3 4 30")
	}
	if o := r.IsEdns0(); o != nil {
		m.SetEdns0(o.UDPSize(), o.Do())
	}
	if state.Proto() == "udp" {
		m.Truncate(state.Size())
	}
	_ = w.WriteMsg(m)
}

// kl builds a KubeLink object.
func kl(name, cidr, addr, endpoint, state string, age int, mod ...func(*v1alpha1.KubeLink)) *v1alpha1.KubeLink {
	o := &v1alpha1.KubeLink{
		ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(time.Unix(1700000000+int64(age), 0))},
		Spec:       v1alpha1.KubeLinkSpec{CIDR: cidr, ClusterAddress: addr, Endpoint: endpoint},
		Status:     v1alpha1.KubeLinkStatus{State: state, Message: "msg-" + strings.ToLower(state)},
	}
	for _, f := range mod {
		f(o)
	}
	return o
}

func withDNS(ip, base string) func(*v1alpha1.KubeLink) {
	return func(o *v1alpha1.KubeLink) { o.Spec.DNS = &v1alpha1.KubeLinkDNS{DNSIP: ip, BaseDomain: base} }
}

// exampleLinks is the mesh of the tests, seen from kubelink1; every cluster
// DNS is the fake on 127.0.0.1 except kubelink9, a black hole.
func exampleLinks() []*v1alpha1.KubeLink {
	return []*v1alpha1.KubeLink{
		kl("kubelink1", "100.64.0.0/20", "192.168.0.11/24", "LocalLink", "Up", 0, withDNS("127.0.0.1", "kubelink")),
		kl("kubelink2", "100.64.16.0/20", "192.168.0.12/24", "gw2.example.com", "Up", 1, withDNS("127.0.0.1", "")),
		kl("idle", "100.64.48.0/20", "192.168.0.14/24", "gw4.example.com", "Idle", 2, withDNS("127.0.0.1", "")),
		kl("fresh", "100.64.64.0/20", "192.168.0.15/24", "gw5.example.com", "", 3, withDNS("127.0.0.1", "")),
		kl("down", "100.64.80.0/20", "192.168.0.16/24", "gw6.example.com", "Down", 4, withDNS("127.0.0.9", "")),
		kl("broken", "100.64.96.0/20", "192.168.0.17/24", "gw7.example.com", "Error", 5, withDNS("127.0.0.9", "")),
		kl("stalelink", "100.64.112.0/20", "192.168.0.18/24", "gw8.example.com", "Stale", 6, withDNS("127.0.0.9", "")),
		// Overlaps kubelink2's CIDR: the mesh library marks it Invalid.
		kl("clash", "100.64.16.0/24", "192.168.0.19/24", "gw9.example.com", "Up", 7, withDNS("127.0.0.1", "")),
		kl("kubelink9", "100.64.128.0/20", "192.168.0.20/24", "gw10.example.com", "Up", 8, withDNS("127.0.0.9", "")),
		// A second mesh with its own domain, without a global DNS.
		kl("blue--kubelink1", "", "10.9.0.1/24", "LocalLink", "", 0, withDNS("", "blue.example")),
		kl("blue--kubelink2", "", "10.9.0.2/24", "gw2.example.com", "Up", 1, withDNS("127.0.0.1", "")),
	}
}

// newTestPlugin builds the plugin over objs with every upstream on port.
func newTestPlugin(t testing.TB, port string, objs []*v1alpha1.KubeLink, opts mesh.Options) (*Kubelink, *controller) {
	t.Helper()
	return newTestPluginSnapshot(t, port, watch.Snapshot{KubeLinks: objs}, opts, nil)
}

// newTestPluginSnapshot builds the plugin over a snapshot; mod changes the
// configuration first.
func newTestPluginSnapshot(t testing.TB, port string, snap watch.Snapshot, opts mesh.Options, mod func(*config)) (*Kubelink, *controller) {
	t.Helper()
	k := &Kubelink{Next: test.NextHandler(dns.RcodeRefused, nil)}
	if opts.ClusterDomain == "" {
		opts.ClusterDomain = "local.test"
	}
	if !opts.LocalDNS.IsValid() {
		opts.LocalDNS = netip.MustParseAddr("127.0.0.1")
	}
	cfg := &config{ttl: 5, upstreamPort: port, opts: opts}
	if mod != nil {
		mod(cfg)
	}
	ctl := newController(k, cfg)
	ctl.update(snap)
	t.Cleanup(ctl.pool.stopAll)
	return k, ctl
}

// ask sends one query through the plugin (behind CoreDNS's ScrubWriter, as
// the server does) and returns the reply, or nil when the plugin wrote none.
func ask(t testing.TB, k *Kubelink, m *dns.Msg, tcp bool) (*dns.Msg, int, error) {
	t.Helper()
	rec := dnstest.NewRecorder(&test.ResponseWriter{TCP: tcp})
	w := request.NewScrubWriter(m, rec)
	rcode, err := k.ServeDNS(context.Background(), w, m)
	if rec.Msg != nil && !plugin.ClientWrite(rcode) {
		t.Errorf("%v: reply written but rcode %d makes CoreDNS write another", m.Question, rcode)
	}
	return rec.Msg, rcode, err
}

func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	return m
}

func queryEDNS(name string, qtype uint16, size uint16) *dns.Msg {
	m := query(name, qtype)
	m.SetEdns0(size, false)
	return m
}

// noLeak fails when any name of the cluster's own domains shows up.
func noLeak(t testing.TB, m *dns.Msg) {
	t.Helper()
	s := strings.ToLower(m.String())
	for _, d := range []string{"cluster.local", "local.test"} {
		if strings.Contains(s, d) {
			t.Errorf("reply leaks %s:\n%s", d, m)
		}
	}
}
