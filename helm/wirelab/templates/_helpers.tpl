{{/* Names ------------------------------------------------------------------------------ */}}

{{- define "wirelab.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* `<release>-wirelab`, or the release name alone when it already says wirelab. */}}
{{- define "wirelab.fullname" -}}
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

{{/* A component's object name: {{ include "wirelab.component" (list . "rest") }} */}}
{{- define "wirelab.component" -}}
{{- printf "%s-%s" (include "wirelab.fullname" (index . 0)) (index . 1) -}}
{{- end -}}

{{- define "wirelab.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "wirelab.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels ----------------------------------------------------------------------------- */}}

{{/* Selector labels of a component: (list . "rest") */}}
{{- define "wirelab.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "wirelab.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Every object's labels: (list . "rest") */}}
{{- define "wirelab.labels" -}}
{{- $root := index . 0 -}}
{{ include "wirelab.selectorLabels" . }}
app.kubernetes.io/part-of: wirelab
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version | replace "+" "_" }}
{{- with $root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
metadata: name, namespace, labels and annotations (common ones, plus an optional dict):
(list . "rest" "name") or (list . "influxdb" "name" (dict "helm.sh/resource-policy" "keep"))
*/}}
{{- define "wirelab.metadata" -}}
{{- $root := index . 0 -}}
{{- $annotations := deepCopy ($root.Values.commonAnnotations | default dict) -}}
{{- if gt (len .) 3 -}}
{{- $annotations = merge (index . 3) $annotations -}}
{{- end -}}
name: {{ index . 2 }}
namespace: {{ $root.Release.Namespace }}
labels:
  {{- include "wirelab.labels" (list $root (index . 1)) | nindent 2 }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Images and security -------------------------------------------------------------- */}}

{{- define "wirelab.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "wirelab.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* A container's securityContext; for third-party images pass their uid: (list . 999) */}}
{{- define "wirelab.containerSecurityContext" -}}
{{- $root := index . 0 -}}
{{- $ctx := deepCopy $root.Values.containerSecurityContext -}}
{{- if gt (len .) 1 -}}
{{- $_ := set $ctx "runAsUser" (index . 1) -}}
{{- $_ := set $ctx "runAsGroup" (index . 1) -}}
{{- end -}}
{{- toYaml $ctx -}}
{{- end -}}

{{/* A pod's securityContext; for third-party images pass their uid: (list . 472) */}}
{{- define "wirelab.podSecurityContext" -}}
{{- $root := index . 0 -}}
{{- $ctx := deepCopy $root.Values.podSecurityContext -}}
{{- if gt (len .) 1 -}}
{{- $_ := set $ctx "runAsUser" (index . 1) -}}
{{- $_ := set $ctx "runAsGroup" (index . 1) -}}
{{- $_ := set $ctx "fsGroup" (index . 1) -}}
{{- end -}}
{{- toYaml $ctx -}}
{{- end -}}

{{/* Secrets: generated once, kept on upgrade --------------------------------------------- */}}

{{/*
The value of `key` in Secret `name`: what the cluster already holds (so `helm upgrade` never
rotates a password that InfluxDB or Grafana stored at first start), else a new random one.
`helm template` has no cluster, so it always generates.
(list . "secret-name" "key" length)
*/}}
{{- define "wirelab.secretValue" -}}
{{- $root := index . 0 -}}
{{- $existing := lookup "v1" "Secret" $root.Release.Namespace (index . 1) -}}
{{- if and $existing $existing.data (hasKey $existing.data (index . 2)) -}}
{{- index $existing.data (index . 2) -}}
{{- else -}}
{{- randAlphaNum (index . 3) | b64enc -}}
{{- end -}}
{{- end -}}

{{/* Wiring between components ----------------------------------------------------------- */}}

{{- define "wirelab.redisSecretName" -}}
{{- if .Values.redis.enabled -}}
{{- default (include "wirelab.component" (list . "redis")) .Values.redis.auth.existingSecret -}}
{{- else -}}
{{- .Values.redis.external.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "wirelab.redisSecretKey" -}}
{{- if .Values.redis.enabled -}}
{{- .Values.redis.auth.existingSecretKey -}}
{{- else -}}
{{- .Values.redis.external.existingSecretKey -}}
{{- end -}}
{{- end -}}

{{/* Whether the targets have a Redis at all (in the release or external). */}}
{{- define "wirelab.hasRedis" -}}
{{- if or .Values.redis.enabled .Values.redis.external.url -}}true{{- end -}}
{{- end -}}

{{/* env of a target: WIRELAB_REDIS_URL with the password spliced in from its Secret. */}}
{{- define "wirelab.redisEnv" -}}
{{- $secret := include "wirelab.redisSecretName" . -}}
{{- if $secret }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ include "wirelab.redisSecretKey" . }}
{{- end }}
{{- if .Values.redis.enabled }}
- name: WIRELAB_REDIS_URL
  value: {{ printf "redis://:$(REDIS_PASSWORD)@%s:6379/0" (include "wirelab.component" (list . "redis")) | quote }}
{{- else if .Values.redis.external.url }}
{{- $url := urlParse .Values.redis.external.url }}
- name: WIRELAB_REDIS_URL
  {{- if $secret }}
  value: {{ printf "%s://:$(REDIS_PASSWORD)@%s%s" $url.scheme $url.host $url.path | quote }}
  {{- else }}
  value: {{ .Values.redis.external.url | quote }}
  {{- end }}
{{- end }}
{{- end -}}

{{- define "wirelab.influxSecretName" -}}
{{- if .Values.influxdb.enabled -}}
{{- default (include "wirelab.component" (list . "influxdb")) .Values.influxdb.auth.existingSecret -}}
{{- else -}}
{{- .Values.influxdb.external.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "wirelab.influxTokenKey" -}}
{{- if .Values.influxdb.enabled -}}admin-token{{- else -}}{{ .Values.influxdb.external.existingSecretKey }}{{- end -}}
{{- end -}}

{{/* The InfluxDB the release writes to and Grafana reads: its http(s) URL, or nothing. */}}
{{- define "wirelab.influxUrl" -}}
{{- if .Values.influxdb.enabled -}}
{{- printf "http://%s:8086" (include "wirelab.component" (list . "influxdb")) -}}
{{- else -}}
{{- .Values.influxdb.external.url | trimSuffix "/" -}}
{{- end -}}
{{- end -}}

{{- define "wirelab.influxOrg" -}}
{{- if .Values.influxdb.enabled }}{{ .Values.influxdb.org }}{{ else }}{{ .Values.influxdb.external.org }}{{ end -}}
{{- end -}}

{{- define "wirelab.influxBucket" -}}
{{- if .Values.influxdb.enabled }}{{ .Values.influxdb.bucket }}{{ else }}{{ .Values.influxdb.external.bucket }}{{ end -}}
{{- end -}}

{{/* wirelab's sink URL for that InfluxDB (influxdb2://, or influxdb2+https:// for TLS). */}}
{{- define "wirelab.influxSink" -}}
{{- $url := include "wirelab.influxUrl" . -}}
{{- if $url -}}
{{- $parsed := urlParse $url -}}
{{- $scheme := ternary "influxdb2+https" "influxdb2" (eq $parsed.scheme "https") -}}
{{- printf "%s://%s%s?org=%s&bucket=%s" $scheme $parsed.host $parsed.path (include "wirelab.influxOrg" . | urlquery) (include "wirelab.influxBucket" . | urlquery) -}}
{{- end -}}
{{- end -}}

{{/* Target protocols in port order, and the enabled ones. */}}
{{- define "wirelab.protocols" -}}rest sse ws grpc{{- end -}}

{{/* Whether the release runs any target at all. */}}
{{- define "wirelab.hasTargets" -}}
{{- range $protocol := splitList " " (include "wirelab.protocols" .) }}
{{- if (index $.Values.targets $protocol).enabled }}true{{ end }}
{{- end }}
{{- end -}}

{{/* The targets' admin token: given (targets.admin.existingSecret) or generated by targets.yaml. */}}
{{- define "wirelab.adminSecretName" -}}
{{- default (include "wirelab.component" (list . "admin")) .Values.targets.admin.existingSecret -}}
{{- end -}}

{{- define "wirelab.adminSecretKey" -}}
{{- if .Values.targets.admin.existingSecret -}}{{ .Values.targets.admin.existingSecretKey }}{{- else -}}admin-token{{- end -}}
{{- end -}}

{{/* env of the targets (which require it) and the master (which sends it). */}}
{{- define "wirelab.adminTokenEnv" -}}
- name: WIRELAB_ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "wirelab.adminSecretName" . }}
      key: {{ include "wirelab.adminSecretKey" . }}
{{- end -}}

