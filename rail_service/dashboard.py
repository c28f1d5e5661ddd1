"""The operator dashboard's web edge, shared by central and each bank (docs/dashboards.md):
login with the service's own operator token, a signed session cookie, the page, its panel
(re-fetched every few seconds: the live update), its figures as JSON, and charts drawn
server-side as SVG by pygal.

A service calls `install` and puts its `Board` in `app.state.dashboard` when it starts. The
board gathers the figures (central/dashboard.py, bank/dashboard.py); this module only
serves them.

The session cookie holds no secret and no state: it is the service's name and the time of
login, signed with a key derived from the operator token (itsdangerous), HttpOnly, SameSite
Strict, expiring after SESSION_S. Changing the operator token ends every session. A cookie
of one service is worthless at another: each signs with its own token and its own name."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs

import pygal
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape
from pygal.style import Style

from rail_protocol.errors import RailError
from rail_protocol.money import format_fen
from rail_service.guesses import client_address
from rail_service.http import JSON, bearer_token
from rail_service.openapi import MS, TEXT, answers, obj

SESSION_S = 8 * 3600       # a session lasts one shift
REFRESH_MS = 3_000         # the page re-fetches its panel this often
MAX_LOGIN_BYTES = 2_048    # a login form is one token
SHARED_TEMPLATES = Path(__file__).parent / "templates"
# The pages load nothing from elsewhere and are never framed (no clickjacking of Log out).
PAGE_HEADERS = {
    "cache-control": "no-store", "x-frame-options": "DENY", "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "content-security-policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                               "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'"}


class Board(Protocol):
    """What a service's dashboard provides to the shared routes."""

    service: str              # "central" or the bank id: names the cookie
    title: str
    templates: Environment

    def check_operator(self, token: str | None) -> None: ...

    async def figures(self) -> dict: ...

    def charts(self, figures: dict) -> dict[str, str]: ...


def template_environment(service_templates: Path) -> Environment:
    """Jinja2 templates of a service, falling back to the shared ones (layout, login);
    autoescaped, so every figure and name is HTML-escaped."""
    env = Environment(loader=ChoiceLoader([FileSystemLoader(service_templates),
                                           FileSystemLoader(SHARED_TEMPLATES)]),
                      autoescape=select_autoescape(["html"]))
    env.filters["fen"] = format_fen
    return env


# --- sessions ---------------------------------------------------------------------------------

def cookie_name(service: str) -> str:
    """Per service: cookies ignore ports, and central and the banks share 127.0.0.1."""
    return f"yr_dashboard_{service}"


class Sessions:
    """Signed, expiring session cookies of one service, keyed by its operator token."""

    def __init__(self, service: str, operator_token: str, max_age_s: int = SESSION_S) -> None:
        key = hashlib.sha256(b"yuanrail-dashboard-session\0" + operator_token.encode()).digest()
        self.service, self.max_age_s = service, max_age_s
        self._signer = URLSafeTimedSerializer(key, salt=f"dashboard:{service}",
                                              signer_kwargs={"digest_method": hashlib.sha256})

    def issue(self) -> str:
        return self._signer.dumps({"service": self.service})

    def valid(self, cookie: str | None) -> bool:
        if not cookie:
            return False
        try:
            data = self._signer.loads(cookie, max_age=self.max_age_s)
        except (SignatureExpired, BadSignature):
            return False
        return isinstance(data, dict) and data.get("service") == self.service


def _sessions(request: Request) -> Sessions:
    return request.app.state.dashboard_sessions


def _board(request: Request) -> Board:
    return request.app.state.dashboard


def _logged_in(request: Request) -> bool:
    board = _board(request)
    return _sessions(request).valid(request.cookies.get(cookie_name(board.service)))


def _require_session(request: Request) -> Board:
    """The board, for a request with a valid session cookie; else `unauthorized` (401)."""
    if not _logged_in(request):
        raise RailError("unauthorized", "log in to the dashboard first")
    return _board(request)


def _require_operator(request: Request) -> Board:
    """The board, for the browser's session or a script's `Authorization: Bearer <operator
    token>` (the credential the operator's API routes take)."""
    token = bearer_token(request.headers.get("authorization"))
    if token is not None:
        _board(request).check_operator(token)
        return _board(request)
    return _require_session(request)


def install(app, service: str, operator_token: str) -> None:
    """Serve the dashboard at /dashboard, its sessions signed with this service's own
    operator token; the service's lifespan puts its `Board` in `app.state.dashboard`."""
    app.state.dashboard_sessions = Sessions(service, operator_token)
    app.include_router(router)


# --- charts ---------------------------------------------------------------------------------

CHART_STYLE = Style(background="transparent", plot_background="#ffffff",
                    font_family="system-ui, sans-serif", colors=("#c0392b", "#2c6fbb",
                                                                 "#27ae60", "#8e44ad"))


