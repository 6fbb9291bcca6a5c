"""Serve the platform's HTTP endpoints (release.web) on Airflow's API server, under /release,
and put the Releases view in the UI's navigation (an external view framed at /plugin/releases)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from release.web.app import LazyApp


class ReleaseWebPlugin(AirflowPlugin):
    name = "release_web"
    fastapi_apps = [{"app": LazyApp(), "url_prefix": "/release", "name": "Release platform"}]
    external_views = [{"name": "Releases", "href": "/release/ui/", "url_route": "releases", "destination": "nav",
                       "category": None}]
