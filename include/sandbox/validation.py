"""Refuse what a real API server refuses, with the Status body it would send.

Core objects are checked against the real Kubernetes OpenAPI schema (the
`kubernetes-validate` package ships it) plus the semantic rules the schema cannot say
(names, required images, unique container names); Velero objects against Velero's own
CRDs. The point is that a pod spec the platform builds wrong fails here, in tests, the
way it would fail in production.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import yaml

from release.domain.values import DNS1123_LABEL

KUBE_VERSION = "1.35"
CRD_DIR = Path(__file__).resolve().parent / "crds"
DNS_LABEL = DNS1123_LABEL
# resource.Quantity as the API server parses it: a number with an optional SI, binary or exponent suffix.
QUANTITY = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


class Invalid(Exception):
    """An object the API server refuses; `causes` are (field, reason, message)."""

    def __init__(self, kind: str, name: str, causes: list[tuple[str, str, str]]):
        self.kind, self.name, self.causes = kind, name, causes
        detail = ", ".join(f"{f}: {m}" for f, _, m in causes)
        super().__init__(f'{kind} "{name}" is invalid: {detail}')


def _path(error) -> str:
    out = ""
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"


_REASONS = {"required": "FieldValueRequired", "additionalProperties": "FieldValueNotSupported",
            "enum": "FieldValueNotSupported", "type": "FieldValueTypeInvalid"}


def _schema_cause(error) -> tuple[str, str, str]:
    return _path(error), _REASONS.get(error.validator, "FieldValueInvalid"), error.message.split("\n")[0]


def _mapping(value) -> dict:
    return value if isinstance(value, dict) else {}


def _name_causes(obj: dict, rule: re.Pattern, rule_text: str) -> list[tuple[str, str, str]]:
    meta = obj.get("metadata") or {}
    if not isinstance(meta, dict):
        return [("metadata", "FieldValueTypeInvalid", f"Invalid value: {meta!r}: must be an object")]
    name, generate = meta.get("name"), meta.get("generateName")
    for field, value in (("name", name), ("generateName", generate)):
        if value is not None and not isinstance(value, str):
            return [(f"metadata.{field}", "FieldValueTypeInvalid", f"Invalid value: {value!r}: must be a string")]
    if not name and not generate:
        return [("metadata.name", "FieldValueRequired", "name or generateName is required")]
    if name and not rule.fullmatch(name):
        return [("metadata.name", "FieldValueInvalid", f"Invalid value: {name!r}: {rule_text}")]
    return []


def _pod_causes(pod: dict) -> list[tuple[str, str, str]]:
    causes = []
    spec = pod.get("spec") or {}
    containers = spec.get("containers") or []
    if not containers:
        causes.append(("spec.containers", "FieldValueRequired", "Required value"))
    seen = set()
    for group in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(group) or []):
            name = c.get("name", "")
            if not DNS_LABEL.fullmatch(name):
                causes.append((f"spec.{group}[{i}].name", "FieldValueInvalid",
                               f"Invalid value: {name!r}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'"))
            if name in seen:
                causes.append((f"spec.{group}[{i}].name", "FieldValueDuplicate", f"Duplicate value: {name!r}"))
            seen.add(name)
            if not c.get("image"):
                causes.append((f"spec.{group}[{i}].image", "FieldValueRequired", "Required value"))
            for section in ("limits", "requests"):
                for resource, value in ((c.get("resources") or {}).get(section) or {}).items():
                    if not QUANTITY.fullmatch(str(value)):
                        causes.append((f"spec.{group}[{i}].resources.{section}.{resource}", "FieldValueInvalid",
                                       f"Invalid value: {value!r}: quantities must match the regular expression "
                                       "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"))
    policy = spec.get("restartPolicy")
    if policy is not None and policy not in ("Always", "OnFailure", "Never"):
        causes.append(("spec.restartPolicy", "FieldValueNotSupported",
                       f'Unsupported value: "{policy}": supported values: "Always", "OnFailure", "Never"'))
    return causes


def validate_core(obj: dict) -> None:
    import kubernetes_validate

    kind = obj.get("kind", "")
    meta = _mapping(obj.get("metadata"))
    name = meta.get("name") or meta.get("generateName", "")
    rule = DNS_LABEL if kind in ("Namespace",) else DNS_SUBDOMAIN
    causes = _name_causes(obj, rule, "a lowercase RFC 1123 name")
    try:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        causes.append(_schema_cause(exc))
    except kubernetes_validate.utils.SchemaNotFoundError:
        causes.append(("kind", "FieldValueNotSupported", f"no schema for {obj.get('apiVersion')}/{kind}"))
    if kind == "Pod" and not causes:  # the schema has checked the types the pod rules read
        causes += _pod_causes(obj)
    if causes:
        raise Invalid(kind, name, causes)


@lru_cache(maxsize=None)
def _crd_schema(kind: str) -> dict:
    for f in CRD_DIR.glob("*.yaml"):
        crd = yaml.safe_load(f.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            return next(v for v in crd["spec"]["versions"] if v["name"] == "v1")["schema"]["openAPIV3Schema"]
    raise KeyError(kind)


def validate_crd(obj: dict) -> None:
    """Velero objects against the real CRD schema (status is the controller's own business)."""
    import jsonschema

    kind = obj.get("kind", "")
    name = _mapping(obj.get("metadata")).get("name", "")
    causes = _name_causes(obj, DNS_SUBDOMAIN, "a lowercase RFC 1123 subdomain")
    schema = _crd_schema(kind)
    body = {k: v for k, v in obj.items() if k != "status"}
    for error in sorted(jsonschema.Draft7Validator(schema).iter_errors(body), key=lambda e: list(e.absolute_path)):
        causes.append(_schema_cause(error))
    if causes:
        raise Invalid(kind, name, causes)


# Velero's DownloadRequest CRD is not vendored; these are the fields and values it allows.
DOWNLOAD_TARGET_KINDS = (
    "BackupLog", "BackupContents", "BackupVolumeSnapshots", "BackupItemOperations", "BackupResourceList",
    "BackupResults", "RestoreLog", "RestoreResults", "RestoreResourceList", "RestoreItemOperations",
    "CSIBackupVolumeSnapshots", "CSIBackupVolumeSnapshotContents", "BackupVolumeInfos", "RestoreVolumeInfo",
)


def validate_download_request(obj: dict) -> None:
    causes = _name_causes(obj, DNS_SUBDOMAIN, "a lowercase RFC 1123 subdomain")
    target = _mapping(obj.get("spec")).get("target")
    if not isinstance(target, dict):
        causes.append(("spec.target", "FieldValueRequired", "Required value"))
    else:
        if target.get("kind") not in DOWNLOAD_TARGET_KINDS:
            causes.append(("spec.target.kind", "FieldValueNotSupported",
                           f"Unsupported value: {target.get('kind')!r}: supported values: {', '.join(DOWNLOAD_TARGET_KINDS)}"))
        if not isinstance(target.get("name"), str) or not target.get("name"):
            causes.append(("spec.target.name", "FieldValueRequired", "Required value"))
    if causes:
        raise Invalid("DownloadRequest", _mapping(obj.get("metadata")).get("name", ""), causes)


def validate_application(obj: dict) -> None:
    """Argo CD Applications: no CRD is vendored, so the fields the platform relies on."""
    spec = obj.get("spec") or {}
    causes = _name_causes(obj, DNS_SUBDOMAIN, "a lowercase RFC 1123 subdomain")
    if not isinstance(spec, dict):
        causes.append(("spec", "FieldValueTypeInvalid", f"Invalid value: {spec!r}: must be an object"))
        spec = {}
    if not spec.get("destination"):
        causes.append(("spec.destination", "FieldValueRequired", "Required value"))
    if not (spec.get("source") or spec.get("sources")):
        causes.append(("spec.source", "FieldValueRequired", "Required value"))
    if causes:
        raise Invalid("Application", _mapping(obj.get("metadata")).get("name", ""), causes)
