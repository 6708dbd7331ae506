{{/* Names, labels and the pieces every Ray pod shares. */}}

{{- define "cvat-ray.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "cvat-ray.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "cvat-ray.image" -}}
{{- printf "%s:%s" .Values.image.repository (default (printf "%s-cpu" .Chart.AppVersion) .Values.image.tag) -}}
{{- end -}}

{{- define "cvat-ray.gpuImage" -}}
{{- printf "%s:%s" .Values.image.repository (default (printf "%s-gpu" .Chart.AppVersion) .Values.image.gpuTag) -}}
{{- end -}}

{{- define "cvat-ray.configName" -}}{{ include "cvat-ray.fullname" . }}-settings{{- end -}}

{{- define "cvat-ray.secretName" -}}
{{- default (printf "%s-settings" (include "cvat-ray.fullname" .)) .Values.existingSecret -}}
{{- end -}}

{{- define "cvat-ray.tokenSecretName" -}}
{{- default (printf "%s-ray-token" (include "cvat-ray.fullname" .)) .Values.rayAuth.existingSecret -}}
{{- end -}}

{{- define "cvat-ray.claimName" -}}
{{- default (printf "%s-data" (include "cvat-ray.fullname" .)) .Values.persistence.existingClaim -}}
{{- end -}}

{{/* The settings' digest: a change gives the Ray pods a new template, so KubeRay rolls the
     cluster (blue/green) and the new pods read the new environment. */}}
{{- define "cvat-ray.settingsChecksum" -}}
{{- list (include "cvat-ray.configData" .) (include "cvat-ray.secretData" .) | toJson | sha256sum -}}
{{- end -}}

{{/* ConfigMap data: the non-secret CVAT_RAY_* settings and Ray's environment. */}}
{{- define "cvat-ray.configData" -}}
CVAT_RAY_DATA_DIR: {{ .Values.dataDir | quote }}
CVAT_RAY_BACKGROUND__LAUNCHER: "ray"
CVAT_RAY_ADMIN_USERNAME: {{ .Values.admin.username | quote }}
{{- with .Values.admin.email }}
CVAT_RAY_ADMIN_EMAIL: {{ . | quote }}
{{- end }}
{{- if .Values.redis.url }}
CVAT_RAY_CACHE__BACKEND: "redis"
{{- end }}
{{- if .Values.ingress.enabled }}
CVAT_RAY_SERVER__PUBLIC_URL: {{ printf "%s://%s" (ternary "https" "http" (not (empty .Values.ingress.tls.secretName))) .Values.ingress.host | quote }}
{{- if .Values.ingress.tls.secretName }}
CVAT_RAY_AUTH__COOKIE_SECURE: "true"
{{- end }}
{{- end }}
{{- if .Values.analytics.enabled }}
CVAT_RAY_ANALYTICS__ENABLED: "true"
CVAT_RAY_ANALYTICS__HOST: {{ required "analytics.clickhouse.host is required when analytics is on" .Values.analytics.clickhouse.host | quote }}
CVAT_RAY_ANALYTICS__PORT: {{ .Values.analytics.clickhouse.port | quote }}
CVAT_RAY_ANALYTICS__USER: {{ .Values.analytics.clickhouse.user | quote }}
CVAT_RAY_ANALYTICS__DATABASE: {{ .Values.analytics.clickhouse.database | quote }}
CVAT_RAY_ANALYTICS__SECURE: {{ .Values.analytics.clickhouse.secure | quote }}
{{- end }}
{{- range $key, $value := .Values.settings }}
{{ $key }}: {{ $value | toString | quote }}
{{- end }}
{{- range $key, $value := .Values.rayEnv }}
{{ $key }}: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{/* Secret stringData: the secret settings that are set. */}}
{{- define "cvat-ray.secretData" -}}
{{- with .Values.database.url }}
CVAT_RAY_DATABASE__URL: {{ . | quote }}
{{- end }}
{{- with .Values.admin.password }}
CVAT_RAY_ADMIN_PASSWORD: {{ . | quote }}
{{- end }}
{{- with .Values.redis.url }}
CVAT_RAY_REDIS__URL: {{ . | quote }}
CVAT_RAY_CACHE__REDIS_URL: {{ . | quote }}
{{- end }}
{{- with .Values.cloud.credentialsKey }}
CVAT_RAY_CLOUD__CREDENTIALS_KEY: {{ . | quote }}
{{- end }}
{{- with .Values.ldap.bindPassword }}
CVAT_RAY_LDAP__BIND_PASSWORD: {{ . | quote }}
{{- end }}
{{- if and .Values.analytics.enabled .Values.analytics.clickhouse.password }}
CVAT_RAY_ANALYTICS__PASSWORD: {{ .Values.analytics.clickhouse.password | quote }}
{{- end }}
{{- range $key, $value := .Values.secretSettings }}
{{ $key }}: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{/* envFrom of every cvat-ray container. */}}
{{- define "cvat-ray.envFrom" -}}
- configMapRef:
    name: {{ include "cvat-ray.configName" . }}
- secretRef:
    name: {{ include "cvat-ray.secretName" . }}
{{- end -}}

{{- define "cvat-ray.volumeMounts" -}}
- name: data
  mountPath: {{ .Values.dataDir }}
- name: dshm
  mountPath: /dev/shm
{{- end -}}

{{- define "cvat-ray.volumes" -}}
- name: data
  persistentVolumeClaim:
    claimName: {{ include "cvat-ray.claimName" . }}
- name: dshm
  emptyDir:
    medium: Memory
{{- end -}}

