package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Link states reported in KubeLink.status.state.
const (
	// StateInvalid: the link's spec is wrong (or conflicts with another link);
	// it is not served until fixed.
	StateInvalid = "Invalid"
	// StateStale: the link depends on something missing (its mesh, its
	// gateway link); it becomes usable when that appears.
	StateStale = "Stale"
	// StateError: the gateway could not configure the link (bad key, device
	// failure).
	StateError = "Error"
	// StateIdle: no connection right now; a TLS bridge dials on demand.
	StateIdle = "Idle"
	// StateUp: the tunnel carries traffic (recent handshake or data).
	StateUp = "Up"
	// StateDown: the peer did not answer within the detection window.
	StateDown = "Down"
)

// Special values of KubeLinkSpec.Endpoint.
const (
	// EndpointLocalLink marks the KubeLink that describes the local cluster
	// in a mesh.
	EndpointLocalLink = "LocalLink"
	// EndpointInbound marks a WireGuard peer that dials us.
	EndpointInbound = "Inbound"
)

// KubeLink is one member of a cluster mesh as seen from the local cluster.
// With spec.endpoint LocalLink it describes the local cluster itself and
// thereby defines a mesh; any other KubeLink names a foreign cluster. The
// object name is <mesh>--<cluster>, or just <cluster> for the default mesh.
//
// +genclient
// +genclient:nonNamespaced
// +kubebuilder:object:root=true
// +kubebuilder:storageversion
// +kubebuilder:resource:scope=Cluster,path=kubelinks,shortName=klink,singular=kubelink,categories=kubelink
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name=CIDR,JSONPath=".spec.cidr",type=string
// +kubebuilder:printcolumn:name=Address,JSONPath=".spec.clusterAddress",type=string
// +kubebuilder:printcolumn:name=Endpoint,JSONPath=".spec.endpoint",type=string
// +kubebuilder:printcolumn:name=Gateway,JSONPath=".status.gateway",type=string
// +kubebuilder:printcolumn:name=State,JSONPath=".status.state",type=string
// +kubebuilder:printcolumn:name=Age,JSONPath=".metadata.creationTimestamp",type=date
// +kubebuilder:validation:XValidation:rule="!has(self.spec.gatewayLink) || self.spec.gatewayLink != self.metadata.name",message="spec.gatewayLink must name another KubeLink, not this one",fieldPath=".spec.gatewayLink"
type KubeLink struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec KubeLinkSpec `json:"spec"`
	// +optional
	Status KubeLinkStatus `json:"status,omitempty"`
}

// KubeLinkList is a list of KubeLinks.
//
// +kubebuilder:object:root=true
type KubeLinkList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []KubeLink `json:"items"`
}

