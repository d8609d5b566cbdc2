// Package filter is svclink's service filter, shared by every remote
// cluster netd sync follows: which remote Services are read. The order of
// the rules is svclink's: kube-system and the kubernetes Service are never
// read; the global --included-namespaces, when given, replaces the link's
// own namespace lists; then the link's includedNamespaces,
// excludedNamespaces, excludedServices (namespace/name) and
// excludedServiceNames.
package filter

import (
	"sort"
	"strings"

	svclinkv1alpha1 "github.com/kubelink/kubelink/api/svclink/v1alpha1"
)

// Always excluded, as in svclink.
const (
	SystemNamespace   = "kube-system"
	KubernetesService = "kubernetes"
)

// Filter decides which remote Services of one cluster are read. The zero
// Filter reads everything but kube-system and the kubernetes Service.
type Filter struct {
	// own is netd's namespace, never read: every member has its own
	// kubelink Services there (the mesh DNS, the broker), and aggregating
	// them would send one cluster's mesh DNS queries to another's.
	own          string
	global       map[string]bool
	included     map[string]bool
	excluded     map[string]bool
	excludedSvcs map[string]bool
	excludedName map[string]bool
}

// New builds the filter of a link: own is netd's namespace (never read),
// global is --included-namespaces (empty: not given); spec is the
// ClusterLink's spec, nil for links without filters (KubeLinks).
func New(own string, global []string, spec *svclinkv1alpha1.ClusterLinkSpec) Filter {
	f := Filter{own: own, global: set(global)}
	if spec != nil {
		f.included = set(spec.IncludedNamespaces)
		f.excluded = set(spec.ExcludedNamespaces)
		f.excludedSvcs = set(spec.ExcludedServices)
		f.excludedName = set(spec.ExcludedServiceNames)
	}
	return f
}

func set(l []string) map[string]bool {
	if len(l) == 0 {
		return nil
	}
	m := make(map[string]bool, len(l))
	for _, s := range l {
		if s = strings.TrimSpace(s); s != "" {
			m[s] = true
		}
	}
	return m
}

// Allows reports whether the remote Service namespace/name is read.
func (f Filter) Allows(namespace, name string) bool {
	if namespace == SystemNamespace || name == KubernetesService || (f.own != "" && namespace == f.own) {
		return false
	}
	if f.global != nil {
		if !f.global[namespace] {
			return false
		}
	} else {
		if f.included != nil && !f.included[namespace] {
			return false
		}
		if f.excluded[namespace] {
			return false
		}
	}
	return !f.excludedSvcs[namespace+"/"+name] && !f.excludedName[name]
}

// String describes the filter for logs and for comparing two filters
// (a changed filter re-plans every Service of the cluster).
func (f Filter) String() string {
	part := func(k string, m map[string]bool) string {
		l := make([]string, 0, len(m))
		for s := range m {
			l = append(l, s)
		}
		sort.Strings(l)
		return k + "=" + strings.Join(l, ",")
	}
	return strings.Join([]string{"own=" + f.own, part("global", f.global), part("included", f.included), part("excluded", f.excluded),
		part("excludedServices", f.excludedSvcs), part("excludedServiceNames", f.excludedName)}, " ")
}

// ParseList splits a comma-separated flag value, dropping empty entries.
func ParseList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
