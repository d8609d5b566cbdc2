package main

// The answers from memory (issue #14 item 7): kubernetes-mode names of
// the clusters netd sync follows, answered out of its service mirrors, and
// the global names, against hosts serving the same names with the same
// addresses and against CoreDNS's kubernetes plugin serving as many
// Services from a real apiserver.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/kubelink/kubelink/api/synced"
	"github.com/kubelink/kubelink/test/dns/dnsperf"
	"github.com/kubelink/kubelink/test/testenv"
)

// mirrorNamespace is netd's namespace, where netd sync writes the mirrors.
const mirrorNamespace = "kubelink"

// followed are the foreign clusters whose Services netd sync follows
// (KubeLinks with spec.apiAccess, Up): kubernetes mode by default. Each
// has -services Services, all exported, so every global name is the union
// of three addresses. east's Services are the apiserver's: same names
// below the cluster, same ClusterIPs, as netd sync mirrors them.
var followed = []struct{ name, cidr, addr string }{
	{"east", "10.96.0.0/16", "192.168.0.14/24"},
	{"west", "10.97.0.0/16", "192.168.0.15/24"},
	{"north", "10.98.0.0/16", "192.168.0.16/24"},
}

// k8sServiceCIDR is the apiserver's service range: east's spec.cidr.
const k8sServiceCIDR = "10.96.0.0/16"

// maxServices keeps every ClusterIP inside its /16.
const maxServices = 60000

// service i of every cluster: its namespace and name.
func serviceName(i, namespaces int) (string, string) {
	return fmt.Sprintf("ns-%d", i%namespaces), fmt.Sprintf("svc-%05d", i)
}

// serviceIP is the ClusterIP of service i in followed cluster c.
func serviceIP(c, i int) netip.Addr {
	off := i + 10 // 10.96.0.1 is the apiserver's own `kubernetes` Service
	return netip.AddrFrom4([4]byte{10, byte(96 + c), byte(off >> 8), byte(off)})
}

func namespaceCount(services int) int { return min(10, services) }

// memoryFiles are the files of the answers from memory.
type memoryFiles struct {
	links   string // the followed KubeLinks (YAML)
	mirrors []byte // netd sync's mirrors of every Service (a JSON List)
	hosts   string // a hosts file with every cached and global name
	// query files (dnsperf -d)
	cached string // A of every Service, the clusters in turn
	east   string // A of every east Service, SRV of every 4th named port
	k8s    string // the same below cluster.local
	global string // A of every global name
}

func memoryData(services int) (*memoryFiles, error) {
	f := &memoryFiles{}
	var links strings.Builder
	for _, c := range followed {
		fmt.Fprintf(&links, `---
apiVersion: kubelink.mandelsoft.org/v1alpha1
kind: KubeLink
metadata: {name: %[1]s}
spec: {cidr: %[2]s, clusterAddress: %[3]s, endpoint: gw.%[1]s.example.com, apiAccess: {name: %[1]s-access}, dns: {dnsIP: 127.0.0.1}}
status: {state: Up}
`, c.name, c.cidr, c.addr)
	}
	f.links = links.String()

	nss := namespaceCount(services)
	list := struct {
		APIVersion string                      `json:"apiVersion"`
		Kind       string                      `json:"kind"`
		Items      []discoveryv1.EndpointSlice `json:"items"`
	}{APIVersion: "v1", Kind: "List"}
	var hosts, cached, east, k8s, global strings.Builder
	for i := 0; i < services; i++ {
		ns, name := serviceName(i, nss)
		for c, cl := range followed {
			ip := serviceIP(c, i)
			list.Items = append(list.Items, discoveryv1.EndpointSlice{
				TypeMeta: metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
				ObjectMeta: metav1.ObjectMeta{
					Namespace: mirrorNamespace,
					Name:      fmt.Sprintf("%s-%s-%s-ipv4", cl.name, ns, name),
					Labels: map[string]string{
						discoveryv1.LabelManagedBy:   synced.ManagedBy,
						synced.LabelManagedBy:        synced.ManagerName,
						synced.LabelSourceCluster:    cl.name,
						synced.LabelSourceKind:       synced.KindKubeLink,
						synced.LabelServiceNamespace: ns,
						synced.LabelServiceName:      name,
						synced.LabelServiceType:      synced.ServiceTypeClusterIP,
						synced.LabelExported:         "true",
					},
				},
				AddressType: discoveryv1.AddressTypeIPv4,
				Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(80)), Protocol: ptr.To(corev1.ProtocolTCP)}},
				Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip.String()}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
			})
			fmt.Fprintf(&hosts, "%s %s.%s.svc.%s.kubelink\n", ip, name, ns, cl.name)
			fmt.Fprintf(&hosts, "%s %s.%s.svc.global.kubelink\n", ip, name, ns)
		}
		fmt.Fprintf(&cached, "%s.%s.svc.%s.kubelink A\n", name, ns, followed[i%len(followed)].name)
		fmt.Fprintf(&global, "%s.%s.svc.global.kubelink A\n", name, ns)
		for _, q := range []struct {
			b      *strings.Builder
			domain string
		}{{&east, "east.kubelink"}, {&k8s, "cluster.local"}} {
			fmt.Fprintf(q.b, "%s.%s.svc.%s A\n", name, ns, q.domain)
			if i%4 == 0 {
				fmt.Fprintf(q.b, "_http._tcp.%s.%s.svc.%s SRV\n", name, ns, q.domain)
			}
		}
	}
	var err error
	if f.mirrors, err = json.Marshal(list); err != nil {
		return nil, err
	}
	f.hosts, f.cached, f.east, f.k8s, f.global = hosts.String(), cached.String(), east.String(), k8s.String(), global.String()
	return f, nil
}

