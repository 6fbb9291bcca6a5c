"""The GitOps repository: the store (one commit per change, pushed or nothing), the one writer
that keeps the registry and the umbrella charts consistent, and chart validation."""
