package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// There is no kubelet here: a pod is a process started with the container's
// command, args and environment as the apiserver has them, in the cluster's
// network namespace, with its volumes bind-mounted where the container
// expects them (in a mount namespace of its own, so nothing leaks).

// Pod is a container of an installed workload, ready to run.
type Pod struct {
	Name      string // pod name given to the downward API
	Container string
	Image     string
	Argv      []string // command + args, $(VAR) expanded
	Env       []string
	// Mounts maps container paths to host directories with the volume's
	// content.
	Mounts map[string]string
	// Ports are the container ports (used for the echo, which has no
	// process).
	Ports []int
}

// PodHost gives the downward API values of the simulated node.
type PodHost struct {
	NodeName string
	HostIP   string
	PodIP    string
	// Binary maps an image to the local binary that stands in for its
	// entrypoint.
	Binary func(image string) (string, error)
}

// templateOf reads the pod template of a Deployment or DaemonSet and, for a
// Deployment, its replicas.
func templateOf(ctx context.Context, c kubernetes.Interface, kind, namespace, name string) (*corev1.PodTemplateSpec, int, error) {
	switch kind {
	case "Deployment":
		d, err := c.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, 0, fmt.Errorf("reading deployment %s/%s: %w", namespace, name, err)
		}
		replicas := 1
		if d.Spec.Replicas != nil {
			replicas = int(*d.Spec.Replicas)
		}
		return &d.Spec.Template, replicas, nil
	case "DaemonSet":
		d, err := c.AppsV1().DaemonSets(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, 0, fmt.Errorf("reading daemonset %s/%s: %w", namespace, name, err)
		}
		return &d.Spec.Template, 0, nil
	}
	return nil, 0, fmt.Errorf("unsupported workload kind %s", kind)
}

