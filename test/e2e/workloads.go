package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/test/netns"
)

// echoRepository is the image of the echo workload. Its pods are real pods
// (own network namespace, address, Pod object, endpoints), but the test
// serves them in-process: an HTTP server in the pod's namespace that names
// its cluster, pod and node and the caller's address.
const echoRepository = "kubelink-e2e/echo"

// clusterDNSCorefile is the cluster DNS's Corefile: the usual kubeadm
// server block plus the import of coredns-custom server blocks, as AKS's
// CoreDNS has it; the chart's cluster-DNS integration
// (dns.clusterDNSIntegration) writes the mesh domain's block there.
const clusterDNSCorefile = `.:53 {
    errors
    health :8080
    ready :8181
    kubernetes %s in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    cache 5
}
import /etc/coredns-custom/*.server
`

// CreateClusterDNS creates the cluster DNS as kubeadm does: the coredns
// ServiceAccount with its ClusterRole, the Corefile ConfigMap, the
// Deployment (CoreDNS with `kubernetes`, the coredns-custom ConfigMap
// mounted) and the kube-dns Service on the 10th address of the service
// CIDR. Call before the chart takes addresses; StartWorkload runs it.
func (c *Cluster) CreateClusterDNS() {
	c.m.t.Helper()
	ctx := context.Background()
	ns := "kube-system"
	labels := map[string]string{"k8s-app": "kube-dns"}
	must := func(_ any, err error) {
		c.m.t.Helper()
		if err != nil && !apierrors.IsAlreadyExists(err) {
			c.m.t.Fatalf("%s: cluster DNS: %v", c.Name, err)
		}
	}
	must(c.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "coredns"}}, metav1.CreateOptions{}))
	must(c.Client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "system:coredns"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"endpoints", "services", "pods", "namespaces"}, Verbs: []string{"list", "watch"}},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
		}}, metav1.CreateOptions{}))
	must(c.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "system:coredns"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:coredns"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "coredns", Namespace: ns}}}, metav1.CreateOptions{}))
	must(c.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "coredns"},
		Data: map[string]string{"Corefile": fmt.Sprintf(clusterDNSCorefile, v1alpha1.DefaultClusterDomain)}}, metav1.CreateOptions{}))
	optional := true
	must(c.Client.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "coredns", Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptrTo(int32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					ServiceAccountName: "coredns",
					DNSPolicy:          corev1.DNSDefault,
					Containers: []corev1.Container{{
						Name: "coredns", Image: "coredns/coredns:1.15.0", Args: []string{"-conf", "/etc/coredns/Corefile"},
						Ports: []corev1.ContainerPort{{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
							{Name: "dns-tcp", ContainerPort: 53, Protocol: corev1.ProtocolTCP}},
						VolumeMounts: []corev1.VolumeMount{{Name: "config-volume", MountPath: "/etc/coredns"},
							{Name: "custom-config-volume", MountPath: "/etc/coredns-custom"}},
					}},
					Volumes: []corev1.Volume{
						{Name: "config-volume", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
							LocalObjectReference: corev1.LocalObjectReference{Name: "coredns"}}}},
						{Name: "custom-config-volume", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
							LocalObjectReference: corev1.LocalObjectReference{Name: "coredns-custom"}, Optional: &optional}}},
					},
				},
			},
		},
	}, metav1.CreateOptions{}))
	must(c.Client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-dns", Labels: labels},
		Spec: corev1.ServiceSpec{ClusterIP: c.ClusterDNSIP(), Selector: labels, Ports: []corev1.ServicePort{
			{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromString("dns")},
			{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("dns-tcp")},
		}},
	}, metav1.CreateOptions{}))
	for _, n := range c.Nodes {
		c.writeResolv(n.NS, "") // ClusterFirstWithHostNet pods on the nodes
	}
}

