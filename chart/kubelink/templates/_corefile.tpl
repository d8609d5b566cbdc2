{{/* The kubelink DNS Corefile (plugin syntax: plugin/README.md). */}}
{{- define "kubelink.corefile" -}}
.:{{ .Values.dns.port }} {
    errors
    {{- if .Values.dns.log }}
    log
    {{- end }}
    health :8080 {
        lameduck 5s
    }
    ready :8181
    prometheus :{{ .Values.dns.metrics.port }}
    {{- if .Values.dns.cache.enabled }}
    cache {{ .Values.dns.cache.ttl }}
    {{- end }}
    kubelink {
        {{- if not .Values.mesh.name }}
        mesh-domain {{ .Values.mesh.domain }}
        cluster-name {{ .Values.cluster.name }}
        link-address {{ .Values.mesh.linkAddress }}
        {{- with .Values.mesh.globalDNSIP }}
        meshdns-service-ip {{ . }}
        {{- end }}
        {{- end }}
        cluster-domain {{ .Values.cluster.domain }}
        local-dns {{ include "kubelink.clusterDNSIP" . }}
        namespace {{ .Release.Namespace }}
        {{- if .Values.dns.clusterset.enabled }}
        clusterset
        {{- end }}
        ttl {{ .Values.dns.ttl }}
        {{- range .Values.dns.extraPluginOptions }}
        {{ . }}
        {{- end }}
    }
    {{- if .Values.dns.forwardOthers }}
    # The cluster DNS forwards the mesh domain, its reverse zone (and
    # clusterset.local) here: never send them back (a PTR of an unused mesh
    # address would loop).
    forward . {{ include "kubelink.clusterDNSIP" . }} {
        except {{ .Values.mesh.domain | trimSuffix "." }} {{ include "kubelink.meshReverseZone" . }}{{ if .Values.dns.clusterset.enabled }} clusterset.local{{ end }}
    }
    {{- end }}
    loop
    reload
}
{{- end -}}

{{/* The server block for the cluster's own CoreDNS: forward the mesh domain
     (the mesh network's PTR zone, and clusterset.local when the kubelink DNS
     serves it) to the kubelink DNS Service. */}}
{{- define "kubelink.stubServerBlock" -}}
{{- $ip := include "kubelink.dnsServiceIP" . -}}
{{- $port := .Values.dns.clusterDNSIntegration.port -}}
{{ .Values.mesh.domain | trimSuffix "." }}:{{ $port }}{{ if .Values.dns.clusterDNSIntegration.reverseZone }} {{ include "kubelink.meshNetwork" . }}:{{ $port }}{{ end }}{{ if .Values.dns.clusterset.enabled }} clusterset.local:{{ $port }}{{ end }} {
    errors
    cache {{ .Values.dns.cache.ttl }}
    forward . {{ $ip }}
}
{{- end -}}
