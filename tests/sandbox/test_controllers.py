"""Argo CD and Velero lifecycles in the sandbox, seen through the plain kubernetes client."""

from __future__ import annotations

import gzip
import json
import time

import pytest
from kubernetes import client, config, watch


@pytest.fixture
def api(sandbox):
    config.load_kube_config(str(sandbox.kubeconfig_path))
    return client.ApiClient()


def application(name: str, revision: str = "main") -> dict:
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": name, "namespace": "argocd"},
        "spec": {"project": "default",
                 "source": {"repoURL": "file:///gitops.git", "path": "umbrella/dev", "targetRevision": revision},
                 "destination": {"server": "https://kubernetes.default.svc", "namespace": "apps-dev"}},
    }


def watch_until(list_fn, done, timeout=10, **kwargs) -> list[dict]:
    seen = []
    for event in watch.Watch().stream(list_fn, timeout_seconds=timeout, **kwargs):
        obj = event["object"]
        seen.append(obj)
        if done(obj):
            return seen
    raise AssertionError(f"condition never met; last: {seen[-1] if seen else None}")


def test_argocd_sync_request_reaches_synced_and_healthy_at_that_revision(api):
    crd = client.CustomObjectsApi(api)
    args = ("argoproj.io", "v1alpha1", "argocd", "applications")
    crd.create_namespaced_custom_object(*args, application("umbrella-dev"))
    sha = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
    crd.patch_namespaced_custom_object(*args, "umbrella-dev", {"operation": {"sync": {"revision": sha}}})
    events = watch_until(
        lambda **kw: crd.list_namespaced_custom_object(*args, **kw),
        lambda a: a.get("status", {}).get("sync", {}).get("revision") == sha and a["status"]["health"]["status"] == "Healthy",
    )
    phases = [e.get("status", {}).get("health", {}).get("status") for e in events]
    assert "Progressing" in phases  # it went through a rollout, not straight to the answer
    final = crd.get_namespaced_custom_object(*args, "umbrella-dev")
    assert final["status"]["sync"]["status"] == "Synced"
    assert final["status"]["operationState"]["phase"] == "Succeeded"
    assert "operation" not in final  # the request is consumed


def test_argocd_scenario_can_make_a_sync_degrade(api, sandbox):
    sandbox.scenario = {"applications": [{"match": {"name": "umbrella-prod"}, "sync": "OutOfSync", "health": "Degraded",
                                          "message": "Deployment service-a exceeded its progress deadline"}]}
    crd = client.CustomObjectsApi(api)
    args = ("argoproj.io", "v1alpha1", "argocd", "applications")
    crd.create_namespaced_custom_object(*args, application("umbrella-prod"))
    watch_until(lambda **kw: crd.list_namespaced_custom_object(*args, **kw),
                lambda a: a.get("status", {}).get("operationState", {}).get("phase") == "Failed")
    status = crd.get_namespaced_custom_object(*args, "umbrella-prod")["status"]
    assert (status["sync"]["status"], status["health"]["status"]) == ("OutOfSync", "Degraded")
    assert "progress deadline" in status["health"]["message"]


def backup(name: str, **spec) -> dict:
    return {"apiVersion": "velero.io/v1", "kind": "Backup", "metadata": {"name": name, "namespace": "velero",
            "labels": {"app.kubernetes.io/managed-by": "release-platform"}},
            "spec": {"includedNamespaces": ["apps-prod"], "ttl": "720h0m0s", "storageLocation": "default",
                     "snapshotVolumes": False, **spec}}


def test_velero_backup_runs_to_completed_with_timestamps_and_items(api, sandbox):
    crd = client.CustomObjectsApi(api)
    args = ("velero.io", "v1", "velero", "backups")
    crd.create_namespaced_custom_object(*args, backup("prod-20261126"))
    events = watch_until(lambda **kw: crd.list_namespaced_custom_object(*args, **kw),
                         lambda b: b.get("status", {}).get("phase") == "Completed")
    phases = [e.get("status", {}).get("phase") for e in events]
    assert phases.index("New") < phases.index("InProgress") < phases.index("Completed")
    status = events[-1]["status"]
    assert status["startTimestamp"] <= status["completionTimestamp"]
    assert status["progress"]["itemsBackedUp"] == status["progress"]["totalItems"] > 0
    assert status["expiration"] > status["startTimestamp"]


