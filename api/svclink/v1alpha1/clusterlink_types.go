package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	// DefaultKubeconfigKey is the key of spec.kubeconfigSecretRef when none
	// is given: the name kubectl and most tools use for the file.
	DefaultKubeconfigKey = "kubeconfig"
	// ConditionReady is the condition type that says whether the remote
	// cluster is connected and its services are being read.
	ConditionReady = "Ready"
)

// ClusterLink names a remote cluster whose services are read and turned into
// local endpoints (netd sync). The schema is svclink's, so its manifests
// apply unchanged.
//
// The remote cluster's kubeconfig comes from exactly one of two places:
//
//   - spec.kubeconfigSecretRef (recommended): a Secret in the ClusterLink's
//     own namespace. Only those allowed to read that Secret see the
//     credentials.
//   - spec.kubeconfig: the base64-encoded kubeconfig inline, as svclink
//     has it. Everyone who may read ClusterLinks in the namespace can read
//     these credentials. That is why the secret reference is recommended,
//     and why the controller (netd sync, not built yet) is to flag an
//     inline kubeconfig with a warning event and a condition.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced,path=clusterlinks,singular=clusterlink,categories=kubelink
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name=Enabled,JSONPath=".spec.enabled",type=boolean
// +kubebuilder:printcolumn:name=Connected,JSONPath=".status.connected",type=boolean
// +kubebuilder:printcolumn:name=Version,JSONPath=".status.version",type=string
// +kubebuilder:printcolumn:name=Age,JSONPath=".metadata.creationTimestamp",type=date
// +kubebuilder:printcolumn:name=Last Connected,JSONPath=".status.lastConnected",type=date
// +kubebuilder:printcolumn:name=Secret,JSONPath=".spec.kubeconfigSecretRef.name",type=string,priority=1
// +kubebuilder:printcolumn:name=Error,JSONPath=".status.error",type=string,priority=1
type ClusterLink struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec ClusterLinkSpec `json:"spec"`
	// +optional
	Status ClusterLinkStatus `json:"status,omitempty"`
}

// ClusterLinkList is a list of ClusterLinks.
//
// +kubebuilder:object:root=true
type ClusterLinkList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterLink `json:"items"`
}

