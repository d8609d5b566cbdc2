package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/netd/kube"
	"github.com/kubelink/kubelink/netd/tunnel/bridge"
)

// Outbound API access advertisement (--service-account).
const (
	// apiAccessLifetime is what the TokenRequest asks for; the token is
	// renewed at half its actual lifetime.
	apiAccessLifetime = 24 * time.Hour
	// apiAccessRetry is the pause after a failed TokenRequest.
	apiAccessRetry = 30 * time.Second
)

// Inbound API access (a peer's advertisement).
const (
	// APIAccessSecretSuffix names the Secret of a link's advertised API
	// access: <link>-apiaccess in the broker's namespace.
	APIAccessSecretSuffix = "-apiaccess"
	// LabelManagedBy marks the Secrets netd writes.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedBy is its value.
	ManagedBy = "kubelink-netd"
)

// apiAccessToken is the advertised token and when to renew it.
type apiAccessToken struct {
	access  *bridge.HelloAPIAccess
	expiry  time.Time
	renewAt time.Time
	retryAt time.Time
}

// refreshAPIAccess keeps the hello's API access current (level-based, each
// reconcile): a token of --service-account from the TokenRequest API,
// renewed at half its lifetime, and the CA of the local API server. A
// failed request is retried after apiAccessRetry; the old token is
// advertised until it expires. The token is never logged.
func (b *broker) refreshAPIAccess(ctx context.Context, now time.Time) error {
	if b.cfg.ServiceAccount == "" || b.cfg.Mode != ModeBridge || b.dp == nil {
		return nil
	}
	t := &b.apiToken
	if t.access != nil && now.After(t.expiry) {
		t.access = nil
	}
	b.dp.APIAccess = t.access
	if t.access != nil && now.Before(t.renewAt) || now.Before(t.retryAt) {
		return nil
	}
	ns, name := splitRef(b.cfg.ServiceAccount, b.cfg.Namespace)
	exp := int64(apiAccessLifetime / time.Second)
	tr, err := b.clients.Core.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err == nil && tr.Status.Token == "" {
		err = fmt.Errorf("empty token")
	}
	if err != nil {
		t.retryAt = now.Add(apiAccessRetry)
		if apierrors.IsForbidden(err) {
			return fmt.Errorf("API access advertisement: no token for ServiceAccount %s/%s: the broker needs create on serviceaccounts/token for it: %w", ns, name, err)
		}
		return fmt.Errorf("API access advertisement: requesting a token for ServiceAccount %s/%s: %w", ns, name, err)
	}
	ca, err := localCA(b.clients.Config)
	if err != nil {
		t.retryAt = now.Add(apiAccessRetry)
		return fmt.Errorf("API access advertisement: %w", err)
	}
	expiry := tr.Status.ExpirationTimestamp.Time
	if !expiry.After(now) {
		expiry = now.Add(apiAccessLifetime)
	}
	t.access = &bridge.HelloAPIAccess{Token: tr.Status.Token, CA: ca}
	t.expiry, t.renewAt, t.retryAt = expiry, now.Add(expiry.Sub(now)/2), time.Time{}
	b.dp.APIAccess = t.access
	b.log.Info("API access advertisement: new token", "serviceAccount", ns+"/"+name, "expires", expiry.UTC().Format(time.RFC3339),
		"renew", t.renewAt.UTC().Format(time.RFC3339))
	return nil
}

// splitRef splits [namespace/]name with namespace defaulting to ns.
func splitRef(ref, ns string) (string, string) {
	if i := strings.Index(ref, "/"); i >= 0 {
		return ref[:i], ref[i+1:]
	}
	return ns, ref
}

// localCA is the PEM of the CA the local API server's certificate is
// checked against: the rest config's (in-cluster: the service account's
// ca.crt).
func localCA(rc *rest.Config) ([]byte, error) {
	if rc == nil {
		return nil, fmt.Errorf("no API server configuration")
	}
	if len(rc.CAData) > 0 {
		return rc.CAData, nil
	}
	if rc.CAFile != "" {
		b, err := os.ReadFile(rc.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading the API server's CA: %w", err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("the API server's CA is unknown (no CA data or file in the kubeconfig)")
}

// apiAccessSecretName is the Secret of a link's advertised API access.
func apiAccessSecretName(link string) string { return link + APIAccessSecretSuffix }

// apiAccessUpdate plans the inbound API access of a link whose peer
// advertised h: the Secret to write (nil when it says the same already or
// the hello carries none) and the link's spec.apiAccess to set (nil when
// it is set already: a user's apiAccess, maybe elsewhere, is never
// overwritten). cur is the link (nil: unknown, nothing to do), old the
// Secret as it is (nil: missing).
func apiAccessUpdate(cur *v1alpha1.KubeLink, h bridge.Hello, namespace string, old *corev1.Secret) (*corev1.Secret, *v1alpha1.KubeLinkAPIAccess) {
	if cur == nil || h.APIAccess == nil || h.APIAccess.Token == "" {
		return nil, nil
	}
	name := apiAccessSecretName(cur.Name)
	var secret *corev1.Secret
	if old == nil || string(old.Data[v1alpha1.APIAccessTokenKey]) != h.APIAccess.Token ||
		!bytes.Equal(old.Data[v1alpha1.APIAccessCAKey], h.APIAccess.CA) || old.Labels[LabelManagedBy] != ManagedBy {
		secret = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{LabelManagedBy: ManagedBy, "kubelink.mandelsoft.org/link": cur.Name}},
			Type:       corev1.SecretTypeOpaque,
			Data: map[string][]byte{
				v1alpha1.APIAccessTokenKey: []byte(h.APIAccess.Token),
				v1alpha1.APIAccessCAKey:    h.APIAccess.CA,
			},
		}
		if old != nil {
			secret.ResourceVersion = old.ResourceVersion
			for k, v := range old.Labels {
				if _, ok := secret.Labels[k]; !ok {
					secret.Labels[k] = v
				}
			}
		}
	}
	var access *v1alpha1.KubeLinkAPIAccess
	if cur.Spec.APIAccess == nil {
		access = &v1alpha1.KubeLinkAPIAccess{Name: name, Namespace: namespace}
	}
	return secret, access
}