{{/* Whether this release's targets serve TLS (targets.tls.secretName). */}}
{{- define "wirelab.targetsTls" -}}
{{- if .Values.targets.tls.secretName }}true{{ end -}}
{{- end -}}

{{/* Where the target TLS Secret and the users' CA bundle are mounted. */}}
{{- define "wirelab.tlsDir" -}}/etc/wirelab/tls{{- end -}}
{{- define "wirelab.caFile" -}}/etc/wirelab/ca/ca.crt{{- end -}}

{{/* The URL users reach a protocol's target at: run.targetUrls wins, else our Service
(https://, wss://, grpcs:// when the targets serve TLS). */}}
{{- define "wirelab.targetUrl" -}}
{{- $root := index . 0 -}}
{{- $protocol := index . 1 -}}
{{- $given := index $root.Values.run.targetUrls $protocol -}}
{{- $target := index $root.Values.targets $protocol -}}
{{- if $given -}}
{{- $given -}}
{{- else if $target.enabled -}}
{{- $host := include "wirelab.component" (list $root $protocol) -}}
{{- $tls := include "wirelab.targetsTls" $root -}}
{{- if eq $protocol "grpc" -}}
{{- printf "%sdns:///%s-headless:%d" (ternary "grpcs://" "" (eq $tls "true")) $host (int $target.port) -}}
{{- else if eq $protocol "ws" -}}
{{- printf "%s://%s:%d" (ternary "wss" "ws" (eq $tls "true")) $host (int $target.port) -}}
{{- else -}}
{{- printf "%s://%s:%d" (ternary "https" "http" (eq $tls "true")) $host (int $target.port) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Whether the user gave the load side files (run.scenarioFile, run.locustfile): the run ConfigMap. */}}
{{- define "wirelab.hasRunFiles" -}}
{{- if or .Values.run.scenarioFile .Values.run.locustfile }}true{{ end -}}
{{- end -}}

