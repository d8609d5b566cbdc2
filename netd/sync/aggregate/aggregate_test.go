package aggregate

import (
	"reflect"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// ep builds a remote endpoint; conditions nil mean "unset".
func ep(addr string, ready, serving, terminating *bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{
		Addresses:  []string{addr},
		NodeName:   ptr("node-1"),
		Zone:       ptr("zone-a"),
		Conditions: discoveryv1.EndpointConditions{Ready: ready, Serving: serving, Terminating: terminating},
	}
}

func eport(n string, p int32) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: ptr(n), Port: ptr(p), Protocol: ptr(corev1.ProtocolTCP)}
}

func sport(n string, p int32) corev1.ServicePort {
	return corev1.ServicePort{Name: n, Port: p, Protocol: corev1.ProtocolTCP}
}

func rslice(name string, at discoveryv1.AddressType, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "demo", Labels: map[string]string{
			discoveryv1.LabelServiceName: "web",
			discoveryv1.LabelManagedBy:   "endpointslice-controller.k8s.io",
		}},
		AddressType: at,
		Ports:       ports,
		Endpoints:   eps,
	}
}

var (
	yes = ptr(true)
	no  = ptr(false)
)

func localWeb(ports ...corev1.ServicePort) LocalService {
	return LocalService{Namespace: "demo", Name: "web", UID: "uid-web", Ports: ports}
}

// slim reduces a planned slice to what the table cases assert on.
type slim struct {
	name      string
	at        discoveryv1.AddressType
	ports     []string
	endpoints []string
}

func describe(s *discoveryv1.EndpointSlice) slim {
	out := slim{name: s.Name, at: s.AddressType}
	for _, p := range s.Ports {
		out.ports = append(out.ports, name(p.Name)+"/"+string(*p.Protocol)+"/"+strconv.Itoa(int(*p.Port)))
	}
	for _, e := range s.Endpoints {
		d := strings.Join(e.Addresses, ",") + " r=" + cond(e.Conditions.Ready) + " s=" + cond(e.Conditions.Serving) + " t=" + cond(e.Conditions.Terminating)
		if e.Hostname != nil {
			d += " h=" + *e.Hostname
		}
		out.endpoints = append(out.endpoints, d)
	}
	return out
}

func cond(b *bool) string {
	switch {
	case b == nil:
		return "nil"
	case *b:
		return "true"
	default:
		return "false"
	}
}

