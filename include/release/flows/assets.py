"""Airflow assets the platform's DAGs produce and consume.

Any task that writes the version registry lists REGISTRY as an outlet, so DAGs that
follow the registry (the umbrella-chart check) run after every change.
"""

from airflow.sdk import Asset

REGISTRY = Asset(name="gitops-registry", uri="gitops://registry/versions.yaml", group="release")