{{/* The web UI's login (lab mode): the password from its Secret, given or generated by web-secret.yaml. */}}
{{- define "wirelab.webSecretName" -}}
{{- default (include "wirelab.component" (list . "web")) .Values.master.webLogin.existingSecret -}}
{{- end -}}

{{- define "wirelab.webSecretKey" -}}
{{- if .Values.master.webLogin.existingSecret -}}{{ .Values.master.webLogin.existingSecretKey }}{{- else -}}web-password{{- end -}}
{{- end -}}

{{/* env of the lab-mode master: `wirelab cluster ui` refuses to start without both. */}}
{{- define "wirelab.webLoginEnv" -}}
- name: WIRELAB_WEB_USER
  value: {{ .Values.master.webLogin.username | quote }}
- name: WIRELAB_WEB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "wirelab.webSecretName" . }}
      key: {{ include "wirelab.webSecretKey" . }}
{{- end -}}

{{/* The env every load-side container (master, workers) gets: the settings of
`wirelab cluster master|ui|worker` (see `wirelab cluster --help`). */}}
{{- define "wirelab.runEnv" -}}
- name: WIRELAB_RUN_SCENARIO
  value: {{ ternary "/opt/wirelab/run/scenario.yaml" .Values.run.scenario (ne .Values.run.scenarioFile "") | quote }}
{{- if .Values.run.locustfile }}
- name: WIRELAB_RUN_LOCUSTFILE
  value: /opt/wirelab/run/locustfile.py
{{- end }}
{{- with .Values.run.protocols }}
- name: WIRELAB_RUN_PROTOCOLS
  value: {{ join "," . | quote }}
{{- end }}
{{- with .Values.run.users }}
- name: WIRELAB_RUN_USERS
  value: {{ . | quote }}
{{- end }}
{{- with .Values.run.spawnRate }}
- name: WIRELAB_RUN_SPAWN_RATE
  value: {{ . | quote }}
{{- end }}
{{- with .Values.run.duration }}
- name: WIRELAB_RUN_DURATION
  value: {{ . | quote }}
{{- end }}
{{- with .Values.run.arrivalRate }}
- name: WIRELAB_RUN_ARRIVAL_RATE
  value: {{ . | quote }}
{{- end }}
{{- with .Values.run.thresholds }}
- name: WIRELAB_RUN_THRESHOLDS
  value: {{ join "\n" . | quote }}
{{- end }}
- name: WIRELAB_RUN_WORKERS
  value: {{ .Values.workers.replicas | quote }}
{{- with .Values.run.workersMaxWaitSeconds }}
- name: WIRELAB_RUN_WORKERS_MAX_WAIT
  value: {{ printf "%ds" (int .) | quote }}
{{- end }}
{{- with .Values.run.targetsMaxWaitSeconds }}
- name: WIRELAB_RUN_TARGETS_MAX_WAIT
  value: {{ printf "%ds" (int .) | quote }}
{{- end }}
- name: WIRELAB_MASTER_HOST
  value: {{ include "wirelab.component" (list . "master") }}
