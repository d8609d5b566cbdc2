// Package remotecfg is `netd kubeconfig`: run against a remote cluster, it
// creates the read-only identity `netd sync` uses there (namespace,
// ServiceAccount, ClusterRole, ClusterRoleBinding, a token) and hands the
// credential over in the form the local cluster's objects take: a base64
// kubeconfig for ClusterLink spec.kubeconfig, a kubeconfig, a Secret for
// ClusterLink spec.kubeconfigSecretRef, or a Secret for KubeLink
// spec.apiAccess.
package remotecfg

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	svclinkv1alpha1 "github.com/kubelink/kubelink/api/svclink/v1alpha1"
	"github.com/kubelink/kubelink/api/v1alpha1"
)

// Output forms.
const (
	OutputBase64     = "base64"
	OutputKubeconfig = "kubeconfig"
	OutputSecret     = "secret"
	OutputAPIAccess  = "apiaccess"
)

// SecretKey is the key of the kubeconfig in the Secret of --output secret,
// ClusterLink spec.kubeconfigSecretRef's default key.
const SecretKey = "kubeconfig"

// ManagedBy labels every object this command writes, so an operator can
// find (and remove) them.
const ManagedBy = "netd-kubeconfig"

// Rules are exactly what `netd sync` reads in a remote cluster: nothing
// else, no secrets, no writes, so a leaked credential discloses only the
// service catalogue.
var Rules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"services", "namespaces"}, Verbs: readVerbs()},
	{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: readVerbs()},
	{APIGroups: []string{"multicluster.x-k8s.io"}, Resources: []string{"serviceexports"}, Verbs: readVerbs()},
	{APIGroups: []string{v1alpha1.GroupName}, Resources: []string{"meshservices"}, Verbs: readVerbs()},
}

func readVerbs() []string { return []string{"get", "list", "watch"} }

// Config is the command's flags.
type Config struct {
	Kubeconfig     string
	Context        string
	Server         string
	Namespace      string
	ServiceAccount string
	ClusterRole    string
	TokenDuration  time.Duration
	Wait           time.Duration
	Output         string
	Name           string

	SecretName      string
	SecretNamespace string
	LocalKubeconfig string
	LocalContext    string
	Apply           bool
}

// Flags registers the flags on fs.
func (c *Config) Flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "kubeconfig of the REMOTE cluster (default: $KUBECONFIG, then ~/.kube/config)")
	fs.StringVar(&c.Context, "context", "", "context of --kubeconfig (default: its current context)")
	fs.StringVar(&c.Server, "server", "", "API server URL written into the output, as the local cluster reaches the remote one (default: the server of --kubeconfig's context)")
	fs.StringVar(&c.Namespace, "namespace", "kubelink", "namespace of the ServiceAccount in the remote cluster (created if missing)")
	fs.StringVar(&c.ServiceAccount, "service-account", "kubelink-remote-reader", "ServiceAccount in the remote cluster; also the name of its ClusterRole and ClusterRoleBinding unless --cluster-role is set")
	fs.StringVar(&c.ClusterRole, "cluster-role", "", "name of the ClusterRole and ClusterRoleBinding (default: --service-account)")
	fs.DurationVar(&c.TokenDuration, "token-duration", 0, "issue a token with this lifetime through the TokenRequest API instead of a long-lived ServiceAccount token Secret. "+
		"The default (0) is the Secret: ClusterLink and apiAccess store a static token that nothing refreshes, so a bounded token would break the link silently when it expires; "+
		"the Secret's token lives until the Secret is deleted, which revokes it. Use a duration (e.g. 720h) where policy forbids non-expiring tokens and rerun before it expires")
	fs.DurationVar(&c.Wait, "wait", time.Minute, "how long to wait for the token controller to fill the token Secret")
	fs.StringVar(&c.Output, "output", OutputBase64, "base64: the kubeconfig base64-encoded on one line (ClusterLink spec.kubeconfig); kubeconfig: the kubeconfig YAML; "+
		"secret: a Secret with key kubeconfig in the LOCAL cluster (ClusterLink spec.kubeconfigSecretRef); apiaccess: a Secret with keys token and certificate-authority-data in the LOCAL cluster (KubeLink spec.apiAccess)")
	fs.StringVar(&c.Name, "name", "kubelink-remote", "cluster, user and context name inside the generated kubeconfig")
	fs.StringVar(&c.SecretName, "secret-name", "", "secret, apiaccess: name of the Secret in the local cluster (required)")
	fs.StringVar(&c.SecretNamespace, "secret-namespace", "", "secret, apiaccess: namespace of the Secret in the local cluster (required; for secret the ClusterLink's namespace)")
	fs.StringVar(&c.LocalKubeconfig, "local-kubeconfig", "", "secret, apiaccess: kubeconfig of the LOCAL cluster (default: $KUBECONFIG, then ~/.kube/config)")
	fs.StringVar(&c.LocalContext, "local-context", "", "secret, apiaccess: context of --local-kubeconfig (default: its current context)")
	fs.BoolVar(&c.Apply, "apply", true, "secret, apiaccess: write the Secret into the local cluster; false prints it as a manifest instead")
}

