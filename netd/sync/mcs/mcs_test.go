package mcs

import (
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	mcsv1a1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"

	"github.com/kubelink/kubelink/netd/sync/aggregate"
)

const (
	ns  = "demo"
	web = "web"
	uid = "import-uid"
)

var base = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// at is a creation time: minute m after base.
func at(m int) metav1.Time { return metav1.NewTime(base.Add(time.Duration(m) * time.Minute)) }

func sexport(created metav1.Time) *mcsv1a1.ServiceExport {
	return &mcsv1a1.ServiceExport{ObjectMeta: metav1.ObjectMeta{
		Namespace: ns, Name: web, Generation: 3, CreationTimestamp: created}}
}

func sport(name string, port int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: port, Protocol: corev1.ProtocolTCP}
}

func service(ips []string, ports ...corev1.ServicePort) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: web},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: ips[0], ClusterIPs: ips, Ports: ports},
	}
	for _, ip := range ips {
		f, _ := familyOf(ip)
		s.Spec.IPFamilies = append(s.Spec.IPFamilies, f)
	}
	return s
}

func headlessService(ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: web},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: corev1.ClusterIPNone,
			ClusterIPs: []string{corev1.ClusterIPNone}, IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol}, Ports: ports},
	}
}

func eport(n string, p int32) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: ptr(n), Port: ptr(p), Protocol: ptr(corev1.ProtocolTCP)}
}

func ep(addr string, ready bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{
		Addresses:  []string{addr},
		NodeName:   ptr("node-1"),
		Conditions: discoveryv1.EndpointConditions{Ready: ptr(ready), Serving: ptr(ready), Terminating: ptr(false)},
	}
}

// eslice is a cluster's own slice of the Service, as its EndpointSlice
// controller writes it.
func eslice(at discoveryv1.AddressType, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: web + "-x", Labels: map[string]string{
			discoveryv1.LabelServiceName: web,
			discoveryv1.LabelManagedBy:   "endpointslice-controller.k8s.io",
		}},
		AddressType: at,
		Ports:       ports,
		Endpoints:   eps,
	}
}

var v4 = discoveryv1.AddressTypeIPv4

// Typical exports used across cases.
func east(created int, svc *corev1.Service, slices ...*discoveryv1.EndpointSlice) Export {
	return Export{Cluster: "east", Kind: "KubeLink", Export: sexport(at(created)), Service: svc, Slices: slices,
		Mode: aggregate.ModePod, Healthy: true}
}

func west(created int, svc *corev1.Service, slices ...*discoveryv1.EndpointSlice) Export {
	return Export{Cluster: "west", Kind: "ClusterLink", Export: sexport(at(created)), Service: svc, Slices: slices,
		Mode: aggregate.ModeService, Healthy: true}
}

func local(created int, svc *corev1.Service, slices ...*discoveryv1.EndpointSlice) Export {
	// Mode service on purpose: the local cluster always uses its pod IPs.
	return Export{Cluster: "home", Local: true, Export: sexport(at(created)), Service: svc, Slices: slices,
		Mode: aggregate.ModeService}
}

var localWeb = service([]string{"10.96.0.10"}, sport("http", 80))

// importSummary is what the table cases assert of the ServiceImport.
type importSummary struct {
	typ      mcsv1a1.ServiceImportType
	ports    []string
	ips      []string
	families []corev1.IPFamily
	affinity string
	clusters []string
}

func summarize(imp *mcsv1a1.ServiceImport) *importSummary {
	if imp == nil {
		return nil
	}
	s := &importSummary{typ: imp.Spec.Type, ips: imp.Spec.IPs, families: imp.Spec.IPFamilies,
		affinity: string(imp.Spec.SessionAffinity)}
	if c := imp.Spec.SessionAffinityConfig; c != nil {
		s.affinity += "/" + strconv.Itoa(int(*c.ClientIP.TimeoutSeconds))
	}
	for _, p := range imp.Spec.Ports {
		s.ports = append(s.ports, p.Name+"/"+string(p.Protocol)+"/"+strconv.Itoa(int(p.Port)))
	}
	for _, c := range imp.Status.Clusters {
		s.clusters = append(s.clusters, c.Cluster)
	}
	return s
}

// slim is what the table cases assert of a slice.
type slim struct {
	cluster   string
	at        discoveryv1.AddressType
	ports     []string
	endpoints []string
}

