"""deploy-<env>: one DAG per environment of the platform config, the one place that changes it."""

from __future__ import annotations

from airflow.sdk import get_parsing_context

from release.domain.config import load_config
from release.flows.deploy import build_deploy_dag

CONFIG = load_config()  # a broken config fails here, as an import error named in the UI

# When a worker runs one task it needs only that task's DAG: build just that one.
_wanted = get_parsing_context().dag_id
for _env in CONFIG.env_order:
    if _wanted is None or _wanted == f"deploy-{_env}":
        globals()[f"deploy_{_env.replace('-', '_')}"] = build_deploy_dag(CONFIG, _env)