// podsOf turns every container of a workload's pod template into a
// runnable process description. workdir holds the volumes; hostPath
// directories live below workdir/node-root (each simulated node has its
// own), device files stay the host's.
func podsOf(ctx context.Context, c kubernetes.Interface, host PodHost, restCA []byte, apiHost, apiPort, workdir, namespace, podName string, tmpl *corev1.PodTemplateSpec) ([]*Pod, error) {
	dir := filepath.Join(workdir, namespace+"-"+podName)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	volumes, err := materializeVolumes(ctx, c, namespace, tmpl.Spec, restCA, dir, filepath.Join(workdir, "node-root"))
	if err != nil {
		return nil, fmt.Errorf("pod %s/%s: %w", namespace, podName, err)
	}
	var out []*Pod
	for _, ctr := range tmpl.Spec.Containers {
		p := &Pod{Name: podName, Container: ctr.Name, Image: ctr.Image, Mounts: map[string]string{}}
		env := map[string]string{
			"KUBERNETES_SERVICE_HOST": apiHost,
			"KUBERNETES_SERVICE_PORT": apiPort,
			"HOSTNAME":                podName,
		}
		for _, e := range ctr.Env {
			v, err := envValue(ctx, c, namespace, podName, host, tmpl.Spec, e)
			if err != nil {
				return nil, fmt.Errorf("pod %s container %s env %s: %w", podName, ctr.Name, e.Name, err)
			}
			env[e.Name] = expand(v, env)
		}
		bin, err := host.Binary(ctr.Image)
		if err != nil {
			return nil, err
		}
		argv := []string{bin}
		if bin == "" {
			// Served by the test itself (the echo): no process.
			p.Argv, p.Env = argv, nil
			for _, cp := range ctr.Ports {
				p.Ports = append(p.Ports, int(cp.ContainerPort))
			}
			out = append(out, p)
			continue
		}
		if len(ctr.Command) > 0 {
			argv = []string{bin}
			for _, a := range ctr.Command[1:] {
				argv = append(argv, expand(a, env))
			}
		}
		for _, a := range ctr.Args {
			argv = append(argv, expand(a, env))
		}
		p.Argv = argv
		keys := make([]string, 0, len(env))
		for k := range env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p.Env = append(p.Env, k+"="+env[k])
		}
		if sa, ok := volumes["kube-api-access"]; ok {
			p.Mounts["kube-api-access"] = sa // mounted into every container
		}
		for _, m := range ctr.VolumeMounts {
			src, ok := volumes[m.Name]
			if !ok {
				continue // e.g. hostPath /dev/net/tun: the host's own
			}
			if m.SubPath != "" {
				src = filepath.Join(src, m.SubPath)
			}
			p.Mounts[m.MountPath] = src
		}
		out = append(out, p)
	}
	return out, nil
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expand replaces $(VAR) the way the kubelet does; unknown references stay.
func expand(s string, env map[string]string) string {
	return varRef.ReplaceAllStringFunc(s, func(m string) string {
		if v, ok := env[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
}

func envValue(ctx context.Context, c kubernetes.Interface, ns, podName string, host PodHost, spec corev1.PodSpec, e corev1.EnvVar) (string, error) {
	if e.ValueFrom == nil {
		return e.Value, nil
	}
	switch {
	case e.ValueFrom.FieldRef != nil:
		switch e.ValueFrom.FieldRef.FieldPath {
		case "metadata.name":
			return podName, nil
		case "metadata.namespace":
			return ns, nil
		case "spec.nodeName":
			return host.NodeName, nil
		case "status.hostIP":
			return host.HostIP, nil
		case "status.podIP":
			if spec.HostNetwork {
				return host.HostIP, nil
			}
			return host.PodIP, nil
		case "spec.serviceAccountName":
			return spec.ServiceAccountName, nil
		}
		return "", fmt.Errorf("unsupported fieldRef %s", e.ValueFrom.FieldRef.FieldPath)
	case e.ValueFrom.SecretKeyRef != nil:
		s, err := c.CoreV1().Secrets(ns).Get(ctx, e.ValueFrom.SecretKeyRef.Name, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		return string(s.Data[e.ValueFrom.SecretKeyRef.Key]), nil
	case e.ValueFrom.ConfigMapKeyRef != nil:
		cm, err := c.CoreV1().ConfigMaps(ns).Get(ctx, e.ValueFrom.ConfigMapKeyRef.Name, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		return cm.Data[e.ValueFrom.ConfigMapKeyRef.Key], nil
	case e.ValueFrom.ResourceFieldRef != nil:
		return "0", nil
	}
	return "", fmt.Errorf("unsupported valueFrom")
}

// materializeVolumes writes configMap, secret and projected (service account
// token) volumes into directories under dir; hostPath directories are
// directories under nodeRoot.
func materializeVolumes(ctx context.Context, c kubernetes.Interface, ns string, spec corev1.PodSpec, ca []byte, dir, nodeRoot string) (map[string]string, error) {
	out := map[string]string{}
	write := func(vol string, files map[string][]byte) (string, error) {
		d := filepath.Join(dir, "vol-"+vol)
		if err := os.MkdirAll(d, 0o700); err != nil {
			return "", err
		}
		for k, v := range files {
			if err := os.WriteFile(filepath.Join(d, k), v, 0o600); err != nil {
				return "", err
			}
		}
		return d, nil
	}
	// The service account token every pod gets (automountServiceAccountToken
	// unless disabled), issued through the TokenRequest API.
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		files, err := serviceAccountFiles(ctx, c, ns, spec.ServiceAccountName, ca)
		if err != nil {
			return nil, err
		}
		d, err := write("serviceaccount", files)
		if err != nil {
			return nil, err
		}
		out["kube-api-access"] = d
	}
	for _, v := range spec.Volumes {
		files := map[string][]byte{}
		switch {
		case v.ConfigMap != nil:
			cm, err := c.CoreV1().ConfigMaps(ns).Get(ctx, v.ConfigMap.Name, metav1.GetOptions{})
			if err != nil {
				if v.ConfigMap.Optional != nil && *v.ConfigMap.Optional {
					continue
				}
				return nil, fmt.Errorf("configmap volume %s: %w", v.Name, err)
			}
			for k, s := range cm.Data {
				files[k] = []byte(s)
			}
			files = selectItems(files, v.ConfigMap.Items)
		case v.Secret != nil:
			s, err := c.CoreV1().Secrets(ns).Get(ctx, v.Secret.SecretName, metav1.GetOptions{})
			if err != nil {
				if v.Secret.Optional != nil && *v.Secret.Optional {
					continue
				}
				return nil, fmt.Errorf("secret volume %s: %w", v.Name, err)
			}
			files = selectItems(s.Data, v.Secret.Items)
		case v.EmptyDir != nil:
		case v.Projected != nil:
			for _, src := range v.Projected.Sources {
				if src.ServiceAccountToken != nil {
					sa, err := serviceAccountFiles(ctx, c, ns, spec.ServiceAccountName, ca)
					if err != nil {
						return nil, err
					}
					files[src.ServiceAccountToken.Path] = sa["token"]
				}
			}
		case v.HostPath != nil:
			if !hostPathIsDirectory(v.HostPath) {
				continue // a device or socket: the host's own
			}
			// The node's own directory: several simulated nodes on one
			// host must not share state such as the router's datafile.
			d := filepath.Join(nodeRoot, filepath.Clean("/"+v.HostPath.Path))
			if err := os.MkdirAll(d, 0o700); err != nil {
				return nil, fmt.Errorf("hostPath volume %s: %w", v.Name, err)
			}
			out[v.Name] = d
			continue
		default:
			continue // not simulated
		}
		d, err := write(v.Name, files)
		if err != nil {
			return nil, err
		}
		out[v.Name] = d
	}
	return out, nil
}

// hostPathIsDirectory reports whether a hostPath volume is a directory
// (to be simulated per node) rather than a device, socket or file.
func hostPathIsDirectory(h *corev1.HostPathVolumeSource) bool {
	if h.Type != nil {
		switch *h.Type {
		case corev1.HostPathDirectory, corev1.HostPathDirectoryOrCreate:
			return true
		case corev1.HostPathUnset:
		default:
			return false
		}
	}
	return !strings.HasPrefix(h.Path, "/dev/")
}

func selectItems(files map[string][]byte, items []corev1.KeyToPath) map[string][]byte {
	if len(items) == 0 {
		return files
	}
	out := map[string][]byte{}
	for _, it := range items {
		if v, ok := files[it.Key]; ok {
			out[it.Path] = v
		}
	}
	return out
}

func serviceAccountFiles(ctx context.Context, c kubernetes.Interface, ns, sa string, ca []byte) (map[string][]byte, error) {
	if sa == "" {
		sa = "default"
	}
	exp := int64(24 * 3600)
	tr, err := c.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("token for service account %s/%s: %w", ns, sa, err)
	}
	return map[string][]byte{"token": []byte(tr.Status.Token), "ca.crt": ca, "namespace": []byte(ns)}, nil
}

// serviceAccountMountPath is where in-cluster clients look for credentials.
const serviceAccountMountPath = "/var/run/secrets/kubernetes.io/serviceaccount"

// mountPoints lists the container paths the pod mounts volumes on; they must
// exist before shellCommand runs.
func (p *Pod) mountPoints() []string {
	var out []string
	for k := range p.Mounts {
		if k == "kube-api-access" {
			k = serviceAccountMountPath
		}
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// shellCommand builds the command line that runs a pod: mounts in a private
// mount namespace (`ip netns exec` gives each process its own), then exec.
func (p *Pod) shellCommand() []string {
	var b strings.Builder
	b.WriteString("set -e; ")
	paths := make([]string, 0, len(p.Mounts)+1)
	mounts := map[string]string{}
	for k, v := range p.Mounts {
		mounts[k] = v
	}
	if sa, ok := mounts["kube-api-access"]; ok {
		delete(mounts, "kube-api-access")
		mounts[serviceAccountMountPath] = sa
	}
	for k := range mounts {
		paths = append(paths, k)
	}
	// A target above a source (an emptyDir on /tmp, say, while the volumes
	// live in a temporary directory) would hide later sources: mount those
	// targets last.
	shadows := func(target string) bool {
		for _, src := range mounts {
			if strings.HasPrefix(src, strings.TrimSuffix(target, "/")+"/") {
				return true
			}
		}
		return false
	}
	sort.Slice(paths, func(i, j int) bool {
		si, sj := shadows(paths[i]), shadows(paths[j])
		if si != sj {
			return !si
		}
		return paths[i] < paths[j]
	})
	// The binary may sit below a mount target too (a checkout under /tmp):
	// then it is opened before the mounts and run through its descriptor.
	bin := shellQuote(p.Argv[0])
	for _, dst := range paths {
		if strings.HasPrefix(p.Argv[0], strings.TrimSuffix(dst, "/")+"/") {
			fmt.Fprintf(&b, "exec 3<%s; ", bin)
			bin = "/proc/self/fd/3"
			break
		}
	}
	for _, dst := range paths {
		fmt.Fprintf(&b, "mount --bind %s %s; ", shellQuote(mounts[dst]), shellQuote(dst))
	}
	b.WriteString("exec " + bin)
	for _, a := range p.Argv[1:] {
		b.WriteString(" " + shellQuote(a))
	}
	return []string{"sh", "-c", b.String()}
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
