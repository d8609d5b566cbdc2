package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"

	"github.com/kubelink/kubelink/api/mesh"
	"github.com/kubelink/kubelink/api/synced"
	"github.com/kubelink/kubelink/netd/sync/dnsmirror"
	"github.com/kubelink/kubelink/netd/sync/mcs"
	"github.com/kubelink/kubelink/netd/sync/meshsvc"
	"github.com/kubelink/kubelink/netd/sync/remote"
)

// localClusterName names the local cluster in MCS objects (the
// source-cluster label of its own export's slices, status.clusters).
func (c *Controller) localClusterName() string {
	if c.cfg.ClusterName != "" {
		return c.cfg.ClusterName
	}
	return "local"
}

// mcsReady: the local cluster has the MCS kinds and their caches synced;
// without them there is nothing to import into.
func (c *Controller) mcsReady() bool {
	return c.exports.HasSynced() && c.imports.HasSynced() && c.localSlices != nil && c.localSlices.HasSynced()
}

// syncMCS reconciles the ServiceImport, its slices and the local
// ServiceExport's conditions of one Service (package mcs plans them).
func (c *Controller) syncMCS(ctx context.Context, ns, name string, svc *corev1.Service, views []view) error {
	if !c.mcsReady() {
		return nil
	}
	var exports []mcs.Export
	localExport, err := getTyped[mcsv1alpha1.ServiceExport](c.exports.GetStore(), ns+"/"+name)
	if err != nil {
		return err
	}
	if localExport != nil {
		exports = append(exports, mcs.Export{Cluster: c.localClusterName(), Local: true, Export: localExport, Service: svc,
			Slices: c.localOwnSlices(ns, name), Healthy: true})
	}
	for _, v := range views {
		if v.frozen || !v.filter.Allows(ns, name) {
			continue
		}
		e, err := v.conn.Export(ns, name)
		if err != nil {
			return err
		}
		if e == nil {
			continue
		}
		exports = append(exports, mcs.Export{Cluster: v.name, Kind: v.kind, Export: e, Service: v.conn.Service(ns, name),
			Slices: v.conn.Slices(ns, name), Mode: v.mode, Healthy: v.healthy})
	}
	current, err := getTyped[mcsv1alpha1.ServiceImport](c.imports.GetStore(), ns+"/"+name)
	if err != nil {
		return err
	}
	in := mcs.Input{Namespace: ns, Name: name, LocalService: svc, Exports: exports}
	if current != nil {
		in.ImportUID = current.UID
	}
	plan := mcs.Desired(in, metav1.NewTime(c.now()))
	if err := c.applyImport(ctx, plan.Import, current); err != nil {
		return err
	}
	if localExport != nil && plan.LocalConditions != nil {
		if merged, changed := mcs.MergeConditions(localExport.Status.Conditions, plan.LocalConditions); changed {
			b, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": merged}})
			if err != nil {
				return fmt.Errorf("encoding the conditions of ServiceExport %s/%s: %w", ns, name, err)
			}
			_, err = c.local.Dynamic.Resource(remote.ServiceExports).Namespace(ns).Patch(ctx, name, types.MergePatchType, b,
				metav1.PatchOptions{FieldManager: fieldManager}, "status")
			c.metrics.write("serviceexport-status", "patch", err)
			if err != nil {
				return fmt.Errorf("writing the conditions of ServiceExport %s/%s: %w", ns, name, err)
			}
		}
	}
	if plan.AwaitImport {
		// The slices need the new import's UID: once its event arrives the
		// Service is queued again.
		return nil
	}
	create, update, del := mcs.Diff(name, plan.Slices, c.ourSlices(byMCSService, ns, name))
	return c.applySlices(ctx, create, update, del)
}