func describe(s *discoveryv1.EndpointSlice) slim {
	out := slim{cluster: s.Labels[mcsv1a1.LabelSourceCluster], at: s.AddressType}
	for _, p := range s.Ports {
		out.ports = append(out.ports, *p.Name+"/"+strconv.Itoa(int(*p.Port)))
	}
	for _, e := range s.Endpoints {
		d := strings.Join(e.Addresses, ",") + " r=" + strconv.FormatBool(e.Conditions.Ready != nil && *e.Conditions.Ready)
		if e.Hostname != nil {
			d += " h=" + *e.Hostname
		}
		out.endpoints = append(out.endpoints, d)
	}
	return out
}

func conds(cs []metav1.Condition) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Type+"="+string(c.Status)+"/"+c.Reason)
	}
	return out
}

var (
	validReady = []string{"Valid=True/Valid", "Ready=True/Ready", "Conflict=False/NoConflicts"}
	noIPs      []string
)

func TestDesired(t *testing.T) {
	podSlice := eslice(v4, []discoveryv1.EndpointPort{eport("http", 8080)}, ep("10.1.0.1", true), ep("10.1.0.2", true))
	localSlice := eslice(v4, []discoveryv1.EndpointPort{eport("http", 8080), eport("metrics", 9100)}, ep("10.0.0.7", true))
	eastSvc := service([]string{"10.100.0.5"}, sport("http", 80))
	withHost := ep("10.1.0.3", true)
	withHost.Hostname = ptr("web-0")
	deleting := east(0, eastSvc, podSlice)
	deleting.Export.DeletionTimestamp = ptr(at(5))
	oursThere := eslice(v4, []discoveryv1.EndpointPort{eport("http", 8080)}, ep("10.9.9.9", true))
	oursThere.Labels[discoveryv1.LabelManagedBy] = "netd-sync.kubelink.mandelsoft.org"
	unhealthy := east(0, eastSvc, podSlice)
	unhealthy.Healthy = false
	affinity := func(a corev1.ServiceAffinity, timeout int32) *corev1.Service {
		s := service([]string{"10.100.0.9"}, sport("http", 80))
		s.Spec.SessionAffinity = a
		if timeout > 0 {
			s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr(timeout)}}
		}
		return s
	}
	north := func(created int, svc *corev1.Service) Export {
		return Export{Cluster: "north", Export: sexport(at(created)), Service: svc, Mode: aggregate.ModeService, Healthy: true}
	}
	externalName := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: web},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com"}}
	v6Svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: web}, Spec: corev1.ServiceSpec{
		ClusterIP: "fd00:100::5", ClusterIPs: []string{"fd00:100::5"}, Ports: []corev1.ServicePort{sport("http", 80)}}}

	cases := []struct {
		name      string
		in        Input
		want      *importSummary
		slices    []slim
		conds     []string
		conflicts []string // field@winner
		message   []string // substrings of the Conflict condition's message
		skipped   []string
	}{
		{
			name: "single remote export, pod mode, local Service is the VIP",
			in:   Input{LocalService: localWeb, Exports: []Export{east(0, eastSvc, podSlice)}},
			want: &importSummary{typ: mcsv1a1.ClusterSetIP, ports: []string{"http/TCP/80"}, ips: []string{"10.96.0.10"},
				families: []corev1.IPFamily{"IPv4"}, affinity: "None", clusters: []string{"east"}},
			slices: []slim{{"east", v4, []string{"http/8080"}, []string{"10.1.0.1 r=true", "10.1.0.2 r=true"}}},
		},
		{
			name: "no local Service: no ips, families from the exports",
			in:   Input{Exports: []Export{east(0, eastSvc, podSlice)}},
			want: &importSummary{typ: mcsv1a1.ClusterSetIP, ports: []string{"http/TCP/80"}, ips: noIPs,
				families: []corev1.IPFamily{"IPv4"}, affinity: "None", clusters: []string{"east"}},
			slices: []slim{{"east", v4, []string{"http/8080"}, []string{"10.1.0.1 r=true", "10.1.0.2 r=true"}}},
		},
		{
			name: "local export only: its own pod IPs whatever the mode",
			in:   Input{LocalService: localWeb, Exports: []Export{local(0, localWeb, localSlice)}},
			want: &importSummary{typ: mcsv1a1.ClusterSetIP, ports: []string{"http/TCP/80"}, ips: []string{"10.96.0.10"},
				families: []corev1.IPFamily{"IPv4"}, affinity: "None", clusters: []string{"home"}},
			slices: []slim{{"home", v4, []string{"http/8080"}, []string{"10.0.0.7 r=true"}}},
			conds:  validReady,
		},
		{
			name: "two clusters: ports merged, each slice with the ports its cluster serves",
			in: Input{LocalService: localWeb, Exports: []Export{
				west(1, service([]string{"10.200.0.5"}, sport("http", 80), sport("metrics", 9090))),
				east(0, eastSvc, podSlice),
			}},
			want: &importSummary{typ: mcsv1a1.ClusterSetIP, ports: []string{"http/TCP/80", "metrics/TCP/9090"},
				ips: []string{"10.96.0.10"}, families: []corev1.IPFamily{"IPv4"}, affinity: "None", clusters: []string{"east", "west"}},
			slices: []slim{
				{"east", v4, []string{"http/8080"}, []string{"10.1.0.1 r=true", "10.1.0.2 r=true"}},
				{"west", v4, []string{"http/80", "metrics/9090"}, []string{"10.200.0.5 r=false"}},
			},
		},
		{
			name: "type conflict: the oldest (remote ClusterSetIP) wins over the local headless",
			in: Input{LocalService: headlessService(sport("http", 80)), Exports: []Export{
				local(1, headlessService(sport("http", 80)), localSlice),
				east(0, eastSvc, podSlice),
			}},
			// The local Service is headless, so there is no VIP.
			want: &importSummary{typ: mcsv1a1.ClusterSetIP, ports: []string{"http/TCP/80"}, ips: noIPs,
				families: []corev1.IPFamily{"IPv4"}, affinity: "None", clusters: []string{"east", "home"}},
			slices: []slim{
				{"east", v4, []string{"http/8080"}, []string{"10.1.0.1 r=true", "10.1.0.2 r=true"}},
				{"home", v4, []string{"http/8080"}, []string{"10.0.0.7 r=true"}},
			},
			conds:     []string{"Valid=True/Valid", "Ready=True/Ready", "Conflict=True/TypeConflict"},
			conflicts: []string{"type@east"},
			message:   []string{"type: ClusterSetIP of the oldest export (cluster east) wins over Headless (cluster home)"},
		},
		{
			name: "type conflict: the local oldest headless wins and is told as well",
			in: Input{LocalService: headlessService(sport("http", 80)), Exports: []Export{
				local(0, headlessService(sport("http", 80)), localSlice),
				east(1, eastSvc, podSlice),
			}},
			want: &importSummary{typ: mcsv1a1.Headless, ports: []string{"http/TCP/80"}, ips: noIPs,
				families: []corev1.IPFamily{"IPv4"}, affinity: "None", clusters: []string{"east", "home"}},
			slices: []slim{
				{"east", v4, []string{"http/8080"}, []string{"10.1.0.1 r=true", "10.1.0.2 r=true"}},
				{"home", v4, []string{"http/8080"}, []string{"10.0.0.7 r=true"}},
			},
			conds:     []string{"Valid=True/Valid", "Ready=True/Ready", "Conflict=True/TypeConflict"},
			conflicts: []string{"type@home"},
			message:   []string{"Headless of the oldest export (cluster home) wins over ClusterSetIP (cluster east)"},
		},
		{
			name: "port conflict: the newer cluster serves only the ports it agrees on",
			in: Input{LocalService: localWeb, Exports: []Export{
				local(1, service([]string{"10.96.0.10"}, sport("http", 8081), sport("metrics", 9090)), localSlice),
				east(0, eastSvc, podSlice),
			}},
			want: &importSummary{typ: mcsv1a1.ClusterSetIP, ports: []string{"http/TCP/80", "metrics/TCP/9090"},
				ips: []string{"10.96.0.10"}, families: []corev1.IPFamily{"IPv4"}, affinity: "None", clusters: []string{"east", "home"}},
			slices: []slim{
				{"east", v4, []string{"http/8080"}, []string{"10.1.0.1 r=true", "10.1.0.2 r=true"}},
				{"home", v4, []string{"metrics/9100"}, []string{"10.0.0.7 r=true"}},
			},
			conds:     []string{"Valid=True/Valid", "Ready=True/Ready", "Conflict=True/PortConflict"},
			conflicts: []string{"ports[http]@east"},
			message:   []string{"ports[http]: 80/TCP of the oldest export (cluster east) wins over 8081/TCP (cluster home)"},
		},
		{
			name: "port conflict: a cluster with no port in common contributes nothing",
			in: Input{LocalService: localWeb, Exports: []Export{
				local(1, service([]string{"10.96.0.10"}, sport("http", 8081)), localSlice),
				east(0, eastSvc, podSlice),
			}},
			want: &importSummary{typ: mcsv1a1.ClusterSetIP, ports: []string{"http/TCP/80"},
				ips: []string{"10.96.0.10"}, families: []corev1.IPFamily{"IPv4"}, affinity: "None", clusters: []string{"east"}},
			slices:    []slim{{"east", v4, []string{"http/8080"}, []string{"10.1.0.1 r=true", "10.1.0.2 r=true"}}},
			conds:     []string{"Valid=True/Valid", "Ready=False/Failed", "Conflict=True/PortConflict"},
			conflicts: []string{"ports[http]@east"},
			skipped:   []string{"home"},
		},
		{
			name: "port conflict: the same number under another name",
			in: Input{Exports: []Export{
				east(0, eastSvc, podSlice),
				west(1, service([]string{"10.200.0.5"}, sport("web", 80), sport("admin", 8443))),
			}},
			want: &importSummary{typ: mcsv1a1.ClusterSetIP, ports: []string{"http/TCP/80", "admin/TCP/8443"},
				ips: noIPs, families: []corev1.IPFamily{"IPv4"}, affinity: "None", clusters: []string{"east", "west"}},
			slices: []slim{
				{"east", v4, []string{"http/8080"}, []string{"10.1.0.1 r=true", "10.1.0.2 r=true"}},
				{"west", v4, []string{"admin/8443"}, []string{"10.200.0.5 r=false"}},
			},
			conflicts: []string{"ports[80/TCP]@east"},
		},
		{
			name: "session affinity and its config: the oldest wins",
			in: Input{Exports: []Export{
				north(2, affinity(corev1.ServiceAffinityClientIP, 200)),
				east(0, affinity(corev1.ServiceAffinityClientIP, 100)),
				{Cluster: "west", Local: true, Export: sexport(at(1)), Service: affinity(corev1.ServiceAffinityNone, 0)},
			}},
			want: &importSummary{typ: mcsv1a1.ClusterSetIP, ports: []string{"http/TCP/80"}, ips: noIPs,
				families: []corev1.IPFamily{"IPv4"}, affinity: "ClientIP/100", clusters: []string{"east", "north", "west"}},
			slices: []slim{{"north", v4, []string{"http/80"}, []string{"10.100.0.9 r=false"}}},
			conds: []string{"Valid=True/Valid", "Ready=True/Ready",
				"Conflict=True/SessionAffinityConflict,SessionAffinityConfigConflict"},
			conflicts: []string{"sessionAffinity@east", "sessionAffinityConfig@east"},
			message: []string{"sessionAffinity: ClientIP of the oldest export (cluster east) wins over None (cluster west)",
				"sessionAffinityConfig: timeoutSeconds=100 of the oldest export (cluster east) wins over timeoutSeconds=200 (cluster north)"},
		},
		{
			name:    "local export without Service, alone: no import",
			in:      Input{Exports: []Export{local(0, nil)}},
			conds:   []string{"Valid=False/NoService", "Ready=False/Pending", "Conflict=False/NoConflicts"},
			skipped: []string{"home"},
		},
		{
			name: "local export without Service, a remote exports",
			in:   Input{Exports: []Export{local(0, nil), east(1, eastSvc, podSlice)}},
			want: &importSummary{typ: mcsv1a1.ClusterSetIP, ports: []string{"http/TCP/80"}, ips: noIPs,
				families: []corev1.IPFamily{"IPv4"}, affinity: "None", clusters: []string{"east"}},
			slices:  []slim{{"east", v4, []string{"http/8080"}, []string{"10.1.0.1 r=true", "10.1.0.2 r=true"}}},
			conds:   []string{"Valid=False/NoService", "Ready=False/Pending", "Conflict=False/NoConflicts"},
			skipped: []string{"home"},
		},
		{
			name: "local ExternalName Service: invalid, and no VIP",
			in:   Input{LocalService: externalName, Exports: []Export{local(0, externalName), east(1, eastSvc, podSlice)}},
			want: &importSummary{typ: mcsv1a1.ClusterSetIP, ports: []string{"http/TCP/80"}, ips: noIPs,
				families: []corev1.IPFamily{"IPv4"}, affinity: "None", clusters: []string{"east"}},
			slices:  []slim{{"east", v4, []string{"http/8080"}, []string{"10.1.0.1 r=true", "10.1.0.2 r=true"}}},
			conds:   []string{"Valid=False/InvalidServiceType", "Ready=False/Failed", "Conflict=False/NoConflicts"},
			skipped: []string{"home"},
		},
		{
			name: "headless in service mode: pod IPs with hostnames, no ips despite a local ClusterIP",
			in: Input{LocalService: localWeb, Exports: []Export{
				west(0, headlessService(sport("http", 80)), eslice(v4, []discoveryv1.EndpointPort{eport("http", 8080)}, withHost)),
			}},
			want: &importSummary{typ: mcsv1a1.Headless, ports: []string{"http/TCP/80"}, ips: noIPs,
				families: []corev1.IPFamily{"IPv4"}, affinity: "None", clusters: []string{"west"}},
			slices: []slim{{"west", v4, []string{"http/8080"}, []string{"10.1.0.3 r=true h=web-0"}}},
		},
		{
			name: "dual stack: one slice per family, both VIPs",
			in: Input{LocalService: service([]string{"10.96.0.10", "fd00::10"}, sport("http", 80)), Exports: []Export{
				west(0, service([]string{"10.200.0.5", "fd00:200::5"}, sport("http", 80)),
					eslice(v4, []discoveryv1.EndpointPort{eport("http", 8080)}, ep("10.2.0.1", true))),
			}},
			want: &importSummary{typ: mcsv1a1.ClusterSetIP, ports: []string{"http/TCP/80"}, ips: []string{"10.96.0.10", "fd00::10"},
				families: []corev1.IPFamily{"IPv4", "IPv6"}, affinity: "None", clusters: []string{"west"}},
			slices: []slim{
				{"west", v4, []string{"http/80"}, []string{"10.200.0.5 r=true"}},
				{"west", discoveryv1.AddressTypeIPv6, []string{"http/80"}, []string{"fd00:200::5 r=true"}},
			},
		},
		{
			name: "IPv6 pod endpoints next to an IPv4 cluster: IP family conflict",
			in: Input{Exports: []Export{
				east(0, v6Svc, eslice(discoveryv1.AddressTypeIPv6, []discoveryv1.EndpointPort{eport("http", 8080)}, ep("fd00:1::1", true))),
				west(1, service([]string{"10.200.0.5"}, sport("http", 80))),
			}},
			want: &importSummary{typ: mcsv1a1.ClusterSetIP, ports: []string{"http/TCP/80"}, ips: noIPs,
				families: []corev1.IPFamily{"IPv6", "IPv4"}, affinity: "None", clusters: []string{"east", "west"}},
			slices: []slim{
				{"east", discoveryv1.AddressTypeIPv6, []string{"http/8080"}, []string{"fd00:1::1 r=true"}},
				{"west", v4, []string{"http/80"}, []string{"10.200.0.5 r=false"}},
			},
			conflicts: []string{"ipFamilies@east"},
		},
		{
			name: "unhealthy cluster: endpoints kept, not ready",
			in:   Input{Exports: []Export{unhealthy}},
			want: &importSummary{typ: mcsv1a1.ClusterSetIP, ports: []string{"http/TCP/80"}, ips: noIPs,
				families: []corev1.IPFamily{"IPv4"}, affinity: "None", clusters: []string{"east"}},
			slices: []slim{{"east", v4, []string{"http/8080"}, []string{"10.1.0.1 r=false", "10.1.0.2 r=false"}}},
		},
		{
			name: "no export: no import",
			in:   Input{LocalService: localWeb},
		},
		{
			name: "an invalid remote does not win",
			in: Input{Exports: []Export{
				east(0, nil),
				west(1, headlessService(sport("http", 80)), eslice(v4, []discoveryv1.EndpointPort{eport("http", 8080)}, withHost)),
			}},
			want: &importSummary{typ: mcsv1a1.Headless, ports: []string{"http/TCP/80"}, ips: noIPs,
				families: []corev1.IPFamily{"IPv4"}, affinity: "None", clusters: []string{"west"}},
			slices:  []slim{{"west", v4, []string{"http/8080"}, []string{"10.1.0.3 r=true h=web-0"}}},
			skipped: []string{"east"},
		},
		{
			name: "an export being deleted is withdrawn",
			in:   Input{Exports: []Export{deleting}},
		},
		{
			name: "same creation time: the cluster name decides",
			in: Input{Exports: []Export{
				{Cluster: "beta", Export: sexport(at(0)), Service: eastSvc, Mode: aggregate.ModeService, Healthy: true},
				{Cluster: "alpha", Export: sexport(at(0)), Service: headlessService(sport("http", 80)), Mode: aggregate.ModePod, Healthy: true},
			}},
			want: &importSummary{typ: mcsv1a1.Headless, ports: []string{"http/TCP/80"}, ips: noIPs,
				families: []corev1.IPFamily{"IPv4"}, affinity: "None", clusters: []string{"alpha", "beta"}},
			slices:    []slim{{"beta", v4, []string{"http/80"}, []string{"10.100.0.5 r=false"}}},
			conflicts: []string{"type@alpha"},
		},
		{
			name: "slices netd sync wrote in the remote cluster are not copied back",
			in:   Input{Exports: []Export{east(0, eastSvc, podSlice, oursThere)}},
			want: &importSummary{typ: mcsv1a1.ClusterSetIP, ports: []string{"http/TCP/80"}, ips: noIPs,
				families: []corev1.IPFamily{"IPv4"}, affinity: "None", clusters: []string{"east"}},
			slices: []slim{{"east", v4, []string{"http/8080"}, []string{"10.1.0.1 r=true", "10.1.0.2 r=true"}}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.Namespace, tc.in.Name, tc.in.ImportUID = ns, web, uid
			plan := Desired(tc.in, at(100))
			if got := summarize(plan.Import); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("import\n got %+v\nwant %+v", got, tc.want)
			}
			if plan.Import != nil {
				checkImport(t, plan.Import)
			}
			var got []slim
			for _, s := range plan.Slices {
				got = append(got, describe(s))
				checkSlice(t, s)
			}
			sort.Slice(got, func(i, j int) bool {
				if got[i].cluster != got[j].cluster {
					return got[i].cluster < got[j].cluster
				}
				return got[i].at < got[j].at
			})
			if !reflect.DeepEqual(got, tc.slices) {
				t.Errorf("slices\n got %+v\nwant %+v", got, tc.slices)
			}
			if c := conds(plan.LocalConditions); !reflect.DeepEqual(c, tc.conds) {
				t.Errorf("conditions %v, want %v", c, tc.conds)
			}
			for _, c := range plan.LocalConditions {
				if c.ObservedGeneration != 3 || !c.LastTransitionTime.Equal(ptr(at(100))) || c.Message == "" {
					t.Errorf("condition %+v: want generation 3, the planning time and a message", c)
				}
			}
			var conflicts []string
			for _, c := range plan.Conflicts {
				conflicts = append(conflicts, c.Field+"@"+c.Winner)
			}
			if !reflect.DeepEqual(conflicts, tc.conflicts) {
				t.Errorf("conflicts %v, want %v", conflicts, tc.conflicts)
			}
			if len(tc.message) > 0 {
				msg := plan.LocalConditions[2].Message
				for _, m := range tc.message {
					if !strings.Contains(msg, m) {
						t.Errorf("Conflict message %q lacks %q", msg, m)
					}
				}
			}
			var skipped []string
			for _, s := range plan.Skipped {
				skipped = append(skipped, s.Cluster)
			}
			if !reflect.DeepEqual(skipped, tc.skipped) {
				t.Errorf("skipped %v, want %v", skipped, tc.skipped)
			}
			checkReplan(t, tc.in, plan)
		})
	}
}

