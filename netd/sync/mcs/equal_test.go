package mcs

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1a1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
)

func planned(t *testing.T) Plan {
	t.Helper()
	plan := Desired(Input{Namespace: ns, Name: web, ImportUID: uid,
		LocalService: service([]string{"10.96.0.10", "fd00::10"}, sport("http", 80)),
		Exports: []Export{
			east(0, service([]string{"10.100.0.5"}, sport("http", 80)),
				eslice(v4, []discoveryv1.EndpointPort{eport("http", 8080)}, ep("10.1.0.1", true), ep("10.1.0.2", false))),
			west(1, service([]string{"10.200.0.5", "fd00:200::5"}, sport("http", 80), sport("metrics", 9090))),
			local(2, service([]string{"10.96.0.10", "fd00::10"}, sport("http", 80))),
		}}, at(10))
	if plan.Import == nil || len(plan.Slices) != 3 {
		t.Fatalf("want an import and 3 slices, got %v and %d", plan.Import != nil, len(plan.Slices))
	}
	return plan
}

// storedImport imitates the import read back from the apiserver: server
// fields, someone else's label and import condition, clusters reordered,
// an empty list where we had nil.
func storedImport(d *mcsv1a1.ServiceImport) *mcsv1a1.ServiceImport {
	c := d.DeepCopy()
	c.ResourceVersion = "7"
	c.UID = uid
	c.Labels["someone.else/label"] = "x"
	c.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Ready"}}
	for i, j := 0, len(c.Status.Clusters)-1; i < j; i, j = i+1, j-1 {
		c.Status.Clusters[i], c.Status.Clusters[j] = c.Status.Clusters[j], c.Status.Clusters[i]
	}
	if c.Spec.IPFamilies == nil {
		c.Spec.IPFamilies = []corev1.IPFamily{}
	}
	for i := range c.Spec.Ports {
		c.Spec.Ports[i].Protocol = ""
	}
	return c
}

func TestImportEqual(t *testing.T) {
	desired := planned(t).Import
	cases := []struct {
		name         string
		mutate       func(*mcsv1a1.ServiceImport)
		spec, status bool
	}{
		{"read back unchanged", func(*mcsv1a1.ServiceImport) {}, true, true},
		{"our label removed", func(i *mcsv1a1.ServiceImport) { delete(i.Labels, "kubelink.mandelsoft.org/managed-by") }, false, true},
		{"type", func(i *mcsv1a1.ServiceImport) { i.Spec.Type = mcsv1a1.Headless }, false, true},
		{"port", func(i *mcsv1a1.ServiceImport) { i.Spec.Ports[0].Port = 81 }, false, true},
		{"port added", func(i *mcsv1a1.ServiceImport) { i.Spec.Ports = append(i.Spec.Ports, mcsv1a1.ServicePort{Port: 1}) }, false, true},
		{"ips", func(i *mcsv1a1.ServiceImport) { i.Spec.IPs = i.Spec.IPs[:1] }, false, true},
		{"session affinity", func(i *mcsv1a1.ServiceImport) { i.Spec.SessionAffinity = corev1.ServiceAffinityClientIP }, false, true},
		{"cluster missing", func(i *mcsv1a1.ServiceImport) { i.Status.Clusters = i.Status.Clusters[1:] }, true, false},
		{"cluster renamed", func(i *mcsv1a1.ServiceImport) { i.Status.Clusters[0].Cluster = "other" }, true, false},
		{"endpointSliceObjects", func(i *mcsv1a1.ServiceImport) { i.Status.EndpointSliceObjects = "" }, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cur := storedImport(desired)
			tc.mutate(cur)
			if got := ImportSpecEqual(desired, cur); got != tc.spec {
				t.Errorf("ImportSpecEqual = %v, want %v", got, tc.spec)
			}
			if got := ImportStatusEqual(desired, cur); got != tc.status {
				t.Errorf("ImportStatusEqual = %v, want %v", got, tc.status)
			}
			if got := ImportEqual(desired, cur); got != (tc.spec && tc.status) {
				t.Errorf("ImportEqual = %v", got)
			}
			// UpdateImport repairs what differs and keeps what is not ours.
			u := UpdateImport(desired, cur)
			if !ImportEqual(desired, u) || u.ResourceVersion != "7" || u.Labels["someone.else/label"] != "x" ||
				len(u.Status.Conditions) != 1 {
				t.Errorf("UpdateImport: %+v", u)
			}
		})
	}
	if !ImportEqual(nil, nil) || ImportEqual(desired, nil) || ImportEqual(nil, desired) {
		t.Errorf("nil handling")
	}
}