// Validate checks the flags before anything is written.
func (c *Config) Validate() error {
	switch c.Output {
	case OutputBase64, OutputKubeconfig:
	case OutputSecret, OutputAPIAccess:
		if c.SecretName == "" || c.SecretNamespace == "" {
			return fmt.Errorf("--output %s needs --secret-name and --secret-namespace", c.Output)
		}
	default:
		return fmt.Errorf("--output %q: want base64, kubeconfig, secret or apiaccess", c.Output)
	}
	if c.Namespace == "" || c.ServiceAccount == "" {
		return errors.New("--namespace and --service-account must not be empty")
	}
	if c.TokenDuration < 0 || (c.TokenDuration > 0 && c.TokenDuration < 10*time.Minute) {
		return fmt.Errorf("--token-duration %s: 0 (a token Secret) or at least 10m (the TokenRequest API's minimum)", c.TokenDuration)
	}
	return nil
}

func (c *Config) roleName() string {
	if c.ClusterRole != "" {
		return c.ClusterRole
	}
	return c.ServiceAccount
}

// TokenSecretName is the ServiceAccount token Secret's name.
func (c *Config) TokenSecretName() string { return c.ServiceAccount + "-token" }

// Credential is what the remote cluster handed out.
type Credential struct {
	Server string
	CA     []byte // PEM
	Token  string
}

// Run creates or updates the remote identity and writes the output to
// stdout; progress (never the token) goes to stderr.
func Run(ctx context.Context, c *Config, stdout, stderr io.Writer) error {
	if err := c.Validate(); err != nil {
		return err
	}
	remote, err := loadConfig(c.Kubeconfig, c.Context)
	if err != nil {
		return fmt.Errorf("remote cluster: %w", err)
	}
	cs, err := kubernetes.NewForConfig(withAgent(remote))
	if err != nil {
		return fmt.Errorf("remote cluster %s: %w", remote.Host, err)
	}
	cred, err := Ensure(ctx, c, cs, remote, stderr)
	if err != nil {
		return err
	}
	kc := Kubeconfig(c.Name, cred)
	switch c.Output {
	case OutputBase64:
		_, err = fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(kc))
		return err
	case OutputKubeconfig:
		_, err = stdout.Write(kc)
		return err
	case OutputSecret:
		s := secret(c, map[string][]byte{SecretKey: kc})
		if err := writeLocal(ctx, c, s, stdout, stderr); err != nil {
			return err
		}
		return printSnippet(stdout, clusterLinkSnippet(c))
	case OutputAPIAccess:
		s := secret(c, map[string][]byte{v1alpha1.APIAccessTokenKey: []byte(cred.Token), v1alpha1.APIAccessCAKey: cred.CA})
		if err := writeLocal(ctx, c, s, stdout, stderr); err != nil {
			return err
		}
		return printSnippet(stdout, apiAccessSnippet(c))
	}
	return nil
}

