{{/* Names: with the release named "mysocketd", every object is named as in yaml/mysocketd.yaml. */}}
{{- define "mysocketd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mysocketd.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "mysocketd.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "mysocketd.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "mysocketd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mysocketd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mysocketd.labels" -}}
{{ include "mysocketd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "mysocketd.secretName" -}}
{{- if .Values.credentials.existingSecret }}
{{- .Values.credentials.existingSecret }}
{{- else }}
{{- $c := .Values.credentials }}
{{- if not (and $c.email $c.password $c.privateKey) }}
{{- fail "mysocketd needs the account on your edge: set credentials.existingSecret (a Secret with the keys email, password and privatekey), or credentials.email, credentials.password and credentials.privateKey" }}
{{- end }}
{{- include "mysocketd.fullname" . }}
{{- end }}
{{- end }}

{{- define "mysocketd.edgeConfig" -}}
{{- if or .Values.edge.knownHosts .Values.edge.caCert }}true{{ end }}
{{- end }}

{{- define "mysocketd.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The environment of the Deployment's container and of the uninstall hook's: one edge, one identity. */}}
{{- define "mysocketd.env" -}}
- name: MYSOCKETD_API_URL
  value: {{ required "set edge.apiUrl to the API URL of your edge, e.g. https://api.edge.example.com/ (edge/README.md runs one)" .Values.edge.apiUrl | quote }}
{{- with .Values.edge.sshHost }}
- name: MYSOCKETD_SSH_HOST
  value: {{ . | quote }}
{{- end }}
{{- with .Values.edge.sshPort }}
- name: MYSOCKETD_SSH_PORT
  value: {{ . | quote }}
{{- end }}
{{- with .Values.clusterName }}
- name: MYSOCKETD_CLUSTER_NAME
  value: {{ . | quote }}
{{- end }}
{{- with .Values.watchNamespace }}
- name: MYSOCKETD_NAMESPACE
  value: {{ . | quote }}
{{- end }}
- name: MYSOCKETD_LEASE_NAMESPACE
  value: {{ .Release.Namespace | quote }}
- name: MYSOCKETD_LEASE_NAME
  value: {{ include "mysocketd.fullname" . | quote }}
- name: MYSOCKETD_DEPLOYMENT
  value: {{ include "mysocketd.fullname" . | quote }}
{{- if .Values.edge.knownHosts }}
- name: MYSOCKETD_KNOWN_HOSTS
  value: /etc/mysocketd-edge/known_hosts
{{- end }}
{{- if .Values.edge.caCert }}
- name: REQUESTS_CA_BUNDLE
  value: /etc/mysocketd-edge/ca.crt
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "mysocketd.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "mysocketd.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end }}

{{- define "mysocketd.secretVolumes" -}}
- name: secret
  secret:
    secretName: {{ include "mysocketd.secretName" . }}
    defaultMode: 0440                 # readable by fsGroup 10001, copied to 0600 before use
{{- if include "mysocketd.edgeConfig" . }}
- name: edge
  configMap:
    name: {{ include "mysocketd.fullname" . }}-edge
{{- end }}
{{- end }}

{{- define "mysocketd.secretMounts" -}}
- name: secret
  mountPath: /etc/mysocket
  readOnly: true
{{- if include "mysocketd.edgeConfig" . }}
- name: edge
  mountPath: /etc/mysocketd-edge
  readOnly: true
{{- end }}
{{- end }}

{{/* The rules on Services and Events: in a ClusterRole, or in a Role of the watched namespace. */}}
{{- define "mysocketd.serviceRules" -}}
- apiGroups: [""]
  resources: ["services"]
  verbs: ["list", "watch", "patch"]        # list+watch: the cache; patch: annotations and finalizer
- apiGroups: [""]
  resources: ["services/status"]
  verbs: ["patch"]                         # status.loadBalancer.ingress of loadBalancerClass mysocket.io/tunnel
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]               # Events on the Service; patch counts a repeat
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["list", "watch"]                 # a tunnel takes traffic only while its Service has a ready endpoint
{{- end }}

{{- define "mysocketd.routeRules" -}}
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["gatewayclasses", "gateways", "httproutes", "tlsroutes", "tcproutes", "grpcroutes", "referencegrants"]
  verbs: ["list", "watch"]                 # Gateways, routes and grants, cluster-wide (lib/routecontroller.py)
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["gatewayclasses/status", "gateways/status", "httproutes/status", "tlsroutes/status", "tcproutes/status", "grpcroutes/status"]
  verbs: ["patch"]                         # Accepted, Programmed, ResolvedRefs, addresses
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses", "ingressclasses"]
  verbs: ["list", "watch"]
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses/status"]
  verbs: ["patch"]                         # status.loadBalancer: the edge's name
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]                 # a listener's allowedRoutes may select namespaces by label
{{- end }}

{{- define "mysocketd.identityRule" -}}
- apiGroups: [""]
  resources: ["namespaces"]
  resourceNames: ["kube-system"]
  verbs: ["get"]                           # its UID is this cluster's identity in socket names
{{- end }}