// stored imitates a slice read back from the apiserver.
func stored(d *discoveryv1.EndpointSlice) *discoveryv1.EndpointSlice {
	c := d.DeepCopy()
	c.ResourceVersion = "42"
	c.UID = "slice-uid"
	c.Labels["someone.else/label"] = "x"
	for i, j := 0, len(c.Endpoints)-1; i < j; i, j = i+1, j-1 {
		c.Endpoints[i], c.Endpoints[j] = c.Endpoints[j], c.Endpoints[i]
	}
	return c
}

func TestDiff(t *testing.T) {
	desired := planned(t).Slices
	aggregation := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "web-east-ipv4-0123456789", Namespace: ns,
		Labels: map[string]string{
			discoveryv1.LabelServiceName: web,
			discoveryv1.LabelManagedBy:   "netd-sync.kubelink.mandelsoft.org",
		},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: web, Controller: ptr(true)}}}}
	otherService := stored(desired[0])
	otherService.Name = "mcs-api-east-ipv4-0123456789"
	otherService.Labels[mcsv1a1.LabelServiceName] = "api"
	foreign := stored(desired[0])
	foreign.Name = "imported-web-1"
	foreign.Labels[discoveryv1.LabelManagedBy] = "lighthouse"
	orphan := stored(desired[0])
	orphan.Name = "mcs-web-gone-ipv4-0123456789"
	// An aggregation slice someone also gave the MCS label: its Service
	// owner still marks it as aggregation's.
	mislabelled := aggregation.DeepCopy()
	mislabelled.Name = "web-west-ipv4-0123456789"
	mislabelled.Labels[mcsv1a1.LabelServiceName] = web
	untouchable := []*discoveryv1.EndpointSlice{aggregation, mislabelled, otherService, foreign}

	t.Run("no-op resync writes nothing", func(t *testing.T) {
		current := append([]*discoveryv1.EndpointSlice(nil), untouchable...)
		for _, d := range desired {
			current = append(current, stored(d))
		}
		c, u, d := Diff(web, desired, current)
		if len(c)+len(u)+len(d) != 0 {
			t.Errorf("create %d update %d delete %d, want none", len(c), len(u), len(d))
		}
	})

	t.Run("create, update, delete; others untouched", func(t *testing.T) {
		changed := stored(desired[1])
		changed.Endpoints[0].Conditions.Ready = ptr(!*changed.Endpoints[0].Conditions.Ready)
		current := append([]*discoveryv1.EndpointSlice{changed, orphan}, untouchable...)
		c, u, d := Diff(web, desired, current)
		if names(c) != desired[0].Name+","+desired[2].Name {
			t.Errorf("create %s", names(c))
		}
		if names(u) != desired[1].Name || u[0].ResourceVersion != "42" || !Equal(desired[1], u[0]) || u[0] == desired[1] {
			t.Errorf("update %s", names(u))
		}
		if names(d) != orphan.Name {
			t.Errorf("delete %s", names(d))
		}
	})

	t.Run("a slice given to kube-proxy is taken back", func(t *testing.T) {
		leaked := stored(desired[0])
		leaked.Labels[discoveryv1.LabelServiceName] = web
		c, u, d := Diff(web, desired[:1], []*discoveryv1.EndpointSlice{leaked})
		if len(c)+len(d) != 0 || names(u) != desired[0].Name {
			t.Fatalf("create %s update %s delete %s", names(c), names(u), names(d))
		}
		if _, ok := u[0].Labels[discoveryv1.LabelServiceName]; ok {
			t.Errorf("the update keeps kubernetes.io/service-name")
		}
	})

	t.Run("no import: every MCS slice of the service goes", func(t *testing.T) {
		var current []*discoveryv1.EndpointSlice
		for _, d := range desired {
			current = append(current, stored(d))
		}
		current = append(current, untouchable...)
		c, u, d := Diff(web, nil, current)
		if len(c)+len(u) != 0 || len(d) != len(desired) {
			t.Errorf("create %d update %d delete %d", len(c), len(u), len(d))
		}
	})
}

