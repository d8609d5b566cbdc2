package kubelink

import (
	"net"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/miekg/dns"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/kubelink/kubelink/api/synced"
	"github.com/kubelink/kubelink/api/v1alpha1"
)

// service is one Service of one cluster as netd sync's service mirrors
// (api/synced) describe it: the addresses this cluster reaches it on.
type service struct {
	namespace, name string
	headless        bool
	exported        bool
	// endpoints are the ready endpoints (one address each), sorted by
	// address and deduplicated; for a ClusterIP Service its ClusterIPs or
	// MeshService addresses.
	endpoints []endpoint
	// ports are those of every mirror of the Service (deduplicated,
	// sorted); a headless endpoint has those of its own slice.
	ports []port
}

// endpoint is one ready address of a mirror.
type endpoint struct {
	addr netip.Addr
	// host is the label of a headless endpoint's own name: its hostname,
	// else its address with dashes (as CoreDNS's kubernetes plugin does).
	host  string
	ports []port
}

// port is a port of a mirror: named ports have SRV names of their own.
type port struct {
	name, proto string // lower case
	port        uint16
}

func (p port) less(q port) bool {
	if p.name != q.name {
		return p.name < q.name
	}
	if p.proto != q.proto {
		return p.proto < q.proto
	}
	return p.port < q.port
}

var dnsLabelRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// isLabel reports whether s is a lower-case DNS label (RFC 1123).
func isLabel(s string) bool { return len(s) <= 63 && dnsLabelRE.MatchString(s) }

// mirrorKey identifies the Service of a mirror within a cluster.
type mirrorKey struct{ namespace, name string }

// collectMirrors reads the service mirrors among slices: by KubeLink
// name, the Services sorted by namespace and name. Only what is exactly a
// mirror counts (anyone able to write EndpointSlices there must not be
// able to make the mesh DNS answer what they like with a look-alike):
// in namespace (empty: any), labelled as netd sync's (managed-by,
// source kind KubeLink, source cluster, service namespace and name as DNS
// labels), without kubernetes.io/service-name, not being deleted, of
// address type IPv4 or IPv6. Endpoints explicitly not ready are left out,
// and so are addresses of the wrong family.
func collectMirrors(namespace string, slices []*discoveryv1.EndpointSlice) map[string][]*service {
	type acc struct {
		svc   *service
		seen  map[netip.Addr]bool
		ports map[port]bool
	}
	byLink := map[string]map[mirrorKey]*acc{}
	for _, s := range slices {
		if s == nil || (namespace != "" && s.Namespace != namespace) || s.DeletionTimestamp != nil {
			continue
		}
		lb := s.Labels
		link, ns, name := lb[synced.LabelSourceCluster], lb[synced.LabelServiceNamespace], lb[synced.LabelServiceName]
		if lb[synced.LabelManagedBy] != synced.ManagerName || lb[synced.LabelSourceKind] != synced.KindKubeLink ||
			link == "" || !isLabel(ns) || !isLabel(name) {
			continue
		}
		if _, ok := lb[discoveryv1.LabelServiceName]; ok {
			continue
		}
		v4 := s.AddressType == discoveryv1.AddressTypeIPv4
		if !v4 && s.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		svcs := byLink[link]
		if svcs == nil {
			svcs = map[mirrorKey]*acc{}
			byLink[link] = svcs
		}
		k := mirrorKey{ns, name}
		a := svcs[k]
		if a == nil {
			a = &acc{svc: &service{namespace: ns, name: name}, seen: map[netip.Addr]bool{}, ports: map[port]bool{}}
			svcs[k] = a
		}
		a.svc.headless = a.svc.headless || lb[synced.LabelServiceType] == synced.ServiceTypeHeadless
		a.svc.exported = a.svc.exported || lb[synced.LabelExported] == "true"
		ports := slicePorts(s.Ports)
		for _, p := range ports {
			a.ports[p] = true
		}
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, as := range ep.Addresses {
				addr, err := netip.ParseAddr(as)
				if err != nil || addr.Is4() != v4 || addr.Zone() != "" || a.seen[addr] {
					continue
				}
				a.seen[addr] = true
				e := endpoint{addr: addr, ports: ports}
				if ep.Hostname != nil && isLabel(strings.ToLower(*ep.Hostname)) {
					e.host = strings.ToLower(*ep.Hostname)
				} else {
					e.host = dashed(addr)
				}
				a.svc.endpoints = append(a.svc.endpoints, e)
			}
		}
	}
	out := make(map[string][]*service, len(byLink))
	for link, svcs := range byLink {
		list := make([]*service, 0, len(svcs))
		for _, a := range svcs {
			s := a.svc
			sort.Slice(s.endpoints, func(i, j int) bool { return s.endpoints[i].addr.Less(s.endpoints[j].addr) })
			for p := range a.ports {
				s.ports = append(s.ports, p)
			}
			sort.Slice(s.ports, func(i, j int) bool { return s.ports[i].less(s.ports[j]) })
			list = append(list, s)
		}
		sort.Slice(list, func(i, j int) bool {
			if list[i].namespace != list[j].namespace {
				return list[i].namespace < list[j].namespace
			}
			return list[i].name < list[j].name
		})
		out[link] = list
	}
	return out
}

