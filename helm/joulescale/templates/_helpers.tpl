{{- define "joulescale.labels" -}}
app.kubernetes.io/name: joulescale
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "joulescale.tag" -}}
{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}