func withAgent(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "netd-kubeconfig"
	return cfg
}

// loadConfig resolves a kubeconfig as kubectl does: the explicit path, else
// $KUBECONFIG, else ~/.kube/config.
func loadConfig(path, kubeContext string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = path
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: kubeContext}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %q (context %q): %w", path, kubeContext, err)
	}
	return cfg, nil
}

// Ensure creates or updates the namespace, ServiceAccount, ClusterRole,
// ClusterRoleBinding and token in the remote cluster cs (reached through
// remote) and returns the credential.
func Ensure(ctx context.Context, c *Config, cs kubernetes.Interface, remote *rest.Config, stderr io.Writer) (*Credential, error) {
	labels := map[string]string{"app.kubernetes.io/managed-by": ManagedBy}
	report := func(what, verdict string) { fmt.Fprintf(stderr, "%s: %s\n", what, verdict) }

	what := "Namespace " + c.Namespace
	v, err := ensure(ctx, cs.CoreV1().Namespaces(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: c.Namespace}},
		// An existing namespace is used as it is: it may hold other things.
		func(have, want *corev1.Namespace) bool { return false })
	if err != nil {
		return nil, remoteErr("creating", what, err)
	}
	report(what, v)

	what = "ServiceAccount " + c.Namespace + "/" + c.ServiceAccount
	v, err = ensure(ctx, cs.CoreV1().ServiceAccounts(c.Namespace), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: c.ServiceAccount, Namespace: c.Namespace, Labels: labels}},
		func(have, want *corev1.ServiceAccount) bool { return mergeLabels(&have.ObjectMeta, want.Labels) })
	if err != nil {
		return nil, remoteErr("creating", what, err)
	}
	report(what, v)

	what = "ClusterRole " + c.roleName()
	v, err = ensure(ctx, cs.RbacV1().ClusterRoles(), &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: c.roleName(), Labels: labels}, Rules: Rules},
		func(have, want *rbacv1.ClusterRole) bool {
			changed := mergeLabels(&have.ObjectMeta, want.Labels)
			// The rules are replaced, not merged: anything beyond what
			// netd sync reads must not survive a rerun.
			if !reflect.DeepEqual(have.Rules, want.Rules) || have.AggregationRule != nil {
				have.Rules, have.AggregationRule, changed = want.Rules, nil, true
			}
			return changed
		})
	if err != nil {
		return nil, remoteErr("creating", what, err)
	}
	report(what, v)

	what = "ClusterRoleBinding " + c.roleName()
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: c.roleName(), Labels: labels},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: c.roleName()},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: c.ServiceAccount, Namespace: c.Namespace}},
	}
	if have, err := cs.RbacV1().ClusterRoleBindings().Get(ctx, binding.Name, metav1.GetOptions{}); err == nil && have.RoleRef != binding.RoleRef {
		// roleRef is immutable: a binding to another role is replaced.
		if err := cs.RbacV1().ClusterRoleBindings().Delete(ctx, binding.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return nil, remoteErr("replacing", what, err)
		}
	}
	v, err = ensure(ctx, cs.RbacV1().ClusterRoleBindings(), binding,
		func(have, want *rbacv1.ClusterRoleBinding) bool {
			changed := mergeLabels(&have.ObjectMeta, want.Labels)
			if !reflect.DeepEqual(have.Subjects, want.Subjects) {
				have.Subjects, changed = want.Subjects, true
			}
			return changed
		})
	if err != nil {
		return nil, remoteErr("creating", what, err)
	}
	report(what, v)

	cred := &Credential{Server: remote.Host, CA: remote.CAData}
	if c.Server != "" {
		cred.Server = c.Server
	}
	if len(cred.CA) == 0 && remote.CAFile != "" {
		if cred.CA, err = os.ReadFile(remote.CAFile); err != nil {
			return nil, fmt.Errorf("reading the remote cluster's CA: %w", err)
		}
	}
	if c.TokenDuration > 0 {
		token, err := requestToken(ctx, c, cs)
		if err != nil {
			return nil, err
		}
		cred.Token = token
		report("token", fmt.Sprintf("issued by the TokenRequest API, expires in %s", c.TokenDuration))
	} else {
		token, ca, v, err := secretToken(ctx, c, cs, labels)
		if err != nil {
			return nil, err
		}
		cred.Token = token
		if len(cred.CA) == 0 {
			// The kubeconfig trusts the system roots or skips
			// verification: the cluster's own CA is what a client
			// elsewhere needs.
			cred.CA = ca
		}
		report("Secret "+c.Namespace+"/"+c.TokenSecretName(), v)
	}
	if len(cred.CA) == 0 {
		return nil, fmt.Errorf("remote cluster %s: no CA certificate in the kubeconfig nor the token Secret", cred.Server)
	}
	return cred, nil
}

