#!/usr/bin/env bash
# Start the platform on this machine: a git-ignored Airflow home in .airflow/, the local
# GitOps repository in .local/, and `airflow standalone` serving the UI.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv=${VENV:-.venv}

# `airflow standalone` starts its parts by the name `airflow`, found on PATH.
export PATH="$root/$venv/bin:$PATH"
export AIRFLOW_HOME=${AIRFLOW_HOME:-$root/.airflow}
export AIRFLOW__CORE__DAGS_FOLDER="$root/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$root/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__PARALLELISM=${AIRFLOW__CORE__PARALLELISM:-8}
export AIRFLOW__API__PORT=${PORT:-8080}
# alice triggers, bob approves: enough people to walk the four-eyes flow of a prod promotion.
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS:-admin:admin,alice:op,bob:op}
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL=${AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL:-30}
mkdir -p "$AIRFLOW_HOME"

# Fail before starting anything if the config is broken.
python -m release config check
python -m release gitops init
airflow db migrate > "$AIRFLOW_HOME/db-migrate.log" 2>&1 || { cat "$AIRFLOW_HOME/db-migrate.log"; exit 1; }
python -m release pools sync

# No real cluster configured: run the sandbox and point every environment at it.
sandbox_group=""
if ! status=$(python -m release cluster status); then
  kubeconfig="$AIRFLOW_HOME/sandbox/kubeconfig"
  rm -f "$kubeconfig"
  setsid python -m release sandbox --kubeconfig "$kubeconfig" \
    --scenario include/release/sandbox/scenarios/make-run.yaml > "$AIRFLOW_HOME/sandbox.log" 2>&1 &
  sandbox_group=$!
  for _ in $(seq 1 100); do [ -s "$kubeconfig" ] && break; sleep 0.2; done
  [ -s "$kubeconfig" ] || { cat "$AIRFLOW_HOME/sandbox.log"; kill -- -"$sandbox_group"; exit 1; }
  eval "$(python -m release cluster sandbox-env --kubeconfig "$kubeconfig")"
  cat <<MSG

  ************************************************************************************
  SANDBOX MODE: no Kubernetes cluster is configured, so the platform talks to a
  simulated cluster (kubeconfig: $kubeconfig).
  Pods, deployments and backups are simulated: nothing real is built or deployed.
  Configure a kubeconfig or the environments' Airflow connections to use a real one.
  ************************************************************************************
MSG
else
  echo "Kubernetes: $status"
fi

cat <<MSG

  Release platform starting: http://localhost:${AIRFLOW__API__PORT}
  Users: admin, alice, bob   Passwords: in $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated
  Ctrl-C stops everything.

MSG
# `airflow standalone` stops its parts on Ctrl-C but then hangs without reaping them, so
# it runs in its own process group and this script does the stopping: SIGINT for a
# graceful shutdown, then SIGTERM, then SIGKILL for whatever is left of the group.
setsid airflow standalone &
group=$!

alive() {  # processes of the given groups that have not exited (zombies excluded)
  ps -eo pgid=,stat= | awk -v g=" $* " 'index(g, " " $1 " ") && $2 !~ /^Z/' | wc -l
}

stop() {
  trap '' INT TERM
  echo "Stopping the platform..."
  groups="$group $sandbox_group"
  kill -INT -- -"$group" 2>/dev/null || true
  for _ in $(seq 1 60); do [ "$(alive "$group")" -le 1 ] && break; sleep 0.5; done
  for g in $groups; do kill -TERM -- -"$g" 2>/dev/null || true; done
  for _ in $(seq 1 20); do [ "$(alive $groups)" -eq 0 ] && break; sleep 0.5; done
  for g in $groups; do kill -KILL -- -"$g" 2>/dev/null || true; done
  # A killed process lingers until the kernel has torn it down; "Stopped." means gone.
  for _ in $(seq 1 20); do [ "$(alive $groups)" -eq 0 ] && break; sleep 0.5; done
  echo "Stopped."
  exit 0
}
trap stop INT TERM
wait "$group"
