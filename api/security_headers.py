"""Headers that tell browsers what our pages may do. Every answer says `nosniff` (a JSON error or a
script is never read as HTML); an HTML page may not be framed by another site (clickjacking: the UI
acts with its session cookie) and carries a Content-Security-Policy. The UI sets its own policy;
Swagger UI's page (flask-swagger-ui's template) has one inline script, allowed by its hash alone.
"""

from __future__ import annotations

import base64
import hashlib
import re

from flask import Flask, Response

# Neither page may be framed, post forms elsewhere, load plugins or change its base URL.
LOCKED = "frame-ancestors 'none'; form-action 'self'; base-uri 'self'; object-src 'none'"
UI_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
    + LOCKED
)
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def page_policy(html: str) -> str:
    """The policy of a page served without one (Swagger UI): our own files, and its inline scripts by
    their SHA-256. Swagger UI sets styles inline, which style-src must allow."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in _INLINE_SCRIPT.findall(html)
    )
    return (
        f"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        f"script-src 'self' {hashes}; connect-src 'self'; " + LOCKED
    )


def _add(response: Response) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if response.mimetype == "text/html":
        response.headers.setdefault("X-Frame-Options", "DENY")  # for browsers without frame-ancestors
        if "Content-Security-Policy" not in response.headers and not response.is_streamed:
            response.headers["Content-Security-Policy"] = page_policy(response.get_data(as_text=True))
    return response


def install(app: Flask) -> None:
    """Add the headers to every answer."""
    app.after_request(_add)
