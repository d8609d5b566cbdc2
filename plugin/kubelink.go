// Package kubelink is a CoreDNS plugin that serves the DNS of kubelink
// meshes straight from KubeLink objects: the mesh apex, one A record per
// member cluster, PTRs of link addresses, and every name below a member
// cluster by asking that cluster's own DNS and rewriting the reply back
// into the mesh domain.
package kubelink

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/pkg/fall"
	"github.com/miekg/dns"
)

// Kubelink is the plugin handler.
type Kubelink struct {
	Next plugin.Handler
	Fall fall.F

	index atomic.Pointer[index]
}

// Name implements plugin.Handler.
func (k *Kubelink) Name() string { return "kubelink" }

// Ready implements the ready plugin's Readiness: false until the first
// snapshot of the objects has been indexed.
func (k *Kubelink) Ready() bool { return k.index.Load() != nil }

// ServeDNS implements plugin.Handler.
func (k *Kubelink) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	idx := k.index.Load()
	if idx == nil || len(r.Question) != 1 {
		return plugin.NextOrFailure(k.Name(), k.Next, ctx, w, r)
	}
	q := r.Question[0]
	lname := strings.ToLower(q.Name) // no allocation for lower-case names

	if q.Qtype == dns.TypePTR {
		if p, ok := idx.ptr[lname]; ok {
			return k.answerPTR(w, r, idx, p)
		}
	}
	z := idx.match(lname)
	if cs := idx.clusterset; cs != nil && inZone(lname, cs.zone.name) && (z == nil || len(cs.zone.name) > len(z.name)) {
		return k.serveClusterset(ctx, w, r, idx, cs, lname)
	}
	if z == nil {
		return plugin.NextOrFailure(k.Name(), k.Next, ctx, w, r)
	}
	rel := lname[:len(lname)-len(z.name)]
	if rel == "" {
		return k.answerApex(w, r, idx, z)
	}
	// rel is "<sub>.<cluster>." : the cluster is its last label.
	rel = rel[:len(rel)-1]
	label, below, sub := rel, false, ""
	if i := strings.LastIndexByte(rel, '.'); i >= 0 {
		label, below, sub = rel[i+1:], true, rel[:i]
	}
	if label == globalLabel {
		// The mesh's own global names first, then the mesh-global DNS.
		if below {
			if n := z.globalNames[sub]; n != nil {
				return k.answerNode(w, r, idx, z, n, &z.globalResults)
			}
		}
		if z.global == nil {
			return k.nxdomain(ctx, w, r, z)
		}
		return k.forwardGlobal(ctx, w, r, z.global)
	}
	c := z.clusters[label]
	if c == nil {
		return k.nxdomain(ctx, w, r, z)
	}
	if !below {
		return k.answerCluster(w, r, idx, c)
	}
	if c.failState != "" {
		return k.unavailable(w, r, c, c.failState, c.failText)
	}
	if c.names != nil {
		// kubernetes mode: memory knows every name there is.
		if n := c.names[sub]; n != nil {
			return k.answerNode(w, r, idx, z, n, &c.results)
		}
		if k.Fall.Through(q.Name) {
			return plugin.NextOrFailure(k.Name(), k.Next, ctx, w, r)
		}
		c.results[resultNXDomain].Inc()
		return k.negative(w, r, z, dns.RcodeNameError)
	}
	if c.up == nil {
		return k.unavailable(w, r, c, "", "no DNS server is known for cluster "+c.name)
	}
	return k.forward(ctx, w, r, idx, c)
}

// serveClusterset answers a name of the clusterset zone (KEP-1645) from
// memory: the apex, dns-version, the names of the imports; anything else
// is an authoritative NXDOMAIN (or the next plugin with fallthrough).
func (k *Kubelink) serveClusterset(ctx context.Context, w dns.ResponseWriter, r *dns.Msg, idx *index, cs *clusterset, lname string) (int, error) {
	z := cs.zone
	if n := cs.names[lname]; n != nil {
		return k.answerNode(w, r, idx, z, n, &z.results)
	}
	switch lname {
	case z.name:
		return k.answerApex(w, r, idx, z)
	case cs.version:
		z.results[resultLocal].Inc()
		if r.Question[0].Qtype != dns.TypeTXT {
			return k.negative(w, r, z, dns.RcodeSuccess)
		}
		lr := newReply[dns.TXT](r, dns.RcodeSuccess)
		lr.rec = cs.txt
		lr.rec.Hdr.Name = r.Question[0].Name
		lr.m.Answer = lr.one(&lr.rec)
		return write(w, &lr.m)
	}
	return k.nxdomain(ctx, w, r, z)
}

