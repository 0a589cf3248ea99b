{{/*
Names. The chart's objects are named after the release ("RELEASE-kelemetry", or the release name alone when it
already contains the chart's name), cut to the 63 characters Kubernetes allows in a label value.
*/}}
{{- define "kelemetry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kelemetry.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* A name derived from the full name: "kelemetry.child" (list . "suffix"). */}}
{{- define "kelemetry.child" -}}
{{- $root := index . 0 }}
{{- printf "%s-%s" (include "kelemetry.fullname" $root | trunc (int (sub 62 (len (index . 1))))) (index . 1) | trimSuffix "-" }}
{{- end }}

{{- define "kelemetry.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kelemetry.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "kelemetry.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kelemetry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kelemetry.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kelemetry.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kelemetry.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The cluster name every object key starts with; required. */}}
{{- define "kelemetry.cluster" -}}
{{- required "cluster is required: the name of this cluster, the first part of every object's key" .Values.cluster }}
{{- end }}

{{/* Where the pod keeps its files. */}}
{{- define "kelemetry.dataDir" -}}/var/lib/kelemetry{{- end }}
{{- define "kelemetry.storePath" -}}/var/lib/kelemetry/store{{- end }}
{{- define "kelemetry.configPath" -}}/etc/kelemetry/config/kelemetry.yaml{{- end }}

{{/* Secret names: the user's existing ones, or the chart's. */}}
{{- define "kelemetry.webhookTokenSecret" -}}
{{- default (include "kelemetry.child" (list . "webhook-token")) .Values.webhook.token.existingSecret }}
{{- end }}
{{- define "kelemetry.webhookTlsSecret" -}}
{{- default (include "kelemetry.child" (list . "webhook-tls")) .Values.webhook.tls.existingSecret }}
{{- end }}

{{/* The webhook Service's name; the apiserver's webhook kubeconfig and the serving certificate name it. */}}
{{- define "kelemetry.webhookService" -}}
{{- include "kelemetry.child" (list . "webhook") }}
{{- end }}

{{/*
The URL the apiserver posts audit batches to: webhook.apiserverURL, else the Service's fixed clusterIP, else its
DNS name (which an apiserver on the host network usually cannot resolve: see values.yaml).
*/}}
{{- define "kelemetry.webhookURL" -}}
{{- if .Values.webhook.apiserverURL }}
{{- .Values.webhook.apiserverURL }}
{{- else }}
{{- $host := printf "%s.%s.svc" (include "kelemetry.webhookService" .) .Release.Namespace }}
{{- with .Values.webhook.service.clusterIP }}{{ $host = . }}{{ end }}
{{- printf "https://%s:%d/audit/%s" $host (int .Values.webhook.service.port) (include "kelemetry.cluster" .) }}
{{- end }}
{{- end }}

{{/*
The object watch's resources as kelemetry names them: `resource` for the core group, `resource.group` otherwise.
*/}}
{{- define "kelemetry.watchedNames" -}}
{{- $names := list }}
{{- range .Values.objectWatch.resources }}
{{- $group := .apiGroup }}
{{- range .resources }}
{{- if $group }}
{{- $names = append $names (printf "%s.%s" . $group) }}
{{- else }}
{{- $names = append $names . }}
{{- end }}
{{- end }}
{{- end }}
{{- toJson $names }}
{{- end }}

{{/* The Lease of the leader election (leaderElection.lease, or the release's full name). */}}
{{- define "kelemetry.leaseName" -}}
{{- default (include "kelemetry.fullname" .) .Values.leaderElection.lease }}
{{- end }}
