"""The domain: what the platform decides, as plain data in and out.

The config, the registry's state and files, the plans a run carries, the scan policy and every
gate. Pure: no Airflow, git, HTTP or Kubernetes here (an import-linter contract says so), so
everything in it is tested by calling it.
"""
