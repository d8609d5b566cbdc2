package kubelink

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubelink/kubelink/api/mesh"
	"github.com/kubelink/kubelink/api/v1alpha1"
)

// globalLabel is the reserved first label below a mesh domain for names
// answered by the mesh-global DNS.
const globalLabel = "global"

// index is the immutable, query-ready view of all meshes. It is rebuilt from
// scratch on every change and swapped atomically; queries only read it.
type index struct {
	// zones are the mesh domains, longest first so that a mesh domain
	// nested in another one wins.
	zones []*zone
	// ptr maps the lower-case reverse name of every link address, and of
	// every address of a kubernetes-mode cluster's services, to its answer.
	ptr map[string]ptrTarget
	ttl uint32
	// clusterset is the clusterset zone; nil unless configured.
	clusterset *clusterset
}

// ptrTarget is the answer to a PTR query: the name, counted for c.
type ptrTarget struct {
	name string
	c    *cluster
}

// zone is one mesh domain.
type zone struct {
	mesh   string // mesh name, "" for the default mesh
	name   string // lower-case FQDN, e.g. "kubelink."
	soa    dns.SOA
	ns     dns.NS
	global *cluster // X.global.<mesh>; nil without a mesh-global DNS
	// globalNames are the global names the mesh answers itself, relative
	// to global.<mesh> ("web.demo.svc"): the Services the Up clusters
	// export (and the local cluster's MeshServices).
	globalNames   map[string]*node
	globalResults resultCounters
	// clusters by lower-case cluster label.
	clusters map[string]*cluster
	results  resultCounters // apex and unknown-cluster answers
}

// cluster is one member of a mesh as the query path needs it.
type cluster struct {
	zone    *zone
	name    string // cluster label
	fqdn    string // lower-case "<cluster>.<mesh-domain>."
	address net.IP // link address (4 bytes for IPv4)
	// remote is the lower-case FQDN of the cluster's own domain; names
	// below fqdn are asked as names below remote.
	remote string
	up     *upstream // nil: no DNS known for the cluster
	// names, in kubernetes mode (non-nil), are the names below the cluster
	// answered from memory, relative to fqdn ("web.demo.svc"); any other
	// name below the cluster does not exist.
	names map[string]*node
	// failState/failText make every name below the cluster fail at once
	// (SERVFAIL + EDE); rejected additionally covers the cluster's own A.
	failState string
	failText  string
	rejected  bool
	results   resultCounters
	obs       observers
}

// observers are the upstream latency histograms of one cluster for the
// common rcodes, resolved once per index; others are looked up per use.
type observers struct {
	mesh, cluster             string
	noError, nxDomain, failed prometheus.Observer
}

func newObservers(mesh, cluster string) observers {
	return observers{
		mesh: mesh, cluster: cluster,
		noError:  upstreamDuration.WithLabelValues(mesh, cluster, dns.RcodeToString[dns.RcodeSuccess]),
		nxDomain: upstreamDuration.WithLabelValues(mesh, cluster, dns.RcodeToString[dns.RcodeNameError]),
		failed:   upstreamDuration.WithLabelValues(mesh, cluster, "error"),
	}
}

// observe records one exchange; rcode -1 is a failed exchange.
func (o *observers) observe(d time.Duration, rcode int) {
	s := d.Seconds()
	switch rcode {
	case dns.RcodeSuccess:
		o.noError.Observe(s)
	case dns.RcodeNameError:
		o.nxDomain.Observe(s)
	case -1:
		o.failed.Observe(s)
	default:
		upstreamDuration.WithLabelValues(o.mesh, o.cluster, dns.RcodeToString[rcode]).Observe(s)
	}
}

// resultCounters are the request counters of one mesh/cluster pair,
// resolved once per index so the query path does no label lookups.
type resultCounters [numResults]prometheus.Counter

// result labels of the requests metric.
const (
	resultLocal = iota
	resultForwarded
	resultUnavailable
	resultNXDomain
	resultError
	numResults
)

var resultNames = [numResults]string{"local", "forwarded", "unavailable", "nxdomain", "error"}

func newResultCounters(mesh, cluster string) resultCounters {
	var rc resultCounters
	for i, n := range resultNames {
		rc[i] = requestCount.WithLabelValues(mesh, cluster, n)
	}
	return rc
}

// upstreamSet hands out upstreams by address, reusing the ones of the
// previous index so pooled connections survive rebuilds.
type upstreamSet interface {
	get(addr string) *upstream
}