// createServices writes east's Services into the apiserver: the same
// names, ClusterIPs and ports as their mirrors.
func createServices(ctx context.Context, e *testenv.Env, services int) error {
	c := e.Client()
	nss := namespaceCount(services)
	for n := 0; n < nss; n++ {
		ns, _ := serviceName(n, nss)
		if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	work := make(chan int)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				ns, name := serviceName(i, nss)
				ip := serviceIP(0, i).String()
				svc := &corev1.Service{
					ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
					Spec: corev1.ServiceSpec{
						ClusterIP: ip, ClusterIPs: []string{ip},
						Selector: map[string]string{"app": name},
						Ports:    []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}},
					},
				}
				if _, err := c.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
					errs <- fmt.Errorf("creating Service %s/%s: %w", ns, name, err)
					return
				}
			}
		}()
	}
	var err error
loop:
	for i := 0; i < services; i++ {
		select {
		case work <- i:
		case err = <-errs:
			break loop
		}
	}
	close(work)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return err
}

// answer is what matters of a reply for the comparisons: the rcode, the
// answer's addresses and SRV data (without target names, which differ
// between domains) and the additional section's addresses, sorted.
func answer(r *dns.Msg) string {
	var out []string
	for _, sec := range [][]dns.RR{r.Answer, r.Extra} {
		for _, rr := range sec {
			switch v := rr.(type) {
			case *dns.A:
				out = append(out, v.A.String())
			case *dns.AAAA:
				out = append(out, v.AAAA.String())
			case *dns.SRV:
				out = append(out, fmt.Sprintf("SRV %d %d %d", v.Priority, v.Weight, v.Port))
			}
		}
	}
	sort.Strings(out)
	return dns.RcodeToString[r.Rcode] + " " + strings.Join(out, ",")
}

var dnsClient = &dns.Client{Timeout: 2 * time.Second}

func ask(port int, name string, qtype uint16) (string, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	r, _, err := dnsClient.Exchange(m, "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return "", err
	}
	return answer(r), nil
}

// queryLines parses a dnsperf query file.
func queryLines(queries string) [][2]string {
	var out [][2]string
	for _, l := range strings.Split(strings.TrimSpace(queries), "\n") {
		f := strings.Fields(l)
		out = append(out, [2]string{f[0], f[1]})
	}
	return out
}

// sameAnswers checks that two setups answer every query pair alike, with
// addresses (the setups load their data in the background: the first
// query is repeated until both answer it).
func sameAnswers(a, b *dnsperf.Setup, queriesA, queriesB string) error {
	qa, qb := queryLines(queriesA), queryLines(queriesB)
	if len(qa) != len(qb) {
		return fmt.Errorf("%s and %s: %d and %d queries", a.Name, b.Name, len(qa), len(qb))
	}
	for i := range qa {
		var ra, rb string
		var err error
		for deadline := time.Now().Add(60 * time.Second); ; {
			ra, err = ask(a.Port, qa[i][0], dns.StringToType[qa[i][1]])
			if err == nil {
				rb, err = ask(b.Port, qb[i][0], dns.StringToType[qb[i][1]])
			}
			if i > 0 || err == nil && strings.HasPrefix(ra, "NOERROR ") && ra == rb {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s %s: %s answers %q, %s answers %q (%v)", qa[i][0], qa[i][1], a.Name, ra, b.Name, rb, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			return err
		}
		if !strings.HasPrefix(ra, "NOERROR ") || ra != rb {
			return fmt.Errorf("%s %s: %s answers %q, %s answers %q for %s", qa[i][0], qa[i][1], a.Name, ra, b.Name, rb, qb[i][0])
		}
	}
	return nil
}