// slicePorts converts a slice's ports; ports without a number are left
// out, names that cannot be a DNS label are kept without name.
func slicePorts(in []discoveryv1.EndpointPort) []port {
	out := make([]port, 0, len(in))
	for _, p := range in {
		if p.Port == nil || *p.Port < 1 || *p.Port > 65535 {
			continue
		}
		q := port{proto: "tcp", port: uint16(*p.Port)} // #nosec G115 -- range checked
		if p.Protocol != nil {
			q.proto = strings.ToLower(string(*p.Protocol))
		}
		if p.Name != nil && isLabel(strings.ToLower(*p.Name)) {
			q.name = strings.ToLower(*p.Name)
		}
		out = append(out, q)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].less(out[j]) })
	return out
}

// dashed is an address as a DNS label: 10-1-0-5, fd00--5.
func dashed(a netip.Addr) string {
	if a.Is4() {
		return strings.ReplaceAll(a.String(), ".", "-")
	}
	return strings.ReplaceAll(a.String(), ":", "-")
}

// localExports are the local cluster's own exported Services: the
// MeshServices of a mesh that name a Service (spec.service) and that the
// gateway reports Ok, with the destinations of its status (the Service's
// ClusterIP, reachable from this cluster). By mesh name, then
// namespace/name of the Service.
func localExports(objs []*v1alpha1.MeshService) map[string]map[mirrorKey][]netip.Addr {
	out := map[string]map[mirrorKey][]netip.Addr{}
	for _, ms := range objs {
		if ms == nil || ms.Spec.Service == "" || ms.Status.State != v1alpha1.StateOK || !isLabel(ms.Namespace) || !isLabel(ms.Spec.Service) {
			continue
		}
		var addrs []netip.Addr
		for _, t := range ms.Status.Targets {
			for _, d := range t.Targets {
				a, err := netip.ParseAddr(d)
				if err != nil {
					ap, perr := netip.ParseAddrPort(d)
					if perr != nil {
						continue
					}
					a = ap.Addr()
				}
				if a.Zone() == "" {
					addrs = append(addrs, a.Unmap())
				}
			}
		}
		if len(addrs) == 0 {
			continue
		}
		m := out[ms.Spec.Mesh]
		if m == nil {
			m = map[mirrorKey][]netip.Addr{}
			out[ms.Spec.Mesh] = m
		}
		k := mirrorKey{ms.Namespace, ms.Spec.Service}
		m[k] = append(m[k], addrs...)
	}
	return out
}

// node is one name answered from memory, its records computed when the
// index is built (owner names lower case). Replies copy them: plugins in
// front of this one (cache, loadbalance) modify records and sections in
// place. An empty node is an empty non-terminal (NODATA, not NXDOMAIN).
type node struct {
	a    []dns.A
	aaaa []dns.AAAA
	srv  []dns.SRV
	// extraA and extraAAAA are the addresses of the SRV targets.
	extraA    []dns.A
	extraAAAA []dns.AAAA
}

// nodeBuilder collects a node's data; build turns it into records.
type nodeBuilder struct {
	fqdn  string
	addrs []netip.Addr
	srv   []srvData
}

type srvData struct {
	target string
	port   uint16
}

// namesBuilder builds the nodes of one cluster (or of global.<mesh>):
// relative lower-case names without trailing dot ("web.demo.svc") below
// base ("kubelink2.kubelink.").
type namesBuilder struct {
	base  string
	nodes map[string]*nodeBuilder
	// ents are the empty non-terminals to add.
	ents bool
}

func newNamesBuilder(base string, ents bool) *namesBuilder {
	return &namesBuilder{base: base, nodes: map[string]*nodeBuilder{}, ents: ents}
}

// get returns the builder of rel, creating it (and, with ents, its empty
// parents up to the cluster).
func (b *namesBuilder) get(rel string) *nodeBuilder {
	n := b.nodes[rel]
	if n == nil {
		n = &nodeBuilder{fqdn: rel + "." + b.base}
		b.nodes[rel] = n
		if b.ents {
			for p := rel; ; {
				i := strings.IndexByte(p, '.')
				if i < 0 {
					break
				}
				p = p[i+1:]
				if _, ok := b.nodes[p]; ok {
					break
				}
				b.nodes[p] = &nodeBuilder{fqdn: p + "." + b.base}
			}
		}
	}
	return n
}

// fits reports whether rel below the base is a DNS name of legal length
// (names that are not are left out: no reply could carry them).
func (b *namesBuilder) fits(rel string) bool { return len(rel)+1+len(b.base) <= 254 }

// serviceRel is the relative name of a Service: <name>.<namespace>.svc.
func serviceRel(namespace, name string) string { return name + "." + namespace + ".svc" }

// srvRel is the relative SRV name of a named port of a Service.
func srvRel(p port, svcRel string) string { return "_" + p.name + "._" + p.proto + "." + svcRel }

