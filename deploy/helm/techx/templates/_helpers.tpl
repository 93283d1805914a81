{{/* Names and labels. */}}
{{- define "techx.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "techx.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "techx.labels" -}}
{{ include "techx.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "techx.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Refuse settings the engine would refuse at start, at install time instead. */}}
{{- define "techx.validate" -}}
{{- $protocol := .Values.kafka.security.protocol -}}
{{- if not (has $protocol (list "PLAINTEXT" "SASL_PLAINTEXT" "SASL_SSL" "SSL")) -}}
{{- fail (printf "kafka.security.protocol must be PLAINTEXT, SASL_PLAINTEXT, SASL_SSL or SSL, not %s" $protocol) -}}
{{- end -}}
{{- if and (hasPrefix "SASL_" $protocol) (not .Values.kafka.security.sasl.existingSecret) -}}
{{- fail (printf "kafka.security.protocol=%s needs kafka.security.sasl.existingSecret (a Secret with the username and password)" $protocol) -}}
{{- end -}}
{{- if and (not (hasSuffix "SSL" $protocol)) (or .Values.kafka.security.tls.caSecret .Values.kafka.security.tls.clientCertSecret) -}}
{{- fail (printf "kafka.security.tls.* is set but kafka.security.protocol=%s does not use TLS" $protocol) -}}
{{- end -}}
{{- if not .Values.database.existingSecret -}}
{{- fail "database.existingSecret must name the Secret holding TECHX_DATABASE_URL" -}}
{{- end -}}
{{- if gt (int .Values.kafka.minInsyncReplicas) (int .Values.kafka.replicationFactor) -}}
{{- fail "kafka.minInsyncReplicas must not exceed kafka.replicationFactor: no write could succeed" -}}
{{- end -}}
{{- end -}}

{{/* The plain settings: the ConfigMap's data, and the setup hook's env (a pre-install hook
     runs before the release's ConfigMap exists). */}}
{{- define "techx.config" -}}
TECHX_KAFKA_BOOTSTRAP: {{ .Values.kafka.bootstrap | quote }}
TECHX_TOPIC_PREFIX: {{ .Values.kafka.topicPrefix | quote }}
TECHX_PARTITIONS: {{ .Values.kafka.partitions | quote }}
TECHX_REPLICATION_FACTOR: {{ .Values.kafka.replicationFactor | quote }}
TECHX_MIN_INSYNC_REPLICAS: {{ .Values.kafka.minInsyncReplicas | quote }}
TECHX_KAFKA_SECURITY_PROTOCOL: {{ .Values.kafka.security.protocol | quote }}
{{- if hasPrefix "SASL_" .Values.kafka.security.protocol }}
TECHX_KAFKA_SASL_MECHANISM: {{ .Values.kafka.security.saslMechanism | quote }}
TECHX_KAFKA_PASSWORD_FILE: /etc/techx/kafka-sasl/password
{{- end }}
{{- if .Values.kafka.security.tls.caSecret }}
TECHX_KAFKA_CA_FILE: /etc/techx/kafka-ca/ca.crt
{{- end }}
{{- if .Values.kafka.security.tls.clientCertSecret }}
TECHX_KAFKA_CERT_FILE: /etc/techx/kafka-client/tls.crt
TECHX_KAFKA_KEY_FILE: /etc/techx/kafka-client/tls.key
{{- end }}
TECHX_GROUP_ID: {{ .Values.engine.groupId | quote }}
TECHX_SESSION_TIMEOUT_MS: {{ .Values.engine.sessionTimeoutMs | quote }}
TECHX_OUTPUT_GUARANTEE: {{ .Values.engine.outputGuarantee | quote }}
TECHX_METRICS_PORT: {{ .Values.engine.metricsPort | quote }}
{{- range $name, $value := .Values.extraEnv }}
{{ $name }}: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* The settings that are secrets: references only, never their values.
     Call with (dict "root" $ "saslSecret" "<name>"). */}}
{{- define "techx.secretEnv" -}}
- name: TECHX_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .root.Values.database.existingSecret }}
      key: {{ .root.Values.database.urlKey }}
{{- if hasPrefix "SASL_" .root.Values.kafka.security.protocol }}
- name: TECHX_KAFKA_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .saslSecret }}
      key: {{ .root.Values.kafka.security.sasl.usernameKey }}
{{- end }}
{{- end -}}

{{- define "techx.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if hasPrefix "SASL_" .root.Values.kafka.security.protocol }}
- name: kafka-sasl
  mountPath: /etc/techx/kafka-sasl
  readOnly: true
{{- end }}
{{- if .root.Values.kafka.security.tls.caSecret }}
- name: kafka-ca
  mountPath: /etc/techx/kafka-ca
  readOnly: true
{{- end }}
{{- if .root.Values.kafka.security.tls.clientCertSecret }}
- name: kafka-client
  mountPath: /etc/techx/kafka-client
  readOnly: true
{{- end }}
{{- end -}}

{{- define "techx.volumes" -}}
- name: tmp
  emptyDir: {}
{{- if hasPrefix "SASL_" .root.Values.kafka.security.protocol }}
- name: kafka-sasl
  secret:
    secretName: {{ .saslSecret }}
    defaultMode: 0440  # readable by the pod's fsGroup: the user is not root
    items:
      - key: {{ .root.Values.kafka.security.sasl.passwordKey }}
        path: password
{{- end }}
{{- if .root.Values.kafka.security.tls.caSecret }}
- name: kafka-ca
  secret:
    secretName: {{ .root.Values.kafka.security.tls.caSecret }}
    items:
      - key: {{ .root.Values.kafka.security.tls.caKey }}
        path: ca.crt
{{- end }}
{{- if .root.Values.kafka.security.tls.clientCertSecret }}
- name: kafka-client
  secret:
    secretName: {{ .root.Values.kafka.security.tls.clientCertSecret }}
    defaultMode: 0440  # readable by the pod's fsGroup: the user is not root
{{- end }}
{{- end -}}
