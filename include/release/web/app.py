"""One FastAPI app for everything the platform serves over HTTP, mounted at /release.

One app rather than one per feature: Starlette matches mounts by prefix in order, so a second
app under /release/... would be shadowed by, or shadow, the first. Each feature adds its
APIRouter here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI


def create_app() -> FastAPI:
    from fastapi import FastAPI

    from release.web import metrics, releases
    from release.web.github_webhooks import router as github_webhooks

    app = FastAPI(
        title="Release platform",
        description="Webhooks in, release state and metrics out.",
        docs_url=None,
        redoc_url=None,
    )
    app.include_router(github_webhooks, prefix="/webhooks/github", tags=["GitHub"])
    # The Releases view (pages under /ui/, JSON under /api/) and Prometheus metrics (/metrics).
    app.include_router(releases.router)
    app.include_router(metrics.router)
    return app


class LazyApp:
    """The app as an ASGI callable that builds it on its first request.

    Airflow imports every plugin module in every process that loads plugins -- each task's process
    among them, for the listeners -- but only the API server serves this app. Building it there
    imports FastAPI and Airflow's API-server auth (about 0.9 s); deferring it to the first request
    keeps that off every task start.
    """

    def __init__(self) -> None:
        self._app: FastAPI | None = None

    async def __call__(self, scope, receive, send) -> None:
        if self._app is None:
            self._app = create_app()
        await self._app(scope, receive, send)
