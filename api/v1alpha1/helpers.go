package v1alpha1

import "strings"

// MeshSeparator separates the mesh name from the cluster name in object
// names: <mesh>--<cluster>.
const MeshSeparator = "--"

// DefaultClusterDomain is the cluster domain assumed when a link names none.
const DefaultClusterDomain = "cluster.local"

// DefaultMeshDomain is the mesh DNS domain when none is configured.
const DefaultMeshDomain = "kubelink"

// DefaultPort is the gateway port when an endpoint names none.
const DefaultPort = 8777

// SplitName splits an object name <mesh>--<cluster> into its mesh and
// cluster parts. A name without separator belongs to the default mesh ("").
func SplitName(name string) (mesh, cluster string) {
	if i := strings.Index(name, MeshSeparator); i > 0 && i+len(MeshSeparator) < len(name) {
		return name[:i], name[i+len(MeshSeparator):]
	}
	return "", name
}

// JoinName is the inverse of SplitName.
func JoinName(mesh, cluster string) string {
	if mesh == "" {
		return cluster
	}
	return mesh + MeshSeparator + cluster
}
