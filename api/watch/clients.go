// Package watch is kubelink's one way to read the cluster, shared by the
// CoreDNS plugin and every netd role: client configuration (local
// kubeconfig with context, in-cluster, or a remote cluster from kubeconfig
// bytes or a token), informers for the kinds a consumer declares it needs
// (Needs), feeding one coalesced "changed" signal and typed, deep-copied
// views and snapshots (Cache), and Sources that hand complete snapshots to
// a callback — from the API (Kube) or from a directory of manifests (Dir).
package watch

import (
	"fmt"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Clients bundles the clients of one cluster.
type Clients struct {
	Config  *rest.Config
	Core    kubernetes.Interface
	Dynamic dynamic.Interface
}

// LocalConfig is the configuration of the cluster the process runs in or
// is pointed at: the kubeconfig file at path (its context kubeContext, ""
// = the current one), or the in-cluster configuration when path is empty.
func LocalConfig(path, kubeContext string) (*rest.Config, error) {
	if path == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster config: %w", err)
		}
		return cfg, nil
	}
	rules := &clientcmd.ClientConfigLoadingRules{ExplicitPath: path}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: kubeContext}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %s: %w", path, err)
	}
	return cfg, nil
}

// RemoteConfig is the configuration of another cluster from the bytes of
// a kubeconfig (e.g. a Secret's), in its context kubeContext ("" = the
// current one).
func RemoteConfig(kubeconfig []byte, kubeContext string) (*rest.Config, error) {
	raw, err := clientcmd.Load(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("parsing the remote kubeconfig: %w", err)
	}
	cfg, err := clientcmd.NewNonInteractiveClientConfig(*raw, kubeContext, &clientcmd.ConfigOverrides{}, nil).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("remote kubeconfig: %w", err)
	}
	return cfg, nil
}

// TokenConfig is the configuration of another cluster from its API server
// URL, a bearer token and the CA bundle (PEM) that signed the server's
// certificate (e.g. a ServiceAccount token Secret's token and ca.crt).
func TokenConfig(server, token string, caPEM []byte) (*rest.Config, error) {
	if server == "" || token == "" {
		return nil, fmt.Errorf("remote cluster: server and token are required")
	}
	if len(caPEM) == 0 {
		return nil, fmt.Errorf("remote cluster %s: no CA certificate (ca.crt)", server)
	}
	return &rest.Config{Host: server, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAData: caPEM}}, nil
}

// NewClients builds the clients of cfg, identified as userAgent.
func NewClients(cfg *rest.Config, userAgent string) (*Clients, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = userAgent
	core, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating client for %s: %w", cfg.Host, err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating dynamic client for %s: %w", cfg.Host, err)
	}
	return &Clients{Config: cfg, Core: core, Dynamic: dyn}, nil
}
