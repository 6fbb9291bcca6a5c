"""Operators and sensors the pipelines use, thin over the provider's own."""

from __future__ import annotations

from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.utils.container import get_container_termination_message

from release.pods import parse_result


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


class ReleasePodOperator(KubernetesPodOperator):
    """KubernetesPodOperator whose result is what the pod wrote to /dev/termination-log.

    Pods report small results (a digest, a summary) through the termination message,
    which the API server keeps in the pod's status: no sidecar, no exec. The operator
    returns it (parsed as JSON when it is JSON) as the task's XCom.
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

    def cleanup(self, pod, remote_pod, xcom_result=None, context=None):
        from airflow.sdk.exceptions import AirflowException, AirflowFailException

        if remote_pod is not None:
            self._termination_message = get_container_termination_message(remote_pod, self.base_container_name)
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

    def execute(self, context):
        super().execute(context)
        return self._result(context)

    def trigger_reentry(self, context, event):
        super().trigger_reentry(context, event)
        return self._result(context)
