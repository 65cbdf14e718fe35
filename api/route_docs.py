"""What each route says about itself for the OpenAPI document: its body model, its responses, its
query parameters. api/openapi.py walks the app's URL rules and reads this from each view."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

View = TypeVar("View", bound=Callable[..., Any])
ATTRIBUTE = "__route_doc__"
COMMON_ERRORS = (400, 413, 415, 503)  # what any route with a body may answer, besides its own
SWAGGER_BLUEPRINT = "swagger_ui"  # flask-swagger-ui's blueprint
_STATIC_ENDPOINTS = frozenset({"static", "ui.static"})


def is_static_endpoint(endpoint: str) -> bool:
    """Static files and Swagger UI's pages: public, and not part of the OpenAPI document."""
    return endpoint in _STATIC_ENDPOINTS or endpoint.startswith(SWAGGER_BLUEPRINT + ".")


@dataclass(frozen=True)
class QueryParam:
    name: str
    schema: dict[str, Any]
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class RouteDoc:
    body: type[BaseModel] | None = None
    success: int = 200
    success_description: str = "OK"
    stream: bool = False  # the success response is text/event-stream
    errors: tuple[int, ...] = ()
    query: tuple[QueryParam, ...] = ()
    websocket: bool = False  # a WebSocket upgrade (documented as a GET answered 101)
    extra_statuses: dict[int, str] = field(default_factory=dict)  # non-error statuses besides success


def documented(
    *,
    body: type[BaseModel] | None = None,
    success: int = 200,
    description: str = "OK",
    stream: bool = False,
    errors: tuple[int, ...] = (),
    query: tuple[QueryParam, ...] = (),
    websocket: bool = False,
    extra: dict[int, str] | None = None,
) -> Callable[[View], View]:
    """Attach a RouteDoc to a view; the view's docstring gives the summary and description."""
    doc = RouteDoc(body, success, description, stream, errors, query, websocket, extra or {})

    def mark(view: View) -> View:
        setattr(view, ATTRIBUTE, doc)
        return view

    return mark


def route_doc(view: Callable[..., Any]) -> RouteDoc | None:
    doc: RouteDoc | None = getattr(view, ATTRIBUTE, None)
    return doc
