"""Operators and sensors the pipelines use, thin over the provider's own."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync
from airflow.providers.cncf.kubernetes.utils.container import (
    container_is_succeeded,
    get_container_termination_message,
)


# A step retries only for the platform's sake (an evicted or never-started pod, the API server
# failing a request, a try Airflow failed after the pod succeeded): a tool that ran and said no
# fails at once. Such a retry waits seconds, doubling per try with jitter, never over the cap.
# Sensors that wait deferred (an Argo CD sync, the end of a freeze) retry alike: the same race
# can fail a try whose wait is already over, and waiting again is harmless.
INFRASTRUCTURE_RETRIES = dict(retries=2, retry_delay=timedelta(seconds=5), retry_exponential_backoff=2.0,
                              max_retry_delay=timedelta(seconds=30))

# Where a step's result is kept between the tries of one task instance (Airflow's task state
# store, scoped to run, task and map index), and the pod label that says which generation of
# the task instance (see `_generation`) a pod belongs to.
RESULT_KEY = "release-platform.pod-result"
GENERATION_LABEL = "release-platform/generation"
LOG_TAIL_LINES = 100
LOG_TAIL_BYTES = 8192


def _infrastructure_failure(remote_pod) -> bool:
    """Evicted or never-run pods are the cluster's fault and worth a retry; a tool that
    ran and failed (tests, a blocking scan, a failed smoke test) is not."""
    status = getattr(remote_pod, "status", None)
    if status is None:
        return True
    if status.reason == "Evicted":
        return True
    for cs in status.container_statuses or []:
        terminated = cs.state.terminated if cs.state else None
        if terminated is not None and terminated.exit_code is not None:
            return False
    return True


def _generation(context) -> str:
    """What a retry keeps and a clear changes: the run's clear count and the task instance's
    max_tries (clearing a task sets it to the try number reached plus its retries, so it grows
    even where the run's count does not)."""
    clear_number = int(getattr(context.get("dag_run"), "clear_number", 0) or 0)
    return f"{clear_number}.{context['ti'].max_tries}"


class ReleasePodOperator(KubernetesPodOperator):
    """KubernetesPodOperator whose result is what the pod wrote to /dev/termination-log.

    Pods report small results (a digest, a summary) through the termination message,
    which the API server keeps in the pod's status: no sidecar, no exec. The operator
    returns it (parsed as JSON when it is JSON) as the task's XCom.

    A step runs at most once per task instance. A try that fails after its pod succeeded
    (Airflow failing a resumed try on the executor's stale event of the deferral exit, a
    worker lost while reading the logs) leaves either the succeeded pod or its recorded
    result behind, and the retry takes that instead of running the tool again:

    - before deleting a succeeded pod the result (termination message, log tail) is recorded
      in the task state store, which outlives the try;
    - a kill (the supervisor ending a try the scheduler failed) keeps a succeeded pod;
    - a retry first looks for a succeeded pod of this run, task and map index (the provider's
      own labels, try-independent) and reads it as if it had just finished; failing that, for a
      recorded result. Either counts only for the same generation of the task instance: a
      task cleared by hand runs again.

    A failed pod is retried (infrastructure) or refused (the tool said no) as before.
    """

    ui_color = "#e8f0fe"
    # Init containers take run values too (the helm step checks out the GitOps commit the
    # deploy task just wrote); the provider templates only the main container.
    template_fields = (*KubernetesPodOperator.template_fields, "init_containers")

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._termination_message: str | None = None

    def render_template_fields(self, context, jinja_env=None) -> None:
        # Nested objects are rendered in place: render copies, so the DAG's own containers
        # keep their templates for the next run a process renders (dag.test, a reused worker).
        import copy

        self.init_containers = copy.deepcopy(self.init_containers)
        super().render_template_fields(context, jinja_env)

    def _render_nested_template_fields(self, content, context, jinja_env, seen_oids) -> None:
        from kubernetes.client import models as k8s

        if isinstance(content, k8s.V1Container) and id(content) not in seen_oids:
            seen_oids.add(id(content))
            self._do_render_template_fields(content, ("args",), context, jinja_env, seen_oids)
            # A DAG that renders native objects would turn an argument such as "10" into 10,
            # which the API server refuses: arguments are strings.
            content.args = [str(a) for a in content.args or []]
            return
        super()._render_nested_template_fields(content, context, jinja_env, seen_oids)

    # --- a step runs once per task instance -------------------------------------------

    def build_pod_request_obj(self, context=None, *, dry_run: bool = False):
        pod = super().build_pod_request_obj(context, dry_run=dry_run)
        if context is not None:
            pod.metadata.labels[GENERATION_LABEL] = _generation(context)
        return pod

    def _succeeded(self, pod) -> bool:
        status = getattr(pod, "status", None)
        return bool(status) and (status.phase == "Succeeded" or container_is_succeeded(pod, self.base_container_name))

    def _succeeded_pod(self, namespace: str, context):
        """This task instance's newest succeeded pod of this generation, if any."""
        selector = self._build_find_pod_label_selector(context, exclude_checked=False)
        pods = self.client.list_namespaced_pod(namespace=namespace, label_selector=selector).items
        generation = _generation(context)
        done = [p for p in pods if self._succeeded(p) and (p.metadata.labels or {}).get(GENERATION_LABEL) == generation]
        return max(done, key=lambda p: p.metadata.creation_timestamp or 0, default=None)

    def get_or_create_pod(self, pod_request_obj, context):
        pod = self._succeeded_pod(pod_request_obj.metadata.namespace, context)
        if pod is not None:
            self.log.info("Pod %s already succeeded for this task (try %s): taking its result instead of "
                          "running the step again", pod.metadata.name, (pod.metadata.labels or {}).get("try_number"))
            return pod
        return super().get_or_create_pod(pod_request_obj, context)

    def _recorded_result(self, context) -> dict | None:
        store = context.get("task_state_store")
        record = store.get(RESULT_KEY) if store is not None else None
        if isinstance(record, dict) and record.get("generation") == _generation(context):
            return record
        return None

    def _record_result(self, remote_pod, context) -> None:
        store = context.get("task_state_store") if context else None
        if store is None:
            return
        tail: list[str] = []
        try:
            raw = self.client.read_namespaced_pod_log(
                name=remote_pod.metadata.name, namespace=remote_pod.metadata.namespace,
                container=self.base_container_name, tail_lines=LOG_TAIL_LINES, limit_bytes=LOG_TAIL_BYTES)
            tail = [line for line in str(raw).splitlines() if line][-LOG_TAIL_LINES:]
        except Exception as exc:  # noqa: BLE001 - the result matters, its log tail is a courtesy
            self.log.warning("Could not read the log tail of pod %s: %s", remote_pod.metadata.name, exc)
        store.set(RESULT_KEY, {
            "generation": _generation(context),
            "try_number": context["ti"].try_number,
            "pod": remote_pod.metadata.name,
            "termination_message": self._termination_message,
            "log_tail": tail,
        })

    def on_kill(self) -> None:
        # A try ended from outside (the scheduler failed it; the supervisor terminates it) after
        # its pod succeeded: keep the pod, the retry takes its result.
        if self.pod is not None:
            try:
                remote = self.client.read_namespaced_pod(self.pod.metadata.name, self.pod.metadata.namespace)
            except Exception:  # noqa: BLE001 - unknown state: do what the provider does
                remote = None
            if remote is not None and self._succeeded(remote):
                self._killed = True
                self.log.info("Keeping pod %s, which succeeded: a retry takes its result", remote.metadata.name)
                return
        super().on_kill()

    # --- the result --------------------------------------------------------------------

    def cleanup(self, pod, remote_pod, xcom_result=None, context=None):
        from airflow.sdk.exceptions import AirflowException, AirflowFailException

        if remote_pod is not None:
            self._termination_message = get_container_termination_message(remote_pod, self.base_container_name)
            if self._succeeded(remote_pod):
                # Recorded before the pod is deleted: at every moment one of them holds the result.
                self._record_result(remote_pod, context)
        try:
            super().cleanup(pod=pod, remote_pod=remote_pod, xcom_result=xcom_result, context=context)
        except AirflowException as exc:
            if isinstance(exc, AirflowFailException) or _infrastructure_failure(remote_pod):
                raise
            raise AirflowFailException(str(exc)) from None  # the tool said no: retrying will not change it

    def _result(self, context) -> Any:
        result = parse_result(self._termination_message)
        if result is not None:
            context["ti"].xcom_push(key="return_value", value=result)
        return result

    def _adopt_record(self, record: dict, context) -> Any:
        self.log.info("Pod %s already succeeded for this task (try %s) and its result was recorded: taking it "
                      "instead of running the step again", record.get("pod"), record.get("try_number"))
        for line in record.get("log_tail") or []:
            self.log.info("[%s] logs: %s", self.base_container_name, line)
        self._termination_message = record.get("termination_message")
        return self._result(context)

    def execute(self, context):
        self.name = self._set_name(self.name)
        if self.pod_request_obj is None:
            self.pod_request_obj = self.build_pod_request_obj(context)
        # A succeeded pod still there wins over a record (it is read, recorded and deleted as
        # usual); a record alone means the pod was already deleted.
        record = self._recorded_result(context)
        if record is not None and self._succeeded_pod(self.pod_request_obj.metadata.namespace, context) is None:
            return self._adopt_record(record, context)
        super().execute(context)
        return self._result(context)

    def trigger_reentry(self, context, event):
        super().trigger_reentry(context, event)
        return self._result(context)


class FreezeEndSensor(DateTimeSensorAsync):
    """Waits (deferred) for the end of a deploy freeze, and does not defer at all when that
    moment has passed: a promotion with no freeze to wait out has nothing to wait for, and a
    deferral that ends at once is where Airflow's defer race strikes (a stale "success" of the
    deferral exit fails the resumed try). Retries like the pod steps, in case it strikes anyway."""

    def __init__(self, **kwargs: Any):
        super().__init__(**(INFRASTRUCTURE_RETRIES | kwargs))

    def execute(self, context):
        from airflow.sdk import timezone

        if timezone.utcnow() >= self._moment:
            self.log.info("Nothing to wait for: %s has passed", self._moment.isoformat())
            return None
        return super().execute(context)


def parse_result(message: str | None) -> Any:
    """What a pod said in /dev/termination-log: JSON when it is JSON, else the text."""
    if not message:
        return None
    try:
        return json.loads(message)
    except json.JSONDecodeError:
        return message.strip()
