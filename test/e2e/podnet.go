package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The pod network of a simulated node, where a CNI plugin would do the
// work: every pod without hostNetwork gets a network namespace joined to
// its node by a veth pair, an address (/32) from the node's pod range (.2,
// .3, ...) and a default route via the node (.1 on every node-side veth,
// a /32 route per pod); nodes route each other's pod ranges over the node
// network (AddCluster). The gateway node masquerades pod traffic to the
// internet and DNATs exposed Services from its public address to the pod
// (a cloud load balancer's part). That nat table is `ip e2e-node`, apart
// from kube-proxy's and netd's tables. ClusterIPs are kube-proxy's.

// podNetwork creates the network namespace of a pod on node n and returns
// it with the pod's address; its resolv.conf is the one the kubelet
// writes for a ClusterFirst pod of namespace.
func (c *Cluster) podNetwork(n *Node, podName, namespace string) (ns, ip string) {
	c.m.t.Helper()
	c.mu.Lock()
	i := n.podNets
	n.podNets++
	c.mu.Unlock()
	gw := n.PodCIDR.Addr().Next()
	addr := gw
	for j := 0; j <= i; j++ {
		addr = addr.Next()
	}
	if !n.PodCIDR.Contains(addr) {
		c.m.t.Fatalf("%s: pod range %s of node %s is full", c.Name, n.PodCIDR, n.Name)
	}
	ns = c.m.Lab.NS(c.Name + "-" + podName)
	hostIf := fmt.Sprintf("pod%d", i)
	// A /32 in the pod and everything via the node, so that pods never
	// expect each other on a shared link (the node does not answer ARP for
	// them).
	c.m.Lab.Veth(ns, "eth0", addr.String()+"/32", n.NS, hostIf, "")
	c.m.Lab.Run("ip", "-n", n.NS, "addr", "add", gw.String()+"/32", "dev", hostIf)
	c.m.Lab.Run("ip", "-n", n.NS, "route", "add", addr.String()+"/32", "dev", hostIf)
	c.m.Lab.Run("ip", "-n", ns, "route", "add", gw.String()+"/32", "dev", "eth0", "scope", "link")
	c.m.Lab.Run("ip", "-n", ns, "route", "add", "default", "via", gw.String(), "dev", "eth0")
	c.writeHosts(ns)
	c.writeResolv(ns, namespace)
	return ns, addr.String()
}

// recordPod creates (or finds) the workload's Pod object, bound to the
// node, and reports it running with its addresses, as the kubelet would.
func (c *Cluster) recordPod(ctx context.Context, namespace string, pi *podInfo) error {
	pods := c.Client.CoreV1().Pods(namespace)
	spec := pi.tmpl.Spec.DeepCopy()
	spec.NodeName = pi.node.Name
	p, err := pods.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: pi.name, Namespace: namespace, Labels: pi.tmpl.Labels, Annotations: pi.tmpl.Annotations},
		Spec:       *spec,
	}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		p, err = pods.Get(ctx, pi.name, metav1.GetOptions{})
	}
	if err != nil {
		return fmt.Errorf("creating pod %s/%s: %w", namespace, pi.name, err)
	}
	now := metav1.Now()
	var conds []corev1.PodCondition
	for _, t := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		conds = append(conds, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	p.Status = corev1.PodStatus{
		Phase:      corev1.PodRunning,
		Conditions: conds,
		HostIP:     pi.node.IP,
		HostIPs:    []corev1.HostIP{{IP: pi.node.IP}},
		PodIP:      pi.ip,
		PodIPs:     []corev1.PodIP{{IP: pi.ip}},
		StartTime:  &now,
	}
	if _, err := pods.UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("pod %s/%s status: %w", namespace, pi.name, err)
	}
	return nil
}

// Expose is the kube-proxy stand-in for a LoadBalancer/NodePort Service
// whose pod has a network namespace of its own: the Service's ports on the
// node's public address are DNATed to the workload's pod (named target
// ports resolved from its containers). A hostNetwork pod listens on the
// node already.
func (c *Cluster) Expose(namespace, service, workload string) {
	c.m.t.Helper()
	svc, err := c.Client.CoreV1().Services(namespace).Get(context.Background(), service, metav1.GetOptions{})
	if err != nil {
		c.m.t.Fatal(err)
	}
	pi := c.podOf(workload)
	if pi.ns == c.NS {
		return
	}
	if pi.node != c.Nodes[0] {
		c.m.t.Fatalf("%s: %s runs on %s, not on the gateway node that has the public address", c.Name, workload, pi.node.Name)
	}
	for _, sp := range svc.Spec.Ports {
		target := sp.TargetPort.IntValue()
		if sp.TargetPort.StrVal != "" {
			target = 0
			for _, ctr := range pi.tmpl.Spec.Containers {
				for _, cp := range ctr.Ports {
					if cp.Name == sp.TargetPort.StrVal {
						target = int(cp.ContainerPort)
					}
				}
			}
		}
		if target == 0 {
			c.m.t.Fatalf("Service %s/%s port %s: target port %s not found in the pod", namespace, service, sp.Name, sp.TargetPort.String())
		}
		proto := strings.ToLower(string(sp.Protocol))
		if proto == "" {
			proto = "tcp"
		}
		c.addNAT(fmt.Sprintf("prerouting ip daddr %s %s dport %d dnat to %s:%d", c.PublicIP, proto, sp.Port, pi.ip, target))
	}
}

// addNAT adds "<chain> <rule>" to the node's nat table and reloads it.
func (c *Cluster) addNAT(rule string) {
	c.m.t.Helper()
	c.mu.Lock()
	c.nat = append(c.nat, rule)
	rules := append([]string(nil), c.nat...)
	c.mu.Unlock()
	var b strings.Builder
	// Declare, delete and recreate: one atomic replacement of the table.
	b.WriteString("table ip e2e-node\ndelete table ip e2e-node\ntable ip e2e-node {\n")
	b.WriteString("\tchain prerouting { type nat hook prerouting priority dstnat; policy accept; }\n")
	b.WriteString("\tchain postrouting { type nat hook postrouting priority srcnat; policy accept; }\n}\n")
	for _, r := range rules {
		fmt.Fprintf(&b, "add rule ip e2e-node %s\n", r)
	}
	f := filepath.Join(c.dir, "node-nat.nft")
	if err := os.WriteFile(f, []byte(b.String()), 0o600); err != nil {
		c.m.t.Fatal(err)
	}
	c.m.Lab.In(c.NS, "nft", "-f", f)
}
