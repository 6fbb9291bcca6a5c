{{/*
Default deny for the service's pods in both directions, then explicit allows:
ingress on the http port from the namespaces and pods listed in values, egress to
cluster DNS and to whatever values list. Nothing else gets in or out.
*/}}
{{- define "service-lib.networkpolicy" -}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "service-lib.name" . }}-default-deny
  labels:
    {{- include "service-lib.labels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "service-lib.selectorLabels" . | nindent 6 }}
  policyTypes: ["Ingress", "Egress"]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "service-lib.name" . }}-allow
  labels:
    {{- include "service-lib.labels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "service-lib.selectorLabels" . | nindent 6 }}
  policyTypes: ["Ingress", "Egress"]
  ingress:
    - ports:
        - port: http
          protocol: TCP
      from:
        - podSelector: {}
        {{- with .Values.networkPolicy.ingressFrom }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  egress:
    - ports:
        - port: 53
          protocol: UDP
        - port: 53
          protocol: TCP
      to:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: kube-system
    {{- with .Values.networkPolicy.egress }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}