// inboundAPIAccess stores the API access a peer advertised in the Secret
// <link>-apiaccess of the broker's namespace and names it in the link's
// spec.apiAccess when that is unset. Writes happen only on change. The
// error is one worth retrying; a missing right or a Secret that is not
// netd's is logged and not retried.
func (b *broker) inboundAPIAccess(ctx context.Context, link string, h bridge.Hello, cur *v1alpha1.KubeLink) error {
	if cur == nil || h.APIAccess == nil {
		return nil
	}
	ns := b.cfg.Namespace
	secrets := b.clients.Core.CoreV1().Secrets(ns)
	old, err := secrets.Get(ctx, apiAccessSecretName(link), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		old = nil
	case err != nil:
		b.log.Error("API access advertisement: reading the Secret", "link", link, "secret", ns+"/"+apiAccessSecretName(link), "err", err)
		return err
	}
	if old != nil && old.Labels[LabelManagedBy] != ManagedBy {
		b.log.Error("API access advertisement: the Secret exists and is not netd's; left alone", "link", link, "secret", ns+"/"+old.Name)
		return nil
	}
	secret, access := apiAccessUpdate(cur, h, ns, old)
	if secret != nil {
		if old == nil {
			_, err = secrets.Create(ctx, secret, metav1.CreateOptions{FieldManager: ManagedBy})
		} else {
			_, err = secrets.Update(ctx, secret, metav1.UpdateOptions{FieldManager: ManagedBy})
		}
		if err != nil {
			if apierrors.IsForbidden(err) {
				b.log.Error("API access advertisement: the broker needs get, create and update on secrets in its namespace", "link", link, "err", err)
				return nil
			}
			b.log.Error("API access advertisement: writing the Secret", "link", link, "secret", ns+"/"+secret.Name, "err", err)
			return err
		}
		b.log.Info("API access advertisement: wrote the peer's token and CA", "link", link, "secret", ns+"/"+secret.Name)
	}
	if access != nil {
		if err := setAPIAccess(ctx, b.clients.Dynamic, link, access); err != nil {
			if apierrors.IsForbidden(err) {
				b.log.Error("API access advertisement: the broker needs patch on kubelinks", "link", link, "err", err)
				return nil
			}
			b.log.Error("API access advertisement: setting spec.apiAccess", "link", link, "err", err)
			return err
		}
		b.log.Info("set spec.apiAccess from the peer's hello", "link", link, "secret", access.Namespace+"/"+access.Name)
	}
	return nil
}

// setAPIAccess sets a KubeLink's spec.apiAccess unless it is set: the
// patch carries the resourceVersion of the link read unset, so a
// concurrent write of the user wins. Any write conflicts, the status
// writes of this broker too, so a conflict reads the link again: set by
// then, it is left alone.
func setAPIAccess(ctx context.Context, dyn dynamic.Interface, link string, access *v1alpha1.KubeLinkAPIAccess) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		u, err := dyn.Resource(kube.KubeLinks).Get(ctx, link, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("reading KubeLink %s: %w", link, err)
		}
		if _, found, _ := unstructured.NestedFieldNoCopy(u.Object, "spec", "apiAccess"); found {
			return nil
		}
		b, err := json.Marshal(map[string]any{"metadata": map[string]any{"resourceVersion": u.GetResourceVersion()},
			"spec": map[string]any{"apiAccess": access}})
		if err != nil {
			return fmt.Errorf("encoding spec.apiAccess of %s: %w", link, err)
		}
		if _, err := dyn.Resource(kube.KubeLinks).Patch(ctx, link, types.MergePatchType, b, metav1.PatchOptions{FieldManager: ManagedBy}); err != nil {
			return fmt.Errorf("writing spec.apiAccess of KubeLink %s: %w", link, err)
		}
		return nil
	})
}
