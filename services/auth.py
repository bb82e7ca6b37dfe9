"""Access: who is calling, and may they?

Callers authenticate with a token, sent as ``Authorization: Bearer <token>`` or ``X-API-Key: <token>``. Tokens
come from two places, merged:

- ``settings.tokens_file``, written by ``yzt token add|revoke`` (services/cli/token.py): only the SHA-256 of
  each token is stored, with its user, role, unit (the 行政区代码 it is scoped to) and expiry. The file is
  re-read when it changes (a revoked token stops working on its next request, no restart); a file that
  cannot be read disables its tokens until it is fixed (fail closed) and logs why. An older file mapping plain
  tokens to ``{user, role}`` is still read, with a warning to re-issue the tokens with ``yzt token add``.
- ``settings.tokens`` (``YZT_TOKENS``, tests): ``{token or "sha256:<hex>": {user, role, unit}}``; plain tokens
  are hashed when the app starts and only the hashes are kept.

A presented token is hashed and compared with every known hash (``hmac.compare_digest`` on 32 bytes, no
early exit): the time does not depend on which token matched, how many characters of it were right, or its
length. A client address that presents ``settings.auth_max_failures`` unknown tokens within
``settings.auth_failure_window_s`` seconds is answered 429 (with ``Retry-After``) until the window passes.

Roles are ordered: planner (read) < inspector (judge patches, move them through the workflow, upload evidence)
< admin (ingest, configuration, indicator runs, audit verification). An endpoint states the least role it needs
with ``Depends(require("inspector"))``; the dependency returns the :class:`Principal`, which the audit log
records.

- no token where one is needed → 401 (with ``WWW-Authenticate: Bearer``);
- a token that is not known or has expired, or a malformed Authorization header → 401 on every route under
  ``/api`` and the OGC API (also on open ones: a wrong token is a mistake the caller must hear about); the web
  pages and their static files ignore tokens;
- a known token whose role is too low → 403.

``settings.anonymous_read`` opens the read-only OGC API (mounted at ``settings.ogc_prefix``) to callers without
a token. The workbench, review and indicator APIs always need at least a planner token.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import os
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request

from layers.errors import RuleError
from layers.yamlfile import read_yaml_file

from .errors import AuthenticationError, PermissionDenied, TooManyAttempts
from .settings import RANK, ROLES, Principal, Settings

LOGGER = logging.getLogger("yizhangtu.auth")
ANONYMOUS = Principal(user="anonymous", role="anonymous")
HOW = "send Authorization: Bearer <token> or X-API-Key: <token> (tokens are issued with `yzt token add`)"
MAX_TOKEN_CHARS = 1024  # a longer header value is refused without hashing it
HASH_PREFIX = "sha256:"


def token_hash(token: str) -> str:
    """``sha256:<hex>`` of a token, as the tokens file stores it."""
    return HASH_PREFIX + hashlib.sha256(token.encode("utf-8")).hexdigest()


def _parse_time(value: Any, where: str) -> dt.datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        out = value
    elif isinstance(value, dt.date):
        out = dt.datetime(value.year, value.month, value.day)
    else:
        try:
            out = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise RuleError(f"{where}: {value!r} is not an ISO 8601 time such as 2027-01-31T00:00:00Z") from None
    return out if out.tzinfo else out.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class TokenEntry:
    """One known token: its SHA-256 digest (never the token), who it is, and when it stops working."""

    digest: bytes
    principal: Principal
    expires: dt.datetime | None = None
    token_id: str | None = None


def _check_principal(who: Principal, where: str) -> None:
    if who.role not in RANK:
        raise RuleError(f"{where}: user {who.user!r} has role {who.role!r}; roles are {', '.join(ROLES)}")
    if who.unit is not None and not (who.unit.isdigit() and 2 <= len(who.unit) <= 12):
        raise RuleError(f"{where}: unit {who.unit!r} of user {who.user!r} is not a 行政区代码 (2–12 digits, e.g. "
                        "130599)")


def _entry(token_or_hash: str, who: Principal, where: str, expires=None, token_id=None) -> TokenEntry:
    _check_principal(who, where)
    text = str(token_or_hash)
    if text.startswith(HASH_PREFIX):
        hexdigest = text[len(HASH_PREFIX):]
        if len(hexdigest) != 64 or any(c not in "0123456789abcdef" for c in hexdigest):
            raise RuleError(f"{where}: the hash of user {who.user!r}'s token must be sha256:<64 lowercase hex "
                            "digits>")
        digest = bytes.fromhex(hexdigest)
    else:
        if len(text) < 8:
            raise RuleError(f"{where}: the token of user {who.user!r} is shorter than 8 characters; issue a long "
                            "random one with `yzt token add`")
        digest = hashlib.sha256(text.encode("utf-8")).digest()
    return TokenEntry(digest, who, _parse_time(expires, where), token_id)


def read_tokens_file(path: Path) -> list[TokenEntry]:
    """The tokens of a tokens file (RuleError naming the file and the problem).

    Two formats: the one ``yzt token`` writes (``tokens:`` a list of ``{id, hash, user, role, unit, expires,
    revoked}``; revoked entries are skipped) and the older ``{token: {user, role}}`` map of plain tokens."""
    where = f"tokens file {str(path)!r}"
    doc = read_yaml_file(path, "tokens", missing_hint="create it with `yzt token add --file …` or unset "
                                                      "tokens_file") or {}
    if not isinstance(doc, dict):
        raise RuleError(f"{where} must hold `tokens:` (a list written by `yzt token add`) or map each token to "
                        "{user: NAME, role: ROLE}")
    entries: list[TokenEntry] = []
    if "tokens" in doc and isinstance(doc["tokens"], list):
        for i, item in enumerate(doc["tokens"]):
            if not isinstance(item, dict) or not {"hash", "user", "role"} <= set(item):
                raise RuleError(f"{where}: entry {i + 1} must have hash, user and role, got {item!r}")
            if item.get("revoked"):
                continue
            unit = item.get("unit")
            who = Principal(user=str(item["user"]), role=str(item["role"]),
                            unit=None if unit in (None, "") else str(unit))
            entries.append(_entry(str(item["hash"]), who, where, item.get("expires"), item.get("id")))
        return entries
    plain = 0
    for token, who in doc.items():
        if not isinstance(who, dict) or not {"user", "role"} <= set(who):
            raise RuleError(f"{where}: token {str(token)[:4]}… must map to {{user, role}}, got {who!r}")
        unit = who.get("unit")
        principal = Principal(user=str(who["user"]), role=str(who["role"]),
                              unit=None if unit in (None, "") else str(unit))
        entries.append(_entry(str(token), principal, where, who.get("expires")))
        plain += not str(token).startswith(HASH_PREFIX)
    if plain:
        LOGGER.warning("%s stores %d token(s) in plain text; re-issue them with `yzt token add` (which stores "
                       "only their SHA-256) and delete this file", where, plain)
    return entries


class TokenRegistry:
    """The known tokens: settings.tokens plus the tokens file, re-read when the file changes."""

    def __init__(self, settings: Settings):
        self.path = Path(settings.tokens_file) if settings.tokens_file else None
        self._inline = [_entry(token, who if isinstance(who, Principal) else Principal(**who), "settings.tokens")
                        for token, who in (settings.tokens or {}).items()]
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._file: list[TokenEntry] = []
        self._file_error: str | None = None
        if self.path is not None:  # at start a bad file is an error (yzt serve: one line, exit 2)
            self._stamp = self._stat()
            self._file = read_tokens_file(self.path)

    def _stat(self) -> tuple | None:
        assert self.path is not None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _refresh(self) -> None:
        """Re-read the tokens file if it changed since it was read (one stat per request)."""
        if self.path is None:
            return
        stamp = self._stat()
        if stamp == self._stamp:
            return
        with self._lock:
            if stamp == self._stamp:
                return
            try:
                self._file, self._file_error = read_tokens_file(self.path), None
                LOGGER.info("tokens file %s re-read: %d token(s)", self.path, len(self._file))
            except RuleError as exc:  # fail closed: a revocation must not be lost to a typo
                self._file, self._file_error = [], str(exc)
                LOGGER.error("%s; its tokens are refused until it is fixed", exc)
            self._stamp = stamp

    def entries(self) -> list[TokenEntry]:
        self._refresh()
        return self._inline + self._file

    def lookup(self, token: str) -> TokenEntry | None:
        """The entry of ``token``, None if unknown: every known digest is compared, in constant time."""
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        found = None
        for entry in self.entries():
            if hmac.compare_digest(entry.digest, digest):
                found = entry
        return found

    @property
    def file_error(self) -> str | None:
        return self._file_error


class FailureLimiter:
    """Unknown tokens per client address in a sliding window; at most ``max_clients`` addresses are tracked
    (the oldest dropped first), so the table cannot grow without bound."""

    def __init__(self, max_failures: int, window_s: float, max_clients: int = 10_000):
        self.max_failures, self.window_s, self.max_clients = int(max_failures), float(window_s), max_clients
        self._fails: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        q = self._fails.get(client)
        if q is None:
            return deque()
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if not q:
            del self._fails[client]
        return q

    def check(self, client: str) -> None:
        """TooManyAttempts (429) while ``client`` is over the limit."""
        if self.max_failures <= 0:
            return
        now = time.monotonic()
        with self._lock:
            q = self._recent(client, now)
            if len(q) >= self.max_failures:
                retry = max(1, int(q[0] + self.window_s - now + 0.999))
                raise TooManyAttempts(f"{len(q)} unknown tokens from {client} in the last {self.window_s:g} s; try "
                                      f"again in {retry} s with a valid token", retry_after=retry)

    def fail(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            q = self._fails.pop(client, None) or deque()
            q.append(now)
            while len(q) > self.max_failures:
                q.popleft()
            self._fails[client] = q
            while len(self._fails) > self.max_clients:
                self._fails.popitem(last=False)


def _presented(headers) -> str | None:
    """The token a request presents, None if none; AuthenticationError for a malformed header."""
    header = headers.get("authorization")
    if header is not None:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthenticationError(f"Authorization header must be 'Bearer <token>'; {HOW}")
        token = value.strip()
    else:
        key = headers.get("x-api-key")
        if key is None:
            return None
        if not key.strip():
            raise AuthenticationError(f"X-API-Key header is empty; {HOW}")
        token = key.strip()
    return token


def client_address(scope_or_request) -> str:
    scope = scope_or_request.scope if isinstance(scope_or_request, Request) else scope_or_request
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def identify(request: Request) -> Principal | None:
    """The caller: a Principal for a known token, None without a token; AuthenticationError for a wrong or
    expired one, TooManyAttempts (429) for an address that sent too many wrong ones. Cached per request."""
    cached = request.scope.get("yzt.principal", ...)
    if cached is not ...:
        return cached
    who = _identify(request.app.state, request.headers, client_address(request))
    request.scope["yzt.principal"] = who
    return who


def _identify(state, headers, client: str) -> Principal | None:
    token = _presented(headers)
    if token is None:
        return None
    limiter: FailureLimiter = state.auth_limiter
    try:
        limiter.check(client)
    except TooManyAttempts:
        LOGGER.warning("auth: %s refused (too many unknown tokens in the last %g s)", client, limiter.window_s)
        raise
    registry: TokenRegistry = state.tokens
    entry = registry.lookup(token) if len(token) <= MAX_TOKEN_CHARS else None
    if entry is None:
        limiter.fail(client)
        LOGGER.warning("auth: unknown token from %s (sha256 prefix %s)", client,
                       hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:8])
        extra = f" (the tokens file is unusable: {registry.file_error})" if registry.file_error else ""
        raise AuthenticationError(f"the token presented is not known{extra}; {HOW}")
    if entry.expires is not None and entry.expires <= dt.datetime.now(dt.UTC):
        LOGGER.warning("auth: expired token %s of user %r from %s", entry.token_id or "(inline)",
                       entry.principal.user, client)
        raise AuthenticationError(f"the token of user {entry.principal.user!r} expired at "
                                  f"{entry.expires.isoformat()}; ask an admin for a new one (`yzt token add`)")
    return entry.principal


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


def install(app: FastAPI, settings: Settings) -> None:
    """The token registry and the failed-attempt limiter (the gate in services/gate.py uses them)."""
    app.state.tokens = TokenRegistry(settings)
    app.state.auth_limiter = FailureLimiter(settings.auth_max_failures, settings.auth_failure_window_s)
