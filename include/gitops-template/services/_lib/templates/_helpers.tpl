{{/* Name of every object of the service: the release-independent service name. */}}
{{- define "service-lib.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "service-lib.selectorLabels" -}}
app.kubernetes.io/name: {{ include "service-lib.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "service-lib.labels" -}}
{{ include "service-lib.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.version | default .Chart.AppVersion | toString | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: release-platform
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
{{- end -}}

{{/* Images are pinned by digest once the platform has deployed one; a tag is only a fallback for local use. */}}
{{- define "service-lib.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default "latest" }}
{{- end -}}
{{- end -}}

{{/*
Everything a service needs, in one include: templates/service.yaml of each chart calls
it. A service's values.yaml only says what differs from "service-lib.defaults".
*/}}
{{- define "service-lib.all" -}}
{{- $values := mergeOverwrite (fromYaml (include "service-lib.defaults" .)) (deepCopy .Values) -}}
{{- $ctx := dict "Values" $values "Chart" .Chart "Release" .Release -}}
{{ include "service-lib.serviceaccount" $ctx }}
{{ include "service-lib.rbac" $ctx }}
{{ include "service-lib.deployment" $ctx }}
{{ include "service-lib.service" $ctx }}
{{ include "service-lib.pdb" $ctx }}
{{ include "service-lib.networkpolicy" $ctx }}
{{ include "service-lib.hpa" $ctx }}
{{- end -}}