def test_velero_partial_failure_leaves_its_errors_in_the_backup_storage(api, sandbox):
    sandbox.scenario = {"backups": [{"match": {"name": "prod-*"}, "phase": "PartiallyFailed",
                                     "errors": ["error backing up pvc apps-prod/data: timed out"], "warnings": ["skipped 2 pods"]}]}
    crd = client.CustomObjectsApi(api)
    args = ("velero.io", "v1", "velero", "backups")
    crd.create_namespaced_custom_object(*args, backup("prod-1"))
    final = watch_until(lambda **kw: crd.list_namespaced_custom_object(*args, **kw),
                        lambda b: b.get("status", {}).get("phase") == "PartiallyFailed")[-1]
    assert (final["status"]["errors"], final["status"]["warnings"]) == (1, 1)
    results = json.loads(gzip.decompress((sandbox.backup_storage_dir / "backups/prod-1/prod-1-results.gz").read_bytes()))
    assert results["errors"]["velero"] == ["error backing up pvc apps-prod/data: timed out"]


def test_velero_restore_with_namespace_mapping_creates_the_target(api, sandbox):
    crd = client.CustomObjectsApi(api)
    crd.create_namespaced_custom_object("velero.io", "v1", "velero", "backups", backup("prod-2"))
    restore = {"apiVersion": "velero.io/v1", "kind": "Restore", "metadata": {"name": "drill-1", "namespace": "velero"},
               "spec": {"backupName": "prod-2", "namespaceMapping": {"apps-prod": "drill-apps-prod"}}}
    crd.create_namespaced_custom_object("velero.io", "v1", "velero", "restores", restore)
    watch_until(lambda **kw: crd.list_namespaced_custom_object("velero.io", "v1", "velero", "restores", **kw),
                lambda r: r.get("status", {}).get("phase") == "Completed")
    names = [n.metadata.name for n in client.CoreV1Api(api).list_namespace().items]
    assert "drill-apps-prod" in names
    client.CoreV1Api(api).delete_namespace("drill-apps-prod")
    assert "drill-apps-prod" not in [n.metadata.name for n in client.CoreV1Api(api).list_namespace().items]


def test_velero_refuses_to_restore_a_backup_it_does_not_hold(api, sandbox):
    crd = client.CustomObjectsApi(api)
    restore = {"apiVersion": "velero.io/v1", "kind": "Restore", "metadata": {"name": "drill-2", "namespace": "velero"},
               "spec": {"backupName": "never-made", "namespaceMapping": {"apps-prod": "drill-apps-prod"}}}
    crd.create_namespaced_custom_object("velero.io", "v1", "velero", "restores", restore)
    [done] = watch_until(lambda **kw: crd.list_namespaced_custom_object("velero.io", "v1", "velero", "restores", **kw),
                         lambda r: r.get("status", {}).get("phase") == "FailedValidation")[-1:]
    assert done["status"]["validationErrors"] == ['Error retrieving backup: backups.velero.io "never-made" not found']
    assert "drill-apps-prod" not in [n.metadata.name for n in client.CoreV1Api(api).list_namespace().items]


def test_prior_backups_of_a_scenario_are_completed_validated_and_backdated(sandbox, config):
    from datetime import datetime, timezone

    from sandbox.seed import prepare
    from sandbox.validation import Invalid

    sandbox.scenario = {"prior_backups": {"hours_ago": 20, "items": 7}}
    now = datetime(2026, 3, 2, 6, 0, tzinfo=timezone.utc)
    names = prepare(sandbox, config, now=now)
    made = {b["metadata"]["name"]: b for b in sandbox.list("backups", "velero")}
    assert sorted(names) == sorted(made) and len(made) == 3
    for b in made.values():
        assert b["status"]["phase"] == "Completed" and b["status"]["completionTimestamp"] == "2026-03-01T10:00:00Z"
        assert b["metadata"]["creationTimestamp"] == b["status"]["startTimestamp"] == "2026-03-01T09:59:00Z"
        assert b["status"]["progress"] == {"totalItems": 7, "itemsBackedUp": 7}
        results = sandbox.backup_storage_dir / f"backups/{b['metadata']['name']}/{b['metadata']['name']}-results.gz"
        assert json.loads(gzip.decompress(results.read_bytes())) == {"errors": {}, "warnings": {}}
    # A seed is created the way any Backup is: one the CRD refuses is refused here too.
    bad = backup("bad", snapshotVolumes="yes")
    with pytest.raises(Invalid, match="spec.snapshotVolumes"):
        sandbox.call(lambda: sandbox.velero.completed_backup(bad, completed=now, items=1))
    assert "bad" not in {b["metadata"]["name"] for b in sandbox.list("backups", "velero")}
    assert len(sandbox.list("applications", "argocd")) == 3  # and the ApplicationSet's Applications


