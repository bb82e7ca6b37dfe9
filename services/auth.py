"""Access: who is calling, and may they?

Callers authenticate with a token from the settings (``settings.tokens`` and the YAML ``settings.tokens_file``
``{token: {user, role}}``), sent as ``Authorization: Bearer <token>`` or ``X-API-Key: <token>``.

Roles are ordered: planner (read) < inspector (judge patches, move them through the workflow, upload evidence)
< admin (ingest, configuration, indicator runs, audit verification). An endpoint states the least role it needs
with ``Depends(require("inspector"))``; the dependency returns the :class:`Principal`, which the audit log
records.

- no token where one is needed → 401 (with ``WWW-Authenticate: Bearer``);
- a token that is not known, or a malformed Authorization header → 401, on every route (also on open ones:
  a wrong token is a mistake the caller must hear about);
- a known token whose role is too low → 403.

``settings.anonymous_read`` opens the read-only OGC API (mounted at ``settings.ogc_prefix``) to callers without
a token; the web pages themselves (HTML/JS/CSS, no data) are always served. The workbench, review and
indicator APIs always need at least a planner token.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from fastapi import FastAPI, Request

from layers.errors import RuleError
from layers.yamlfile import read_yaml_file

from .errors import AuthenticationError, PermissionDenied, error_response
from .settings import RANK, ROLES, Principal, Settings

ANONYMOUS = Principal(user="anonymous", role="anonymous")
HOW = "send Authorization: Bearer <token> or X-API-Key: <token> (tokens are configured in settings.tokens / " \
      "settings.tokens_file)"


def load_tokens(settings) -> dict[str, Principal]:
    """settings.tokens merged with settings.tokens_file; RuleError for an unknown role or a malformed file."""
    tokens: dict[str, Principal] = {}
    for token, who in (settings.tokens or {}).items():
        tokens[str(token)] = who if isinstance(who, Principal) else Principal(**who)
    if settings.tokens_file:
        path = Path(settings.tokens_file)
        doc = read_yaml_file(path, "tokens", missing_hint="create it ({token: {user, role}}) or unset "
                                                          "tokens_file") or {}
        if not isinstance(doc, dict):
            raise RuleError(f"tokens file {str(path)!r} must map each token to {{user: NAME, role: ROLE}}")
        for token, who in doc.items():
            if not isinstance(who, dict) or not {"user", "role"} <= set(who):
                raise RuleError(f"tokens file {str(path)!r}: token {str(token)[:4]}… must map to {{user, role}}, "
                                f"got {who!r}")
            tokens[str(token)] = Principal(user=str(who["user"]), role=str(who["role"]),
                                           unit=None if who.get("unit") is None else str(who["unit"]))
    for token, who in tokens.items():
        if who.role not in RANK:
            raise RuleError(f"user {who.user!r} has role {who.role!r}; roles are {', '.join(ROLES)}")
        if len(token) < 8:
            raise RuleError(f"the token of user {who.user!r} is shorter than 8 characters; use a long random "
                            "token (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return tokens


def _presented(request: Request) -> str | None:
    """The token the request presents, None if none; AuthenticationError for a malformed header."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthenticationError(f"Authorization header must be 'Bearer <token>'; {HOW}")
        return value.strip()
    key = request.headers.get("x-api-key")
    if key is not None:
        if not key.strip():
            raise AuthenticationError(f"X-API-Key header is empty; {HOW}")
        return key.strip()
    return None


def identify(request: Request) -> Principal | None:
    """The caller: a Principal for a known token, None without a token; AuthenticationError for a wrong one."""
    token = _presented(request)
    if token is None:
        return None
    tokens: dict[str, Principal] = request.app.state.tokens
    found = None
    for known, who in tokens.items():  # compare against every token: no early exit, no timing hint
        if hmac.compare_digest(known.encode(), token.encode()):
            found = who
    if found is None:
        raise AuthenticationError(f"the token presented is not known; {HOW}")
    return found


def require(role: str):
    """A FastAPI dependency: the caller's Principal if its role is at least ``role``, else 401 / 403."""
    if role not in RANK:
        raise ValueError(f"unknown role {role!r}")

    def dependency(request: Request) -> Principal:
        who = identify(request)
        if who is None:
            raise AuthenticationError(f"{request.method} {request.url.path} needs a {role} token; {HOW}")
        if RANK[who.role] < RANK[role]:
            raise PermissionDenied(f"user {who.user!r} has role {who.role}; {request.method} {request.url.path} "
                                   f"needs {role} or above")
        request.state.principal = who
        return who

    dependency.__name__ = f"require_{role}"
    return dependency


def optional_principal(request: Request) -> Principal:
    """The caller, or ANONYMOUS without a token (a wrong token still answers 401)."""
    return identify(request) or ANONYMOUS


def has_role(who: Principal, role: str) -> bool:
    return RANK.get(who.role, 0) >= RANK[role]


class _OgcGate:
    """The OGC API is a mounted Starlette app (read-only, GET): guard its whole prefix here. Every role reads.

    A plain ASGI middleware (not BaseHTTPMiddleware, which costs a task group and a body stream per request)."""

    def __init__(self, app, prefix: str, anonymous_read: bool):
        self.app = app
        self.prefix = prefix.rstrip("/") or "/"
        self.anonymous_read = anonymous_read

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            path = scope["path"]
            if path == self.prefix or path.startswith(self.prefix + "/"):
                try:
                    who = identify(Request(scope))
                    if who is None and not self.anonymous_read:
                        raise AuthenticationError(f"the OGC API of this server is not open to anonymous users "
                                                  f"(anonymous_read is off); {HOW}")
                except (AuthenticationError, PermissionDenied) as exc:
                    await error_response(exc)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def install(app: FastAPI, settings: Settings) -> None:
    app.state.tokens = load_tokens(settings)
    app.add_middleware(_OgcGate, prefix=settings.ogc_prefix, anonymous_read=settings.anonymous_read)