{{- define "cvat-ray.podScheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "cvat-ray.pullSecrets" -}}
{{- with .Values.image.pullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The Ray cluster (RayClusterSpec) the RayService runs, and a dataset RayJob of its own
     (own: no autoscaled CPU group minimum, GPU workers when on). */}}
{{- define "cvat-ray.rayClusterSpec" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
rayVersion: {{ $v.rayVersion | quote }}
enableInTreeAutoscaling: {{ $v.autoscaler.enabled }}
{{- if $v.autoscaler.enabled }}
autoscalerOptions:
  version: v2
  upscalingMode: {{ $v.autoscaler.upscalingMode }}
  idleTimeoutSeconds: {{ $v.autoscaler.idleTimeoutSeconds }}
  resources:
    {{- toYaml $v.autoscaler.resources | nindent 4 }}
{{- end }}
{{- if $v.rayAuth.enabled }}
authOptions:
  mode: token
  secretName: {{ include "cvat-ray.tokenSecretName" $root }}
{{- end }}
headGroupSpec:
  rayStartParams:
    {{- toYaml $v.head.rayStartParams | nindent 4 }}
  template:
    metadata:
      labels:
        {{- include "cvat-ray.labels" $root | nindent 8 }}
        app.kubernetes.io/component: ray-head
      annotations:
        checksum/settings: {{ include "cvat-ray.settingsChecksum" $root }}
        {{- with $v.head.annotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- include "cvat-ray.pullSecrets" $root | nindent 6 }}
      {{- include "cvat-ray.podScheduling" $v.head | nindent 6 }}
      containers:
        - name: ray-head
          image: {{ include "cvat-ray.image" $root }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          ports:
            - {containerPort: 6379, name: gcs-server}
            - {containerPort: 8265, name: dashboard}
            - {containerPort: 10001, name: client}
            - {containerPort: 8000, name: serve}
          envFrom:
            {{- include "cvat-ray.envFrom" $root | nindent 12 }}
          resources:
            {{- toYaml $v.head.resources | nindent 12 }}
          volumeMounts:
            {{- include "cvat-ray.volumeMounts" $root | nindent 12 }}
      volumes:
        {{- include "cvat-ray.volumes" $root | nindent 8 }}
workerGroupSpecs:
{{- if $v.workers.cpu.enabled }}
  {{- $w := $v.workers.cpu }}
  - groupName: cpu-workers
    replicas: {{ if .own }}{{ $w.minReplicas }}{{ else }}{{ $w.replicas }}{{ end }}
    minReplicas: {{ $w.minReplicas }}
    maxReplicas: {{ $w.maxReplicas }}
    idleTimeoutSeconds: {{ $w.idleTimeoutSeconds }}
    rayStartParams:
      {{- toYaml $w.rayStartParams | nindent 6 }}
    template:
      metadata:
        labels:
          {{- include "cvat-ray.labels" $root | nindent 10 }}
          app.kubernetes.io/component: ray-worker
        annotations:
          checksum/settings: {{ include "cvat-ray.settingsChecksum" $root }}
      spec:
        {{- include "cvat-ray.pullSecrets" $root | nindent 8 }}
        {{- include "cvat-ray.podScheduling" $w | nindent 8 }}
        containers:
          - name: ray-worker
            image: {{ include "cvat-ray.image" $root }}
            imagePullPolicy: {{ $v.image.pullPolicy }}
            envFrom:
              {{- include "cvat-ray.envFrom" $root | nindent 14 }}
            resources:
              {{- toYaml $w.resources | nindent 14 }}
            volumeMounts:
              {{- include "cvat-ray.volumeMounts" $root | nindent 14 }}
        volumes:
          {{- include "cvat-ray.volumes" $root | nindent 10 }}
{{- end }}
{{- if $v.workers.gpu.enabled }}
  {{- $w := $v.workers.gpu }}
  - groupName: gpu-workers
    replicas: {{ $w.replicas }}
    minReplicas: {{ $w.minReplicas }}
    maxReplicas: {{ $w.maxReplicas }}
    idleTimeoutSeconds: {{ $w.idleTimeoutSeconds }}
    rayStartParams:
      {{- toYaml $w.rayStartParams | nindent 6 }}
    template:
      metadata:
        labels:
          {{- include "cvat-ray.labels" $root | nindent 10 }}
          app.kubernetes.io/component: ray-gpu-worker
        annotations:
          checksum/settings: {{ include "cvat-ray.settingsChecksum" $root }}
      spec:
        {{- include "cvat-ray.pullSecrets" $root | nindent 8 }}
        {{- include "cvat-ray.podScheduling" $w | nindent 8 }}
        containers:
          - name: ray-worker
            image: {{ include "cvat-ray.gpuImage" $root }}
            imagePullPolicy: {{ $v.image.pullPolicy }}
            envFrom:
              {{- include "cvat-ray.envFrom" $root | nindent 14 }}
            resources:
              requests:
                {{- toYaml $w.resources.requests | nindent 16 }}
                nvidia.com/gpu: {{ $w.gpus | quote }}
              limits:
                {{- toYaml $w.resources.limits | nindent 16 }}
                nvidia.com/gpu: {{ $w.gpus | quote }}
            volumeMounts:
              {{- include "cvat-ray.volumeMounts" $root | nindent 14 }}
        volumes:
          {{- include "cvat-ray.volumes" $root | nindent 10 }}
{{- end }}
{{- end -}}

{{/* The Serve config: the serveConfigV2 value, else the generated files/serve-config.yaml. */}}
{{- define "cvat-ray.serveConfig" -}}
{{- default (.Files.Get "files/serve-config.yaml") .Values.serveConfigV2 -}}
{{- end -}}
