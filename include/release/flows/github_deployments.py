"""GitHub deployments: the Environments page of the app repo mirrors the registry.

Every change `deploy-<env>` applies (a pipeline's new version in the first environment, a
promotion, a rollback) creates, per service, a GitHub deployment of the commit that version was
built from (the registry's `evidence.commit`), environment `<env>`, task `deploy:<service>`,
with the status `in_progress` once the GitOps commit is made. When the run ends it is `success`
(and the deployment it replaced, the service's previous one in that environment, `inactive`) or
`failure`. An automatic rollback (deploy-<env>'s `undo`) creates a deployment of the restored
version, `success` when the rollback's smoke tests pass (and the failed one's predecessor
`inactive`, the restored version having taken its place).

Statuses link to the deploy-<env> run. `auto_inactive` is off: several services share an
environment, and GitHub would otherwise retire service-a's deployment when service-b's lands.
With GitHub off (no `github:` in the config) none of this costs anything: nothing is read.
"""

from __future__ import annotations

import logging
from typing import Any

from release.domain.change_set import Applied
from release.flows import xcoms
from release.github import outbound, statuses

log = logging.getLogger(__name__)

XCOM_KEY = "github_deployments"         # apply's: service -> {"id", "replaces"}
UNDO_XCOM_KEY = "github_deployments_undo"  # undo's: service -> {"id", "replaces"}


def task_name(service: str) -> str:
    return f"deploy:{service}"


def run_url(ti) -> str:
    """The Airflow run a status links to (the task URL without its task)."""
    return ti.log_url.split("/tasks/", 1)[0]


def deployment_body(env: str, service: str, version: str, image: str, commit: str, *, kind: str,
                    requester: str, gitops_commit: str, deploy_run: str, production: bool) -> dict:
    """The body of POST /repos/{owner}/{repo}/deployments for one service's version in `env`."""
    return {
        "ref": commit, "task": task_name(service), "environment": env, "auto_merge": False,
        "required_contexts": [],  # GitHub mirrors the deploy: the platform's own gates decided already
        "transient_environment": False, "production_environment": production,
        "description": statuses.one_line(f"{service} {version} ({kind} by {requester})"),
        "payload": {"service": service, "version": version, "image": image, "gitops_commit": gitops_commit,
                    "deploy_run": deploy_run},
    }


def status_body(state: str, url: str, description: str, env: str) -> dict:
    return {"state": state, "log_url": url, "environment": env, "auto_inactive": False,
            "description": statuses.one_line(description)}


def newest(config, env: str, service: str) -> int | None:
    """The id of the service's newest deployment to `env` on GitHub (the one a new one replaces)."""
    found = outbound.call(config, "GET", "/deployments",
                          params={"environment": env, "task": task_name(service), "per_page": 1})
    return found[0].get("id") if isinstance(found, list) and found else None


def set_status(config, deployment_id: int | None, state: str, url: str, description: str, env: str) -> None:
    if deployment_id is not None:
        outbound.call(config, "POST", f"/deployments/{deployment_id}/statuses",
                      json=status_body(state, url, description, env))


def create(config, env: str, deployed: dict[str, Any], *, kind: str, requester: str, gitops_commit: str,
           ti) -> dict[str, dict]:
    """A deployment per service of `deployed` (service -> registry Deployment), in_progress;
    returns service -> {"id", "replaces"} (ids None where GitHub did not answer)."""
    made: dict[str, dict] = {}
    production = env == config.env_order[-1]
    url = run_url(ti)
    for service, entry in deployed.items():
        commit = (entry.evidence or {}).get("commit")
        if not isinstance(commit, str) or not commit:
            log.warning("GitHub: no deployment for %s %s in %s: the registry records no commit for it",
                        service, entry.version, env)
            continue
        replaces = newest(config, env, service)
        body = deployment_body(env, service, entry.version, entry.image, commit, kind=kind, requester=requester,
                               gitops_commit=gitops_commit, deploy_run=f"{ti.dag_id}/{ti.run_id}",
                               production=production)
        answer = outbound.call(config, "POST", "/deployments", json=body)
        deployment_id = answer.get("id") if isinstance(answer, dict) else None
        set_status(config, deployment_id, "in_progress", url, f"rolling out {service} {entry.version} to {env}", env)
        made[service] = {"id": deployment_id, "replaces": replaces, "version": entry.version}
    return made