// addGlobal adds addresses and ports of a Service to its global name.
func (b *namesBuilder) addGlobal(namespace, name string, addrs []netip.Addr, ports []port) {
	rel := serviceRel(namespace, name)
	if !b.fits(rel) {
		return
	}
	svc := b.get(rel)
	svc.addrs = append(svc.addrs, addrs...)
	for _, p := range ports {
		svc.srv = append(svc.srv, srvData{svc.fqdn, p.port})
		if p.name != "" && b.fits(srvRel(p, rel)) {
			n := b.get(srvRel(p, rel))
			n.srv = append(n.srv, srvData{svc.fqdn, p.port})
		}
	}
}

// addService adds a Service of a kubernetes-mode cluster; ptr receives
// the PTR target of every address.
func (b *namesBuilder) addService(s *service, ptr func(netip.Addr, string)) {
	rel := serviceRel(s.namespace, s.name)
	if !b.fits(rel) {
		return
	}
	svc := b.get(rel)
	for _, e := range s.endpoints {
		svc.addrs = append(svc.addrs, e.addr)
	}
	if !s.headless {
		if len(s.endpoints) == 0 {
			return // known, but no address: NODATA, and no SRV pointing nowhere
		}
		for _, p := range s.ports {
			svc.srv = append(svc.srv, srvData{svc.fqdn, p.port})
			if p.name != "" && b.fits(srvRel(p, rel)) {
				n := b.get(srvRel(p, rel))
				n.srv = append(n.srv, srvData{svc.fqdn, p.port})
			}
		}
		for _, e := range s.endpoints {
			ptr(e.addr, svc.fqdn)
		}
		return
	}
	for _, e := range s.endpoints {
		if !b.fits(e.host + "." + rel) {
			ptr(e.addr, svc.fqdn)
			continue
		}
		host := b.get(e.host + "." + rel)
		host.addrs = append(host.addrs, e.addr)
		ptr(e.addr, host.fqdn)
		for _, p := range e.ports {
			svc.srv = append(svc.srv, srvData{host.fqdn, p.port})
			if p.name != "" && b.fits(srvRel(p, rel)) {
				n := b.get(srvRel(p, rel))
				n.srv = append(n.srv, srvData{host.fqdn, p.port})
			}
		}
	}
}

// build computes the records of every node with the TTL.
func (b *namesBuilder) build(ttl uint32) map[string]*node {
	out := make(map[string]*node, len(b.nodes))
	for rel, nb := range b.nodes {
		out[rel] = nb.build(b, ttl)
	}
	return out
}

func (nb *nodeBuilder) build(b *namesBuilder, ttl uint32) *node {
	n := &node{}
	addrRecords(nb.fqdn, dedupAddrs(nb.addrs), ttl, &n.a, &n.aaaa)
	n.srv = srvRecords(nb.fqdn, nb.srv, ttl)
	for i, r := range n.srv {
		if i > 0 && r.Target == n.srv[i-1].Target {
			continue
		}
		rel := strings.TrimSuffix(r.Target, "."+b.base)
		if t := b.nodes[rel]; t != nil {
			addrRecords(t.fqdn, dedupAddrs(t.addrs), ttl, &n.extraA, &n.extraAAAA)
		}
	}
	return n
}

// srvRecords are a name's SRV records: its targets sorted and without
// duplicates, with the weights of CoreDNS's kubernetes plugin (equal shares
// of 100). srv is sorted in place. The records of one target are adjacent.
func srvRecords(fqdn string, srv []srvData, ttl uint32) []dns.SRV {
	sort.Slice(srv, func(i, j int) bool {
		if srv[i].target != srv[j].target {
			return srv[i].target < srv[j].target
		}
		return srv[i].port < srv[j].port
	})
	srv = slices.Compact(srv)
	if len(srv) == 0 {
		return nil
	}
	weight := uint16(max(1, 100/len(srv))) // #nosec G115 -- at most 100
	out := make([]dns.SRV, len(srv))
	for i, s := range srv {
		out[i] = dns.SRV{Hdr: dns.RR_Header{Name: fqdn, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: ttl},
			Weight: weight, Port: s.port, Target: s.target}
	}
	return out
}

// dedupAddrs sorts and deduplicates addresses in place.
func dedupAddrs(as []netip.Addr) []netip.Addr {
	sort.Slice(as, func(i, j int) bool { return as[i].Less(as[j]) })
	out := as[:0]
	for i, a := range as {
		if i == 0 || a != as[i-1] {
			out = append(out, a)
		}
	}
	return out
}

// addrRecords appends the A and AAAA records of owner.
func addrRecords(owner string, as []netip.Addr, ttl uint32, a *[]dns.A, aaaa *[]dns.AAAA) {
	for _, x := range as {
		if x.Is4() {
			b := x.As4()
			*a = append(*a, dns.A{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: net.IP(b[:])})
		} else {
			b := x.As16()
			*aaaa = append(*aaaa, dns.AAAA{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl}, AAAA: net.IP(b[:])})
		}
	}
}

// portString is for tests and logs.
func (p port) String() string { return p.name + "/" + p.proto + ":" + strconv.Itoa(int(p.port)) }