def _config(title: str) -> dict:
    # js=[]: pygal's tooltips script would come from a CDN; charts here are pictures only.
    return {"js": [], "disable_xml_declaration": True, "style": CHART_STYLE,
            "width": 640, "height": 260, "explicit_size": False, "title": title,
            "show_legend": False, "print_values": False, "no_data_text": "no data yet",
            "truncate_label": -1, "truncate_legend": -1}


def line_chart(title: str, labels: list[str], values: list[int], *, formatter=None) -> str:
    """A line over time (labels oldest first), as an inline SVG element; counts (no
    `formatter`) get whole-number ticks."""
    options = {**_config(title), **_count_ticks(values, formatter)}
    chart = pygal.Line(**options, show_dots=len(values) < 40, fill=True,
                       show_minor_x_labels=False, x_label_rotation=0)
    chart.x_labels = labels
    chart.x_labels_major = labels[::max(1, len(labels) // 4)]
    chart.add(title, values)
    return chart.render(is_unicode=True)


def bar_chart(title: str, bars: dict[str, int], *, formatter=None) -> str:
    """Horizontal bars, one a label, as an inline SVG element; counts (no `formatter`) get
    whole-number ticks."""
    chart = pygal.HorizontalBar(**_config(title), **_count_ticks(list(bars.values()), formatter))
    chart.x_labels = list(bars)
    chart.add(title, list(bars.values()))
    return chart.render(is_unicode=True)


def _count_ticks(values: list[int], formatter) -> dict:
    """The value axis: `formatter`'s text, or for counts about five whole-number ticks."""
    if formatter is not None:
        return {"value_formatter": formatter}
    top = max([*values, 1])
    step = max(1, -(-top // 5))
    return {"value_formatter": str, "y_labels": list(range(0, top + step, step))}


def yuan_axis(fen: int | float) -> str:
    """Axis text for a value in fen (pygal hands floats to formatters; shown, never kept)."""
    return format_fen(int(fen))


# --- routes ---------------------------------------------------------------------------------

router = APIRouter(prefix="/dashboard", tags=["dashboard"])


async def _render(board: Board, name: str, **context) -> str:
    figures = await board.figures()
    charts = await asyncio.to_thread(board.charts, figures)
    return board.templates.get_template(name).render(
        figures=figures, charts=charts, title=board.title, refresh_ms=REFRESH_MS, **context)


@router.get("", response_class=HTMLResponse, include_in_schema=False)
async def page(request: Request) -> Response:
    """The dashboard page (after login)."""
    if not _logged_in(request):
        return RedirectResponse("/dashboard/login", status_code=303)
    return HTMLResponse(await _render(_board(request), "dashboard.html"), headers=PAGE_HEADERS)


@router.get("/panel", response_class=HTMLResponse, include_in_schema=False)
async def panel(request: Request) -> HTMLResponse:
    """The page's figures and charts, re-fetched by the page every few seconds."""
    board = _require_session(request)
    return HTMLResponse(await _render(board, "panel.html"), headers=PAGE_HEADERS)


@router.get("/figures.json", response_class=JSON,
            openapi_extra=answers(obj({"service": TEXT, "at_ms": MS})))
async def figures(request: Request) -> JSON:
    """Every figure the dashboard shows, as JSON (the operator: a dashboard session or the
    operator token)."""
    board = _require_operator(request)
    return JSON(await board.figures(), headers={"cache-control": "no-store"})


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
async def login_form(request: Request) -> HTMLResponse:
    board = _board(request)
    return HTMLResponse(board.templates.get_template("login.html").render(
        title=board.title, refused=False), headers=PAGE_HEADERS)


@router.post("/login", include_in_schema=False)
async def login(request: Request) -> Response:
    """Exchange the operator token (a form field) for a session cookie."""
    board = _board(request)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_LOGIN_BYTES:
            raise RailError("payload_too_large", "a login form is one token")
    tokens = parse_qs(body.decode("utf-8", "replace")).get("token") or [""]
    try:
        board.check_operator(tokens[0].strip() or None)
    except RailError:
        request.app.state.wrong_guesses.count(client_address(request.scope))
        html = board.templates.get_template("login.html").render(title=board.title, refused=True)
        return HTMLResponse(html, status_code=401, headers=PAGE_HEADERS)
    response = RedirectResponse("/dashboard", status_code=303)
    response.set_cookie(cookie_name(board.service), _sessions(request).issue(),
                        max_age=SESSION_S, path="/dashboard", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    return response


@router.post("/logout", include_in_schema=False)
async def logout(request: Request) -> Response:
    response = RedirectResponse("/dashboard/login", status_code=303)
    response.delete_cookie(cookie_name(_board(request).service), path="/dashboard",
                           httponly=True, samesite="strict")
    return response
