"""The real KubernetesPodOperator, run with dag.test() against the sandbox cluster."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.helpers import assert_pods_meet_restricted, run_dag_test


def pod_dag(dag_id: str, *, deferrable: bool, tasks: dict[str, dict] | None = None, chain: bool = True):
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.sdk import DAG

    tasks = tasks or {"first": {}, "second": {}}
    with DAG(dag_id, start_date=datetime(2026, 1, 1), schedule=None, catchup=False) as dag:
        ops = []
        for task_id, overrides in tasks.items():
            kwargs = dict(
                task_id=task_id,
                kubernetes_conn_id="k8s_sandbox",
                namespace="default",
                name=task_id,
                image="registry.local:5000/tools/busybox@sha256:" + "1" * 64,
                cmds=["echo"],
                arguments=["hello"],
                get_logs=True,
                deferrable=deferrable,
                poll_interval=0.2,
                startup_check_interval_seconds=0.2,
                startup_timeout_seconds=5,
                on_finish_action="delete_pod",
                retries=0,
            )
            kwargs.update(overrides)
            ops.append(KubernetesPodOperator(**kwargs))
        if chain:
            for a, b in zip(ops, ops[1:]):
                a >> b
    return dag


def states(dagrun) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in dagrun.get_task_instances()}


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_pods_run_green_and_are_cleaned_up(airflow_db, sandbox, deferrable):
    sandbox.scenario = {"default_pod": {"duration_seconds": 0.3, "logs": ["step one", "step two"]}}
    dagrun = run_dag_test(pod_dag(f"sandbox-green-{deferrable}", deferrable=deferrable))
    assert dagrun.state == "success", states(dagrun)
    assert states(dagrun) == {"first": "success", "second": "success"}
    created = sandbox.seen("POST", "/pods")
    assert len(created) == 2 and all(r.status == 201 for r in created)
    assert sandbox.seen("GET", "/log")  # logs were streamed
    assert sandbox.list("pods", "default") == []  # on_finish_action=delete_pod


def test_failing_pod_fails_its_task_with_the_reason(airflow_db, sandbox, capfd):
    sandbox.scenario = {"pods": [{"match": {"task_id": "second"}, "exit_code": 3, "logs": ["boom: disk full"],
                                  "termination_message": "tests failed: 2 of 40"}]}
    dagrun = run_dag_test(pod_dag("sandbox-fail", deferrable=False))
    assert states(dagrun) == {"first": "success", "second": "failed"}
    out = capfd.readouterr().out
    assert "boom: disk full" in out  # the pod's log is in the task log
    assert "tests failed: 2 of 40" in out  # and so is its termination message
    assert sandbox.seen("PATCH", "/pods/")  # the operator marks the failed pod already_checked


def test_invalid_pod_spec_is_refused_with_422_naming_the_field(airflow_db, sandbox, capfd):
    from kubernetes.client import models as k8s

    bad = {"container_resources": k8s.V1ResourceRequirements(limits={"memory": "lots"})}
    dagrun = run_dag_test(pod_dag("sandbox-invalid", deferrable=False, tasks={"bad": {**bad, "name": "bad"}}))
    assert states(dagrun) == {"bad": "failed"}
    refused = sandbox.seen("POST", "/pods")
    assert [r.status for r in refused] == [422]
    text = capfd.readouterr().out
    assert "422" in text and "spec.containers[0].resources.limits.memory" in text


@pytest.mark.parametrize("outcome,reason", [("oom_killed", "OOMKilled"), ("image_pull_backoff", "ImagePullBackOff")])
def test_oom_and_image_pull_backoff_surface_as_such(airflow_db, sandbox, capfd, outcome, reason):
    sandbox.scenario = {"default_pod": {"outcome": outcome, "duration_seconds": 0.2}}
    dagrun = run_dag_test(pod_dag(f"sandbox-{outcome.replace('_', '-')}", deferrable=False, tasks={"only": {"startup_timeout_seconds": 2}}))
    assert states(dagrun) == {"only": "failed"}
    assert reason in capfd.readouterr().out


def test_operator_retries_ride_through_a_burst_of_500s(airflow_db, sandbox):
    sandbox.scenario = {"faults": [{"match": {"method": "POST", "path": "/api/v1/namespaces/*/pods"}, "status": 500, "count": 2}]}
    dagrun = run_dag_test(pod_dag("sandbox-faults", deferrable=False, tasks={"only": {}}))
    assert states(dagrun) == {"only": "success"}
    assert [r.status for r in sandbox.seen("POST", "/pods")] == [500, 500, 201]


def test_the_smoke_step_pod_checks_the_status_its_service_promises(airflow_db, sandbox, config, capfd):
    """steps.smoke through the pod factory and the operator: the sandbox runs the real checker,
    service-b's /healthz answers 204, so expecting 204 passes (its summary is the task's result)
    and expecting the default 200 fails the task naming the URL."""
    from airflow.sdk import DAG

    from release.k8s import steps
    from release.k8s.pods import pod_operator
    from tests.dags.test_image_rescan import xcom

    sandbox.scenario = {"default_pod": {"duration_seconds": 0.1},
                        "http": [{"match": {"host": "service-b.apps-staging.*", "path": "/healthz"}, "status": 204}]}
    data = config.model_dump()
    data["services"]["service-b"]["smoke"] |= {"expect_status": 204, "retries": 1, "interval_seconds": 30}
    expects_204 = type(config).model_validate(data)
    with DAG("sandbox-smoke", start_date=datetime(2026, 1, 1), schedule=None, catchup=False) as dag:
        for task_id, cfg in (("smoke_204", expects_204), ("smoke_200", config)):
            pod_operator(task_id, steps.smoke(cfg, "service-b", "staging"), namespace="apps-staging",
                         kubernetes_conn_id="k8s_staging", service="service-b", commit="c" * 40, retries=0,
                         deferrable=False, poll_interval=0.2, startup_check_interval_seconds=0.2)
    dagrun = run_dag_test(dag)
    assert states(dagrun) == {"smoke_204": "success", "smoke_200": "failed"}
    url = "http://service-b.apps-staging.svc.cluster.local:8080/healthz"
    assert xcom(dagrun, "smoke_204") == {"passed": True, "expect_status": 204, "checks": [
        {"url": url, "status": 204, "error": None, "attempts": 1, "passed": True}]}
    out = capfd.readouterr().out
    assert f"{url} 204 (attempt 1/2)" in out and f"{url} 204 (attempt 6/6)" in out
    assert f"smoke test failed (expected status 200): {url} answered 204 after 6 attempt(s)" in out
    assert_pods_meet_restricted(sandbox, {"smoke-staging"})