// checkReplan: the same world planned again, with the exports in another
// order and at another time, is Equal object by object and changes no
// condition, so a no-op resync writes nothing.
func checkReplan(t *testing.T, in Input, plan Plan) {
	t.Helper()
	rev := in
	rev.Exports = nil
	for i := len(in.Exports) - 1; i >= 0; i-- {
		rev.Exports = append(rev.Exports, in.Exports[i])
	}
	again := Desired(rev, at(200))
	if !reflect.DeepEqual(again.Import, plan.Import) || !ImportEqual(again.Import, plan.Import) {
		t.Errorf("re-plan changed the import")
	}
	if len(again.Slices) != len(plan.Slices) {
		t.Fatalf("re-plan has %d slices, want %d", len(again.Slices), len(plan.Slices))
	}
	for i := range plan.Slices {
		if again.Slices[i].Name != plan.Slices[i].Name || !Equal(again.Slices[i], plan.Slices[i]) {
			t.Errorf("re-plan changed slice %s", plan.Slices[i].Name)
		}
	}
	if c, u, d := Diff(web, again.Slices, plan.Slices); len(c)+len(u)+len(d) != 0 {
		t.Errorf("re-plan diff: create %d update %d delete %d", len(c), len(u), len(d))
	}
	if _, changed := MergeConditions(plan.LocalConditions, again.LocalConditions); changed {
		t.Errorf("re-plan changed the conditions")
	}
	if !reflect.DeepEqual(again.Conflicts, plan.Conflicts) {
		t.Errorf("re-plan changed the conflicts")
	}
}