- name: WIRELAB_MASTER_PORT
  value: {{ .Values.master.service.masterPort | quote }}
- name: WIRELAB_WEB_PORT
  value: {{ .Values.master.service.webPort | quote }}
- name: WIRELAB_RUN_REPORT_DIR
  value: /reports
- name: WIRELAB_RUN_SCRATCH_DIR
  value: /tmp/wirelab
{{- range $protocol := splitList " " (include "wirelab.protocols" .) }}
{{- $url := include "wirelab.targetUrl" (list $ $protocol) }}
{{- if $url }}
- name: {{ ternary "WIRELAB_GRPC_TARGET" (printf "WIRELAB_%s_URL" (upper $protocol)) (eq $protocol "grpc") }}
  value: {{ $url | quote }}
{{- end }}
{{- end }}
{{- $sinks := .Values.run.sinks }}
{{- with include "wirelab.influxSink" . }}
{{- $sinks = append $sinks . }}
{{- end }}
- name: WIRELAB_SINKS
  value: {{ join "," $sinks | quote }}
{{- $influxSecret := include "wirelab.influxSecretName" . }}
{{- if and (include "wirelab.influxUrl" .) $influxSecret }}
- name: WIRELAB_INFLUX_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $influxSecret }}
      key: {{ include "wirelab.influxTokenKey" . }}
{{- end }}
{{- if .Values.run.tls.caSecret.name }}
- name: WIRELAB_CA_FILE
  value: {{ include "wirelab.caFile" . }}
{{- end }}
{{- with .Values.run.tokenSecret.name }}
- name: WIRELAB_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.run.tokenSecret.key }}
{{- end }}
{{- range $name, $value := .Values.run.env }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
- name: HOME
  value: /tmp
{{- if .Values.run.extraPipPackages }}
- name: PYTHONPATH
  value: /opt/wirelab/extra
{{- end }}
{{- end -}}

{{/* The orchestrator's settings (master only): where the targets are and what they're called. */}}
{{- define "wirelab.orchestratorEnv" -}}
- name: WIRELAB_ORCHESTRATOR
  value: kubernetes
- name: WIRELAB_K8S_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: WIRELAB_K8S_INSTANCE
  value: {{ .Release.Name | quote }}
- name: WIRELAB_K8S_NAME_PREFIX
  value: {{ printf "%s-" (include "wirelab.fullname" .) | quote }}
{{- $enabled := list }}
{{- range $protocol := splitList " " (include "wirelab.protocols" .) }}
{{- if (index $.Values.targets $protocol).enabled }}
{{- $enabled = append $enabled $protocol }}
{{- end }}
{{- end }}
{{- if $enabled }}
{{/* What a scenario's `service: all` means: the Deployments this release runs (and its Role names). */}}
- name: WIRELAB_K8S_SERVICES
  value: {{ join "," $enabled | quote }}
{{- end }}
{{- if include "wirelab.hasTargets" . }}
{{/* drop_connections and the target monitor call the targets' admin ports with it. */}}
{{ include "wirelab.adminTokenEnv" . }}
{{- end }}
{{- end -}}

{{- define "wirelab.runEnvFrom" -}}
{{- with .Values.run.envFromSecrets }}
envFrom:
{{- range . }}
  - secretRef:
      name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Volumes of the load-side pods: the run ConfigMap, scratch, reports, extra packages. */}}
{{- define "wirelab.runVolumes" -}}
{{- if include "wirelab.hasRunFiles" . }}
- name: run
  configMap:
    name: {{ include "wirelab.component" (list . "run") }}
{{- end }}
- name: tmp
  emptyDir: {}
