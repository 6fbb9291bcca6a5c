"""<service>-pipeline: one DAG per service in the platform config (build, scan, sign, deploy to dev)."""

from __future__ import annotations

from airflow.sdk import get_parsing_context

from release.domain.config import load_config
from release.flows.pipeline import build_pipeline_dag

CONFIG = load_config()  # a broken config fails here, as an import error named in the UI

# When a worker runs one task it needs only that task's DAG: build just that one.
_wanted = get_parsing_context().dag_id
for _service in CONFIG.services:
    if _wanted is None or _wanted == f"{_service}-pipeline":
        globals()[f"pipeline_{_service.replace('-', '_')}"] = build_pipeline_dag(CONFIG, _service)
