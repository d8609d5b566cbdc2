package mesh

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kubelink/kubelink/api/v1alpha1"
)

// Target is one destination of a forward; Port 0 keeps the original port.
type Target struct {
	Address netip.Addr
	Port    uint16
}

func (t Target) String() string {
	if t.Port == 0 {
		return t.Address.String()
	}
	return netip.AddrPortFrom(t.Address, t.Port).String()
}

// Forward is one DNAT rule of a MeshService: traffic to Address (and, when
// Port is set, Protocol/Port) goes to one of Targets.
type Forward struct {
	// Protocol is TCP or UDP; empty together with Port 0 forwards every
	// protocol and port of Address.
	Protocol string
	Address  netip.Addr
	Port     uint16
	Targets  []Target
}

func (f Forward) key() string {
	if f.Port == 0 {
		return f.Address.String()
	}
	return fmt.Sprintf("%s/%s:%d", f.Address, f.Protocol, f.Port)
}

// ServicePlan is the resolved form of one MeshService.
type ServicePlan struct {
	// Namespace and Name identify the MeshService; Service the Service it
	// references (empty for endpoint lists).
	Namespace, Name, Service string
	Mesh                     string
	Forwards                 []Forward
	// State is v1alpha1.StateOK or StateInvalid, with Message.
	State, Message string
	Object         *v1alpha1.MeshService
}

// Status renders the plan as MeshService status fields.
func (p *ServicePlan) Status() v1alpha1.MeshServiceStatus {
	st := v1alpha1.MeshServiceStatus{State: p.State, Message: p.Message}
	if p.Object != nil {
		st.ObservedGeneration = p.Object.Generation
	}
	for _, f := range p.Forwards {
		t := v1alpha1.MeshServiceTarget{Protocol: f.Protocol, Address: f.Address.String(), Port: int32(f.Port)}
		for _, d := range f.Targets {
			t.Targets = append(t.Targets, d.String())
		}
		st.Targets = append(st.Targets, t)
	}
	return st
}

// ServiceLookup finds a Service by namespace and name (nil if absent).
type ServiceLookup func(namespace, name string) *corev1.Service

// ResolveServices resolves every MeshService against the meshes and the
// Services. Conflicting claims on the same mesh address and port are
// decided by age: the older MeshService keeps them, the newer is Invalid.
func ResolveServices(objs []*v1alpha1.MeshService, services ServiceLookup, set *Set) []*ServicePlan {
	// Owners ("namespace/name") are built once: the sorts compare them
	// n log n times, which at ten thousand MeshServices would otherwise
	// allocate hundreds of thousands of strings per reconcile.
	if len(objs) == 0 {
		return nil
	}
	type entry struct {
		ms    *v1alpha1.MeshService
		owner string
	}
	sorted := make([]entry, len(objs))
	for i, ms := range objs {
		sorted[i] = entry{ms, ms.Namespace + "/" + ms.Name}
	}
	sort.Slice(sorted, func(i, j int) bool {
		a, b := sorted[i].ms, sorted[j].ms
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return sorted[i].owner < sorted[j].owner
	})
	claimed := map[forwardKey]string{}   // forward -> owner
	wholeAddr := map[netip.Addr]string{} // address forwarded as a whole -> owner
	portAddr := map[netip.Addr]string{}  // address with per-port forwards -> owner
	owners := make([]string, 0, len(sorted))
	out := make([]*ServicePlan, 0, len(sorted))
	for _, e := range sorted {
		p := ResolveService(e.ms, services, set)
		if p.State == v1alpha1.StateOK {
			if err := claim(p, e.owner, claimed, wholeAddr, portAddr); err != nil {
				p.State, p.Message, p.Forwards = v1alpha1.StateInvalid, err.Error(), nil
			}
		}
		owners = append(owners, e.owner)
		out = append(out, p)
	}
	sort.Sort(byOwner{owners, out})
	return out
}

// byOwner sorts plans by their owners (namespace/name), kept side by side.
type byOwner struct {
	owners []string
	plans  []*ServicePlan
}

func (b byOwner) Len() int           { return len(b.plans) }
func (b byOwner) Less(i, j int) bool { return b.owners[i] < b.owners[j] }
func (b byOwner) Swap(i, j int) {
	b.owners[i], b.owners[j] = b.owners[j], b.owners[i]
	b.plans[i], b.plans[j] = b.plans[j], b.plans[i]
}

// forwardKey identifies a forward as Forward.key does, without formatting
// a string for each of them.
type forwardKey struct {
	addr     netip.Addr
	protocol string
	port     uint16
}

func (f Forward) claimKey() forwardKey {
	if f.Port == 0 {
		return forwardKey{addr: f.Address}
	}
	return forwardKey{f.Address, f.Protocol, f.Port}
}

