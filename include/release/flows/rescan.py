"""`image-rescan`: every night, re-scan the digests every environment runs.

    targets -> scan (one Trivy pod per environment and service, pool `rescans`)
            -> evaluate -> record (one commit for all environments) -> notify -> verdict

A deployed image does not change, but what is known about it does: tonight's Trivy
database may know a CVE that the pipeline's scan did not. For every deployment in the
registry the nightly run scans the exact digest again, judges the report under that
environment's scan policy and compares it with the last summary recorded for it (the last
re-scan's, else the pipeline's scan):

- the same findings: nothing is written;
- different findings, or a previous summary recorded before findings named their package:
  the deployment's evidence gets `rescan` {passed, blocking,
  new_blocking, summary, scanned_at, run_id, image}, all environments in one commit. The
  promote DAG's scan gate re-judges `rescan.summary` under the target environment's
  policy, so a newly blocking CVE stops promotions of that version until it is fixed or
  allow-listed in the config;
- newly blocking CVEs (ids that block now and did not block on the previous findings under
  the same policy) are announced, naming service, environment, digest and CVE ids.

A report that is missing or unreadable (the scan pod failed, Trivy wrote garbage) fails
the run naming the target, after every other target was evaluated and recorded. Scan pods
that fail for the cluster's reasons (evicted, never scheduled) are retried by the pod
factory; a bad report is not.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date, datetime, timezone
from pathlib import Path

from pydantic import TypeAdapter

from release.domain.config import PlatformConfig, load_config
from release.domain.rescan import (
    Evaluation, EvidenceUpdate, Finding, Recorded, RescanError, Target, evaluate_target, finding_message,
)
from release.flows.outcome import fail_task

DAG_ID = "image-rescan"
POOL = "rescans"
STEP = "rescan"
REPORT = "trivy.json"
RUN_LABEL = "release-platform/run"
ENV_LABEL = "release-platform/env"
ACTOR = "release-platform"
# The task ids whose XComs later tasks read: targets (a list of `Target`), evaluate (an
# `Evaluation`), record (what was `Recorded`). The readers below are the only places they are pulled.
TARGETS, EVALUATE, RECORD, NOTIFY, VERDICT = "targets", "evaluate", "record", "notify", "verdict"
TARGET_LIST: TypeAdapter[list[Target]] = TypeAdapter(list[Target])


# -- what to scan ---------------------------------------------------------------------------


def run_key(run_id: str) -> str:
    """The run id as a folder name and a label value (unique per run id, at most 63 characters)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "-", run_id).strip("-._")
    if safe and len(safe) <= 63:
        return safe
    head, digest = safe[:52].strip("-._"), hashlib.sha256(run_id.encode()).hexdigest()
    return f"{head}-{digest[:10]}" if head else digest[:16]


def report_path(run_id: str, env: str, service: str) -> str:
    """Where a target's report goes, relative to the artifact store."""
    return f"{STEP}/{run_key(run_id)}/{env}/{service}/{REPORT}"


def rescan_step(config: PlatformConfig):
    """The pipeline's Trivy pod step as a re-scan: same image, resources and artifact volume."""
    from dataclasses import replace

    from release.k8s import steps

    return replace(steps.scan(config, next(iter(config.services))), step=STEP, args=[])


def list_targets(config: PlatformConfig, state, run_id: str) -> list[Target]:
    """One target per deployment the registry records, in promotion order then config order;
    services with no deployment in an environment are skipped."""
    from release.k8s import steps
    from release.k8s.pods import ARTIFACTS_MOUNT, mapped_pod_kwargs

    step = rescan_step(config)
    targets = []
    for env in config.env_order:
        running = state.current(env)
        for service in config.services_in(env):
            deployment = running.get(service)
            if deployment is None:
                continue
            report = report_path(run_id, env, service)
            commit = (deployment.evidence or {}).get("commit")
            targets.append(Target(
                env=env, service=service, version=deployment.version, image=deployment.image, report=report,
                pod=mapped_pod_kwargs(
                    step, service=service, commit=commit if isinstance(commit, str) else "unknown",
                    args=steps.trivy_args(deployment.image, f"{ARTIFACTS_MOUNT}/{report}"),
                    extra_labels={ENV_LABEL: env, RUN_LABEL: run_key(run_id)}),
            ))
    return targets


def pod_kwargs(target: dict) -> dict:
    """What the mapped scan task expands over: the per-pod part of one target (as the targets
    task pushed it, JSON)."""
    return Target.model_validate(target).pod


