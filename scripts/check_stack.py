"""Offline checks of the full stack and the production deployment (`make check-stack`).

    python scripts/check_stack.py [ROOT]

Prints OK, or every problem (file, object, field and why) and exits 1. Nothing is fetched:
the Compose Specification schema is the copy vendored in check-jsonschema and the Kubernetes
schemas come with kubernetes-validate.

- docker-compose.yaml validates against the Compose Specification. Every service that
  README.md's "Run the full stack" table names (first column, in backticks) exists and has a
  healthcheck; any other service has one too, or is a one-shot job that a healthy service waits
  for (service_completed_successfully), so `docker compose up --wait` can succeed. The Airflow
  components (the long-running services) define a Kubernetes connection, backed by a mounted
  kubeconfig, for every environment of include/config/platform.yaml.
- Dockerfile: built from the Airflow version requirements.txt pins, on Python 3.11; no
  secret-looking ENV or ARG.
- Every YAML file under deploy/ (except NOT_MANIFESTS) holds Kubernetes manifests that validate
  against the Kubernetes schemas, strictly. RBAC grants nothing cluster-wide, no wildcard and
  none of RISKY_RESOURCES / RISKY_VERBS; RoleBindings bind Roles to ServiceAccounts only; no
  Secret objects (secrets live in Vault).
- deploy/clusters/<env>.yaml exists for every environment and holds only CLUSTER_KINDS, in the
  environment's namespace, argocd or velero; the Roles in argocd name only the environment's own
  Application (umbrella-<env>, as the GitOps repo's ApplicationSet names them).
- deploy/helm/values.yaml: security contexts hardened (and valid as a Pod's), the database
  external, secrets only by reference.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[1]
KUBE_VERSION = "1.35"
PYTHON_VERSION = "3.11"
README_SECTION = "Run the full stack"
# YAML under deploy/ that is not a Kubernetes manifest, and what it is instead.
NOT_MANIFESTS = {
    "deploy/helm/values.yaml": "values for the Apache Airflow Helm chart",
    "deploy/local/k3s-registries.yaml": "k3s registry mirrors",
}
HELM_VALUES = "deploy/helm/values.yaml"
CLUSTER_KINDS = {"ServiceAccount", "Role", "RoleBinding", "NetworkPolicy"}
SHARED_NAMESPACES = ("argocd", "velero")
CLUSTER_WIDE_KINDS = {"ClusterRole", "ClusterRoleBinding"}
# Grants that hand over far more than their name suggests; None: whatever the verb.
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}
RISKY_RESOURCES = {
    "secrets": (None, "reads every credential in the namespace"),
    "pods/exec": (None, "runs commands inside any pod, the services' included"),
    "pods/attach": (None, "attaches to any running container"),
    "pods/portforward": (None, "opens connections past every NetworkPolicy"),
    "pods/ephemeralcontainers": (None, "injects containers into running pods"),
    "serviceaccounts/token": (None, "mints tokens for any ServiceAccount"),
    "roles": (WRITE_VERBS, "lets it rewrite its own permissions"),
    "rolebindings": (WRITE_VERBS, "lets it grant itself any Role"),
}
RISKY_VERBS = {
    "escalate": "grants permissions it does not hold",
    "bind": "binds roles it does not hold",
    "impersonate": "acts as other users",
    "deletecollection": "wipes every object of a kind at once",
}
SECRET_NAME = re.compile(r"(pass|password|passwd|secret|token|secretkey|fernetkey|jwtsecret|brokerurl|credentials?)$", re.I)
DOCKERFILE_SECRET = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|FERNET_KEY|CREDENTIAL)", re.I)


class YAML_LOADER(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml when present: faster
    """Refuses a key given twice in one mapping: PyYAML would silently keep the last one, while
    Compose and kubectl reject the file. Keys merged in with `<<` may be overridden, as YAML allows."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            keys = [str(self.construct_object(k, deep=True)) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"]
            if duplicates := sorted({k for k in keys if keys.count(k) > 1}):
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {', '.join(duplicates)}", node.start_mark)
        return super().construct_mapping(node, deep)


