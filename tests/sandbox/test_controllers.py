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
