"""The Velero objects and verdicts the nightly DAGs build, as plain data."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from release.domain.backups import RestoreStarted, backup_envs, drill_verdict, newest_completed, scratch_namespace
from release.domain.config import parse_config
from sandbox.validation import DNS_LABEL, validate_crd
from release.k8s.velero import Results, VeleroStatus, backup_manifest, object_name, restore_manifest

AT = datetime(2026, 11, 26, 2, 0, 5, tzinfo=timezone.utc)


def test_names_sort_by_time_differ_per_run_and_stay_label_values():
    a = object_name("release", "prod", AT, "scheduled__2026-11-26T02:00:00+00:00")
    b = object_name("release", "prod", AT, "manual__2026-11-26T02:00:00+00:00")
    assert a.startswith("release-prod-20261126-020005-") and a != b
    long = object_name("release", "e" * 63, AT, "r")
    assert len(long) <= 63 and DNS_LABEL.match(long)
    assert DNS_LABEL.match(scratch_namespace("n" * 63)) and len(scratch_namespace("n" * 63)) <= 63


def test_backup_follows_the_environment_settings_and_the_crd(config):
    custom = parse_config("""
services: {svc: {path: svc/, image: r.local/svc, chart: services/svc, owners: ["@t"]}}
environments:
  dev: {kubernetes_conn_id: k8s_dev, namespace: apps-dev}
  prod:
    kubernetes_conn_id: k8s_prod
    namespace: apps-prod
    backup: {namespaces: [apps-prod, data-prod], ttl_days: 90, storage_location: offsite, snapshot_volumes: false}
""")
    prod = backup_manifest(custom, "prod", name="n", dag_id="velero-backups", run_id="scheduled__2026-11-26T02:00:00+00:00")
    validate_crd(prod)
    assert prod["spec"] == {"includedNamespaces": ["apps-prod", "data-prod"], "ttl": "2160h0m0s",
                            "storageLocation": "offsite", "snapshotVolumes": False}
    assert prod["metadata"]["labels"]["release-platform/run"] == "scheduled__2026-11-26T02-00-00-00-00"
    assert prod["metadata"]["annotations"]["release-platform/run-id"] == "scheduled__2026-11-26T02:00:00+00:00"
    assert backup_manifest(custom, "dev", name="n", dag_id="d", run_id="r")["spec"]["ttl"] == "168h0m0s"
    restore = restore_manifest(custom, "prod", name="r", backup="n", mapping={"apps-prod": "drill-a", "data-prod": "drill-b"},
                               dag_id="d", run_id="r")
    validate_crd(restore)
    assert restore["spec"]["namespaceMapping"] == {"apps-prod": "drill-a", "data-prod": "drill-b"}
    assert restore["spec"]["includeClusterResources"] is False
    # The copy must not claim prod's hostnames nor run its scheduled work.
    assert restore["spec"]["excludedResources"] == ["ingresses.networking.k8s.io", "cronjobs.batch", "jobs.batch"]


def test_drills_default_to_the_last_environment_unless_marked(config):
    assert config.drill_envs() == ["prod"]
    marked = parse_config("""
services: {svc: {path: svc/, image: r.local/svc, chart: services/svc, owners: ["@t"]}}
environments:
  dev: {kubernetes_conn_id: k8s_dev, namespace: apps-dev}
  staging: {kubernetes_conn_id: k8s_staging, namespace: apps-staging, backup: {drill: true}}
  prod: {kubernetes_conn_id: k8s_prod, namespace: apps-prod, backup: {enabled: false}}
