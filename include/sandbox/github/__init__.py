"""A GitHub stand-in for tests and for `make run`'s sandbox mode (see server.py).

    from sandbox.github import GitHubStandIn
    with GitHubStandIn(["example-org/app"]) as github:
        ...  # point an Airflow `github` connection at github.url (github.airflow_connection())
"""

from sandbox.github.server import DEFAULT_REPOSITORY, STATE_PATH, TOKEN, Fault, GitHubStandIn

__all__ = ["DEFAULT_REPOSITORY", "STATE_PATH", "TOKEN", "Fault", "GitHubStandIn"]
