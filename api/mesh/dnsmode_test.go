package mesh

import (
	"strings"
	"testing"

	"github.com/kubelink/kubelink/api/v1alpha1"
)

func TestEffectiveDNSMode(t *testing.T) {
	dnsSpec := func(mode string, omit bool) func(*v1alpha1.KubeLinkSpec) {
		return func(s *v1alpha1.KubeLinkSpec) { s.DNS = &v1alpha1.KubeLinkDNS{Mode: mode, OmitDNSPropagation: &omit} }
	}
	access := func(s *v1alpha1.KubeLinkSpec) { s.APIAccess = &v1alpha1.KubeLinkAPIAccess{Name: "x"} }
	const k8s, dns, none = v1alpha1.DNSModeKubernetes, v1alpha1.DNSModeDNS, DNSPropagationNone
	for _, tc := range []struct {
		name string
		obj  *v1alpha1.KubeLink
		// want by default: "", auto, dns, kubernetes, none
		want [5]string
	}{
		{"no apiAccess", link("a", "", "192.168.0.12/24", "x", 0), [5]string{dns, dns, dns, k8s, none}},
		{"apiAccess", link("a", "", "192.168.0.12/24", "x", 0, access), [5]string{k8s, k8s, dns, k8s, none}},
		{"mode dns", link("a", "", "192.168.0.12/24", "x", 0, access, dnsSpec(dns, false)), [5]string{dns, dns, dns, dns, dns}},
		{"mode kubernetes", link("a", "", "192.168.0.12/24", "x", 0, dnsSpec(k8s, false)), [5]string{k8s, k8s, k8s, k8s, k8s}},
		{"omitDNSPropagation", link("a", "", "192.168.0.12/24", "x", 0, access, dnsSpec(k8s, true)), [5]string{none, none, none, none, none}},
		{"LocalLink", link("a", "", "192.168.0.12/24", "LocalLink", 0, access, dnsSpec(k8s, false)), [5]string{dns, dns, dns, dns, dns}},
	} {
		l, err := ParseLink(tc.obj)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for i, def := range []string{"", DNSPropagationAuto, dns, k8s, none} {
			if got := l.EffectiveDNSMode(def); got != tc.want[i] {
				t.Errorf("%s, default %q: %s, want %s", tc.name, def, got, tc.want[i])
			}
		}
	}
	_, err := ParseLink(link("a", "", "192.168.0.12/24", "x", 0, dnsSpec("forward", false)))
	if err == nil || !strings.Contains(err.Error(), "spec.dns.mode") {
		t.Errorf("bad mode: %v", err)
	}
}
