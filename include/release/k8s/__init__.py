"""The Kubernetes side: the one hardened pod factory, the pod operator and sensors, the tool
steps as data, Argo CD and Velero."""