// buildInput is what an index is built from besides the meshes.
type buildInput struct {
	ttl    uint32
	port   string
	serial uint32
	ups    upstreamSet
	// propagation is the default DNS mode of links without spec.dns.mode
	// (mesh.Link.EffectiveDNSMode).
	propagation string
	// mirrors are the Services of netd sync's service mirrors by KubeLink
	// name (collectMirrors).
	mirrors map[string][]*service
	// local are the local cluster's exported Services by mesh name
	// (localExports).
	local map[string]map[mirrorKey][]netip.Addr
	// clusterset, when set, is the clusterset zone's input.
	clusterset *clustersetInput
}

// buildIndex turns the mesh library's view into an index.
func buildIndex(set *mesh.Set, in buildInput) *index {
	ttl, port, serial, ups := in.ttl, in.port, in.serial, in.ups
	idx := &index{ptr: map[string]ptrTarget{}, ttl: ttl}
	names := make([]string, 0, len(set.Meshes))
	for n := range set.Meshes {
		names = append(names, n)
	}
	sort.Strings(names)
	seen := map[string]bool{}
	for _, n := range names {
		m := set.Meshes[n]
		z := newZone(m, ttl, serial)
		if seen[z.name] {
			// Two meshes with one domain: the first (by name) serves it.
			continue
		}
		seen[z.name] = true
		if m.GlobalDNS.IsValid() {
			z.global = &cluster{zone: z, name: globalLabel, fqdn: globalLabel + "." + z.name,
				up: ups.get(hostPort(m.GlobalDNS, port)), results: newResultCounters(z.mesh, globalLabel),
				obs: newObservers(z.mesh, globalLabel)}
		}
		if m.Local != nil && m.Local.Cluster != "" {
			z.add(idx, m.Local, ups, port, in)
		}
		for _, l := range m.Links {
			z.add(idx, l, ups, port, in)
		}
		idx.zones = append(idx.zones, z)
	}
	// Then the addresses of the services: link addresses keep their PTR.
	for _, z := range idx.zones {
		z.addServices(idx, set.Meshes[z.mesh], in)
	}
	// Links the mesh library rejected still own their name: asking for them
	// fails at once with the verdict rather than looking like NXDOMAIN.
	for _, l := range set.Sorted() {
		if l.Local || l.Verdict.OK() {
			continue
		}
		z := idx.zoneOf(l.Mesh)
		if z == nil || z.clusters[strings.ToLower(l.Cluster)] != nil || strings.EqualFold(l.Cluster, globalLabel) {
			continue
		}
		state, msg := l.EffectiveState()
		c := z.newCluster(l)
		c.failState, c.failText, c.rejected = state, msg, true
		z.clusters[strings.ToLower(l.Cluster)] = c
	}
	sort.SliceStable(idx.zones, func(i, j int) bool { return len(idx.zones[i].name) > len(idx.zones[j].name) })
	// Last: the PTRs of link addresses and mirrors win over the clusterset's.
	if in.clusterset != nil {
		idx.clusterset = buildClusterset(idx, set, in.clusterset, serial)
	}
	return idx
}

func (idx *index) zoneOf(meshName string) *zone {
	for _, z := range idx.zones {
		if z.mesh == meshName {
			return z
		}
	}
	return nil
}