// KubeLinkSpec describes a link.
//
// +kubebuilder:validation:XValidation:rule="!has(self.endpoint) || self.endpoint != 'LocalLink' || !has(self.egress) || size(self.egress) == 0",message="spec.egress must be empty on a LocalLink (endpoint LocalLink); put extra routed CIDRs on the foreign links",fieldPath=".egress"
type KubeLinkSpec struct {
	// CIDR is the service CIDR of the linked cluster (for a LocalLink: of the
	// local cluster).
	//
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="isCIDR(self)",message="spec.cidr must be a CIDR, IP/prefix, e.g. 100.64.0.0/20"
	CIDR string `json:"cidr,omitempty"`

	// ClusterAddress is the cluster's link address in the mesh network, with
	// the netmask of the mesh (IP/prefix, e.g. 192.168.0.11/24).
	//
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="isCIDR(self)",message="spec.clusterAddress must be the link address with the mesh netmask, IP/prefix, e.g. 192.168.0.11/24"
	ClusterAddress string `json:"clusterAddress"`

	// Endpoint is host[:port] of the linked cluster's gateway, LocalLink for
	// the local cluster, or Inbound for a WireGuard peer that dials us.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=260
	// +kubebuilder:validation:XValidation:rule="self in ['LocalLink', 'Inbound'] || self.matches('^([a-zA-Z0-9.-]+|[[][0-9a-fA-F:.]+[]])(:[0-9]+)?$')",message="spec.endpoint must be LocalLink, Inbound or host[:port] (IPv6 hosts in brackets)"
	// +kubebuilder:validation:XValidation:rule="self in ['LocalLink', 'Inbound'] || self.startsWith('[') || (self.matches(':[0-9]+$') ? self.substring(0, self.lastIndexOf(':')) : self).matches('^[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?([.][a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?)*[.]?$') && size((self.matches(':[0-9]+$') ? self.substring(0, self.lastIndexOf(':')) : self)) <= 253 && (!(self.matches(':[0-9]+$') ? self.substring(0, self.lastIndexOf(':')) : self).matches('^[0-9.]+$') || isIP((self.matches(':[0-9]+$') ? self.substring(0, self.lastIndexOf(':')) : self)))",message="spec.endpoint host must be a DNS name or an IP address"
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('[') || !self.contains(']') || isIP(self.substring(1, self.indexOf(']')))",message="spec.endpoint host in brackets must be an IPv6 address"
	// +kubebuilder:validation:XValidation:rule="!self.matches(':[0-9]+$') || self.matches(':[0-9]{1,5}$') && int(self.substring(self.lastIndexOf(':') + 1)) >= 1 && int(self.substring(self.lastIndexOf(':') + 1)) <= 65535",message="spec.endpoint port must be a number from 1 to 65535"
	Endpoint string `json:"endpoint,omitempty"`

	// GatewayLink names another KubeLink through which this cluster is
	// reached (relay).
	//
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')",message="spec.gatewayLink must be the name of a KubeLink (lower-case DNS name)"
	GatewayLink string `json:"gatewayLink,omitempty"`

	// PublicKey is the WireGuard public key of the linked cluster's gateway.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=44
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$')",message="spec.publicKey must be a WireGuard key: base64 of exactly 32 bytes (44 characters ending in =)"
	PublicKey string `json:"publicKey,omitempty"`

	// PresharedKey is an optional WireGuard preshared key for this peer.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=44
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$')",message="spec.presharedKey must be a WireGuard key: base64 of exactly 32 bytes (44 characters ending in =)"
	PresharedKey string `json:"presharedKey,omitempty"`

	// Ingress restricts which local destinations traffic from this link may
	// reach: CIDRs to allow, !CIDR to deny. On a LocalLink it is the default
	// for the mesh.
	//
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=65
	// +kubebuilder:validation:XValidation:rule="self.all(x, isCIDR(x.startsWith('!') ? x.substring(1) : x))",messageExpression="'spec.ingress entries must be CIDRs, optionally prefixed with ! to deny; not ' + self.filter(x, !isCIDR(x.startsWith('!') ? x.substring(1) : x))[0]"
	Ingress []string `json:"ingress,omitempty"`

	// Egress lists additional CIDRs reached through this link (routed and
	// accepted).
	//
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.all(x, isCIDR(x))",messageExpression="'spec.egress entries must be CIDRs (IP/prefix); not ' + self.filter(x, !isCIDR(x))[0]"
	Egress []string `json:"egress,omitempty"`

	// APIAccess gives read access to the linked cluster's API server, from
	// which its services are read (kubernetes DNS mode, netd sync).
	//
	// +optional
	APIAccess *KubeLinkAPIAccess `json:"apiAccess,omitempty"`

	// DNS describes the linked cluster's DNS (for a LocalLink: the mesh DNS).
	//
	// +optional
	DNS *KubeLinkDNS `json:"dns,omitempty"`
}

// Keys of the Secret named by KubeLinkSpec.APIAccess, as in the original
// kubelink: a service account token of the linked cluster and the CA that
// signed its API server's certificate.
const (
	APIAccessTokenKey = "token"
	APIAccessCAKey    = "certificate-authority-data"
)

