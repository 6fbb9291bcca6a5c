"""The GitOps store against real git repositories: atomic commits, retries, no partial writes."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import git
import pytest

from release.gitops.store import Author, Credentials, GitOpsError, GitOpsStore, PushConflict, create_bare_repo, local_repo_url
from tests.helpers import head


def write(tree: Path, name: str, text: str) -> None:
    (tree / name).parent.mkdir(parents=True, exist_ok=True)
    (tree / name).write_text(text)


def competing_push(url: str, name: str) -> str:
    """Another writer pushes a commit, as an Airflow worker on another host would."""
    other = GitOpsStore(url, "main", serialize_locally=False)
    return other.change(lambda t: (write(t, name, name), f"competing {name}")[1]).sha


def test_change_is_one_commit_with_author_and_message(store, gitops_url):
    before = head(gitops_url)
    result = store.change(lambda t: (write(t, "notes/a.txt", "hello\n"), "Add a note\n\nWhy: testing")[1],
                          author=Author("alice", "alice@example.com"))
    commit = git.Repo(gitops_url.removeprefix("file://")).commit("main")
    assert result.sha == commit.hexsha and result.attempts == 1
    assert commit.parents[0].hexsha == before
    assert (commit.author.name, commit.committer.name) == ("alice", "Release Platform")
    assert commit.message.startswith("Add a note")
    assert store.read("notes/a.txt") == "hello\n"


def test_change_without_diff_commits_nothing(store, gitops_url):
    before = head(gitops_url)
    assert store.change(lambda t: "nothing really").sha is None
    assert store.change(lambda t: None).sha is None
    assert head(gitops_url) == before


def test_change_that_raises_leaves_the_remote_untouched(store, gitops_url):
    before = head(gitops_url)

    def half_done(tree: Path) -> str:
        write(tree, "registry/versions.yaml", "garbage")
        raise RuntimeError("validation failed halfway")

    with pytest.raises(RuntimeError, match="halfway"):
        store.change(half_done)
    assert head(gitops_url) == before
    assert "garbage" not in store.read("registry/versions.yaml")


def test_lost_race_is_retried_on_the_new_head(store, gitops_url):
    attempts = []

    def change(tree: Path) -> str:
        attempts.append(1)
        if len(attempts) == 1:
            competing_push(gitops_url, "other.txt")  # lands between our fetch and our push
        write(tree, "mine.txt", "mine")
        return "mine"

    result = store.change(change)
    assert result.attempts == 2 and len(attempts) == 2
    repo = git.Repo(gitops_url.removeprefix("file://"))
    assert [c.message.strip() for c in repo.iter_commits("main", max_count=2)] == ["mine", "competing other.txt"]
    assert store.read("other.txt") == "other.txt" and store.read("mine.txt") == "mine"


def test_gives_up_after_bounded_attempts_and_writes_nothing(gitops_url):
    store = GitOpsStore(gitops_url, "main", max_attempts=3, backoff_seconds=0.001)
    count = iter(range(100))

    def always_loses(tree: Path) -> str:
        competing_push(gitops_url, f"other-{next(count)}.txt")
        write(tree, "mine.txt", "mine")
        return "mine"

    with pytest.raises(PushConflict, match="gave up after 3 attempts.*nothing was written"):
        store.change(always_loses)
    assert store.read("mine.txt") is None
    assert store.read("other-2.txt") == "other-2.txt"


def test_rejected_push_fails_clearly_without_retry(gitops_url):
    bare = Path(gitops_url.removeprefix("file://"))
    hook = bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'branch is protected' >&2\nexit 1\n")
    hook.chmod(hook.stat().st_mode | stat.S_IEXEC)
    before = head(gitops_url)
    calls = []
    store = GitOpsStore(gitops_url, "main")
    with pytest.raises(GitOpsError, match="push to .* failed; nothing was written: .*branch is protected"):
        store.change(lambda t: (calls.append(1), write(t, "x", "x"), "x")[2])
    assert calls == [1] and head(gitops_url) == before


def test_unreachable_repository_is_named(tmp_path):
    with pytest.raises(GitOpsError, match="GitOps remote .*missing.git unreachable: clone failed 2 times"):
        GitOpsStore(local_repo_url(tmp_path / "missing.git"), unreachable_attempts=2,
                    unreachable_backoff_seconds=0.01).read("x")


def test_credentials_stay_out_of_urls_config_and_messages(tmp_path, gitops_url):
    secret = "s3cr3t-token-value"
    store = GitOpsStore(gitops_url, credentials=Credentials("bot", secret))
    assert secret not in repr(store) and secret not in repr(Credentials("bot", secret))
    with store._clone() as repo:
        assert secret not in (Path(repo.git_dir) / "config").read_text()
        assert secret not in repo.git.remote("get-url", "origin")
    with pytest.raises(GitOpsError) as exc:
        GitOpsStore(local_repo_url(tmp_path / "nope.git"), credentials=Credentials("bot", secret),
                    unreachable_attempts=1).read("x")
    assert secret not in str(exc.value)


def test_credential_helper_answers_git_from_the_environment(store):
    """What git asks the helper for is answered from the process env, not argv."""
    secret = "tok-123"
    creds_store = GitOpsStore(store.url, credentials=Credentials("bot", secret))
    with creds_store._clone() as repo:
        answer = subprocess.run(
            ["git", "credential", "fill"],
            input="protocol=https\nhost=git.example.com\n\n",
            capture_output=True,
            text=True,
            env={**os.environ, **creds_store._env()},
            cwd=repo.working_tree_dir,
        )
    assert "username=bot" in answer.stdout and f"password={secret}" in answer.stdout


def test_create_bare_repo_is_idempotent(tmp_path):
    template = tmp_path / "template"
    write(template, "README.md", "hi")
    assert create_bare_repo(tmp_path / "r.git", template) is True
    first = head(tmp_path / "r.git")
    assert create_bare_repo(tmp_path / "r.git", template) is False
    assert head(tmp_path / "r.git") == first
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("gitops-init")] == []


def test_store_from_config_takes_push_credentials_from_an_airflow_connection(monkeypatch, config):
    from release.domain.config import GitOps
    from release.gitops.store import store_from_config

    monkeypatch.setenv("AIRFLOW_CONN_GITOPS_REPO", '{"conn_type": "http", "login": "release-bot", "password": "tok-456"}')
    remote = config.model_copy(update={"gitops": GitOps(url="https://git.example.com/platform/cd.git", conn_id="gitops_repo")})
    store = store_from_config(remote)
    assert (store.url, store.branch) == ("https://git.example.com/platform/cd.git", "main")
    env = store._env()
    assert (env["RELEASE_GIT_USERNAME"], env["RELEASE_GIT_PASSWORD"]) == ("release-bot", "tok-456")
    assert "tok-456" not in repr(store)


def test_the_push_token_is_masked_in_task_logs(monkeypatch, config, fresh_masker):
    """Reading the GitOps connection (through Airflow's connection API) registers its password with
    the secrets masker, so a task log line that carries it (a library's debug output, an error
    text) shows "***"."""
    from airflow.sdk._shared.secrets_masker import redact

    from release.domain.config import GitOps
    from release.gitops.store import store_from_config

    monkeypatch.setenv("AIRFLOW_CONN_GITOPS_REPO", '{"conn_type": "http", "login": "release-bot", "password": "tok-789-xyz"}')
    assert redact("pushing with tok-789-xyz") == "pushing with tok-789-xyz"
    store_from_config(config.model_copy(update={"gitops": GitOps(url="https://git.example.com/cd.git", conn_id="gitops_repo")}))
    assert redact("pushing with tok-789-xyz") == "pushing with ***"


def test_store_from_config_defaults_to_the_local_repository(data_dir, config):
    from release.gitops.store import store_from_config

    store = store_from_config(config)
    assert store.url == (data_dir / "gitops.git").resolve().as_uri() and store._credentials is None
