package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// MeshService states reported in MeshService.status.state.
const (
	// StateOK: the service is exposed as requested.
	StateOK = "Ok"
	// StateUnsupported: MeshServices need the gateway in pod mode.
	StateUnsupported = "Unsupported"
)

// Protocols of MeshService ports.
const (
	ProtocolTCP = "TCP"
	ProtocolUDP = "UDP"
)

// MeshService exposes a local Service, or an explicit list of endpoints, to a
// mesh: either on a virtual mesh address of its own (spec.meshAddress) or on
// ports of the local link address (spec.ports with endpoints[].portMappings).
//
// +genclient
// +kubebuilder:object:root=true
// +kubebuilder:storageversion
// +kubebuilder:resource:scope=Namespaced,path=meshservices,shortName=msvc,singular=meshservice,categories=kubelink
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name=Mesh,JSONPath=".spec.mesh",type=string
// +kubebuilder:printcolumn:name=Address,JSONPath=".spec.meshAddress",type=string
// +kubebuilder:printcolumn:name=Service,JSONPath=".spec.service",type=string
// +kubebuilder:printcolumn:name=State,JSONPath=".status.state",type=string
// +kubebuilder:printcolumn:name=Message,JSONPath=".status.message",type=string,priority=1
// +kubebuilder:printcolumn:name=Age,JSONPath=".metadata.creationTimestamp",type=date
type MeshService struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec MeshServiceSpec `json:"spec"`
	// +optional
	Status MeshServiceStatus `json:"status,omitempty"`
}

// MeshServiceList is a list of MeshServices.
//
// +kubebuilder:object:root=true
type MeshServiceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MeshService `json:"items"`
}

// MeshServiceSpec describes what is exposed and where.
//
// +kubebuilder:validation:XValidation:rule="has(self.service) || (has(self.endpoints) && self.endpoints.exists(e, has(e.address)))",message="spec must name a target: spec.service or at least one spec.endpoints[].address"
type MeshServiceSpec struct {
	// Mesh selects the mesh (the name of its LocalLink's mesh); empty is the
	// default mesh.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="spec.mesh must be a mesh name (lower-case DNS label)"
	Mesh string `json:"mesh,omitempty"`

	// MeshAddress is a virtual address in the mesh for this service. Without
	// it the service is bound to ports of the local link address.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="spec.meshAddress must be an IP address, e.g. 192.168.0.100"
	MeshAddress string `json:"meshAddress,omitempty"`

	// Service is the name of a Service in the MeshService's namespace.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",message="spec.service must be the name of a Service in this namespace (lower-case DNS-1035 label)"
	Service string `json:"service,omitempty"`

	// Ports are the ports offered to the mesh.
	//
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=128
	Ports []ServicePort `json:"ports,omitempty"`

	// Endpoints are explicit targets (load-balanced) or, together with
	// service, the port mappings for it.
	//
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	Endpoints []ServiceEndpoint `json:"endpoints,omitempty"`
}

// ServicePort is a port offered to the mesh.
type ServicePort struct {
	// Name of the port, referenced by port mappings.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="spec.ports[].name must be a port name (lower-case alphanumerics and -)"
	Name string `json:"name,omitempty"`
	// Protocol is TCP (default) or UDP.
	//
	// +optional
	// +kubebuilder:validation:Enum=TCP;UDP
	Protocol string `json:"protocol,omitempty"`
	// Port number offered to the mesh.
	//
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`
}

// ServiceEndpoint is one target of a MeshService.
type ServiceEndpoint struct {
	// Address of the target; empty means the Service named in spec.service.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="spec.endpoints[].address must be an IP address"
	Address string `json:"address,omitempty"`
	// PortMappings map offered ports to target ports.
	//
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	PortMappings []PortMapping `json:"portMappings,omitempty"`
}

// PortMapping maps an offered port to a target port.
type PortMapping struct {
	// Protocol is TCP (default) or UDP.
	//
	// +optional
	// +kubebuilder:validation:Enum=TCP;UDP
	Protocol string `json:"protocol,omitempty"`
	// Port is the offered port: a number or the name of an entry of
	// spec.ports.
	//
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? (self >= 1 && self <= 65535) : (size(self) <= 15 && self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))",message="port must be a port number 1-65535 or a port name (lower-case alphanumerics and -, at most 15 characters)"
	Port intstr.IntOrString `json:"port"`
	// TargetPort is the target's port: a number or the name of a port of
	// the Service.
	//
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? (self >= 1 && self <= 65535) : (size(self) <= 15 && self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))",message="targetPort must be a port number 1-65535 or a port name (lower-case alphanumerics and -, at most 15 characters)"
	TargetPort intstr.IntOrString `json:"targetPort"`
}

// MeshServiceStatus is written by the gateway (netd broker).
type MeshServiceStatus struct {
	// State is Ok, Invalid, Unsupported or Error.
	//
	// +optional
	State string `json:"state,omitempty"`
	// Message explains the state.
	//
	// +optional
	Message string `json:"message,omitempty"`
	// Targets are the resolved forwarding rules.
	//
	// +optional
	// +listType=atomic
	Targets []MeshServiceTarget `json:"targets,omitempty"`
	// ObservedGeneration is the spec generation the status describes.
	//
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// MeshServiceTarget is one resolved forwarding rule: traffic to
// Address:Port/Protocol in the mesh goes to Targets.
type MeshServiceTarget struct {
	// Protocol is TCP or UDP; empty for all-port forwarding.
	//
	// +optional
	Protocol string `json:"protocol,omitempty"`
	// Address is the mesh-side address.
	Address string `json:"address"`
	// Port is the mesh-side port; 0 means all ports.
	//
	// +optional
	Port int32 `json:"port,omitempty"`
	// Targets are the destinations, ip or ip:port.
	//
	// +optional
	// +listType=atomic
	Targets []string `json:"targets,omitempty"`
}
