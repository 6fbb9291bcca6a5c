#!/usr/bin/env bash
# Start the platform on this machine: a git-ignored Airflow home in .airflow/, the local
# GitOps repository in .local/, and `airflow standalone` serving the UI.
#
#   scripts/run.sh               start (what `make run` does after installing)
#   scripts/run.sh --check-port  only refuse a port in use (`make run` does this before anything)
set -euo pipefail
python=${PYTHON:-python3}

# A job started in the background by a script (also CI steps, nohup in a script) inherits
# SIGINT ignored, and bash cannot trap a signal that was ignored when it started. Start this
# script once more with SIGINT at its default, so SIGINT to make's group stops the platform
# whoever started it.
if [ -z "${RELEASE_RUN_SIGINT_RESET:-}" ]; then
  export RELEASE_RUN_SIGINT_RESET=1
  exec "$python" -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])' "$0" "$@"
fi
# Read to the end before running: editing or checking out this file while `make run` runs
# must not change what the running script does next.
{
cd "$(dirname "$0")/.."
root=$(pwd)
venv=${VENV:-.venv}

# The port comes from PORT (make run PORT=N), else an exported AIRFLOW__API__PORT, else 8080.
port=${PORT:-${AIRFLOW__API__PORT:-8080}}
# Refuse a port that is taken before anything is started or written: Airflow's API server
# would otherwise fail a minute later, deep in its log, or tasks would reach another Airflow.
"$python" - "$port" <<'PY' || exit 1
import errno, socket, sys

port = sys.argv[1]
if not (port.isdigit() and 0 < int(port) < 65536):
    sys.exit(f"make run: PORT must be a number from 1 to 65535, got {port!r}")
with socket.socket() as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the API server binds it
    try:
        s.bind(("", int(port)))
    except OSError as exc:
        with socket.socket() as free:
            free.bind(("", 0))
            other = free.getsockname()[1]
        why = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc.strerror})"
        sys.exit(f"make run: port {port} {why} (another `make run` or Airflow?). "
                 f"Nothing was started. Choose another port: make run PORT={other}")
PY
[ "${1:-}" = --check-port ] && exit 0

# `airflow standalone` starts its parts by the name `airflow`, found on PATH.
export PATH="$root/$venv/bin:$PATH"
export AIRFLOW_HOME=${AIRFLOW_HOME:-$root/.airflow}
export AIRFLOW__CORE__DAGS_FOLDER="$root/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$root/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__PARALLELISM=${AIRFLOW__CORE__PARALLELISM:-8}
# Every URL Airflow derives from the port follows it. Tasks reach Airflow through the
# execution API, whose URL defaults to port 8080 whatever the API server's port is: without
# it every task fails to connect, or talks to another Airflow on 8080.
export AIRFLOW__API__PORT=$port
export AIRFLOW__API__BASE_URL=${AIRFLOW__API__BASE_URL:-http://localhost:$port}
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL=${AIRFLOW__CORE__EXECUTION_API_SERVER_URL:-http://localhost:$port/execution/}
# The scheduler and the triggerer serve their task logs on ports of their own (8793, 8794).
# Where another Airflow (or another `make run`) holds one, take a free port instead: the UI
# would otherwise show that other Airflow's logs of running tasks.
read -r AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT < <("$python" - \
  "${AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT:-}" "${AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT:-}" <<'PY'
import socket, sys

held = []  # kept bound until both are chosen, so the two never get the same free port

def port(chosen: str, default: int) -> int:
    if chosen:
        return int(chosen)  # the user's own choice stands
    s = socket.socket()
    held.append(s)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("", default))
    except OSError:
        s.bind(("", 0))
    return s.getsockname()[1]

print(port(sys.argv[1], 8793), port(sys.argv[2], 8794))
PY
)
export AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT
for url in "$AIRFLOW__API__BASE_URL" "$AIRFLOW__CORE__EXECUTION_API_SERVER_URL"; do
  case $url in *":$port"|*":$port/"*) ;; *) echo "Note: $url (from your environment) is not on port $port; Airflow uses it as you set it." ;; esac
done
# `airflow standalone` starts the scheduler beside the API server, and a scheduled run's task
# may start before the API server listens (1-3 minutes on a busy 2-core machine): its calls to
# the execution API keep retrying for a few minutes instead of failing the try after ~10 s.
export AIRFLOW__WORKERS__EXECUTION_API_RETRIES=${AIRFLOW__WORKERS__EXECUTION_API_RETRIES:-12}
# alice triggers, bob approves: enough people to walk the four-eyes flow of a prod promotion.
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS:-admin:admin,alice:op,bob:op}
# Airflow's simple auth manager prints every password it generates to the console, and so into
# whatever records it (a CI log, a shared terminal). Generate them here instead, into the file
# it reads (owner-only), so that it finds every user and the console only says where they are.
"$python" - "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:-$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated}" \
  "$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS" <<'PY' || exit 1
import json, os, secrets, sys
from pathlib import Path

