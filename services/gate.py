"""The front door: every HTTP request passes here before any route reads it (a plain ASGI middleware, not
BaseHTTPMiddleware, which costs a task group and a body stream per request).

1. Under ``/api`` and the OGC API (``settings.ogc_prefix``) the presented token is checked (services/auth.py):
   an unknown or expired token → 401, too many unknown tokens from one address → 429; without a token the OGC
   API answers only while ``settings.anonymous_read`` is on. The pages and their static files ignore tokens.
2. A request that carries a body (``Content-Length`` > 0 or a chunked body) is refused **before one byte of
   it is read**: 401 under ``/api`` without a valid token, 413 when its declared length exceeds the limit of its
   route. A body without a declared length is counted as it streams in and cut off with 413 at the limit: no
   route ever holds more than the limit in memory or on disk.

Limits: ``settings.max_upload_bytes`` (+ the multipart fields) for the routes that take a file (evidence
photos, 合规性审查 shapefiles), ``settings.max_body_bytes`` for every other body (JSON / YAML documents).
"""

from __future__ import annotations

import re

from starlette.requests import Request

from layers.errors import YztError

from .auth import _identify, client_address
from .errors import AuthenticationError, PayloadTooLarge, error_response
from .settings import Settings

MULTIPART_OVERHEAD = 64 * 1024  # form fields and boundaries on top of the file itself
UPLOAD_ROUTES = (re.compile(r"^/api/patches/[^/]+/evidence$"), re.compile(r"^/api/review/(map|report\.pdf)$"))


class Gate:
    def __init__(self, app, settings: Settings) -> None:
        self.app = app
        self.ogc = settings.ogc_prefix.rstrip("/") or "/"
        self.anonymous_read = settings.anonymous_read
        self.max_upload = int(settings.max_upload_bytes)
        self.body_limit = int(settings.max_body_bytes)

    def limit_of(self, path: str) -> tuple[int, str]:
        """(bytes, the limit in words) of a route's body."""
        if any(r.match(path) for r in UPLOAD_ROUTES):
            return (self.max_upload + MULTIPART_OVERHEAD,
                    f"{self.max_upload:,} bytes per file (settings.max_upload_bytes) + {MULTIPART_OVERHEAD // 1024} "
                    "KiB of form fields")
        return self.body_limit, f"{self.body_limit:,} bytes (settings.max_body_bytes)"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        is_api = path == "/api" or path.startswith("/api/")
        is_ogc = path == self.ogc or path.startswith(self.ogc + "/")
        request = Request(scope)
        headers = request.headers
        length_text = headers.get("content-length")
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        try:
            length = int(length_text) if length_text is not None else None
        except ValueError:
            length = None
        has_body = chunked or bool(length) or (length_text is not None and length is None)
        try:
            who = None
            if is_api or is_ogc:
                who = _identify(scope["app"].state, headers, client_address(scope))
                scope["yzt.principal"] = who
                if who is None and is_ogc and not self.anonymous_read:
                    raise AuthenticationError("the OGC API of this server is not open to anonymous users "
                                              "(anonymous_read is off); send Authorization: Bearer <token>")
            if has_body:
                if length_text is not None and length is None:
                    raise PayloadTooLarge(f"Content-Length {length_text[:40]!r} is not a number of bytes")
                if is_api and who is None:
                    raise AuthenticationError(f"{scope['method']} {path}: a request with a body needs a token; "
                                              "send Authorization: Bearer <token> (the body was not read)")
                limit, words = self.limit_of(path)
                if length is not None and length > limit:
                    raise PayloadTooLarge(f"the body of {scope['method']} {path} is {length:,} bytes; the limit is "
                                          f"{words}; the body was not read")
        except YztError as exc:
            await error_response(exc)(scope, receive, send)
            return
        if not has_body:
            await self.app(scope, receive, send)
            return
        await self._limited(scope, receive, send, *self.limit_of(path))

    async def _limited(self, scope, receive, send, limit: int, words: str) -> None:
        """Run the app with a receive that stops the body at ``limit`` bytes: 413 is sent, the app then sees a
        disconnect and whatever it answers is dropped."""
        seen = 0
        refused = False
        started = False

        async def limited_receive():
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    refused = True
                    if not started:
                        await error_response(PayloadTooLarge(
                            f"the body of {scope['method']} {scope['path']} is larger than the limit, {words}; "
                            "it was not read further"))(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            nonlocal started
            if refused:
                return  # the 413 went out already
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not refused:
                raise


def install(app, settings: Settings) -> None:
    app.add_middleware(Gate, settings=settings)
