"""release-dispatch: change detection for a commit, then the affected service pipelines (Airflow DAG)."""

from release.domain.config import load_config
from release.flows.dispatch import build_dispatch_dag

dispatch = build_dispatch_dag(load_config())  # a broken config fails here, named in the UI
