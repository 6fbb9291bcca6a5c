"""Who may see release state: Airflow's logged-in users, by Airflow's own authentication.

The UI's session is Airflow's JWT cookie (`_token`, sent with the Releases page that the UI
frames); scripts and Prometheus send `Authorization: Bearer <token>` from `POST /auth/token`.
JSON and metrics answer 401 without either; a page sends the browser to Airflow's login.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials

from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

UserDep = Annotated[object, Depends(get_user)]


async def page_user(request: Request, bearer: HTTPAuthorizationCredentials | None):
    """The logged-in user; without one, a 303 to Airflow's login page that comes back here."""
    try:
        return await get_user(request, None, bearer)
    except HTTPException as exc:
        if exc.status_code not in (401, 403):
            raise
    from airflow.api_fastapi.app import get_auth_manager

    here = str(request.url.path) + (f"?{request.url.query}" if request.url.query else "")
    raise HTTPException(303, "log in to see release state",
                        headers={"Location": get_auth_manager().get_url_login(next_url=here)})


BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
