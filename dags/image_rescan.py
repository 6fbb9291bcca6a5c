"""image-rescan: nightly Trivy re-scan of every deployed digest, recorded as registry evidence (Airflow DAG)."""

from release.domain.config import load_config
from release.flows.rescan import build_rescan_dag

image_rescan = build_rescan_dag(load_config())  # a broken config fails here, named in the UI
