"""The Argo CD Application, typed: the sync request we send and the status we wait on."""

from __future__ import annotations

import pytest

from release.k8s.argocd import AppState, Application, Initiator, Operation, SyncPatch, SyncRequest
from release.k8s.objects import MalformedObject

REV = "0123456789abcdef0123456789abcdef01234567"


def app(sync=None, revision=None, health=None, phase=None, message=None, pending=None) -> dict:
    """An Application as Argo CD writes it, with fields we never read beside the ones we do."""
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "apps-prod"},
            "spec": {"source": {"repoURL": "file:///gitops", "targetRevision": "HEAD"}},
            **({"operation": {"sync": {"revision": pending}}} if pending else {}),
            "status": {"sync": {"status": sync, "revision": revision, "comparedTo": {}},
                       "health": {"status": health, **({"message": message} if message else {})},
                       "operationState": {"phase": phase, "startedAt": "2026-11-26T02:00:00Z"},
                       "history": [], "reconciledAt": "2026-11-26T02:00:01Z"}}


def test_the_sync_request_is_the_patch_argocd_app_sync_sends():
    patch = SyncPatch(operation=Operation(initiated_by=Initiator(username="release-platform"),
                                          sync=SyncRequest(revision=REV)))
    assert patch.to_api() == {"operation": {"initiatedBy": {"username": "release-platform"},
                                            "sync": {"revision": REV, "syncStrategy": {"hook": {}}}}}


@pytest.mark.parametrize("obj, pending, verdict", [
    (app("Synced", REV, "Healthy", "Succeeded"), False, "success"),
    (app("Synced", "f" * 40, "Healthy", "Succeeded"), False, None),  # healthy, but at another revision
    (app("OutOfSync", None, "Progressing", "Running"), False, None),
    (app("Synced", REV, "Degraded", "Succeeded", message="back-off restarting"), False, "failed"),
    (app("OutOfSync", None, "Healthy", "Failed"), False, "failed"),
    (app("Synced", REV, "Healthy", "Succeeded", pending=REV), True, None),  # our request not picked up yet
    ({"kind": "Application", "metadata": {"name": "new"}}, False, None),  # no status yet
    ({"kind": "Application", "metadata": {"name": "new"}, "status": None}, False, None),
])
def test_the_wait_judges_the_typed_status(obj, pending, verdict):
    read = Application.read(obj, "Argo CD Application argocd/apps-prod")
    assert read.pending(REV) is pending
    assert AppState.of(read).verdict(REV, read.pending(REV)) == verdict
    assert AppState.of(obj) == AppState.of(read)


def test_the_health_message_explains_a_failure():
    state = AppState.of(app("Synced", REV, "Degraded", "Succeeded", message="back-off restarting"))
    assert state.describe() == ("sync=Synced revision=0123456789ab health=Degraded operation=Succeeded "
                                "(back-off restarting)")


@pytest.mark.parametrize("obj, field", [
    ({"status": {"sync": {"status": 3}}}, "status.sync.status"),
    ({"status": {"health": "Healthy"}}, "status.health"),
    ({"status": {"operationState": {"phase": ["Failed"]}}}, "status.operationState.phase"),
    ([], "the object"),
])
def test_a_malformed_application_is_named_not_a_key_error(obj, field):
    with pytest.raises(MalformedObject, match=f"Argo CD Application argocd/x as the API returned it cannot be read: {field}: "):
        Application.read(obj, "Argo CD Application argocd/x")
