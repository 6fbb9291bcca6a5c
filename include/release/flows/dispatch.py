"""`release-dispatch`: a commit (or a webhook about one) -> the pipelines of the services it affects.

    affected (branch) -> trigger_<service> for each affected service, in parallel
                      -> the others show as skipped
"""

from __future__ import annotations

from datetime import datetime

from release.domain.config import PlatformConfig
from release.domain.plans import ParamError, plan_dispatch


AFFECTED = "affected"  # the branch task; its XComs:
PLAN = "plan"  # the whole DispatchPlan, for whoever looks at the run
PIPELINE_CONF = "pipeline_conf"  # what each trigger_<service> hands on: the pipeline's params


def trigger_task_id(service: str) -> str:
    return f"trigger_{service.replace('-', '_')}"


def _choose(**context) -> list[str]:
    from airflow.sdk.exceptions import AirflowFailException

    from release.domain.config import load_config

    try:
        plan = plan_dispatch(dict(context["params"]), load_config())
    except ParamError as exc:
        raise AirflowFailException(str(exc)) from None
    context["ti"].xcom_push(key=PLAN, value=plan.model_dump(mode="json"))
    context["ti"].xcom_push(key=PIPELINE_CONF, value=plan.pipeline_conf())
    print(f"{len(plan.changed_paths)} changed path(s) affect: {', '.join(plan.services) or 'no service'}")
    return [trigger_task_id(s) for s in plan.services]


DOC = """
### A commit in, the affected pipelines out

Takes a push or pull-request event (`before`, `after`, `ref`, `pr`, `changed_paths`, and
`commit_time` where known),
works out which services it affects (a changed path under a service's folder or matching
one of its `watch` patterns), and triggers each affected `<service>-pipeline` with the
same commit (and its `commit_time`, where DORA's change lead time starts), in parallel. Unaffected services show as skipped. The same computation is
`python -m release affected --paths-file FILE`.
"""


def build_dispatch_dag(config: PlatformConfig):
    from airflow.providers.standard.operators.python import BranchPythonOperator
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
    from airflow.sdk import DAG, Param

    from release.flows.notify import on_failure

    with DAG(
        dag_id="release-dispatch",
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        default_args={"on_failure_callback": on_failure()},  # task log, plus Slack / e-mail if configured
        tags=["release", "dispatch"],
        doc_md=DOC,
        params={
            "before": Param(None, type=["null", "string"], description="commit before the push"),
            "after": Param("", type="string", description="commit to build (40 hex)"),
            "ref": Param("refs/heads/main", type="string"),
            "pr": Param(None, type=["null", "integer"], description="pull request number (PR mode)"),
            "changed_paths": Param([], type="array", description="repository paths the push changed"),
            "commit_time": Param(None, type=["null", "string"],
                                 description="when `after` was committed (ISO-8601 with zone), handed to each pipeline"),
        },
        render_template_as_native_obj=True,
    ) as dag:
        affected = BranchPythonOperator(task_id=AFFECTED, python_callable=_choose)
        for service in config.services:
            affected >> TriggerDagRunOperator(
                task_id=trigger_task_id(service),
                trigger_dag_id=f"{service}-pipeline",
                conf=affected.output[PIPELINE_CONF],
                wait_for_completion=False,
            )
    return dag
