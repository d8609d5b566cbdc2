package meshsvc_test

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kubelink/kubelink/api/synced"
	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/netd/broker/plan"
	"github.com/kubelink/kubelink/netd/sync/meshsvc"
)

var meshCIDR = netip.MustParsePrefix("192.168.0.0/24")

// ms is a remote MeshService the remote gateway reports Ok.
func ms(ns, name string, spec v1alpha1.MeshServiceSpec) *v1alpha1.MeshService {
	return &v1alpha1.MeshService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Generation: 3}, Spec: spec,
		Status: v1alpha1.MeshServiceStatus{State: v1alpha1.StateOK, ObservedGeneration: 3}}
}

// describe renders a mirror as "name-independent" facts.
func describe(s *discoveryv1.EndpointSlice) string {
	var eps, ports []string
	for _, e := range s.Endpoints {
		eps = append(eps, fmt.Sprintf("%s ready=%v serving=%v", strings.Join(e.Addresses, ","), *e.Conditions.Ready, *e.Conditions.Serving))
	}
	for _, p := range s.Ports {
		port := "all"
		if p.Port != nil {
			port = fmt.Sprint(*p.Port)
		}
		ports = append(ports, fmt.Sprintf("%s:%s/%s", *p.Name, *p.Protocol, port))
	}
	return fmt.Sprintf("%s %s [%s] [%s]", s.Labels[synced.LabelMeshService], s.AddressType, strings.Join(eps, "; "), strings.Join(ports, " "))
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
var labelValue = regexp.MustCompile(`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`)

// TestDesired: which remote MeshServices get a mirror, with which
// endpoint, readiness and ports.
func TestDesired(t *testing.T) {
	pm := func(port, target int32, proto string) v1alpha1.PortMapping {
		return v1alpha1.PortMapping{Port: intstr.FromInt32(port), TargetPort: intstr.FromInt32(target), Protocol: proto}
	}
	notOk := ms("default", "refused", v1alpha1.MeshServiceSpec{Service: "x", MeshAddress: "192.168.0.105"})
	notOk.Status = v1alpha1.MeshServiceStatus{State: v1alpha1.StateInvalid, ObservedGeneration: 3}
	stale := ms("default", "stale", v1alpha1.MeshServiceSpec{Service: "x", MeshAddress: "192.168.0.106"})
	stale.Status.ObservedGeneration = 2
	deleting := ms("default", "deleting", v1alpha1.MeshServiceSpec{Service: "x", MeshAddress: "192.168.0.107"})
	now := metav1.Now()
	deleting.DeletionTimestamp = &now
	remote := []*v1alpha1.MeshService{
		ms("default", "web", v1alpha1.MeshServiceSpec{Service: "web", MeshAddress: "192.168.0.100"}),
		ms("default", "dns", v1alpha1.MeshServiceSpec{MeshAddress: "192.168.0.101",
			Ports:     []v1alpha1.ServicePort{{Name: "dns", Port: 53, Protocol: "UDP"}, {Port: 53}, {Port: 80}},
			Endpoints: []v1alpha1.ServiceEndpoint{{Address: "100.64.2.5"}}}),
		ms("other", "mapped", v1alpha1.MeshServiceSpec{MeshAddress: "192.168.0.102",
			Endpoints: []v1alpha1.ServiceEndpoint{{Address: "100.64.2.6", PortMappings: []v1alpha1.PortMapping{pm(8080, 80, "")}}}}),
		// Bound to ports of the remote link address: already routed.
		ms("default", "bound", v1alpha1.MeshServiceSpec{Service: "web", Ports: []v1alpha1.ServicePort{{Port: 8081}}}),
		// Outside the mesh CIDR: spec.egress is the caller's business.
		ms("default", "outside", v1alpha1.MeshServiceSpec{Service: "web", MeshAddress: "10.99.0.1"}),
		// Ports that do not resolve: its gateway refuses it as well.
		ms("default", "twice", v1alpha1.MeshServiceSpec{MeshAddress: "192.168.0.103", Ports: []v1alpha1.ServicePort{{Port: 80}, {Port: 80}}}),
		notOk, stale, deleting, nil,
	}
	got := map[string]string{}
	for _, s := range meshsvc.Desired("kubelink", "b", meshCIDR, remote) {
		got[s.Annotations[meshsvc.AnnotationMeshService]] = describe(s)
		if s.Namespace != "kubelink" || !dnsLabel.MatchString(s.Name) || len(s.Name) > 63 || !strings.HasPrefix(s.Name, "meshsvc-") {
			t.Errorf("mirror %s/%s: namespace or name", s.Namespace, s.Name)
		}
		if _, ok := s.Labels[discoveryv1.LabelServiceName]; ok {
			t.Errorf("mirror %s carries %s: kube-proxy would use it", s.Name, discoveryv1.LabelServiceName)
		}
		for k, v := range map[string]string{discoveryv1.LabelManagedBy: synced.ManagedBy, synced.LabelManagedBy: synced.ManagerName,
			synced.LabelSourceCluster: "b", synced.LabelSourceKind: synced.KindKubeLink} {
			if s.Labels[k] != v {
				t.Errorf("mirror %s: label %s=%q, want %q", s.Name, k, s.Labels[k], v)
			}
		}
	}
	want := map[string]string{
		"default/web":  "default.web IPv4 [192.168.0.100 ready=true serving=true] [tcp:TCP/all udp:UDP/all]",
		"default/dns":  "default.dns IPv4 [192.168.0.101 ready=true serving=true] [dns:UDP/53 tcp-53:TCP/53 tcp-80:TCP/80]",
		"other/mapped": "other.mapped IPv4 [192.168.0.102 ready=true serving=true] [:TCP/8080]",
		// Not served by the remote gateway (refused, or its status
		// describes an older spec): mirrored, but not ready.
		"default/refused": "default.refused IPv4 [192.168.0.105 ready=false serving=false] [tcp:TCP/all udp:UDP/all]",
		"default/stale":   "default.stale IPv4 [192.168.0.106 ready=false serving=false] [tcp:TCP/all udp:UDP/all]",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("mirror of %s:\n got  %q\n want %q", k, got[k], w)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected mirror of %s: %s", k, got[k])
		}
	}

	// The broker claims exactly the ready addresses of these mirrors.
	claims := plan.MirrorClaims("kubelink", meshsvc.Desired("kubelink", "b", meshCIDR, remote))
	slices.SortFunc(claims["b"], netip.Addr.Compare)
	if got := fmt.Sprint(claims); got != "map[b:[192.168.0.100 192.168.0.101 192.168.0.102]]" {
		t.Errorf("the broker claims %s", got)
	}

	// Deterministic whatever the input order; nothing without a mesh CIDR.
	rev := append([]*v1alpha1.MeshService(nil), remote...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	a, b := meshsvc.Desired("kubelink", "b", meshCIDR, remote), meshsvc.Desired("kubelink", "b", meshCIDR, rev)
	for i := range a {
		if a[i].Name != b[i].Name || describe(a[i]) != describe(b[i]) {
			t.Errorf("order changed the mirrors: %s vs %s", a[i].Name, b[i].Name)
		}
	}
	if d := meshsvc.Desired("kubelink", "b", netip.Prefix{}, remote); d != nil {
		t.Errorf("mirrors without a mesh CIDR: %d", len(d))
	}
	// IPv6 meshes mirror IPv6 addresses.
	v6 := meshsvc.Desired("kubelink", "b", netip.MustParsePrefix("fd00:1::/64"),
		[]*v1alpha1.MeshService{ms("default", "six", v1alpha1.MeshServiceSpec{Service: "x", MeshAddress: "fd00:1::100"})})
	if len(v6) != 1 || v6[0].AddressType != discoveryv1.AddressTypeIPv6 || v6[0].Endpoints[0].Addresses[0] != "fd00:1::100" {
		t.Errorf("IPv6 mirror %+v", v6)
	}
}

// TestNames: names and label values are valid, deterministic and kept
// apart by the hash where the readable part meets or is cut.
func TestNames(t *testing.T) {
	long := strings.Repeat("x", 63)
	seen := map[string]string{}
	for _, tc := range [][3]string{
		{"b", "default", "web"},
		{"b-default", "web", "x"}, {"b", "default-web", "x"}, // same readable part
		{"mesh--b", "default", "web"},
		{"b", long, long + ".with.dots"}, {"b", long, long + ".with.dotz"}, // same cut
		{"B_x", "default", "Web"},
	} {
		n := meshsvc.Name(tc[0], tc[1], tc[2])
		if !dnsLabel.MatchString(n) || len(n) > 63 {
			t.Errorf("Name%v = %q: not a DNS label", tc, n)
		}
		if n != meshsvc.Name(tc[0], tc[1], tc[2]) {
			t.Errorf("Name%v is not deterministic", tc)
		}
		if o, ok := seen[n]; ok {
			t.Errorf("Name%v = %q collides with %s", tc, n, o)
		}
		seen[n] = fmt.Sprint(tc)
		if l := meshsvc.ServiceLabel(tc[1], tc[2]); !labelValue.MatchString(l) || len(l) > 63 {
			t.Errorf("ServiceLabel(%s, %s) = %q: not a label value", tc[1], tc[2], l)
		}
	}
	if got := meshsvc.ServiceLabel("default", "web"); got != "default.web" {
		t.Errorf("ServiceLabel = %q, want default.web", got)
	}
	if a, b := meshsvc.ServiceLabel(long, long+".a"), meshsvc.ServiceLabel(long, long+".b"); a == b {
		t.Errorf("long label values collide: %q", a)
	}
}

// TestEqualDiff: a no-op resync writes nothing; changes update, gone
// MeshServices delete; slices that are not this cluster's mirrors are
// never touched.
func TestEqualDiff(t *testing.T) {
	remote := []*v1alpha1.MeshService{
		ms("default", "web", v1alpha1.MeshServiceSpec{Service: "web", MeshAddress: "192.168.0.100"}),
		ms("default", "api", v1alpha1.MeshServiceSpec{Service: "api", MeshAddress: "192.168.0.101", Ports: []v1alpha1.ServicePort{{Port: 443}}}),
	}
	desired := meshsvc.Desired("kubelink", "b", meshCIDR, remote)
	// As read back from the apiserver: defaults applied, a label added by
	// someone else, an unrelated annotation, a resourceVersion.
	var current []*discoveryv1.EndpointSlice
	for _, d := range desired {
		c := d.DeepCopy()
		c.ResourceVersion = "7"
		c.Labels["team"] = "net"
		c.Annotations["note"] = "x"
		for i := range c.Ports {
			if c.Ports[i].Protocol == nil {
				c.Ports[i].Protocol = ptr(corev1.ProtocolTCP)
			}
		}
		current = append(current, c)
	}
	// Another cluster's mirror, an aggregated slice and the EndpointSlice
	// controller's slice, all in the same namespace.
	other := meshsvc.Desired("kubelink", "c", meshCIDR, remote)[0]
	agg := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "kubelink", Name: "web-b-ipv4-1", Labels: map[string]string{
		discoveryv1.LabelManagedBy: synced.ManagedBy, synced.LabelSourceCluster: "b", discoveryv1.LabelServiceName: "web"}}}
	ctrl := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "kubelink", Name: desired[0].Name, Labels: map[string]string{
		discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}}}
	all := append(append([]*discoveryv1.EndpointSlice(nil), current...), other, agg)

	if c, u, d := meshsvc.Diff("b", desired, all); len(c)+len(u)+len(d) != 0 {
		t.Errorf("no-op resync writes: create %d update %d delete %d", len(c), len(u), len(d))
	}
	for i := range desired {
		if !meshsvc.Equal(desired[i], current[i]) {
			t.Errorf("Equal(%s) false after a read-back", desired[i].Name)
		}
	}

	// A service-name label added by hand must be written away.
	tampered := current[0].DeepCopy()
	tampered.Labels[discoveryv1.LabelServiceName] = "web"
	if meshsvc.Equal(desired[0], tampered) {
		t.Error("Equal ignores a kubernetes.io/service-name label on a mirror")
	}
	// The remote gateway stops serving web, api goes away, new comes.
	remote[0].Status.State = v1alpha1.StateInvalid
	remote = append(remote[:1], ms("default", "new", v1alpha1.MeshServiceSpec{Service: "new", MeshAddress: "192.168.0.110"}))
	c, u, d := meshsvc.Diff("b", meshsvc.Desired("kubelink", "b", meshCIDR, remote), all)
	names := func(s []*discoveryv1.EndpointSlice) []string {
		var out []string
		for _, x := range s {
			out = append(out, x.Name)
		}
		return out
	}
	if fmt.Sprint(names(c)) != fmt.Sprint([]string{meshsvc.Name("b", "default", "new")}) ||
		fmt.Sprint(names(u)) != fmt.Sprint([]string{meshsvc.Name("b", "default", "web")}) ||
		fmt.Sprint(names(d)) != fmt.Sprint([]string{meshsvc.Name("b", "default", "api")}) {
		t.Errorf("diff: create %v update %v delete %v", names(c), names(u), names(d))
	}
	if len(u) == 1 && u[0].ResourceVersion != "7" {
		t.Errorf("update carries resourceVersion %q, want the current 7", u[0].ResourceVersion)
	}
	// A foreign slice holding a desired name is not ours to update.
	c, u, _ = meshsvc.Diff("b", desired[:1], []*discoveryv1.EndpointSlice{ctrl})
	if len(c) != 1 || len(u) != 0 {
		t.Errorf("a foreign slice with our name: create %d update %d, want create 1", len(c), len(u))
	}
	// Everything of this cluster goes when it has no MeshServices left.
	if _, _, d := meshsvc.Diff("b", nil, all); len(d) != len(current) {
		t.Errorf("deleting all: %d, want %d", len(d), len(current))
	}
	if sel := meshsvc.Selector("b"); sel != "endpointslice.kubernetes.io/managed-by=netd-sync.kubelink.mandelsoft.org,"+
		"kubelink.mandelsoft.org/source-cluster=b,kubelink.mandelsoft.org/source-kind=KubeLink,kubelink.mandelsoft.org/mesh-service" {
		t.Errorf("Selector = %q", sel)
	}
}

func ptr[T any](v T) *T { return &v }
