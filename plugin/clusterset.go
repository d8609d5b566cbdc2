package kubelink

import (
	"net/netip"
	"strings"

	"github.com/miekg/dns"
	discoveryv1 "k8s.io/api/discovery/v1"
	mcsv1a1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"

	"github.com/kubelink/kubelink/api/mesh"
	"github.com/kubelink/kubelink/api/v1alpha1"
)

// The clusterset zone: KEP-1645's multicluster DNS specification
// (keps/sig-multicluster/1645-multi-cluster-services-api/specification.md,
// schema 1.0.0), answered from the ServiceImports and the MCS EndpointSlices
// (multicluster.kubernetes.io/service-name and source-cluster) netd sync
// writes, when the clusterset option is set.
const (
	// DefaultClustersetZone is the zone of the clusterset option without
	// argument, the only one the MCS API allows today.
	DefaultClustersetZone = "clusterset.local"
	// clustersetSchema is the answer of dns-version.<zone> TXT (KEP 2.2).
	clustersetSchema       = "1.0.0"
	clustersetVersionLabel = "dns-version"
)

// clustersetInput is what the clusterset zone is built from.
type clustersetInput struct {
	zone    string // lower-case FQDN, "clusterset.local."
	imports []*mcsv1a1.ServiceImport
	// slices are the EndpointSlices labelled
	// multicluster.kubernetes.io/service-name.
	slices []*discoveryv1.EndpointSlice
	// local are source-cluster values naming the local cluster: its own
	// endpoints always count, whatever the state of any link.
	local map[string]bool
}

// clusterset is the query-ready clusterset zone.
type clusterset struct {
	// zone holds the name, SOA, NS and request counters (mesh label: the
	// zone without the trailing dot).
	zone *zone
	// counter counts the PTR answers of the zone.
	counter *cluster
	// names by lower-case FQDN; an empty node is an empty non-terminal.
	names map[string]*node
	// version is dns-version.<zone>, answered with txt.
	version string
	txt     dns.TXT
}

// newClustersetZone is the apex of the clusterset zone.
func newClustersetZone(name string, ttl, serial uint32) *zone {
	label := strings.TrimSuffix(name, ".")
	z := &zone{name: name, results: newResultCounters(label, "")}
	z.setApex(ttl, serial)
	return z
}

// csEndpoint is one ready endpoint of a headless import.
type csEndpoint struct {
	addr netip.Addr
	// host is "<hostname>.<clusterid>" (the hostname, else the address
	// with dashes); empty when the cluster ID is no DNS label.
	host  string
	ports []port
}

// csBuilder collects the names of the zone before their records are
// rendered.
type csBuilder struct {
	zone  string
	nodes map[string]*csNodeData
}

type csNodeData struct {
	addrs []netip.Addr
	srv   []srvData
}

// get returns the data of fqdn (below the zone), creating it and its empty
// parents up to the zone.
func (b *csBuilder) get(fqdn string) *csNodeData {
	n := b.nodes[fqdn]
	if n != nil {
		return n
	}
	n = &csNodeData{}
	b.nodes[fqdn] = n
	for p := fqdn; ; {
		i := strings.IndexByte(p, '.')
		if i < 0 {
			break
		}
		p = p[i+1:]
		if p == b.zone {
			break
		}
		if _, ok := b.nodes[p]; ok {
			break
		}
		b.nodes[p] = &csNodeData{}
	}
	return n
}

// fits reports whether an FQDN is of legal length.
func fits(fqdn string) bool { return len(fqdn) <= 254 }

// healthy tells whether the endpoints of a source cluster count: the local
// cluster's always, a cluster whose KubeLink is known only while it is Up
// (rejected links are not Up), any other (a ClusterLink's, an unknown
// one's) as netd sync marked them.
func (in *clustersetInput) healthy(set *mesh.Set, source string) bool {
	if in.local[source] {
		return true
	}
	l := set.Links[source]
	if l == nil || l.Local {
		return true
	}
	state, _ := l.EffectiveState()
	return state == v1alpha1.StateUp
}

