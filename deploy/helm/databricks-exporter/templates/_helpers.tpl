{{/* The chart's name, or nameOverride. */}}
{{- define "databricks-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The objects' name: the release's name when it contains the chart's, else both. */}}
{{- define "databricks-exporter.fullname" -}}
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

{{- define "databricks-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "databricks-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "databricks-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "databricks-exporter.labels" -}}
helm.sh/chart: {{ include "databricks-exporter.chart" . }}
{{ include "databricks-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: databricks-exporter
{{- end }}

{{- define "databricks-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "databricks-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "databricks-exporter.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- with .Values.image.digest }}@{{ . }}{{ end }}
{{- end }}

{{/* Where the state volume is mounted, and the state file on it. */}}
{{- define "databricks-exporter.stateDir" -}}/var/lib/databricks-exporter{{- end }}

{{/* The exporter's YAML config: `config`, then what the chart owns. */}}
{{- define "databricks-exporter.config" -}}
{{- if not .Values.workspaces }}
{{- fail "workspaces: give at least one workspace ({name, host}); see the chart's values.yaml" }}
{{- end }}
{{- $config := deepCopy .Values.config }}
{{- if .Values.sharding.enabled }}
{{- $_ := set $config "total_shards" (int .Values.sharding.shards) }}
{{- end }}
{{- $_ := set $config "workspaces" .Values.workspaces }}
{{- toYaml $config }}
{{- end }}

{{/* The pod template of the Deployment, or of the StatefulSet when sharded. */}}
{{- define "databricks-exporter.podTemplate" -}}
metadata:
  labels:
    {{- include "databricks-exporter.selectorLabels" . | nindent 4 }}
    {{- if .Values.workloadIdentity.enabled }}
    azure.workload.identity/use: "true"
    {{- end }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include "databricks-exporter.config" . | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "databricks-exporter.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
  {{- with .Values.image.pullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  {{- with .Values.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: exporter
      image: {{ include "databricks-exporter.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - --config=/etc/databricks-exporter/config.yaml
        {{- if .Values.persistence.enabled }}
        - --state-file={{ include "databricks-exporter.stateDir" . }}/state.json
        {{- end }}
        {{- if .Values.sharding.enabled }}
        # POD_NAME is <statefulset>-<ordinal>: --shard takes the ordinal from it.
        - --shard=$(POD_NAME)
        {{- end }}
        {{- range $name, $on := .Values.collectors }}
        {{- if not $on }}
        - --no-collector.{{ $name }}
        {{- end }}
        {{- end }}
        {{- if .Values.web.existingSecret }}
        - --web.config.file=/etc/databricks-exporter-web/{{ .Values.web.configKey }}
        {{- end }}
        {{- range .Values.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      {{- if or .Values.sharding.enabled .Values.extraEnv }}
      env:
        {{- if .Values.sharding.enabled }}
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
      {{- if or .Values.secret.existingSecret .Values.extraEnvFrom }}
      envFrom:
        {{- with .Values.secret.existingSecret }}
        - secretRef:
            name: {{ . }}
        {{- end }}
        {{- with .Values.extraEnvFrom }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
      ports:
        - name: metrics
          containerPort: 9180
          protocol: TCP
      {{- with .Values.livenessProbe }}
      livenessProbe:
        {{- include "databricks-exporter.probe" (dict "probe" . "web" $.Values.web) | nindent 8 }}
      {{- end }}
      {{- with .Values.readinessProbe }}
      readinessProbe:
        {{- include "databricks-exporter.probe" (dict "probe" . "web" $.Values.web) | nindent 8 }}
      {{- end }}
      {{- with .Values.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        - name: config
          mountPath: /etc/databricks-exporter
          readOnly: true
        {{- if .Values.persistence.enabled }}
        - name: state
          mountPath: {{ include "databricks-exporter.stateDir" . }}
        {{- end }}
        - name: tmp
          mountPath: /tmp
        {{- if .Values.web.existingSecret }}
        - name: web
          mountPath: /etc/databricks-exporter-web
          readOnly: true
        {{- end }}
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "databricks-exporter.fullname" . }}
    {{- if and .Values.persistence.enabled (not .Values.sharding.enabled) }}
    - name: state
      persistentVolumeClaim:
        claimName: {{ .Values.persistence.existingClaim | default (printf "%s-state" (include "databricks-exporter.fullname" .)) }}
    {{- end }}
    - name: tmp
      emptyDir: {}
    {{- if .Values.web.existingSecret }}
    - name: web
      secret:
        secretName: {{ .Values.web.existingSecret }}
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/* The state volume's storageClassName line, if any. */}}
{{- define "databricks-exporter.storageClass" -}}
{{- if .Values.persistence.storageClass }}
{{- if eq "-" .Values.persistence.storageClass }}
storageClassName: ""
{{- else }}
storageClassName: {{ .Values.persistence.storageClass | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* A probe of the values, as the web config lets the kubelet in: HTTPS with TLS (the kubelet
does not check the certificate), a TCP connect when client certificates are required. */}}
{{- define "databricks-exporter.probe" -}}
{{- $probe := deepCopy .probe }}
{{- if and .web.existingSecret .web.clientCertificates (hasKey $probe "httpGet") }}
{{- $port := $probe.httpGet.port }}
{{- $_ := unset $probe "httpGet" }}
{{- $_ := set $probe "tcpSocket" (dict "port" $port) }}
{{- else if and .web.existingSecret .web.tls (hasKey $probe "httpGet") }}
{{- $_ := set $probe.httpGet "scheme" "HTTPS" }}
{{- end }}
{{- toYaml $probe }}
{{- end }}
