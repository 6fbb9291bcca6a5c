"""The release platform's domain logic: config, GitOps store, version registry, charts.

Plain functions and classes that take data and return data; the DAGs in dags/ call
them from inside tasks, and tests call them directly.
"""
