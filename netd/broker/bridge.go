package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strconv"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelink/kubelink/api/mesh"
	"github.com/kubelink/kubelink/api/v1alpha1"
	"github.com/kubelink/kubelink/netd/kube"
	"github.com/kubelink/kubelink/netd/tunnel/bridge"
)

// loadTLS reads the certificate from files or from the --secret (a
// kubernetes TLS secret: tls.crt, tls.key, ca.crt).
func (b *broker) loadTLS(ctx context.Context) (tls.Certificate, *x509.CertPool, error) {
	var certPEM, keyPEM, caPEM []byte
	var err error
	switch {
	case b.cfg.CertFile != "":
		if certPEM, err = os.ReadFile(b.cfg.CertFile); err != nil {
			return tls.Certificate{}, nil, fmt.Errorf("--certfile: %w", err)
		}
		if keyPEM, err = os.ReadFile(b.cfg.KeyFile); err != nil {
			return tls.Certificate{}, nil, fmt.Errorf("--keyfile: %w", err)
		}
		if caPEM, err = os.ReadFile(b.cfg.CACertFile); err != nil {
			return tls.Certificate{}, nil, fmt.Errorf("--cacertfile: %w", err)
		}
	case b.cfg.Secret != "":
		data, err := kube.SecretData(ctx, b.clients.Core, b.cfg.Secret)
		if err != nil {
			return tls.Certificate{}, nil, err
		}
		if data == nil {
			return tls.Certificate{}, nil, fmt.Errorf("secret %s not found", b.cfg.Secret)
		}
		certPEM, keyPEM, caPEM = data["tls.crt"], data["tls.key"], data["ca.crt"]
	default:
		return tls.Certificate{}, nil, fmt.Errorf("bridge mode needs a certificate: --secret or --certfile/--keyfile/--cacertfile")
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return cert, nil, fmt.Errorf("loading the bridge certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return cert, nil, fmt.Errorf("no CA certificate for peer verification (ca.crt / --cacertfile)")
	}
	return cert, pool, nil
}

func (b *broker) openBridge(ctx context.Context, kick func()) error {
	cert, pool, err := b.loadTLS(ctx)
	if err != nil {
		return err
	}
	// Until the first reconcile's plan hands it the meshes, the hello
	// tells only the port.
	opts := bridge.Options{
		Name: b.cfg.IfceName, ListenPort: b.cfg.BrokerPort, MTU: bridge.DefaultMTU,
		Certificate: cert, CAs: pool, Heartbeat: b.cfg.Keepalive,
		Hello: bridge.Hello{Port: b.cfg.AdvertisedPort}, Log: b.log,
		OnHello: func(link string, h bridge.Hello) {
			// The inbound update is always on, as in the original;
			// --dns-advertisement is the outbound side (the plan's hello).
			// The reconcile applies it, and retries it until it is written:
			// a hello comes once per connection, and a write lost to a
			// conflict or a busy API server must not wait for the next.
			b.inbound.put(link, h)
			kick()
		},
	}
	if b.cfg.AutoConnect {
		opts.OnUnknown = func(names []string, sent, got bridge.Hello) { b.autoConnect(ctx, names, sent, got) }
	}
	br, err := bridge.New(opts)
	if err != nil {
		return err
	}
	b.tun = br
	b.log.Info("bridge up", "device", b.cfg.IfceName, "port", b.cfg.BrokerPort)
	return nil
}

// helloFor picks the hello entry of a link's mesh.
func helloFor(h bridge.Hello, meshName string) *bridge.HelloMesh {
	for i := range h.Meshes {
		if h.Meshes[i].Mesh == meshName {
			return &h.Meshes[i]
		}
	}
	return nil
}

// inboundDNS keeps a link's spec.dns equal to what its peer advertised
// (the inbound update; cur is the link as the cache has it, nil when
// unknown). A peer that advertises nothing leaves spec.dns alone. The
// error is one worth retrying; a missing right is logged and not retried.
func (b *broker) inboundDNS(ctx context.Context, link string, h bridge.Hello, cur *v1alpha1.KubeLink) error {
	dns := advertisedDNS(cur, h)
	if dns == nil {
		return nil
	}
	if err := kube.PatchSpecDNS(ctx, b.clients.Dynamic, link, dns); err != nil {
		if apierrors.IsForbidden(err) {
			b.log.Error("DNS advertisement: the peer's DNS cannot be written into its KubeLink: the broker needs patch on kubelinks", "link", link, "err", err)
			return nil
		}
		b.log.Error("DNS advertisement", "link", link, "err", err)
		return err
	}
	b.log.Info("updated spec.dns from the peer's hello", "link", link, "dnsIP", dns.DNSIP, "domain", dns.BaseDomain)
	return nil
}

// advertisedDNS is the link's spec.dns with the DNS its peer advertised in
// the hello (service IP and cluster domain; omitDNSPropagation stays), or
// nil when the hello advertises none or spec.dns says the same already.
func advertisedDNS(cur *v1alpha1.KubeLink, h bridge.Hello) *v1alpha1.KubeLinkDNS {
	if cur == nil {
		return nil
	}
	meshName, _ := v1alpha1.SplitName(cur.Name)
	hm := helloFor(h, meshName)
	if hm == nil || hm.DNSIP == "" {
		return nil
	}
	dns := &v1alpha1.KubeLinkDNS{}
	if cur.Spec.DNS != nil {
		dns = cur.Spec.DNS.DeepCopy()
	}
	if dns.DNSIP == hm.DNSIP && dns.BaseDomain == hm.Domain {
		return nil
	}
	dns.DNSIP, dns.BaseDomain = hm.DNSIP, hm.Domain
	return dns
}

// autoConnect registers a peer with a valid certificate as a new KubeLink
// in every mesh both share: the meshes of the hello we sent it (the local
// ones) and of the hello it sent (h).
func (b *broker) autoConnect(ctx context.Context, names []string, sent, h bridge.Hello) {
	if len(names) == 0 {
		return
	}
	host := names[0]
	for _, hm := range h.Meshes {
		if helloFor(sent, hm.Mesh) == nil {
			continue
		}
		name := v1alpha1.JoinName(hm.Mesh, hm.Cluster)
		if b.watcher.Get(name) != nil {
			continue
		}
		if _, err := mesh.ParseAddressPrefix(hm.Address); err != nil {
			b.log.Warn("auto-connect: bad address in hello", "peer", host, "err", err)
			continue
		}
		l := &v1alpha1.KubeLink{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubelink.mandelsoft.org/auto-connect": "true"}},
			Spec: v1alpha1.KubeLinkSpec{
				ClusterAddress: hm.Address, CIDR: hm.CIDR,
				Endpoint: net.JoinHostPort(host, strconv.Itoa(h.Port)),
			},
		}
		if hm.DNSIP != "" || hm.Domain != "" {
			l.Spec.DNS = &v1alpha1.KubeLinkDNS{DNSIP: hm.DNSIP, BaseDomain: hm.Domain}
		}
		if err := kube.CreateLink(ctx, b.clients.Dynamic, l); err != nil {
			b.log.Error("auto-connect", "peer", host, "err", err)
			continue
		}
		b.log.Info("auto-connect: registered a new KubeLink", "link", name, "endpoint", l.Spec.Endpoint)
	}
}