func names(s []*discoveryv1.EndpointSlice) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += ","
		}
		out += x.Name
	}
	return out
}

func TestMergeConditions(t *testing.T) {
	old := metav1.NewTime(base)
	foreign := metav1.Condition{Type: "Synced", Status: metav1.ConditionTrue, Reason: "X", LastTransitionTime: old}
	existing := []metav1.Condition{
		foreign,
		{Type: "Valid", Status: metav1.ConditionTrue, Reason: "Valid", Message: "m", ObservedGeneration: 3, LastTransitionTime: old},
		{Type: "Conflict", Status: metav1.ConditionFalse, Reason: "NoConflicts", Message: "m", ObservedGeneration: 3, LastTransitionTime: old},
	}
	now := at(60)
	cases := []struct {
		name    string
		desired []metav1.Condition
		changed bool
		check   func(t *testing.T, out []metav1.Condition)
	}{
		{
			name: "same status, same text: unchanged, old transition time",
			desired: []metav1.Condition{
				{Type: "Valid", Status: metav1.ConditionTrue, Reason: "Valid", Message: "m", ObservedGeneration: 3, LastTransitionTime: now},
			},
			check: func(t *testing.T, out []metav1.Condition) {
				if !out[1].LastTransitionTime.Equal(&old) {
					t.Errorf("transition time moved")
				}
			},
		},
		{
			name: "same status, new generation: updated, old transition time",
			desired: []metav1.Condition{
				{Type: "Valid", Status: metav1.ConditionTrue, Reason: "Valid", Message: "m", ObservedGeneration: 4, LastTransitionTime: now},
			},
			changed: true,
			check: func(t *testing.T, out []metav1.Condition) {
				if out[1].ObservedGeneration != 4 || !out[1].LastTransitionTime.Equal(&old) {
					t.Errorf("got %+v", out[1])
				}
			},
		},
		{
			name: "status flips: new transition time",
			desired: []metav1.Condition{
				{Type: "Conflict", Status: metav1.ConditionTrue, Reason: "PortConflict", Message: "x", ObservedGeneration: 3, LastTransitionTime: now},
			},
			changed: true,
			check: func(t *testing.T, out []metav1.Condition) {
				if out[2].Status != metav1.ConditionTrue || !out[2].LastTransitionTime.Equal(&now) {
					t.Errorf("got %+v", out[2])
				}
			},
		},
		{
			name: "new type appended, others kept",
			desired: []metav1.Condition{
				{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Ready", ObservedGeneration: 3, LastTransitionTime: now},
			},
			changed: true,
			check: func(t *testing.T, out []metav1.Condition) {
				if len(out) != 4 || out[3].Type != "Ready" || out[0] != foreign {
					t.Errorf("got %+v", out)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]metav1.Condition(nil), existing...)
			out, changed := MergeConditions(in, tc.desired)
			if changed != tc.changed {
				t.Errorf("changed = %v, want %v", changed, tc.changed)
			}
			if in[1] != existing[1] || in[2] != existing[2] {
				t.Errorf("existing conditions modified in place")
			}
			tc.check(t, out)
		})
	}
}