func remoteErr(verb, what string, err error) error {
	return fmt.Errorf("%s %s in the remote cluster: %w", verb, what, err)
}

// api is the part of a typed client ensure needs.
type api[T any] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
}

type object interface {
	comparable
	GetName() string
}

// ensure creates want, or updates the existing object when fix changes it
// (fix edits have towards want and reports whether it did), so a rerun
// that finds everything in place writes nothing.
func ensure[T object](ctx context.Context, c api[T], want T, fix func(have, want T) bool) (string, error) {
	have, err := c.Get(ctx, want.GetName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		if _, err := c.Create(ctx, want, metav1.CreateOptions{}); err != nil {
			return "", err
		}
		return "created", nil
	}
	if err != nil {
		return "", err
	}
	if !fix(have, want) {
		return "unchanged", nil
	}
	if _, err := c.Update(ctx, have, metav1.UpdateOptions{}); err != nil {
		return "", err
	}
	return "updated", nil
}

func mergeLabels(m *metav1.ObjectMeta, labels map[string]string) bool {
	changed := false
	for k, v := range labels {
		if m.Labels[k] != v {
			if m.Labels == nil {
				m.Labels = map[string]string{}
			}
			m.Labels[k], changed = v, true
		}
	}
	return changed
}

func requestToken(ctx context.Context, c *Config, cs kubernetes.Interface) (string, error) {
	secs := int64(c.TokenDuration / time.Second)
	tr, err := cs.CoreV1().ServiceAccounts(c.Namespace).CreateToken(ctx, c.ServiceAccount,
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		return "", remoteErr("requesting a token for", "ServiceAccount "+c.Namespace+"/"+c.ServiceAccount, err)
	}
	if tr.Status.Token == "" {
		return "", fmt.Errorf("the remote cluster returned an empty token for ServiceAccount %s/%s", c.Namespace, c.ServiceAccount)
	}
	return tr.Status.Token, nil
}

// secretToken ensures the ServiceAccount token Secret and waits until the
// token controller has filled it.
func secretToken(ctx context.Context, c *Config, cs kubernetes.Interface, labels map[string]string) (token string, ca []byte, verdict string, err error) {
	name := c.TokenSecretName()
	what := "Secret " + c.Namespace + "/" + name
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.Namespace, Labels: labels,
			Annotations: map[string]string{corev1.ServiceAccountNameKey: c.ServiceAccount}},
		Type: corev1.SecretTypeServiceAccountToken,
	}
	var foreign error
	verdict, err = ensure(ctx, cs.CoreV1().Secrets(c.Namespace), s, func(have, want *corev1.Secret) bool {
		if have.Type != corev1.SecretTypeServiceAccountToken || have.Annotations[corev1.ServiceAccountNameKey] != c.ServiceAccount {
			// Someone else's Secret under this name: refuse rather than
			// hand out a token of another identity.
			foreign = fmt.Errorf("%s exists and is not a token Secret of ServiceAccount %s (type %s)", what, c.ServiceAccount, have.Type)
			return false
		}
		return mergeLabels(&have.ObjectMeta, want.Labels)
	})
	if err == nil {
		err = foreign
	}
	if err != nil {
		return "", nil, "", remoteErr("creating", what, err)
	}
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, c.Wait, true, func(ctx context.Context) (bool, error) {
		got, err := cs.CoreV1().Secrets(c.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		token, ca = string(got.Data[corev1.ServiceAccountTokenKey]), got.Data[corev1.ServiceAccountRootCAKey]
		return token != "", nil
	})
	if err != nil {
		return "", nil, "", fmt.Errorf("waiting for the token controller to fill %s in the remote cluster (is kube-controller-manager running?): %w", what, err)
	}
	return token, ca, verdict, nil
}

