"""The DAG builders and their task callables: Airflow wiring over the other layers.

The only layer (with the pod operator in `release.k8s`) that imports Airflow's operators.
"""
