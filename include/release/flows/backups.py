"""Nightly backups that prove they restore: the `velero-backups` and `velero-restore-drill` DAGs.

Every backup and every drill leaves a record (JSON, one file each) in the artifact store
under `velero/`, where `python -m release backups` and a dashboard can read them without
cluster access: env, name, phase, times, items, Velero's errors and warnings; for a
drill, whether it restored, whether the smoke tests passed against the restored copy,
and how long recovery took.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

from release.domain.backups import (
    BACKUP_GROUP,
    BACKUPS_DAG_ID,
    DRILL_DAG_ID,
    DRILL_REPORT,
    BackupRecord,
    BackupStarted,
    RestoreStarted,
    backup_envs,
    drill_group,
    drill_mapping,
    drill_smoke_namespace,
    drill_verdict,
    newest_completed,
    now_text,
    write_record,
)
from release.domain.config import PlatformConfig, load_config
from release.flows.outcome import fail_task

if TYPE_CHECKING:
    from release.k8s.velero import VeleroOutcome


# -- velero-backups tasks -------------------------------------------------------------------------


def task_environments(**context) -> list[str]:
    try:
        return backup_envs(load_config(), context["params"].get("environments"))
    except ValueError as exc:
        fail_task(str(exc))


def task_create_backup(env: str, **context) -> dict:
    from release.k8s import velero

    config = load_config()
    run = context["dag_run"]
    name = velero.object_name("release", env, run.run_after, run.run_id)
    manifest = velero.backup_manifest(config, env, name=name, dag_id=run.dag_id, run_id=run.run_id)
    conn_id = config.environments[env].kubernetes_conn_id
    created = velero.create(conn_id, manifest)
    spec, name = manifest["spec"], created["metadata"]["name"]
    print(f"Backup {manifest['metadata']['namespace']}/{name} of {', '.join(spec['includedNamespaces'])}: "
          f"ttl {spec['ttl']}, location {spec['storageLocation']}, volume snapshots {spec['snapshotVolumes']}")
    started = BackupStarted(kubernetes_conn_id=conn_id, namespace=created["metadata"]["namespace"], name=name, env=env)
    return started.model_dump(mode="json")


def record_backup(outcome: VeleroOutcome, run_id: str) -> BackupRecord:
    """Write the record of a backup the sensor saw end, passed or failed."""
    s = outcome.status
    record = BackupRecord(
        env=outcome.target.env, name=s.name, phase=s.phase, started=s.started, completed=s.completed,
        items_backed_up=s.items_done, items_total=s.items_total, errors=s.errors, warnings=s.warnings,
        error_messages=outcome.errors, warning_messages=outcome.warnings, timed_out=outcome.timed_out,
        run_id=run_id, recorded_at=now_text(),
    )
    write_record(load_config(), "backups", record, record.name)
    return record


def backups_doc(config: PlatformConfig) -> str:
    rows = "\n".join(
        f"| {e} | {', '.join(config.backup_namespaces(e))} | {config.backup_ttl_days(e)} days | "
        f"{config.environments[e].backup.storage_location} |"
        for e in config.env_order if config.environments[e].backup.enabled)
    return f"""
### Nightly Velero backups

