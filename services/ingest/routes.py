"""The tracking routes, as the Segment SDKs call them (one handler per kind, several paths).

* ``/v1/track`` … ``/v1/alias`` and ``/v1/batch``: the HTTP Tracking API (server SDKs).
* ``/v1/t /v1/i /v1/p /v1/s /v1/g /v1/a``: the same calls under the one-letter paths that
  analytics.js (``@segment/analytics-next``) posts to (it takes the first letter of the
  type); ``/v1/b`` is its batching delivery strategy and analytics-swift's batch path.
* ``/v1/import``: historical imports. Same body as ``/v1/batch`` and the same byte limits,
  but the client's ``timestamp`` is kept as sent (no clock-skew correction: ``sentAt`` of
  an import says when the file was uploaded, not when the client's clock was read) and a
  batch may hold ``max_import_batch_events`` events.

Every path runs the same ``Collector.handle``: same auth, limits and errors.

The paths are plain Starlette routes: the handler reads and checks the raw body itself, so
FastAPI's per-request work (dependency solving, its request wrapping) bought nothing and cost
~20% of a single-event request (issue 16). Their POSTs do not even reach the router: the app
hands them to the handler first (fastpath.py); the routes answer the rest (405 for another
method) and name the paths. The docs still describe them: the same endpoints as FastAPI routes
that are never mounted, given to the OpenAPI schema.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.routing import Route as StarletteRoute
from starlette.types import Receive, Scope

from eventpipe.events import EVENT_TYPES
from eventpipe.ingest import openapi


@dataclass(frozen=True)
class Route:
    """What a tracking path means: the type it forces (None: a batch) and whether it imports."""

    event_type: str | None
    importing: bool = False


Handler = Callable[[Scope, Receive, Route], Awaitable[Response]]

# analytics.js posts to `${apiHost}/${type.charAt(0)}`: the six types start with six letters
SHORT_PATHS = {kind[0]: kind for kind in EVENT_TYPES}
BATCH = Route(None)
IMPORT = Route(None, importing=True)


def tracking_paths() -> dict[str, Route]:
    """Every POST path the collector serves, with its meaning."""
    paths = {f"/v1/{kind}": Route(kind) for kind in EVENT_TYPES}
    paths.update({f"/v1/{short}": Route(kind) for short, kind in SHORT_PATHS.items()})
    paths.update({"/v1/batch": BATCH, "/v1/b": BATCH, "/v1/import": IMPORT})
    return paths


class ServedRoute(StarletteRoute):
    """A plain route that names itself in the scope, as FastAPI's routes do (FastAPI's router
    does not for others): the request metrics label responses by ``scope["route"].path``."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE:
            child_scope["route"] = self
        return match, child_scope


def _summary(path: str, route: Route) -> str:
    if route.importing:
        return "Import historical calls (timestamps kept as sent)"
    if route.event_type is None:
        return "Record many calls at once" + ("" if path == "/v1/batch" else " (short form of /v1/batch)")
    short = "" if path == f"/v1/{route.event_type}" else f" (short form of /v1/{route.event_type})"
    return f"Record a {route.event_type} call{short}"


def _endpoint(handle: Handler, route: Route, name: str) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:  # the request is FastAPI's only parameter
        return await handle(request.scope, request.receive, route)

    endpoint.__name__ = name
    return endpoint


def add_tracking_routes(app: FastAPI, handle: Handler) -> None:
    documented = []
    for path, route in tracking_paths().items():
        kind = route.event_type
        schema = openapi.BATCH_SCHEMA if kind is None else openapi.message_schema(kind)
        name = "post_" + path.removeprefix("/v1/")
        endpoint = _endpoint(handle, route, name)
        app.router.routes.append(ServedRoute(path, endpoint, methods=["POST"], name=name))
        documented.append(
            APIRoute(
                path,
                endpoint,
                methods=["POST"],
                name=name,
                summary=_summary(path, route),
                tags=["tracking"],
                openapi_extra=openapi.body_spec(schema),
                responses=openapi.RESPONSES,
            )
        )

    def openapi_schema() -> dict[str, Any]:
        if not app.openapi_schema:  # built once, on the first /openapi.json or /docs
            app.openapi_schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=[*documented, *app.routes],
            )
        return app.openapi_schema

    app.openapi = openapi_schema  # type: ignore[method-assign]
