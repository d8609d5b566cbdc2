package dns

// The contract rows answered from memory (issue #14 items 1, 2 and 4):
// kubernetes mode for clusters whose services netd sync follows
// (<svc>.<ns>.svc.<cluster>.<mesh> from its service mirrors), the global
// names served by the mesh, and health. The mirrors are EndpointSlices
// exactly as api/synced describes them, written into the apiserver (or
// the manifests directory) the way netd sync writes them; the real
// bin/coredns answers dig.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/kubelink/kubelink/api/synced"
	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/test/testenv"
)

// mirrorNamespace is netd's namespace: the plugin's `namespace` option.
const mirrorNamespace = "kubelink"

// objectStore holds any of the objects the plugin reads.
type objectStore interface {
	// put creates or replaces the objects of a YAML stream, status included.
	put(t *testing.T, yaml string)
	// del deletes the objects of a YAML stream.
	del(t *testing.T, yaml string)
}

func decodeYAML(t *testing.T, y string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := testenv.DecodeObjects([]byte(y))
	if err != nil || len(objs) == 0 {
		t.Fatalf("decoding %q: %v", y, err)
	}
	return objs
}

// objFileName is the file of an object in a manifests directory.
func objFileName(o *unstructured.Unstructured) string {
	return strings.ToLower(o.GetKind()) + "-" + o.GetNamespace() + "-" + o.GetName()
}

// objDir keeps every object in a file of its own, replaced atomically.
type objDir struct{ dirStore }

func (s objDir) put(t *testing.T, y string) {
	t.Helper()
	for _, o := range decodeYAML(t, y) {
		b, err := o.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		s.write(t, objFileName(o), string(b))
	}
}

func (s objDir) del(t *testing.T, y string) {
	t.Helper()
	for _, o := range decodeYAML(t, y) {
		if err := os.Remove(filepath.Join(s.dir, objFileName(o)+".yaml")); err != nil {
			t.Fatal(err)
		}
	}
}

// objAPI writes the objects to the apiserver; status through the status
// subresource, as the gateway writes it.
type objAPI struct {
	ctx context.Context
	dyn dynamic.Interface
}

func (s objAPI) resource(o *unstructured.Unstructured) dynamic.ResourceInterface {
	switch o.GetKind() {
	case "KubeLink":
		return s.dyn.Resource(v1alpha1.SchemeGroupVersion.WithResource(v1alpha1.KubeLinkResource))
	case "MeshService":
		return s.dyn.Resource(v1alpha1.SchemeGroupVersion.WithResource(v1alpha1.MeshServiceResource)).Namespace(o.GetNamespace())
	}
	return s.dyn.Resource(schema.GroupVersionResource{Group: "discovery.k8s.io", Version: "v1", Resource: "endpointslices"}).Namespace(o.GetNamespace())
}

func (s objAPI) put(t *testing.T, y string) {
	t.Helper()
	for _, o := range decodeYAML(t, y) {
		r := s.resource(o)
		status, hasStatus := o.Object["status"]
		cur, err := r.Get(s.ctx, o.GetName(), metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			cur, err = r.Create(s.ctx, o, metav1.CreateOptions{})
		case err == nil:
			o.SetResourceVersion(cur.GetResourceVersion())
			cur, err = r.Update(s.ctx, o, metav1.UpdateOptions{})
		}
		if err != nil {
			t.Fatalf("writing %s %s: %v", o.GetKind(), o.GetName(), err)
		}
		if hasStatus {
			cur.Object["status"] = status
			if _, err := r.UpdateStatus(s.ctx, cur, metav1.UpdateOptions{}); err != nil {
				t.Fatalf("writing status of %s %s: %v", o.GetKind(), o.GetName(), err)
			}
		}
	}
}