// KubeLinkAPIAccess names a Secret in the local cluster with the keys token
// and certificate-authority-data, taken from a service account of the
// linked cluster that may read its services and endpoints. Name and
// namespace are those of the original kubelink's secret reference, so its
// manifests apply unchanged; server is new. Atomic, as the core
// SecretReference it replaces was: the fields describe one Secret and one
// server together, so an apply replaces them together.
//
// +structType=atomic
type KubeLinkAPIAccess struct {
	// Name of the Secret.
	//
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="spec.apiAccess.name must be the name of a Secret (lower-case DNS name)"
	Name string `json:"name"`

	// Namespace of the Secret. KubeLinks are cluster-scoped, so the Secret
	// needs one; empty means the namespace netd runs in.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="spec.apiAccess.namespace must be a namespace name (DNS label)"
	Namespace string `json:"namespace,omitempty"`

	// Server is the linked cluster's API server as an https URL. Default:
	// https://<first address of spec.cidr>:443, the kubernetes service of
	// the linked cluster, reached through the mesh.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && self.startsWith('https://') && url(self).getHostname() != ''",message="spec.apiAccess.server must be an https URL with a host, e.g. https://100.64.16.1:443"
	Server string `json:"server,omitempty"`
}

// KubeLinkDNS is the DNS part of a link. On a foreign link it names the
// remote cluster's DNS; on a LocalLink it names the mesh domain and the
// mesh-global DNS service.
type KubeLinkDNS struct {
	// OmitDNSPropagation excludes this link from the mesh DNS.
	//
	// +optional
	OmitDNSPropagation *bool `json:"omitDNSPropagation,omitempty"`

	// DNSIP is the DNS service IP: of the remote cluster (default: the 10th
	// address of spec.cidr) or, on a LocalLink, of the mesh-global DNS.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="spec.dns.dnsIP must be an IP address, e.g. 100.64.0.10"
	DNSIP string `json:"dnsIP,omitempty"`

	// BaseDomain is the remote cluster's domain (default cluster.local) or,
	// on a LocalLink, the mesh domain (default kubelink).
	//
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?([.][a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?)*[.]?$')",message="spec.dns.baseDomain must be a DNS name, e.g. cluster.local"
	BaseDomain string `json:"baseDomain,omitempty"`

	// Mode is how the mesh DNS answers names below the linked cluster
	// (<name>.<cluster>.<mesh-domain>): dns forwards them to the cluster's
	// DNS (dnsIP) and rewrites the reply; kubernetes answers them from the
	// local copy of the cluster's Services that netd sync keeps (spec.apiAccess),
	// without asking the cluster. Default: kubernetes when spec.apiAccess is
	// set, else dns (the kubelink DNS option dns-propagation changes the
	// default). Ignored on a LocalLink.
	//
	// +optional
	// +kubebuilder:validation:Enum=dns;kubernetes
	Mode string `json:"mode,omitempty"`
}

// Values of KubeLinkDNS.Mode, as the original kubelink's --dns-propagation.
const (
	// DNSModeDNS forwards names below the cluster to its DNS.
	DNSModeDNS = "dns"
	// DNSModeKubernetes answers names below the cluster from memory.
	DNSModeKubernetes = "kubernetes"
)

// KubeLinkStatus is written by the gateway (netd broker).
type KubeLinkStatus struct {
	// State is one of Invalid, Stale, Error, Idle, Up, Down.
	//
	// +optional
	State string `json:"state,omitempty"`
	// Message explains the state.
	//
	// +optional
	Message string `json:"message,omitempty"`
	// Gateway is the active gateway serving this link.
	//
	// +optional
	Gateway string `json:"gateway,omitempty"`
	// PublicKey is, on a LocalLink, the local gateway's WireGuard public key.
	//
	// +optional
	PublicKey string `json:"publicKey,omitempty"`
	// Conditions are the standard conditions of the link.
	//
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// IsLocalLink reports whether the link describes the local cluster.
func (l *KubeLink) IsLocalLink() bool { return l.Spec.Endpoint == EndpointLocalLink }
