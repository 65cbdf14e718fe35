"""The web UI's files: the page at /ui/ (and at each of its views' paths, so a link or a reload opens
that view), its scripts, styles and vendored libraries under /ui/static/. The files hold no data:
they are public, and everything they show comes from the API with the caller's key or session."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, redirect, send_from_directory
from werkzeug.wrappers import Response as WerkzeugResponse

from api.auth.guard import public
from api.route_docs import documented
from api.security_headers import UI_POLICY

STATIC = Path(__file__).parent / "static"
bp = Blueprint("ui", __name__, static_folder=str(STATIC), static_url_path="/ui/static")


def _page() -> Response:
    response = send_from_directory(STATIC, "index.html", max_age=0)
    response.headers["Content-Security-Policy"] = UI_POLICY
    return response


@bp.get("/")
@public
@documented(success=302, description="to the UI")
def root() -> WerkzeugResponse:
    """The web UI lives at /ui/."""
    return redirect("/ui/")


@bp.get("/ui/")
@public
@documented(description="the UI page (text/html)")
def chat() -> Response:
    """The web UI: the chat playground."""
    return _page()


@bp.get("/ui/requests/<request_id>")
@public
@documented(description="the UI page (text/html)")
def request_timeline(request_id: str) -> Response:
    """The web UI: one request's timeline."""
    return _page()


@bp.get("/ui/models")
@public
@documented(description="the UI page (text/html)")
def models() -> Response:
    """The web UI: models, loads and Hub search."""
    return _page()


@bp.get("/ui/monitor")
@public
@documented(description="the UI page (text/html)")
def monitor() -> Response:
    """The web UI: workers and live charts."""
    return _page()
