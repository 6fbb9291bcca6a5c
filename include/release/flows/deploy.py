"""`deploy-<env>`: the one place that changes an environment, one change set at a time.

    apply -> converge (Argo CD sync wait, or env's helm pod) -> smoke_targets -> smoke[service] -> record_smoke
      undo (only if converge or a smoke test failed) -> converge_undo -> smoke_undo_targets -> smoke_after_undo[service]
      -> report (the leaf: the run's state and note say what happened)

Pipelines, promotions and rollbacks plan, gate and get approval in their own DAGs, then hand
a **change set** to the environment's `deploy-<env>` (release.flows.handover) and wait for it,
deferred. `deploy-<env>` has `max_active_runs=1`, so its runs apply in trigger order and two
changes to one environment never interleave, whoever asked; its run history is the
environment's deployment log.

It trusts no caller. `apply` checks, itself, right before the one GitOps commit:
- the change set's shape (`ChangeSet`: every field named in an error);
- against the registry: a promotion's digests are what the environment before runs (and its
  smoke and scan gates hold on the registry's own evidence, and no freeze is active); a
  rollback's target was deployed here before;
- against the run that asked for it (Airflow's records, not the params): it exists and is
  running, it was triggered by the named requester, its `validate` planned exactly these
  digests (a pipeline: its `image_ref` and passed `scan_gate`); where the environment needs
  approval for this kind of change, that run's approval task answered "Approve" by an allowed
  approver other than the requester (release.flows.approval.require_approval).
A change set typed by hand, or handed over by a run whose gates were marked "success" in the
UI, writes nothing.
"""

from __future__ import annotations

from datetime import datetime, timezone

from pydantic import ValidationError

from release.domain.change_set import (Applied, ChangeRefused, ChangeSet, Undone, check_against_config,
                                       check_against_registry, needs_approval, parse_change_set)
from release.domain.config import PlatformConfig, load_config
from release.domain.plans import pipeline_requester
from release.flows import github_deployments, xcoms

# The task ids whose results later tasks read (release.flows.xcoms): apply and undo (`Applied`,
# `Undone`) and the smoke targets of each (one pod's kwargs per service).
APPLY, UNDO, SMOKE_TARGETS = xcoms.APPLY, xcoms.UNDO, xcoms.SMOKE_TARGETS


def smoke_targets(config: PlatformConfig, env: str, services: list[str], label: str) -> list[dict]:
    """One mapped smoke pod per service, each with that service's own smoke settings."""
    from release.k8s import steps
    from release.k8s.pods import mapped_pod_kwargs

    return [mapped_pod_kwargs(steps.smoke(config, s, env), service=s, commit=label) for s in services]


# -- task callables --------------------------------------------------------------------------


def _refuse(message: str):
    from release.flows import outcome

    outcome.fail_task(f"refused: nothing was written to the environment: {message}")


