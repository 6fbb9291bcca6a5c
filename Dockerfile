# syntax=docker/dockerfile:1
# The platform image: Airflow on Python 3.11, this repository's pinned requirements, the
# `release` package, DAGs and plugins. Nothing secret is baked in: connections and keys arrive
# at run time (the compose environment locally, Vault in production).
# The tag must match apache-airflow in requirements.txt; scripts/check_stack.py checks that.
FROM apache/airflow:3.3.2-python3.11

# Requirements first, so this slow layer stays cached while code changes. requirements.txt
# pins transitive versions with `-c constraints.txt`, so the two travel together.
COPY requirements.txt constraints.txt /opt/airflow/
RUN pip install --no-cache-dir -r /opt/airflow/requirements.txt

# Code is owned by root and only readable by the airflow user that runs it.
USER 0
COPY pyproject.toml /opt/airflow/
COPY include/ /opt/airflow/include/
COPY dags/ /opt/airflow/dags/
COPY plugins/ /opt/airflow/plugins/
# Named volumes mounted on these start with the owner set here: config (the airflow.cfg every
# component shares), data (RELEASE_DATA_DIR: local GitOps repo), kube (kubeconfigs the
# Kubernetes connections point at). The egg-info folder is the only place pip writes to below.
RUN install -d -o airflow -g 0 /opt/airflow/include/release_platform.egg-info \
        /opt/airflow/config /opt/airflow/data /opt/airflow/kube
# Numeric, so Kubernetes can verify runAsNonRoot from the image alone.
USER 50000
# Editable on purpose: release.domain.config finds platform.yaml and the GitOps template next to the
# package in include/, which a regular install into site-packages would leave behind.
RUN pip install --no-cache-dir --no-deps -e /opt/airflow \
 && python -m release config check

ENV RELEASE_DATA_DIR=/opt/airflow/data