// buildClusterset renders the zone; PTRs of headless endpoints go to
// idx.ptr where no other PTR holds the address.
func buildClusterset(idx *index, set *mesh.Set, in *clustersetInput, serial uint32) *clusterset {
	ttl := idx.ttl
	z := newClustersetZone(in.zone, ttl, serial)
	cs := &clusterset{zone: z, counter: &cluster{zone: z, name: strings.TrimSuffix(in.zone, "."), results: z.results},
		version: clustersetVersionLabel + "." + in.zone}
	cs.txt = dns.TXT{Hdr: dns.RR_Header{Name: cs.version, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: ttl}, Txt: []string{clustersetSchema}}

	type key struct{ namespace, name string }
	slices := map[key][]*discoveryv1.EndpointSlice{}
	for _, s := range in.slices {
		if s == nil || s.DeletionTimestamp != nil {
			continue
		}
		if svc := s.Labels[mcsv1a1.LabelServiceName]; svc != "" {
			k := key{s.Namespace, svc}
			slices[k] = append(slices[k], s)
		}
	}

	b := &csBuilder{zone: in.zone, nodes: map[string]*csNodeData{}}
	var ptrs []ptrTarget
	var ptrAddrs []netip.Addr
	for _, imp := range in.imports {
		if imp == nil || imp.DeletionTimestamp != nil {
			continue
		}
		ns, name := strings.ToLower(imp.Namespace), strings.ToLower(imp.Name)
		if !isLabel(ns) || !isLabel(name) {
			continue
		}
		svc := name + "." + ns + ".svc." + in.zone
		if !fits(svc) {
			continue
		}
		switch imp.Spec.Type {
		case mcsv1a1.ClusterSetIP:
			// KEP 2.3: spec.ips, SRV per named port; no name below the
			// service singles out a cluster (2.3.4).
			var addrs []netip.Addr
			for _, s := range imp.Spec.IPs {
				if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
					addrs = append(addrs, a.Unmap())
				}
			}
			n := b.get(svc)
			if len(addrs) == 0 {
				continue // known, but no address: NODATA, and no SRV pointing nowhere
			}
			n.addrs = append(n.addrs, addrs...)
			for _, p := range importPorts(imp.Spec.Ports) {
				n.srv = append(n.srv, srvData{svc, p.port})
				if sn := "_" + p.name + "._" + p.proto + "." + svc; p.name != "" && fits(sn) {
					s := b.get(sn)
					s.srv = append(s.srv, srvData{svc, p.port})
				}
			}
		case mcsv1a1.Headless:
			// KEP 2.4: the ready endpoints of every cluster that counts,
			// <hostname>.<clusterid> for each, SRV per endpoint and
			// named port; none ready: the name does not exist.
			eps := headlessEndpoints(in, set, slices[key{imp.Namespace, imp.Name}])
			if len(eps) == 0 {
				continue
			}
			n := b.get(svc)
			for _, e := range eps {
				n.addrs = append(n.addrs, e.addr)
				host := e.host + "." + svc
				if e.host == "" || !fits(host) {
					ptrs, ptrAddrs = append(ptrs, ptrTarget{svc, cs.counter}), append(ptrAddrs, e.addr)
					continue
				}
				h := b.get(host)
				h.addrs = append(h.addrs, e.addr)
				ptrs, ptrAddrs = append(ptrs, ptrTarget{host, cs.counter}), append(ptrAddrs, e.addr)
				for _, p := range e.ports {
					n.srv = append(n.srv, srvData{host, p.port})
					if sn := "_" + p.name + "._" + p.proto + "." + svc; p.name != "" && fits(sn) {
						s := b.get(sn)
						s.srv = append(s.srv, srvData{host, p.port})
					}
				}
			}
		}
	}
	cs.names = b.build(ttl)
	// KEP 2.4.3: PTR of every headless endpoint that has none yet (link
	// addresses and service mirrors keep theirs; the first import, by
	// namespace, name, slice and address, wins).
	for i, a := range ptrAddrs {
		if rev, err := dns.ReverseAddr(a.String()); err == nil {
			if _, dup := idx.ptr[rev]; !dup {
				idx.ptr[rev] = ptrs[i]
			}
		}
	}
	return cs
}

// headlessEndpoints are the ready endpoints of the MCS slices of one
// headless import whose source cluster counts. Slices without a
// source-cluster label are not the MCS API's and are left out; so are
// slices of other address types and addresses of the wrong family.
func headlessEndpoints(in *clustersetInput, set *mesh.Set, slices []*discoveryv1.EndpointSlice) []csEndpoint {
	var out []csEndpoint
	for _, s := range slices {
		source := s.Labels[mcsv1a1.LabelSourceCluster]
		if source == "" || !in.healthy(set, source) {
			continue
		}
		v4 := s.AddressType == discoveryv1.AddressTypeIPv4
		if !v4 && s.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		clusterID := strings.ToLower(source)
		if !isLabel(clusterID) {
			clusterID = ""
		}
		ports := slicePorts(s.Ports)
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, as := range ep.Addresses {
				addr, err := netip.ParseAddr(as)
				if err != nil || addr.Is4() != v4 || addr.Zone() != "" {
					continue
				}
				e := csEndpoint{addr: addr, ports: ports}
				if clusterID != "" {
					if ep.Hostname != nil && isLabel(strings.ToLower(*ep.Hostname)) {
						e.host = strings.ToLower(*ep.Hostname) + "." + clusterID
					} else {
						e.host = dashed(addr) + "." + clusterID
					}
				}
				out = append(out, e)
			}
		}
	}
	return out
}

// importPorts converts a ServiceImport's ports as slicePorts does.
func importPorts(in []mcsv1a1.ServicePort) []port {
	out := make([]port, 0, len(in))
	for _, p := range in {
		if p.Port < 1 || p.Port > 65535 {
			continue
		}
		q := port{proto: "tcp", port: uint16(p.Port)} // #nosec G115 -- range checked
		if p.Protocol != "" {
			q.proto = strings.ToLower(string(p.Protocol))
		}
		if n := strings.ToLower(p.Name); isLabel(n) {
			q.name = n
		}
		out = append(out, q)
	}
	return out
}

// build renders the records of every name: addresses sorted, SRV sorted by
// target and port with equal weights sharing 100 (as CoreDNS's kubernetes
// plugin), the targets' addresses in the additional section.
func (b *csBuilder) build(ttl uint32) map[string]*node {
	out := make(map[string]*node, len(b.nodes))
	for _, nd := range b.nodes {
		nd.addrs = dedupAddrs(nd.addrs)
	}
	for fqdn, nd := range b.nodes {
		n := &node{}
		addrRecords(fqdn, nd.addrs, ttl, &n.a, &n.aaaa)
		n.srv = srvRecords(fqdn, nd.srv, ttl)
		for i, r := range n.srv {
			if i > 0 && r.Target == n.srv[i-1].Target {
				continue
			}
			if t := b.nodes[r.Target]; t != nil {
				addrRecords(r.Target, t.addrs, ttl, &n.extraA, &n.extraAAAA)
			}
		}
		out[fqdn] = n
	}
	return out
}

// inZone reports whether the lower-case FQDN lname is zone or below it.
func inZone(lname, zone string) bool {
	if len(lname) < len(zone) || lname[len(lname)-len(zone):] != zone {
		return false
	}
	return len(lname) == len(zone) || lname[len(lname)-len(zone)-1] == '.'
}