Schedule `{config.nightly.backups.schedule}` (UTC; `nightly.backups.schedule` in the platform config).
Per environment: a `velero.io/v1` Backup in its cluster, a deferred wait for a terminal phase
(`Completed` passes; `PartiallyFailed`, `Failed` and a backup still running after
{config.nightly.backups.timeout_minutes} minutes fail, listing Velero's errors), and a record in the
artifact store (`python -m release backups`). Trigger it by hand with `environments` to back up some only.

| environment | namespaces | kept | storage location |
|---|---|---|---|
{rows}
"""


def build_backups_dag(config: PlatformConfig):
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import Param, task_group

    from release.flows.schedules import nightly_dag
    from release.k8s.velero import VeleroSensor

    class BackupSensor(VeleroSensor):
        def on_outcome(self, outcome: VeleroOutcome, context) -> None:
            record = record_backup(outcome, context["run_id"])
            self.log.info("Recorded backup %s of %s: %s", record.name, record.env, record.phase)

    enabled = backup_envs(config, None)
    with nightly_dag(
        BACKUPS_DAG_ID, config.nightly.backups.schedule, backups_doc(config), tags=["velero"],
        params={"environments": Param([], type="array", items={"type": "string", "enum": enabled},
                                      description="back up only these (default: every environment)")},
    ) as dag:
        envs = PythonOperator(task_id="environments", python_callable=task_environments)

        # One group per environment, mapped at run time. The decorator is Airflow's only way to map
        # a group; inside it the tasks are wired like everywhere else.
        @task_group(group_id=BACKUP_GROUP)
        def backup(env: str):
            created = PythonOperator(task_id="create", python_callable=task_create_backup, op_kwargs={"env": env},
                                     retries=2)
            BackupSensor(task_id="wait", target=created.output,
                         timeout_minutes=config.nightly.backups.timeout_minutes,
                         poll_interval=config.nightly.poll_seconds, retries=2)

        backup.expand(env=envs.output)
    return dag


# -- velero-restore-drill ----------------------------------------------------------------------------

# The drill's task ids whose XComs `report` reads, inside the environment's group: restore (a
# `RestoreStarted`) and wait_restore (a `VeleroOutcome`). The readers below are the only places
# they are pulled.
RESTORE, WAIT_RESTORE = "restore", "wait_restore"


def smoke_task_id(service: str) -> str:
    """A drill's smoke test of `service` (its state is what `report` judges)."""
    return f"smoke_{service}"


def pulled_restore(ti, env: str) -> RestoreStarted | None:
    """The restore the drill of `env` started; None when the restore task failed."""
    raw = ti.xcom_pull(task_ids=f"{drill_group(env)}.{RESTORE}")
    return None if raw is None else RestoreStarted.model_validate(raw)


def pulled_restored_phase(ti, env: str) -> str | None:
    """The phase the drill's wait saw pass (Completed); None when the wait failed and pushed nothing."""
    from release.k8s.velero import VeleroOutcome

    raw = ti.xcom_pull(task_ids=f"{drill_group(env)}.{WAIT_RESTORE}")
    return None if raw is None else VeleroOutcome.model_validate(raw).status.phase


def task_find_backup(env: str) -> str:
    """The backup to drill: the newest Completed one, else the drill fails at once.

    It does not wait for a backup that is still running, nor for one to appear: an environment
    with no Completed backup cannot be restored today, and that is the finding the drill exists
    to report. (The sandbox of `make run` stands for environments that have been running and
    holds last night's backups; see sandbox.seed.)
    """
    from release.k8s import velero

    config = load_config()
    b = config.environments[env].backup
    items = velero.list_ours(config.environments[env].kubernetes_conn_id, "Backup", b.velero_namespace, env)
    newest = newest_completed(items, env)
    if newest is None:
        fail_task(f"no Completed backup of {env} to drill in {b.velero_namespace}: run {BACKUPS_DAG_ID} first")
    status = newest["status"]
    print(f"Drilling backup {newest['metadata']['name']} of {env}, completed {status.get('completionTimestamp')}")
    return newest["metadata"]["name"]


def task_start_restore(env: str, backup: str, **context) -> dict:
    """Clear leftovers of an earlier drill, then file the Restore; returns a `RestoreStarted`."""
    from release.k8s import velero

    config = load_config()
    run = context["dag_run"]
    mapping = drill_mapping(config, env)
    conn_id = config.environments[env].kubernetes_conn_id
    # A copy an earlier drill could not delete would mix with this one: clear it first.
    leftovers = delete_namespaces(conn_id, list(mapping.values()), wait_seconds=config.nightly.restore_drill.timeout_minutes * 60)
    if leftovers:
        print(f"Deleted scratch namespaces left by an earlier drill: {', '.join(leftovers)}")
    name = velero.object_name("drill", env, run.run_after, run.run_id)
    manifest = velero.restore_manifest(config, env, name=name, backup=backup, mapping=mapping,
                                       dag_id=run.dag_id, run_id=run.run_id)
    name = velero.create(conn_id, manifest)["metadata"]["name"]
    print(f"Restore {name}: backup {backup} into {', '.join(f'{k} -> {v}' for k, v in mapping.items())}")
    started = RestoreStarted(kubernetes_conn_id=conn_id, namespace=manifest["metadata"]["namespace"], name=name,
                             env=env, backup=backup, mapping=mapping, started=now_text(),
                             scratch=drill_smoke_namespace(config, env))
    return started.model_dump(mode="json")


def task_report_drill(env: str, services: list[str], **context) -> dict:
    """Judge the drill from what its tasks left (restore, wait, smoke states) and record it."""
    ti, group = context["ti"], drill_group(env)
    task_ids = {s: f"{group}.{smoke_task_id(s)}" for s in services}
    states = ti.get_task_states(dag_id=ti.dag_id, task_ids=list(task_ids.values()),
                                run_ids=[ti.run_id]).get(ti.run_id, {})
    smoke = {s: states.get(task_id) or "none" for s, task_id in task_ids.items()}
    record = drill_verdict(env, pulled_restore(ti, env), pulled_restored_phase(ti, env), smoke, ti.run_id,
                           datetime.now(timezone.utc))
    write_record(load_config(), "drills", record, record.restore or f"unstarted-{record.recorded_at}")
    if record.problems:  # the failure callback turns this into the drill-failed alert
        fail_task(f"restore drill of {env} failed: {'; '.join(record.problems)}")
    print(f"Restore drill of {env} passed: backup {record.backup} restored into "
          f"{', '.join(record.namespaces.values())}, smoke tests passed for {', '.join(services)}; "
          f"recovery took {record.recovery_seconds:.1f}s")
    return record.model_dump(mode="json")


def delete_namespaces(conn_id: str, names: list[str], wait_seconds: float = 0) -> list[str]:
    """Delete those of `names` that exist (and wait until they are gone); returns the deleted."""
    import time

    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
    from kubernetes.client.exceptions import ApiException

    core = KubernetesHook(conn_id=conn_id).core_v1_client
    deleted = []
    for name in names:
        try:
            core.delete_namespace(name)
            deleted.append(name)
        except ApiException as exc:
            if exc.status != 404:
                raise
    deadline = time.monotonic() + wait_seconds
    for name in deleted if wait_seconds else []:
        while True:
            try:
                core.read_namespace(name)
            except ApiException as exc:
                if exc.status == 404:
                    break
                raise
            if time.monotonic() > deadline:
                fail_task(f"namespace {name} is still terminating after {wait_seconds:.0f}s")
            time.sleep(2)
    return deleted


def task_delete_scratch(env: str) -> list[str]:
    """Delete the drill's scratch namespaces whatever happened; a namespace already gone is fine."""
    config = load_config()
    names = list(drill_mapping(config, env).values())
    deleted = delete_namespaces(config.environments[env].kubernetes_conn_id, names)
    print(f"Deleted scratch namespaces: {', '.join(deleted) or 'none existed'}")
    return deleted


def drill_doc(config: PlatformConfig) -> str:
    envs = ", ".join(config.drill_envs()) or "none"
    return f"""
### Weekly restore drill

Schedule `{config.nightly.restore_drill.schedule}` (UTC; `nightly.restore_drill.schedule`). Environments: {envs}
(`environments.<env>.backup.drill`; by default the last one). Per environment: the newest `Completed`
backup this platform made is restored into scratch namespaces (`namespaceMapping`), the services'
smoke tests run against the restored copy, the result (restored, smoke passed, recovery time) is
recorded next to the backups, and the scratch namespaces are deleted whatever happened. A failed
drill fails the `report` task and sends an alert; no `Completed` backup to restore fails `find_backup`.
"""


def build_drill_dag(config: PlatformConfig):
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import TaskGroup

    from release.k8s import steps
    from release.k8s.pods import pod_operator
    from release.flows.schedules import nightly_dag
    from release.k8s.velero import VeleroSensor

    with nightly_dag(DRILL_DAG_ID, config.nightly.restore_drill.schedule, drill_doc(config), tags=["velero"]) as dag:
        for env in config.drill_envs():
            environment = config.environments[env]
            services = [s for s in config.services_in(env) if config.services[s].smoke.endpoints]
            with TaskGroup(group_id=drill_group(env)):
                backup = PythonOperator(task_id="find_backup", python_callable=task_find_backup, op_kwargs={"env": env})
                restore = PythonOperator(task_id=RESTORE, python_callable=task_start_restore,
                                         op_kwargs={"env": env, "backup": backup.output})
                wait = VeleroSensor(task_id=WAIT_RESTORE, target=restore.output,
                                    timeout_minutes=config.nightly.restore_drill.timeout_minutes,
                                    poll_interval=config.nightly.poll_seconds)
                # Smoke pods run where the platform may run pods (the live environment's namespace)
                # and call the restored services by their scratch-namespace DNS names (fixed names,
                # from the config: no template).
                scratch = drill_smoke_namespace(config, env)
                smokes = [pod_operator(smoke_task_id(s), steps.smoke(config, s, env, namespace=scratch), service=s,
                                       commit="drill", namespace=environment.namespace,
                                       kubernetes_conn_id=environment.kubernetes_conn_id)
                          for s in services]
                report = PythonOperator(task_id=DRILL_REPORT, trigger_rule="all_done", python_callable=task_report_drill,
                                        op_kwargs={"env": env, "services": services})
                cleanup = PythonOperator(task_id="delete_scratch_namespaces", python_callable=task_delete_scratch,
                                         op_kwargs={"env": env})
                wait >> smokes >> report
                if not smokes:
                    wait >> report
                # A teardown: it runs whatever happened, and the run's state stays the drill's verdict
                # (with on_failure_fail_dagrun the teardown's success would hide a failed drill). A
                # copy left behind still alerts, through the task's failure callback.
                report >> cleanup.as_teardown(setups=restore)
    return dag