// ClusterLinkSpec describes the remote cluster and which of its services to
// read.
//
// Both rules name both fields, so the message says what to do whichever of
// the two the user meant to set.
//
// +kubebuilder:validation:XValidation:rule="has(self.kubeconfig) || has(self.kubeconfigSecretRef)",message="spec.kubeconfigSecretRef (recommended) or spec.kubeconfig must be set: one of them gives the remote cluster's kubeconfig"
// +kubebuilder:validation:XValidation:rule="!has(self.kubeconfig) || !has(self.kubeconfigSecretRef)",message="spec.kubeconfig and spec.kubeconfigSecretRef must not both be set: keep only one (the secret reference is recommended)"
type ClusterLinkSpec struct {
	// Enabled says whether the cluster's services are read; a disabled link
	// keeps its configuration but contributes no endpoints. Default true.
	// A pointer, because false must survive a round trip through Go clients
	// that would drop a zero bool and let the default turn it back to true.
	//
	// +optional
	// +kubebuilder:default=true
	Enabled *bool `json:"enabled,omitempty"`

	// Kubeconfig is the remote cluster's kubeconfig, base64-encoded on one
	// line (as `base64 -w0` prints it), as svclink expects. It is readable by
	// everyone who may read this ClusterLink; prefer KubeconfigSecretRef.
	// Validated by a CEL rule rather than format: byte, so that the
	// rejection names the field and says what is expected. The size limit
	// bounds the rule's cost; real kubeconfigs with embedded certificates
	// are a few KiB.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=131072
	// +kubebuilder:validation:XValidation:rule="size(self) % 4 == 0 && self.matches('^[A-Za-z0-9+/]+={0,2}$')",message="spec.kubeconfig must be a base64-encoded kubeconfig on one line (standard alphabet, padded with =), e.g. the output of base64 -w0"
	Kubeconfig string `json:"kubeconfig,omitempty"`

	// KubeconfigSecretRef names a Secret holding the remote cluster's
	// kubeconfig (plain, not base64 a second time: Secret data already is).
	// The recommended form.
	//
	// +optional
	KubeconfigSecretRef *KubeconfigSecretReference `json:"kubeconfigSecretRef,omitempty"`

	// IncludedNamespaces, when not empty, limits the services read to these
	// namespaces. kube-system is never read.
	//
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=1024
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.all(x, x.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))",messageExpression="'spec.includedNamespaces entries must be namespace names (DNS labels: lower-case letters, digits and -); not ' + self.filter(x, !x.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))[0]"
	IncludedNamespaces []string `json:"includedNamespaces,omitempty"`

	// ExcludedNamespaces are namespaces whose services are not read.
	//
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=1024
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.all(x, x.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))",messageExpression="'spec.excludedNamespaces entries must be namespace names (DNS labels: lower-case letters, digits and -); not ' + self.filter(x, !x.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))[0]"
	ExcludedNamespaces []string `json:"excludedNamespaces,omitempty"`

	// ExcludedServices are single services not read, each as
	// namespace/name (e.g. default/internal-db).
	//
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=1024
	// +kubebuilder:validation:items:MaxLength=127
	// +kubebuilder:validation:XValidation:rule="self.all(x, x.matches('^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/[a-z]([-a-z0-9]{0,61}[a-z0-9])?$'))",messageExpression="'spec.excludedServices entries must be namespace/name, e.g. default/internal-db (a namespace name, /, a service name); not ' + self.filter(x, !x.matches('^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/[a-z]([-a-z0-9]{0,61}[a-z0-9])?$'))[0]"
	ExcludedServices []string `json:"excludedServices,omitempty"`

	// ExcludedServiceNames are service names not read in any namespace.
	// The kubernetes service is never read.
	//
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=1024
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.all(x, x.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$'))",messageExpression="'spec.excludedServiceNames entries must be service names (lower-case letters, digits and -, starting with a letter); not ' + self.filter(x, !x.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$'))[0]"
	ExcludedServiceNames []string `json:"excludedServiceNames,omitempty"`
}

// KubeconfigSecretReference names a Secret and the key in it that holds a
// kubeconfig. There is deliberately no namespace: the Secret lives in the
// ClusterLink's namespace, so that whoever may create ClusterLinks in one
// namespace cannot make the controller read Secrets of another.
type KubeconfigSecretReference struct {
	// Name of the Secret, in the ClusterLink's namespace.
	//
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="spec.kubeconfigSecretRef.name must be the name of a Secret (lower-case DNS name)"
	Name string `json:"name"`

	// Key in the Secret's data that holds the kubeconfig. Default kubeconfig.
	//
	// +optional
	// +kubebuilder:default=kubeconfig
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[-._a-zA-Z0-9]+$')",message="spec.kubeconfigSecretRef.key must be a Secret data key (letters, digits, -, _ and .)"
	Key string `json:"key,omitempty"`
}

// ClusterLinkStatus is written by the controller (netd sync); the fields
// are svclink's.
type ClusterLinkStatus struct {
	// Connected says whether the remote API server is reachable now.
	//
	// +optional
	Connected bool `json:"connected,omitempty"`
	// Version is the remote cluster's Kubernetes version.
	//
	// +optional
	Version string `json:"version,omitempty"`
	// LastConnected is when the remote API server last answered.
	//
	// +optional
	LastConnected *metav1.Time `json:"lastConnected,omitempty"`
	// Error is the last error connecting to or reading from the remote
	// cluster; empty while connected.
	//
	// +optional
	Error string `json:"error,omitempty"`
	// Conditions are the standard conditions; Ready is true while the
	// remote cluster is connected and its services are read.
	//
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// IsEnabled reports whether the link is enabled; unset means enabled, as
// the CRD default says, for objects that did not pass the apiserver.
func (s *ClusterLinkSpec) IsEnabled() bool { return s.Enabled == nil || *s.Enabled }

// SecretKey is the key of the kubeconfig in the referenced Secret, with the
// CRD default applied for objects that did not pass the apiserver.
func (r *KubeconfigSecretReference) SecretKey() string {
	if r.Key == "" {
		return DefaultKubeconfigKey
	}
	return r.Key
}
