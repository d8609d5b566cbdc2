package controller

import (
	"context"

	corev1 "k8s.io/api/core/v1"
)

// syncMCS reconciles the ServiceImport, its slices and the local
// ServiceExport's conditions of one Service (package mcs plans them).
func (c *Controller) syncMCS(ctx context.Context, ns, name string, local *corev1.Service, views []view) error {
	return nil
}

// syncMeshServices reconciles the mirrors of one cluster's MeshServices
// (package meshsvc plans them).
func (c *Controller) syncMeshServices(ctx context.Context, cluster string) error {
	return nil
}
