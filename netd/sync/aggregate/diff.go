package aggregate

import (
	"reflect"
	"sort"

	discoveryv1 "k8s.io/api/discovery/v1"
)

// Equal reports whether current already carries everything desired sets:
// our labels (other labels on current are someone else's and ignored), the
// address type, the ports and endpoints (order-insensitive, since an edit by
// hand may reorder them) and our controller owner reference. A resync that
// finds Equal true writes nothing.
func Equal(desired, current *discoveryv1.EndpointSlice) bool {
	if desired == nil || current == nil {
		return desired == current
	}
	for k, v := range desired.Labels {
		if cv, ok := current.Labels[k]; !ok || cv != v {
			return false
		}
	}
	if desired.AddressType != current.AddressType {
		return false
	}
	if !hasOwners(current, desired) {
		return false
	}
	return reflect.DeepEqual(normPorts(desired.Ports), normPorts(current.Ports)) &&
		reflect.DeepEqual(normEndpoints(desired.Endpoints), normEndpoints(current.Endpoints))
}

func hasOwners(current, desired *discoveryv1.EndpointSlice) bool {
	for _, want := range desired.OwnerReferences {
		found := false
		for _, got := range current.OwnerReferences {
			if got.APIVersion == want.APIVersion && got.Kind == want.Kind && got.Name == want.Name &&
				got.UID == want.UID && boolVal(got.Controller) == boolVal(want.Controller) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func boolVal(p *bool) bool { return p != nil && *p }

// normPorts sorts a copy and applies the API's protocol default, so a slice
// read back from the apiserver compares equal to the one we wrote.
func normPorts(in []discoveryv1.EndpointPort) []discoveryv1.EndpointPort {
	if len(in) == 0 {
		return nil
	}
	out := make([]discoveryv1.EndpointPort, len(in))
	for i, p := range in {
		p.Name = ptr(name(p.Name))
		p.Protocol = ptr(protocol(proto(p.Protocol)))
		out[i] = p
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if *a.Name != *b.Name {
			return *a.Name < *b.Name
		}
		if *a.Protocol != *b.Protocol {
			return *a.Protocol < *b.Protocol
		}
		return portVal(a.Port) < portVal(b.Port)
	})
	return out
}

func portVal(p *int32) int32 {
	if p == nil {
		return -1
	}
	return *p
}

func normEndpoints(in []discoveryv1.Endpoint) []discoveryv1.Endpoint {
	if len(in) == 0 {
		return nil
	}
	out := append([]discoveryv1.Endpoint(nil), in...)
	sort.SliceStable(out, func(i, j int) bool {
		return addrLess(first(out[i].Addresses), first(out[j].Addresses))
	})
	return out
}

func first(a []string) string {
	if len(a) == 0 {
		return ""
	}
	return a[0]
}

// Diff compares desired slices with the current slices of the Service by
// name. Only current slices labelled managed-by ManagedBy are considered:
// slices of the EndpointSlice controller or of anyone else are never updated
// or deleted. A desired name held by a foreign slice lands in create, where
// the apiserver refuses it (AlreadyExists) instead of us taking it over.
// Updates are the desired slices carrying the current resourceVersion, ready
// for an Update call. All three lists are sorted by name.
func Diff(desired, current []*discoveryv1.EndpointSlice) (create, update, del []*discoveryv1.EndpointSlice) {
	return DiffBy(desired, current, func(c *discoveryv1.EndpointSlice) bool {
		return c.Labels[discoveryv1.LabelManagedBy] == ManagedBy
	}, Equal)
}

// DiffBy is Diff with the caller's idea of which current slices are its own
// (owned; the others are never updated or deleted) and of equality: the one
// diff of every kind of slice netd sync writes (aggregated, MCS, mirrors).
func DiffBy(desired, current []*discoveryv1.EndpointSlice, owned func(*discoveryv1.EndpointSlice) bool,
	equal func(desired, current *discoveryv1.EndpointSlice) bool) (create, update, del []*discoveryv1.EndpointSlice) {
	ours := map[string]*discoveryv1.EndpointSlice{}
	for _, c := range current {
		if c != nil && owned(c) {
			ours[c.Name] = c
		}
	}
	wanted := map[string]bool{}
	for _, d := range desired {
		wanted[d.Name] = true
		c, ok := ours[d.Name]
		switch {
		case !ok:
			create = append(create, d)
		case !equal(d, c):
			u := d.DeepCopy()
			u.ResourceVersion = c.ResourceVersion
			update = append(update, u)
		}
	}
	for n, c := range ours {
		if !wanted[n] {
			del = append(del, c)
		}
	}
	for _, s := range [][]*discoveryv1.EndpointSlice{create, update, del} {
		sort.Slice(s, func(i, j int) bool { return s[i].Name < s[j].Name })
	}
	return create, update, del
}
