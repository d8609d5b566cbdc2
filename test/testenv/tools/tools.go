//go:build tools

// Package tools pins the binaries of the test environment: kube-apiserver and
// kubectl from k8s.io/kubernetes, etcd from its server module. It is a
// separate module so that kubernetes' dependency graph never touches
// kubelink's own go.mod.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
