package controller

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"

	"github.com/kubelink/kubelink/api/mesh"
	svclinkv1alpha1 "github.com/kubelink/kubelink/api/svclink/v1alpha1"
	"github.com/kubelink/kubelink/api/synced"
	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/api/watch"
	"github.com/kubelink/kubelink/netd/sync/aggregate"
	"github.com/kubelink/kubelink/netd/sync/filter"
	"github.com/kubelink/kubelink/netd/sync/remote"
)

// Resources of the local cluster beyond api/watch's.
var (
	ClusterLinks   = svclinkv1alpha1.SchemeGroupVersion.WithResource("clusterlinks")
	ServiceImports = mcsv1alpha1.SchemeGroupVersion.WithResource("serviceimports")
)

const labelMCSService = mcsv1alpha1.LabelServiceName

// Condition types netd sync writes.
const (
	// ConditionInlineKubeconfig (ClusterLink) is True while the credentials
	// are inline in spec.kubeconfig, readable by everyone who may read the
	// ClusterLink.
	ConditionInlineKubeconfig = "InlineKubeconfig"
	// ConditionAPIAccess (KubeLink) says whether spec.apiAccess works.
	ConditionAPIAccess = "APIAccess"
)

// entry is one followed cluster.
type entry struct {
	name, kind  string
	mode        aggregate.AddressMode
	filter      filter.Filter
	disabled    bool
	conn        *remote.Cluster
	fingerprint string
	// credErr: the credentials could not be built (no connection).
	credErr string
	// link is the KubeLink whose state gates the cluster (KubeLinks).
	link string
	// healthy as last decided by the links loop; synced: the connection's
	// view was complete then (its change unfreezes the cluster's slices).
	healthy, synced bool
	// object is the ClusterLink ("namespace/name") or KubeLink ("name").
	object string
	inline bool
	// cidr is the KubeLink's spec.cidr (service mirrors).
	cidr netip.Prefix
}

// want is what a link asks for.
type want struct {
	name, kind, object, link string
	mode                     aggregate.AddressMode
	filter                   filter.Filter
	disabled, inline         bool
	target                   *remote.Target
	credErr                  string
	clusterLink              *svclinkv1alpha1.ClusterLink
	kubeLink                 *v1alpha1.KubeLink
	server                   string
	cidr                     netip.Prefix
}

// reconcileLinks is the links loop's round: links → connections, health,
// status. It writes status only where it differs.
func (c *Controller) reconcileLinks(ctx context.Context) error {
	wants := c.wants(ctx)
	now := c.now()
	var changed []string
	// Connections are stopped after the lock is released: Stop waits for
	// the connection's informers, whose handlers may take the lock.
	var stop []*remote.Cluster
	defer func() {
		for _, conn := range stop {
			conn.Stop()
		}
	}()
	c.mu.Lock()
	seen := map[string]bool{}
	for _, w := range wants {
		seen[w.name] = true
		e := c.clusters[w.name]
		if e == nil {
			e = &entry{name: w.name}
			c.clusters[w.name] = e
			changed = append(changed, w.name)
		}
		fp := ""
		if w.target != nil && !w.disabled {
			fp = w.target.Fingerprint
		}
		if e.fingerprint != fp || (e.conn == nil && w.target != nil && !w.disabled) {
			if e.conn != nil {
				stop = append(stop, e.conn)
				e.conn = nil
			}
			if w.target != nil && !w.disabled {
				e.conn = remote.Start(ctx, *w.target, c.remoteOptions())
			}
			e.fingerprint = fp
			changed = append(changed, w.name)
		}
		if e.kind != w.kind || e.mode != w.mode || e.filter.String() != w.filter.String() || e.disabled != w.disabled || e.cidr != w.cidr {
			changed = append(changed, w.name)
		}
		e.kind, e.mode, e.filter, e.disabled, e.credErr, e.link, e.object, e.inline, e.cidr = w.kind, w.mode, w.filter, w.disabled, w.credErr, w.link, w.object, w.inline, w.cidr
	}
	for name, e := range c.clusters {
		if !seen[name] {
			if e.conn != nil {
				stop = append(stop, e.conn)
			}
			delete(c.clusters, name)
			c.metrics.clusters.DeletePartialMatch(prometheus.Labels{"cluster": name})
			changed = append(changed, name)
			c.log.Info("no longer following a cluster", "cluster", name)
		}
	}
	// Health: connected or within the grace period, and, for KubeLinks,
	// the link Up.
	for _, e := range c.clusters {
		h := e.health(c, now)
		if h != e.healthy {
			e.healthy = h
			changed = append(changed, e.name)
			c.log.Info("cluster health", "cluster", e.name, "healthy", h)
		}
		if s := e.conn != nil && e.conn.Health().Synced; s != e.synced {
			e.synced = s
			changed = append(changed, e.name)
		}
		c.setGauges(e)
	}
	c.mu.Unlock()
	for _, n := range dedupe(changed) {
		c.enqueueCluster(n)
	}
	var errs []error
	for _, w := range wants {
		if err := c.writeStatus(ctx, w); err != nil {
			errs = append(errs, err)
		}
	}
	return joinErrs(errs)
}

