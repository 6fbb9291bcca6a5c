"""umbrella-chart: keep every environment's umbrella chart equal to the registry (Airflow DAG)."""

from release.flows.umbrella import build_umbrella_dag
from release.domain.config import load_config

umbrella_chart = build_umbrella_dag(load_config())  # a broken config fails here, as an import error named in the UI
