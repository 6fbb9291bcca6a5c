"""A registry file broken by a hand edit, committed to a real GitOps repository: every writer refuses
naming the file and the line and commits nothing, and `registry show` explains instead of crashing."""

from __future__ import annotations

import re

import pytest

from release.gitops import umbrella
from release.cli import main
from release.gitops.store import Author
from release.domain.registry import HISTORY_FILE, VERSIONS_FILE, RegistryFileError
from release.gitops.registry import Registry
from tests.helpers import head, request_for


def hand_edit(store, path: str, old: str, new: str) -> int:
    """Someone edits `path` by hand and pushes the commit; returns the line of the first changed line."""
    lines: list[int] = []

    def edit(tree) -> str:
        text = (tree / path).read_text()
        assert old in text
        lines.append(text[: text.index(old)].count("\n") + 1)
        (tree / path).write_text(text.replace(old, new, 1))
        return f"Edit {path} by hand"

    store.change(edit, author=Author("mallory", "mallory@example.com"))
    return lines[0]


def writers(config):
    """Every way the platform writes the registry, each as it is called in production."""
    return {
        "record_deployment": lambda r: r.record_deployment(
            "dev", [request_for(config, "service-b", "2.0.0", "b")], by="alice", run_id="r2"),
        "record_rollback": lambda r: r.record_rollback("prod", ["service-a"], by="bob", run_id="r3", reason="5xx"),
        "record_evidence": lambda r: r.record_evidence(
            "prod", {"service-a": {"version": "1.4.0", "smoke": "passed"}}, by="alice", run_id="r4"),
        "record_evidence_across": lambda r: r.record_evidence_across(
            {"prod": {"service-a": {"version": "1.4.0", "rescan": "clean"}}}, by="image-rescan", run_id="r5"),
        "umbrella.reconcile": umbrella.reconcile,
    }


@pytest.mark.parametrize("path, old, new, problem", [
    (VERSIONS_FILE, "version: 1.4.0", "version: [1]",
     "environments.prod.service-a.version: must be a string, not a list ([1])"),
    (HISTORY_FILE, "  outcome: deployed\n", "  outcome: deployed\n  outcome: failed\n",
     "not valid YAML: the key 'outcome' is given twice (first at line"),
], ids=["wrong-type", "duplicate-key"])
def test_every_writer_refuses_with_file_and_line_and_writes_nothing(registry, config, gitops_url, path, old, new, problem):
    registry.record_deployment("prod", [request_for(config, "service-a", "1.4.0", "a")], by="alice", run_id="r1")
    line = hand_edit(registry.store, path, old, new)
    if path == HISTORY_FILE:
        line += 1  # the second `outcome` is the broken line
    broken = head(gitops_url)
    for name, write in writers(config).items():
        with pytest.raises(RegistryFileError) as error:
            write(registry)
        assert str(error.value).startswith(f"{path}, line {line}: {problem}"), name
        assert head(gitops_url) == broken, f"{name} committed over a broken registry"
    with pytest.raises(RegistryFileError, match=f"{path}, line {line}"):
        registry.snapshot()  # readers too: nothing plans from a registry it cannot read


@pytest.mark.parametrize("old, new, problem", [
    ("  dev: {}\n", "  dev: {\n", "not valid YAML"),
    ("  dev: {}\n", "  dev:\n  - service-a\n", "environments.dev: must be a mapping, not a list"),
    ("  staging: {}\n", "  staging: {}\n  staging: {}\n", "the key 'staging' is given twice (first at line"),
], ids=["invalid-yaml", "environment-is-a-list", "duplicate-environment"])
def test_a_deployment_over_a_broken_versions_file_is_refused(registry, config, gitops_url, old, new, problem):
    hand_edit(registry.store, VERSIONS_FILE, old, new)
    broken = head(gitops_url)
    with pytest.raises(RegistryFileError, match=rf"^{VERSIONS_FILE}, line \d+: .*{re.escape(problem)}"):
        writers(config)["record_deployment"](registry)
    assert head(gitops_url) == broken


def test_cli_registry_show_and_history_explain_a_broken_file(data_dir, config, capsys):
    assert main(["gitops", "init"]) == 0
    registry = Registry.from_config(config)
    registry.record_deployment("prod", [request_for(config, "service-a", "1.4.0", "a")], by="alice", run_id="r1")
    line = hand_edit(registry.store, VERSIONS_FILE, "version: 1.4.0", "version: [1]")
    capsys.readouterr()
    for command in (["registry", "show"], ["registry", "show", "--format", "json"], ["registry", "history"]):
        assert main(command) == 1, command
        out, err = capsys.readouterr()
        assert out == ""
        assert err.startswith(f"cannot read the registry: {VERSIONS_FILE}, line {line}: "
                              "environments.prod.service-a.version: must be a string, not a list ([1])")
        assert "by a commit" in err and "Traceback" not in err


def test_cli_registry_show_says_when_there_is_no_repository_yet(data_dir, capsys):
    assert main(["registry", "show"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"cannot read the registry: no GitOps repository at {data_dir / 'gitops.git'}; "
                          "create it with `python -m release gitops init`")
