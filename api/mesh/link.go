// Package mesh turns KubeLink objects into meshes: it parses and defaults
// each link and checks what admission cannot (overlaps, duplicates, missing
// meshes, gateway cycles), giving every link its own verdict so that one bad
// link never invalidates the others. The CoreDNS plugin and netd share it.
package mesh

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/kubelink/kubelink/api/v1alpha1"
)

// Rule is one ingress entry: a CIDR to allow, or to deny with Deny set.
type Rule struct {
	Prefix netip.Prefix
	Deny   bool
}

func (r Rule) String() string {
	if r.Deny {
		return "!" + r.Prefix.String()
	}
	return r.Prefix.String()
}

// Verdict is the mesh library's judgement of a link. An empty State means the
// link is usable; otherwise State is v1alpha1.StateInvalid or StateStale.
type Verdict struct {
	State   string
	Message string
}

// OK reports whether the link may be used.
func (v Verdict) OK() bool { return v.State == "" }

// Link is a parsed, defaulted KubeLink.
type Link struct {
	// Name is the object name, Mesh and Cluster its two parts.
	Name    string
	Mesh    string
	Cluster string
	// Local is set for the link describing the local cluster.
	Local bool
	// Address is the link address; Network the mesh network it carries.
	Address netip.Addr
	Network netip.Prefix
	// CIDR is the cluster's service CIDR (masked); invalid when unset.
	CIDR    netip.Prefix
	Egress  []netip.Prefix
	Ingress []Rule
	// Learned are host prefixes of the cluster's MeshService addresses
	// inside the mesh network that a gateway learned from netd sync's
	// mirrors (Set.LearnServiceAddresses). They are routed like egress,
	// but never come from the KubeLink and never take part in admission:
	// Build leaves them empty.
	Learned []netip.Prefix
	// Endpoint is host:port of the peer gateway; empty for Inbound and local
	// links.
	Endpoint     string
	Inbound      bool
	GatewayLink  string
	PublicKey    string
	PresharedKey string
	APIAccess    *v1alpha1.KubeLinkAPIAccess
	// DNSIP is the cluster's DNS service (foreign links: default the 10th
	// address of CIDR); ClusterDomain its domain (default cluster.local).
	DNSIP         netip.Addr
	ClusterDomain string
	OmitDNS       bool
	// DNSMode is spec.dns.mode as written (v1alpha1.DNSModeDNS,
	// DNSModeKubernetes, or "" for the consumer's default); see
	// EffectiveDNSMode.
	DNSMode string
	// State and Message are the object's status as the gateway wrote it.
	State   string
	Message string

	Verdict Verdict
	Object  *v1alpha1.KubeLink

	// meshDomain and globalDNS come from a LocalLink's spec.dns, which
	// describes the mesh rather than the cluster.
	meshDomain string
	globalDNS  netip.Addr
}

// EffectiveState is the verdict when the link is not usable, else the state
// the gateway reported.
func (l *Link) EffectiveState() (state, message string) {
	if !l.Verdict.OK() {
		return l.Verdict.State, l.Verdict.Message
	}
	return l.State, l.Message
}

// Defaults of EffectiveDNSMode when spec.dns.mode is not set.
const (
	// DNSPropagationAuto: kubernetes for links with spec.apiAccess (their
	// Services are followed), dns for the others.
	DNSPropagationAuto = "auto"
	// DNSPropagationNone: names below the cluster are not propagated, as
	// with spec.dns.omitDNSPropagation.
	DNSPropagationNone = "none"
)

// EffectiveDNSMode is how names below a foreign link's cluster are
// answered: v1alpha1.DNSModeDNS, DNSModeKubernetes, or DNSPropagationNone.
// spec.dns.omitDNSPropagation gives none; an explicit spec.dns.mode wins
// over def, the consumer's default (DNSPropagationAuto, "" alike,
// DNSPropagationNone, or one of the two modes). The local link is always
// dns: its names are its own cluster DNS's.
func (l *Link) EffectiveDNSMode(def string) string {
	switch {
	case l.OmitDNS:
		return DNSPropagationNone
	case l.Local:
		return v1alpha1.DNSModeDNS
	case l.DNSMode != "":
		return l.DNSMode
	}
	switch def {
	case v1alpha1.DNSModeDNS, v1alpha1.DNSModeKubernetes, DNSPropagationNone:
		return def
	}
	if l.APIAccess != nil {
		return v1alpha1.DNSModeKubernetes
	}
	return v1alpha1.DNSModeDNS
}

