"""`rollback`: put one service in one environment back on an earlier version, as a new commit.

    validate -> needs_approval -> approve_<env> | no_approval -> hand_over (to deploy-<env>)

`deploy-<env>` (release.flows.deploy) makes the commit, rolls it out and smoke-tests it, in turn with
every other change to that environment.
"""

from __future__ import annotations

from datetime import datetime

from release.domain.config import PlatformConfig
from release.domain.plans import plan_rollback
from release.domain.values import MAX_REASON
from release.flows.requests import MAX_ACTIVE_REQUESTS, VALIDATE, approval_task, change_set, run_planner, task_needs_approval


def task_validate(**context) -> dict:
    return run_planner(plan_rollback, context).model_dump(mode="json")


DOC = """
### Roll a service back

Trigger with `service`, `env`, optionally `to_version` (default: the newest earlier version
that was successfully deployed there and never rolled back) and `reason`. The target must
have been deployed in that environment before. Where the environment's policy says so
(`approval.required_for_rollback`), another approver confirms first (four-eyes). Then
`hand_over` gives the change to `deploy-<env>`, which applies it in turn with every other change
to that environment: one commit puts the exact earlier digest back; Argo CD syncs it (or, for an
environment with the `helm` deploy strategy, `helm upgrade --install --atomic --wait` deploys
exactly that commit) and the smoke test runs. History shows the replaced version as `rolled_back`, with the reason.
The run's note says what it did ("rolled service-a in prod back from 1.2.0 to 1.1.0, commit ...;
smoke test passed", "refused: ...", "rejected by bob"); a run that rolled nothing back is failed.
"""


def build_rollback_dag(config: PlatformConfig):
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.providers.standard.operators.python import BranchPythonOperator, PythonOperator
    from airflow.sdk import DAG, Param

    from release.flows.handover import HandOver
    from release.flows.notify import on_failure

    with DAG(
        dag_id="rollback",
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        default_args={"on_failure_callback": on_failure()},  # task log, plus Slack / e-mail if configured
        max_active_runs=MAX_ACTIVE_REQUESTS,  # the environment's deploy-<env> serialises the changes
        tags=["release", "rollback"],
        doc_md=DOC,
        render_template_as_native_obj=True,
        params={
            "service": Param(next(iter(config.services)), type="string", enum=list(config.services)),
            "env": Param(config.env_order[0], type="string", enum=config.env_order),
            "to_version": Param(None, type=["null", "string"], description="default: the previous version"),
            "reason": Param("", type="string", minLength=1, maxLength=MAX_REASON),
        },
    ) as dag:
        validate = PythonOperator(task_id=VALIDATE, python_callable=task_validate)
        needs_approval = BranchPythonOperator(task_id="needs_approval", python_callable=task_needs_approval)
        no_approval = EmptyOperator(task_id="no_approval")
        hand_over = HandOver(change_set=change_set("rollback"), trigger_rule="none_failed_min_one_success")
        validate >> needs_approval >> no_approval >> hand_over
        for env_name, env in config.environments.items():
            if env.approval.required_for_rollback:
                needs_approval >> approval_task(env_name, env, "rollback", validate) >> hand_over
    return dag