func (s objAPI) del(t *testing.T, y string) {
	t.Helper()
	for _, o := range decodeYAML(t, y) {
		if err := s.resource(o).Delete(s.ctx, o.GetName(), metav1.DeleteOptions{}); err != nil {
			t.Fatalf("deleting %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
}

// followedLink is a foreign KubeLink with spec.apiAccess: netd sync follows
// its Services, so the plugin answers its names from memory by default. Its
// DNS is the remote CoreDNS: a forwarded query would get that zone's
// answers, never the mirrors'.
func followedLink(name, cidr, addr, state string) string {
	return fmt.Sprintf(`apiVersion: kubelink.mandelsoft.org/v1alpha1
kind: KubeLink
metadata:
  name: %s
spec:
  cidr: %s
  clusterAddress: %s
  endpoint: gw.%s.example.com:8777
  apiAccess:
    name: %s-access
  dns:
    dnsIP: 127.0.0.1
status:
  state: %q
  message: set by the test
`, name, cidr, addr, name, name, state)
}

// mep is an endpoint of a mirror.
type mep struct {
	addr, hostname string
	ready          bool
}

// mirrorYAML is a service mirror as netd sync writes it (api/synced).
func mirrorYAML(cluster, ns, svc, typ string, exported bool, family string, ports string, eps ...mep) string {
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: svc-%[1]s-%[2]s-%[3]s-%[18]s
  namespace: %[7]s
  labels:
    endpointslice.kubernetes.io/managed-by: %[8]s
    %[9]s: %[10]s
    %[11]s: %[1]s
    %[12]s: KubeLink
    %[13]s: %[2]s
    %[14]s: %[3]s
    %[15]s: %[4]s
    %[16]s: "%[5]v"
addressType: %[6]s
ports: %[17]s
endpoints:
`, cluster, ns, svc, typ, exported, family, mirrorNamespace, synced.ManagedBy, synced.LabelManagedBy, synced.ManagerName,
		synced.LabelSourceCluster, synced.LabelSourceKind, synced.LabelServiceNamespace, synced.LabelServiceName,
		synced.LabelServiceType, synced.LabelExported, ports, strings.ToLower(family))
	for _, e := range eps {
		fmt.Fprintf(&b, "- addresses: [%q]\n  conditions: {ready: %v}\n", e.addr, e.ready)
		if e.hostname != "" {
			fmt.Fprintf(&b, "  hostname: %s\n", e.hostname)
		}
	}
	return b.String()
}

const (
	webPorts = `[{name: http, port: 80, protocol: TCP}, {name: dns, port: 53, protocol: UDP}]`
	dbPorts  = `[{name: pg, port: 5432, protocol: TCP}]`
)

// localExport is the local cluster's MeshService for demo/web, as the
// gateway reports it: the Service's ClusterIP among its targets.
const localExport = `apiVersion: kubelink.mandelsoft.org/v1alpha1
kind: MeshService
metadata:
  name: web-mesh
  namespace: demo
spec:
  service: web
  meshAddress: 192.168.0.101
status:
  state: Ok
  targets:
  - protocol: TCP
    address: 192.168.0.101
    port: 80
    targets: ["100.64.0.20:80"]
`

// sortedFields returns the whitespace-separated lines of dig +short,
// sorted.
func sortedLines(out string) []string {
	var l []string
	for _, s := range strings.Split(strings.TrimSpace(out), "\n") {
		if s = strings.TrimSpace(s); s != "" {
			l = append(l, s)
		}
	}
	sort.Strings(l)
	return l
}

// expectShort waits until dig +short name type gives exactly want (any
// order); it returns how long that took. Timeout 0 asks once.
func expectShort(t *testing.T, kl *coreDNS, timeout time.Duration, name, qtype string, want ...string) time.Duration {
	t.Helper()
	sort.Strings(want)
	check := func() error {
		if got := sortedLines(kl.dig(t, "+short", name, qtype)); strings.Join(got, ",") != strings.Join(want, ",") {
			return fmt.Errorf("got %v", got)
		}
		return nil
	}
	if timeout == 0 {
		if err := check(); err != nil {
			t.Errorf("dig %s %s: %v, want %v", name, qtype, err, want)
		}
		return 0
	}
	return eventually(t, timeout, fmt.Sprintf("dig %s %s = %v", name, qtype, want), check)
}

// hasRecord reports whether dig output holds the record "name ttl IN type
// data" (dig aligns the columns with tabs).
func hasRecord(out, name, ttl, qtype, data string) bool {
	return regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `\s+` + ttl + `\s+IN\s+` + qtype + `\s+` + regexp.QuoteMeta(data)).MatchString(out)
}

// expectStatus checks a full dig reply: its status, the authoritative
// flag and, for negative answers, the mesh SOA.
func expectStatus(t *testing.T, kl *coreDNS, name, qtype, status string) {
	t.Helper()
	out := kl.dig(t, name, qtype)
	if !strings.Contains(out, "status: "+status) || !strings.Contains(out, " aa") {
		t.Errorf("dig %s %s: want authoritative %s:\n%s", name, qtype, status, out)
	}
	if !strings.Contains(out, "ANSWER: 0") || !strings.Contains(out, "AUTHORITY: 1") || !hasRecord(out, "kubelink.", "5", "SOA", "ns.dns.kubelink.") {
		t.Errorf("dig %s %s: want no answer and the mesh SOA:\n%s", name, qtype, out)
	}
}

// servicesBattery runs the rows answered from memory against a running
// kubelink CoreDNS (no mesh-global DNS) whose mesh holds kubelink1 (local)
// and kubelink2 (Up, no apiAccess: dns mode, forwarded to the remote DNS
// where web.demo answers serviceIP). change bounds how fast edits show.
func servicesBattery(t *testing.T, kl *coreDNS, store objectStore, serviceIP string, change time.Duration) {
	east := followedLink("east", "100.64.48.0/20", "192.168.0.14/24", "Up")
	west := followedLink("west", "100.64.64.0/20", "192.168.0.15/24", "Up")
	eastWeb4 := mirrorYAML("east", "demo", "web", synced.ServiceTypeClusterIP, true, "IPv4", webPorts, mep{"100.64.48.20", "", true})
	eastWeb6 := mirrorYAML("east", "demo", "web", synced.ServiceTypeClusterIP, true, "IPv6", webPorts, mep{"fd00:48::20", "", true})
	eastDB := mirrorYAML("east", "demo", "db", synced.ServiceTypeHeadless, false, "IPv4", dbPorts,
		mep{"10.48.0.5", "db-0", true}, mep{"10.48.0.6", "db-1", false}, mep{"10.48.0.7", "", true})
	// west shares a CIDR: it is reached on its MeshService's mesh address.
	westWeb := mirrorYAML("west", "demo", "web", synced.ServiceTypeClusterIP, true, "IPv4", webPorts, mep{"192.168.0.100", "", true})
	// kubelink2 (no apiAccess) exports web through a MeshService: in the
	// global name, but its own names stay forwarded.
	k2Web := mirrorYAML("kubelink2", "demo", "web", synced.ServiceTypeClusterIP, true, "IPv4", webPorts, mep{"192.168.0.102", "", true})
	// north has no apiAccess but spec.dns.mode kubernetes, and no mirrors.
	north := strings.Replace(strings.Replace(followedLink("north", "100.64.80.0/20", "192.168.0.16/24", "Up"),
		"  apiAccess:\n    name: north-access\n", "", 1), "    dnsIP: 127.0.0.1\n", "    dnsIP: 127.0.0.1\n    mode: kubernetes\n", 1)
	if strings.Contains(north, "apiAccess") || !strings.Contains(north, "mode: kubernetes") {
		t.Fatalf("north:\n%s", north)
	}
	store.put(t, east)
	store.put(t, west)
	store.put(t, north)
	store.put(t, localExport)
	for _, m := range []string{eastWeb4, eastWeb6, eastDB, westWeb, k2Web} {
		store.put(t, m)
	}
	const web, db = "web.demo.svc.east.kubelink", "db.demo.svc.east.kubelink"
	const global = "web.demo.svc.global.kubelink"
	expectShort(t, kl, change+5*time.Second, global, "A", "100.64.0.20", "100.64.48.20", "192.168.0.100", "192.168.0.102")

	t.Run("kubernetes mode A AAAA SRV", func(t *testing.T) {
		expectShort(t, kl, 0, web, "A", "100.64.48.20")
		expectShort(t, kl, 0, web, "AAAA", "fd00:48::20")
		expectShort(t, kl, 0, "Web.Demo.svc.EAST.kubelink", "A", "100.64.48.20")
		expectShort(t, kl, 0, "_http._tcp."+web, "SRV", "0 100 80 "+web+".")
		expectShort(t, kl, 0, "_dns._udp."+web, "SRV", "0 100 53 "+web+".")
		// The Service's own SRV lists every port.
		expectShort(t, kl, 0, web, "SRV", "0 50 53 "+web+".", "0 50 80 "+web+".")
		out := kl.dig(t, "_http._tcp."+web, "SRV")
		if !hasRecord(out, web+".", "5", "A", "100.64.48.20") || !hasRecord(out, web+".", "5", "AAAA", "fd00:48::20") || !strings.Contains(out, " aa") {
			t.Errorf("SRV without the target's addresses:\n%s", out)
		}
	})
	t.Run("kubernetes mode headless", func(t *testing.T) {
		// Every ready endpoint; by hostname, or by address when it has none.
		expectShort(t, kl, 0, db, "A", "10.48.0.5", "10.48.0.7")
		expectShort(t, kl, 0, "db-0."+db, "A", "10.48.0.5")
		expectShort(t, kl, 0, "10-48-0-7."+db, "A", "10.48.0.7")
		expectShort(t, kl, 0, "_pg._tcp."+db, "SRV", "0 50 5432 10-48-0-7."+db+".", "0 50 5432 db-0."+db+".")
		expectStatus(t, kl, "db-1."+db, "A", "NXDOMAIN") // not ready
	})
	t.Run("kubernetes mode PTR", func(t *testing.T) {
		expectShort(t, kl, 0, "-x", "100.64.48.20", web+".")
		expectShort(t, kl, 0, "-x", "fd00:48::20", web+".")
		expectShort(t, kl, 0, "-x", "10.48.0.5", "db-0."+db+".")
		expectShort(t, kl, 0, "-x", "192.168.0.100", "web.demo.svc.west.kubelink.")
		// Link addresses keep theirs.
		expectShort(t, kl, 0, "-x", "192.168.0.14", "east.kubelink.")
	})
	t.Run("kubernetes mode NXDOMAIN and NODATA", func(t *testing.T) {
		// north (mode kubernetes) has no mirrors; its DNS (the remote
		// CoreDNS) knows web.demo.svc: a forwarded query would answer.
		expectStatus(t, kl, "web.demo.svc.north.kubelink", "A", "NXDOMAIN")
		expectStatus(t, kl, "nosuch.demo.svc.east.kubelink", "A", "NXDOMAIN")
		expectStatus(t, kl, "web.default.svc.east.kubelink", "A", "NXDOMAIN")
		expectStatus(t, kl, "_http._udp."+web, "SRV", "NXDOMAIN")
		expectStatus(t, kl, web, "TXT", "NOERROR")
		expectStatus(t, kl, "demo.svc.east.kubelink", "A", "NOERROR")
	})
	t.Run("dns mode without apiAccess", func(t *testing.T) {
		// kubelink2 has a mirror, but no apiAccess: forwarded, rewritten.
		expectShort(t, kl, 0, "web.demo.svc.kubelink2.kubelink", "A", serviceIP)
		expectShort(t, kl, 0, "_http._tcp.web.demo.svc.kubelink2.kubelink", "SRV", "0 100 80 web.demo.svc.kubelink2.kubelink.")
		// The local cluster as today.
		expectShort(t, kl, 0, "web.demo.svc.kubelink1.kubelink", "A", serviceIP)
	})
	t.Run("global union", func(t *testing.T) {
		expectShort(t, kl, 0, global, "A", "100.64.0.20", "100.64.48.20", "192.168.0.100", "192.168.0.102")
		expectShort(t, kl, 0, global, "AAAA", "fd00:48::20")
		expectShort(t, kl, 0, "_http._tcp."+global, "SRV", "0 100 80 "+global+".")
		out := kl.dig(t, global, "A")
		if !strings.Contains(out, " aa") || !strings.Contains(out, "status: NOERROR") {
			t.Errorf("global name not answered authoritatively:\n%s", out)
		}
		// Not exported anywhere, and no mesh-global DNS: NXDOMAIN.
		expectStatus(t, kl, "db.demo.svc.global.kubelink", "A", "NXDOMAIN")
	})
	t.Run("Down link leaves the global answer", func(t *testing.T) {
		store.put(t, followedLink("west", "100.64.64.0/20", "192.168.0.15/24", "Down"))
		d := expectShort(t, kl, change, global, "A", "100.64.0.20", "100.64.48.20", "192.168.0.102")
		t.Logf("Down visible in the global answer after %v", d)
		r, _, err := kl.query("web.demo.svc.west.kubelink", dns.TypeA)
		if err != nil || r.Rcode != dns.RcodeServerFailure || ede(r) == nil || ede(r).InfoCode != dns.ExtendedErrorCodeNoReachableAuthority ||
			!strings.Contains(ede(r).ExtraText, "Down") {
			t.Errorf("names of a Down cluster: %v %v", r, err)
		}
		if out := kl.dig(t, "web.demo.svc.west.kubelink", "A"); !strings.Contains(out, "SERVFAIL") || !strings.Contains(out, "EDE: 22") {
			t.Errorf("dig shows no EDE 22:\n%s", out)
		}
		store.put(t, west)
		d = expectShort(t, kl, change, global, "A", "100.64.0.20", "100.64.48.20", "192.168.0.100", "192.168.0.102")
		t.Logf("Up visible in the global answer after %v", d)
	})
	t.Run("mirror changes reach answers", func(t *testing.T) {
		api := mirrorYAML("east", "demo", "api", synced.ServiceTypeClusterIP, false, "IPv4", `[{name: grpc, port: 9090, protocol: TCP}]`, mep{"100.64.48.30", "", true})
		store.put(t, api)
		d := expectShort(t, kl, change, "api.demo.svc.east.kubelink", "A", "100.64.48.30")
		t.Logf("new mirror answered after %v", d)
		store.put(t, mirrorYAML("east", "demo", "api", synced.ServiceTypeClusterIP, false, "IPv4", `[{name: grpc, port: 9090, protocol: TCP}]`, mep{"100.64.48.31", "", true}))
		d = expectShort(t, kl, change, "api.demo.svc.east.kubelink", "A", "100.64.48.31")
		t.Logf("changed mirror answered after %v", d)
		store.del(t, api)
		d = eventually(t, change, "deleted mirror NXDOMAIN", func() error {
			r, _, err := kl.query("api.demo.svc.east.kubelink", dns.TypeA)
			if err != nil {
				return err
			}
			if r.Rcode != dns.RcodeNameError {
				return fmt.Errorf("rcode %s", dns.RcodeToString[r.Rcode])
			}
			return nil
		})
		t.Logf("deleted mirror gone after %v", d)
		// An export withdrawn: out of the global name.
		store.put(t, mirrorYAML("kubelink2", "demo", "web", synced.ServiceTypeClusterIP, false, "IPv4", webPorts, mep{"192.168.0.102", "", true}))
		d = expectShort(t, kl, change, global, "A", "100.64.0.20", "100.64.48.20", "192.168.0.100")
		t.Logf("withdrawn export gone after %v", d)
	})
	for _, m := range []string{eastWeb4, eastWeb6, eastDB, westWeb, k2Web, localExport, east, west, north} {
		store.del(t, m)
	}
}
