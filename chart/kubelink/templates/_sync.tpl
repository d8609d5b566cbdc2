{{/* netd sync ------------------------------------------------------------- */}}

{{- define "kubelink.syncName" -}}{{ include "kubelink.fullname" . }}-sync{{- end -}}
{{- define "kubelink.syncLeaseName" -}}{{ include "kubelink.syncName" . }}{{- end -}}
{{- define "kubelink.remoteReaderName" -}}{{ include "kubelink.fullname" . }}-mesh-reader{{- end -}}

{{/* "true" when the sync replicas elect a leader: more than one replica, or asked for. */}}
{{- define "kubelink.syncLeaderElection" -}}
{{- if or (gt (int .Values.sync.replicas) 1) .Values.sync.leaderElection -}}true{{- end -}}
{{- end -}}

{{/* The namespaces where netd sync may get secrets, one per line: sync.secretNamespaces, default the release namespace. */}}
{{- define "kubelink.syncSecretNamespaces" -}}
{{- $ns := .Values.sync.secretNamespaces | default (list .Release.Namespace) | uniq -}}
{{- join "\n" $ns -}}
{{- end -}}
