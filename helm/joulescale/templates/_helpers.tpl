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
