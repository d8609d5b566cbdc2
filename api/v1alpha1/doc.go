// Package v1alpha1 holds the kubelink API: KubeLink (one link of a cluster
// mesh) and MeshService (a local service exposed to a mesh).
//
// The group is kubelink.mandelsoft.org so that manifests written for the
// original kubelink apply unchanged.
//
// +kubebuilder:object:generate=true
// +groupName=kubelink.mandelsoft.org
package v1alpha1