func TestDesired(t *testing.T) {
	n4 := func(cluster string) string { return SliceName("demo", "web", cluster, "ipv4", "") }
	n6 := func(cluster string) string { return SliceName("demo", "web", cluster, "ipv6", "") }
	remoteSvc := &RemoteService{
		ClusterIPs: []string{"10.96.0.10", "fd00::10"},
		Ports:      []corev1.ServicePort{sport("http", 80), sport("metrics", 9090)},
	}
	podSlices := []*discoveryv1.EndpointSlice{
		rslice("web-abc", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{eport("http", 8080), eport("metrics", 9100)},
			ep("10.1.0.9", yes, yes, no), ep("10.1.0.2", no, yes, yes)),
		rslice("web-def", discoveryv1.AddressTypeIPv6, []discoveryv1.EndpointPort{eport("http", 8080), eport("metrics", 9100)},
			ep("fd01::2", nil, nil, nil)),
	}
	cases := []struct {
		name     string
		local    LocalService
		clusters []Cluster
		want     []slim
		skipped  []string
	}{
		{
			name:     "pod mode: target ports, local port names, family split, conditions copied",
			local:    localWeb(sport("http", 80)),
			clusters: []Cluster{{Name: "east", Mode: ModePod, Healthy: true, Service: remoteSvc, Slices: podSlices}},
			want: []slim{
				{name: n4("east"), at: discoveryv1.AddressTypeIPv4, ports: []string{"http/TCP/8080"},
					endpoints: []string{"10.1.0.2 r=false s=true t=true", "10.1.0.9 r=true s=true t=false"}},
				{name: n6("east"), at: discoveryv1.AddressTypeIPv6, ports: []string{"http/TCP/8080"},
					endpoints: []string{"fd01::2 r=nil s=nil t=nil"}},
			},
		},
		{
			name:     "service mode: ClusterIP per family, service ports, ready from any ready endpoint",
			local:    localWeb(sport("http", 80), sport("metrics", 9090), sport("admin", 8081)),
			clusters: []Cluster{{Name: "east", Mode: ModeService, Healthy: true, Service: remoteSvc, Slices: podSlices}},
			want: []slim{
				{name: n4("east"), at: discoveryv1.AddressTypeIPv4, ports: []string{"http/TCP/80", "metrics/TCP/9090"},
					endpoints: []string{"10.96.0.10 r=true s=true t=false"}},
				{name: n6("east"), at: discoveryv1.AddressTypeIPv6, ports: []string{"http/TCP/80", "metrics/TCP/9090"},
					endpoints: []string{"fd00::10 r=true s=true t=false"}},
			},
		},
		{
			name:  "service mode: nothing ready remotely, only terminating",
			local: localWeb(sport("http", 80)),
			clusters: []Cluster{{Name: "east", Mode: ModeService, Healthy: true,
				Service: &RemoteService{ClusterIPs: []string{"10.96.0.10"}, Ports: []corev1.ServicePort{sport("http", 80)}},
				Slices: []*discoveryv1.EndpointSlice{rslice("x", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{eport("http", 8080)},
					ep("10.1.0.2", no, yes, yes))}}},
			want: []slim{{name: n4("east"), at: discoveryv1.AddressTypeIPv4, ports: []string{"http/TCP/80"},
				endpoints: []string{"10.96.0.10 r=false s=true t=true"}}},
		},
		{
			name:  "unnamed single port maps by number; the remote port name differs",
			local: localWeb(sport("", 80)),
			clusters: []Cluster{
				{Name: "svc", Mode: ModeService, Healthy: true, Service: &RemoteService{ClusterIPs: []string{"10.96.0.10"}, Ports: []corev1.ServicePort{sport("web", 80)}}},
				{Name: "pod", Mode: ModePod, Healthy: true, Service: &RemoteService{ClusterIPs: []string{"10.96.0.11"}, Ports: []corev1.ServicePort{sport("web", 80)}},
					Slices: []*discoveryv1.EndpointSlice{rslice("x", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{eport("web", 8080)}, ep("10.2.0.1", yes, yes, no))}},
			},
			want: []slim{
				{name: n4("pod"), at: discoveryv1.AddressTypeIPv4, ports: []string{"/TCP/8080"}, endpoints: []string{"10.2.0.1 r=true s=true t=false"}},
				{name: n4("svc"), at: discoveryv1.AddressTypeIPv4, ports: []string{"/TCP/80"}, endpoints: []string{"10.96.0.10 r=false s=false t=false"}},
			},
		},
		{
			name:  "protocol must match; a remote lacking every local port contributes nothing",
			local: localWeb(corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}),
			clusters: []Cluster{{Name: "east", Mode: ModeService, Healthy: true,
				Service: &RemoteService{ClusterIPs: []string{"10.96.0.10"}, Ports: []corev1.ServicePort{sport("dns", 53)}}}},
		},
		{
			name:  "headless pod mode copies hostnames; headless service mode falls back to pod IPs",
			local: LocalService{Namespace: "demo", Name: "web", UID: "uid-web", Headless: true, Ports: []corev1.ServicePort{sport("http", 80)}},
			clusters: []Cluster{
				{Name: "a", Mode: ModePod, Healthy: true, Service: &RemoteService{ClusterIPs: []string{"None"}, Headless: true, Ports: []corev1.ServicePort{sport("http", 80)}},
					Slices: []*discoveryv1.EndpointSlice{rslice("x", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{eport("http", 8080)},
						func() discoveryv1.Endpoint { e := ep("10.3.0.1", yes, yes, no); e.Hostname = ptr("web-0"); return e }())}},
				{Name: "b", Mode: ModeService, Healthy: true, Service: &RemoteService{ClusterIPs: []string{"None"}, Headless: true, Ports: []corev1.ServicePort{sport("http", 80)}},
					Slices: []*discoveryv1.EndpointSlice{rslice("x", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{eport("http", 8080)}, ep("10.4.0.1", yes, yes, no))}},
			},
			want: []slim{
				{name: n4("a"), at: discoveryv1.AddressTypeIPv4, ports: []string{"http/TCP/8080"}, endpoints: []string{"10.3.0.1 r=true s=true t=false h=web-0"}},
				{name: n4("b"), at: discoveryv1.AddressTypeIPv4, ports: []string{"http/TCP/8080"}, endpoints: []string{"10.4.0.1 r=true s=true t=false"}},
			},
		},
		{
			name:  "headless without ports keeps the addresses",
			local: LocalService{Namespace: "demo", Name: "web", Headless: true},
			clusters: []Cluster{{Name: "a", Mode: ModePod, Healthy: true, Service: &RemoteService{Headless: true},
				Slices: []*discoveryv1.EndpointSlice{rslice("x", discoveryv1.AddressTypeIPv4, nil, ep("10.3.0.1", yes, yes, no))}}},
			want: []slim{{name: n4("a"), at: discoveryv1.AddressTypeIPv4, endpoints: []string{"10.3.0.1 r=true s=true t=false"}}},
		},
		{
			name:  "unhealthy cluster: every endpoint not ready, serving kept, nothing deleted",
			local: localWeb(sport("http", 80)),
			clusters: []Cluster{
				{Name: "east", Mode: ModePod, Healthy: false, Service: remoteSvc, Slices: podSlices},
				{Name: "west", Mode: ModeService, Healthy: false, Service: remoteSvc, Slices: podSlices},
			},
			want: []slim{
				{name: n4("east"), at: discoveryv1.AddressTypeIPv4, ports: []string{"http/TCP/8080"},
					endpoints: []string{"10.1.0.2 r=false s=true t=true", "10.1.0.9 r=false s=true t=false"}},
				{name: n6("east"), at: discoveryv1.AddressTypeIPv6, ports: []string{"http/TCP/8080"},
					endpoints: []string{"fd01::2 r=false s=true t=nil"}},
				{name: n4("west"), at: discoveryv1.AddressTypeIPv4, ports: []string{"http/TCP/80"},
					endpoints: []string{"10.96.0.10 r=false s=true t=false"}},
				{name: n6("west"), at: discoveryv1.AddressTypeIPv6, ports: []string{"http/TCP/80"},
					endpoints: []string{"fd00::10 r=false s=true t=false"}},
			},
		},
		{
			name:  "our own slices in the remote cluster are not re-exported; duplicates merge, ready wins",
			local: localWeb(sport("http", 80)),
			clusters: []Cluster{{Name: "east", Mode: ModePod, Healthy: true, Service: remoteSvc, Slices: []*discoveryv1.EndpointSlice{
				func() *discoveryv1.EndpointSlice {
					s := rslice("ours", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{eport("http", 8080)}, ep("10.9.9.9", yes, yes, no))
					s.Labels[discoveryv1.LabelManagedBy] = ManagedBy
					return s
				}(),
				rslice("old", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{eport("http", 8080)}, ep("10.1.0.1", no, no, yes)),
				rslice("new", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{eport("http", 8080)}, ep("10.1.0.1", yes, yes, no)),
			}}},
			want: []slim{{name: n4("east"), at: discoveryv1.AddressTypeIPv4, ports: []string{"http/TCP/8080"},
				endpoints: []string{"10.1.0.1 r=true s=true t=false"}}},
		},
		{
			name:  "pod slices disagreeing on target ports become separate slices",
			local: localWeb(sport("http", 80)),
			clusters: []Cluster{{Name: "east", Mode: ModePod, Healthy: true, Service: remoteSvc, Slices: []*discoveryv1.EndpointSlice{
				rslice("a", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{eport("http", 8080)}, ep("10.1.0.1", yes, yes, no)),
				rslice("b", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{eport("http", 8081)}, ep("10.1.0.2", yes, yes, no)),
			}}},
			want: sortedSlim(
				slim{name: SliceName("demo", "web", "east", "ipv4", "ipv4|http/TCP/8080"), at: discoveryv1.AddressTypeIPv4, ports: []string{"http/TCP/8080"}, endpoints: []string{"10.1.0.1 r=true s=true t=false"}},
				slim{name: SliceName("demo", "web", "east", "ipv4", "ipv4|http/TCP/8081"), at: discoveryv1.AddressTypeIPv4, ports: []string{"http/TCP/8081"}, endpoints: []string{"10.1.0.2 r=true s=true t=false"}},
			),
		},
		{
			name:     "missing remote Service and unknown mode are skipped with a reason",
			local:    localWeb(sport("http", 80)),
			clusters: []Cluster{{Name: "gone", Mode: ModePod, Healthy: true}, {Name: "odd", Mode: "magic", Healthy: true, Service: remoteSvc}},
			skipped:  []string{"gone", "odd"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			plan := Desired(tc.local, tc.clusters)
			var got []slim
			for _, s := range plan.Slices {
				got = append(got, describe(s))
				checkMeta(t, tc.local, s)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("slices\n got %+v\nwant %+v", got, tc.want)
			}
			var skipped []string
			for _, s := range plan.Skipped {
				if s.Reason == "" {
					t.Errorf("skip of %s without a reason", s.Cluster)
				}
				skipped = append(skipped, s.Cluster)
			}
			if !reflect.DeepEqual(skipped, tc.skipped) {
				t.Errorf("skipped %v, want %v", skipped, tc.skipped)
			}
			// Same input, same output: the planner has no hidden order.
			if again := Desired(tc.local, tc.clusters); !reflect.DeepEqual(again, plan) {
				t.Errorf("second run differs")
			}
		})
	}
}

