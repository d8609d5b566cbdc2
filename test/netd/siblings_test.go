package netd_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/netd/broker"
	"github.com/kubelink/kubelink/netd/tunnel/wireguard"
	"github.com/kubelink/kubelink/test/netns"
)

// TestSiblingBrokers runs the dataplanes of two brokers in one network
// namespace, as a cluster with WireGuard links and a bridge link side by
// side has them (--served-links splits the links, devices kubelink and
// kubelink-br). Neither may take the other's routes: each routes the link
// addresses and CIDRs of its own links, and repeated reconciles of both
// write nothing.
func TestSiblingBrokers(t *testing.T) {
	lab := netns.New(t, "sib")
	ns := lab.NS("gw")
	ctx := context.Background()

	var links []*v1alpha1.KubeLink
	for i, name := range []string{"kubelink2", "kubelink3"} {
		links = append(links, &v1alpha1.KubeLink{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: v1alpha1.KubeLinkSpec{ClusterAddress: fmt.Sprintf("192.168.0.%d/24", 12+i), CIDR: fmt.Sprintf("100.64.%d.0/20", 16*(i+1)),
				Endpoint: fmt.Sprintf("127.0.0.%d:8777", 2+i), PublicKey: publicKey(t)},
		})
	}
	type sibling struct {
		dp  *broker.Dataplane
		dev *wireguard.Device
	}
	var sibs []sibling
	for i, s := range []struct{ dev, served string }{{"kubelink", "kubelink2"}, {"kubelink-br", "kubelink3"}} {
		cfg := &broker.Config{Mode: broker.ModeWireGuard, ClusterName: "kubelink1", LinkAddress: "192.168.0.11/24", ServiceCIDR: "100.64.0.0/20",
			IfceName: s.dev, BrokerPort: 18777 + i, MeshDomain: "kubelink", ClusterDomain: "cluster.local", ServedLinks: s.served,
			LocalStatus: i == 0, RulePriority: 32000, Keepalive: 20 * time.Second, Identity: s.dev}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		dev := wireGuardIn(t, ns, cfg)
		sibs = append(sibs, sibling{broker.NewDataplane(cfg, dev), dev})
	}
	reconcileAll := func() {
		t.Helper()
		for _, s := range sibs {
			if err := netns.Do(ns, func() error {
				out, err := s.dp.Reconcile(ctx, links, nil, nil)
				if err == nil && len(out.LinkErrs) > 0 {
					err = fmt.Errorf("link errors: %v", out.LinkErrs)
				}
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	reconcileAll()
	routes := lab.In(ns, "ip", "route", "show", "proto", "97")
	for _, want := range []string{
		"100.64.16.0/20 dev kubelink scope link src 192.168.0.11",
		"192.168.0.12 dev kubelink scope link src 192.168.0.11",
		"100.64.32.0/20 dev kubelink-br scope link src 192.168.0.11",
		"192.168.0.13 dev kubelink-br scope link src 192.168.0.11",
	} {
		if !strings.Contains(routes, want) {
			t.Errorf("routes lack %q:\n%s", want, routes)
		}
	}
	if n := strings.Count(routes, "\n"); n != 4 {
		t.Errorf("want 4 routes (link address and CIDR per broker), got %d:\n%s", n, routes)
	}
	writes := []int{sibs[0].dp.Writes(), sibs[1].dp.Writes()}
	for i := 0; i < 10; i++ {
		reconcileAll()
	}
	for i, s := range sibs {
		if w := s.dp.Writes() - writes[i]; w != 0 {
			t.Errorf("broker %d wrote %d times in 10 unchanged reconciles (fighting over a route?)", i, w)
		}
	}
	if got := lab.In(ns, "ip", "route", "show", "proto", "97"); got != routes {
		t.Errorf("routes changed:\n%s\n---\n%s", routes, got)
	}
	// Each broker's traffic goes to its own device.
	for dst, dev := range map[string]string{"192.168.0.12": "kubelink", "100.64.17.1": "kubelink", "192.168.0.13": "kubelink-br", "100.64.33.1": "kubelink-br"} {
		if got := lab.In(ns, "ip", "route", "get", dst); !strings.Contains(got, "dev "+dev+" ") {
			t.Errorf("route to %s: %s, want dev %s", dst, got, dev)
		}
	}
}