def check_caller(context, change: ChangeSet, config: PlatformConfig) -> tuple[str | None, dict]:
    """Check the change against the run that asked for it, from Airflow's own records; returns
    (approver or None, service -> evidence the caller produced (a pipeline's scan))."""
    from airflow.sdk.execution_time.comms import _fetch_dag_run

    from release.flows.approval import ApprovalMissing, require_approval

    ti, caller = context["ti"], change.caller
    try:
        run = _fetch_dag_run(dag_id=caller.dag_id, run_id=caller.run_id)
    except Exception:  # noqa: BLE001 - the execution API answers an unknown run with an error
        run = None
    if run is None or getattr(run, "run_id", None) != caller.run_id:
        raise ChangeRefused(f"change.caller: {caller.dag_id} has no run {caller.run_id!r}")
    state = getattr(run.state, "value", run.state)
    if state != "running":
        raise ChangeRefused(f"change.caller: run {caller.run_id} of {caller.dag_id} is {state}, not running: "
                            "only a running pipeline, promote or rollback run hands over a change")
    triggered_by = getattr(run, "triggering_user_name", None) or ""
    if change.kind == "pipeline":
        triggered_by = pipeline_requester(triggered_by)
    if change.requester != triggered_by:
        raise ChangeRefused(f"change.requester: {change.requester!r} did not trigger {caller.dag_id} run "
                            f"{caller.run_id}; {triggered_by or 'no user'} did")

    run = {"dag_id": caller.dag_id, "run_id": caller.run_id}
    evidence: dict[str, dict] = {}
    if change.kind == "pipeline":
        item = change.items[0]
        facts = _recorded(xcoms.pipeline_facts, ti, run)
        image, scan = xcoms.image_ref(ti, **run), xcoms.scan_summary(ti, **run)
        if facts is None or image != item.image or facts.version != item.version:
            raise ChangeRefused(f"change.items: {caller.dag_id} run {caller.run_id} built "
                                f"{facts.version if facts else None} as {image}, not {item.version} as {item.image}")
        if scan is None or scan.get("passed") is not True:
            raise ChangeRefused(f"change.items: {caller.dag_id} run {caller.run_id} recorded no passed scan gate "
                                f"for {item.image} (was scan_gate marked success by hand?)")
        if not facts.release:
            raise ChangeRefused(f"change.caller: {caller.dag_id} run {caller.run_id} builds {facts.ref}, a pull "
                                "request: a pull-request build is never deployed")
        states = ti.get_task_states(dag_id=caller.dag_id, task_ids=list(xcoms.SIGNING),
                                    run_ids=[caller.run_id]).get(caller.run_id, {})
        if unsigned := [t for t in xcoms.SIGNING if states.get(t) != "success"]:
            raise ChangeRefused(f"change.items: {caller.dag_id} run {caller.run_id} has not signed and attested "
                                f"{item.image} ({', '.join(t + ' ' + (states.get(t) or 'not run') for t in unsigned)})")
        evidence[item.service] = {"commit": facts.commit, "ref": facts.ref, "scan": scan,
                                  "commit_time": facts.commit_time}
    else:
        plan = _recorded(xcoms.plan, ti, run)
        planned = [(i.service, i.version, i.image) for i in plan.items] if plan else []
        if plan is None or plan.kind != change.kind or planned != [(i.service, i.version, i.image) for i in change.items]:
            raise ChangeRefused(f"change.items: {caller.dag_id} run {caller.run_id} planned "
                                f"{', '.join(f'{s} {v}' for s, v, _ in planned) or 'nothing'}, not {change.describe()}")
    approver = None
    if needs_approval(config, change):
        approvers = config.environments[change.env].approval.approvers
        action = "rollback" if change.kind == "rollback" else "promotion"
        try:
            approver = require_approval(context, change.env, approvers, action,
                                        approved_in=(caller.dag_id, caller.run_id))
        except ApprovalMissing as exc:
            raise ChangeRefused(str(exc)) from None
    return approver, evidence


def _recorded(read, ti, run: dict):
    """What the calling run recorded, read typed by `read` (a release.flows.xcoms reader); None if
    it recorded nothing, or something of another shape: either way, nothing to deploy from."""
    try:
        return read(ti, **run)
    except ValidationError:
        return None


def task_apply(env: str):
    def apply(**context) -> dict:  # Applied, as JSON
        """Check the change set (config, registry, the calling run, its approval), then make
        the one GitOps commit and start the rollout."""
        from release.flows import outcome
        from release.gitops.store import GitOpsError
        from release.gitops.registry import Registry
        from release.domain.registry_file import RegistryFileError

        config = load_config()
        registry = Registry.from_config(config)
        try:
            change = parse_change_set(context["params"].get("change"))
            check_against_config(change, config, env)
            evidence = check_against_registry(change, config, registry.snapshot(), datetime.now(timezone.utc))
            approver, caller_evidence = check_caller(context, change, config)
        except ChangeRefused as exc:
            _refuse(str(exc))
        except RegistryFileError as exc:  # a hand edit broke the registry: nothing is written over it
            outcome.fail_task(f"nothing was written to {env}: cannot read the registry: {exc}")
        try:
            applied = commit_change(registry, change, env, approver, evidence, caller_evidence, config, context)
        except GitOpsError as exc:  # the remote unreachable, or never free: bounded retries are spent
            outcome.fail_task(f"nothing was written to {env}: {exc}")
        outcome.record(context["ti"], f"committed {change.describe()} to {env}, commit {applied.short_commit}; "
                                      "rolling out")
        github_deployments.started(context, config, registry, env, change, applied)
        return applied.model_dump(mode="json")
    return apply


