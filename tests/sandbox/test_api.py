"""The sandbox API behaves like a real API server to ordinary clients."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from kubernetes import client, config, watch

MAKE_RUN = Path(__file__).resolve().parents[2] / "include" / "sandbox" / "scenarios" / "make-run.yaml"


@pytest.fixture
def core(sandbox):
    config.load_kube_config(str(sandbox.kubeconfig_path))
    return client.CoreV1Api()


def pod(name: str, labels: dict | None = None, **container) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1PodSpec(restart_policy="Never", containers=[client.V1Container(name="base", image="busybox:1.36", **container)]),
    )


def wait_phase(core, name, phases=("Succeeded", "Failed"), ns="default", timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = core.read_namespaced_pod(name, ns)
        if p.status.phase in phases:
            return p
        time.sleep(0.05)
    raise AssertionError(f"{name} never reached {phases}")


def raw(sandbox, path: str, token: str | None = "sandbox-token", method: str = "GET", body: dict | None = None):
    req = urllib.request.Request(sandbox.url + path, method=method, data=json.dumps(body).encode() if body else None,
                                 headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read() or b"{}")


def test_server_side_fields_and_increasing_resource_versions(core):
    a = core.create_namespaced_pod("default", pod("a"))
    b = core.create_namespaced_pod("default", pod("b"))
    assert a.metadata.uid != b.metadata.uid and a.metadata.creation_timestamp
    assert int(b.metadata.resource_version) > int(a.metadata.resource_version)
    assert (a.status.phase, a.metadata.namespace) == ("Pending", "default")


def test_status_bodies_for_missing_duplicate_and_unauthenticated(sandbox, core):
    core.create_namespaced_pod("default", pod("dup"))
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_pod("default", pod("dup"))
    assert exc.value.status == 409 and json.loads(exc.value.body)["reason"] == "AlreadyExists"
    with pytest.raises(client.ApiException) as exc:
        core.read_namespaced_pod("nope", "default")
    body = json.loads(exc.value.body)
    assert (exc.value.status, body["kind"], body["reason"], body["message"]) == (404, "Status", "NotFound", 'pods "nope" not found')
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_pod("no-such-ns", pod("x"))
    assert exc.value.status == 404 and json.loads(exc.value.body)["message"] == 'namespaces "no-such-ns" not found'
    assert raw(sandbox, "/api/v1/namespaces/default/pods", token=None)[0] == 401
    assert raw(sandbox, "/api/v1/namespaces/default/pods", token="wrong")[0] == 401


def test_discovery_lists_the_custom_resources(sandbox):
    status, _, groups = raw(sandbox, "/apis")
    assert status == 200 and {g["name"] for g in groups["groups"]} == {"argoproj.io", "velero.io"}
    _, _, velero = raw(sandbox, "/apis/velero.io/v1")
    assert {r["name"] for r in velero["resources"]} == {"backups", "restores", "schedules", "downloadrequests"}
    _, _, core = raw(sandbox, "/api/v1")
    assert {"pods", "pods/log", "events", "secrets", "configmaps", "namespaces"} <= {r["name"] for r in core["resources"]}


@pytest.mark.parametrize("spec,field", [
    ({"metadata": {"name": "UPPER"}, "spec": {"containers": [{"name": "base", "image": "x"}]}}, "metadata.name"),
    ({"metadata": {"name": "ok"}, "spec": {"containers": []}}, "spec.containers"),
    ({"metadata": {"name": "ok"}, "spec": {"containers": [{"name": "base"}]}}, "spec.containers[0].image"),
    ({"metadata": {"name": "ok"}, "spec": {"containers": [{"name": "base", "image": "x", "imagePullPolcy": "Always"}]}}, "spec.containers[0]"),
    ({"metadata": {"name": "ok"}, "spec": {"containers": [{"name": "base", "image": "x", "ports": [{"containerPort": "http"}]}]}}, "spec.containers[0].ports[0].containerPort"),
    ({"metadata": {"name": "ok"}, "spec": {"restartPolicy": "Sometimes", "containers": [{"name": "base", "image": "x"}]}}, "spec.restartPolicy"),
    ({"metadata": {"name": "ok"}, "spec": {"containers": [{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]}}, "spec.containers[1].name"),
])
def test_invalid_pods_are_refused_with_422(sandbox, spec, field):
    status, _, body = raw(sandbox, "/api/v1/namespaces/default/pods", method="POST", body={"apiVersion": "v1", "kind": "Pod", **spec})
    assert status == 422 and body["reason"] == "Invalid"
    assert field in [c["field"] for c in body["details"]["causes"]]
    assert sandbox.list("pods", "default") == []  # nothing was created


def test_the_bodies_of_writes_are_recorded_as_sent_accepted_or_not(sandbox, core):
    core.create_namespaced_pod("default", pod("kept", labels={"a": "1"}))
    refused = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "UPPER"}, "spec": {"containers": []}}
    assert raw(sandbox, "/api/v1/namespaces/default/pods", method="POST", body=refused)[0] == 422
    core.create_namespaced_secret("default", client.V1Secret(metadata=client.V1ObjectMeta(name="s")))
    kept, rejected = sandbox.received("pods")
    assert kept["metadata"] == {"name": "kept", "labels": {"a": "1"}} and "status" not in kept  # as the client sent it
    assert kept["spec"]["containers"][0]["image"] == "busybox:1.36"
    assert rejected == refused
    assert [s["metadata"]["name"] for s in sandbox.received("secrets")] == ["s"]
    assert sandbox.received("pods", method="DELETE") == []


def test_selectors(core):
    core.create_namespaced_pod("default", pod("p1", {"dag_id": "d", "task_id": "build"}))
    core.create_namespaced_pod("default", pod("p2", {"dag_id": "d", "task_id": "scan", "already_checked": "True"}))
    core.create_namespaced_pod("default", pod("p3", {"dag_id": "d", "airflow-worker": "1"}))
    names = lambda sel: sorted(p.metadata.name for p in core.list_namespaced_pod("default", label_selector=sel).items)  # noqa: E731
    assert names("dag_id=d,already_checked!=True,!airflow-worker") == ["p1"]
    assert names("task_id in (build,scan)") == ["p1", "p2"]
    assert names("task_id notin (build)") == ["p2", "p3"]
    assert [p.metadata.name for p in core.list_namespaced_pod("default", field_selector="metadata.name=p3").items] == ["p3"]
    wait_phase(core, "p1")
    events = core.list_namespaced_event("default", field_selector="involvedObject.name=p1").items
    assert {e.reason for e in events} >= {"Scheduled", "Started"}


def test_watch_resumes_from_a_resource_version_and_honours_timeout(core):
    first = core.create_namespaced_pod("default", pod("w1"))
    core.create_namespaced_pod("default", pod("w2"))
    start = time.monotonic()
    events = [(e["type"], e["object"].metadata.name) for e in watch.Watch().stream(
        core.list_namespaced_pod, "default", resource_version=first.metadata.resource_version, timeout_seconds=1)]
    assert time.monotonic() - start < 3
    assert ("ADDED", "w2") in events and ("ADDED", "w1") not in events
    assert ("MODIFIED", "w1") in events  # the kubelet moved it along meanwhile


def test_log_follow_streams_until_the_container_ends(sandbox, core):
    sandbox.scenario = {"default_pod": {"logs": ["compiling", "linking"], "duration_seconds": 0.6}}
    core.create_namespaced_pod("default", pod("logs"))
    wait_phase(core, "logs", ("Running",))
    resp = core.read_namespaced_pod_log("logs", "default", container="base", follow=True, _preload_content=False)
    assert resp.read() == b"compiling\nlinking\n"
    assert core.read_namespaced_pod("logs", "default").status.phase == "Succeeded"  # returned only once it ended
    with pytest.raises(client.ApiException) as exc:
        core.read_namespaced_pod_log("logs", "default", container="sidecar")
    assert exc.value.status == 400


def test_logs_of_a_scenario_pod(sandbox, core):
    sandbox.scenario = {"pods": [{"match": {"image": "busybox:*"}, "logs": ["one", "two", "three"], "duration_seconds": 0.3}]}
    core.create_namespaced_pod("default", pod("talk"))
    wait_phase(core, "talk")
    text = core.read_namespaced_pod_log("talk", "default", container="base", timestamps=True, _preload_content=False).data.decode()
    assert [line.split(" ", 1)[1] for line in text.splitlines()] == ["one", "two", "three"]
    assert core.read_namespaced_pod_log("talk", "default", tail_lines=1, _preload_content=False).data.decode() == "three\n"


def test_secrets_and_configmaps(core):
    core.create_namespaced_secret("default", client.V1Secret(metadata=client.V1ObjectMeta(name="cosign"), string_data={"key": "k"}))
    core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cfg"), data={"a": "1"}))
    assert core.read_namespaced_secret("cosign", "default").string_data == {"key": "k"}
    core.patch_namespaced_config_map("cfg", "default", {"data": {"b": "2"}})
    assert core.read_namespaced_config_map("cfg", "default").data == {"a": "1", "b": "2"}
    core.delete_namespaced_config_map("cfg", "default")
    assert core.list_namespaced_config_map("default").items == []


def test_faults_429_slow_and_dropped_watch(sandbox, core):
    sandbox.scenario = {"faults": [
        {"match": {"method": "GET", "path": "/api/v1/namespaces/default/configmaps"}, "status": 429, "count": 1, "retry_after_seconds": 2},
        {"match": {"method": "GET", "path": "/api/v1/namespaces/default/secrets"}, "delay_seconds": 0.5},
        {"match": {"path": "/api/v1/namespaces/default/pods", "watch": True}, "drop_watch_after_seconds": 0.2},
    ]}
    status, headers, body = raw(sandbox, "/api/v1/namespaces/default/configmaps")
    assert (status, headers["Retry-After"], body["reason"]) == (429, "2", "TooManyRequests")
    assert raw(sandbox, "/api/v1/namespaces/default/configmaps")[0] == 200  # the burst is over
    start = time.monotonic()
    core.list_namespaced_secret("default")
    assert time.monotonic() - start >= 0.5
    start = time.monotonic()
    list(watch.Watch().stream(core.list_namespaced_pod, "default", timeout_seconds=5))
    assert time.monotonic() - start < 2  # dropped long before its timeout


def test_sandbox_command_serves_a_kubeconfig_clients_accept(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    # As `make run` starts it (scripts/run.sh), with its scenario.
    proc = subprocess.Popen([sys.executable, "-m", "release", "sandbox", "--port", "0", "--kubeconfig", str(kubeconfig),
                             "--scenario", str(MAKE_RUN)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "RELEASE_DATA_DIR": str(tmp_path / "data")})
    try:
        banner = ""
        deadline = time.monotonic() + 30
        while "kubeconfig:" not in banner and time.monotonic() < deadline:
            banner += proc.stdout.readline()
        assert "simulated" in banner and str(kubeconfig) in banner
        api = config.new_client_from_config(str(kubeconfig))
        core = client.CoreV1Api(api)
        assert core.list_namespaced_pod("default").items == []
        core.create_namespaced_pod("default", pod("hello"))
        wait_phase(core, "hello")
        assert core.read_namespaced_pod_log("hello", "default", _preload_content=False).status == 200
        assert "apps-prod" in [n.metadata.name for n in core.list_namespace().items]  # the config's namespaces
        apps = client.CustomObjectsApi(api).list_namespaced_custom_object("argoproj.io", "v1alpha1", "argocd", "applications")
        assert sorted(a["metadata"]["name"] for a in apps["items"]) == ["umbrella-dev", "umbrella-prod", "umbrella-staging"]
        # The scenario's earlier backups are there before the kubeconfig is, as the restore drill needs them.
        backups = client.CustomObjectsApi(api).list_namespaced_custom_object("velero.io", "v1", "velero", "backups")
        assert sorted(b["metadata"]["labels"]["release-platform/env"] for b in backups["items"]) == ["dev", "prod", "staging"]
        assert {b["status"]["phase"] for b in backups["items"]} == {"Completed"}
        assert "Earlier Completed backups" in banner
    finally:
        proc.terminate()
        proc.wait(10)


def _control(sandbox, method: str, path: str, body=None, token: str | None = "sandbox-token"):
    req = urllib.request.Request(sandbox.url + path, method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_harness_outside_the_process_steers_the_scenario_and_reads_the_requests(sandbox, core):
    """`make chaos` drives the sandbox of a running `make run`: it swaps the scenario (faults count
    afresh) and reads which pods clients asked for, with their labels, over the sandbox's own API."""
    faults = {"faults": [{"match": {"method": "POST", "path": "/api/v1/namespaces/default/pods"}, "status": 503}]}
    assert _control(sandbox, "PUT", "/_sandbox/scenario", faults)[0] == 200
    with pytest.raises(client.ApiException) as refused:
        core.create_namespaced_pod("default", pod("first", {"try_number": "1"}))
    assert refused.value.status == 503
    core.create_namespaced_pod("default", pod("second", {"try_number": "1"}))  # the fault's one count is spent
    assert _control(sandbox, "PUT", "/_sandbox/scenario", faults)[0] == 200  # a new scenario: counts start over
    with pytest.raises(client.ApiException):
        core.create_namespaced_pod("default", pod("third"))

    status, body = _control(sandbox, "GET", "/_sandbox/requests")
    creates = [(r["name"], r["labels"], r["status"]) for r in body["requests"] if r["method"] == "POST"]
    # (a request a fault refused was answered before its body was read)
    assert status == 200 and creates == [(None, {}, 503), ("second", {"try_number": "1"}, 201), (None, {}, 503)]
    # A scenario it cannot take is refused naming what is wrong, and the current one stays.
    status, body = _control(sandbox, "PUT", "/_sandbox/scenario", {"faults": [{"status": 404}]})
    assert status == 422 and "faults.0.status" in body["message"]
    assert sandbox.scenario.faults[0].status == 503
    # Like every other path, it needs the sandbox's token.
    assert _control(sandbox, "GET", "/_sandbox/requests", token=None)[0] == 401