// applyImport writes the ServiceImport: created, updated (spec and status
// separately, status is a subresource) or deleted, only where it differs.
// Imports without our label are someone else's and left alone.
func (c *Controller) applyImport(ctx context.Context, desired, current *mcsv1alpha1.ServiceImport) error {
	res := c.local.Dynamic.Resource(ServiceImports)
	if current != nil && current.Labels[synced.LabelManagedBy] != synced.ManagerName {
		if desired != nil {
			c.log.Debug("a ServiceImport of someone else is in the way", "import", current.Namespace+"/"+current.Name)
		}
		return nil
	}
	switch {
	case desired == nil && current == nil:
		return nil
	case desired == nil:
		err := res.Namespace(current.Namespace).Delete(ctx, current.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &current.UID}})
		if apierrors.IsNotFound(err) {
			err = nil
		}
		c.metrics.write("serviceimport", "delete", err)
		if err != nil {
			return fmt.Errorf("deleting ServiceImport %s/%s: %w", current.Namespace, current.Name, err)
		}
		return nil
	case current == nil:
		u, err := toUnstructured(desired)
		if err != nil {
			return err
		}
		created, err := res.Namespace(desired.Namespace).Create(ctx, u, metav1.CreateOptions{FieldManager: fieldManager})
		c.metrics.write("serviceimport", "create", err)
		if err != nil {
			return fmt.Errorf("creating ServiceImport %s/%s: %w", desired.Namespace, desired.Name, err)
		}
		// The status of a new object is dropped by the apiserver: write it.
		created.Object["status"] = u.Object["status"]
		_, err = res.Namespace(desired.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{FieldManager: fieldManager})
		c.metrics.write("serviceimport-status", "update", err)
		if err != nil {
			return fmt.Errorf("writing the status of ServiceImport %s/%s: %w", desired.Namespace, desired.Name, err)
		}
		return nil
	}
	next := mcs.UpdateImport(desired, current)
	if !mcs.ImportSpecEqual(desired, current) {
		u, err := toUnstructured(next)
		if err != nil {
			return err
		}
		updated, err := res.Namespace(next.Namespace).Update(ctx, u, metav1.UpdateOptions{FieldManager: fieldManager})
		c.metrics.write("serviceimport", "update", err)
		if err != nil {
			return fmt.Errorf("updating ServiceImport %s/%s: %w", next.Namespace, next.Name, err)
		}
		next.ResourceVersion = updated.GetResourceVersion()
	}
	if !mcs.ImportStatusEqual(desired, current) {
		u, err := toUnstructured(next)
		if err != nil {
			return err
		}
		_, err = res.Namespace(next.Namespace).UpdateStatus(ctx, u, metav1.UpdateOptions{FieldManager: fieldManager})
		c.metrics.write("serviceimport-status", "update", err)
		if err != nil {
			return fmt.Errorf("writing the status of ServiceImport %s/%s: %w", next.Namespace, next.Name, err)
		}
	}
	return nil
}

// localOwnSlices are the local cluster's own slices of a Service (not
// ours): the endpoints of the local export.
func (c *Controller) localOwnSlices(ns, name string) []*discoveryv1.EndpointSlice {
	objs, err := c.localSlices.GetIndexer().ByIndex(remote.ByService, ns+"/"+name)
	if err != nil {
		return nil
	}
	out := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.(*discoveryv1.EndpointSlice))
	}
	return out
}

func getTyped[T any](store interface {
	GetByKey(string) (any, bool, error)
}, key string) (*T, error) {
	o, ok, err := store.GetByKey(key)
	if err != nil || !ok {
		return nil, err
	}
	var out T
	if err := kruntime.DefaultUnstructuredConverter.FromUnstructured(o.(*unstructured.Unstructured).Object, &out); err != nil {
		return nil, fmt.Errorf("converting %s: %w", key, err)
	}
	return &out, nil
}

func toUnstructured(o *mcsv1alpha1.ServiceImport) (*unstructured.Unstructured, error) {
	o = o.DeepCopy()
	o.APIVersion, o.Kind = mcsv1alpha1.SchemeGroupVersion.String(), "ServiceImport"
	m, err := kruntime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		return nil, fmt.Errorf("converting ServiceImport %s/%s: %w", o.Namespace, o.Name, err)
	}
	return &unstructured.Unstructured{Object: m}, nil
}