def load_yaml(text: str):
    return yaml.load(text, Loader=YAML_LOADER)


def load_yaml_docs(path: Path) -> list:
    return [d for d in yaml.load_all(path.read_text(), Loader=YAML_LOADER) if d is not None]


# -- docker-compose.yaml ------------------------------------------------------------------


def compose_schema() -> dict:
    vendor = files("check_jsonschema.builtin_schemas.vendor")
    return json.loads(vendor.joinpath("compose-spec.json").read_text())


def readme_services(text: str, section: str = README_SECTION) -> list[str] | None:
    """Service names in the first column of the tables under `## <section>`; None without the section."""
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if re.fullmatch(rf"##\s+{re.escape(section)}\s*", line))
    except StopIteration:
        return None
    names = []
    for line in lines[start + 1 :]:
        if re.match(r"##?\s", line):
            break
        cells = line.strip().strip("|").split("|")
        if line.lstrip().startswith("|") and (m := re.fullmatch(r"\s*`([A-Za-z0-9._-]+)`\s*", cells[0])):
            names.append(m.group(1))
    return names


def has_healthcheck(service: dict) -> bool:
    check = service.get("healthcheck") or {}
    test = check.get("test")
    return not check.get("disable") and bool(test) and test not in ("NONE", ["NONE"])


def _depends_on(service: dict) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _mount_targets(service: dict) -> list[str]:
    targets = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            targets.append(volume.get("target", ""))
        else:
            parts = volume.split(":")
            targets.append(parts[1] if len(parts) > 1 else parts[0])
    return [t.rstrip("/") for t in targets if t]


def check_compose(compose: dict, readme_names: list[str] | None, environments: dict, where: str = "docker-compose.yaml") -> list[str]:
    problems = []
    validator = jsonschema.Draft202012Validator(compose_schema())
    for error in sorted(validator.iter_errors(compose), key=lambda e: list(map(str, e.absolute_path))):
        path = ".".join(map(str, error.absolute_path)) or "(top level)"
        problems.append(f"{where}: {path}: {error.message} (Compose Specification)")
    services = compose.get("services") or {}
    if not isinstance(services, dict):
        return problems or [f"{where}: services: not a mapping"]

    if readme_names is None:
        problems.append(f"README.md: no '## {README_SECTION}' section to list the stack's services")
    elif not readme_names:
        problems.append(f"README.md: '## {README_SECTION}' lists no services (a table whose first column holds `service-name` in backticks)")
    for name in readme_names or []:
        if name not in services:
            problems.append(f"{where}: README.md lists service {name!r} under '{README_SECTION}', but there is no such service")
        elif not has_healthcheck(services[name]):
            problems.append(f"{where}: services.{name}: no healthcheck, though README.md lists it as part of the stack")

    healthy = {n for n, s in services.items() if has_healthcheck(s)}
    for name, service in services.items():
        deps = _depends_on(service)
        for dep, condition in deps.items():
            if dep not in services:
                problems.append(f"{where}: services.{name}.depends_on: unknown service {dep!r}")
            elif condition == "service_healthy" and dep not in healthy:
                problems.append(f"{where}: services.{name}.depends_on.{dep}: waits for service_healthy, but {dep!r} has no healthcheck")
        if name in healthy:
            continue
        adopters = [n for n in healthy if _depends_on(services[n]).get(name) == "service_completed_successfully"]
        if not adopters:
            problems.append(
                f"{where}: services.{name}: no healthcheck, and no healthy service waits for it with "
                "service_completed_successfully: give it a healthcheck, or make it a one-shot job a service depends on"
            )
        if str(service.get("restart", "no")) not in ("no", "on-failure"):
            problems.append(f"{where}: services.{name}.restart: {service['restart']!r} on a one-shot job would rerun it forever")

    for name, service in services.items():
        env = _environment(service)
        if "AIRFLOW__CORE__EXECUTOR" not in env or name not in healthy:
            continue  # one-shot jobs run no tasks, so need no cluster access
        mounts = _mount_targets(service)
        for env_name, settings in environments.items():
            conn_id = settings.get("kubernetes_conn_id", "")
            var = f"AIRFLOW_CONN_{conn_id.upper()}"
            field = f"{where}: services.{name}.environment.{var}"
            if var not in env:
                problems.append(f"{field}: missing; environment {env_name!r} of platform.yaml uses connection {conn_id!r}")
                continue
            try:
                conn = json.loads(env[var])
            except json.JSONDecodeError as exc:
                problems.append(f"{field}: not a JSON connection: {exc}")
                continue
            path = str((conn.get("extra") or {}).get("kube_config_path", ""))
            if conn.get("conn_type") != "kubernetes":
                problems.append(f"{field}: conn_type is {conn.get('conn_type')!r}, expected 'kubernetes'")
            if not path:
                problems.append(f"{field}: extra.kube_config_path is missing")
            elif not any(path.startswith(target + "/") for target in mounts):
                problems.append(f"{field}: kube_config_path {path} is on no volume the service mounts")
    return problems