// setApex sets the SOA and NS records of the zone's apex, z.name.
func (z *zone) setApex(ttl, serial uint32) {
	z.soa = dns.SOA{
		Hdr:     dns.RR_Header{Name: z.name, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
		Ns:      "ns.dns." + z.name,
		Mbox:    "hostmaster." + z.name,
		Serial:  serial,
		Refresh: 7200,
		Retry:   1800,
		Expire:  86400,
		Minttl:  ttl,
	}
	z.ns = dns.NS{Hdr: dns.RR_Header{Name: z.name, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: ttl}, Ns: z.soa.Ns}
}

func newZone(m *mesh.Mesh, ttl, serial uint32) *zone {
	name := dns.Fqdn(strings.ToLower(m.Domain))
	z := &zone{mesh: m.Name, name: name, clusters: map[string]*cluster{}, results: newResultCounters(m.Name, ""),
		globalResults: newResultCounters(m.Name, globalLabel)}
	z.setApex(ttl, serial)
	return z
}

func (z *zone) newCluster(l *mesh.Link) *cluster {
	label := strings.ToLower(l.Cluster)
	c := &cluster{zone: z, name: l.Cluster, fqdn: label + "." + z.name,
		results: newResultCounters(z.mesh, l.Cluster), obs: newObservers(z.mesh, l.Cluster)}
	if l.Address.IsValid() {
		c.address = net.IP(l.Address.Unmap().AsSlice())
	}
	return c
}

// add registers a usable link (local or foreign).
func (z *zone) add(idx *index, l *mesh.Link, ups upstreamSet, port string, in buildInput) {
	label := strings.ToLower(l.Cluster)
	if label == globalLabel || !validLabel(label) {
		return
	}
	c := z.newCluster(l)
	c.remote = dns.Fqdn(strings.ToLower(l.ClusterDomain))
	if l.ClusterDomain == "" {
		c.remote = dns.Fqdn(v1alpha1.DefaultClusterDomain)
	}
	switch l.EffectiveDNSMode(in.propagation) {
	case v1alpha1.DNSModeDNS:
		if l.DNSIP.IsValid() {
			c.up = ups.get(hostPort(l.DNSIP, port))
		}
	case v1alpha1.DNSModeKubernetes:
		c.names = map[string]*node{} // filled by addServices
	}
	if !l.Local {
		switch state, msg := l.EffectiveState(); state {
		case v1alpha1.StateDown, v1alpha1.StateError, v1alpha1.StateInvalid, v1alpha1.StateStale:
			c.failState, c.failText = state, msg
		}
	}
	z.clusters[label] = c
	if c.address != nil {
		if rev, err := dns.ReverseAddr(l.Address.Unmap().String()); err == nil {
			if _, dup := idx.ptr[rev]; !dup {
				idx.ptr[rev] = ptrTarget{c.fqdn, c}
			}
		}
	}
}

// addServices fills the names of the zone's kubernetes-mode clusters and
// its global names from the service mirrors and the local exports.
// Clusters that fail (Down, Error, ...) keep no names; only Up clusters
// take part in the global names.
func (z *zone) addServices(idx *index, m *mesh.Mesh, in buildInput) {
	global := newNamesBuilder(globalLabel+"."+z.name, z.global == nil)
	for k, addrs := range in.local[z.mesh] {
		global.addGlobal(k.namespace, k.name, addrs, nil)
	}
	for _, l := range m.Links {
		c := z.clusters[strings.ToLower(l.Cluster)]
		svcs := in.mirrors[l.Name]
		if c == nil || c.failState != "" || len(svcs) == 0 {
			continue
		}
		mode := l.EffectiveDNSMode(in.propagation)
		if mode == mesh.DNSPropagationNone {
			continue
		}
		if state, _ := l.EffectiveState(); state == v1alpha1.StateUp {
			for _, s := range svcs {
				if !s.exported || len(s.endpoints) == 0 {
					continue
				}
				addrs := make([]netip.Addr, len(s.endpoints))
				for i, e := range s.endpoints {
					addrs[i] = e.addr
				}
				global.addGlobal(s.namespace, s.name, addrs, s.ports)
			}
		}
		if c.names == nil {
			continue
		}
		b := newNamesBuilder(c.fqdn, true)
		for _, s := range svcs {
			b.addService(s, func(a netip.Addr, target string) {
				rev, err := dns.ReverseAddr(a.String())
				if err != nil {
					return
				}
				if _, dup := idx.ptr[rev]; !dup {
					idx.ptr[rev] = ptrTarget{target, c}
				}
			})
		}
		c.names = b.build(idx.ttl)
	}
	z.globalNames = global.build(idx.ttl)
}

// validLabel reports whether s can be a single DNS label.
func validLabel(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	return !strings.ContainsAny(s, ". ")
}

func hostPort(a netip.Addr, port string) string {
	return net.JoinHostPort(a.Unmap().String(), port)
}

// match returns the mesh zone of a lower-case FQDN, or nil.
func (idx *index) match(lname string) *zone {
	for _, z := range idx.zones {
		if len(lname) < len(z.name) {
			continue
		}
		if lname[len(lname)-len(z.name):] != z.name {
			continue
		}
		if len(lname) == len(z.name) || lname[len(lname)-len(z.name)-1] == '.' {
			return z
		}
	}
	return nil
}

func (c *cluster) String() string { return fmt.Sprintf("%s in %s", c.name, c.zone.name) }