// health decides whether the cluster's endpoints may be ready.
func (e *entry) health(c *Controller, now time.Time) bool {
	if e.disabled {
		return true // kept as they are
	}
	if e.link != "" && c.linkState(e.link) != v1alpha1.StateUp {
		return false
	}
	if e.conn == nil {
		return now.Sub(c.started) < c.cfg.APIGrace
	}
	h := e.conn.Health()
	if h.LastConnected.IsZero() {
		return now.Sub(c.started) < c.cfg.APIGrace
	}
	return h.Healthy(now, c.cfg.APIGrace)
}

func (c *Controller) setGauges(e *entry) {
	h := remote.Health{}
	if e.conn != nil {
		h = e.conn.Health()
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	for state, v := range map[string]bool{"connected": h.Connected, "synced": h.Synced, "healthy": e.healthy, "enabled": !e.disabled} {
		c.metrics.clusters.WithLabelValues(e.name, e.kind, state).Set(b(v))
	}
}

func dedupe(l []string) []string {
	sort.Strings(l)
	out := l[:0]
	for i, s := range l {
		if i == 0 || s != l[i-1] {
			out = append(out, s)
		}
	}
	return out
}

func (c *Controller) remoteOptions() remote.Options {
	return remote.Options{
		Resync: c.cfg.SyncInterval, Probe: c.cfg.Probe, Grace: c.cfg.APIGrace, Log: c.log,
		OnEvent: func(_, ns, name string) { c.enqueueService(ns, name) },
		// MeshServices are few and change rarely; a change may move the
		// DNS answer of any of the cluster's Services (service mirrors).
		OnMeshServices: func(cluster string) { c.enqueueCluster(cluster) },
		OnHealth:       func(string) { c.trigger.Kick() },
	}
}

// stopAll stops every connection, outside the lock (see reconcileLinks).
func (c *Controller) stopAll() {
	var stop []*remote.Cluster
	c.mu.Lock()
	for _, e := range c.clusters {
		if e.conn != nil {
			stop = append(stop, e.conn)
			e.conn = nil
		}
	}
	c.mu.Unlock()
	for _, conn := range stop {
		conn.Stop()
	}
}

// linkState is the state of the local KubeLink name ("" if none).
func (c *Controller) linkState(name string) string {
	if kl := c.kubeLink(name); kl != nil {
		return kl.Status.State
	}
	return ""
}

func (c *Controller) kubeLink(name string) *v1alpha1.KubeLink {
	o, ok, err := c.kubeLinks.GetStore().GetByKey(name)
	if err != nil || !ok {
		return nil
	}
	var kl v1alpha1.KubeLink
	if kruntime.DefaultUnstructuredConverter.FromUnstructured(o.(*unstructured.Unstructured).Object, &kl) != nil {
		return nil
	}
	return &kl
}

// wants reads every ClusterLink and KubeLink with apiAccess. A cluster
// name taken twice goes to the first ClusterLink (by namespace/name), then
// to KubeLinks; the others are reported in their status.
func (c *Controller) wants(ctx context.Context) []*want {
	global := c.cfg.IncludedNamespaces()
	var out []*want
	taken := map[string]string{}
	var cls []*svclinkv1alpha1.ClusterLink
	for _, o := range c.clusterLinks.GetStore().List() {
		var cl svclinkv1alpha1.ClusterLink
		if err := kruntime.DefaultUnstructuredConverter.FromUnstructured(o.(*unstructured.Unstructured).Object, &cl); err != nil {
			c.log.Warn("skipping a ClusterLink that does not convert", "err", err)
			continue
		}
		cls = append(cls, &cl)
	}
	sort.Slice(cls, func(i, j int) bool {
		return cls[i].Namespace+"/"+cls[i].Name < cls[j].Namespace+"/"+cls[j].Name
	})
	for _, cl := range cls {
		w := &want{name: cl.Name, kind: synced.KindClusterLink, object: cl.Namespace + "/" + cl.Name, clusterLink: cl,
			mode: aggregate.AddressMode(c.cfg.ClusterLinkMode), filter: filter.New(c.cfg.Namespace, global, &cl.Spec), disabled: !cl.Spec.IsEnabled(),
			inline: cl.Spec.Kubeconfig != ""}
		if other, ok := taken[w.name]; ok {
			w.credErr = fmt.Sprintf("metadata.name: cluster name %q is already followed through %s; rename this ClusterLink", w.name, other)
			c.writeClusterLinkStatus(ctx, w)
			continue
		}
		taken[w.name] = "ClusterLink " + w.object
		if !w.disabled {
			w.target, w.credErr = c.clusterLinkTarget(ctx, cl)
		}
		out = append(out, w)
	}
	for _, o := range c.kubeLinks.GetStore().List() {
		var kl v1alpha1.KubeLink
		if err := kruntime.DefaultUnstructuredConverter.FromUnstructured(o.(*unstructured.Unstructured).Object, &kl); err != nil {
			continue
		}
		if kl.Spec.APIAccess == nil || kl.Spec.Endpoint == v1alpha1.EndpointLocalLink {
			continue
		}
		k := kl
		w := &want{name: kl.Name, kind: synced.KindKubeLink, object: kl.Name, link: kl.Name, kubeLink: &k,
			mode: aggregate.AddressMode(c.cfg.KubeLinkMode), filter: filter.New(c.cfg.Namespace, global, nil)}
		if other, ok := taken[w.name]; ok {
			w.credErr = fmt.Sprintf("cluster name %q is already followed through %s", w.name, other)
			_ = c.writeKubeLinkCondition(ctx, w)
			continue
		}
		taken[w.name] = "KubeLink " + w.name
		if p, err := mesh.ParseCIDR(kl.Spec.CIDR); err == nil && p.IsValid() {
			w.cidr = p.Masked()
		}
		w.target, w.server, w.credErr = c.kubeLinkTarget(ctx, &kl)
		out = append(out, w)
	}
	return out
}

// clusterLinkTarget builds the connection of a ClusterLink from its inline
// kubeconfig or its secret.
func (c *Controller) clusterLinkTarget(ctx context.Context, cl *svclinkv1alpha1.ClusterLink) (*remote.Target, string) {
	var raw []byte
	switch {
	case cl.Spec.KubeconfigSecretRef != nil:
		ref := cl.Spec.KubeconfigSecretRef
		s, err := c.local.Core.CoreV1().Secrets(cl.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Sprintf("spec.kubeconfigSecretRef: reading Secret %s/%s: %v", cl.Namespace, ref.Name, err)
		}
		if raw = s.Data[ref.SecretKey()]; len(raw) == 0 {
			return nil, fmt.Sprintf("spec.kubeconfigSecretRef: Secret %s/%s has no key %q", cl.Namespace, ref.Name, ref.SecretKey())
		}
	case cl.Spec.Kubeconfig != "":
		b, err := base64.StdEncoding.DecodeString(cl.Spec.Kubeconfig)
		if err != nil {
			return nil, fmt.Sprintf("spec.kubeconfig is not base64: %v", err)
		}
		raw = b
	default:
		return nil, "spec.kubeconfigSecretRef or spec.kubeconfig must be set"
	}
	cfg, err := watch.RemoteConfig(raw, "")
	if err != nil {
		field := "spec.kubeconfig"
		if cl.Spec.KubeconfigSecretRef != nil {
			field = "spec.kubeconfigSecretRef"
		}
		return nil, fmt.Sprintf("%s: %v", field, err)
	}
	return c.target(cl.Name, synced.KindClusterLink, cfg, raw)
}

// kubeLinkTarget builds the connection of a KubeLink's apiAccess: token and
// CA from the Secret, the server from spec.apiAccess.server or the first
// address of spec.cidr (the remote kubernetes Service, through the mesh).
func (c *Controller) kubeLinkTarget(ctx context.Context, kl *v1alpha1.KubeLink) (*remote.Target, string, string) {
	a := kl.Spec.APIAccess
	ns := a.Namespace
	if ns == "" {
		ns = c.cfg.Namespace
	}
	server := a.Server
	if server == "" {
		p, err := mesh.ParseCIDR(kl.Spec.CIDR)
		if err != nil || !p.IsValid() {
			return nil, "", "spec.apiAccess.server is empty and spec.cidr gives no default: set one of them"
		}
		server = "https://" + netip.AddrPortFrom(p.Masked().Addr().Next(), 443).String()
	}
	s, err := c.local.Core.CoreV1().Secrets(ns).Get(ctx, a.Name, metav1.GetOptions{})
	if err != nil {
		return nil, server, fmt.Sprintf("spec.apiAccess: reading Secret %s/%s: %v", ns, a.Name, err)
	}
	token, ca := s.Data[v1alpha1.APIAccessTokenKey], s.Data[v1alpha1.APIAccessCAKey]
	if len(token) == 0 || len(ca) == 0 {
		return nil, server, fmt.Sprintf("spec.apiAccess: Secret %s/%s needs the keys %s and %s", ns, a.Name, v1alpha1.APIAccessTokenKey, v1alpha1.APIAccessCAKey)
	}
	// certificate-authority-data holds PEM, or base64 PEM as in a
	// kubeconfig: accept both.
	if d, err := base64.StdEncoding.DecodeString(string(ca)); err == nil && len(d) > 0 {
		ca = d
	}
	cfg, err := watch.TokenConfig(server, string(token), ca)
	if err != nil {
		return nil, server, "spec.apiAccess: " + err.Error()
	}
	t, msg := c.target(kl.Name, synced.KindKubeLink, cfg, append(append([]byte(server), token...), ca...))
	return t, server, msg
}

func (c *Controller) target(name, kind string, cfg *rest.Config, secret []byte) (*remote.Target, string) {
	cfg.QPS, cfg.Burst = 50, 100
	cfg.Timeout = 30 * time.Second
	clients, err := watch.NewClients(cfg, "kubelink-netd-sync")
	if err != nil {
		return nil, err.Error()
	}
	sum := sha256.Sum256(append([]byte(cfg.Host+"\x00"), secret...))
	return &remote.Target{Name: name, Kind: kind, Clients: clients, Fingerprint: hex.EncodeToString(sum[:])}, ""
}

// writeStatus writes a link's status where it differs.
func (c *Controller) writeStatus(ctx context.Context, w *want) error {
	if w.kind == synced.KindClusterLink {
		return c.writeClusterLinkStatus(ctx, w)
	}
	return c.writeKubeLinkCondition(ctx, w)
}

// connState is a link's connection as status reports it.
func (c *Controller) connState(w *want) (remote.Health, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e := c.clusters[w.name]
	if e == nil || e.conn == nil || e.kind != w.kind {
		return remote.Health{}, false
	}
	return e.conn.Health(), true
}

// writeClusterLinkStatus writes svclink's status fields and the Ready and
// InlineKubeconfig conditions.
func (c *Controller) writeClusterLinkStatus(ctx context.Context, w *want) error {
	cl := w.clusterLink
	st := *cl.Status.DeepCopy()
	h, running := c.connState(w)
	ready := metav1.Condition{Type: svclinkv1alpha1.ConditionReady, ObservedGeneration: cl.Generation}
	switch {
	case w.disabled:
		st.Connected, st.Error = false, ""
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, "Disabled", "spec.enabled is false: not syncing; the endpoints synced before are kept"
	case w.credErr != "":
		st.Connected, st.Error = false, w.credErr
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, "InvalidKubeconfig", w.credErr
	case !running:
		st.Connected = false
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, "Connecting", "connecting to the remote cluster"
	case h.Connected && h.Synced:
		st.Connected, st.Version, st.Error = true, h.Version, ""
		// The time the connection was (re)established: writing every probe's
		// time would turn every resync into a write.
		t := metav1.NewTime(h.Since.Truncate(time.Second))
		if st.LastConnected == nil || !st.LastConnected.Equal(&t) {
			st.LastConnected = &t
		}
		ready.Status, ready.Reason, ready.Message = metav1.ConditionTrue, "ClusterReady", "Cluster connection established"
	case h.Connected:
		st.Connected, st.Version, st.Error = true, h.Version, ""
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, "Syncing", "connected; reading the remote cluster's services"
	default:
		st.Connected, st.Error = false, h.Error
		if st.Error == "" {
			st.Error = "not connected yet"
		}
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, "ConnectionFailed", st.Error
	}
	meta.SetStatusCondition(&st.Conditions, ready)
	hadInline := meta.IsStatusConditionTrue(st.Conditions, ConditionInlineKubeconfig)
	if w.inline {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: ConditionInlineKubeconfig, Status: metav1.ConditionTrue,
			ObservedGeneration: cl.Generation, Reason: "InlineKubeconfig",
			Message: "spec.kubeconfig holds the remote credentials inline, readable by everyone who may read ClusterLinks here; store them in a Secret and use spec.kubeconfigSecretRef"})
	} else {
		meta.RemoveStatusCondition(&st.Conditions, ConditionInlineKubeconfig)
	}
	if equalStatus(&cl.Status, &st) {
		return nil
	}
	b, err := statusPatch(st)
	if err != nil {
		return fmt.Errorf("encoding status of ClusterLink %s: %w", w.object, err)
	}
	_, err = c.local.Dynamic.Resource(ClusterLinks).Namespace(cl.Namespace).Patch(ctx, cl.Name, types.MergePatchType, b,
		metav1.PatchOptions{FieldManager: fieldManager}, "status")
	c.metrics.write("clusterlink-status", "patch", err)
	if err != nil {
		return fmt.Errorf("writing status of ClusterLink %s: %w", w.object, err)
	}
	ref := &unstructured.Unstructured{}
	ref.SetGroupVersionKind(svclinkv1alpha1.SchemeGroupVersion.WithKind("ClusterLink"))
	ref.SetNamespace(cl.Namespace)
	ref.SetName(cl.Name)
	ref.SetUID(cl.UID)
	if w.inline && !hadInline {
		c.recorder.Event(ref, corev1.EventTypeWarning, "InlineKubeconfig",
			"spec.kubeconfig holds the remote credentials inline; use spec.kubeconfigSecretRef")
	}
	if was := cl.Status.Connected; was != st.Connected {
		if st.Connected {
			c.recorder.Eventf(ref, corev1.EventTypeNormal, "Connected", "connected to the remote cluster (%s)", st.Version)
		} else if st.Error != "" {
			c.recorder.Event(ref, corev1.EventTypeWarning, "Disconnected", st.Error)
		}
	}
	return nil
}