// syncMeshServices reconciles the mirrors of one KubeLink cluster's
// MeshServices in netd's namespace (package meshsvc plans them; the broker
// turns their addresses into the link's allowed IPs and routes). A
// cluster no longer followed loses its mirrors; one whose view is not
// complete keeps them.
func (c *Controller) syncMeshServices(ctx context.Context, cluster string) error {
	c.mu.RLock()
	e := c.clusters[cluster]
	var conn *remote.Cluster
	frozen, known := false, e != nil
	var kind, link string
	if known {
		conn, frozen, kind, link = e.conn, e.disabled, e.kind, e.link
	}
	c.mu.RUnlock()
	var current []*discoveryv1.EndpointSlice
	objs, _ := c.ours.GetIndexer().ByIndex(byCluster, cluster)
	for _, o := range objs {
		if s := o.(*discoveryv1.EndpointSlice); s.Namespace == c.cfg.Namespace && meshsvc.IsMirror(cluster, s) {
			current = append(current, s)
		}
	}
	var desired []*discoveryv1.EndpointSlice
	if known && kind == synced.KindKubeLink {
		if frozen || conn == nil || !conn.MeshServicesKnown() {
			return nil
		}
		kl := c.kubeLink(link)
		if kl == nil {
			return nil
		}
		network, err := mesh.ParseAddressPrefix(kl.Spec.ClusterAddress)
		if err != nil {
			return fmt.Errorf("KubeLink %s: spec.clusterAddress: %w", kl.Name, err)
		}
		desired = meshsvc.Desired(c.cfg.Namespace, cluster, network.Masked(), conn.MeshServices(func(err error) {
			c.log.Warn("skipping a remote MeshService", "cluster", cluster, "err", err)
		}))
	}
	create, update, del := meshsvc.Diff(cluster, desired, current)
	if len(create)+len(update)+len(del) > 0 {
		// The service mirrors answer with MeshService addresses where
		// the ClusterIPs are not routed: replan the cluster's Services.
		defer c.enqueueClusterServices(cluster)
	}
	return c.applySlices(ctx, create, update, del)
}

// syncMirrors reconciles the service mirrors (package dnsmirror) of one
// Service for every KubeLink cluster; a cluster whose view is not complete
// keeps its mirrors, a cluster no longer followed loses them.
func (c *Controller) syncMirrors(ctx context.Context, ns, name string, views []view) error {
	objs, _ := c.ours.GetIndexer().ByIndex(byMirror, ns+"/"+name)
	current := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		if s := o.(*discoveryv1.EndpointSlice); s.Namespace == c.cfg.Namespace {
			current = append(current, s)
		}
	}
	handled := map[string]bool{}
	var errs []error
	for _, v := range views {
		if v.kind != synced.KindKubeLink {
			continue
		}
		handled[v.name] = true
		if v.frozen {
			continue
		}
		key := v.name + "/" + ns + "/" + name
		var desired []*discoveryv1.EndpointSlice
		if v.filter.Allows(ns, name) {
			rs := v.conn.Service(ns, name)
			exp, err := v.conn.Export(ns, name)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			desired = dnsmirror.Desired(c.cfg.Namespace, dnsmirror.Remote{Cluster: v.name, CIDR: v.cidr, MeshAddresses: c.meshAddresses(v)},
				rs, v.conn.Slices(ns, name), exp != nil)
		}
		create, update, del := dnsmirror.Diff(key, desired, current)
		if err := c.applySlices(ctx, create, update, del); err != nil {
			errs = append(errs, err)
		}
	}
	var gone []*discoveryv1.EndpointSlice
	for _, s := range current {
		if !handled[s.Labels[synced.LabelSourceCluster]] && dnsmirror.Key(s) != "" {
			gone = append(gone, s)
		}
	}
	if err := c.applySlices(ctx, nil, nil, gone); err != nil {
		errs = append(errs, err)
	}
	return joinErrs(errs)
}

// meshAddresses are a KubeLink cluster's MeshService addresses per target
// Service: the meshAddress, or the cluster's link address for MeshServices
// bound to its ports.
func (c *Controller) meshAddresses(v view) map[string][]netip.Addr {
	out := map[string][]netip.Addr{}
	var link netip.Addr
	if kl := c.kubeLink(v.name); kl != nil {
		if p, err := mesh.ParseAddressPrefix(kl.Spec.ClusterAddress); err == nil {
			link = p.Addr()
		}
	}
	for _, m := range v.conn.MeshServices(func(error) {}) {
		if m.Spec.Service == "" || m.DeletionTimestamp != nil {
			continue
		}
		a := link
		if m.Spec.MeshAddress != "" {
			p, err := netip.ParseAddr(m.Spec.MeshAddress)
			if err != nil {
				continue
			}
			a = p
		}
		if a.IsValid() {
			k := m.Namespace + "/" + m.Spec.Service
			out[k] = append(out[k], a)
		}
	}
	return out
}
