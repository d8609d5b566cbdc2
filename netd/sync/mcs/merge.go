package mcs

import (
	"net/netip"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	mcsv1a1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
)

// merged is the clusterset view of the valid exports.
type merged struct {
	typ            mcsv1a1.ServiceImportType
	ports          []mcsv1a1.ServicePort
	affinity       corev1.ServiceAffinity
	affinityConfig *corev1.SessionAffinityConfig
	itp            *corev1.ServiceInternalTrafficPolicy
	td             *string
	// families is the union of the contributors' IP families, in
	// precedence order.
	families []corev1.IPFamily
	// contributors offer endpoints, in precedence order.
	contributors []*export
	conflicts    []Conflict
}

// merge applies the conflict resolution policy to valid, which is sorted
// oldest first and not empty.
func merge(valid []*export) *merged {
	w := valid[0]
	m := &merged{
		typ:            importType(w.Service),
		affinity:       affinity(w.Service),
		affinityConfig: affinityConfig(w.Service),
		itp:            copyPtr(w.Service.Spec.InternalTrafficPolicy),
		td:             copyPtr(w.Service.Spec.TrafficDistribution),
	}
	cs := conflictSet{}
	cs.scalar(mcsv1a1.ServiceExportReasonTypeConflict, "type", valid,
		func(e *export) string { return string(importType(e.Service)) })
	cs.scalar(mcsv1a1.ServiceExportReasonSessionAffinityConflict, "sessionAffinity", valid,
		func(e *export) string { return string(affinity(e.Service)) })
	// The config only means something under ClientIP affinity, and a
	// cluster with another affinity already conflicts on sessionAffinity.
	var clientIP []*export
	if m.affinity == corev1.ServiceAffinityClientIP {
		for _, e := range valid {
			if affinity(e.Service) == corev1.ServiceAffinityClientIP {
				clientIP = append(clientIP, e)
			}
		}
	}
	cs.scalar(mcsv1a1.ServiceExportReasonSessionAffinityConfigConflict, "sessionAffinityConfig", clientIP,
		func(e *export) string {
			return "timeoutSeconds=" + strconv.Itoa(int(*affinityConfig(e.Service).ClientIP.TimeoutSeconds))
		})
	cs.scalar(mcsv1a1.ServiceExportReasonInternalTrafficPolicyConflict, "internalTrafficPolicy", valid,
		func(e *export) string {
			// Unset is the API default, Cluster.
			if p := e.Service.Spec.InternalTrafficPolicy; p != nil {
				return string(*p)
			}
			return string(corev1.ServiceInternalTrafficPolicyCluster)
		})
	cs.scalar(mcsv1a1.ServiceExportReasonTrafficDistributionConflict, "trafficDistribution", valid,
		func(e *export) string {
			if p := e.Service.Spec.TrafficDistribution; p != nil && *p != "" {
				return *p
			}
			return "unset"
		})

	m.mergePorts(valid, cs)

	for _, e := range valid {
		e.contributes = len(e.Service.Spec.Ports) == 0 || len(e.agreed) > 0
		if e.contributes {
			m.contributors = append(m.contributors, e)
		}
	}
	// Only contributors carry traffic, so only their families matter; the
	// first contributor is the winner (it agrees with itself on every
	// port).
	seen := map[corev1.IPFamily]bool{}
	for _, e := range m.contributors {
		for _, f := range families(e.Service) {
			if !seen[f] {
				seen[f] = true
				m.families = append(m.families, f)
			}
		}
	}
	cs.scalar(mcsv1a1.ServiceExportReasonIPFamilyConflict, "ipFamilies", m.contributors,
		func(e *export) string {
			var fs []string
			for _, f := range families(e.Service) {
				fs = append(fs, string(f))
			}
			sort.Strings(fs)
			if len(fs) == 0 {
				return "none"
			}
			return strings.Join(fs, ",")
		})
	m.conflicts = cs.list()
	return m
}

