{{/* Names ---------------------------------------------------------------- */}}

{{- define "kubelink.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The object-name prefix; short enough for "-broker" etc. to fit 63 characters. */}}
{{- define "kubelink.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kubelink.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels: call with (dict "ctx" $ "component" "dns"). */}}
{{- define "kubelink.labels" -}}
helm.sh/chart: {{ include "kubelink.chart" .ctx }}
{{ include "kubelink.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: kubelink
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "kubelink.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubelink.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end -}}

{{- define "kubelink.dnsName" -}}{{ include "kubelink.fullname" . }}-dns{{- end -}}
{{- define "kubelink.brokerName" -}}{{ include "kubelink.fullname" . }}-broker{{- end -}}
{{- define "kubelink.routerName" -}}{{ include "kubelink.fullname" . }}-router{{- end -}}

{{/* KubeLink object name of a cluster in this release's mesh: <mesh>--<cluster>. */}}
{{- define "kubelink.linkName" -}}
{{- if .mesh -}}{{ printf "%s--%s" .mesh .cluster }}{{- else -}}{{ .cluster }}{{- end -}}
{{- end -}}

{{- define "kubelink.localLinkName" -}}
{{- include "kubelink.linkName" (dict "mesh" .Values.mesh.name "cluster" .Values.cluster.name) -}}
{{- end -}}

{{- define "kubelink.leaseName" -}}
{{- default (include "kubelink.brokerName" .) .Values.broker.leaderElection.leaseName -}}
{{- end -}}

{{/* The broker's secret: the given one, or the one the chart creates / cert-manager issues. */}}
{{- define "kubelink.brokerSecretName" -}}
{{- if .Values.broker.secretName -}}
{{- .Values.broker.secretName -}}
{{- else if .Values.broker.certManager.enabled -}}
{{- include "kubelink.brokerName" . }}-tls
{{- else -}}
{{- include "kubelink.brokerName" . -}}
{{- end -}}
{{- end -}}

{{/* The chart creates the (empty) broker secret when nobody else provides it. */}}
{{- define "kubelink.createBrokerSecret" -}}
{{- if and .Values.broker.enabled (ne .Values.broker.mode "none") (not .Values.broker.secretName) (not .Values.broker.certManager.enabled) -}}true{{- end -}}
{{- end -}}

{{/* Images: call with (dict "image" .Values.images.netd "ctx" $). */}}
{{- define "kubelink.image" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{/* IPv4 arithmetic ------------------------------------------------------- */}}

{{- define "kubelink.ipv4ToInt" -}}
{{- $o := splitList "." . -}}
{{- add (mul (atoi (index $o 0)) 16777216) (mul (atoi (index $o 1)) 65536) (mul (atoi (index $o 2)) 256) (atoi (index $o 3)) -}}
{{- end -}}

{{- define "kubelink.intToIPv4" -}}
{{- $n := int64 . -}}
{{- printf "%d.%d.%d.%d" (div $n 16777216) (mod (div $n 65536) 256) (mod (div $n 256) 256) (mod $n 256) -}}
{{- end -}}

{{/* Block size of an IPv4 prefix length: 2^(32-prefix). */}}
{{- define "kubelink.blockSize" -}}
{{- $size := 1 -}}
{{- range until (sub 32 (int .) | int) -}}{{- $size = mul $size 2 -}}{{- end -}}
{{- $size -}}
{{- end -}}

{{/* The network of an IPv4 address/prefix: (list "192.168.0.11/24" "mesh.linkAddress") -> 192.168.0.0/24. */}}
{{- define "kubelink.network" -}}
{{- $cidr := index . 0 -}}
{{- $parts := splitList "/" $cidr -}}
{{- if or (contains ":" $cidr) (ne (len $parts) 2) -}}
{{- fail (printf "%s: %q: only IPv4 prefixes can be computed by the chart; give the value explicitly" (index . 1) $cidr) -}}
{{- end -}}
{{- $size := include "kubelink.blockSize" (index $parts 1) | int64 -}}
{{- $ip := include "kubelink.ipv4ToInt" (index $parts 0) | int64 -}}
{{- printf "%s/%s" (include "kubelink.intToIPv4" (mul (div $ip $size) $size)) (index $parts 1) -}}
{{- end -}}

{{/* The n-th address of an IPv4 CIDR: (list cidr n key) -> e.g. 100.64.0.10 for n=10. */}}
{{- define "kubelink.nthAddress" -}}
{{- $cidr := index . 0 -}}
{{- $n := index . 1 | int64 -}}
{{- $key := index . 2 -}}
{{- $parts := splitList "/" $cidr -}}
{{- if or (contains ":" $cidr) (ne (len $parts) 2) -}}
{{- fail (printf "%s is not set and cannot be derived from %q (IPv4 CIDRs only): set it explicitly" $key $cidr) -}}
{{- end -}}
{{- $size := include "kubelink.blockSize" (index $parts 1) | int64 -}}
{{- if le $size $n -}}
{{- fail (printf "%s is not set and %q has no address number %d: set it explicitly" $key $cidr $n) -}}
{{- end -}}
{{- $ip := include "kubelink.ipv4ToInt" (index $parts 0) | int64 -}}
{{- include "kubelink.intToIPv4" (add (mul (div $ip $size) $size) $n) -}}
{{- end -}}

{{/* Derived addresses ------------------------------------------------------ */}}

{{- define "kubelink.clusterDNSIP" -}}
{{- if .Values.cluster.dnsIP -}}{{ .Values.cluster.dnsIP }}{{- else -}}{{ include "kubelink.nthAddress" (list .Values.cluster.serviceCIDR 10 "cluster.dnsIP") }}{{- end -}}
{{- end -}}

{{- define "kubelink.dnsServiceIP" -}}
{{- if .Values.dns.serviceIP -}}{{ .Values.dns.serviceIP }}{{- else -}}{{ include "kubelink.nthAddress" (list .Values.cluster.serviceCIDR 11 "dns.serviceIP") }}{{- end -}}
{{- end -}}

{{- define "kubelink.meshNetwork" -}}
{{- include "kubelink.network" (list .Values.mesh.linkAddress "mesh.linkAddress") -}}
{{- end -}}

{{/* The in-addr.arpa zone covering the mesh network (whole octets: a /20 gives the /16 zone). */}}
{{- define "kubelink.meshReverseZone" -}}
{{- $parts := splitList "/" (include "kubelink.meshNetwork" .) -}}
{{- $octets := slice (splitList "." (index $parts 0)) 0 (div (atoi (index $parts 1)) 8 | int) -}}
{{- $rev := list -}}
{{- range $octets -}}{{- $rev = prepend $rev . -}}{{- end -}}
{{- append $rev "in-addr.arpa" | join "." -}}
{{- end -}}

{{/* Checks the schema cannot express; rendered once from the LocalLink. */}}
{{- define "kubelink.validate" -}}
{{- if and .Values.broker.enabled (eq .Values.broker.mode "bridge") (not .Values.broker.secretName) (not .Values.broker.certManager.enabled) -}}
{{- fail "broker.mode bridge needs a TLS secret: set broker.secretName to an existing kubernetes.io/tls secret or enable broker.certManager" -}}
{{- end -}}
{{- if and .Values.broker.certManager.enabled (not .Values.broker.certManager.issuerRef.name) -}}
{{- fail "broker.certManager.issuerRef.name is required when broker.certManager.enabled is true" -}}
{{- end -}}
{{- if and .Values.broker.certManager.enabled (not .Values.broker.certManager.dnsNames) (not .Values.broker.certManager.ipAddresses) -}}
{{- fail "broker.certManager.dnsNames (or ipAddresses) must name this gateway as peers see it in their KubeLink endpoint" -}}
{{- end -}}
{{- if and .Values.broker.enabled .Values.broker.podMode (not .Values.cluster.podCIDR) -}}
{{- fail "cluster.podCIDR is required when broker.podMode is true" -}}
{{- end -}}
{{- $seen := dict .Values.cluster.name true -}}
{{- range $i, $l := .Values.links -}}
{{- if hasKey $seen $l.name -}}
{{- fail (printf "links[%d].name: %q is used twice (or is cluster.name)" $i $l.name) -}}
{{- end -}}
{{- $_ := set $seen $l.name true -}}
{{- end -}}
{{- end -}}