// Routes are the destinations reached through the link: its service CIDR,
// egress CIDRs and learned MeshService addresses. Every consumer (tunnel
// peers, routes, SNAT, firewall sources) treats them alike, so a learned
// address needs no code path of its own.
func (l *Link) Routes() []netip.Prefix {
	out := make([]netip.Prefix, 0, 1+len(l.Egress)+len(l.Learned))
	if l.CIDR.IsValid() {
		out = append(out, l.CIDR)
	}
	out = append(out, l.Egress...)
	return append(out, l.Learned...)
}

var (
	dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dnsName  = regexp.MustCompile(`^[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?)*\.?$`)
	wgKey    = regexp.MustCompile(`^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$`)
)

// IsDNSName reports whether s is a DNS name (labels of letters, digits and
// hyphens, at most 253 characters, optional trailing dot).
func IsDNSName(s string) bool { return len(s) <= 253 && dnsName.MatchString(s) }

// ParseCIDR parses IP/prefix and returns the masked prefix.
func ParseCIDR(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR (IP/prefix)", s)
	}
	return p.Masked(), nil
}

// ParseAddressPrefix parses IP/prefix keeping the address (for link
// addresses such as 192.168.0.11/24).
func ParseAddressPrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not IP/prefix (e.g. 192.168.0.11/24)", s)
	}
	return p, nil
}

// NthAddress returns the n-th address of a prefix (0 = network address), or
// an invalid address when the prefix is too small.
func NthAddress(p netip.Prefix, n int) netip.Addr {
	if !p.IsValid() || n < 0 {
		return netip.Addr{}
	}
	b := p.Masked().Addr().AsSlice()
	carry := n
	for i := len(b) - 1; i >= 0 && carry > 0; i-- {
		sum := int(b[i]) + carry
		b[i] = byte(sum)
		carry = sum >> 8
	}
	a, _ := netip.AddrFromSlice(b)
	if carry != 0 || !p.Contains(a) {
		return netip.Addr{}
	}
	return a
}

// ParseEndpoint splits host[:port] (IPv6 hosts in brackets) and applies the
// default port.
func ParseEndpoint(ep string) (host string, port int, err error) {
	if ep == "" {
		return "", 0, fmt.Errorf("empty endpoint")
	}
	host, portStr := ep, ""
	if h, p, e := net.SplitHostPort(ep); e == nil {
		host, portStr = h, p
	} else if strings.HasPrefix(ep, "[") && strings.HasSuffix(ep, "]") {
		host = ep[1 : len(ep)-1]
	}
	port = v1alpha1.DefaultPort
	if portStr != "" {
		port, err = strconv.Atoi(portStr)
		if err != nil || port < 1 || port > 65535 {
			return "", 0, fmt.Errorf("endpoint %q: port must be a number from 1 to 65535", ep)
		}
	}
	if a, e := netip.ParseAddr(host); e == nil {
		return a.String(), port, nil
	}
	if !IsDNSName(host) || strings.Trim(host, "0123456789.") == "" {
		return "", 0, fmt.Errorf("endpoint %q: host must be a DNS name or an IP address", ep)
	}
	return host, port, nil
}

// IsWireGuardKey reports whether s is base64 of exactly 32 bytes.
func IsWireGuardKey(s string) bool {
	if !wgKey.MatchString(s) {
		return false
	}
	b, err := base64.StdEncoding.DecodeString(s)
	return err == nil && len(b) == 32
}

