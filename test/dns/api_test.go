package dns

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"

	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/test/testenv"
)

// apiStore keeps the KubeLinks in the apiserver; status goes through the
// status subresource like the gateway writes it.
type apiStore struct {
	ctx    context.Context
	client dynamic.ResourceInterface
}

func (s apiStore) apply(t *testing.T, name, cidr, addr, state string) {
	t.Helper()
	objs, err := testenv.DecodeObjects([]byte(linkYAML(name, cidr, addr, state)))
	if err != nil || len(objs) != 1 {
		t.Fatalf("decoding link: %v", err)
	}
	s.put(t, objs[0])
}

func (s apiStore) put(t *testing.T, o *unstructured.Unstructured) {
	t.Helper()
	status, hasStatus := o.Object["status"]
	cur, err := s.client.Get(s.ctx, o.GetName(), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		cur, err = s.client.Create(s.ctx, o, metav1.CreateOptions{})
	case err == nil:
		o.SetResourceVersion(cur.GetResourceVersion())
		cur, err = s.client.Update(s.ctx, o, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatalf("writing KubeLink %s: %v", o.GetName(), err)
	}
	if hasStatus {
		cur.Object["status"] = status
		if _, err := s.client.UpdateStatus(s.ctx, cur, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("writing status of KubeLink %s: %v", o.GetName(), err)
		}
	}
}

func (s apiStore) remove(t *testing.T, name string) {
	t.Helper()
	if err := s.client.Delete(s.ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting KubeLink %s: %v", name, err)
	}
}

// remoteService creates the Service web in namespace demo with a
// hand-made EndpointSlice (no controller-manager runs) and returns its
// ClusterIP.
func remoteService(t *testing.T, ctx context.Context, e *testenv.Env) string {
	t.Helper()
	c := e.Client()
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	svc, err := c.CoreV1().Services("demo").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating service: %v", err)
	}
	_, err = c.DiscoveryV1().EndpointSlices("demo").Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{"10.1.0.5"},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
		}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(8080)), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating endpointslice: %v", err)
	}
	return svc.Spec.ClusterIP
}

// TestAPIServer runs the battery against a real kube-apiserver: kubelink
// reads KubeLinks through its informer; the remote cluster's DNS is a
// second bin/coredns whose kubernetes plugin serves real Services of the
// same apiserver. An apiserver outage keeps the last known answers.
func TestAPIServer(t *testing.T) {
	requireDig(t)
	e := testenv.Start(t, testenv.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := e.InstallCRDs(ctx, testenv.CRDDir()); err != nil {
		t.Fatal(err)
	}
	serviceIP := remoteService(t, ctx, e)

	remotePort, remoteReady := freePort(t), freePort(t)
	startCoreDNS(t, "remote", fmt.Sprintf(`cluster.local.:%d {
    bind 127.0.0.1
    ready 127.0.0.1:%d
    kubernetes cluster.local {
        kubeconfig %s
    }
}
`, remotePort, remoteReady, e.Kubeconfig), fmt.Sprintf("127.0.0.1:%d", remotePort), fmt.Sprintf("127.0.0.1:%d", remoteReady))

	store := apiStore{ctx: ctx, client: e.Dynamic().Resource(v1alpha1.SchemeGroupVersion.WithResource(v1alpha1.KubeLinkResource))}
	local, err := testenv.DecodeObjects([]byte(localLinkYAML))
	if err != nil {
		t.Fatal(err)
	}
	store.put(t, local[0])
	store.apply(t, "kubelink2", "100.64.16.0/20", "192.168.0.12/24", "Up")

	// netd's namespace, where netd sync writes the service mirrors.
	if _, err := e.Client().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: mirrorNamespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	port, ready := freePort(t), freePort(t)
	kl := startCoreDNS(t, "kubelink", kubelinkCorefile(port, ready, remotePort, "kubeconfig "+e.Kubeconfig+"\n        namespace "+mirrorNamespace),
		fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("127.0.0.1:%d", ready))
	battery(t, kl, store, serviceIP, time.Second)
	// The mirrors through the plugin's label-selected informer.
	servicesBattery(t, kl, objAPI{ctx: ctx, dyn: e.Dynamic()}, serviceIP, time.Second)

	t.Run("apiserver outage keeps the last state", func(t *testing.T) {
		e.StopAPIServer()
		defer func() {
			if err := e.StartAPIServer(); err != nil {
				t.Errorf("restarting apiserver: %v", err)
			}
		}()
		time.Sleep(500 * time.Millisecond)
		expectA(t, kl, time.Second, "kubelink2.kubelink", "192.168.0.12")
		if out := kl.dig(t, "+short", "web.demo.svc.kubelink1.kubelink", "A"); out == "" {
			t.Errorf("no answer during the outage")
		}
	})
}