// Kubeconfig is a kubeconfig holding only cred, named name.
func Kubeconfig(name string, cred *Credential) []byte {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: cred.Server, CertificateAuthorityData: cred.CA}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: cred.Token}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	cfg.CurrentContext = name
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		// Serialising a config built here cannot fail.
		panic(err)
	}
	return b
}

func secret(c *Config, data map[string][]byte) *corev1.Secret {
	return &corev1.Secret{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: c.SecretName, Namespace: c.SecretNamespace,
			Labels: map[string]string{"app.kubernetes.io/managed-by": ManagedBy}},
		Type: corev1.SecretTypeOpaque,
		Data: data,
	}
}

// writeLocal writes s into the local cluster (create or update; unchanged
// data is not written), or prints it when --apply=false.
func writeLocal(ctx context.Context, c *Config, s *corev1.Secret, stdout, stderr io.Writer) error {
	if !c.Apply {
		b, err := yaml.Marshal(s)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s---\n", b)
		return err
	}
	local, err := loadConfig(c.LocalKubeconfig, c.LocalContext)
	if err != nil {
		return fmt.Errorf("local cluster: %w", err)
	}
	cs, err := kubernetes.NewForConfig(withAgent(local))
	if err != nil {
		return fmt.Errorf("local cluster %s: %w", local.Host, err)
	}
	what := "Secret " + s.Namespace + "/" + s.Name
	v, err := ensure(ctx, cs.CoreV1().Secrets(s.Namespace), s, func(have, want *corev1.Secret) bool {
		changed := mergeLabels(&have.ObjectMeta, want.Labels)
		if !reflect.DeepEqual(have.Data, want.Data) {
			// The Secret holds exactly these keys: stale ones (e.g. of
			// the other output form) would confuse its reader.
			have.Data, have.StringData, changed = want.Data, nil, true
		}
		return changed
	})
	if err != nil {
		return fmt.Errorf("writing %s in the local cluster %s: %w", what, local.Host, err)
	}
	fmt.Fprintf(stderr, "%s (local cluster): %s\n", what, v)
	return nil
}

func clusterLinkSnippet(c *Config) any {
	return map[string]any{
		"apiVersion": svclinkv1alpha1.SchemeGroupVersion.String(),
		"kind":       "ClusterLink",
		"metadata":   map[string]any{"name": c.SecretName, "namespace": c.SecretNamespace},
		"spec":       map[string]any{"kubeconfigSecretRef": map[string]any{"name": c.SecretName, "key": SecretKey}},
	}
}

func apiAccessSnippet(c *Config) any {
	access := map[string]any{"name": c.SecretName, "namespace": c.SecretNamespace}
	if c.Server != "" {
		// Without it netd reaches the linked cluster's API through the
		// mesh (first address of its spec.cidr).
		access["server"] = c.Server
	}
	return map[string]any{"kind": "KubeLink", "spec": map[string]any{"apiAccess": access}}
}

func printSnippet(w io.Writer, snippet any) error {
	b, err := yaml.Marshal(snippet)
	if err != nil {
		return err
	}
	// Commented out, so that stdout of --apply=false can be piped into
	// kubectl apply as it is.
	out := "# use it with:\n"
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		out += "#   " + l + "\n"
	}
	_, err = io.WriteString(w, out)
	return err
}
