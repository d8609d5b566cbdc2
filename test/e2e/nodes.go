package e2e

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelink/kubelink/test/netns"
	"github.com/kubelink/kubelink/test/testenv"
)

// registerNodes creates the Node objects, Ready, with their node-network
// address and pod range, as a kubelet registers its node: kube-proxy reads
// its node's address from there, the router and brokers their node.
func (c *Cluster) registerNodes() {
	c.m.t.Helper()
	ctx := context.Background()
	for _, n := range c.Nodes {
		node, err := c.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: n.Labels},
			Spec:       corev1.NodeSpec{PodCIDR: n.PodCIDR.String(), PodCIDRs: []string{n.PodCIDR.String()}},
		}, metav1.CreateOptions{})
		if err != nil {
			c.m.t.Fatalf("%s: registering node %s: %v", c.Name, n.Name, err)
		}
		now := metav1.Now()
		node.Status = corev1.NodeStatus{
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: n.IP}, {Type: corev1.NodeHostName, Address: n.Name}},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
				LastHeartbeatTime: now, LastTransitionTime: now}},
		}
		if _, err := c.Client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
			c.m.t.Fatalf("%s: status of node %s: %v", c.Name, n.Name, err)
		}
	}
}

// startKubeProxies runs a real kube-proxy in nftables mode on every node
// and waits until each node reaches the apiserver through the `kubernetes`
// Service's ClusterIP, i.e. kube-proxy programs Services and EndpointSlices
// (the apiserver writes that Service's endpoints itself).
//
// No --cluster-cidr: kube-proxy then masquerades no traffic from outside
// the pod network, so a Service reached over the mesh sees the caller's
// link address, and the replies take the node's routes back through the
// gateway (the router's routes), as on a cluster whose CNI does not
// masquerade Service traffic.
func (c *Cluster) startKubeProxies() {
	c.m.t.Helper()
	bin := filepath.Join(testenv.BinDir(), "kube-proxy")
	workerCfg, err := c.Env.AdvertisedKubeconfig()
	if err != nil {
		c.m.t.Fatal(err)
	}
	for i, n := range c.Nodes {
		kubeconfig := workerCfg
		if i == 0 {
			kubeconfig = c.Env.Kubeconfig // the apiserver's own loopback
		}
		c.start(n.NS, "kube-proxy-"+n.Name, nil, bin,
			"--kubeconfig="+kubeconfig,
			"--proxy-mode=nftables",
			"--hostname-override="+n.Name,
			"--conntrack-max-per-core=0",
			"--conntrack-tcp-timeout-established=0",
			"--conntrack-tcp-timeout-close-wait=0",
			"--healthz-bind-address=127.0.0.1:10256",
			"--metrics-bind-address=127.0.0.1:10249",
			"--v=1",
		)
	}
	api := net.JoinHostPort(c.APIServiceIP(), "443")
	for _, n := range c.Nodes {
		dial := netns.DialContext(n.NS)
		waitFor(c.m.t, 90*time.Second, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			conn, err := dial(ctx, "tcp", api)
			if err != nil {
				return fmt.Errorf("node %s: the kubernetes Service %s: %w", n.Name, api, err)
			}
			return conn.Close()
		}, c)
	}
}

// Worker is the cluster's first worker node.
func (c *Cluster) Worker() *Node { return c.Nodes[1] }