func checkImport(t *testing.T, imp *mcsv1a1.ServiceImport) {
	t.Helper()
	if imp.Namespace != ns || imp.Name != web || imp.Labels["kubelink.mandelsoft.org/managed-by"] != "netd-sync" {
		t.Errorf("import metadata %+v", imp.ObjectMeta)
	}
	if imp.Spec.Ports == nil {
		t.Errorf("import ports nil; the CRD requires the field")
	}
	if imp.Status.EndpointSliceObjects != mcsv1a1.EndpointSliceObjectsPresent {
		t.Errorf("endpointSliceObjects %q", imp.Status.EndpointSliceObjects)
	}
}

func checkSlice(t *testing.T, s *discoveryv1.EndpointSlice) {
	t.Helper()
	cluster := s.Labels[mcsv1a1.LabelSourceCluster]
	if _, ok := s.Labels[discoveryv1.LabelServiceName]; ok {
		t.Errorf("%s carries kubernetes.io/service-name: kube-proxy would consume it", s.Name)
	}
	if s.Namespace != ns || s.Labels[mcsv1a1.LabelServiceName] != web || cluster == "" ||
		s.Labels[discoveryv1.LabelManagedBy] != "netd-sync.kubelink.mandelsoft.org" ||
		s.Labels["kubelink.mandelsoft.org/managed-by"] != "netd-sync" ||
		s.Labels["kubelink.mandelsoft.org/source-cluster"] != cluster {
		t.Errorf("%s: metadata %+v", s.Name, s.ObjectMeta)
	}
	if _, ok := s.Labels["svclink.cloudpilot.ai/cluster"]; ok {
		t.Errorf("%s: svclink's label on an MCS slice", s.Name)
	}
	o := s.OwnerReferences
	if len(o) != 1 || o[0].APIVersion != "multicluster.x-k8s.io/v1alpha1" || o[0].Kind != "ServiceImport" ||
		o[0].Name != web || o[0].UID != uid || o[0].Controller == nil || !*o[0].Controller {
		t.Errorf("%s: owner %+v", s.Name, o)
	}
	if errs := validation.IsDNS1123Label(s.Name); len(errs) > 0 || !strings.HasPrefix(s.Name, "mcs-web-"+cluster+"-") {
		t.Errorf("%q: %v", s.Name, errs)
	}
	for _, e := range s.Endpoints {
		if e.NodeName != nil {
			t.Errorf("%s: remote node name leaked", s.Name)
		}
	}
}

