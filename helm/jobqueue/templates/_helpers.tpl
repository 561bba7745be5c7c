{{/* Names, labels and the values-derived numbers every template shares. */}}

{{- define "jobqueue.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* 52 characters leave room for the longest suffix (-worker-metrics) within 63. */}}
{{- define "jobqueue.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "jobqueue.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "jobqueue.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jobqueue.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "jobqueue.labels" -}}
helm.sh/chart: {{ include "jobqueue.chart" . }}
{{ include "jobqueue.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: jobqueue
{{- end }}

{{- define "jobqueue.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "jobqueue.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "jobqueue.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Where the data folder is mounted; the image's JOBQUEUE_DB_URL points there too. */}}
{{- define "jobqueue.dataDir" -}}
/var/lib/jobqueue
{{- end }}

{{- define "jobqueue.sqliteUrl" -}}
{{- printf "sqlite://%s/jobqueue.db?mode=rwc" (include "jobqueue.dataDir" .) }}
{{- end }}

{{- define "jobqueue.dbSecretName" -}}
{{- default (printf "%s-db" (include "jobqueue.fullname" .)) .Values.database.existingSecret }}
{{- end }}

{{- define "jobqueue.dbSecretKey" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecretKey }}
{{- else -}}
JOBQUEUE_DB_URL
{{- end }}
{{- end }}

{{- define "jobqueue.claimName" -}}
{{- default (printf "%s-data" (include "jobqueue.fullname" .)) .Values.persistence.existingClaim }}
{{- end }}

{{/*
The kubelet's deadline must outlast the service's own shutdown: readiness off and still
serving for the delay, then running calls get the grace, then open RPCs up to 5 s more
(DRAIN_SLACK in src/server.rs), plus a margin for the process to exit.
*/}}
{{- define "jobqueue.terminationGracePeriodSeconds" -}}
{{- $s := .Values.settings }}
{{- add (int $s.shutdownDelaySeconds) (int $s.shutdownGraceSeconds) 5 (int .Values.terminationGraceMarginSeconds) }}
{{- end }}

{{/*
The Deployments to render, as a YAML list: one of role `all`, or (split.enabled) one
`api` and one `worker`, each with its own replicas, resources and autoscaler.
*/}}
{{- define "jobqueue.components" -}}
{{- $full := include "jobqueue.fullname" . }}
{{- if .Values.split.enabled }}
- role: api
  name: {{ printf "%s-api" $full }}
  servesApi: true
  replicaCount: {{ .Values.split.api.replicaCount }}
  resources: {{ toJson .Values.split.api.resources }}
  autoscaling: {{ toJson .Values.split.api.autoscaling }}
- role: worker
  name: {{ printf "%s-worker" $full }}
  servesApi: false
  replicaCount: {{ .Values.split.worker.replicaCount }}
  resources: {{ toJson .Values.split.worker.resources }}
  autoscaling: {{ toJson .Values.split.worker.autoscaling }}
{{- else }}
- role: all
  name: {{ $full }}
  servesApi: true
  replicaCount: {{ .Values.replicaCount }}
  resources: {{ toJson .Values.resources }}
  autoscaling: {{ toJson .Values.autoscaling }}
{{- end }}
{{- end }}

{{/*
The same rules as values.schema.json, for installs that skip the schema: each refusal
says why and what to do instead.
*/}}
{{- define "jobqueue.validate" -}}
{{- $v := .Values }}
{{- $why := "SQLite runs exactly one replica, because two processes on one SQLite file over a network volume lose data. To run more, use PostgreSQL: set database.mode=postgres and database.url" }}
{{- if eq $v.database.mode "sqlite" }}
{{- if gt (int $v.replicaCount) 1 }}
{{- fail (printf "replicaCount=%d with database.mode=sqlite: %s." (int $v.replicaCount) $why) }}
{{- end }}
{{- if $v.autoscaling.enabled }}
{{- fail (printf "autoscaling.enabled=true with database.mode=sqlite: an autoscaler would start a second pod. %s." $why) }}
{{- end }}
{{- if $v.split.enabled }}
{{- fail (printf "split.enabled=true with database.mode=sqlite: api and worker pods would share the one database file. %s." $why) }}
{{- end }}
{{- if or $v.database.url $v.database.existingSecret }}
{{- fail "database.url and database.existingSecret are used only with database.mode=postgres; set database.mode=postgres, or leave them empty for SQLite." }}
{{- end }}
{{- else if eq $v.database.mode "postgres" }}
{{- if not (or $v.database.url $v.database.existingSecret) }}
{{- fail "database.mode=postgres needs database.url (postgres://user:password@host:5432/db) or database.existingSecret naming a Secret that holds it." }}
{{- end }}
{{- else }}
{{- fail (printf "database.mode must be sqlite or postgres, not %q." $v.database.mode) }}
{{- end }}
{{- range $c := include "jobqueue.components" . | fromYamlArray }}
{{- if and $c.autoscaling.enabled (gt (int $c.autoscaling.minReplicas) (int $c.autoscaling.maxReplicas)) }}
{{- fail (printf "the %s autoscaler's minReplicas (%d) is above its maxReplicas (%d)." $c.role (int $c.autoscaling.minReplicas) (int $c.autoscaling.maxReplicas)) }}
{{- end }}
{{- end }}
{{- if and $v.tls.clientCaSecret (not $v.tls.secret) }}
{{- fail "tls.clientCaSecret without tls.secret: client certificates are asked for over TLS only. Set tls.secret to the kubernetes.io/tls Secret to serve." }}
{{- end }}
{{- if and $v.tls.secret (or (eq (int $v.tls.healthPort) (int $v.service.port)) (and $v.metrics.enabled (eq (int $v.tls.healthPort) (int $v.metrics.port)))) }}
{{- fail (printf "tls.healthPort %d is already taken by the gRPC or metrics port; pick another." (int $v.tls.healthPort)) }}
{{- end }}
{{- if and (not $v.auth.keysSecret) (not $v.settings.insecureOpen) }}
{{- fail "settings.insecureOpen=false without auth.keysSecret: the pods would refuse to start, having no keys and an address others can reach. Set auth.keysSecret to a Secret holding the keys file, or settings.insecureOpen=true." }}
{{- end }}
{{- if lt (int $v.settings.shutdownDelaySeconds) 0 }}
{{- fail "settings.shutdownDelaySeconds must be 0 or more." }}
{{- end }}
{{- if lt (int $v.settings.shutdownGraceSeconds) 1 }}
{{- fail "settings.shutdownGraceSeconds must be 1 or more: the service refuses a zero JOBQUEUE_SHUTDOWN_GRACE." }}
{{- end }}
{{- if lt (int $v.terminationGraceMarginSeconds) 1 }}
{{- fail "terminationGraceMarginSeconds must be 1 or more, so the kubelet waits longer than the service's own shutdown." }}
{{- end }}
{{- range $name, $port := dict "service.port" $v.service.port "metrics.port" $v.metrics.port }}
{{- if or (lt (int $port) 1) (gt (int $port) 65535) }}
{{- fail (printf "%s must be a port from 1 to 65535, not %d." $name (int $port)) }}
{{- end }}
{{- end }}
{{- if and $v.metrics.enabled (eq (int $v.metrics.port) (int $v.service.port)) }}
{{- fail "metrics.port must differ from service.port: they are two listeners in one pod." }}
{{- end }}
{{- end }}

{{/*
settings.namespaceLimits as JOBQUEUE_NAMESPACE_LIMITS reads them:
NAME:jobs=N,concurrency=N,rate=N,burst=N;... (whole numbers written whole, not as 1e+06).
*/}}
{{- define "jobqueue.namespaceLimits" -}}
{{- $parts := list -}}
{{- range $name, $limit := . -}}
{{- $fields := list -}}
{{- range $key := list "jobs" "concurrency" "burst" -}}
{{- if hasKey $limit $key -}}
{{- $fields = append $fields (printf "%s=%d" $key (get $limit $key | int64)) -}}
{{- end -}}
{{- end -}}
{{- if hasKey $limit "rate" -}}
{{- $fields = append $fields (printf "rate=%v" (get $limit "rate")) -}}
{{- end -}}
{{- $parts = append $parts (printf "%s:%s" $name (join "," $fields)) -}}
{{- end -}}
{{- join ";" $parts -}}
{{- end -}}