func claim(p *ServicePlan, owner string, claimed map[forwardKey]string, whole, ports map[netip.Addr]string) error {
	for _, f := range p.Forwards {
		if o, ok := whole[f.Address]; ok {
			return fmt.Errorf("mesh address %s is already forwarded by MeshService %s", f.Address, o)
		}
		if f.Port == 0 {
			if o, ok := ports[f.Address]; ok {
				return fmt.Errorf("mesh address %s already has ports forwarded by MeshService %s", f.Address, o)
			}
		}
		if o, ok := claimed[f.claimKey()]; ok {
			return fmt.Errorf("%s is already forwarded by MeshService %s", f.key(), o)
		}
	}
	for _, f := range p.Forwards {
		claimed[f.claimKey()] = owner
		if f.Port == 0 {
			whole[f.Address] = owner
		} else {
			ports[f.Address] = owner
		}
	}
	return nil
}

// ResolveService resolves one MeshService on its own.
func ResolveService(ms *v1alpha1.MeshService, services ServiceLookup, set *Set) *ServicePlan {
	p := &ServicePlan{Namespace: ms.Namespace, Name: ms.Name, Service: ms.Spec.Service, Mesh: ms.Spec.Mesh, Object: ms}
	fwd, err := resolve(ms, services, set)
	if err != nil {
		p.State, p.Message = v1alpha1.StateInvalid, err.Error()
		return p
	}
	p.State, p.Forwards = v1alpha1.StateOK, fwd
	p.Message = strconv.Itoa(len(fwd)) + " forward(s)"
	return p
}

func resolve(ms *v1alpha1.MeshService, services ServiceLookup, set *Set) ([]Forward, error) {
	spec := &ms.Spec
	m := set.Meshes[spec.Mesh]
	if m == nil {
		return nil, fmt.Errorf("%s", noMeshMessage(spec.Mesh))
	}
	var svc *corev1.Service
	if spec.Service != "" {
		if svc = services(ms.Namespace, spec.Service); svc == nil {
			return nil, fmt.Errorf("service %s/%s not found", ms.Namespace, spec.Service)
		}
		if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone {
			return nil, fmt.Errorf("service %s/%s has no ClusterIP (headless services are not supported; list endpoints instead)", ms.Namespace, spec.Service)
		}
	}
	var addr netip.Addr
	if spec.MeshAddress != "" {
		a, err := netip.ParseAddr(spec.MeshAddress)
		if err != nil {
			return nil, fmt.Errorf("spec.meshAddress %q is not an IP address", spec.MeshAddress)
		}
		if err := checkMeshAddress(a, m); err != nil {
			return nil, err
		}
		addr = a
	} else {
		if m.Local == nil || !m.Local.Address.IsValid() {
			return nil, fmt.Errorf("mesh %q has no local link address to bind ports on", meshLabel(m.Name))
		}
		if len(spec.Ports) == 0 {
			return nil, fmt.Errorf("spec.ports must list the ports to bind on the link address %s when spec.meshAddress is not set", m.Local.Address)
		}
		addr = m.Local.Address
	}

	// Destinations: the Service's ClusterIP or the explicit addresses, each
	// with its own port mappings.
	type dest struct {
		addr     netip.Addr
		mappings []v1alpha1.PortMapping
	}
	var dests []dest
	var shared []v1alpha1.PortMapping // mappings of address-less endpoints apply to the Service
	for i, ep := range spec.Endpoints {
		if ep.Address == "" {
			shared = append(shared, ep.PortMappings...)
			continue
		}
		a, err := netip.ParseAddr(ep.Address)
		if err != nil {
			return nil, fmt.Errorf("spec.endpoints[%d].address %q is not an IP address", i, ep.Address)
		}
		dests = append(dests, dest{a, ep.PortMappings})
	}
	if svc != nil {
		if len(dests) > 0 {
			return nil, fmt.Errorf("spec.service and spec.endpoints[].address are exclusive: name a Service or list addresses")
		}
		dests = []dest{{netip.MustParseAddr(svc.Spec.ClusterIP), shared}}
	} else if len(shared) > 0 {
		for i := range dests {
			dests[i].mappings = append(append([]v1alpha1.PortMapping(nil), shared...), dests[i].mappings...)
		}
	}
	if len(dests) == 0 {
		return nil, fmt.Errorf("spec must name a target: spec.service or at least one spec.endpoints[].address")
	}

	ports, err := offeredPorts(spec)
	if err != nil {
		return nil, err
	}
	if len(ports) == 0 {
		// The whole address: every protocol and port.
		f := Forward{Address: addr}
		for _, d := range dests {
			f.Targets = append(f.Targets, Target{Address: d.addr})
		}
		return []Forward{f}, nil
	}
	var out []Forward
	for _, op := range ports {
		f := Forward{Protocol: op.Protocol, Address: addr, Port: uint16(op.Port)}
		for _, d := range dests {
			tp, err := targetPort(op, d.mappings, svc)
			if err != nil {
				return nil, err
			}
			f.Targets = append(f.Targets, Target{Address: d.addr, Port: tp})
		}
		out = append(out, f)
	}
	return out, nil
}