# -- judging every report (release.domain.rescan judges one) ----------------------------------


def evaluate_all(config: PlatformConfig, targets: list[Target], state, artifacts_dir: Path, *, today: date,
                 run_id: str, scanned_at: str) -> Evaluation:
    """Judge every target's report; a bad one is an error for that target only."""
    updates: dict[str, dict[str, EvidenceUpdate]] = {}
    findings, errors, lines = [], [], []
    for target in targets:
        where = target.where()
        deployment = state.current(target.env).get(target.service)
        if deployment is None or (deployment.version, deployment.image) != (target.version, target.image):
            lines.append(f"{where}: no longer deployed there; skipped")
            continue
        path = artifacts_dir / target.report
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
            update, finding, comparison = evaluate_target(config, target, deployment, report, today=today,
                                                          run_id=run_id, scanned_at=scanned_at)
        except OSError as exc:
            errors.append(f"{where}: no readable Trivy report at {path} (did its scan pod fail?): {exc.strerror or exc}")
            continue
        except json.JSONDecodeError as exc:
            errors.append(f"{where}: the Trivy report {path} is not JSON: {exc}")
            continue
        except RescanError as exc:
            errors.append(str(exc))
            continue
        if update is None:
            lines.append(f"{where}: unchanged")
            continue
        updates.setdefault(target.env, {})[target.service] = update
        verdict = "passes" if update.rescan.passed else f"blocked by {', '.join(update.rescan.blocking)}"
        extra = [f"newly blocking {', '.join(comparison.new_blocking)}"] if comparison.new_blocking else []
        extra += [f"no longer blocking {', '.join(comparison.resolved)}"] if comparison.resolved else []
        extra += [comparison.note] if comparison.note else []
        lines.append(f"{where}: changed, {verdict}" + (f" ({'; '.join(extra)})" if extra else ""))
        if finding:
            findings.append(finding)
    return Evaluation(updates=updates, new_findings=findings, errors=errors, lines=lines)


# -- telling people ----------------------------------------------------------------------------


def finding_notice(finding: Finding):
    from release.flows.notify import RESCAN_FINDINGS, Notice

    return Notice(
        kind=RESCAN_FINDINGS, severity="error",
        title=f"{finding.service} in {finding.env}: newly blocking {', '.join(finding.cves)}",
        body=finding_message(finding),
        fields={"service": finding.service, "environment": finding.env, "version": finding.version,
                "image": finding.image, "cves": ", ".join(finding.cves)},
    )


def notify_new_findings(findings: list[Finding], context: dict | None = None) -> list[str]:
    """Announce newly blocking findings, one notice per service and environment: always in the
    task log, and on Slack and by e-mail where `notifications:` configures them. Returns the messages."""
    from release.flows.notify import send

    messages = []
    for finding in findings:
        send(finding_notice(finding), context)
        messages.append(finding_message(finding))
    return messages


# -- what the tasks hand each other ------------------------------------------------------------


def pulled_targets(ti) -> list[Target] | None:
    """The targets task's list; None when it pushed none (it failed)."""
    raw = ti.xcom_pull(task_ids=TARGETS)
    return None if raw is None else TARGET_LIST.validate_python(raw)


def pulled_evaluation(ti) -> Evaluation | None:
    """The evaluate task's result; None when it pushed none (it failed)."""
    raw = ti.xcom_pull(task_ids=EVALUATE)
    return None if raw is None else Evaluation.model_validate(raw)


def pulled_record(ti) -> Recorded | None:
    """What the record task committed; None when it was skipped or failed."""
    raw = ti.xcom_pull(task_ids=RECORD)
    return None if raw is None else Recorded.model_validate(raw)


# -- task callables ----------------------------------------------------------------------------


def task_targets(**context) -> list[dict]:
    from release.gitops.registry import Registry

    config = load_config()
    targets = list_targets(config, Registry.from_config(config).snapshot(), context["run_id"])
    for t in targets:
        print(f"{t.env}/{t.service} {t.version}: {t.image} -> {t.report}")
    if not targets:
        print("nothing is deployed anywhere: nothing to re-scan")
    return TARGET_LIST.dump_python(targets, mode="json")