// localReply holds a synthesised reply and its one record in a single
// allocation: the local answers are the plugin's hottest path.
type localReply[T any] struct {
	m   dns.Msg
	q   [1]dns.Question
	rr  [1]dns.RR
	rec T
}

// newReply starts an authoritative answer to r (dns.Msg.SetReply without
// its separate allocations), echoing EDNS0.
func newReply[T any](r *dns.Msg, rcode int) *localReply[T] {
	lr := &localReply[T]{}
	m := &lr.m
	m.Id = r.Id
	m.Response = true
	m.Opcode = r.Opcode
	if m.Opcode == dns.OpcodeQuery {
		m.RecursionDesired = r.RecursionDesired
		m.CheckingDisabled = r.CheckingDisabled
	}
	m.Rcode = rcode
	m.Authoritative = true
	lr.q[0] = r.Question[0]
	m.Question = lr.q[:]
	if len(r.Extra) > 0 {
		if o := r.IsEdns0(); o != nil {
			m.SetEdns0(ednsSize, o.Do())
		}
	}
	return lr
}

// one makes rr the only record of a section.
func (lr *localReply[T]) one(rr dns.RR) []dns.RR {
	lr.rr[0] = rr
	return lr.rr[:]
}

// ednsSize is the UDP size the plugin advertises in its own answers.
const ednsSize = 1232

func (k *Kubelink) answerPTR(w dns.ResponseWriter, r *dns.Msg, idx *index, p ptrTarget) (int, error) {
	lr := newReply[dns.PTR](r, dns.RcodeSuccess)
	lr.rec = dns.PTR{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: idx.ttl}, Ptr: p.name}
	lr.m.Answer = lr.one(&lr.rec)
	p.c.results[resultLocal].Inc()
	return write(w, &lr.m)
}

// answerNode answers a name known to memory from its precomputed records
// (copies: see node); a type it has none of is NODATA.
func (k *Kubelink) answerNode(w dns.ResponseWriter, r *dns.Msg, idx *index, z *zone, n *node, rc *resultCounters) (int, error) {
	q := &r.Question[0]
	rc[resultLocal].Inc()
	var answer, extra int
	switch q.Qtype {
	case dns.TypeA:
		answer = len(n.a)
	case dns.TypeAAAA:
		answer = len(n.aaaa)
	case dns.TypeSRV:
		answer, extra = len(n.srv), len(n.extraA)+len(n.extraAAAA)
	}
	if answer == 0 {
		return k.negative(w, r, z, dns.RcodeSuccess)
	}
	// One address, the most common answer: one allocation.
	if answer == 1 && q.Qtype == dns.TypeA {
		lr := newReply[dns.A](r, dns.RcodeSuccess)
		lr.rec = n.a[0]
		lr.rec.Hdr.Name = q.Name
		lr.m.Answer = lr.one(&lr.rec)
		return write(w, &lr.m)
	}
	if answer == 1 && q.Qtype == dns.TypeAAAA {
		lr := newReply[dns.AAAA](r, dns.RcodeSuccess)
		lr.rec = n.aaaa[0]
		lr.rec.Hdr.Name = q.Name
		lr.m.Answer = lr.one(&lr.rec)
		return write(w, &lr.m)
	}
	lr := newReply[struct{}](r, dns.RcodeSuccess)
	opt := lr.m.Extra // the OPT record, when the client sent one
	rrs := make([]dns.RR, 0, answer+extra+len(opt))
	switch q.Qtype {
	case dns.TypeA:
		rrs = copyRecords(rrs, n.a, q.Name)
	case dns.TypeAAAA:
		rrs = copyRecords(rrs, n.aaaa, q.Name)
	case dns.TypeSRV:
		rrs = copyRecords(rrs, n.srv, q.Name)
		rrs = copyRecords(rrs, n.extraA, "")
		rrs = copyRecords(rrs, n.extraAAAA, "")
	}
	lr.m.Answer = rrs[:answer:answer]
	if extra > 0 {
		lr.m.Extra = append(rrs[answer:], opt...)
	}
	return write(w, &lr.m)
}