def commit_change(registry, change: ChangeSet, env: str, approver: str | None, evidence: dict, caller_evidence: dict,
                  config: PlatformConfig, context) -> Applied:
    """The one GitOps commit of a checked change set, then the start of its rollout."""
    from release.domain.registry import DeployRequest

    before = registry.state(env)
    replaced = {s: before[s].version if s in before else None for s in change.services}
    where = f"{context['dag'].dag_id}/{context['run_id']}"
    if change.kind == "rollback":
        item = change.items[0]
        result = registry.record_rollback(env, [item.service], by=change.requester, run_id=change.caller.run_id,
                                          reason=change.reason, to_version=item.version, outcome="rolled_back",
                                          approved_by=approver)
    else:
        requests = []
        for item in change.items:
            extra = {"deploy_run": where, **({"approved_by": approver} if approver else {})}
            if change.kind == "promotion":
                base = {k: v for k, v in evidence[item.service].items() if k not in ("approved_by", "deploy_run")}
                extra |= {"promoted_from": change.from_env, "smoke": None}
            else:
                base = pipeline_evidence(config, env, item.service, caller_evidence[item.service])
            requests.append(DeployRequest(item.service, item.version, item.image, {**base, **extra}))
        result = registry.record_deployment(env, requests, by=change.requester, run_id=change.caller.run_id,
                                            reason=change.reason)
    print(f"one commit {result.sha} in {env}: {change.describe()} ({change.kind} by {change.requester}"
          + (f", approved by {approver}" if approver else "") + f"); {start_rollout(config, env, result.sha)}")
    return Applied(gitops_commit=result.sha, approved_by=approver, replaced=replaced, change=change)


def pipeline_evidence(config: PlatformConfig, env: str, service: str, facts: dict) -> dict:
    from release.k8s.pods import ARTIFACTS_MOUNT

    scan = facts["scan"]
    return {
        "commit": facts["commit"], "ref": facts["ref"],
        # When the commit was made (the pipeline's commit_time param): DORA's change lead time.
        **({"commit_time": facts["commit_time"]} if facts.get("commit_time") else {}),
        "scan": {k: v for k, v in scan.items() if k != "findings"} | {"findings": scan.get("findings", [])},
        "sbom": f"{ARTIFACTS_MOUNT}/{service}/{facts['commit']}/sbom.spdx.json",
        "signature": {"signed": True, "key": f"secret {config.environments[env].namespace}/{config.pipelines.cosign_key_secret}"},
    }


def start_rollout(config: PlatformConfig, env: str, sha: str) -> str:
    """Ask Argo CD to sync commit `sha`; with the helm strategy the `converge` pod deploys it."""
    environment = config.environments[env]
    if environment.deploy_strategy == "helm":
        return "the helm pod deploys that commit"
    from release.k8s.argocd import request_sync

    namespace, application = config.argocd_application(env)
    request_sync(environment.kubernetes_conn_id, namespace, application, sha)
    return f"asked Argo CD {namespace}/{application} to sync it"


def task_smoke_targets(env: str, source: str):
    def targets(**context) -> list[dict]:
        """One smoke pod per service `source` put in place, each with its own smoke settings."""
        ti = context["ti"]
        done = xcoms.undone(ti) if source == UNDO else xcoms.applied(ti)
        services = done.restored if isinstance(done, Undone) else done.change.services
        # Labelled with the GitOps commit they test (release-platform/commit).
        return smoke_targets(load_config(), env, services, label=done.gitops_commit)
    return targets


def task_record_smoke(env: str):
    def record_smoke(**context) -> None:
        """The promotion gate reads this: a passed smoke test of exactly these versions here."""
        from release.flows import outcome
        from release.gitops.registry import Registry

        applied = xcoms.applied(context["ti"])
        change = applied.change
        evidence = {"passed": True, "run_id": change.caller.run_id, "deploy_run": context["run_id"],
                    "at": datetime.now(timezone.utc).isoformat()}
        Registry.from_config(load_config()).record_evidence(
            env, {i.service: {"version": i.version, "smoke": evidence} for i in change.items},
            by="release-platform", run_id=change.caller.run_id)
        outcome.record(context["ti"], deployed_line(applied))
    return record_smoke


def deployed_line(applied: Applied) -> str:
    change, sha, approver = applied.change, applied.short_commit, applied.approved_by
    if change.kind == "rollback":
        item = change.items[0]
        line = (f"rolled {item.service} in {change.env} back from {applied.replaced.get(item.service)} to "
                f"{item.version}, commit {sha}; smoke test passed")
    else:
        line = f"deployed {change.describe()} to {change.env}, commit {sha}"
    return line + (f"; approved by {approver}" if approver else "")


