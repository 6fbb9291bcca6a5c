"""Typed Kubernetes objects in and out, the way kopf and the Kubernetes client treat them.

Custom resources (Argo CD Applications, Velero Backups and Restores) come back from the API as
plain dicts. Reading `obj["status"]["progress"]["totalItems"]` by hand turns a surprise into a
KeyError far from its cause; here each side has a small pydantic model of the fields we use:

- `Manifest`: what the platform writes. Every field is named (`extra="forbid"`, from `Strict`),
  Python names in snake_case, dumped with the API's camelCase names by `to_api()`.
- `ApiObject`: what the platform reads. Only the fields we use; everything else the controller
  writes is ignored (a newer Velero adds fields, that must not break a backup). A value of the
  wrong type is a `MalformedObject` naming the object and the field.

Plain data, no Airflow: the sandbox builds the same objects.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from release.domain.values import Strict

# Both directions speak the API's names (`storageLocation`) and take the Python ones too.
_CAMEL = ConfigDict(alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True)


class MalformedObject(ValueError):
    """An object the API returned without the shape we read; the message names it and the field."""


class Manifest(Strict):
    """An object (or part of one) the platform sends to the API."""

    model_config = _CAMEL

    def to_api(self) -> dict[str, Any]:
        """The dict the Kubernetes client sends: camelCase keys, unset optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class ApiObject(BaseModel):
    """An object (or part of one) the platform reads back from the API."""

    model_config = ConfigDict(extra="ignore", frozen=True, **_CAMEL)

    @classmethod
    def read(cls, obj: Any, what: str) -> Self:
        """`obj` as this model; `what` names it in the error (e.g. 'Backup velero/release-prod-1')."""
        try:
            return cls.model_validate(obj)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'the object'}: {error['msg']}"
                for error in exc.errors())
            raise MalformedObject(f"{what} as the API returned it cannot be read: {problems}") from None


class ObjectMeta(Manifest):
    """The metadata the platform sets on what it creates."""

    name: str
    namespace: str
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}


class ReadMeta(ApiObject):
    """The metadata the platform reads back (name, ownership, age)."""

    name: str
    namespace: str | None = None
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    creation_timestamp: str | None = None
