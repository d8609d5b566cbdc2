package mesh

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kubelink/kubelink/api/v1alpha1"
)

func msvc(name string, age int, spec v1alpha1.MeshServiceSpec) *v1alpha1.MeshService {
	return &v1alpha1.MeshService{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", CreationTimestamp: metav1.NewTime(time.Unix(1_700_000_000+int64(age), 0))},
		Spec:       spec,
	}
}

func services(svcs ...*corev1.Service) ServiceLookup {
	return func(ns, name string) *corev1.Service {
		for _, s := range svcs {
			if s.Namespace == ns && s.Name == name {
				return s
			}
		}
		return nil
	}
}

var echoSvc = &corev1.Service{
	ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: "default"},
	Spec: corev1.ServiceSpec{ClusterIP: "100.64.0.20", Ports: []corev1.ServicePort{
		{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)},
		{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
	}},
}

func pm(port, target intstr.IntOrString, proto string) v1alpha1.PortMapping {
	return v1alpha1.PortMapping{Port: port, TargetPort: target, Protocol: proto}
}

func forwards(p *ServicePlan) string {
	var out []string
	for _, f := range p.Forwards {
		var ts []string
		for _, t := range f.Targets {
			ts = append(ts, t.String())
		}
		out = append(out, fmt.Sprintf("%s->%s", f.key(), strings.Join(ts, ",")))
	}
	return strings.Join(out, " ")
}

func TestResolveService(t *testing.T) {
	set := Build([]*v1alpha1.KubeLink{link("kubelink2", "100.64.16.0/20", "192.168.0.12/24", "x", 0)}, defaultOpts())
	for _, tc := range []struct {
		name  string
		spec  v1alpha1.MeshServiceSpec
		want  string // forwards, or the error fragment after "!"
		state string
	}{
		{"virtual address, all ports", v1alpha1.MeshServiceSpec{Service: "echo", MeshAddress: "192.168.0.100"},
			"192.168.0.100->100.64.0.20", "Ok"},
		{"virtual address, listed ports with named target", v1alpha1.MeshServiceSpec{Service: "echo", MeshAddress: "192.168.0.100",
			Ports:     []v1alpha1.ServicePort{{Name: "web", Port: 8080}, {Port: 5353, Protocol: "UDP"}},
			Endpoints: []v1alpha1.ServiceEndpoint{{PortMappings: []v1alpha1.PortMapping{pm(intstr.FromString("web"), intstr.FromString("http"), ""), pm(intstr.FromInt32(5353), intstr.FromString("dns"), "UDP")}}}},
			"192.168.0.100/TCP:8080->100.64.0.20:80 192.168.0.100/UDP:5353->100.64.0.20:53", "Ok"},
		{"port binding on the link address", v1alpha1.MeshServiceSpec{Service: "echo",
			Ports:     []v1alpha1.ServicePort{{Name: "http", Port: 8080}},
			Endpoints: []v1alpha1.ServiceEndpoint{{PortMappings: []v1alpha1.PortMapping{pm(intstr.FromString("http"), intstr.FromInt32(80), "")}}}},
			"192.168.0.11/TCP:8080->100.64.0.20:80", "Ok"},
		{"unmapped port keeps its number", v1alpha1.MeshServiceSpec{Service: "echo", Ports: []v1alpha1.ServicePort{{Port: 80}}},
			"192.168.0.11/TCP:80->100.64.0.20:80", "Ok"},
		{"explicit endpoints load-balanced", v1alpha1.MeshServiceSpec{MeshAddress: "192.168.0.101",
			Endpoints: []v1alpha1.ServiceEndpoint{
				{Address: "100.64.0.30", PortMappings: []v1alpha1.PortMapping{pm(intstr.FromInt32(80), intstr.FromInt32(8080), "")}},
				{Address: "100.64.0.31", PortMappings: []v1alpha1.PortMapping{pm(intstr.FromInt32(80), intstr.FromInt32(9090), "")}},
			}},
			"192.168.0.101/TCP:80->100.64.0.30:8080,100.64.0.31:9090", "Ok"},
		{"ports from mappings when spec.ports is empty", v1alpha1.MeshServiceSpec{MeshAddress: "192.168.0.102",
			Endpoints: []v1alpha1.ServiceEndpoint{{Address: "100.64.0.30", PortMappings: []v1alpha1.PortMapping{pm(intstr.FromInt32(53), intstr.FromInt32(5353), "UDP")}}}},
			"192.168.0.102/UDP:53->100.64.0.30:5353", "Ok"},
		{"unknown named target port", v1alpha1.MeshServiceSpec{Service: "echo", MeshAddress: "192.168.0.100", Ports: []v1alpha1.ServicePort{{Port: 80}},
			Endpoints: []v1alpha1.ServiceEndpoint{{PortMappings: []v1alpha1.PortMapping{pm(intstr.FromInt32(80), intstr.FromString("nope"), "")}}}},
			`!has no TCP port named "nope"`, "Invalid"},
		{"missing service", v1alpha1.MeshServiceSpec{Service: "missing", MeshAddress: "192.168.0.100"}, "!service default/missing not found", "Invalid"},
		{"unknown mesh", v1alpha1.MeshServiceSpec{Service: "echo", Mesh: "other", MeshAddress: "192.168.0.100"}, `!mesh "other" has no LocalLink`, "Invalid"},
		{"port binding without ports", v1alpha1.MeshServiceSpec{Service: "echo"}, "!spec.ports must list", "Invalid"},
		{"virtual address is a link address", v1alpha1.MeshServiceSpec{Service: "echo", MeshAddress: "192.168.0.12"}, "!link address of", "Invalid"},
		{"virtual address is the local address", v1alpha1.MeshServiceSpec{Service: "echo", MeshAddress: "192.168.0.11"}, "!local link address", "Invalid"},
		{"service and addresses", v1alpha1.MeshServiceSpec{Service: "echo", MeshAddress: "192.168.0.100", Endpoints: []v1alpha1.ServiceEndpoint{{Address: "1.2.3.4"}}}, "!exclusive", "Invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := ResolveService(msvc("m", 0, tc.spec), services(echoSvc), set)
			if p.State != tc.state {
				t.Fatalf("state %s (%s), want %s", p.State, p.Message, tc.state)
			}
			if strings.HasPrefix(tc.want, "!") {
				if !strings.Contains(p.Message, tc.want[1:]) {
					t.Fatalf("message %q, want %q", p.Message, tc.want[1:])
				}
				return
			}
			if got := forwards(p); got != tc.want {
				t.Fatalf("forwards %q, want %q", got, tc.want)
			}
			st := p.Status()
			if st.State != "Ok" || len(st.Targets) != len(p.Forwards) {
				t.Fatalf("status %+v", st)
			}
		})
	}
}

