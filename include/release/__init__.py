"""The release platform, one folder per layer (docs/architecture.md):

    domain/   config, registry state, plans, scan policy, gates -- pure, no Airflow/git/HTTP/Kubernetes
    gitops/   the GitOps store and the one writer of registry + umbrella charts; chart validation
    k8s/      the pod factory, pod operator and sensors, tool steps, Argo CD, Velero
    flows/    the DAG builders: Airflow wiring only
    web/      HTTP on Airflow's API server
    tools/    commands that run inside pods
    cli.py    `python -m release ...`

The import-linter contracts in pyproject.toml keep these layers from leaking into each other.
"""
