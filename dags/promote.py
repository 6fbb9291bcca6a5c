"""promote: move exact digests one environment forward through gates and approval (Airflow DAG)."""

from release.domain.config import load_config
from release.flows.promote import build_promote_dag

promote = build_promote_dag(load_config())  # a broken config fails here, named in the UI