path, users = Path(sys.argv[1]), [u.split(":")[0].strip() for u in sys.argv[2].split(",") if u.strip()]
known = json.loads(path.read_text() or "{}") if path.exists() else {}
if missing := [u for u in users if u not in known]:
    known |= {u: secrets.token_urlsafe(12) for u in missing}
    path.parent.mkdir(parents=True, exist_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(json.dumps(known) + "\n")
PY
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL=${AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL:-30}

# Stopping. The sandbox and Airflow each run under scripts/supervise.py, which stops its
# whole process tree when told, when its command exits, or when this script dies without
# telling it (see there why). Stopping here is telling them and waiting until they are gone.
# Setup commands run in the background and are waited for, so a signal is acted on at once
# rather than after the command.
step="" sandbox="" airflow=""
stop() {
  trap '' INT TERM HUP
  echo "Stopping the platform..."
  for pid in $step $airflow $sandbox; do kill -TERM "$pid" 2>/dev/null || true; done
  wait || true
  echo "Stopped."
  exit "${1:-0}"
}
trap stop INT TERM HUP
run() { local rc=0; "$@" & step=$!; wait "$step" || rc=$?; step=""; return "$rc"; }

mkdir -p "$AIRFLOW_HOME"
# The metadata database. Airflow's default is a SQLite file in $AIRFLOW_HOME, written by the
# scheduler, the DAG processor, the triggerer and the API server at once. SQLite makes a writer
# wait at most 5 s for another's lock; on a busy machine that is too short, and a run triggered
# over REST fails with a 500 "Database error" (database is locked). So for that default file,
# writers wait up to 60 s and the file is journaled in WAL mode (readers never block a writer).
# Any database you configured yourself is used exactly as you set it (scripts/default_sqlite.py).
sqlite_db=$("$python" scripts/default_sqlite.py "${AIRFLOW_CONFIG:-$AIRFLOW_HOME/airflow.cfg}" "$AIRFLOW_HOME")
if [ -n "$sqlite_db" ]; then
  export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$sqlite_db?timeout=60"
fi
# Fail before starting anything if the config is broken.
run python -m release config check
run python -m release gitops init
run airflow db migrate > "$AIRFLOW_HOME/db-migrate.log" 2>&1 || { cat "$AIRFLOW_HOME/db-migrate.log"; exit 1; }
if [ -n "$sqlite_db" ]; then
  "$python" -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute("PRAGMA journal_mode=WAL")' "$sqlite_db"
fi
run python -m release pools sync

# What is paused is decided here, not left to whatever the database remembers.
mode_file="$AIRFLOW_HOME/make-run-mode"
last_mode=$(cat "$mode_file" 2>/dev/null || true)
if ! status=$(python -m release cluster status); then
  # No real cluster configured: run the sandbox and point every environment at it.
  kubeconfig="$AIRFLOW_HOME/sandbox/kubeconfig"
  rm -f "$kubeconfig"
  # RELEASE_SANDBOX_SCENARIO: another scenario file (pod outcomes, Argo CD delays, faults).
  python scripts/supervise.py --grace 5 -- python -m release sandbox --kubeconfig "$kubeconfig" \
    --scenario "${RELEASE_SANDBOX_SCENARIO:-include/sandbox/scenarios/make-run.yaml}" > "$AIRFLOW_HOME/sandbox.log" 2>&1 &
  sandbox=$!
  for _ in $(seq 1 150); do [ -s "$kubeconfig" ] || ! kill -0 "$sandbox" 2>/dev/null && break; sleep 0.2; done
  [ -s "$kubeconfig" ] || { cat "$AIRFLOW_HOME/sandbox.log"; stop 1; }
  eval "$(python -m release cluster sandbox-env --kubeconfig "$kubeconfig")"
  # Every DAG runs unpaused against the sandbox: a newcomer came to try them, and the
  # nightly ones only touch the simulated cluster. DAGs a previous run created paused are
  # unpaused too (the database is reused).
  export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=${AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION:-False}
  if [ "${AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION,,}" = false ]; then
    run airflow dags unpause --treat-dag-id-as-regex --yes '.*' > "$AIRFLOW_HOME/unpause.log" 2>&1 \
      || { cat "$AIRFLOW_HOME/unpause.log"; stop 1; }
    paused="nothing: every DAG runs (the nightly ones too), against the sandbox"
  else
    paused="new DAGs start paused (AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=$AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION)"
  fi
  echo sandbox > "$mode_file"
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
  # A real cluster: nothing deploys or runs nightly until someone unpauses it on purpose.
  # New DAGs start paused (Airflow's default); DAGs unpaused by an earlier sandbox run are
  # paused again, since their nightly runs would now act on the real cluster.
  again=""
  if [ "$last_mode" = sandbox ]; then
    run airflow dags pause --treat-dag-id-as-regex --yes '.*' > "$AIRFLOW_HOME/pause.log" 2>&1 \
      || { cat "$AIRFLOW_HOME/pause.log"; stop 1; }
    again="; those the sandbox ran were paused again"
  fi
  echo cluster > "$mode_file"
  paused="against a real cluster every new DAG starts paused, the nightly ones included, so nothing
  deploys or runs on a schedule until you unpause it in the UI (triggering a DAG there unpauses it).
  DAGs you unpaused stay so across runs$again."
fi

cat <<MSG

  Release platform starting: http://localhost:$port
  Users: admin, alice, bob   Passwords: in $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated
  Paused: $paused
  Ctrl-C (or SIGTERM to make) stops everything.

MSG
python scripts/supervise.py --grace 5 -- airflow standalone &
airflow=$!
status=0
wait -n "$airflow" ${sandbox:+"$sandbox"} || status=$?
# Only here if Airflow or the sandbox exited by itself: stop the other one too.
echo "make run: $( kill -0 "$airflow" 2>/dev/null && echo "the sandbox" || echo "airflow standalone") exited (status $status)" >&2
stop "$(( status ? status : 1 ))"
}
