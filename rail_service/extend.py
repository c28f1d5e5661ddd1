"""Components added to a service's app after it is made: started in its lifespan (once the
app's own start-up is done, so they can use what it built), closed before its shut-down.
(Their hot routes are served by the app's edge, rail_service/hot_edge.py.)"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any


def extend_app(app: Any, name: str, start: Callable[[Any], Awaitable[Any]]) -> None:
    """Start `start(app)` as `app.state.<name>` (something with `aclose()`). Idempotent: a
    second call with the same name does nothing."""
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
