"""velero-backups: nightly Velero backup of every environment's cluster, waited for and recorded (Airflow DAG)."""

from release.flows.backups import build_backups_dag
from release.domain.config import load_config

velero_backups = build_backups_dag(load_config())  # a broken config fails here, named in the UI
