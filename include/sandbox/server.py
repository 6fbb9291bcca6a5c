"""The sandbox cluster: a Kubernetes API server on 127.0.0.1 that real clients use unchanged.

It serves the part of the API the platform touches (discovery, namespaces, pods with
logs, events, secrets, configmaps, Argo CD Applications, Velero Backups, Restores and
Schedules) with the real server's semantics: server-side fields, resourceVersions,
selectors, watches, 404/409/422 Status bodies, bearer-token auth. A fake kubelet and
fake Argo CD and Velero controllers move objects along as a scenario says.

It runs in its own thread with its own event loop, so a test can block in `dag.test()`
while the operator talks to it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from sandbox import validation
from sandbox.controllers import ArgoCD, Kubelet, Velero, copy_artifact
from sandbox.http import ThreadedServer
from sandbox.scenario import PodBehaviour, Scenario
from sandbox.selectors import SelectorError, fields_match, labels_match, parse_fields, parse_labels
from sandbox.store import Conflict, Gone, NotFound, Resource, Store, json_patch, merge_patch, now

log = logging.getLogger(__name__)

TOKEN = "sandbox-token"  # not a secret: the sandbox only listens on 127.0.0.1
SANDBOX_LABEL = "SANDBOX: simulated Kubernetes cluster; nothing real is built or deployed"
STORAGE_PREFIX = "/velero-storage/"
CONTROL_PREFIX = "_sandbox"  # GET /_sandbox/requests, PUT /_sandbox/scenario (see _control)
BASE_NAMESPACES = ("default", "kube-system", "argocd", "velero")
DROP_AFTER = web.RequestKey("drop_after", float)  # a fault that cuts this watch short
RECEIVED_BODY = web.RequestKey("received_body", object)  # the JSON a write sent, for `requests`

RESOURCES = [
    Resource("", "v1", "namespaces", "Namespace", namespaced=False, validator=validation.validate_core),
    Resource("", "v1", "pods", "Pod", validator=validation.validate_core),
    Resource("", "v1", "events", "Event"),
    Resource("", "v1", "secrets", "Secret", validator=validation.validate_core),
    Resource("", "v1", "configmaps", "ConfigMap", validator=validation.validate_core),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", validator=validation.validate_core),
    Resource("argoproj.io", "v1alpha1", "applications", "Application", validator=validation.validate_application),
    Resource("velero.io", "v1", "backups", "Backup", validator=validation.validate_crd),
    Resource("velero.io", "v1", "restores", "Restore", validator=validation.validate_crd),
    Resource("velero.io", "v1", "schedules", "Schedule", validator=validation.validate_crd),
    Resource("velero.io", "v1", "downloadrequests", "DownloadRequest", validator=validation.validate_download_request),
]
_BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}


def status_body(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}
    if details:
        body["details"] = details
    return body


def _error(code: int, reason: str, message: str, details: dict | None = None, headers: dict | None = None) -> web.Response:
    return web.json_response(status_body(code, reason, message, details), status=code, headers=headers)


def _truthy(value: str | None) -> bool:
    # The Python clients send watch=True, kubectl and Go clients watch=true.
    return (value or "").lower() in ("true", "1")


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict
    status: int
    at: float = field(default_factory=time.time)
    body: Any = None  # the JSON body of a write, as the client sent it


class SandboxCluster(ThreadedServer):
    thread_name = "sandbox-cluster"

    def __init__(
        self,
        scenario: Scenario | dict | None = None,
        *,
        port: int = 0,
        artifacts_dir: Path | None = None,
        backup_storage_dir: Path | None = None,
        namespaces: tuple[str, ...] = (),
    ):
        super().__init__(port)
        self.scenario = scenario
        self.artifacts_dir = Path(artifacts_dir) if artifacts_dir else None
        self.backup_storage_dir = Path(backup_storage_dir) if backup_storage_dir else None
        self.store = Store()
        self.requests: list[RecordedRequest] = []
        self.kubelet = Kubelet(self)
        self.argocd = ArgoCD(self)
        self.velero = Velero(self)
        self._fault_hits: dict[int, int] = {}
        self._tasks: set[asyncio.Task] = set()
        for ns in (*BASE_NAMESPACES, *namespaces):
            self.ensure_namespace(ns)

    # -- scenario -----------------------------------------------------------------------
    @property
    def scenario(self) -> Scenario:
        return self._scenario

    @scenario.setter
    def scenario(self, value: Scenario | dict | None) -> None:
        self._scenario = value if isinstance(value, Scenario) else Scenario.model_validate(value or {})
        self._fault_hits = {}

    # -- lifecycle (sandbox.http.ThreadedServer) ---------------------------------------------
    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    def on_stop(self) -> None:
        for task in list(self._tasks):
            self._loop.call_soon_threadsafe(task.cancel)

    def call(self, fn, *args):
        """Run `fn(*args)` on the server's loop (the store is not thread-safe) and return its result."""
        if not (self._loop and self._loop.is_running()):
            return fn(*args)

        async def run():
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    # -- client-side helpers ------------------------------------------------------------
    def kubeconfig(self, namespace: str = "default") -> dict:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "sandbox", "cluster": {"server": self.url}}],
            "users": [{"name": "sandbox", "user": {"token": TOKEN}}],
            "contexts": [{"name": "sandbox", "context": {"cluster": "sandbox", "user": "sandbox", "namespace": namespace}}],
            "current-context": "sandbox",
        }

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.kubeconfig(namespace), sort_keys=False))
        path.chmod(0o600)
        return path

    @staticmethod
    def airflow_connection(kubeconfig_path: Path, namespace: str = "default") -> str:
        """An Airflow `kubernetes` connection (JSON form, for AIRFLOW_CONN_<ID>) to the sandbox."""
        return json.dumps({"conn_type": "kubernetes", "description": SANDBOX_LABEL,
                           "extra": {"kube_config_path": str(kubeconfig_path), "namespace": namespace}})

    def resource(self, plural: str) -> Resource:
        return next(r for r in RESOURCES if r.plural == plural)

    def get(self, plural: str, namespace: str, name: str) -> dict:
        return self.call(self.store.get, self.resource(plural), namespace, name)

    def list(self, plural: str, namespace: str | None = None) -> list[dict]:
        return self.call(self.store.list, self.resource(plural), namespace)

    def seen(self, method: str | None = None, path_contains: str = "") -> list[RecordedRequest]:
        return [r for r in list(self.requests) if (method is None or r.method == method) and path_contains in r.path]

    def received(self, plural: str, method: str = "POST") -> list[dict]:
        """The bodies of every `method` request on a `plural` collection (e.g. every Pod clients
        asked to create), as sent, whether the server accepted them or not."""
        return [r.body for r in list(self.requests)
                if r.method == method and r.body is not None and r.path.rstrip("/").endswith(f"/{plural}")]

    # -- used by the controllers --------------------------------------------------------
    def ensure_namespace(self, name: str, labels: dict | None = None) -> None:
        ns = self.resource("namespaces")
        try:
            self.store.get(ns, "", name)
        except NotFound:
            self.store.create(ns, "", {"metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name, **(labels or {})}},
                                       "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})

    def ensure_application(self, namespace: str, name: str, env: str) -> None:
        """An Argo CD Application for an environment's umbrella chart, as the ApplicationSet makes it."""
        apps = self.resource("applications")
        try:
            self.store.get(apps, namespace, name)
        except NotFound:
            self.ensure_namespace(namespace)
            self.store.create(apps, namespace, {
                "metadata": {"name": name, "labels": {"release-platform/environment": env}},
                "spec": {"project": "default",
                         "source": {"repoURL": "gitops", "path": f"umbrella/{env}", "targetRevision": "main"},
                         "destination": {"server": "https://kubernetes.default.svc", "namespace": env}},
                "status": {"sync": {"status": "Unknown"}, "health": {"status": "Missing"}}})

    def record_event(self, obj: dict, reason: str, message: str, kind: str = "Normal", component: str = "sandbox") -> None:
        meta = obj["metadata"]
        stamp = now()
        self.store.create(self.resource("events"), meta.get("namespace", "default"), {
            "metadata": {"name": f"{meta['name']}.{int(time.time() * 1e6):x}"},
            "involvedObject": {"kind": obj.get("kind"), "name": meta["name"], "namespace": meta.get("namespace"),
                               "uid": meta.get("uid"), "apiVersion": obj.get("apiVersion")},
            "reason": reason, "message": message, "type": kind, "count": 1,
            "firstTimestamp": stamp, "lastTimestamp": stamp, "source": {"component": component},
        })

    def place_artifacts(self, pod: dict, behaviour: PodBehaviour) -> None:
        if not behaviour.artifacts:
            return
        if self.artifacts_dir is None:
            log.warning("scenario asks for artifacts but the sandbox has no artifacts_dir")
            return
        meta = pod["metadata"]
        labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
        values = {"namespace": meta["namespace"], "pod": meta["name"], "dag_id": labels.get("dag_id", ""),
                  "task_id": labels.get("task_id", ""), "run_id": annotations.get("run_id", labels.get("run_id", ""))}
        for artifact in behaviour.artifacts:
            dest = artifact.dest
            for kind, mapping in (("annotation", annotations), ("label", labels)):
                for key, value in mapping.items():
                    dest = dest.replace(f"{{{kind}:{key}}}", value)
            dest = dest.format(**values)
            if ".." in Path(dest).parts:
                raise ValueError(f"artifact destination {dest!r} leaves the artifact store")
            source = Path(artifact.source)
            if not source.is_absolute() and self.scenario.base_dir:
                source = self.scenario.base_dir / source
            copy_artifact(source, self.artifacts_dir / dest)

    def storage_url(self, key: str) -> str:
        """A 'pre-signed' link to an object in the backup storage, as Velero hands out."""
        return f"{self.url}{STORAGE_PREFIX}{key}?X-Amz-Expires=600&X-Amz-Signature=sandbox"

    def _storage_file(self, key: str) -> web.StreamResponse:
        root = self.backup_storage_dir
        path = (root / key).resolve() if root else None
        if path is None or not path.is_relative_to(root.resolve()) or not path.is_file():
            return web.Response(status=404, text="<Error><Code>NoSuchKey</Code></Error>", content_type="application/xml")
        return web.Response(body=path.read_bytes(), content_type="application/octet-stream")

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _react(self, res: Resource, obj: dict, created: bool) -> None:
        """What controllers do when an object appears or changes."""
        if res.plural == "pods" and created:
            self._spawn(self.kubelet.run(obj))
        elif res.plural == "applications" and self.argocd.wants_sync(obj):
            self._spawn(self.argocd.run(obj))
        elif res.plural in ("backups", "restores") and created:
            self._spawn(self.velero.run(obj))
        elif res.plural == "downloadrequests" and created:
            self._spawn(self.velero.download(obj))

    # -- HTTP ---------------------------------------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler):
        watch = _truthy(request.query.get("watch"))
        response: web.StreamResponse | None = None
        try:
            for i, fault in enumerate(self.scenario.faults):
                if self._fault_hits.get(i, 0) >= fault.count or not fault.match.matches(request.method, request.path, watch):
                    continue
                if fault.drop_watch_after_seconds is not None and not watch:
                    continue
                self._fault_hits[i] = self._fault_hits.get(i, 0) + 1
                if fault.delay_seconds:
                    await asyncio.sleep(fault.delay_seconds)
                if fault.status == 429:
                    response = _error(429, "TooManyRequests", "the server has received too many requests and has asked us to try again later",
                                      {"retryAfterSeconds": fault.retry_after_seconds}, {"Retry-After": str(fault.retry_after_seconds)})
                    return response
                if fault.status:
                    response = _error(fault.status, "InternalError", "an error on the server (\"sandbox fault\") has prevented the request from succeeding")
                    return response
                if fault.drop_watch_after_seconds is not None:
                    request[DROP_AFTER] = fault.drop_watch_after_seconds
                break
            # Storage URLs stand for the object store's pre-signed links: no bearer token.
            if request.path not in ("/version", "/healthz", "/readyz", "/livez") and \
                    not request.path.startswith(STORAGE_PREFIX) and \
                    request.headers.get("Authorization") != f"Bearer {TOKEN}":
                response = _error(401, "Unauthorized", "Unauthorized")
                return response
            response = await handler(request)
            return response
        except web.HTTPException as exc:
            response = exc
            raise
        finally:
            self.requests.append(RecordedRequest(request.method, request.path, dict(request.query),
                                                 getattr(response, "status", 500), body=request.get(RECEIVED_BODY)))

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if parts in (["version"],):
            return web.json_response({"major": "1", "minor": "35", "gitVersion": "v1.35.0-sandbox", "platform": "linux/amd64"})
        if parts and parts[0] in ("healthz", "readyz", "livez"):
            return web.Response(text="ok")
        if request.path.startswith(STORAGE_PREFIX):
            return self._storage_file(request.path[len(STORAGE_PREFIX):])
        if parts[:1] == [CONTROL_PREFIX]:
            return await self._control(request, parts[1:])
        if parts == ["api"]:
            return web.json_response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
        if parts == ["apis"]:
            return web.json_response(self._groups())
        if parts[:1] == ["api"] and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return _error(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            return web.json_response(self._resource_list(group, version))

        ns = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            ns, rest = rest[1], rest[2:]
        res = _BY_PATH.get((group, version, rest[0]))
        if res is None:
            return _error(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if res.namespaced and ns is not None and res.plural != "namespaces":
            try:
                self.store.get(self.resource("namespaces"), "", ns)
            except NotFound:
                if request.method in ("POST", "PUT", "PATCH"):
                    return _error(404, "NotFound", f'namespaces "{ns}" not found', {"name": ns, "kind": "namespaces"})
        try:
            if sub == "log" and res.plural == "pods":
                return await self._log(request, ns, name)
            if sub not in (None, "status"):
                return _error(404, "NotFound", "the server could not find the requested resource")
            if name is None:
                if request.method == "GET":
                    return await self._list(request, res, ns)
                if request.method == "POST":
                    return await self._create(request, res, ns or "default")
            elif request.method == "GET":
                return web.json_response(self.store.get(res, ns or "", name))
            elif request.method == "DELETE":
                return self._delete(res, ns or "", name)
            elif request.method == "PATCH":
                return await self._patch(request, res, ns or "", name)
            elif request.method == "PUT":
                return await self._put(request, res, ns or "", name)
            return _error(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        except NotFound as exc:
            return _error(404, "NotFound", f'{res.plural} "{exc}" not found', {"name": str(exc), "kind": res.plural})
        except Conflict as exc:
            return _error(409, "Conflict", f'Operation cannot be fulfilled on {res.plural} "{exc}": the object has been modified; please apply your changes to the latest version and try again', {"name": str(exc), "kind": res.plural})
        except SelectorError as exc:
            return _error(400, "BadRequest", str(exc))

    async def _control(self, request: web.Request, rest: list[str]) -> web.Response:
        """The sandbox's own API, for a harness driving a running sandbox from outside its process
        (`make chaos`): `GET /_sandbox/requests` lists what clients asked (a write's name and
        labels, not its body); `PUT /_sandbox/scenario` replaces the scenario, its fault counts
        start over (artifact sources stay relative to the current scenario's folder)."""
        if rest == ["requests"] and request.method == "GET":
            def summary(r: RecordedRequest) -> dict:
                meta = r.body.get("metadata") if isinstance(r.body, dict) else None
                meta = meta if isinstance(meta, dict) else {}
                return {"method": r.method, "path": r.path, "watch": _truthy(r.query.get("watch")),
                        "status": r.status, "at": r.at, "name": meta.get("name"), "labels": meta.get("labels") or {}}
            return web.json_response({"requests": [summary(r) for r in list(self.requests)]})
        if rest == ["scenario"] and request.method == "PUT":
            body = await self._body(request)
            if not isinstance(body, dict):
                return _error(400, "BadRequest", "the body must be a scenario object")
            body.setdefault("base_dir", str(self.scenario.base_dir) if self.scenario.base_dir else None)
            try:
                self.scenario = Scenario.model_validate(body)
            except ValueError as exc:
                return _error(422, "Invalid", f"not a scenario: {exc}")
            return web.json_response(self.scenario.model_dump(mode="json"))
        return _error(404, "NotFound", "the server could not find the requested resource")

    def _groups(self) -> dict:
        groups = {}
        for r in RESOURCES:
            if r.group:
                gv = {"groupVersion": r.api_version, "version": r.version}
                groups[r.group] = {"name": r.group, "versions": [gv], "preferredVersion": gv}
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": list(groups.values())}

    def _resource_list(self, group: str, version: str) -> dict:
        verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
        resources = []
        for r in RESOURCES:
            if (r.group, r.version) == (group, version):
                resources.append({"name": r.plural, "singularName": r.kind.lower(), "namespaced": r.namespaced, "kind": r.kind, "verbs": verbs})
                if r.plural == "pods":
                    resources.append({"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]})
        gv = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}

    # -- verbs --------------------------------------------------------------------------
    async def _body(self, request: web.Request):
        try:
            raw = await request.read()
            request[RECEIVED_BODY] = json.loads(raw)  # as sent: a copy the handlers do not change
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise web.HTTPBadRequest(text=json.dumps(status_body(400, "BadRequest", "the body is not valid JSON")),
                                     content_type="application/json") from None

    def _validate(self, res: Resource, obj: dict) -> web.Response | None:
        if res.validator is None:
            return None
        full = {"apiVersion": res.api_version, "kind": res.kind, **obj}
        try:
            res.validator(full)
        except validation.Invalid as exc:
            causes = [{"reason": r, "message": m, "field": f} for f, r, m in exc.causes]
            return _error(422, "Invalid", str(exc), {"name": exc.name, "kind": res.kind, "causes": causes})
        return None

    async def _create(self, request: web.Request, res: Resource, ns: str) -> web.Response:
        obj = await self._body(request)
        if not isinstance(obj, dict):
            return _error(400, "BadRequest", "the body must be a JSON object")
        if (kind := obj.get("kind")) and kind != res.kind:
            return _error(400, "BadRequest", f"the kind {kind!r} does not match the URL's resource {res.plural!r}")
        if (problem := self._validate(res, obj)) is not None:
            return problem
        if res.plural == "pods":
            obj["status"] = {"phase": "Pending", "qosClass": "Burstable", "conditions": []}
        elif res.plural in ("backups", "restores", "schedules", "applications"):
            obj.setdefault("status", {})
        if request.query.get("dryRun") == "All":
            return web.json_response(obj, status=201)
        try:
            created = self.store.create(res, ns if res.namespaced else "", obj)
        except Conflict as exc:
            return _error(409, "AlreadyExists", f'{res.plural} "{exc}" already exists', {"name": str(exc), "kind": res.plural})
        self._react(res, created, created=True)
        return web.json_response(created, status=201)

    async def _patch(self, request: web.Request, res: Resource, ns: str, name: str) -> web.Response:
        body = await self._body(request)
        ctype = request.content_type
        current = self.store.get(res, ns, name)
        if ctype == "application/json-patch+json":
            if not isinstance(body, list) or not all(isinstance(op, dict) and isinstance(op.get("path"), str) for op in body):
                return _error(400, "BadRequest", "a JSON patch must be a list of operations, each with op and path")
            try:
                updated = json_patch(current, body)
            except (KeyError, IndexError, ValueError, TypeError, AttributeError) as exc:
                return _error(422, "Invalid", f"the JSON patch cannot be applied: {type(exc).__name__}: {exc}",
                              {"name": name, "kind": res.kind, "causes": [{"reason": "FieldValueInvalid",
                                                                            "message": str(exc), "field": "(patch)"}]})
        else:  # merge-patch and strategic-merge-patch: maps merge, lists are replaced
            if not isinstance(body, dict):
                return _error(400, "BadRequest", "a merge patch must be a JSON object")
            updated = merge_patch(current, body)
        if (problem := self._validate(res, _without_status(updated))) is not None:
            return problem
        saved = self.store.replace(res, ns, name, updated)
        self._react(res, saved, created=False)
        return web.json_response(saved)

    async def _put(self, request: web.Request, res: Resource, ns: str, name: str) -> web.Response:
        body = await self._body(request)
        if not isinstance(body, dict):
            return _error(400, "BadRequest", "the body must be a JSON object")
        if (problem := self._validate(res, _without_status(body))) is not None:
            return problem
        saved = self.store.replace(res, ns, name, body)
        self._react(res, saved, created=False)
        return web.json_response(saved)

    def _delete(self, res: Resource, ns: str, name: str) -> web.Response:
        deleted = self.store.delete(res, ns, name)
        if res.plural == "namespaces":  # its objects go with it
            for r in RESOURCES:
                if r.namespaced:
                    for obj in self.store.list(r, name):
                        self.store.delete(r, name, obj["metadata"]["name"])
        return web.json_response(deleted)

    async def _list(self, request: web.Request, res: Resource, ns: str | None) -> web.StreamResponse:
        labels = parse_labels(request.query.get("labelSelector"))
        fields = parse_fields(request.query.get("fieldSelector"))

        def selected(obj: dict) -> bool:
            return labels_match(labels, obj.get("metadata", {}).get("labels")) and fields_match(fields, obj)

        in_scope = (lambda o: True) if ns is None else (lambda o: o.get("metadata", {}).get("namespace", "") == ns or not res.namespaced)
        if _truthy(request.query.get("watch")):
            return await self._watch(request, res, lambda o: in_scope(o) and selected(o))
        items = [o for o in self.store.list(res, ns if res.namespaced else None) if selected(o)]
        return web.json_response({"kind": f"{res.kind}List", "apiVersion": res.api_version,
                                  "metadata": {"resourceVersion": str(self.store.rv)}, "items": items})

    async def _watch(self, request: web.Request, res: Resource, wanted) -> web.StreamResponse:
        timeout = float(request.query.get("timeoutSeconds") or 1800)
        timeout = min(timeout, request.get(DROP_AFTER, timeout))
        rv = request.query.get("resourceVersion")
        queue: asyncio.Queue = asyncio.Queue()
        entry = (res.plural, queue)
        try:
            backlog = self.store.since(res, int(rv)) if rv not in (None, "", "0") else \
                [("ADDED", o) for o in self.store.list(res, None)]
        except Gone as exc:
            backlog = [("ERROR", status_body(410, "Expired", str(exc)))]
        self.store.watchers.append(entry)
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
        await response.prepare(request)
        deadline = time.monotonic() + timeout
        try:
            for kind, obj in backlog:
                if kind == "ERROR" or wanted(obj):
                    await response.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
            while (left := deadline - time.monotonic()) > 0:
                try:
                    kind, obj = await asyncio.wait_for(queue.get(), left)
                except asyncio.TimeoutError:
                    break
                if wanted(obj):
                    await response.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.store.watchers.remove(entry)
        return response

    async def _log(self, request: web.Request, ns: str, name: str) -> web.StreamResponse:
        pod = self.store.get(self.resource("pods"), ns, name)
        containers = [c["name"] for c in pod["spec"]["containers"]]
        container = request.query.get("container") or (containers[0] if len(containers) == 1 else None)
        if container is None:
            return _error(400, "BadRequest", f"a container name must be specified for pod {name}, choose one of: {containers}")
        if container not in containers:
            return _error(400, "BadRequest", f"container {container} is not valid for pod {name}")
        statuses = {s["name"]: s for s in pod.get("status", {}).get("containerStatuses") or []}
        state = statuses.get(container, {}).get("state", {})
        if not state or "waiting" in state:
            reason = state.get("waiting", {}).get("reason", "ContainerCreating")
            return _error(400, "BadRequest", f'container "{container}" in pod "{name}" is waiting to start: {reason}')
        follow = _truthy(request.query.get("follow"))
        timestamps = _truthy(request.query.get("timestamps"))
        since = request.query.get("sinceTime")
        since_dt = datetime.fromisoformat(since.replace("Z", "+00:00")) if since else None
        tail = request.query.get("tailLines")
        lines = self.kubelet.logs.get((ns, name), [])

        def render(stamp: datetime, text: str) -> bytes:
            prefix = stamp.strftime("%Y-%m-%dT%H:%M:%S.%f000Z ") if timestamps else ""
            return f"{prefix}{text}\n".encode()

        response = web.StreamResponse(status=200, headers={"Content-Type": "text/plain; charset=utf-8"})
        await response.prepare(request)
        start = max(0, len(lines) - int(tail)) if tail else 0
        sent = start
        try:
            while True:
                while sent < len(lines):
                    stamp, text = lines[sent]
                    sent += 1
                    if since_dt is None or stamp >= since_dt:
                        await response.write(render(stamp, text))
                if not follow or (ns, name) in self.kubelet.finished and sent >= len(lines):
                    break
                try:
                    self.store.get(self.resource("pods"), ns, name)
                except NotFound:
                    break
                await asyncio.sleep(0.05)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return response


def _without_status(obj: dict) -> dict:
    # Status belongs to the controllers; clients' writes are validated on the rest.
    return {k: v for k, v in obj.items() if k != "status"}
