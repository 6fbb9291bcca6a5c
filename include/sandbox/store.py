"""The sandbox's object store: what etcd plus the API server's bookkeeping would do.

Objects are plain dicts keyed by (resource, namespace, name). Every change gets the next
resourceVersion and is fanned out to watchers, and recent changes are kept so a watch
that resumes from a resourceVersion sees what it missed (or 410 Gone if too old), as
informers expect.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Resource:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    validator: Callable[[dict], None] | None = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


class Conflict(Exception):
    pass


class NotFound(Exception):
    pass


class Gone(Exception):
    pass


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch: dicts merge recursively, null deletes, the rest replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def json_patch(target: dict, ops: list[dict]) -> dict:
    """RFC 6902 add/replace/remove/test, enough for label and annotation patches."""
    doc = copy.deepcopy(target)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent.setdefault(p, {})
        last = parts[-1]
        kind = op["op"]
        index = (len(parent) if last == "-" else int(last)) if isinstance(parent, list) else last
        if kind == "add" and isinstance(parent, list):
            parent.insert(index, op["value"])
        elif kind in ("add", "replace"):
            parent[index] = op["value"]
        elif kind == "remove":
            del parent[index]
        elif kind == "test" and parent[index] != op["value"]:
            raise Conflict(f"test failed at {op['path']}")
    return doc


class Store:
    def __init__(self, history: int = 5000):
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.rv = 0
        self.events: deque[tuple[int, str, str, dict]] = deque(maxlen=history)  # (rv, plural, type, obj)
        self.watchers: list[tuple[str, asyncio.Queue]] = []

    def _bump(self) -> str:
        self.rv += 1
        return str(self.rv)

    def _emit(self, res: Resource, kind: str, obj: dict) -> None:
        snapshot = copy.deepcopy(obj)
        self.events.append((int(obj["metadata"]["resourceVersion"]), res.plural, kind, snapshot))
        for plural, queue in list(self.watchers):
            if plural == res.plural:
                queue.put_nowait((kind, snapshot))

    # -- reads --------------------------------------------------------------------------
    def get(self, res: Resource, ns: str, name: str) -> dict:
        try:
            return copy.deepcopy(self.objects[(res.plural, ns if res.namespaced else "", name)])
        except KeyError:
            raise NotFound(name) from None

    def list(self, res: Resource, ns: str | None) -> list[dict]:
        return [
            copy.deepcopy(o)
            for (plural, o_ns, _), o in sorted(self.objects.items())
            if plural == res.plural and (ns is None or o_ns == ns)
        ]

    def since(self, res: Resource, rv: int) -> list[tuple[str, dict]]:
        if self.events and rv < self.events[0][0] - 1:
            raise Gone(f"too old resource version: {rv} ({self.events[0][0] - 1})")
        return [(kind, copy.deepcopy(obj)) for e_rv, plural, kind, obj in self.events if plural == res.plural and e_rv > rv]

    # -- writes -------------------------------------------------------------------------
    def create(self, res: Resource, ns: str, obj: dict, *, created_at: str | None = None) -> dict:
        """`created_at` backdates an object that stands for one made before the sandbox started."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        key = (res.plural, ns if res.namespaced else "", meta["name"])
        if key in self.objects:
            raise Conflict(meta["name"])
        obj["apiVersion"], obj["kind"] = res.api_version, res.kind
        if res.namespaced:
            meta["namespace"] = ns
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=created_at or now(), generation=1, resourceVersion=self._bump())
        self.objects[key] = obj
        self._emit(res, "ADDED", obj)
        return copy.deepcopy(obj)

    def replace(self, res: Resource, ns: str, name: str, obj: dict, *, spec_changed: bool | None = None) -> dict:
        key = (res.plural, ns if res.namespaced else "", name)
        if key not in self.objects:
            raise NotFound(name)
        old = self.objects[key]
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        sent_rv = meta.get("resourceVersion")
        if sent_rv and sent_rv != old["metadata"]["resourceVersion"]:
            raise Conflict(name)
        for field in ("uid", "creationTimestamp", "namespace", "name", "generation"):
            if field in old["metadata"]:
                meta[field] = old["metadata"][field]
        obj["apiVersion"], obj["kind"] = old["apiVersion"], old["kind"]
        if obj.get("spec") != old.get("spec"):
            meta["generation"] = old["metadata"].get("generation", 1) + 1
        meta["resourceVersion"] = self._bump()
        self.objects[key] = obj
        self._emit(res, "MODIFIED", obj)
        return copy.deepcopy(obj)

    def patch(self, res: Resource, ns: str, name: str, fn: Callable[[dict], dict]) -> dict:
        current = self.get(res, ns, name)
        updated = fn(current)
        updated.setdefault("metadata", {})["resourceVersion"] = current["metadata"]["resourceVersion"]
        return self.replace(res, ns, name, updated)

    def delete(self, res: Resource, ns: str, name: str) -> dict:
        key = (res.plural, ns if res.namespaced else "", name)
        try:
            obj = self.objects.pop(key)
        except KeyError:
            raise NotFound(name) from None
        obj["metadata"]["resourceVersion"] = self._bump()
        obj["metadata"]["deletionTimestamp"] = now()
        self._emit(res, "DELETED", obj)
        return copy.deepcopy(obj)
