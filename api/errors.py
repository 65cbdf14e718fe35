"""Errors as JSON `{"error": {"message", "type", "param", "code"}}` with the right status, never a 500."""

from __future__ import annotations

import logging
import uuid

import redis
from flask import Flask, Response, g, has_request_context, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the client should see: status, message and the request field it concerns."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}


def error_response(status: int, message: str, param: str | None = None, code: str | None = None) -> Response:
    if has_request_context():  # api/telemetry.py logs and counts the reason of every 4xx
        g.tw_error = (code, message)
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    response = jsonify(body)
    response.status_code = status
    return response


def from_validation_error(exc: ValidationError) -> ApiError:
    """The first problem pydantic found, naming its field."""
    first = exc.errors(include_url=False)[0]
    param = ".".join(str(p) for p in first["loc"]) or None
    message = f"{param}: {first['msg']}" if param else first["msg"]
    return ApiError(400, message, param=param, code=first["type"])


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        response = error_response(exc.status, exc.message, exc.param, exc.code)
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        response = error_response(exc.code or 500, exc.description or exc.name)
        return response

    @app.errorhandler(ValidationError)
    def _invalid(exc: ValidationError) -> Response:
        # Validation past the body's own model (e.g. sampling built from an OpenAI body) is still bad input.
        err = from_validation_error(exc)
        return error_response(err.status, err.message, err.param, err.code)

    @app.errorhandler(redis.RedisError)
    def _redis_down(exc: redis.RedisError) -> Response:
        log.warning("redis unavailable: %s", exc)  # the address stays in the log
        response = error_response(
            503, "the queue (Redis) is unavailable; retry later", code="redis_unavailable"
        )
        response.headers["Retry-After"] = "5"
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        incident = uuid.uuid4().hex[:12]
        log.exception("unhandled error (incident %s)", incident)
        return error_response(500, f"internal error; the server log has the details (incident {incident})")