// rrPointer is a pointer to a record type.
type rrPointer[T any] interface {
	*T
	dns.RR
}

// copyRecords appends copies of src (one allocation) to dst, owned by
// owner unless it is empty.
func copyRecords[T any, P rrPointer[T]](dst []dns.RR, src []T, owner string) []dns.RR {
	if len(src) == 0 {
		return dst
	}
	recs := make([]T, len(src))
	copy(recs, src)
	for i := range recs {
		p := P(&recs[i])
		if owner != "" {
			p.Header().Name = owner
		}
		dst = append(dst, p)
	}
	return dst
}

func (k *Kubelink) answerApex(w dns.ResponseWriter, r *dns.Msg, idx *index, z *zone) (int, error) {
	switch r.Question[0].Qtype {
	case dns.TypeNS:
		lr := newReply[dns.NS](r, dns.RcodeSuccess)
		lr.rec = z.ns
		lr.rec.Hdr.Name = r.Question[0].Name
		lr.m.Answer = lr.one(&lr.rec)
		z.results[resultLocal].Inc()
		return write(w, &lr.m)
	case dns.TypeSOA:
		lr := newReply[dns.SOA](r, dns.RcodeSuccess)
		lr.rec = z.soa
		lr.rec.Hdr.Name = r.Question[0].Name
		lr.m.Answer = lr.one(&lr.rec)
		z.results[resultLocal].Inc()
		return write(w, &lr.m)
	}
	z.results[resultLocal].Inc()
	return k.negative(w, r, z, dns.RcodeSuccess)
}

// negative answers NXDOMAIN or NODATA with the mesh SOA.
func (k *Kubelink) negative(w dns.ResponseWriter, r *dns.Msg, z *zone, rcode int) (int, error) {
	lr := newReply[dns.SOA](r, rcode)
	lr.rec = z.soa
	lr.m.Ns = lr.one(&lr.rec)
	return write(w, &lr.m)
}

func (k *Kubelink) answerCluster(w dns.ResponseWriter, r *dns.Msg, idx *index, c *cluster) (int, error) {
	if c.rejected {
		return k.unavailable(w, r, c, c.failState, c.failText)
	}
	q := r.Question[0]
	hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: idx.ttl}
	switch {
	case q.Qtype == dns.TypeA && len(c.address) == net4Len:
		lr := newReply[dns.A](r, dns.RcodeSuccess)
		hdr.Rrtype = dns.TypeA
		lr.rec = dns.A{Hdr: hdr, A: c.address}
		lr.m.Answer = lr.one(&lr.rec)
		c.results[resultLocal].Inc()
		return write(w, &lr.m)
	case q.Qtype == dns.TypeAAAA && len(c.address) == net6Len:
		lr := newReply[dns.AAAA](r, dns.RcodeSuccess)
		hdr.Rrtype = dns.TypeAAAA
		lr.rec = dns.AAAA{Hdr: hdr, AAAA: c.address}
		lr.m.Answer = lr.one(&lr.rec)
		c.results[resultLocal].Inc()
		return write(w, &lr.m)
	}
	c.results[resultLocal].Inc()
	return k.negative(w, r, c.zone, dns.RcodeSuccess)
}

const (
	net4Len = 4
	net6Len = 16
)

func (k *Kubelink) nxdomain(ctx context.Context, w dns.ResponseWriter, r *dns.Msg, z *zone) (int, error) {
	if k.Fall.Through(r.Question[0].Name) {
		return plugin.NextOrFailure(k.Name(), k.Next, ctx, w, r)
	}
	z.results[resultNXDomain].Inc()
	return k.negative(w, r, z, dns.RcodeNameError)
}

