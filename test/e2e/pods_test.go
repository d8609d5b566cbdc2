package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelink/kubelink/test/testenv"
)

func TestExpand(t *testing.T) {
	env := map[string]string{"NODE_IP": "10.0.0.1", "A": "x"}
	for in, want := range map[string]string{
		"--node-ip=$(NODE_IP)": "--node-ip=10.0.0.1",
		"$(A)$(A)-$(MISSING)":  "xx-$(MISSING)",
		"plain":                "plain",
	} {
		if got := expand(in, env); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestPodsOf reads a Deployment from a real apiserver and turns it into a
// runnable process description.
func TestPodsOf(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real apiserver")
	}
	env := testenv.Start(t, testenv.Options{})
	ctx := context.Background()
	c := env.Client()
	if _, _, err := env.ServiceAccountConfig(ctx, "kubelink", "dns"); err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "corefile", Namespace: "kubelink"}, Data: map[string]string{"Corefile": ".:53 { whoami }"}}
	if _, err := c.CoreV1().ConfigMaps("kubelink").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "dns"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "dns", Namespace: "kubelink"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					ServiceAccountName: "dns",
					Containers: []corev1.Container{{
						Name: "coredns", Image: "kubelink/coredns:v1",
						Args: []string{"-conf", "/etc/coredns/Corefile", "--ip=$(NODE_IP)"},
						Env: []corev1.EnvVar{
							{Name: "NODE_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.hostIP"}}},
							{Name: "NS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
						},
						VolumeMounts: []corev1.VolumeMount{{Name: "config", MountPath: "/etc/coredns"}, {Name: "data", MountPath: "/var/lib/kubelink"}, {Name: "tun", MountPath: "/dev/net/tun"}},
					}},
					Volumes: []corev1.Volume{
						{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "corefile"}}}},
						{Name: "data", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/lib/kubelink", Type: ptr(corev1.HostPathDirectoryOrCreate)}}},
						{Name: "tun", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/dev/net/tun", Type: ptr(corev1.HostPathCharDev)}}},
					},
				},
			},
		},
	}
	if _, err := c.AppsV1().Deployments("kubelink").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	host := PodHost{NodeName: "node1", HostIP: "10.250.0.5", Binary: func(image string) (string, error) { return "/bin/coredns-" + strings.SplitN(image, ":", 2)[0][9:], nil }}
	tmpl, _, err := templateOf(ctx, c, "Deployment", "kubelink", "dns")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	pods, err := podsOf(ctx, c, host, []byte("CA"), "127.0.0.1", "6443", work, "kubelink", "dns-0", tmpl)
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != 1 {
		t.Fatalf("%d pods", len(pods))
	}
	p := pods[0]
	if strings.Join(p.Argv, " ") != "/bin/coredns-coredns -conf /etc/coredns/Corefile --ip=10.250.0.5" {
		t.Fatalf("argv %q", p.Argv)
	}
	envs := strings.Join(p.Env, " ")
	for _, want := range []string{"NODE_IP=10.250.0.5", "NS=kubelink", "KUBERNETES_SERVICE_HOST=127.0.0.1", "KUBERNETES_SERVICE_PORT=6443"} {
		if !strings.Contains(envs, want) {
			t.Fatalf("env %q lacks %s", envs, want)
		}
	}
	corefile, err := os.ReadFile(filepath.Join(p.Mounts["/etc/coredns"], "Corefile"))
	if err != nil || string(corefile) != ".:53 { whoami }" {
		t.Fatalf("corefile volume: %q %v", corefile, err)
	}
	token, err := os.ReadFile(filepath.Join(p.Mounts["kube-api-access"], "token"))
	if err != nil || len(token) < 100 {
		t.Fatalf("service account token: %v", err)
	}
	// A hostPath directory is the simulated node's own; a device is the host's.
	if got := p.Mounts["/var/lib/kubelink"]; got != filepath.Join(work, "node-root", "var", "lib", "kubelink") {
		t.Fatalf("hostPath directory mounted from %q", got)
	}
	if mp := p.mountPoints(); strings.Join(mp, ",") != "/etc/coredns,/var/lib/kubelink,"+serviceAccountMountPath {
		t.Fatalf("mount points %v", mp)
	}
	cmd := p.shellCommand()
	if cmd[0] != "sh" || !strings.Contains(cmd[2], "mount --bind") || !strings.HasSuffix(cmd[2], "exec '/bin/coredns-coredns' '-conf' '/etc/coredns/Corefile' '--ip=10.250.0.5'") {
		t.Fatalf("shell command %q", cmd)
	}
}

// A binary below a mount target (a checkout under /tmp, an emptyDir on
// /tmp) is opened before the mounts and run through its descriptor.
func TestShellCommandShadowedBinary(t *testing.T) {
	p := &Pod{Argv: []string{"/tmp/ci/bin/netd", "broker"}, Mounts: map[string]string{"/tmp": "/tmp/work/vol-tmp", "/etc/x": "/tmp/work/vol-x"}}
	cmd := p.shellCommand()[2]
	want := "set -e; exec 3<'/tmp/ci/bin/netd'; mount --bind '/tmp/work/vol-x' '/etc/x'; mount --bind '/tmp/work/vol-tmp' '/tmp'; exec /proc/self/fd/3 'broker'"
	if cmd != want {
		t.Fatalf("shell command\n%s\nwant\n%s", cmd, want)
	}
}

func ptr[T any](v T) *T { return &v }