func sortedSlim(s ...slim) []slim {
	if s[0].name > s[1].name {
		s[0], s[1] = s[1], s[0]
	}
	return s
}

func checkMeta(t *testing.T, local LocalService, s *discoveryv1.EndpointSlice) {
	t.Helper()
	if s.Namespace != local.Namespace || s.Labels[discoveryv1.LabelServiceName] != local.Name ||
		s.Labels[discoveryv1.LabelManagedBy] != ManagedBy || s.Labels[LabelSourceCluster] == "" {
		t.Errorf("%s: metadata %+v", s.Name, s.ObjectMeta)
	}
	if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].Kind != "Service" || s.OwnerReferences[0].Name != local.Name ||
		s.OwnerReferences[0].UID != local.UID || !boolVal(s.OwnerReferences[0].Controller) {
		t.Errorf("%s: owner %+v", s.Name, s.OwnerReferences)
	}
	for _, e := range s.Endpoints {
		if e.NodeName != nil || e.Zone != nil || e.TargetRef != nil || e.Hints != nil {
			t.Errorf("%s: remote topology leaked: %+v", s.Name, e)
		}
	}
	if errs := validation.IsDNS1123Label(s.Name); len(errs) > 0 {
		t.Errorf("%s: %v", s.Name, errs)
	}
}

