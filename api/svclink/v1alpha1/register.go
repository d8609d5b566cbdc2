package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupName is svclink's API group, kept so its manifests apply unchanged.
const GroupName = "svclink.cloudpilot.ai"

// SchemeGroupVersion is the group version of this package.
var SchemeGroupVersion = schema.GroupVersion{Group: GroupName, Version: "v1alpha1"}

// ClusterLinkResource is the resource name, as used in RBAC rules and
// dynamic clients.
const ClusterLinkResource = "clusterlinks"

var (
	// SchemeBuilder registers the svclink types.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds the svclink types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// Resource turns an unqualified resource name into a group-qualified one.
func Resource(resource string) schema.GroupResource {
	return SchemeGroupVersion.WithResource(resource).GroupResource()
}

func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(SchemeGroupVersion, &ClusterLink{}, &ClusterLinkList{})
	metav1.AddToGroupVersion(scheme, SchemeGroupVersion)
	return nil
}