def test_velero_objects_are_validated_against_the_crds(api):
    crd = client.CustomObjectsApi(api)
    with pytest.raises(client.ApiException) as exc:
        crd.create_namespaced_custom_object("velero.io", "v1", "velero", "backups", backup("bad", snapshotVolumes="yes"))
    assert exc.value.status == 422
    body = json.loads(exc.value.body)
    assert body["reason"] == "Invalid" and body["details"]["causes"][0]["field"] == "spec.snapshotVolumes"


def test_stuck_backup_stays_in_progress(api, sandbox):
    sandbox.scenario = {"backups": [{"stuck": True, "delay_seconds": 0.1}]}
    crd = client.CustomObjectsApi(api)
    crd.create_namespaced_custom_object("velero.io", "v1", "velero", "backups", backup("stuck"))
    time.sleep(0.5)
    assert crd.get_namespaced_custom_object("velero.io", "v1", "velero", "backups", "stuck")["status"]["phase"] == "InProgress"


def test_velero_answers_a_download_request_with_a_presigned_link_to_the_results(api, sandbox):
    import urllib.error
    import urllib.request

    sandbox.scenario = {"backups": [{"phase": "PartiallyFailed", "errors": ["pvc apps-prod/data: timed out"]}]}
    crd = client.CustomObjectsApi(api)
    args = ("velero.io", "v1", "velero")
    crd.create_namespaced_custom_object(*args, "backups", backup("prod-3"))
    watch_until(lambda **kw: crd.list_namespaced_custom_object(*args, "backups", **kw),
                lambda b: b.get("status", {}).get("phase") == "PartiallyFailed")
    request = {"apiVersion": "velero.io/v1", "kind": "DownloadRequest", "metadata": {"name": "prod-3-results", "namespace": "velero"},
               "spec": {"target": {"kind": "BackupResults", "name": "prod-3"}}}
    crd.create_namespaced_custom_object(*args, "downloadrequests", request)
    done = watch_until(lambda **kw: crd.list_namespaced_custom_object(*args, "downloadrequests", **kw),
                       lambda d: d.get("status", {}).get("phase") == "Processed")[-1]
    # Like an S3 pre-signed URL: fetched without the cluster's token.
    with urllib.request.urlopen(done["status"]["downloadURL"]) as response:
        assert json.loads(gzip.decompress(response.read()))["errors"]["velero"] == ["pvc apps-prod/data: timed out"]
    missing = sandbox.storage_url("backups/never/never-results.gz")
    escape = sandbox.storage_url("../../etc/passwd")
    for url in (missing, escape):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url)
        assert err.value.code == 404


def test_a_download_request_for_an_unknown_kind_is_refused(api, sandbox):
    crd = client.CustomObjectsApi(api)
    request = {"apiVersion": "velero.io/v1", "kind": "DownloadRequest", "metadata": {"name": "bad", "namespace": "velero"},
               "spec": {"target": {"kind": "Everything", "name": "prod-3"}}}
    with pytest.raises(client.ApiException) as err:
        crd.create_namespaced_custom_object("velero.io", "v1", "velero", "downloadrequests", request)
    assert err.value.status == 422 and "spec.target.kind" in err.value.body and "BackupResults" in err.value.body


# -- smoke-test pods run the real checker against the scenario's simulated services -----------

def smoke_pod(config, service: str, env: str, expect_status: int) -> tuple[dict, list[str]]:
    """The pod of steps.smoke for `service` (expecting `expect_status`), as the client would send it."""
    from release.k8s import steps

    data = config.model_dump()
    data["services"][service]["smoke"]["expect_status"] = expect_status
    config = type(config).model_validate(data)
    step = steps.smoke(config, service, env)
    name = f"{service}-smoke-{expect_status}"
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"release-platform/step": step.step, "release-platform/service": service}},
            "spec": {"restartPolicy": "Never", "containers": [
                {"name": "base", "image": step.image, "command": step.cmds, "args": step.args}]}}, step.args


def pod_log(core, name: str, ns: str = "apps-staging") -> str:
    return core.read_namespaced_pod_log(name, ns, _preload_content=False).data.decode()


def finished_pod(core, name: str, ns: str = "apps-staging", timeout: float = 10):
    for event in watch.Watch().stream(core.list_namespaced_pod, ns, field_selector=f"metadata.name={name}",
                                      timeout_seconds=timeout):
        if event["object"].status.phase in ("Succeeded", "Failed"):
            return event["object"]
    raise AssertionError(f"pod {name} never finished")


