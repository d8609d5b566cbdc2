package kubelink

import (
	"strings"

	"github.com/miekg/dns"
)

// rewriter maps a cluster DNS reply back into the mesh domain.
type rewriter struct {
	c          *cluster
	upName     string // the name asked upstream
	clientName string // the client's name, in the client's case
}

// name maps a name below the cluster's domain into the mesh; ok is false
// for names outside the cluster's domain.
func (rw *rewriter) name(n string) (string, bool) {
	remote := rw.c.remote
	if len(n) < len(remote) || !strings.EqualFold(n[len(n)-len(remote):], remote) {
		return n, false
	}
	head := n[:len(n)-len(remote)]
	if head != "" && head[len(head)-1] != '.' {
		return n, false // a label merely ending like the domain
	}
	if strings.EqualFold(n, rw.upName) {
		return rw.clientName, true
	}
	return head + rw.c.fqdn, true
}

// target rewrites a name in RDATA if it is below the cluster's domain;
// names elsewhere are real names and stay.
func (rw *rewriter) target(n string) string {
	out, _ := rw.name(n)
	return out
}

// rdata rewrites the domain names inside an RR.
func (rw *rewriter) rdata(rr dns.RR) {
	switch v := rr.(type) {
	case *dns.CNAME:
		v.Target = rw.target(v.Target)
	case *dns.DNAME:
		v.Target = rw.target(v.Target)
	case *dns.SRV:
		v.Target = rw.target(v.Target)
	case *dns.NS:
		v.Ns = rw.target(v.Ns)
	case *dns.PTR:
		v.Ptr = rw.target(v.Ptr)
	case *dns.MX:
		v.Mx = rw.target(v.Mx)
	}
}

// dnssecOnly are record types that cannot survive the rewrite: their
// signatures and denial proofs name the cluster's domain.
func dnssecOnly(t uint16) bool {
	switch t {
	case dns.TypeRRSIG, dns.TypeNSEC, dns.TypeNSEC3, dns.TypeDS, dns.TypeDNSKEY:
		return true
	}
	return false
}

// reply rewrites ret in place into an answer to the client's query r:
// the client's question, owner names and targets mapped into the mesh,
// records owned by names outside the cluster's domain dropped (except
// targets of the answer's CNAME chain), and the mesh SOA instead of the
// cluster's.
func (rw *rewriter) reply(ret *dns.Msg, r *dns.Msg) {
	ret.Id = r.Id
	ret.Question = r.Question
	ret.Answer = rw.answer(ret.Answer)

	hadSOA := false
	ret.Ns = rw.section(ret.Ns, func(rr dns.RR) (bool, bool) {
		if rr.Header().Rrtype == dns.TypeSOA {
			hadSOA = true
			return true, false
		}
		return false, false
	})
	if hadSOA || ret.Rcode == dns.RcodeNameError || (ret.Rcode == dns.RcodeSuccess && len(ret.Answer) == 0) {
		soa := rw.c.zone.soa
		ret.Ns = append(ret.Ns, &soa)
	}
	ret.Extra = rw.section(ret.Extra, func(rr dns.RR) (bool, bool) {
		opt := rr.Header().Rrtype == dns.TypeOPT
		return opt, opt
	})
}

// answer rewrites the answer section. Records of the cluster's domain are
// mapped; records owned by outside names are kept only when the answer's
// CNAME chain leads there (e.g. an ExternalName service).
func (rw *rewriter) answer(rrs []dns.RR) []dns.RR {
	var outside []string
	for _, rr := range rrs {
		if cn, ok := rr.(*dns.CNAME); ok {
			if _, in := rw.name(cn.Target); !in {
				outside = append(outside, cn.Target)
			}
		}
	}
	if outside == nil {
		return rw.section(rrs, nil)
	}
	return rw.section(rrs, func(rr dns.RR) (bool, bool) {
		in := containsFold(outside, rr.Header().Name)
		return in, in
	})
}

// section rewrites one section in place: DNSSEC records go (the rewrite
// breaks their signatures); special, when set, decides first about a record
// (handled, keep); every other record of the cluster's domain is mapped
// into the mesh and the rest is dropped.
func (rw *rewriter) section(rrs []dns.RR, special func(dns.RR) (handled, keep bool)) []dns.RR {
	out := rrs[:0]
	for _, rr := range rrs {
		h := rr.Header()
		if dnssecOnly(h.Rrtype) {
			continue
		}
		if special != nil {
			if handled, keep := special(rr); handled {
				if keep {
					out = append(out, rr)
				}
				continue
			}
		}
		if n, ok := rw.name(h.Name); ok {
			h.Name = n
			rw.rdata(rr)
			out = append(out, rr)
		}
	}
	return out
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}
