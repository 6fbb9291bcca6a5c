"""A simulated Kubernetes cluster for tests and for `make run` without a real one.

    from sandbox import SandboxCluster
    with SandboxCluster({"pods": [{"match": {"task_id": "scan"}, "exit_code": 1}]}) as cluster:
        cluster.write_kubeconfig(path)
"""

from sandbox.scenario import Scenario
from sandbox.server import SANDBOX_LABEL, SandboxCluster

__all__ = ["SANDBOX_LABEL", "SandboxCluster", "Scenario"]