func TestSliceName(t *testing.T) {
	long := strings.Repeat("a", 60)
	cases := []struct {
		name string
		a, b [5]string
	}{
		{"long names sharing a 63-char prefix", [5]string{"demo", long + "-svc", "cluster-one", "ipv4", ""}, [5]string{"demo", long + "-svc", "cluster-two", "ipv4", ""}},
		{"long service names", [5]string{"demo", long + "x", "c", "ipv4", ""}, [5]string{"demo", long + "y", "c", "ipv4", ""}},
		{"split ambiguity", [5]string{"demo", "a-b", "c", "ipv4", ""}, [5]string{"demo", "a", "b-c", "ipv4", ""}},
		{"families", [5]string{"demo", "web", "east", "ipv4", ""}, [5]string{"demo", "web", "east", "ipv6", ""}},
		{"namespaces", [5]string{"one", "web", "east", "ipv4", ""}, [5]string{"two", "web", "east", "ipv4", ""}},
		{"variants", [5]string{"demo", "web", "east", "ipv4", "x"}, [5]string{"demo", "web", "east", "ipv4", "y"}},
		{"sanitised cluster names", [5]string{"demo", "web", "East.1", "ipv4", ""}, [5]string{"demo", "web", "east-1", "ipv4", ""}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			na := SliceName(tc.a[0], tc.a[1], tc.a[2], tc.a[3], tc.a[4])
			nb := SliceName(tc.b[0], tc.b[1], tc.b[2], tc.b[3], tc.b[4])
			if na == nb {
				t.Errorf("collision: %s", na)
			}
			for _, n := range []string{na, nb} {
				if errs := validation.IsDNS1123Label(n); len(errs) > 0 {
					t.Errorf("%q: %v", n, errs)
				}
			}
			if again := SliceName(tc.a[0], tc.a[1], tc.a[2], tc.a[3], tc.a[4]); again != na {
				t.Errorf("not deterministic: %s vs %s", na, again)
			}
		})
	}
	if n := SliceName("demo", "web", "east", "ipv4", ""); !strings.HasPrefix(n, "web-east-ipv4-") || len(n) != len("web-east-ipv4-")+hashLen {
		t.Errorf("short name %q is not <service>-<cluster>-<family>-<hash>", n)
	}
	if n := SliceName("demo", long, long, "ipv6", ""); len(n) != maxNameLen {
		t.Errorf("long name %q has %d chars", n, len(n))
	}
}