// unavailable answers SERVFAIL at once with an Extended DNS Error "No
// Reachable Authority" naming the link state, instead of letting the client
// wait for an upstream that cannot answer.
func (k *Kubelink) unavailable(w dns.ResponseWriter, r *dns.Msg, c *cluster, state, text string) (int, error) {
	msg := "cluster " + c.name
	if state != "" {
		msg += " is " + state
	}
	if text != "" {
		msg += ": " + text
	}
	c.results[resultUnavailable].Inc()
	return servfail(w, r, msg)
}

// servfail writes SERVFAIL with an EDE 22 carrying text (when the client
// speaks EDNS0).
func servfail(w dns.ResponseWriter, r *dns.Msg, text string) (int, error) {
	lr := newReply[struct{}](r, dns.RcodeServerFailure)
	m := &lr.m
	m.Authoritative = false
	if o := m.IsEdns0(); o != nil {
		o.Option = append(o.Option, &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeNoReachableAuthority, ExtraText: text})
	}
	return write(w, m)
}

// upstreamFailed answers a failed exchange: SERVFAIL with the reason, and
// the error for the errors plugin.
func (k *Kubelink) upstreamFailed(w dns.ResponseWriter, r *dns.Msg, c *cluster, err error) (int, error) {
	c.results[resultError].Inc()
	rcode, werr := servfail(w, r, "the DNS of cluster "+c.name+" did not answer")
	if werr != nil {
		return rcode, errors.Join(err, werr)
	}
	return rcode, err
}

// write sends m. The returned rcode tells CoreDNS that the reply is
// written: for rcodes CoreDNS would otherwise answer itself (SERVFAIL,
// REFUSED, ...) it is NOERROR, as the forward plugin does, so the client
// never gets a second reply.
func write(w dns.ResponseWriter, m *dns.Msg) (int, error) {
	if err := w.WriteMsg(m); err != nil {
		return dns.RcodeServerFailure, err
	}
	if !plugin.ClientWrite(m.Rcode) {
		return dns.RcodeSuccess, nil
	}
	return m.Rcode, nil
}

// forwardGlobal sends the query unchanged to the mesh-global DNS.
func (k *Kubelink) forwardGlobal(ctx context.Context, w dns.ResponseWriter, r *dns.Msg, c *cluster) (int, error) {
	ret, err := c.up.exchange(ctx, w, r, &c.obs)
	if err != nil {
		return k.upstreamFailed(w, r, c, err)
	}
	ret.Id = r.Id
	c.results[resultForwarded].Inc()
	return write(w, ret)
}

// forward asks the cluster's DNS for the name below its own domain and
// rewrites the reply into the mesh domain.
func (k *Kubelink) forward(ctx context.Context, w dns.ResponseWriter, r *dns.Msg, idx *index, c *cluster) (int, error) {
	q := r.Question[0]
	// The client's spelling of the labels below the cluster is kept.
	upName := q.Name[:len(q.Name)-len(c.fqdn)] + c.remote
	req := upstreamRequest(r, upName)
	ret, err := c.up.exchange(ctx, w, req, &c.obs)
	if err != nil {
		return k.upstreamFailed(w, r, c, err)
	}
	rw := rewriter{c: c, upName: upName, clientName: q.Name}
	rw.reply(ret, r)
	c.results[resultForwarded].Inc()
	return write(w, ret)
}

// upstreamRequest is the client's query asking for upName. Header flags
// and the OPT record (EDNS0 options, buffer size, DO) pass through; TSIG
// does not, it was signed for another name.
func upstreamRequest(r *dns.Msg, upName string) *dns.Msg {
	// One allocation for the message and its sections.
	ur := &struct {
		m     dns.Msg
		q     [1]dns.Question
		extra [1]dns.RR
	}{}
	ur.m.MsgHdr = r.MsgHdr
	ur.q[0] = dns.Question{Name: upName, Qtype: r.Question[0].Qtype, Qclass: r.Question[0].Qclass}
	ur.m.Question = ur.q[:]
	if len(r.Extra) > 0 {
		if o := r.IsEdns0(); o != nil {
			ur.extra[0] = o
			ur.m.Extra = ur.extra[:]
		}
	}
	return &ur.m
}
