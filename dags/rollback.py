"""rollback: put a service back on an earlier version in one environment (Airflow DAG)."""

from release.domain.config import load_config
from release.flows.rollback import build_rollback_dag

rollback = build_rollback_dag(load_config())  # a broken config fails here, named in the UI