// TestSplitAndLabels: a group above MaxEndpoints becomes several slices
// with distinct names, none above the limit, no endpoint lost; every slice
// carries the cleanup label and, for a ClusterLink, svclink's label.
func TestSplitAndLabels(t *testing.T) {
	var eps []discoveryv1.Endpoint
	for i := 0; i < 2*MaxEndpoints+5; i++ {
		eps = append(eps, ep("10.1."+strconv.Itoa(i/250)+"."+strconv.Itoa(i%250), yes, yes, no))
	}
	remote := &RemoteService{ClusterIPs: []string{"10.96.0.7"}, Ports: []corev1.ServicePort{sport("http", 80)}}
	c := Cluster{Name: "east", Kind: "ClusterLink", Mode: ModePod, Healthy: true, Service: remote,
		Slices: []*discoveryv1.EndpointSlice{rslice("web-a", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{eport("http", 8080)}, eps...)}}
	plan := Desired(localWeb(sport("http", 80)), []Cluster{c})
	if len(plan.Slices) != 3 {
		t.Fatalf("%d slices, want 3", len(plan.Slices))
	}
	names, seen := map[string]bool{}, map[string]bool{}
	for _, s := range plan.Slices {
		if len(s.Endpoints) > MaxEndpoints {
			t.Errorf("%s has %d endpoints", s.Name, len(s.Endpoints))
		}
		if names[s.Name] {
			t.Errorf("duplicate name %s", s.Name)
		}
		names[s.Name] = true
		for _, e := range s.Endpoints {
			seen[e.Addresses[0]] = true
		}
		if s.Labels["kubelink.mandelsoft.org/managed-by"] != "netd-sync" || s.Labels["svclink.cloudpilot.ai/cluster"] != "east" ||
			s.Labels["kubelink.mandelsoft.org/source-kind"] != "ClusterLink" {
			t.Errorf("labels of %s: %v", s.Name, s.Labels)
		}
	}
	if len(seen) != len(eps) {
		t.Fatalf("%d distinct endpoints planned, want %d", len(seen), len(eps))
	}
	// Stable: the same input plans the same names.
	again := Desired(localWeb(sport("http", 80)), []Cluster{c})
	for i := range again.Slices {
		if again.Slices[i].Name != plan.Slices[i].Name || !Equal(again.Slices[i], plan.Slices[i]) {
			t.Fatalf("replanning changed slice %d", i)
		}
	}
	c.Kind = "KubeLink"
	for _, s := range Desired(localWeb(sport("http", 80)), []Cluster{c}).Slices {
		if _, ok := s.Labels["svclink.cloudpilot.ai/cluster"]; ok {
			t.Fatalf("KubeLink slice with svclink's label: %v", s.Labels)
		}
	}
}
