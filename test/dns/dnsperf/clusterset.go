package dnsperf

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	mcsv1a1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"

	"github.com/kubelink/kubelink/netd/sync/mcs"
)

// The clusterset benchmarks' data set (make bench-dns's benchclusterset and
// test/dns's in-process BenchmarkClustersetServeDNS) lives in this
// namespace, under this zone.
const (
	ClustersetNamespace = "bench"
	ClustersetZone      = "svc.clusterset.local"
)

// ClustersetClusters are the clusters the data set's MCS slices come from.
func ClustersetClusters() []string { return []string{"west", "east", "north"} }

// LoadClusterset writes services ClusterSetIP imports web-NNN (dual-stack
// spec.ips) and as many headless ones db-NNN, each with an MCS slice per
// cluster of 2 ready endpoints (hostnames pod-0 and pod-1 for the headless
// ones), labelled and owned as netd sync writes them. It returns the
// hosts-file lines with the same names and addresses, and dnsperf's query
// file.
func LoadClusterset(ctx context.Context, c kubernetes.Interface, dyn dynamic.Interface, services int) (hosts, queries string, err error) {
	const ns, zone = ClustersetNamespace, ClustersetZone
	clusters := ClustersetClusters()
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return "", "", fmt.Errorf("creating namespace %s: %w", ns, err)
	}
	imports := dyn.Resource(mcsv1a1.SchemeGroupVersion.WithResource("serviceimports")).Namespace(ns)
	var h, q strings.Builder
	for i := 0; i < services; i++ {
		web, db := fmt.Sprintf("web-%03d", i), fmt.Sprintf("db-%03d", i)
		v4, v6 := fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), fmt.Sprintf("fd00::%x", i+1)
		fmt.Fprintf(&h, "%s %s.%s.%s\n%s %s.%s.%s\n", v4, web, ns, zone, v6, web, ns, zone)
		fmt.Fprintf(&q, "%s.%s.%s A\n%s.%s.%s AAAA\n%s.%s.%s A\npod-%d.%s.%s.%s.%s A\n",
			web, ns, zone, web, ns, zone, db, ns, zone, i%2, clusters[i%len(clusters)], db, ns, zone)
		for _, imp := range []struct {
			name string
			typ  mcsv1a1.ServiceImportType
			ips  []string
			port string
		}{{web, mcsv1a1.ClusterSetIP, []string{v4, v6}, "http"}, {db, mcsv1a1.Headless, nil, "pg"}} {
			o := &mcsv1a1.ServiceImport{
				TypeMeta:   metav1.TypeMeta{APIVersion: mcsv1a1.SchemeGroupVersion.String(), Kind: "ServiceImport"},
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: imp.name},
				Spec: mcsv1a1.ServiceImportSpec{Type: imp.typ, IPs: imp.ips,
					Ports: []mcsv1a1.ServicePort{{Name: imp.port, Protocol: corev1.ProtocolTCP, Port: 80}}},
			}
			m, err := kruntime.DefaultUnstructuredConverter.ToUnstructured(o)
			if err != nil {
				return "", "", err
			}
			created, err := imports.Create(ctx, &unstructured.Unstructured{Object: m}, metav1.CreateOptions{})
			if err != nil {
				return "", "", fmt.Errorf("creating ServiceImport %s: %w", imp.name, err)
			}
			for ci, cl := range clusters {
				s := &discoveryv1.EndpointSlice{
					ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: imp.name + "-" + cl,
						Labels: mcs.SliceLabels(imp.name, cl, ""),
						OwnerReferences: []metav1.OwnerReference{{APIVersion: mcsv1a1.SchemeGroupVersion.String(),
							Kind: "ServiceImport", Name: imp.name, UID: created.GetUID(), Controller: ptr.To(true)}}},
					AddressType: discoveryv1.AddressTypeIPv4,
					Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(imp.port), Port: ptr.To(int32(8080)), Protocol: ptr.To(corev1.ProtocolTCP)}},
				}
				for k := 0; k < 2; k++ {
					ip := fmt.Sprintf("10.%d.%d.%d", 10+ci, i/120, (i%120)*2+k+1)
					ep := discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}
					if imp.typ == mcsv1a1.Headless {
						ep.Hostname = ptr.To(fmt.Sprintf("pod-%d", k))
						fmt.Fprintf(&h, "%s %s.%s.%s\n%s pod-%d.%s.%s.%s.%s\n", ip, db, ns, zone, ip, k, cl, db, ns, zone)
					}
					s.Endpoints = append(s.Endpoints, ep)
				}
				if _, err := c.DiscoveryV1().EndpointSlices(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
					return "", "", fmt.Errorf("creating EndpointSlice %s: %w", s.Name, err)
				}
			}
		}
	}
	return h.String(), q.String(), nil
}
