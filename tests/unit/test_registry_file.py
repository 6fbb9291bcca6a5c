"""Registry files broken by a hand edit are refused with the file and the line, never guessed at."""

from __future__ import annotations

import re

import pytest

from release.domain.registry import HISTORY_FILE, VERSIONS_FILE, RegistryFileError, RegistryState
from tests.helpers import request_for


@pytest.fixture
def files(config) -> dict[str, str]:
    state = RegistryState()
    state.deploy("prod", request_for(config, "service-a", "1.4.0", "a"), by="alice", run_id="r1", at="2026-11-01T10:00:00Z")
    state.deploy("prod", request_for(config, "service-b", "2.0.0", "b"), by="alice", run_id="r2", at="2026-11-01T11:00:00Z")
    return state.render(config.env_order)


def line_of(text: str, fragment: str, nth: int = 1) -> int:
    """The 1-based line of the nth line containing `fragment`."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if fragment in line]
    return hits[nth - 1]


def edit(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


def refused(files: dict[str, str], name: str, text: str) -> RegistryFileError:
    broken = {**files, name: text}
    with pytest.raises(RegistryFileError) as exc:
        RegistryState.parse(broken[VERSIONS_FILE], broken[HISTORY_FILE])
    return exc.value


def test_the_files_the_platform_writes_are_accepted(files, config):
    state = RegistryState.parse(files[VERSIONS_FILE], files[HISTORY_FILE])
    assert state.render(config.env_order) == files
    assert RegistryState.parse(None, None).environments == {}  # a repository without a registry yet


def test_valid_yaml_the_platform_does_not_write_reads_the_same_as_it_always_did(files, monkeypatch):
    """Anchors, a merge key, flow style, comments: not the platform's layout, still the same data;
    and a gc that was off before a read is still off after it."""
    import gc

    from release.domain import registry_file

    text = ("# by hand\nschema_version: 1\nenvironments:\n  prod:\n    service-a: &a {version: '1.0', image: "
            "'registry.local:5000/release/service-a@sha256:" + "a" * 64 + "', deployed_at: '2026-11-01T10:00:00Z',\n"
            "      deployed_by: alice, run_id: r1}\n    service-b:\n      <<: *a\n      version: '2.0'\n  dev: ~\n")
    data = registry_file.load(VERSIONS_FILE, text, registry_file.VersionsFile)
    assert data == registry_file._load_strict(VERSIONS_FILE, text, registry_file.VersionsFile)
    assert data["environments"]["prod"]["service-b"]["version"] == "2.0"
    assert data["environments"]["prod"]["service-b"]["image"] == data["environments"]["prod"]["service-a"]["image"]
    gc.disable()
    try:
        RegistryState.parse(files[VERSIONS_FILE], files[HISTORY_FILE])
        assert not gc.isenabled()
    finally:
        gc.enable()
    RegistryState.parse(files[VERSIONS_FILE], files[HISTORY_FILE])
    assert gc.isenabled()


def test_invalid_yaml_is_named_by_file_and_line(files):
    text = edit(files[VERSIONS_FILE], "  dev: {}\n", "  dev: {\n")
    error = refused(files, VERSIONS_FILE, text)
    opened = line_of(text, "dev: {")
    assert error.path == VERSIONS_FILE and error.line > opened  # where the parser found it could not go on
    assert str(error).startswith(f"{VERSIONS_FILE}, line {error.line}: not valid YAML: ")
    assert f"while parsing a flow mapping that starts at line {opened})" in str(error)
    assert "nothing was written" in str(error) and "by a commit" in str(error)


def test_a_version_of_the_wrong_type_is_named_by_file_line_and_field(files):
    text = edit(files[VERSIONS_FILE], "version: 1.4.0", "version: [1]")
    error = refused(files, VERSIONS_FILE, text)
    assert error.line == line_of(text, "version: [1]")
    assert error.problem.startswith("environments.prod.service-a.version: must be a string, not a list ([1])")


def test_an_unquoted_number_is_a_wrong_type_too(files):
    text = edit(files[VERSIONS_FILE], "version: 2.0.0", "version: 2.0")
    error = refused(files, VERSIONS_FILE, text)
    assert error.line == line_of(text, "version: 2.0")
    assert "environments.prod.service-b.version: must be a string, not a float (2.0); put it in quotes" in error.problem


def test_an_environment_that_is_a_list_is_named(files):
    text = edit(files[VERSIONS_FILE], "  dev: {}\n", "  dev:\n  - service-a\n")
    error = refused(files, VERSIONS_FILE, text)
    assert error.line == line_of(text, "  dev:")
    assert error.problem.startswith("environments.dev: must be a mapping, not a list")


def test_a_duplicate_key_is_refused_naming_both_lines(files):
    text = edit(files[VERSIONS_FILE], "  staging: {}\n", "  staging: {}\n  staging: {}\n")
    error = refused(files, VERSIONS_FILE, text)
    first = line_of(text, "staging: {}")
    assert error.line == first + 1
    assert f"the key 'staging' is given twice (first at line {first})" in error.problem


def test_a_duplicate_key_deep_in_history_is_refused(files):
    text = edit(files[HISTORY_FILE], "  outcome: deployed\n", "  outcome: deployed\n  outcome: failed\n")
    error = refused(files, HISTORY_FILE, text)
    assert (error.path, error.line) == (HISTORY_FILE, line_of(text, "outcome: failed"))
    assert "the key 'outcome' is given twice" in error.problem


def test_history_values_outside_what_the_platform_writes_are_named(files):
    text = edit(files[HISTORY_FILE], "  outcome: deployed\n", "  outcome: done\n")
    text = edit(text, "- id: 2\n", "- id: two\n")
    error = refused(files, HISTORY_FILE, text)
    assert error.line == line_of(text, "outcome: done")
    assert "entries.0.outcome: 'done' is not allowed; allowed: 'deployed', 'rolled_back' or 'failed'" in error.problem
    assert f"line {line_of(text, 'id: two')}: entries.1.id: must be a whole number, not a string (two)" in error.problem


@pytest.mark.parametrize("old, new, field", [
    ("deployed_by: alice", "deployed_by: alice\n      by_hand: true",
     "environments.prod.service-a.by_hand: not a field the registry has"),
    ("image: ", "image: registry.local:5000/x:latest\n      old_image: ",
     "environments.prod.service-a.image: 'registry.local:5000/x:latest' is not a digest-pinned image"),
    ("schema_version: 1", "schema_version: 2", "schema_version: 2 is not allowed; allowed: 1"),
    ("  dev: {}", "  7: {}", "environments.7: the key 7 must be a string"),
])
def test_other_hand_edits_are_named(files, old, new, field):
    text = edit(files[VERSIONS_FILE], old, new)
    assert field in refused(files, VERSIONS_FILE, text).problem


def test_a_file_that_is_not_a_mapping_is_named(files):
    error = refused(files, VERSIONS_FILE, "- dev\n- prod\n")
    assert (error.line, error.problem) == (1, "must be a mapping with schema_version, environments, not a list")
    assert re.search(r"registry/history.yaml, line 2: not valid YAML: ", str(refused(files, HISTORY_FILE, "entries: [\n")))
