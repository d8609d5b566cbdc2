// Package kube is what netd writes to the cluster: KubeLink and MeshService
// status, spec.dns and auto-connected KubeLinks, the key/certificate
// secret, and events. Reading — clients and informers — is package
// api/watch, shared with the CoreDNS plugin.
package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	clientscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/api/watch"
)

// KubeLinks is the resource of KubeLink objects.
var KubeLinks = watch.KubeLinks

// Namespace is the namespace netd runs in: $POD_NAMESPACE, else the
// in-cluster service account's, else "default".
func Namespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
		return strings.TrimSpace(string(b))
	}
	return "default"
}

// SplitRef splits "namespace/name" (namespace defaulted).
func SplitRef(ref string) (ns, name string) {
	if i := strings.Index(ref, "/"); i >= 0 {
		return ref[:i], ref[i+1:]
	}
	return Namespace(), ref
}

// PatchStatus writes a KubeLink's status (merge patch on the status
// subresource).
func PatchStatus(ctx context.Context, dyn dynamic.Interface, name string, st v1alpha1.KubeLinkStatus) error {
	b, err := json.Marshal(map[string]any{"status": st})
	if err != nil {
		return fmt.Errorf("encoding status of %s: %w", name, err)
	}
	_, err = dyn.Resource(KubeLinks).Patch(ctx, name, types.MergePatchType, b, metav1.PatchOptions{FieldManager: "kubelink-netd"}, "status")
	if err != nil {
		return fmt.Errorf("writing status of KubeLink %s: %w", name, err)
	}
	return nil
}

// PatchSpecDNS writes a KubeLink's spec.dns (bridge DNS advertisement).
func PatchSpecDNS(ctx context.Context, dyn dynamic.Interface, name string, dns *v1alpha1.KubeLinkDNS) error {
	b, err := json.Marshal(map[string]any{"spec": map[string]any{"dns": dns}})
	if err != nil {
		return fmt.Errorf("encoding spec.dns of %s: %w", name, err)
	}
	if _, err := dyn.Resource(KubeLinks).Patch(ctx, name, types.MergePatchType, b, metav1.PatchOptions{FieldManager: "kubelink-netd"}); err != nil {
		return fmt.Errorf("writing spec.dns of KubeLink %s: %w", name, err)
	}
	return nil
}

// CreateLink creates a KubeLink (bridge auto-connect).
func CreateLink(ctx context.Context, dyn dynamic.Interface, l *v1alpha1.KubeLink) error {
	l.APIVersion, l.Kind = v1alpha1.SchemeGroupVersion.String(), "KubeLink"
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(l)
	if err != nil {
		return fmt.Errorf("encoding KubeLink %s: %w", l.Name, err)
	}
	if _, err := dyn.Resource(KubeLinks).Create(ctx, &unstructured.Unstructured{Object: m}, metav1.CreateOptions{FieldManager: "kubelink-netd"}); err != nil {
		return fmt.Errorf("creating KubeLink %s: %w", l.Name, err)
	}
	return nil
}

// SecretData reads a secret; nil data when it does not exist.
func SecretData(ctx context.Context, core kubernetes.Interface, ref string) (map[string][]byte, error) {
	ns, name := SplitRef(ref)
	s, err := core.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading secret %s/%s: %w", ns, name, err)
	}
	return s.Data, nil
}

// EnsureSecretKey returns data[key] of the secret, storing gen() there when
// the secret or the key is missing. Concurrent writers converge on the value
// stored first.
func EnsureSecretKey(ctx context.Context, core kubernetes.Interface, ref, key string, gen func() (string, error)) (string, error) {
	ns, name := SplitRef(ref)
	for attempt := 0; attempt < 5; attempt++ {
		s, err := core.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return "", fmt.Errorf("reading secret %s/%s: %w", ns, name, err)
		}
		if err == nil {
			if v := strings.TrimSpace(string(s.Data[key])); v != "" {
				return v, nil
			}
		}
		v, gerr := gen()
		if gerr != nil {
			return "", gerr
		}
		if apierrors.IsNotFound(err) {
			_, err = core.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
				Data:       map[string][]byte{key: []byte(v)},
			}, metav1.CreateOptions{})
		} else {
			if s.Data == nil {
				s.Data = map[string][]byte{}
			}
			s.Data[key] = []byte(v)
			_, err = core.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{})
		}
		if err == nil {
			return v, nil
		}
		if !apierrors.IsAlreadyExists(err) && !apierrors.IsConflict(err) {
			return "", fmt.Errorf("storing %s in secret %s/%s: %w", key, ns, name, err)
		}
	}
	return "", fmt.Errorf("storing %s in secret %s/%s: too many conflicts", key, ns, name)
}

// Recorder returns an event recorder for KubeLinks (events land in the
// default namespace, as for every cluster-scoped object).
func Recorder(ctx context.Context, core kubernetes.Interface, component string) (record.EventRecorder, func()) {
	s := runtime.NewScheme()
	_ = clientscheme.AddToScheme(s)
	_ = v1alpha1.AddToScheme(s)
	b := record.NewBroadcaster(record.WithContext(ctx))
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: core.CoreV1().Events("")})
	return b.NewRecorder(s, corev1.EventSource{Component: component}), b.Shutdown
}

// MeshServices is the resource of MeshService objects.
var MeshServices = watch.MeshServices

// PatchServiceStatus writes a MeshService's status (merge patch on the
// status subresource; targets are replaced as a whole).
func PatchServiceStatus(ctx context.Context, dyn dynamic.Interface, namespace, name string, st v1alpha1.MeshServiceStatus) error {
	// A merge patch keeps fields it omits: empty ones are sent as null.
	var targets any
	if len(st.Targets) > 0 {
		targets = st.Targets
	}
	var message any
	if st.Message != "" {
		message = st.Message
	}
	b, err := json.Marshal(map[string]any{"status": map[string]any{
		"state": st.State, "message": message, "targets": targets, "observedGeneration": st.ObservedGeneration,
	}})
	if err != nil {
		return fmt.Errorf("encoding status of %s/%s: %w", namespace, name, err)
	}
	_, err = dyn.Resource(MeshServices).Namespace(namespace).Patch(ctx, name, types.MergePatchType, b, metav1.PatchOptions{FieldManager: "kubelink-netd"}, "status")
	if err != nil {
		return fmt.Errorf("writing status of MeshService %s/%s: %w", namespace, name, err)
	}
	return nil
}