// mergePorts builds the union of ports, oldest export first: by name, then
// by protocol and port number, as KEP-1645 asks, so the result is a valid
// port list (no duplicate names, no duplicate protocol/port). Each export's
// agreed ports are those it declares identically to the import.
func (m *merged) mergePorts(valid []*export, cs conflictSet) {
	byName := map[string]int{}
	byNumber := map[string]int{}
	owner := map[int]string{}
	for _, e := range valid {
		for _, sp := range e.Service.Spec.Ports {
			p := importPort(sp)
			if i, ok := byName[p.Name]; ok {
				if samePort(m.ports[i], p) {
					e.agreed = append(e.agreed, p)
				} else {
					cs.add(mcsv1a1.ServiceExportReasonPortConflict, "ports["+portName(p.Name)+"]",
						owner[i], portString(m.ports[i]), e.Cluster, portString(p))
				}
				continue
			}
			if i, ok := byNumber[numberKey(p)]; ok {
				cs.add(mcsv1a1.ServiceExportReasonPortConflict, "ports["+numberKey(p)+"]",
					owner[i], "name "+portName(m.ports[i].Name), e.Cluster, "name "+portName(p.Name))
				continue
			}
			i := len(m.ports)
			m.ports = append(m.ports, p)
			byName[p.Name] = i
			byNumber[numberKey(p)] = i
			owner[i] = e.Cluster
			e.agreed = append(e.agreed, p)
		}
	}
}

func importPort(sp corev1.ServicePort) mcsv1a1.ServicePort {
	return mcsv1a1.ServicePort{
		Name:        sp.Name,
		Protocol:    protocol(sp.Protocol),
		AppProtocol: copyPtr(sp.AppProtocol),
		Port:        sp.Port,
	}
}

// samePort: KEP-1645 treats ports as identical when port, protocol and
// appProtocol agree.
func samePort(a, b mcsv1a1.ServicePort) bool {
	return a.Port == b.Port && protocol(a.Protocol) == protocol(b.Protocol) && str(a.AppProtocol) == str(b.AppProtocol)
}

func numberKey(p mcsv1a1.ServicePort) string {
	return strconv.Itoa(int(p.Port)) + "/" + string(protocol(p.Protocol))
}

func portString(p mcsv1a1.ServicePort) string {
	s := numberKey(p)
	if p.AppProtocol != nil {
		s += " appProtocol " + *p.AppProtocol
	}
	return s
}

func portName(n string) string {
	if n == "" {
		return "<unnamed>"
	}
	return n
}

// protocol applies the API default, so an unset protocol matches TCP.
func protocol(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func copyPtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

func headless(s *corev1.Service) bool {
	return s.Spec.ClusterIP == corev1.ClusterIPNone
}

func importType(s *corev1.Service) mcsv1a1.ServiceImportType {
	if headless(s) {
		return mcsv1a1.Headless
	}
	return mcsv1a1.ClusterSetIP
}

func affinity(s *corev1.Service) corev1.ServiceAffinity {
	if s.Spec.SessionAffinity == "" {
		return corev1.ServiceAffinityNone
	}
	return s.Spec.SessionAffinity
}

// affinityConfig is the Service's config with the API default timeout
// applied, so a Service read back from another apiserver version compares
// alike; nil unless the affinity is ClientIP.
func affinityConfig(s *corev1.Service) *corev1.SessionAffinityConfig {
	if affinity(s) != corev1.ServiceAffinityClientIP {
		return nil
	}
	timeout := corev1.DefaultClientIPServiceAffinitySeconds
	if c := s.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
		timeout = *c.ClientIP.TimeoutSeconds
	}
	return &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr(timeout)}}
}

// clusterIPs are the Service's valid ClusterIPs (none for headless or
// ExternalName Services).
func clusterIPs(s *corev1.Service) []string {
	if s == nil || headless(s) || s.Spec.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	ips := s.Spec.ClusterIPs
	if len(ips) == 0 && s.Spec.ClusterIP != "" {
		ips = []string{s.Spec.ClusterIP}
	}
	var out []string
	for _, ip := range ips {
		if _, ok := familyOf(ip); ok {
			out = append(out, ip)
		}
	}
	return out
}

