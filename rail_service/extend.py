"""Components added to a service's app after it is made: started in its lifespan (once the
app's own start-up is done, so they can use what it built), closed before its shut-down,
with their routes placed before the app's own (a fast route shadows the API route of the
same path, which stays in the OpenAPI page)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any


def extend_app(app: Any, name: str, start: Callable[[Any], Awaitable[Any]],
               routes: list) -> None:
    """Start `start(app)` as `app.state.<name>` (something with `aclose()`) and serve
    `routes` first. Idempotent: a second call with the same name does nothing."""
    marker = f"{name}_installed"
    if getattr(app.state, marker, False):
        return
    setattr(app.state, marker, True)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a):
        async with inner(a) as state:
            component = await start(a)
            setattr(a.state, name, component)
            try:
                yield state
            finally:
                await component.aclose()

    app.router.lifespan_context = lifespan
    app.router.routes[0:0] = routes