# -- Dockerfile ---------------------------------------------------------------------------


def check_dockerfile(dockerfile: str, requirements: str, where: str = "Dockerfile") -> list[str]:
    problems = []
    pin = re.search(r"^apache-airflow==(\S+)", requirements, re.M)
    base = re.search(r"^FROM\s+(\S+)", dockerfile, re.M)
    expected = f"apache/airflow:{pin.group(1) if pin else '?'}-python{PYTHON_VERSION}"
    if not base or base.group(1) != expected:
        found = base.group(1) if base else "no FROM line"
        problems.append(f"{where}: FROM {found}: expected {expected} (requirements.txt pins apache-airflow, Python {PYTHON_VERSION})")
    for m in re.finditer(r"^(ENV|ARG)\s+([A-Za-z_][A-Za-z0-9_]*)", dockerfile, re.M):
        if DOCKERFILE_SECRET.search(m.group(2)):
            problems.append(f"{where}: {m.group(1)} {m.group(2)}: secrets stay out of images (pass them at run time)")
    return problems


# -- Kubernetes manifests -----------------------------------------------------------------


def _name(doc: dict) -> str:
    meta = doc.get("metadata") or {}
    ns = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{doc.get('kind')} {ns}{meta.get('name')}"


def check_manifest(doc, where: str) -> list[str]:
    if not isinstance(doc, dict) or not doc.get("apiVersion") or not doc.get("kind"):
        return [f"{where}: a document without apiVersion and kind is not a Kubernetes manifest"]
    error = _schema_error(json.dumps(doc, sort_keys=True))
    return [f"{where}: {_name(doc)}: {error}"] if error else []


