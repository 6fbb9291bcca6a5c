"""Fuzzed request bodies to the sandbox API (create, replace, patch): like a real API server it
answers 2xx or a 4xx Status naming what is wrong, never a 500 from a crash inside."""

from __future__ import annotations

import copy
import json
import urllib.error
import urllib.request

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sandbox.server import TOKEN, SandboxCluster
from tests.unit.fuzzing import fuzz, junk, nasty_text

CONTAINER = {"name": "main", "image": "busybox:1.36", "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}}}
VALID = {
    "/api/v1/namespaces/default/pods": {"metadata": {"name": "p", "labels": {"app": "x"}},
                                        "spec": {"restartPolicy": "Never", "containers": [CONTAINER]}},
    "/api/v1/namespaces/default/configmaps": {"metadata": {"name": "c"}, "data": {"k": "v"}},
    "/api/v1/namespaces/default/secrets": {"metadata": {"name": "s"}, "stringData": {"k": "v"}},
    "/api/v1/namespaces": {"metadata": {"name": "ns-fuzz"}},
    "/apis/velero.io/v1/namespaces/velero/backups": {"metadata": {"name": "b"},
                                                      "spec": {"includedNamespaces": ["apps-dev"], "ttl": "720h0m0s"}},
    "/apis/velero.io/v1/namespaces/velero/downloadrequests": {"metadata": {"name": "d"},
                                                               "spec": {"target": {"kind": "BackupLog", "name": "b"}}},
    "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications": {
        "metadata": {"name": "a"}, "spec": {"project": "default", "destination": {"namespace": "x"},
                                             "source": {"repoURL": "gitops", "path": "p"}}},
}


@st.composite
def spoiled(draw, obj):
    """`obj` with one value somewhere (or a whole subtree) replaced by junk."""
    obj = copy.deepcopy(obj)
    node = obj
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            return obj
        key = draw(st.sampled_from(keys))
        if not isinstance(node[key], (dict, list)) or draw(st.integers(0, 2)) == 0:
            node[key] = draw(st.one_of(junk, nasty_text))
            return obj
        node = node[key]


def bodies(path):
    valid = VALID[path]
    return st.one_of(st.just(valid), spoiled(valid), spoiled(valid), junk)


def send(cluster, method: str, path: str, body, content_type: str = "application/json") -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(cluster.url + path, method=method, data=data,
                                 headers={"Content-Type": content_type, "Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, {"raw": raw.decode(errors="replace")}


def assert_answered(status: int, body: dict):
    assert status < 500, body  # never a crash inside the server
    if status >= 400:  # a Status body saying what is wrong, as the API server sends
        assert body.get("kind") == "Status" and body.get("code") == status and body.get("message"), body
        if status == 422:
            assert all(c.get("field") for c in body["details"]["causes"]), body


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sandbox-fuzz")
    with SandboxCluster(artifacts_dir=tmp / "artifacts", backup_storage_dir=tmp / "storage") as running:
        status, _ = send(running, "POST", "/api/v1/namespaces/default/configmaps",
                         {"metadata": {"name": "target"}, "data": {"k": "v"}})
        assert status == 201
        yield running


@fuzz(100)
@given(data=st.data(), dry_run=st.booleans())
def test_a_created_object_is_accepted_or_refused_with_a_status(cluster, data, dry_run):
    path = data.draw(st.sampled_from(sorted(VALID)), label="path")
    body = data.draw(bodies(path), label="body")
    status, answer = send(cluster, "POST", path + ("?dryRun=All" if dry_run else ""), body)
    assert_answered(status, answer)
    if status == 201 and not dry_run:
        assert answer["metadata"]["name"] and answer["kind"] and answer["metadata"]["resourceVersion"]


TARGET = "/api/v1/namespaces/default/configmaps/target"


@fuzz(60)
@given(body=st.one_of(bodies("/api/v1/namespaces/default/configmaps"), st.just(b"{not json"), st.just(b"\xff")))
@example(body=[1, 2])  # AttributeError in the replace
@example(body="text")
def test_a_replaced_object_is_accepted_or_refused_with_a_status(cluster, body):
    status, answer = send(cluster, "PUT", TARGET, body)
    assert_answered(status, answer)
    if status == 200:
        assert answer["metadata"]["name"] == "target" and answer["kind"] == "ConfigMap"


json_patches = st.lists(st.one_of(
    st.fixed_dictionaries({"op": st.sampled_from(["add", "replace", "remove", "test", "move", "bogus"]),
                           "path": st.one_of(st.sampled_from(["/data/k", "/metadata/labels/x", "/data", "/0", "/-",
                                                              "/data/k/deeper", "", "/metadata/name"]), nasty_text)},
                          optional={"value": junk}),
    junk), max_size=3)


@fuzz(80)
@given(content_type=st.sampled_from(["application/merge-patch+json", "application/strategic-merge-patch+json",
                                     "application/json-patch+json"]),
       body=st.one_of(json_patches, junk, spoiled({"metadata": {"labels": {"a": "b"}}, "data": {"k": "w"}})))
@example(content_type="application/json-patch+json", body=[{"op": "add"}])  # KeyError: 'path'
@example(content_type="application/json-patch+json", body={"op": "add"})
@example(content_type="application/merge-patch+json", body=[1])
@example(content_type="application/json-patch+json", body=[{"op": "remove", "path": "/data/nope"}])
def test_a_patch_is_applied_or_refused_with_a_status(cluster, content_type, body):
    status, answer = send(cluster, "PATCH", TARGET, body, content_type)
    assert_answered(status, answer)
    if status == 200:
        assert answer["metadata"]["name"] == "target" and answer["kind"] == "ConfigMap"
    assert send(cluster, "PUT", TARGET, {"metadata": {"name": "target"}, "data": {"k": "v"}})[0] == 200  # back for the next