// statusPatch is the merge patch of a whole ClusterLink status: fields that
// are empty now are sent as null, else the merge would keep their old
// values (a cleared error would stay).
func statusPatch(st svclinkv1alpha1.ClusterLinkStatus) ([]byte, error) {
	b, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	for _, k := range []string{"connected", "version", "lastConnected", "error", "conditions"} {
		if _, ok := m[k]; !ok {
			m[k] = nil
		}
	}
	return json.Marshal(map[string]any{"status": m})
}

// writeKubeLinkCondition writes the APIAccess condition of a KubeLink.
func (c *Controller) writeKubeLinkCondition(ctx context.Context, w *want) error {
	kl := w.kubeLink
	h, running := c.connState(w)
	cond := metav1.Condition{Type: ConditionAPIAccess, ObservedGeneration: kl.Generation}
	switch {
	case w.credErr != "":
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "InvalidAPIAccess", w.credErr
	case !running:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "Connecting", "connecting to "+w.server
	case h.Connected && h.Synced:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, "Connected", fmt.Sprintf("reading the services of %s (%s)", w.server, h.Version)
	case h.Connected:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "Syncing", "connected to "+w.server+"; reading its services"
	default:
		msg := h.Error
		if msg == "" {
			msg = "not connected to " + w.server + " yet"
		}
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "Unreachable", msg
	}
	conds := append([]metav1.Condition(nil), kl.Status.Conditions...)
	meta.SetStatusCondition(&conds, cond)
	if reflect.DeepEqual(stripTimes(conds), stripTimes(kl.Status.Conditions)) {
		return nil
	}
	b, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": conds}})
	if err != nil {
		return fmt.Errorf("encoding the %s condition of KubeLink %s: %w", ConditionAPIAccess, kl.Name, err)
	}
	_, err = c.local.Dynamic.Resource(watch.KubeLinks).Patch(ctx, kl.Name, types.MergePatchType, b, metav1.PatchOptions{FieldManager: fieldManager}, "status")
	c.metrics.write("kubelink-status", "patch", err)
	if err != nil {
		return fmt.Errorf("writing the %s condition of KubeLink %s: %w", ConditionAPIAccess, kl.Name, err)
	}
	old := meta.FindStatusCondition(kl.Status.Conditions, ConditionAPIAccess)
	if old == nil || old.Status != cond.Status {
		ref := &unstructured.Unstructured{}
		ref.SetGroupVersionKind(v1alpha1.SchemeGroupVersion.WithKind("KubeLink"))
		ref.SetName(kl.Name)
		ref.SetUID(kl.UID)
		typ := corev1.EventTypeNormal
		if cond.Status != metav1.ConditionTrue {
			typ = corev1.EventTypeWarning
		}
		c.recorder.Event(ref, typ, "APIAccess"+cond.Reason, cond.Message)
	}
	return nil
}

