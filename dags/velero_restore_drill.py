"""velero-restore-drill: weekly proof that the newest backup restores and serves (Airflow DAG)."""

from release.flows.backups import build_drill_dag
from release.domain.config import load_config

velero_restore_drill = build_drill_dag(load_config())  # a broken config fails here, named in the UI
