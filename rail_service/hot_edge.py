"""A lean HTTP edge for a service's hot routes: the batched POSTs a load consists of.

Through the FastAPI app, every request pays for the whole middleware stack (server errors,
telemetry, body limits, the control-character check, exception handling, the exit stack),
then the router scanning its routes, before its handler runs: about 9% of a bank's busy
CPU per payment. `HotRoutes` is the outermost ASGI app instead: a POST to a path in its
table (exact string equality on `scope["path"]`, so the path holds no control character)
with no query string is served here, straight from the table; everything else (other
methods and paths, a query string, lifespan, websockets) goes to the app unchanged.

Served here exactly as the app serves the same route: the body read by `read_json` (the
same limits and refusals), the answer an orjson `JSON` response (content-type and
content-length), a failure mapped by the app's own `error_answer` (a refusal typed, a
database out of reach a 503, anything else logged and a bare 500; unlike the app's
`ServerErrorMiddleware`, the edge does not raise the error on to the server afterwards,
which would only log it a second time). The API's FastAPI routes of the same paths stay
in the app, for the OpenAPI page and for a request the edge passes on; they call the same
handlers.

The wrapper stands in for the app: attributes it does not have itself (`state`, `router`,
`openapi`, ...) are the app's, read and set there."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import State
from starlette.requests import ClientDisconnect, Request

from rail_protocol.canonical import MAX_BODY_BYTES
from rail_service.http import JSON, error_answer, read_json


@dataclass(frozen=True)
class HotRoute:
    """A POST route of the edge: `handler(body, state)` answers the parsed JSON body, with
    the app's `state` (where the services are), under `status`; a body over `max_bytes`
    is refused."""

    handler: Callable[[Any, State], Awaitable[Any]]
    status: int = 200
    max_bytes: int = MAX_BODY_BYTES


class HotRoutes:
    """`HotRoutes(app, {path: HotRoute})`: the app with its hot routes served first."""

    def __init__(self, app: Any, routes: dict[str, HotRoute]) -> None:
        object.__setattr__(self, "app", app)
        object.__setattr__(self, "hot_routes", routes)

    def __getattr__(self, name: str) -> Any:   # only what the wrapper has not itself
        return getattr(object.__getattribute__(self, "app"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.app, name, value)

    async def __call__(self, scope, receive, send) -> None:
        if (scope["type"] == "http" and scope["method"] == "POST"
                and not scope.get("query_string")):
            route = self.hot_routes.get(scope["path"])
            if route is not None:
                await self._serve(route, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _serve(self, route: HotRoute, scope, receive, send) -> None:
        try:
            body = await read_json(Request(scope, receive), route.max_bytes)
            response = JSON(await route.handler(body, self.app.state), status_code=route.status)
        except ClientDisconnect:   # gone before its body came: no one to answer
            return
        except Exception as exc:   # noqa: BLE001 - every failure gets the app's typed answer
            response = error_answer(exc, scope["method"], scope["path"])
        await response(scope, receive, send)