@lru_cache(maxsize=None)
def _schema_error(manifest: str) -> str | None:
    """kubernetes-validate re-reads its schemas on every call; the same manifest gets the same answer."""
    try:
        kubernetes_validate.validate(json.loads(manifest), KUBE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(map(str, exc.absolute_path)) or "(top level)"
        return f"{path}: {exc.message} (Kubernetes {KUBE_VERSION} schema)"
    except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as exc:
        return exc.message
    return None


DRILL_PREFIX = "drill-"  # the restore drill's scratch namespaces (release.domain.backups.scratch_namespace)


def is_drill_cleanup(doc: dict) -> bool:
    """The one cluster-wide grant allowed: get and delete the restore drill's own scratch
    namespaces, by name. A namespace is cluster-scoped, so no Role can grant deleting it."""
    if doc.get("kind") == "ClusterRole":
        rules = doc.get("rules") or []
        return bool(rules) and all(
            rule.get("apiGroups") == [""] and rule.get("resources") == ["namespaces"]
            and set(rule.get("verbs") or []) <= {"get", "delete"}
            and rule.get("resourceNames") and all(str(n).startswith(DRILL_PREFIX) for n in rule["resourceNames"])
            for rule in rules)
    if doc.get("kind") == "ClusterRoleBinding":
        return (str((doc.get("roleRef") or {}).get("name", "")).startswith("release-platform-drill-")
                and all(s.get("kind") == "ServiceAccount" for s in doc.get("subjects") or []))
    return False


def check_rbac(doc: dict, where: str) -> list[str]:
    kind, name = doc.get("kind"), _name(doc)
    if kind in CLUSTER_WIDE_KINDS and not is_drill_cleanup(doc):
        return [f"{where}: {name}: cluster-wide RBAC; grant per namespace with Role and RoleBinding "
                f"(the only exception: get/delete of the restore drill's {DRILL_PREFIX}* namespaces by name)"]
    if kind == "Secret":
        return [f"{where}: {name}: Secret objects do not belong in git; keep the value in Vault and reference it by name"]
    problems = []
    if kind == "Role":
        for i, rule in enumerate(doc.get("rules") or []):
            at = f"{where}: {name}: rules[{i}]"
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                if any(v == "*" or str(v).endswith("/*") for v in rule.get(field) or []):
                    problems.append(f"{at}.{field}: wildcard; list exactly what the platform needs")
            for resource in rule.get("resources") or []:
                verbs, why = RISKY_RESOURCES.get(resource, (set(), ""))
                if verbs is None or verbs & set(rule.get("verbs") or []):
                    problems.append(f"{at}.resources: {resource!r} with verbs {rule.get('verbs')} {why}")
            for verb in rule.get("verbs") or []:
                if verb in RISKY_VERBS:
                    problems.append(f"{at}.verbs: {verb!r} {RISKY_VERBS[verb]}")
            if rule.get("nonResourceURLs"):
                problems.append(f"{at}.nonResourceURLs: cluster-wide by nature")
    if kind == "RoleBinding":
        ref = doc.get("roleRef") or {}
        if ref.get("kind") != "Role":
            problems.append(f"{where}: {name}: roleRef.kind {ref.get('kind')!r}: bind a Role of this namespace, not a ClusterRole's broad rules")
        for i, subject in enumerate(doc.get("subjects") or []):
            if subject.get("kind") != "ServiceAccount":
                problems.append(f"{where}: {name}: subjects[{i}]: {subject.get('kind')} {subject.get('name')!r}; bind ServiceAccounts only")
    return problems


def yaml_files(root: Path, folder: str = "deploy") -> Iterator[Path]:
    for path in sorted((root / folder).rglob("*")):
        if path.suffix in (".yaml", ".yml") and path.is_file():
            yield path


def check_deploy_manifests(root: Path) -> tuple[list[str], dict[str, list[dict]]]:
    """Every manifest under deploy/; returns the problems and the documents per file."""
    problems, docs_by_file = [], {}
    for path in yaml_files(root):
        rel = path.relative_to(root).as_posix()
        if rel in NOT_MANIFESTS:
            continue
        try:
            docs = load_yaml_docs(path)
        except yaml.YAMLError as exc:
            problems.append(f"{rel}: not valid YAML: {exc}")
            continue
        if not docs:
            problems.append(f"{rel}: empty; every YAML file under deploy/ holds manifests (or is listed in NOT_MANIFESTS)")
        for i, doc in enumerate(docs):
            where = f"{rel} (document {i + 1})"
            problems += check_manifest(doc, where)
            if isinstance(doc, dict):
                problems += check_rbac(doc, where)
        docs_by_file[rel] = [d for d in docs if isinstance(d, dict)]
    return problems, docs_by_file


def check_cluster_file(env: str, namespace: str, docs: list[dict], where: str) -> list[str]:
    """One environment's grants: only its namespace, argocd and velero; only its own Application."""
    problems = []
    allowed = {namespace, *SHARED_NAMESPACES}
    account = None
    for doc in docs:
        kind, name, ns = doc.get("kind"), _name(doc), (doc.get("metadata") or {}).get("namespace")
        if kind in CLUSTER_WIDE_KINDS and is_drill_cleanup(doc):
            if kind == "ClusterRole" and any(rule["resourceNames"] != [f"{DRILL_PREFIX}{namespace}"] for rule in doc["rules"]):
                problems.append(f"{where}: {name}: resourceNames must be [{DRILL_PREFIX}{namespace}]: only this environment's drill copy")
            continue
        if kind not in CLUSTER_KINDS:
            problems.append(f"{where}: {name}: a target cluster gets only {', '.join(sorted(CLUSTER_KINDS))} from the platform")
            continue
        if ns not in allowed:
            problems.append(f"{where}: {name}: namespace {ns!r}; environment {env!r} may use only {', '.join(sorted(allowed))}")
        if kind == "ServiceAccount" and ns == namespace:
            account = doc["metadata"]["name"]
        if kind == "Role" and ns == "argocd":
            for i, rule in enumerate(doc.get("rules") or []):
                if rule.get("resourceNames") != [f"umbrella-{env}"]:
                    problems.append(f"{where}: {name}: rules[{i}].resourceNames must be [umbrella-{env}]: Argo CD Applications of other environments are out of bounds")
    for kind in ("ServiceAccount", "Role", "RoleBinding", "NetworkPolicy"):
        if not any(d.get("kind") == kind and (d.get("metadata") or {}).get("namespace") == namespace for d in docs):
            problems.append(f"{where}: no {kind} in namespace {namespace}")
    for doc in docs:
        if doc.get("kind") == "RoleBinding":
            for subject in doc.get("subjects") or []:
                if (subject.get("name"), subject.get("namespace")) != (account, namespace):
                    problems.append(f"{where}: {_name(doc)}: binds {subject.get('namespace')}/{subject.get('name')}; only the platform's ServiceAccount {namespace}/{account}")
        if doc.get("kind") == "NetworkPolicy" and set(doc.get("spec", {}).get("policyTypes") or []) != {"Ingress", "Egress"}:
            problems.append(f"{where}: {_name(doc)}: spec.policyTypes must be [Ingress, Egress] so whatever is not allowed is denied")
    # A drilled environment's smoke pods must be let through to the restored copy.
    scratch = f"{DRILL_PREFIX}{namespace}"
    if any(d.get("kind") == "ClusterRole" and is_drill_cleanup(d) for d in docs):
        reachable = {(peer.get("namespaceSelector") or {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
                     for d in docs if d.get("kind") == "NetworkPolicy"
                     for rule in d.get("spec", {}).get("egress") or [] for peer in rule.get("to") or []}
        if scratch not in reachable:
            problems.append(f"{where}: no NetworkPolicy egress to namespace {scratch}: the restore drill's smoke tests could not reach the copy")
    return problems


# -- Helm values --------------------------------------------------------------------------


def _walk(node, path: str = "") -> Iterator[tuple[str, str, object]]:
    if isinstance(node, dict):
        for key, value in node.items():
            sub = f"{path}.{key}" if path else str(key)
            yield sub, str(key), value
            yield from _walk(value, sub)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


def _pod_security_problems(pod: dict | None, container: dict | None, at: str) -> list[str]:
    problems = []
    if pod is not None:
        if pod.get("runAsNonRoot") is not True:
            problems.append(f"{at}.pod.runAsNonRoot: must be true")
        if (pod.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            problems.append(f"{at}.pod.seccompProfile.type: must be RuntimeDefault")
        if pod.get("runAsUser") == 0:
            problems.append(f"{at}.pod.runAsUser: 0 is root")
    if container is not None:
        if container.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{at}.container.allowPrivilegeEscalation: must be false")
        if "ALL" not in ((container.get("capabilities") or {}).get("drop") or []):
            problems.append(f"{at}.container.capabilities.drop: must include ALL")
        if container.get("privileged"):
            problems.append(f"{at}.container.privileged: must not be true")
    # Typos (runAsNonroot) would pass silently through Helm: validate them as a real Pod's.
    probe = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "security-context-probe"},
        "spec": {
            "securityContext": pod or {},
            "containers": [{"name": "probe", "image": "probe", "securityContext": container or {}}],
        },
    }
    problems += [p.replace("Pod security-context-probe", at) for p in check_manifest(probe, "values")]
    return problems


def check_helm_values(values: dict, where: str = HELM_VALUES) -> list[str]:
    problems = []
    global_contexts = values.get("securityContexts") or {}
    if not global_contexts.get("pod") or not global_contexts.get("containers"):
        problems.append(f"{where}: securityContexts.pod and securityContexts.containers: set both; every Airflow pod falls back to them")
    for path, key, node in _walk(values):
        if key == "securityContexts" and isinstance(node, dict):
            container = node.get("containers", node.get("container"))
            problems += _pod_security_problems(node.get("pod"), container, f"{where}: {path}")
        if SECRET_NAME.search(key) and isinstance(node, str) and node.strip():
            problems.append(f"{where}: {path}: a literal secret; name a Kubernetes Secret synced from Vault (…SecretName) instead")
    if values.get("executor") not in ("CeleryExecutor", "KubernetesExecutor"):
        problems.append(f"{where}: executor: {values.get('executor')!r}; CeleryExecutor or KubernetesExecutor")
    if (values.get("postgresql") or {}).get("enabled") is not False:
        problems.append(f"{where}: postgresql.enabled: must be false; the metadata database is external")
    if not (values.get("data") or {}).get("metadataSecretName"):
        problems.append(f"{where}: data.metadataSecretName: name the Secret holding the external database's connection")
    secrets = (values.get("config") or {}).get("secrets") or {}
    if not secrets.get("backend"):
        problems.append(f"{where}: config.secrets.backend: connections come from a secrets backend (Vault)")
    try:
        kwargs = json.loads(secrets.get("backend_kwargs") or "{}")
    except json.JSONDecodeError as exc:
        problems.append(f"{where}: config.secrets.backend_kwargs: not JSON: {exc}")
        kwargs = {}
    for key, value in kwargs.items():
        if re.search(r"token|secret|password|role_id", key, re.I) and value:
            problems.append(f"{where}: config.secrets.backend_kwargs.{key}: a credential; authenticate with the pod's ServiceAccount (auth_type kubernetes)")
    return problems


# -- everything ---------------------------------------------------------------------------


def check(root: Path = ROOT) -> list[str]:
    problems = []
    config = load_yaml((root / "include" / "config" / "platform.yaml").read_text()) or {}
    environments = config.get("environments") or {}

    readme = root / "README.md"
    names = readme_services(readme.read_text()) if readme.exists() else None
    try:
        compose = load_yaml((root / "docker-compose.yaml").read_text())
    except (OSError, yaml.YAMLError) as exc:
        problems.append(f"docker-compose.yaml: {exc}")
    else:
        problems += check_compose(compose if isinstance(compose, dict) else {}, names, environments)

    problems += check_dockerfile((root / "Dockerfile").read_text(), (root / "requirements.txt").read_text())

    manifest_problems, docs_by_file = check_deploy_manifests(root)
    problems += manifest_problems
    for env, settings in environments.items():
        rel = f"deploy/clusters/{env}.yaml"
        if rel not in docs_by_file:
            problems.append(f"{rel}: missing; platform.yaml has environment {env!r}")
            continue
        problems += check_cluster_file(env, settings.get("namespace", ""), docs_by_file[rel], rel)

    values_path = root / HELM_VALUES
    if values_path.exists():
        problems += check_helm_values(load_yaml(values_path.read_text()) or {})
    else:
        problems.append(f"{HELM_VALUES}: missing")
    for rel in NOT_MANIFESTS:
        if not (root / rel).exists():
            problems.append(f"{rel}: listed in NOT_MANIFESTS but missing")
    return problems


def main(argv: list[str]) -> int:
    root = Path(argv[0]).resolve() if argv else ROOT
    problems = check(root)
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s)" if problems else "OK")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