def failed_step(context, env: str, strategy: str, converge: str, smoke: str) -> str | None:
    """Which rollout step failed (None if none): the rollout, or the smoke tests of which services
    (`smoke` is mapped, one task instance per service, in the order its targets task gave)."""
    ti = context["ti"]
    states = ti.get_task_states(dag_id=ti.dag_id, task_ids=[converge, smoke], run_ids=[ti.run_id]).get(ti.run_id, {})
    if states.get(converge) == "failed":
        return "helm upgrade" if strategy == "helm" else "Argo CD sync"
    failed = sorted(int(k[len(smoke) + 1:]) for k, state in states.items()
                    if state == "failed" and k.startswith(f"{smoke}_") and k[len(smoke) + 1:].isdigit())
    if not failed:
        return None
    targets = xcoms.smoke_targets(ti, APPLY if smoke == "smoke" else UNDO)
    names = [targets[i]["labels"]["release-platform/service"] for i in failed if i < len(targets)]
    return f"smoke test of {', '.join(names)}" if names else "smoke test"


def task_undo(env: str, strategy: str):
    def undo(**context) -> dict:  # Undone, as JSON
        """After a failed rollout or smoke test: put every service of the change set back on the
        version it replaced, in one commit, and fail later in `report` naming what failed."""
        from airflow.sdk.exceptions import AirflowSkipException

        from release.flows import outcome
        from release.gitops.registry import Registry

        ti = context["ti"]
        applied = xcoms.applied(ti)
        if applied is None:
            raise AirflowSkipException("nothing was committed, so there is nothing to undo")
        step = failed_step(context, env, strategy, "converge", "smoke")
        if step is None:
            raise AirflowSkipException(f"the rollout and smoke tests in {env} passed: nothing to undo")
        change = applied.change
        what = f"the {step} in {env} failed after {change.kind} of {change.describe()}"
        if change.kind == "rollback":
            # Undoing a rollback would put back the version someone just asked to take away.
            outcome.record(ti, f"{what}; left on {change.describe()} (undoing a rollback would restore the version "
                               "it removed): fix forward or roll back again")
            raise AirflowSkipException(what)
        to_restore = [s for s in change.services if applied.replaced.get(s)]
        first_time = [s for s in change.services if not applied.replaced.get(s)]
        if not to_restore:
            outcome.record(ti, f"{what}; no earlier version of {', '.join(first_time)} in {env} to roll back to")
            raise AirflowSkipException(what)
        config = load_config()
        registry = Registry.from_config(config)
        result = registry.record_rollback(
            env, to_restore, by="release-platform", run_id=change.caller.run_id,
            reason=f"automatic rollback: {what}", outcome="failed")
        print(f"{what}; rollback commit {result.sha} restores {', '.join(to_restore)}; "
              f"{start_rollout(config, env, result.sha)}")
        github_deployments.undo_started(context, config, registry, env, to_restore, result.sha)
        return Undone(gitops_commit=result.sha, what=what, restored=to_restore, first_time=first_time).model_dump(mode="json")
    return undo


def task_report(env: str, strategy: str):
    def report(**context) -> None:
        """The run's one leaf: green only if the change set is running and its smoke tests
        passed; otherwise it fails with what happened, which becomes the run's note and the
        calling run's message."""
        from release.flows import outcome
        from release.gitops.registry import Registry

        ti = context["ti"]
        applied, undone = xcoms.applied(ti), xcoms.undone(ti)
        if applied is None:
            why = outcome.recorded(context, [APPLY]) or "apply failed (see its log)"
            outcome.fail(ti, why)
        if undone is not None:
            now = Registry.from_config(load_config()).state(env)
            restored = ", ".join(f"{s} {now[s].version}" for s in undone.restored if s in now)
            message = f"{undone.what}; rolled {env} back to {restored} (commit {undone.short_commit})"
            if undone.first_time:
                message += f"; no earlier version of {', '.join(undone.first_time)} in {env} to roll back to"
            broken = failed_step(context, env, strategy, "converge_undo", "smoke_after_undo")
            outcome.fail(ti, message + (f"; the {broken} after the rollback failed too" if broken else ""))
        step = failed_step(context, env, strategy, "converge", "smoke")
        if step:
            why = outcome.recorded(context, [UNDO]) or f"the {step} in {env} failed"
            outcome.fail(ti, why)
        failed = outcome.failed_tasks(context)
        if failed:
            outcome.fail(ti, f"{deployed_line(applied)}, but {', '.join(failed)} failed")
        print(outcome.record(ti, deployed_line(applied)))
    return report


# -- the DAG ---------------------------------------------------------------------------------