// ParseLink parses and defaults one KubeLink. Errors are what admission
// rejects; they matter for objects that did not pass admission (manifest
// files, older CRDs).
func ParseLink(obj *v1alpha1.KubeLink) (*Link, error) {
	l := &Link{Name: obj.Name, Object: obj, State: obj.Status.State, Message: obj.Status.Message}
	l.Mesh, l.Cluster = v1alpha1.SplitName(obj.Name)
	l.Local = obj.IsLocalLink()
	spec := &obj.Spec
	if !dnsLabel.MatchString(l.Cluster) {
		return l, fmt.Errorf("cluster name %q (from object name %q) must be a DNS label", l.Cluster, obj.Name)
	}
	if l.Mesh != "" && !dnsLabel.MatchString(l.Mesh) {
		return l, fmt.Errorf("mesh name %q (from object name %q) must be a DNS label", l.Mesh, obj.Name)
	}
	ap, err := ParseAddressPrefix(spec.ClusterAddress)
	if err != nil {
		return l, fmt.Errorf("spec.clusterAddress: %w", err)
	}
	l.Address, l.Network = ap.Addr(), ap.Masked()
	if spec.CIDR != "" {
		if l.CIDR, err = ParseCIDR(spec.CIDR); err != nil {
			return l, fmt.Errorf("spec.cidr: %w", err)
		}
	}
	for _, e := range spec.Egress {
		p, err := ParseCIDR(e)
		if err != nil {
			return l, fmt.Errorf("spec.egress: %w", err)
		}
		l.Egress = append(l.Egress, p)
	}
	if l.Local && len(l.Egress) > 0 {
		return l, fmt.Errorf("spec.egress is not allowed on a LocalLink")
	}
	for _, e := range spec.Ingress {
		r := Rule{Deny: strings.HasPrefix(e, "!")}
		if r.Prefix, err = ParseCIDR(strings.TrimPrefix(e, "!")); err != nil {
			return l, fmt.Errorf("spec.ingress: %w", err)
		}
		l.Ingress = append(l.Ingress, r)
	}
	switch spec.Endpoint {
	case v1alpha1.EndpointLocalLink:
	case v1alpha1.EndpointInbound:
		l.Inbound = true
	case "":
	default:
		host, port, err := ParseEndpoint(spec.Endpoint)
		if err != nil {
			return l, fmt.Errorf("spec.endpoint: %w", err)
		}
		l.Endpoint = net.JoinHostPort(host, strconv.Itoa(port))
	}
	if spec.PublicKey != "" && !IsWireGuardKey(spec.PublicKey) {
		return l, fmt.Errorf("spec.publicKey must be base64 of exactly 32 bytes")
	}
	if spec.PresharedKey != "" && !IsWireGuardKey(spec.PresharedKey) {
		return l, fmt.Errorf("spec.presharedKey must be base64 of exactly 32 bytes")
	}
	l.PublicKey, l.PresharedKey = spec.PublicKey, spec.PresharedKey
	if spec.GatewayLink == obj.Name {
		return l, fmt.Errorf("spec.gatewayLink must name another KubeLink, not this one")
	}
	l.GatewayLink = spec.GatewayLink
	l.APIAccess = spec.APIAccess
	l.ClusterDomain = v1alpha1.DefaultClusterDomain
	if d := spec.DNS; d != nil {
		l.OmitDNS = d.OmitDNSPropagation != nil && *d.OmitDNSPropagation
		var ip netip.Addr
		if d.DNSIP != "" {
			if ip, err = netip.ParseAddr(d.DNSIP); err != nil {
				return l, fmt.Errorf("spec.dns.dnsIP: %q is not an IP address", d.DNSIP)
			}
		}
		switch d.Mode {
		case "", v1alpha1.DNSModeDNS, v1alpha1.DNSModeKubernetes:
			l.DNSMode = d.Mode
		default:
			return l, fmt.Errorf("spec.dns.mode: %q must be %s or %s", d.Mode, v1alpha1.DNSModeDNS, v1alpha1.DNSModeKubernetes)
		}
		if d.BaseDomain != "" && !IsDNSName(d.BaseDomain) {
			return l, fmt.Errorf("spec.dns.baseDomain: %q is not a DNS name", d.BaseDomain)
		}
		if l.Local {
			l.globalDNS, l.meshDomain = ip, NormalizeDomain(d.BaseDomain)
		} else {
			l.DNSIP = ip
			if d.BaseDomain != "" {
				l.ClusterDomain = NormalizeDomain(d.BaseDomain)
			}
		}
	}
	if !l.Local && !l.DNSIP.IsValid() {
		l.DNSIP = NthAddress(l.CIDR, 10)
	}
	return l, nil
}

// NormalizeDomain lower-cases a domain and strips the trailing dot.
func NormalizeDomain(d string) string { return strings.TrimSuffix(strings.ToLower(d), ".") }