""")
    assert marked.drill_envs() == ["staging"]
    assert backup_envs(marked, None) == ["dev", "staging"]
    with pytest.raises(ValueError, match="environments: 'prod' cannot be backed up; allowed values: dev, staging"):
        backup_envs(marked, ["prod"])


def test_status_and_results_read_as_velero_writes_them():
    obj = {"kind": "Backup", "metadata": {"name": "b"},
           "status": {"phase": "PartiallyFailed", "startTimestamp": "2026-11-26T02:00:01Z", "completionTimestamp": "2026-11-26T02:03:00Z",
                      "progress": {"totalItems": 10, "itemsBackedUp": 9}, "errors": 1, "warnings": 2}}
    s = VeleroStatus.of(obj)
    assert (s.phase, s.items_done, s.items_total, s.errors, s.warnings, s.terminal) == ("PartiallyFailed", 9, 10, 1, 2, True)
    assert not VeleroStatus.of({"kind": "Backup", "metadata": {"name": "b"}}).terminal  # no status yet: New
    r = Results.parse({"errors": {"velero": ["v"], "cluster": ["c"], "namespaces": {"apps-prod": ["p1", "p2"]}},
                       "warnings": {}})
    assert r.errors == ["velero: v", "cluster: c", "namespace apps-prod: p1", "namespace apps-prod: p2"] and r.warnings == []


def test_the_drill_restores_the_newest_completed_backup_of_its_own_env():
    def b(name, env, phase, done):
        return {"metadata": {"name": name, "labels": {"release-platform/env": env}},
                "status": {"phase": phase, "completionTimestamp": done}}

    items = [b("old", "prod", "Completed", "2026-11-24T02:05:00Z"), b("new", "prod", "Completed", "2026-11-25T02:05:00Z"),
             b("partial", "prod", "PartiallyFailed", "2026-11-26T02:05:00Z"), b("stg", "staging", "Completed", "2026-11-26T02:05:00Z")]
    assert newest_completed(items, "prod")["metadata"]["name"] == "new"
    assert newest_completed(items, "dev") is None


RESTORE = RestoreStarted(kubernetes_conn_id="k8s_prod", namespace="velero", name="drill-1", env="prod", backup="b",
                         mapping={"apps-prod": "drill-x"}, started="2026-11-26T04:00:00Z", scratch="drill-x")


def test_a_drill_passes_only_when_restored_and_every_smoke_test_passed():
    end = datetime(2026, 11, 26, 4, 2, 30, tzinfo=timezone.utc)
    ok = drill_verdict("prod", RESTORE, "Completed", {"a": "success", "b": "success"}, "r", end)
    assert ok.problems == [] and ok.smoke_passed and ok.restored and ok.recovery_seconds == 150.0
    assert (ok.backup, ok.restore, ok.namespaces, ok.restore_phase) == ("b", "drill-1", {"apps-prod": "drill-x"}, "Completed")
    smoke_failed = drill_verdict("prod", RESTORE, "Completed", {"a": "success", "b": "failed"}, "r", end)
    assert smoke_failed.problems == ["smoke tests did not pass against the restored copy: b"]
    assert smoke_failed.recovery_seconds is None and not smoke_failed.smoke_passed
    not_restored = drill_verdict("prod", RESTORE, None, {"a": "upstream_failed"}, "r", end)
    assert not not_restored.restored and "did not complete" in not_restored.problems[0]
    never_started = drill_verdict("prod", None, None, {"a": "upstream_failed"}, "r", end)
    assert never_started.problems[0] == "the restore was never started"
    assert (never_started.backup, never_started.restore, never_started.namespaces) == (None, None, {})


def test_what_the_velero_tasks_hand_on_is_typed_and_keeps_its_json_keys():
    """The creating tasks push these as JSON; the sensor and the drill's report read them back,
    telling a Backup from a Restore by `kind`, and a target with a field missing fails naming it."""
    from pydantic import ValidationError

    from release.domain.backups import VELERO_TARGET, BackupStarted

    backup = BackupStarted(kubernetes_conn_id="k8s_dev", namespace="velero", name="release-dev-1", env="dev")
    pushed = backup.model_dump(mode="json")
    assert pushed == {"kubernetes_conn_id": "k8s_dev", "kind": "Backup", "namespace": "velero",
                      "name": "release-dev-1", "env": "dev"}
    assert VELERO_TARGET.validate_python(pushed) == backup
    restore = RESTORE.model_dump(mode="json")
    assert set(restore) == {"kubernetes_conn_id", "kind", "namespace", "name", "env", "backup", "mapping", "started",
                            "scratch"} and restore["kind"] == "Restore"
    assert VELERO_TARGET.validate_python(restore) == RESTORE
    with pytest.raises(ValidationError, match="backup"):
        VELERO_TARGET.validate_python({k: v for k, v in restore.items() if k != "backup"})
    with pytest.raises(ValidationError, match="kind"):
        VELERO_TARGET.validate_python({**pushed, "kind": "Schedule"})


@pytest.mark.parametrize("nightly, message", [
    ("{backups: {schedule: 'every night'}}", "nightly.backups.schedule: 'every night' is not a cron expression"),
    ("{rescan: {schedule: '61 * * * *'}}", "nightly.rescan.schedule: '61 * * * *' is not a cron expression"),
    ("{restore_drill: {timeout_minutes: 0}}", "nightly.restore_drill.timeout_minutes: Input should be greater than 0"),
    ("{backup: {}}", "nightly.backup: unknown key; allowed keys: "),
])
def test_bad_nightly_settings_are_refused_naming_the_key(nightly, message):
    from release.domain.config import ConfigError

    with pytest.raises(ConfigError) as err:
        parse_config(f"""