HEALTHZ_204 = {"http": [{"match": {"host": "service-b.apps-staging.svc.cluster.local", "path": "/healthz"}, "status": 204}]}


def test_a_smoke_pod_runs_the_checker_and_passes_on_the_status_it_expects(api, sandbox, config):
    sandbox.scenario = {**HEALTHZ_204, "default_pod": {"duration_seconds": 0.1}}
    sandbox.ensure_namespace("apps-staging")
    core = client.CoreV1Api(api)
    body, args = smoke_pod(config, "service-b", "staging", 204)
    core.create_namespaced_pod("apps-staging", body)
    pod = finished_pod(core, body["metadata"]["name"])
    state = pod.status.container_statuses[0].state.terminated
    url = "http://service-b.apps-staging.svc.cluster.local:8080/healthz"
    assert (pod.status.phase, state.exit_code) == ("Succeeded", 0)
    assert json.loads(state.message) == {"passed": True, "expect_status": 204, "checks": [
        {"url": url, "status": 204, "error": None, "attempts": 1, "passed": True}]}
    assert pod_log(core, body["metadata"]["name"]) == f"{url} 204 (attempt 1/6)\n"


def test_a_smoke_pod_expecting_200_fails_on_the_204_naming_the_url(api, sandbox, config):
    sandbox.scenario = {**HEALTHZ_204, "default_pod": {"duration_seconds": 0.1}}
    sandbox.ensure_namespace("apps-staging")
    core = client.CoreV1Api(api)
    body, _ = smoke_pod(config, "service-b", "staging", 200)
    started = time.monotonic()
    core.create_namespaced_pod("apps-staging", body)
    pod = finished_pod(core, body["metadata"]["name"])
    # 1 + 5 retries 5 s apart would take 25 s for real; the sandbox does not wait them out.
    assert time.monotonic() - started < 5
    state = pod.status.container_statuses[0].state.terminated
    url = "http://service-b.apps-staging.svc.cluster.local:8080/healthz"
    assert (pod.status.phase, state.exit_code, state.reason) == ("Failed", 1, "Error")
    summary = json.loads(state.message)
    assert summary["passed"] is False and summary["checks"][0]["url"] == url
    assert summary["checks"][0]["status"] == 204 and summary["checks"][0]["attempts"] == 6
    log = pod_log(core, body["metadata"]["name"]).splitlines()
    assert log[-1] == f"smoke test failed (expected status 200): {url} answered 204 after 6 attempt(s)"


def test_a_smoke_pod_passes_once_a_failing_service_recovers_within_its_retries(api, sandbox, config):
    sandbox.scenario = {"http": [{"match": {"host": "service-a.*", "path": "/ready"}, "fail_times": 2}],
                        "default_pod": {"duration_seconds": 0.1}}
    sandbox.ensure_namespace("apps-staging")
    core = client.CoreV1Api(api)
    body, _ = smoke_pod(config, "service-a", "staging", 200)
    core.create_namespaced_pod("apps-staging", body)
    pod = finished_pod(core, body["metadata"]["name"])
    assert pod.status.phase == "Succeeded"
    log = pod_log(core, body["metadata"]["name"]).splitlines()
    host = "http://service-a.apps-staging.svc.cluster.local:8080"
    assert log == [f"{host}/healthz 200 (attempt 1/6)", f"{host}/ready 503 (attempt 1/6)",
                   f"{host}/ready 503 (attempt 2/6)", f"{host}/ready 200 (attempt 3/6)"]


def test_a_pod_rule_naming_a_smoke_pod_still_decides_its_fate(api, sandbox, config):
    sandbox.scenario = {**HEALTHZ_204, "pods": [{"match": {"labels": {"release-platform/step": "smoke-staging"}},
                                                 "exit_code": 1, "logs": ["forced failure"], "duration_seconds": 0.1}]}
    sandbox.ensure_namespace("apps-staging")
    core = client.CoreV1Api(api)
    body, _ = smoke_pod(config, "service-b", "staging", 204)  # the checker would pass
    core.create_namespaced_pod("apps-staging", body)
    pod = finished_pod(core, body["metadata"]["name"])
    assert (pod.status.phase, pod.status.container_statuses[0].state.terminated.exit_code) == ("Failed", 1)
    assert pod_log(core, body["metadata"]["name"]) == "forced failure\n"
