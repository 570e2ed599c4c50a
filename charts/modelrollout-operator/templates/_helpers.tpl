{{/* Chart name, overridable. */}}
{{- define "modelrollout.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: the release name alone when it already contains the chart name. */}}
{{- define "modelrollout.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "modelrollout.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelrollout.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "modelrollout.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "modelrollout.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelrollout
{{- end -}}

{{- define "modelrollout.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "modelrollout.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "modelrollout.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* kopf peering is on with several replicas (only one may work) or when asked for. */}}
{{- define "modelrollout.peering" -}}
{{- if or (gt (int .Values.replicaCount) 1) .Values.leaderElection.enabled -}}true{{- end -}}
{{- end -}}

{{/*
Sharded: more than one shard, one replica per shard, each acting on the rollouts of the shards it
holds through Leases. Sharding replaces kopf peering (every replica works, on its own share), so
asking for both is refused here rather than left to the operator to sort out at run time.
*/}}
{{- define "modelrollout.sharded" -}}
{{- if gt (int .Values.shards) 1 -}}
{{- if gt (int .Values.replicaCount) 1 -}}
{{- fail (printf "shards=%d and replicaCount=%d: with shards > 1 the chart runs one replica per shard (replicas: shards) and kopf peering, which replicaCount > 1 turns on, must be off; leave replicaCount at 1" (int .Values.shards) (int .Values.replicaCount)) -}}
{{- end -}}
{{- if .Values.leaderElection.enabled -}}
{{- fail (printf "shards=%d and leaderElection.enabled: sharding replaces kopf peering (every replica works, each on its own shards); set leaderElection.enabled=false" (int .Values.shards)) -}}
{{- end -}}
true
{{- end -}}
{{- end -}}

{{- define "modelrollout.peeringName" -}}
{{- default (include "modelrollout.fullname" .) .Values.leaderElection.peeringName -}}
{{- end -}}