def deploy_doc(config: PlatformConfig, env: str) -> str:
    environment = config.environments[env]
    rollout = ("`helm upgrade --install --atomic --wait` of exactly that commit" if environment.deploy_strategy == "helm"
               else "an Argo CD sync of exactly that commit, waited for in the triggerer")
    needs = [k for k, on in (("promotions", environment.approval.required),
                             ("rollbacks", environment.approval.required_for_rollback)) if on]
    return f"""
### Deploy to {env}: the one place that changes {env}

Each run applies one **change set** handed over by a `<service>-pipeline`, `promote` or
`rollback` run (see its `change` param and the calling run, linked from that run's
`hand_over` task). Runs apply **one at a time, in trigger order**: this run history is
{env}'s deployment log.

1. **apply** checks the change set against the platform config, the registry and the calling
   run (its plan{', and its approval for ' + ' and '.join(needs) if needs else ''}), then makes
   one GitOps commit;
2. **converge**: {rollout};
3. **smoke**: one pod per service, each with that service's own smoke settings; the passed
   tests are recorded as evidence;
4. a failed rollout or smoke test **undoes** the change set in one commit, rolls that out and
   smoke-tests again; the run fails naming what failed.

Triggering this DAG by hand deploys nothing: a change set needs a running caller whose plan
(and approval, where {env} needs one) Airflow recorded. The run's note says what happened.
"""


def build_deploy_dag(config: PlatformConfig, env: str):
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG, Param

    from release.k8s import steps
    from release.k8s.argocd import ApplicationSyncedSensor
    from release.flows.assets import REGISTRY
    from release.flows.notify import on_failure
    from release.k8s.pods import pod_operator

    environment = config.environments[env]
    strategy = environment.deploy_strategy
    namespace, application = config.argocd_application(env)
    pods = {"namespace": environment.namespace, "kubernetes_conn_id": environment.kubernetes_conn_id}

    def converge(task_id: str, commit_of, **kwargs):
        """Roll out the GitOps commit `commit_of` (the apply or undo task) made."""
        revision = xcoms.rolled_out_commit(commit_of)
        if strategy == "helm":
            step = steps.helm_deploy(config, env, revision,
                                     step=f"{'helm-rollback' if commit_of.task_id == UNDO else 'helm'}-{env}")
            return pod_operator(task_id, step, service=f"deploy-{env}", commit=commit_of.task_id,
                                pool=steps.helm_pool(env), **pods, **kwargs)
        return ApplicationSyncedSensor(
            task_id=task_id, kubernetes_conn_id=environment.kubernetes_conn_id, namespace=namespace,
            application=application, revision=revision,
            timeout_seconds=environment.argocd.sync_timeout_minutes * 60, poll_interval=1.0, **kwargs)

    def smoke(task_id: str, targets):
        # Image, command and hardening are the smoke step's (alike for every service); each mapped
        # pod gets its own service's arguments from the targets task.
        template = steps.smoke(config, config.services_in(env)[0], env)
        return pod_operator(task_id, template, expand_kwargs=targets.output, **pods)

    with DAG(
        dag_id=f"deploy-{env}",
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        default_args={"on_failure_callback": on_failure()},
        max_active_runs=1,  # one change set at a time, in trigger order: the environment's queue
        tags=["release", "deploy", env],
        doc_md=deploy_doc(config, env),
        params={"change": Param({}, type="object", description="the change set a pipeline, promote or rollback run hands over")},
    ) as dag:
        # multiple_outputs: each field of Applied and Undone is an XCom of its own too, so the
        # converge step takes `gitops_commit` by reference (release.flows.xcoms.rolled_out_commit).
        apply = PythonOperator(task_id=APPLY, python_callable=task_apply(env), outlets=[REGISTRY],
                               multiple_outputs=True)
        rollout = converge("converge", apply)
        targets = PythonOperator(task_id=SMOKE_TARGETS[APPLY], python_callable=task_smoke_targets(env, APPLY))
        smoke_pods = smoke("smoke", targets)
        record = PythonOperator(task_id="record_smoke", python_callable=task_record_smoke(env), outlets=[REGISTRY])
        undo = PythonOperator(task_id=UNDO, python_callable=task_undo(env, strategy), trigger_rule="all_done",
                              outlets=[REGISTRY], multiple_outputs=True)
        rollout_undo = converge("converge_undo", undo)
        undo_targets = PythonOperator(task_id=SMOKE_TARGETS[UNDO], python_callable=task_smoke_targets(env, UNDO))
        smoke_undo = smoke("smoke_after_undo", undo_targets)
        report = PythonOperator(task_id=xcoms.REPORT, trigger_rule="all_done",
                                python_callable=github_deployments.reporting(task_report(env, strategy), env, strategy, failed_step))

        apply >> rollout >> targets >> smoke_pods >> record >> report
        [apply, rollout, smoke_pods] >> undo >> rollout_undo >> undo_targets >> smoke_undo >> report
    return dag
