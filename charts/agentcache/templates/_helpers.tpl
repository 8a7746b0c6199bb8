{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "agentcache.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Base name of every object: the release name, plus the chart name unless it already contains it. */}}
{{- define "agentcache.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "agentcache.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "agentcache.labels" -}}
helm.sh/chart: {{ include "agentcache.chart" . }}
app.kubernetes.io/name: {{ include "agentcache.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: agentcache
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component; call with (dict "root" $ "component" "operator"). */}}
{{- define "agentcache.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agentcache.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "agentcache.operator.fullname" -}}
{{- printf "%s-operator" (include "agentcache.fullname" .) -}}
{{- end -}}

{{- define "agentcache.injector.fullname" -}}
{{- printf "%s-injector" (include "agentcache.fullname" .) -}}
{{- end -}}

{{- define "agentcache.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (include "agentcache.operator.fullname" .) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "agentcache.injector.serviceAccountName" -}}
{{- if .Values.injector.serviceAccount.create -}}
{{- default (include "agentcache.injector.fullname" .) .Values.injector.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.injector.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the webhook's serving certificate (tls.crt, tls.key, ca.crt). */}}
{{- define "agentcache.injector.tlsSecretName" -}}
{{- printf "%s-tls" (include "agentcache.injector.fullname" .) -}}
{{- end -}}

{{/* The MutatingWebhookConfiguration is cluster-scoped: its name carries the release namespace. */}}
{{- define "agentcache.webhookConfigurationName" -}}
{{- printf "%s-%s" (include "agentcache.injector.fullname" .) .Release.Namespace | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "agentcache.image" -}}
{{- include "agentcache.registry" (dict "image" (printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag)) "root" .) -}}
{{- end -}}

{{/* An image reference with .Values.imageRegistry in front (when set). */}}
{{- define "agentcache.registry" -}}
{{- if .root.Values.imageRegistry }}{{ printf "%s/%s" (trimSuffix "/" .root.Values.imageRegistry) .image }}{{ else }}{{ .image }}{{ end -}}
{{- end -}}

{{/* Restricted-profile pod security context shared by the operator and the injector. */}}
{{- define "agentcache.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "agentcache.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Namespaces the injector never touches (system namespaces and its own). */}}
{{- define "agentcache.excludedNamespaces" -}}
{{- toJson (list "kube-system" "kube-public" "kube-node-lease" .Release.Namespace | uniq) -}}
{{- end -}}

{{/*
The webhook's TLS material as JSON {"ca.crt","tls.crt","tls.key"}, base64-encoded.
Reuses the existing Secret (lookup) so upgrades keep the CA the API server trusts;
otherwise generates a CA (genCA) and a serving certificate signed by it (genSignedCert).
Generated once per render and memoized, so the Secret, the caBundle and the pod
checksum all see the same certificate.
*/}}
{{- define "agentcache.injector.tlsData" -}}
{{- if not (hasKey .Values "__agentcacheInjectorTLS") -}}
{{- $secretName := include "agentcache.injector.tlsSecretName" . -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace $secretName -}}
{{- $data := dict -}}
{{- if and $existing (index $existing "data") (hasKey $existing.data "ca.crt") (hasKey $existing.data "tls.crt") (hasKey $existing.data "tls.key") -}}
{{- $data = dict "ca.crt" (index $existing.data "ca.crt") "tls.crt" (index $existing.data "tls.crt") "tls.key" (index $existing.data "tls.key") -}}
{{- else -}}
{{- $service := include "agentcache.injector.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- $dnsNames := list $service (printf "%s.%s" $service $ns) (printf "%s.%s.svc" $service $ns) (printf "%s.%s.svc.cluster.local" $service $ns) -}}
{{- $days := int .Values.certificateValidityDays -}}
{{- $ca := genCA (printf "%s-ca" $service) $days -}}
{{- $cert := genSignedCert (printf "%s.%s.svc" $service $ns) nil $dnsNames $days $ca -}}
{{- $data = dict "ca.crt" ($ca.Cert | b64enc) "tls.crt" ($cert.Cert | b64enc) "tls.key" ($cert.Key | b64enc) -}}
{{- end -}}
{{- $_ := set .Values "__agentcacheInjectorTLS" $data -}}
{{- end -}}
{{- toJson (index .Values "__agentcacheInjectorTLS") -}}
{{- end -}}

{{/* Name of a cluster-scoped object: carries the release namespace so two releases never collide. */}}
{{- define "agentcache.clusterScopedName" -}}
{{- printf "%s-%s" .name .root.Release.Namespace | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* What the operator may do inside every namespace it watches: its resource, the children it owns
(agentcache_operator.kube.KINDS), reading pods, growing Valkey volumes, events. */}}
{{- define "agentcache.operator.namespacedRules" -}}
- apiGroups: ["agentcache.io"]
  resources: ["agentcaches"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["agentcache.io"]
  resources: ["agentcaches/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["agentcache.io"]
  resources: ["agentcaches/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["configmaps", "services"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
# Secrets only by name (each cache's own password Secret, and the external one its spec names):
# no list or watch, so the operator can never read the Secrets of the whole cluster.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "patch"]
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}

{{/* Where the webhook certificate comes from: certManager, chart (genCA + lookup) or injector (self-managed). */}}
{{- define "agentcache.tlsSource" -}}
{{- if .Values.certManager.enabled -}}
certManager
{{- else -}}
{{- .Values.injector.tlsSource -}}
{{- end -}}
{{- end -}}
