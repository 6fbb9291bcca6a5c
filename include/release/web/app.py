"""One FastAPI app for everything the platform serves over HTTP, mounted at /release.

One app rather than one per feature: Starlette matches mounts by prefix in order, so a second
app under /release/... would be shadowed by, or shadow, the first. Each feature adds its
APIRouter here.
"""

from __future__ import annotations

from fastapi import FastAPI


def create_app() -> FastAPI:
    from release.web import metrics, releases

    app = FastAPI(
        title="Release platform",
        description="Webhooks in, release state and metrics out.",
        docs_url=None,
        redoc_url=None,
    )
    from release.web.github_webhooks import router as github_webhooks

    app.include_router(github_webhooks, prefix="/webhooks/github", tags=["GitHub"])
    # The Releases view (pages under /ui/, JSON under /api/) and Prometheus metrics (/metrics).
    app.include_router(releases.router)
    app.include_router(metrics.router)
    return app