// TestAwaitImport: without the import's UID no slice can name its owner,
// so none is planned until the caller has created the import.
func TestAwaitImport(t *testing.T) {
	in := Input{Namespace: ns, Name: web, Exports: []Export{east(0, service([]string{"10.100.0.5"}, sport("http", 80)),
		eslice(v4, []discoveryv1.EndpointPort{eport("http", 8080)}, ep("10.1.0.1", true)))}}
	plan := Desired(in, at(0))
	if plan.Import == nil || !plan.AwaitImport || len(plan.Slices) != 0 {
		t.Fatalf("import %v await %v slices %d", plan.Import != nil, plan.AwaitImport, len(plan.Slices))
	}
	in.ImportUID = uid
	plan2 := Desired(in, at(0))
	if plan2.AwaitImport || len(plan2.Slices) != 1 || !ImportEqual(plan.Import, plan2.Import) {
		t.Fatalf("with the UID: await %v slices %d", plan2.AwaitImport, len(plan2.Slices))
	}
}

// TestNamesDistinctFromAggregation: the MCS slices of a Service and the
// aggregation slices of the same Service never share a name.
func TestNamesDistinctFromAggregation(t *testing.T) {
	eastSvc := service([]string{"10.100.0.5", "fd00:100::5"}, sport("http", 80))
	slices := []*discoveryv1.EndpointSlice{eslice(v4, []discoveryv1.EndpointPort{eport("http", 8080)}, ep("10.1.0.1", true))}
	in := Input{Namespace: ns, Name: web, ImportUID: uid, Exports: []Export{
		east(0, eastSvc, slices...),
		west(0, eastSvc),
	}}
	mcsPlan := Desired(in, at(0))
	if len(mcsPlan.Slices) != 3 {
		t.Fatalf("%d MCS slices, want 3", len(mcsPlan.Slices))
	}
	remote := &aggregate.RemoteService{ClusterIPs: eastSvc.Spec.ClusterIPs, Ports: eastSvc.Spec.Ports}
	agg := aggregate.Desired(aggregate.LocalService{Namespace: ns, Name: web, UID: "svc", Ports: eastSvc.Spec.Ports},
		[]aggregate.Cluster{
			{Name: "east", Mode: aggregate.ModePod, Healthy: true, Service: remote, Slices: slices},
			{Name: "west", Mode: aggregate.ModeService, Healthy: true, Service: remote},
		})
	names := map[string]bool{}
	for _, s := range agg.Slices {
		names[s.Name] = true
	}
	if len(names) != 3 {
		t.Fatalf("%d aggregation slices, want 3", len(names))
	}
	for _, s := range mcsPlan.Slices {
		if names[s.Name] {
			t.Errorf("MCS slice %s has an aggregation slice's name", s.Name)
		}
		names[s.Name] = true
	}
	// The aggregation slices are none of Diff's business, even when the
	// caller passes the whole namespace.
	var current []*discoveryv1.EndpointSlice
	current = append(current, agg.Slices...)
	c, u, d := Diff(web, mcsPlan.Slices, current)
	if len(c) != 3 || len(u)+len(d) != 0 {
		t.Errorf("create %d update %d delete %d, want 3/0/0", len(c), len(u), len(d))
	}
	if n := SliceName(ns, web, "east", "ipv4", ""); n == aggregate.SliceName(ns, web, "east", "ipv4", "") {
		t.Errorf("SliceName equals the aggregation name %s", n)
	}
	long := strings.Repeat("x", 70)
	if n := SliceName(ns, long, long, "ipv6", "v"); len(validation.IsDNS1123Label(n)) > 0 {
		t.Errorf("%q is not a DNS label", n)
	}
}

func TestConflictMessageLimit(t *testing.T) {
	var exports []Export
	for i := 0; i < 1000; i++ {
		name := "cluster-with-a-rather-long-name-" + strconv.Itoa(i)
		s := service([]string{"10.100.0.5"}, sport("http", int32(1000+i)))
		exports = append(exports, Export{Cluster: name, Export: sexport(at(i)), Service: s, Mode: aggregate.ModeService, Healthy: true})
	}
	exports = append(exports, local(2000, service([]string{"10.96.0.10"}, sport("http", 80))))
	plan := Desired(Input{Namespace: ns, Name: web, ImportUID: uid, Exports: exports}, at(0))
	c := plan.LocalConditions[2]
	if c.Status != metav1.ConditionTrue || len(c.Message) > maxMessage || !strings.HasSuffix(c.Message, "...") {
		t.Errorf("Conflict %s with a %d-char message", c.Status, len(c.Message))
	}
	if len(plan.Import.Status.Clusters) != 1 || plan.Import.Status.Clusters[0].Cluster != "cluster-with-a-rather-long-name-0" {
		t.Errorf("clusters %v: only the oldest serves its port", plan.Import.Status.Clusters)
	}
}
