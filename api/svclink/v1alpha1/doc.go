// Package v1alpha1 holds the svclink API: ClusterLink, one remote cluster
// whose services netd sync reads.
//
// The group and the schema are svclink's (svclink.cloudpilot.ai), so that
// ClusterLink manifests written for svclink apply unchanged; kubelink adds
// only the optional spec.kubeconfigSecretRef and admission validation.
//
// +kubebuilder:object:generate=true
// +groupName=svclink.cloudpilot.ai
package v1alpha1