- name: reports
  {{- if .Values.run.reports.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ .Values.run.reports.existingClaim }}
  {{- else }}
  emptyDir: {}
  {{- end }}
{{- if .Values.run.extraPipPackages }}
- name: extra
  emptyDir: {}
{{- end }}
{{- include "wirelab.caVolume" . }}
{{- end -}}

{{/* The users' CA bundle: only its one key, so a Secret that also holds a private key (a
cert-manager TLS Secret) never puts that key in a load-side pod. */}}
{{- define "wirelab.caVolume" -}}
{{- with .Values.run.tls.caSecret.name }}
- name: ca
  secret:
    secretName: {{ . }}
    defaultMode: 0444
    items:
      - key: {{ $.Values.run.tls.caSecret.key }}
        path: ca.crt
{{- end }}
{{- end -}}

{{- define "wirelab.caVolumeMount" -}}
{{- if .Values.run.tls.caSecret.name }}
- name: ca
  mountPath: {{ include "wirelab.caFile" . | dir }}
  readOnly: true
{{- end }}
{{- end -}}

{{- define "wirelab.runVolumeMounts" -}}
{{- if include "wirelab.hasRunFiles" . }}
- name: run
  mountPath: /opt/wirelab/run
  readOnly: true
{{- end }}
- name: tmp
  mountPath: /tmp
- name: reports
  mountPath: /reports
{{- if .Values.run.extraPipPackages }}
- name: extra
  mountPath: /opt/wirelab/extra
  readOnly: true
{{- end }}
{{- include "wirelab.caVolumeMount" . }}
{{- end -}}

{{/* Init container installing run.extraPipPackages into the `extra` volume. */}}
{{- define "wirelab.pipInit" -}}
{{- if .Values.run.extraPipPackages }}
initContainers:
  - name: pip-install
    image: {{ include "wirelab.image" . }}
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    command: ["python", "-m", "pip"]
    args:
      - install
      - --no-cache-dir
      - --disable-pip-version-check
      - --target
      - /opt/wirelab/extra
      # The image's pins: an extra package never swaps a version wirelab was tested with.
      - --constraint
      - /opt/wirelab/constraints.txt
      {{- with .Values.run.pipIndexUrl }}
      - --index-url
      - {{ . }}
      {{- end }}
      {{- range .Values.run.extraPipPackages }}
      - {{ . | quote }}
      {{- end }}
    env:
      - name: HOME
        value: /tmp
    resources:
      {{- toYaml .Values.workers.resources | nindent 6 }}
    securityContext:
      {{- include "wirelab.containerSecurityContext" (list .) | nindent 6 }}
    volumeMounts:
      - name: extra
        mountPath: /opt/wirelab/extra
      - name: tmp
        mountPath: /tmp
{{- end }}
{{- end -}}