func TestResolveServicesConflicts(t *testing.T) {
	set := Build(nil, defaultOpts())
	whole := v1alpha1.MeshServiceSpec{Service: "echo", MeshAddress: "192.168.0.100"}
	port80 := v1alpha1.MeshServiceSpec{Service: "echo", MeshAddress: "192.168.0.100", Ports: []v1alpha1.ServicePort{{Port: 80}}}
	bind80 := v1alpha1.MeshServiceSpec{Service: "echo", Ports: []v1alpha1.ServicePort{{Port: 80}}}
	bind81 := v1alpha1.MeshServiceSpec{Service: "echo", Ports: []v1alpha1.ServicePort{{Port: 81}}}
	plans := ResolveServices([]*v1alpha1.MeshService{
		msvc("d-newer-port", 3, port80),
		msvc("a-whole", 1, whole),
		msvc("b-bind80", 2, bind80),
		msvc("c-bind80-again", 4, bind80),
		msvc("e-bind81", 5, bind81),
	}, services(echoSvc), set)
	want := map[string]string{
		"a-whole": "Ok", "b-bind80": "Ok", "c-bind80-again": "Invalid", "d-newer-port": "Invalid", "e-bind81": "Ok",
	}
	if len(plans) != len(want) {
		t.Fatalf("%d plans", len(plans))
	}
	for _, p := range plans {
		if p.State != want[p.Name] {
			t.Errorf("%s: %s (%s), want %s", p.Name, p.State, p.Message, want[p.Name])
		}
		if p.State == "Invalid" && (!strings.Contains(p.Message, "already") || len(p.Forwards) != 0) {
			t.Errorf("%s: conflict message %q, forwards %v", p.Name, p.Message, p.Forwards)
		}
	}
}