def _on(config) -> bool:
    return outbound.client(config) is not None


def started(context, config, registry, env: str, change, applied: Applied) -> None:
    """deploy-<env>'s apply made its GitOps commit: a deployment per service, in_progress."""
    try:
        if not _on(config):
            return
        now = registry.state(env)
        deployed = {s: now[s] for s in change.services if s in now}
        made = create(config, env, deployed, kind=change.kind, requester=change.requester,
                      gitops_commit=applied.gitops_commit, ti=context["ti"])
        context["ti"].xcom_push(key=XCOM_KEY, value=made)
    except Exception:  # noqa: BLE001 - GitHub mirrors the deploy; it never stops it
        log.exception("GitHub: deployments of %s not reported", env)


def undo_started(context, config, registry, env: str, restored: list[str], gitops_commit: str) -> None:
    """deploy-<env>'s undo put `restored` back: a deployment of each restored version."""
    try:
        if not _on(config):
            return
        now = registry.state(env)
        made = create(config, env, {s: now[s] for s in restored if s in now}, kind="automatic rollback",
                      requester="release-platform", gitops_commit=gitops_commit, ti=context["ti"])
        context["ti"].xcom_push(key=UNDO_XCOM_KEY, value=made)
    except Exception:  # noqa: BLE001
        log.exception("GitHub: the automatic rollback in %s not reported", env)


def finished(context, config, env: str, strategy: str, succeeded: bool, message: str, failed_step) -> None:
    """The run's end: each deployment success (its predecessor inactive) or failure; an automatic
    rollback's deployments success if its smoke tests passed."""
    try:
        if not _on(config):
            return
        ti = context["ti"]
        url = run_url(ti)
        made = xcoms.pull(ti, xcoms.APPLY, XCOM_KEY) or {}
        undone = xcoms.pull(ti, xcoms.UNDO, UNDO_XCOM_KEY) or {}
        for service, d in made.items():
            if succeeded:
                set_status(config, d["id"], "success", url, message, env)
                if d.get("replaces") and d["replaces"] != d["id"]:
                    set_status(config, d["replaces"], "inactive", url,
                               f"replaced by {service} {d['version']}", env)
            else:
                set_status(config, d["id"], "failure", url, message, env)
        if undone:
            broken = failed_step(context, env, strategy, "converge_undo", "smoke_after_undo")
            for service, d in undone.items():
                if broken:
                    set_status(config, d["id"], "failure", url, f"automatic rollback: the {broken} failed", env)
                    continue
                set_status(config, d["id"], "success", url, f"automatic rollback to {service} {d['version']}", env)
                before = made.get(service, {}).get("replaces")
                if before and before != d["id"]:  # the restored version runs again under this deployment
                    set_status(config, before, "inactive", url, f"replaced by the automatic rollback of {service}", env)
    except Exception:  # noqa: BLE001
        log.exception("GitHub: the end of the deployments in %s not reported", env)


def reporting(report, env: str, strategy: str, failed_step):
    """deploy-<env>'s `report` callable, with the GitHub deployments' final statuses set after it.
    `failed_step(context, env, strategy, converge, smoke)`: deploy-<env>'s name of the step that failed."""
    def report_and_mirror(**context):
        from release.domain.config import load_config
        from release.flows import outcome

        try:
            result = report(**context)
        except BaseException as exc:
            finished(context, _config_or_none(load_config), env, strategy, False, str(exc) or "failed", failed_step)
            raise
        finished(context, _config_or_none(load_config), env, strategy, True,
                 outcome.recorded(context, [xcoms.REPORT]) or "deployed", failed_step)
        return result
    return report_and_mirror


def _config_or_none(load):
    try:
        return load()
    except Exception:  # noqa: BLE001 - report has failed on it already, or will
        return None
