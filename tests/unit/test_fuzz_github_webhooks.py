"""Fuzzed, correctly signed webhook deliveries: GitHub's example payloads with one value (or a whole
subtree) replaced by junk. The receiver answers 2xx or a 4xx/502 naming what is wrong, never a crash,
and nothing is triggered unless the delivery is one it accepts."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from release.domain.config import parse_config
from sandbox.github import GitHubStandIn
from sandbox.github.mode import webhook_secret_connection
from sandbox.github.server import WEBHOOK_SECRET
from tests.unit.fuzzing import fuzz, junk, nasty_text

WEBHOOKS = Path(__file__).resolve().parents[1] / "fixtures" / "github" / "webhooks"
DAGS = Path(__file__).resolve().parents[2] / "dags"
PAYLOADS = {name: json.loads((WEBHOOKS / f"{name}.json").read_text())
            for name in ("push.created.4", "push.created.0", "pull_request.synchronize.22", "pull_request.opened.0")}


@st.composite
def spoiled(draw, obj):
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


@pytest.fixture(scope="module")
def github(airflow_db):
    """release-dispatch in the database, and one GitHub stand-in for every example."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(DagBag(dag_folder=str(DAGS / "release_dispatch.py")), "dags-folder", None)
    names = ("AIRFLOW_CONN_GITHUB_FUZZ", "AIRFLOW_CONN_GITHUB_WEBHOOK")
    saved = {n: os.environ.get(n) for n in names}
    with GitHubStandIn(["Codertocat/Hello-World"]) as standin:
        os.environ.update(dict(zip(names, (standin.airflow_connection(), webhook_secret_connection()))))
        try:
            yield standin
        finally:
            for n, v in saved.items():
                os.environ.pop(n, None) if v is None else os.environ.__setitem__(n, v)


@given(data=st.data())
@fuzz(60)
def test_spoiled_payloads_are_answered_never_crash(github, config, data):
    from airflow.models.dagrun import DagRun

    from release.github.client import GitHubClient
    from release.web.github_webhooks import WebhookRefused, handle

    cfg = parse_config(json.dumps({**config.model_dump(mode="json", exclude_none=True),
                                   "github": {"repository": "Codertocat/Hello-World"}}))
    client = GitHubClient("Codertocat/Hello-World", "github_fuzz", max_attempts=1, sleep=lambda s: None)
    name = data.draw(st.sampled_from(sorted(PAYLOADS)))
    body = json.dumps(data.draw(spoiled(PAYLOADS[name]))).encode()
    headers = {"content-type": "application/json", "x-github-event": name.split(".")[0],
               "x-github-delivery": f"fuzz-{hashlib.sha256(body).hexdigest()[:32]}",
               "x-hub-signature-256": "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()}
    before = len(DagRun.find(dag_id="release-dispatch"))
    try:
        status = handle(headers, body, config=cfg, client=client).status_code
    except WebhookRefused as refused:
        status = refused.status
        assert refused.detail and "\n" not in refused.detail
    assert status in (200, 201, 202, 400, 422, 502), status
    assert len(DagRun.find(dag_id="release-dispatch")) == before + (status == 201)