// DeployEcho creates the echo workload: a Deployment of replicas pods
// (they land on the workers) and its ClusterIP Service (port 80 to the
// pods' named port http; clusterIP "" lets the apiserver choose). It
// returns the ClusterIP; StartWorkload runs the pods.
func (c *Cluster) DeployEcho(namespace, name, clusterIP string, replicas int32) string {
	c.m.t.Helper()
	ctx := context.Background()
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		c.m.t.Fatal(err)
	}
	labels := map[string]string{"app": name}
	if _, err := c.Client.AppsV1().Deployments(namespace).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptrTo(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "echo", Image: echoRepository + ":1",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}},
			},
		},
	}, metav1.CreateOptions{}); err != nil {
		c.m.t.Fatal(err)
	}
	svc, err := c.Client.CoreV1().Services(namespace).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: corev1.ServiceSpec{ClusterIP: clusterIP, Selector: labels,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
	}, metav1.CreateOptions{})
	if err != nil {
		c.m.t.Fatal(err)
	}
	return svc.Spec.ClusterIP
}

// serveEcho serves an echo pod's container port inside the pod's network
// namespace.
func (c *Cluster) serveEcho(pi *podInfo, p *Pod) {
	c.m.t.Helper()
	for _, port := range p.Ports {
		ln, err := netns.Listen(pi.ns, "tcp", net.JoinHostPort(pi.ip, fmt.Sprint(port)))
		if err != nil {
			c.m.t.Fatalf("echo pod %s: %v", pi.name, err)
		}
		srv := &http.Server{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, "echo from %s, you are %s, pod %s on %s\n", c.Name, r.RemoteAddr, pi.name, pi.node.Name)
			}),
			ReadHeaderTimeout: 5 * time.Second,
		}
		go func() { _ = srv.Serve(ln) }()
		stop := func() { _ = srv.Close() }
		c.m.mu.Lock()
		c.m.servers = append(c.m.servers, stop)
		c.m.mu.Unlock()
		c.mu.Lock()
		pi.servers = append(pi.servers, stop)
		c.mu.Unlock()
	}
}

// ScaleDeployment is `kubectl scale deployment NAME --replicas=N` plus what
// the ReplicaSet controller and the kubelets do about it. To 0: the pods'
// processes end (SIGTERM), what the test serves for them closes, and their
// Pod objects go (so the EndpointSlice controller drops their endpoints).
// Back to the replicas the workload was started with: StartWorkload runs
// the same pods again (names, nodes, addresses).
func (c *Cluster) ScaleDeployment(namespace, name string, replicas int32) {
	c.m.t.Helper()
	ctx := context.Background()
	patch := []byte(fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas))
	if _, err := c.Client.AppsV1().Deployments(namespace).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		c.m.t.Fatalf("%s: scaling deployment %s/%s to %d: %v", c.Name, namespace, name, replicas, err)
	}
	c.mu.Lock()
	pis := append([]*podInfo(nil), c.pods[name]...)
	c.mu.Unlock()
	if replicas > 0 {
		if len(pis) != int(replicas) {
			c.m.t.Fatalf("%s: deployment %s/%s: scaling to %d replicas, it was started with %d (only 0 and back are simulated)", c.Name, namespace, name, replicas, len(pis))
		}
		c.StartWorkload("Deployment", namespace, name)
		return
	}
	c.StopWorkload(name, syscall.SIGTERM)
	zero := int64(0)
	for _, pi := range pis {
		c.mu.Lock()
		servers := pi.servers
		pi.servers = nil
		c.mu.Unlock()
		for _, stop := range servers {
			stop()
		}
		err := c.Client.CoreV1().Pods(namespace).Delete(ctx, pi.name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		if err != nil && !apierrors.IsNotFound(err) {
			c.m.t.Fatalf("%s: deleting pod %s/%s: %v", c.Name, namespace, pi.name, err)
		}
	}
}

// RunPod is `kubectl run NAME --image=busybox` on a worker: a Pod object
// placed on the first worker with a network namespace, an address and the
// ClusterFirst resolv.conf of its namespace. ExecPod runs commands in it.
func (c *Cluster) RunPod(namespace, name string) {
	c.m.t.Helper()
	ctx := context.Background()
	tmpl := &corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"run": name}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: "busybox", Command: []string{"sleep", "infinity"}}}}}
	n := c.Worker()
	pi := &podInfo{name: name, node: n, tmpl: tmpl}
	pi.ns, pi.ip = c.podNetwork(n, name, namespace)
	if err := c.recordPod(ctx, namespace, pi); err != nil {
		c.m.t.Fatal(err)
	}
	c.mu.Lock()
	c.pods[name] = []*podInfo{pi}
	c.mu.Unlock()
}

func ptrTo[T any](v T) *T { return &v }