// checkMeshAddress refuses virtual addresses that are link addresses or the
// mesh network address.
func checkMeshAddress(a netip.Addr, m *Mesh) error {
	if m.Local != nil && a == m.Local.Address {
		return fmt.Errorf("spec.meshAddress %s is the local link address; omit it and list spec.ports to bind ports there", a)
	}
	if a == m.Network.Addr() {
		return fmt.Errorf("spec.meshAddress %s is the mesh network address", a)
	}
	for _, l := range m.Links {
		if l.Address == a {
			return fmt.Errorf("spec.meshAddress %s is the link address of %q", a, l.Name)
		}
	}
	return nil
}

// OfferedPorts lists the mesh-side ports of a MeshService as its gateway
// offers them: spec.ports, or the numeric ports of the mappings when
// spec.ports is empty; protocols defaulted to TCP. None means the whole
// address (every protocol and port). Mirrors of remote MeshServices
// (netd/sync/meshsvc) describe the same ports the remote gateway serves.
func OfferedPorts(spec *v1alpha1.MeshServiceSpec) ([]v1alpha1.ServicePort, error) {
	return offeredPorts(spec)
}

// offeredPorts lists the mesh-side ports: spec.ports, or the numeric ports
// of the mappings when spec.ports is empty.
func offeredPorts(spec *v1alpha1.MeshServiceSpec) ([]v1alpha1.ServicePort, error) {
	var out []v1alpha1.ServicePort
	seen := map[string]bool{}
	add := func(p v1alpha1.ServicePort) error {
		if p.Protocol == "" {
			p.Protocol = v1alpha1.ProtocolTCP
		}
		k := p.Protocol + "/" + strconv.Itoa(int(p.Port))
		if seen[k] {
			return fmt.Errorf("port %s is listed twice", k)
		}
		seen[k] = true
		out = append(out, p)
		return nil
	}
	for _, p := range spec.Ports {
		if p.Port < 1 || p.Port > 65535 {
			return nil, fmt.Errorf("spec.ports: port %d must be 1-65535", p.Port)
		}
		if err := add(p); err != nil {
			return nil, err
		}
	}
	if len(spec.Ports) > 0 {
		return out, nil
	}
	for _, ep := range spec.Endpoints {
		for _, pm := range ep.PortMappings {
			if pm.Port.Type != intstr.Int {
				return nil, fmt.Errorf("port mapping names port %q but spec.ports is empty", pm.Port.StrVal)
			}
			p := v1alpha1.ServicePort{Protocol: pm.Protocol, Port: pm.Port.IntVal}
			if p.Protocol == "" {
				p.Protocol = v1alpha1.ProtocolTCP
			}
			if seen[p.Protocol+"/"+strconv.Itoa(int(p.Port))] {
				continue
			}
			if err := add(p); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// targetPort finds the mapping for an offered port and resolves its target
// port: a number, or the name of a port of the Service (whose service port
// is the DNAT target, since the target address is the ClusterIP).
func targetPort(op v1alpha1.ServicePort, mappings []v1alpha1.PortMapping, svc *corev1.Service) (uint16, error) {
	for _, pm := range mappings {
		proto := pm.Protocol
		if proto == "" {
			proto = v1alpha1.ProtocolTCP
		}
		if proto != op.Protocol {
			continue
		}
		match := (pm.Port.Type == intstr.Int && pm.Port.IntVal == op.Port) ||
			(pm.Port.Type == intstr.String && op.Name != "" && pm.Port.StrVal == op.Name)
		if !match {
			continue
		}
		if pm.TargetPort.Type == intstr.Int {
			if pm.TargetPort.IntVal < 1 || pm.TargetPort.IntVal > 65535 {
				return 0, fmt.Errorf("targetPort %d must be 1-65535", pm.TargetPort.IntVal)
			}
			return uint16(pm.TargetPort.IntVal), nil
		}
		if svc == nil {
			return 0, fmt.Errorf("targetPort %q is a port name, which needs spec.service", pm.TargetPort.StrVal)
		}
		for _, sp := range svc.Spec.Ports {
			if sp.Name == pm.TargetPort.StrVal && strings.EqualFold(string(protocolOf(sp)), proto) {
				return uint16(sp.Port), nil
			}
		}
		return 0, fmt.Errorf("service %s/%s has no %s port named %q", svc.Namespace, svc.Name, proto, pm.TargetPort.StrVal)
	}
	// No mapping: the same port on the target.
	return uint16(op.Port), nil
}

func protocolOf(sp corev1.ServicePort) corev1.Protocol {
	if sp.Protocol == "" {
		return corev1.ProtocolTCP
	}
	return sp.Protocol
}
