{{/* Defaults for every service; a service's values.yaml and the environment's values override them. */}}
{{- define "service-lib.defaults" -}}
replicaCount: 2
image:
  repository: ""
  digest: ""     # sha256:...; set by the platform from the registry
  tag: ""
version: ""      # the release version, shown as app.kubernetes.io/version
port: 8080
env: []
probes:
  liveness:
    path: /healthz
    initialDelaySeconds: 10
    periodSeconds: 10
    failureThreshold: 3
  readiness:
    path: /ready
    periodSeconds: 5
    failureThreshold: 3
resources:
  requests:
    cpu: 100m
    memory: 128Mi
  limits:
    cpu: 1000m
    memory: 512Mi
securityContext:
  runAsUser: 10001
serviceAccount:
  automountToken: false
rbac:
  create: false
  rules: []      # Role rules for the service's own ServiceAccount, in its namespace only
terminationGracePeriodSeconds: 45
podDisruptionBudget:
  minAvailable: 1
autoscaling:
  enabled: true
  minReplicas: 2
  maxReplicas: 10
  targetCPUUtilizationPercentage: 70
networkPolicy:
  ingressFrom: []  # extra NetworkPolicyPeers allowed to reach the http port
  egress: []       # extra NetworkPolicyEgressRules besides cluster DNS
{{- end -}}