func familyOf(ip string) (corev1.IPFamily, bool) {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return "", false
	}
	if a.Is4() || a.Is4In6() {
		return corev1.IPv4Protocol, true
	}
	return corev1.IPv6Protocol, true
}

// families are the Service's IP families: spec.ipFamilies, or those of its
// ClusterIPs when the field is unset (objects written by old clients).
func families(s *corev1.Service) []corev1.IPFamily {
	var out []corev1.IPFamily
	seen := map[corev1.IPFamily]bool{}
	addFam := func(f corev1.IPFamily) {
		if (f == corev1.IPv4Protocol || f == corev1.IPv6Protocol) && !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	for _, f := range s.Spec.IPFamilies {
		addFam(f)
	}
	if len(out) == 0 {
		for _, ip := range clusterIPs(s) {
			f, _ := familyOf(ip)
			addFam(f)
		}
	}
	return out
}

// conflictSet collects conflicts by reason and field.
type conflictSet map[string]*Conflict

func (cs conflictSet) add(reason mcsv1a1.ServiceExportConditionReason, field, winner, value, cluster, other string) {
	key := string(reason) + "\x00" + field
	c, ok := cs[key]
	if !ok {
		c = &Conflict{Reason: reason, Field: field, Winner: winner, Value: value}
		cs[key] = c
	}
	c.Others = append(c.Others, ClusterValue{Cluster: cluster, Value: other})
}

// scalar compares a property of exports (oldest first) with the oldest's.
func (cs conflictSet) scalar(reason mcsv1a1.ServiceExportConditionReason, field string, exports []*export, value func(*export) string) {
	if len(exports) < 2 {
		return
	}
	w := exports[0]
	wv := value(w)
	for _, e := range exports[1:] {
		if v := value(e); v != wv {
			cs.add(reason, field, w.Cluster, wv, e.Cluster, v)
		}
	}
}

// reasonOrder is the order of reasons in the Conflict condition.
var reasonOrder = map[mcsv1a1.ServiceExportConditionReason]int{
	mcsv1a1.ServiceExportReasonTypeConflict:                  0,
	mcsv1a1.ServiceExportReasonPortConflict:                  1,
	mcsv1a1.ServiceExportReasonSessionAffinityConflict:       2,
	mcsv1a1.ServiceExportReasonSessionAffinityConfigConflict: 3,
	mcsv1a1.ServiceExportReasonInternalTrafficPolicyConflict: 4,
	mcsv1a1.ServiceExportReasonTrafficDistributionConflict:   5,
	mcsv1a1.ServiceExportReasonIPFamilyConflict:              6,
}

func (cs conflictSet) list() []Conflict {
	var out []Conflict
	for _, c := range cs {
		sort.Slice(c.Others, func(i, j int) bool { return c.Others[i].Cluster < c.Others[j].Cluster })
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool {
		if reasonOrder[out[i].Reason] != reasonOrder[out[j].Reason] {
			return reasonOrder[out[i].Reason] < reasonOrder[out[j].Reason]
		}
		return out[i].Field < out[j].Field
	})
	return out
}

// String describes the conflict for a condition message or an event.
func (c Conflict) String() string {
	var b strings.Builder
	b.WriteString(c.Field + ": ")
	if c.Reason == mcsv1a1.ServiceExportReasonIPFamilyConflict {
		// Families are not decided by precedence; the conflict says that
		// traffic of one family reaches only the clusters that have it.
		b.WriteString(c.Value + " (cluster " + c.Winner + ", the oldest export) differs from ")
	} else {
		b.WriteString(c.Value + " of the oldest export (cluster " + c.Winner + ") wins over ")
	}
	for i, o := range c.Others {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(o.Value + " (cluster " + o.Cluster + ")")
	}
	return b.String()
}
