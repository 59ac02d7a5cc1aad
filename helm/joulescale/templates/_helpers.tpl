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


{{/* What the operator does inside a namespace it serves: its resource and status, the children
it applies (Deployments, Services; the SGLang router's ServiceAccount, Role and RoleBinding),
events. Pods are only read: the router's Role grants pod reads, and RBAC lets the operator grant
only what it holds. */}}
{{- define "joulescale.operatorNamespacedRules" -}}
- apiGroups: [joulescale.io]
  resources: [energyawarellmservices]
  verbs: [get, list, watch, patch, update]
- apiGroups: [joulescale.io]
  resources: [energyawarellmservices/status]
  verbs: [get, patch, update]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [services, serviceaccounts]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}

{{/* Cluster-scoped reads of kopf's start-up (the operator runs standalone: no peering). */}}
{{- define "joulescale.operatorClusterRules" -}}
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- end -}}

{{/* Pod Security admission labels of the namespace the agent runs in (see values.yaml). */}}
{{- define "joulescale.podSecurityLabels" -}}
{{- range $mode, $level := .Values.namespace.podSecurity }}
pod-security.kubernetes.io/{{ $mode }}: {{ $level }}
pod-security.kubernetes.io/{{ $mode }}-version: latest
{{- end }}
{{- end -}}

{{/* Where the agents and the operator find the profiles ConfigMap (only with profiles set). */}}
{{- define "joulescale.profilesDir" -}}
/etc/joulescale/profiles
{{- end -}}

{{/* The profiles volume of a pod spec's volumes list (only with profiles set). */}}
{{- define "joulescale.profilesVolume" -}}
- name: profiles
  configMap: {name: {{ .Release.Name }}-profiles}
{{- end -}}

{{/* The alert rule groups (a PrometheusRule's spec.groups; `promtool check rules` reads the same
text under `groups:`). Thresholds come from metrics.prometheusRule. */}}
{{- define "joulescale.alertGroups" -}}
{{- $r := .Values.metrics.prometheusRule -}}
- name: joulescale.slo
  rules:
    - alert: JouleScaleTtftSloAttainmentLow
      expr: >-
        histogram_fraction(0, {{ $r.ttftTargetSeconds }}, sum by (namespace, service, le) (rate({__name__=~"vllm:time_to_first_token_seconds_bucket|sglang:time_to_first_token_seconds_bucket"}[{{ $r.windowMinutes }}m])))
        < {{ $r.sloAttainmentMin }}
      for: {{ $r.forMinutes }}m
      labels: {severity: warning}
      annotations:
        summary: "{{ "{{" }} $labels.namespace {{ "}}" }}/{{ "{{" }} $labels.service {{ "}}" }}: {{ "{{" }} $value | humanizePercentage {{ "}}" }} of requests had their first token within {{ $r.ttftTargetSeconds }} s"
    - alert: JouleScaleTpotSloAttainmentLow
      expr: >-
        histogram_fraction(0, {{ $r.tpotTargetSeconds }}, sum by (namespace, service, le) (rate({__name__=~"vllm:inter_token_latency_seconds_bucket|sglang:inter_token_latency_seconds_bucket"}[{{ $r.windowMinutes }}m])))
        < {{ $r.sloAttainmentMin }}
      for: {{ $r.forMinutes }}m
      labels: {severity: warning}
      annotations:
        summary: "{{ "{{" }} $labels.namespace {{ "}}" }}/{{ "{{" }} $labels.service {{ "}}" }}: {{ "{{" }} $value | humanizePercentage {{ "}}" }} of output tokens came within {{ $r.tpotTargetSeconds }} s"
- name: joulescale.agent
  rules:
    - alert: JouleScaleAgentFailSafe
      expr: max by (namespace, service, pod, role) (joulescale_failsafe) == 1
      for: {{ $r.forMinutes }}m
      labels: {severity: warning}
      annotations:
        summary: "the agent released the clocks of {{ "{{" }} $labels.namespace {{ "}}" }}/{{ "{{" }} $labels.pod {{ "}}" }}: its engine's metrics are stale"
    - alert: JouleScaleAgentReadOnly
      expr: max by (namespace, pod, instance) (joulescale_read_only) == 1
      for: {{ $r.forMinutes }}m
      labels: {severity: warning}
      annotations:
        summary: "the agent {{ "{{" }} $labels.pod {{ "}}" }} cannot change some GPU clocks (no permission, MIG or NotSupported)"
    - alert: JouleScaleClocksLockedOnStaleEngine
      expr: >-
        max by (namespace, service, pod, role) (joulescale_gpu_target_sm_clock_mhz) > 0
        and on (namespace, pod)
        max by (namespace, pod) (up{role=~"prefill|decode"}) == 0
      for: 2m
      labels: {severity: critical}
      annotations:
        summary: "{{ "{{" }} $labels.namespace {{ "}}" }}/{{ "{{" }} $labels.pod {{ "}}" }} keeps a locked clock while its engine cannot be scraped"
- name: joulescale.operator
  rules:
    - alert: JouleScalePlanFailing
      expr: >-
        sum by (namespace, service) (increase(joulescale_operator_plan_passes_total{outcome=~"failed|unavailable"}[{{ $r.windowMinutes }}m])) > 0
        unless on (namespace, service)
        sum by (namespace, service) (increase(joulescale_operator_plan_passes_total{outcome="planned"}[{{ $r.windowMinutes }}m])) > 0
      for: {{ $r.forMinutes }}m
      labels: {severity: warning}
      annotations:
        summary: "no plan for {{ "{{" }} $labels.namespace {{ "}}" }}/{{ "{{" }} $labels.service {{ "}}" }} in {{ $r.windowMinutes }} min: its last plan stays (Planned=False)"
{{- end -}}