def task_evaluate(**context) -> dict:
    from release.gitops.registry import Registry
    from release.domain.scan import utc_today

    targets = pulled_targets(context["ti"])
    if targets is None:
        fail_task("evaluate: the targets task left no targets (did it fail?)")
    config = load_config()
    result = evaluate_all(config, targets, Registry.from_config(config).snapshot(), config.artifacts_dir(),
                          today=utc_today(), run_id=context["run_id"],
                          scanned_at=datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"))
    print("\n".join(result.lines + [f"ERROR {e}" for e in result.errors]) or "no targets")
    return result.model_dump(mode="json")


def task_record(**context) -> dict:
    from airflow.sdk.exceptions import AirflowSkipException

    from release.gitops.registry import Registry

    evaluation = pulled_evaluation(context["ti"]) or Evaluation()
    if not evaluation.updates:
        raise AirflowSkipException("every re-scan matches what is recorded: nothing to write")
    result = Registry.from_config(load_config()).record_evidence_across(
        evaluation.registry_updates(), by=ACTOR, run_id=context["run_id"])
    recorded = Recorded(commit=result.sha, updates=evaluation.update_count())
    print(f"recorded {recorded.updates} re-scan result(s) in {', '.join(evaluation.updates)}: "
          + (f"commit {recorded.commit}" if recorded.commit else "nothing left to write (redeployed meanwhile)"))
    return recorded.model_dump(mode="json")


def task_notify(**context) -> list[str]:
    evaluation = pulled_evaluation(context["ti"]) or Evaluation()
    messages = notify_new_findings(evaluation.new_findings, context)
    if not messages:
        print("no newly blocking findings")
    return messages


def task_verdict(**context) -> None:
    ti = context["ti"]
    result = pulled_evaluation(ti)
    if result is None:
        fail_task("the re-scan did not finish: evaluate failed (see its log)")
    problems = list(result.errors)
    if result.updates and pulled_record(ti) is None:
        problems.append("the re-scan results could not be recorded in the registry (see the record task)")
    if problems:
        fail_task(f"image-rescan: {len(problems)} problem(s):\n" + "\n".join(f"- {p}" for p in problems))
    print(f"{len(result.lines)} target(s) evaluated")


# -- the DAG ----------------------------------------------------------------------------------


def rescan_doc(config: PlatformConfig) -> str:
    first = config.env_order[0]
    return f"""
### Nightly re-scan of what is deployed

At `{config.nightly.rescan.schedule}` (UTC), for every environment ({", ".join(config.env_order)}) and every
service the registry says runs there, Trivy scans the deployed digest again (one pod each,
at most {config.nightly.rescan.pool_slots} at once through the pool `{POOL}`, run in {first}'s namespace
`{config.environments[first].namespace}`; reports under `{STEP}/<run>/<env>/<service>/{REPORT}` in the artifact store).
Each report is judged under that environment's scan policy and compared with the last recorded
summary: unchanged results write nothing; changed ones are recorded as the deployment's `rescan`
evidence, all environments in **one** GitOps commit. **Newly blocking CVEs** are announced
(service, environment, digest, CVE ids), and `promote`'s scan gate refuses that version until
the CVEs are fixed or allow-listed in the config. A missing or unreadable report fails the run
naming the target, after the other targets were recorded.
"""


def build_rescan_dag(config: PlatformConfig):
    from airflow.providers.standard.operators.python import PythonOperator
    from release.flows.assets import REGISTRY
    from release.k8s.pods import pod_operator
    from release.flows.schedules import nightly_dag

    first = config.environments[config.env_order[0]]
    with nightly_dag(DAG_ID, config.nightly.rescan.schedule, rescan_doc(config), tags=[]) as dag:
        targets = PythonOperator(task_id=TARGETS, python_callable=task_targets)
        # Scanning an image needs a registry, not the target cluster: every pod runs in the first
        # environment's namespace through its connection.
        scan = pod_operator("scan", rescan_step(config), namespace=first.namespace,
                            kubernetes_conn_id=first.kubernetes_conn_id, pool=POOL,
                            expand_kwargs=targets.output.map(pod_kwargs))
        evaluate = PythonOperator(task_id=EVALUATE, python_callable=task_evaluate, trigger_rule="all_done",
                                  retries=0)
        record = PythonOperator(task_id=RECORD, python_callable=task_record, outlets=[REGISTRY])
        # Not after a failed record: the findings would claim a block the registry does not hold.
        notify = PythonOperator(task_id=NOTIFY, python_callable=task_notify, trigger_rule="none_failed")
        verdict = PythonOperator(task_id=VERDICT, python_callable=task_verdict, trigger_rule="all_done")
        targets >> scan >> evaluate >> record >> notify >> verdict
    return dag