func stripTimes(conds []metav1.Condition) []metav1.Condition {
	out := make([]metav1.Condition, len(conds))
	for i, c := range conds {
		c.LastTransitionTime = metav1.Time{}
		out[i] = c
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Type < out[j].Type })
	return out
}

func equalStatus(a, b *svclinkv1alpha1.ClusterLinkStatus) bool {
	x, y := *a, *b
	x.Conditions, y.Conditions = stripTimes(a.Conditions), stripTimes(b.Conditions)
	if x.LastConnected != nil && y.LastConnected != nil && x.LastConnected.Equal(y.LastConnected) {
		x.LastConnected, y.LastConnected = nil, nil
	}
	return reflect.DeepEqual(x, y)
}

// eventSink writes events with the local clients (core/v1 Events: the
// recorder's wire format).
type eventSink struct{ c *watch.Clients }

func (s *eventSink) Create(e *corev1.Event) (*corev1.Event, error) {
	return s.c.Core.CoreV1().Events(e.Namespace).Create(context.Background(), e, metav1.CreateOptions{})
}

func (s *eventSink) Update(e *corev1.Event) (*corev1.Event, error) {
	return s.c.Core.CoreV1().Events(e.Namespace).Update(context.Background(), e, metav1.UpdateOptions{})
}

func (s *eventSink) Patch(e *corev1.Event, data []byte) (*corev1.Event, error) {
	return s.c.Core.CoreV1().Events(e.Namespace).Patch(context.Background(), e.Name, types.StrategicMergePatchType, data, metav1.PatchOptions{})
}

// eventScheme knows the core kinds; references to ClusterLinks and
// KubeLinks are unstructured and carry their own kind.
func eventScheme() *kruntime.Scheme { return scheme.Scheme }

// prometheusGather sums a counter vector's successful samples.
func prometheusGather(v *prometheus.CounterVec) (float64, error) {
	ch := make(chan prometheus.Metric, 64)
	go func() {
		v.Collect(ch)
		close(ch)
	}()
	var sum float64
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			return 0, err
		}
		ok := false
		for _, l := range d.GetLabel() {
			if l.GetName() == "result" && l.GetValue() == "ok" {
				ok = true
			}
		}
		if ok {
			sum += d.GetCounter().GetValue()
		}
	}
	return sum, nil
}
