"""The fault suite's scenario b, short and in-process (`make chaos` runs it on the real stack):
a pipeline run to dev while the API server fails pod creates, reads and log streams with 5xx and
429 bursts, drops event watches, and evicts the build pod mid-build. Each step rides it out on
the client's and the task's retries: the run deploys once, no task try created two pods, and no
pod is left running."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.dags.test_service_pipeline import run, scenario, world  # noqa: F401 - world is a fixture

API_FAULTS = Path(__file__).resolve().parents[2] / "include" / "sandbox" / "scenarios" / "api-faults.yaml"

pytestmark = pytest.mark.e2e


def test_a_pipeline_rides_out_api_faults_and_an_evicted_build(world, sandbox, config):  # noqa: F811
    faults = yaml.safe_load(API_FAULTS.read_text())
    base = scenario()
    sandbox.scenario = base | {"pods": [*faults["pods"], *base["pods"]], "faults": faults["faults"]}

    dagrun, states = run({})

    assert dagrun.state == "success", states
    # Every fault was injected: the bursts answered, the watches dropped, the build evicted.
    answered = Counter(r.status for r in sandbox.requests)
    assert (answered[503], answered[500], answered[429]) == (2 + 3 + 2, 1, 2), answered
    watches = [r for r in sandbox.seen("GET", "/events") if r.query.get("watch", "").lower() == "true"]
    assert len(watches) >= 3, [(r.path, r.query) for r in sandbox.seen("GET", "/events")]
    pods = sandbox.list("pods")
    evicted = [p for p in pods if p["status"].get("reason") == "Evicted"]
    assert [p["metadata"]["labels"]["release-platform/step"] for p in evicted] == ["build"]
    # The evicted build ran again in a second try; no try of any step created two pods.
    created = Counter()
    for r in sandbox.seen("POST"):
        if r.path.endswith("/pods") and r.status == 201:
            labels = r.body["metadata"]["labels"]
            created[(labels["task_id"], labels.get("map_index", "-1"), labels["try_number"])] += 1
    assert [k for k, n in created.items() if n > 1] == [], created
    assert sorted(t for (task, _, t) in created if task == "build") == ["1", "2"]
    # No pod is left running, and the deployment is recorded once, for this run.
    assert [p["metadata"]["name"] for p in pods if p["status"].get("phase") in ("Pending", "Running")] == []
    mine = [e for e in world.history(env="dev", service="service-a") if e.run_id == dagrun.run_id]
    assert [(e.version, e.action, e.outcome) for e in mine] == [("1.1.0", "deploy", "deployed")]