services: {{svc: {{path: svc/, image: r.local/svc, chart: services/svc, owners: ["@t"]}}}}
environments: {{prod: {{kubernetes_conn_id: k8s_prod, namespace: apps-prod}}}}
nightly: {nightly}
""")
    assert message in str(err.value)


def test_backups_command_lists_records_oldest_first(data_dir, capsys):
    from release.domain.backups import BackupRecord, DrillRecord, write_record
    from release.cli import main
    from release.domain.config import load_config

    config = load_config()

    def backup(env, name, phase, at):
        return BackupRecord(env=env, name=name, phase=phase, started=at, completed=at, items_backed_up=42, items_total=42,
                            errors=int(phase != "Completed"), warnings=0, error_messages=[], warning_messages=[],
                            timed_out=False, run_id="r", recorded_at=at)

    write_record(config, "backups", backup("prod", "release-prod-2", "PartiallyFailed", "2026-11-26T02:05:00Z"), "release-prod-2")
    write_record(config, "backups", backup("prod", "release-prod-1", "Completed", "2026-11-25T02:05:00Z"), "release-prod-1")
    write_record(config, "backups", backup("dev", "release-dev-1", "Completed", "2026-11-25T02:04:00Z"), "release-dev-1")
    write_record(config, "drills", DrillRecord(env="prod", backup="release-prod-1", restore="drill-1", namespaces={},
                                               restored=True, restore_phase="Completed", smoke_passed=True, smoke={},
                                               recovery_seconds=151.2, problems=[], run_id="r"), "drill-1")
    assert main(["backups", "--env", "prod"]) == 0
    out = capsys.readouterr().out
    assert "release-dev-1" not in out
    assert out.index("release-prod-1") < out.index("release-prod-2") and "PartiallyFailed" in out
    assert "151s" in out
    assert main(["backups", "--env", "qa"]) == 2
    assert "allowed: dev, staging, prod" in capsys.readouterr().err


# -- typed objects against Velero's own CRDs ------------------------------------------------------


def _types(schema: dict, defs: dict) -> set[str]:
    """The JSON types a (pydantic-generated) property schema allows, `null` left out."""
    if "$ref" in schema:
        return _types(defs[schema["$ref"].rsplit("/", 1)[1]], defs)
    if "anyOf" in schema:
        return set().union(*(_types(s, defs) for s in schema["anyOf"])) - {"null"}
    return {schema.get("type", "object")}


def _fields_match(model_schema: dict, crd: dict, where: str, defs: dict) -> list[str]:
    """Each property of our model names a property of the CRD's schema, with the same JSON type."""
    problems = []
    for name, prop in model_schema.get("properties", {}).items():
        theirs = (crd.get("properties") or {}).get(name)
        if theirs is None:
            problems.append(f"{where}.{name}: not in the CRD")
            continue
        if theirs.get("type") not in _types(prop, defs):
            problems.append(f"{where}.{name}: CRD type {theirs.get('type')}, ours {sorted(_types(prop, defs))}")
        target = defs[prop["$ref"].rsplit("/", 1)[1]] if "$ref" in prop else prop
        if "properties" in target:
            problems += _fields_match(target, theirs, f"{where}.{name}", defs)
    return problems


