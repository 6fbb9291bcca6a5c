"""release-dispatch with dag.test(): the affected pipelines are triggered with the commit, the rest skipped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
AFTER = "fedcba9876543210fedcba9876543210fedcba98"


def dispatch(changed_paths, **params):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(DAGS / "release_dispatch.py")).get_dag("release-dispatch")
    dagrun = dag.test(run_conf={"after": AFTER, "ref": "refs/heads/main", "changed_paths": changed_paths, **params})
    return dagrun, {ti.task_id: ti.state for ti in dagrun.get_task_instances()}


def triggered_runs(service: str) -> list:
    from airflow.models.dagrun import DagRun

    return DagRun.find(dag_id=f"{service}-pipeline")


@pytest.mark.parametrize("paths,expected,commit_time", [
    # commit_time is optional; given (a push webhook gives its head commit's), each pipeline gets it in UTC.
    (["services/service-b/app/main.py"], {"service-b"}, ("2026-11-26T11:00:00+01:00", "2026-11-26T10:00:00Z")),
    (["shared/logging/setup.py", "services/service-a/README.md"], {"service-a", "service-b", "service-c"}, None),
    (["docs/index.md", "README.md"], set(), None),
    (["services/service-ab/main.py"], set(), None),
])
def test_triggers_exactly_the_affected_pipelines(airflow_db, paths, expected, commit_time):
    before = {s: len(triggered_runs(s)) for s in ("service-a", "service-b", "service-c")}
    dagrun, states = dispatch(paths, **({"commit_time": commit_time[0]} if commit_time else {}))
    assert dagrun.state == "success", states
    for service in ("service-a", "service-b", "service-c"):
        task = f"trigger_{service.replace('-', '_')}"
        assert states[task] == ("success" if service in expected else "skipped"), (service, states)
        runs = triggered_runs(service)
        assert len(runs) == before[service] + (service in expected)
        if service in expected:
            newest = max(runs, key=lambda r: r.queued_at or r.start_date or r.run_after)
            assert newest.conf["commit"] == AFTER and newest.conf["ref"] == "refs/heads/main"
            assert newest.conf["pr"] is None and newest.conf["changed_paths"] == paths
            assert newest.conf["commit_time"] == (commit_time[1] if commit_time else None)


@pytest.mark.parametrize("params,message", [
    ({"after": "HEAD"}, "commit: 'HEAD' is not a full commit id"),
    ({"before": "x"}, "before: 'x' is not a full commit id"),
    ({"changed_paths": ["services/../etc/passwd"]}, "changed_paths: paths[0] 'services/../etc/passwd' has a '..' segment"),
])
def test_bad_input_fails_before_triggering(airflow_db, capfd, params, message):
    paths = params.pop("changed_paths", ["services/service-a/x.py"])
    dagrun, states = dispatch(paths, **params)
    assert states["affected"] == "failed"
    assert all(states[t] in ("upstream_failed", "skipped") for t in states if t.startswith("trigger_"))
    assert message in capfd.readouterr().out


def test_affected_command(tmp_path):
    paths = tmp_path / "paths.txt"
    paths.write_text("services/service-c/search.py\nproto/search/v1.proto\ndocs/x.md\n")
    out = subprocess.run([sys.executable, "-m", "release", "affected", "--paths-file", str(paths)],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == ["service-c"]
    paths.write_text("../outside\n")
    bad = subprocess.run([sys.executable, "-m", "release", "affected", "--paths-file", str(paths)], capture_output=True, text=True)
    assert bad.returncode == 2 and "--paths-file: paths[0] '../outside'" in bad.stderr


def test_each_pipeline_gets_exactly_its_params_and_the_plan_is_typed(config):
    """The conf a trigger hands on is exactly what `<service>-pipeline` declares as params (an extra
    key would be an unknown param, a missing one a default the commit did not ask for), and the plan
    the affected task pushes reads back as the same DispatchPlan."""
    from release.domain.plans import DispatchPlan, plan_dispatch
    from release.flows.pipeline import build_pipeline_dag

    plan = plan_dispatch({"after": AFTER, "ref": "refs/tags/v1.2.0", "pr": None, "commit_time": "2026-11-26T11:00:00+01:00",
                          "changed_paths": ["services/service-b/app/main.py"]}, config)
    assert plan.services == ["service-b"] and plan.commit_time == "2026-11-26T10:00:00Z"
    conf = plan.pipeline_conf()
    assert set(conf) == set(build_pipeline_dag(config, "service-b").params)
    assert conf == {"commit": AFTER, "ref": "refs/tags/v1.2.0", "pr": None,
                    "changed_paths": ["services/service-b/app/main.py"], "commit_time": "2026-11-26T10:00:00Z"}
    assert DispatchPlan.model_validate(json.loads(json.dumps(plan.model_dump(mode="json")))) == plan