{{/* Liveness of a worker: it holds an established TCP connection to the master's port. */}}
{{- define "wirelab.workerProbe" -}}
exec:
  command:
    - sh
    - -c
    # /proc/net/tcp{,6}: "sl local remote st ..."; remote port in hex, state 01 = ESTABLISHED.
    - {{ printf "grep -qE ' [0-9A-F]+:%04X 01 ' /proc/net/tcp /proc/net/tcp6" (int .Values.master.service.masterPort) | quote }}
{{- end -}}

{{/* Consistency checks that a schema cannot express ------------------------------------- */}}
{{- define "wirelab.validate" -}}
{{- $drain := .Values.targets.drain -}}
{{- if ge (int $drain.drainDelaySeconds) (int $drain.graceSeconds) -}}
{{- fail "targets.drain.drainDelaySeconds must be below targets.drain.graceSeconds: the drain delay is part of the grace period" -}}
{{- end -}}
{{- range $protocol := splitList " " (include "wirelab.protocols" .) -}}
{{- $target := index $.Values.targets $protocol -}}
{{- if and $target.enabled (eq (int $target.port) (int $.Values.targets.admin.port)) -}}
{{- fail (printf "targets.admin.port %d is also targets.%s.port: the admin port needs its own" (int $.Values.targets.admin.port) $protocol) -}}
{{- end -}}
{{- end -}}
{{- if not (has .Values.mode (list "lab" "job" "none")) -}}
{{- fail "mode must be lab, job or none" -}}
{{- end -}}
{{- if and (not .Values.influxdb.enabled) .Values.influxdb.external.url (not .Values.influxdb.external.existingSecret) -}}
{{- fail "influxdb.external.url needs influxdb.external.existingSecret (a token; never in values)" -}}
{{- end -}}
{{- if and (not .Values.influxdb.enabled) .Values.influxdb.external.url (or (not .Values.influxdb.external.org) (not .Values.influxdb.external.bucket)) -}}
{{- fail "influxdb.external.url needs influxdb.external.org and influxdb.external.bucket" -}}
{{- end -}}
{{- end -}}

{{/* Job mode: the deadline of the master and worker Jobs (the whole run plus set-up). */}}
{{- define "wirelab.jobDeadline" -}}
{{- if .Values.master.job.activeDeadlineSeconds -}}
{{- .Values.master.job.activeDeadlineSeconds -}}
{{- else -}}
{{- $duration := 3600 -}}
{{- with .Values.run.duration -}}
{{- $duration = include "wirelab.seconds" . | int -}}
{{- end -}}
{{- add $duration 1800 -}}
{{- end -}}
{{- end -}}

{{/* "90s", "30m", "1.5h", "45" -> whole seconds (wirelab's duration syntax, units.py). */}}
{{- define "wirelab.seconds" -}}
{{- $text := toString . | trim -}}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $text -}}
{{- $unit := trimPrefix $number $text | trim -}}
{{- $factor := get (dict "" 1.0 "s" 1.0 "m" 60.0 "h" 3600.0 "ms" 0.001 "us" 0.000001 "µs" 0.000001) $unit -}}
{{- mulf (float64 $number) $factor | ceil | int -}}
{{- end -}}

{{/* A podSelector peer of one component of this release: (list . "worker") */}}
{{- define "wirelab.np.peer" -}}
- podSelector:
    matchLabels:
      {{- include "wirelab.selectorLabels" . | nindent 6 }}
{{- end -}}

{{/* The port of a URL: explicit, else the scheme's (redis 6379, http 80, https 443). */}}
{{- define "wirelab.urlPort" -}}
{{- $u := urlParse . -}}
{{- $hostPort := splitList ":" $u.host -}}
{{- if gt (len $hostPort) 1 -}}
{{- last $hostPort -}}
{{- else -}}
{{- get (dict "redis" "6379" "rediss" "6379" "http" "80" "https" "443") $u.scheme | default "443" -}}
{{- end -}}
{{- end -}}