@pytest.mark.parametrize("model, kind, part", [
    ("BackupSpec", "Backup", "spec"), ("RestoreSpec", "Restore", "spec"),
    ("VeleroObjectStatus", "Backup", "status"), ("VeleroObjectStatus", "Restore", "status"),
])
def test_every_field_we_write_or_read_is_in_velero_s_crd(model, kind, part):
    """The API server prunes a field its CRD does not know instead of refusing it, so a misspelt
    name (`restorePvs` for `restorePVs`) would pass a schema check and silently do nothing."""
    from release.k8s import velero_objects
    from sandbox.validation import _crd_schema

    ours = getattr(velero_objects, model).model_json_schema(by_alias=True)
    crd = _crd_schema(kind)["properties"][part]
    defs = ours.get("$defs", {})
    if part == "status":  # one model reads both kinds: each progress counter belongs to one of them
        other = "itemsRestored" if kind == "Backup" else "itemsBackedUp"
        defs = {**defs, "Progress": {**defs["Progress"], "properties": {
            k: v for k, v in defs["Progress"]["properties"].items() if k != other}}}
    assert _fields_match(ours, crd, part, defs) == []


def test_typed_manifests_dump_to_what_the_api_takes(config):
    from release.k8s.velero_objects import Backup, new_backup

    typed = new_backup(config, "prod", name="release-prod-1", dag_id="velero-backups", run_id="r1")
    manifest = typed.to_api()
    validate_crd(manifest)
    assert manifest["apiVersion"] == "velero.io/v1" and manifest["kind"] == "Backup"
    assert set(manifest["spec"]) == {"includedNamespaces", "ttl", "storageLocation", "snapshotVolumes"}
    assert Backup.model_validate(manifest) == typed  # and back: the API's names read as ours
    restore = restore_manifest(config, "prod", name="r", backup="b", mapping={"apps-prod": "drill-x"}, dag_id="d", run_id="r")
    assert "restorePVs" in restore["spec"] and "restorePvs" not in restore["spec"]


def test_a_manifest_with_a_field_we_do_not_set_is_refused_before_the_api_is_called(config):
    from pydantic import ValidationError

    from release.k8s import velero

    manifest = backup_manifest(config, "prod", name="n", dag_id="d", run_id="r")
    with pytest.raises(ValidationError, match="spec.includedResources"):
        velero.create("no-such-connection", {**manifest, "spec": {**manifest["spec"], "includedResources": ["*"]}})


def test_what_velero_returns_is_read_leniently_but_a_wrong_type_is_named():
    from release.k8s.objects import MalformedObject

    # Fields Velero adds are ignored; nulls where Velero leaves a field out read as "not yet".
    newer = {"kind": "Restore", "metadata": {"name": "r", "uid": "u"},
             "status": {"phase": None, "progress": None, "errors": None, "hookStatus": {}, "newField": 1}}
    s = VeleroStatus.of(newer)
    assert (s.phase, s.items_done, s.errors, s.validation_errors) == ("New", 0, 0, [])
    restored = VeleroStatus.of({"kind": "Restore", "metadata": {"name": "r"},
                                "status": {"phase": "Completed", "progress": {"totalItems": 5, "itemsRestored": 5}}})
    assert (restored.items_done, restored.items_total) == (5, 5)
    assert VeleroStatus.model_validate(restored.to_dict()) == restored  # what the sensor pushes reads back
    for obj, field in [
        ({"kind": "Backup", "metadata": {"name": "b"}, "status": {"progress": {"totalItems": "many"}}}, "status.progress.totalItems"),
        ({"kind": "Backup", "metadata": {"name": "b"}, "status": {"validationErrors": "bad"}}, "status.validationErrors"),
        ({"kind": "Backup", "metadata": {}}, "metadata.name"),
        ({"kind": "Schedule", "metadata": {"name": "s"}}, "kind"),
        (None, "the object"),
    ]:
        with pytest.raises(MalformedObject, match=f"cannot be read: {field}: "):
            VeleroStatus.of(obj)
