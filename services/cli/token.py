"""`yzt token add|revoke|list`: the tokens file of `yzt serve` (settings.tokens_file).

The file keeps only each token's SHA-256, with its id, user, role, unit (the 行政区代码 it is scoped to),
creation and expiry time, and the time it was revoked. A new token is printed once, by ``add``; nobody can read
it back from the file. A running server re-reads the file when it changes: a revoked token is refused on its
next request.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
from pathlib import Path

import click
import yaml

from layers.errors import RuleError
from layers.filelock import exclusive

from ..auth import read_tokens_file, token_hash
from ..settings import ROLES

HEADER = ("# yizhangtu tokens, written by `yzt token` — only SHA-256 hashes of the tokens are stored here.\n"
          "# Keep this file readable by the service only (mode 600).\n")

file_opt = click.option("--file", "path", envvar="YZT_TOKENS_FILE", required=True, metavar="FILE",
                        type=click.Path(dir_okay=False, path_type=Path),
                        help="the tokens file (default $YZT_TOKENS_FILE); created by the first `add`")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _stamp(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_entries(path: Path) -> list[dict]:
    """The entries of a tokens file written by `yzt token` ([] if the file does not exist)."""
    if not path.exists():
        return []
    read_tokens_file(path)  # the same checks the server makes (RuleError naming the problem)
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(doc.get("tokens"), list):
        raise RuleError(f"tokens file {str(path)!r} maps plain tokens ({{token: {{user, role}}}}); `yzt token` "
                        "writes a new file of hashes: give another --file, issue the tokens again, then delete "
                        "the old file")
    return list(doc["tokens"])


def write_entries(path: Path, entries: list[dict]) -> None:
    """Write the file atomically (a temporary file beside it, then rename), readable by its owner only."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    text = HEADER + yaml.safe_dump({"version": 1, "tokens": entries}, allow_unicode=True, sort_keys=False)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def add_token(path: Path, user: str, role: str, unit: str | None = None, expires: dt.datetime | None = None,
              now: dt.datetime | None = None) -> tuple[str, dict]:
    """Issue a token: (the token, its entry). Only the entry is stored."""
    if role not in ROLES:
        raise RuleError(f"role {role!r} is unknown; roles are {', '.join(ROLES)}")
    if unit is not None and not (unit.isdigit() and 2 <= len(unit) <= 12):
        raise RuleError(f"unit {unit!r} is not a 行政区代码 (2–12 digits, e.g. 130599)")
    if not user.strip():
        raise RuleError("user is empty; give the name the audit log should record")
    now = now or _now()
    if expires is not None and expires <= now:
        raise RuleError(f"expiry {_stamp(expires)} is not in the future")
    token = "yzt_" + secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(path):
        entries = read_entries(path)
        ids = {str(e.get("id")) for e in entries}
        token_id = secrets.token_hex(4)
        while token_id in ids:
            token_id = secrets.token_hex(4)
        entry = {"id": token_id, "hash": token_hash(token), "user": user.strip(), "role": role, "unit": unit,
                 "created": _stamp(now), "expires": _stamp(expires), "revoked": None}
        write_entries(path, [*entries, entry])
    return token, entry


def revoke_token(path: Path, token_id: str, now: dt.datetime | None = None) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(path):
        entries = read_entries(path)
        for entry in entries:
            if str(entry.get("id")) == token_id:
                if entry.get("revoked"):
                    raise RuleError(f"token {token_id} was revoked already, at {entry['revoked']}")
                entry["revoked"] = _stamp(now or _now())
                write_entries(path, entries)
                return entry
    known = ", ".join(str(e.get("id")) for e in entries) or "none"
    raise RuleError(f"no token with id {token_id!r} in {path}; ids: {known} (see `yzt token list`)")


def status_of(entry: dict, now: dt.datetime | None = None) -> str:
    if entry.get("revoked"):
        return "revoked"
    expires = entry.get("expires")
    if expires and dt.datetime.fromisoformat(str(expires).replace("Z", "+00:00")) <= (now or _now()):
        return "expired"
    return "active"


def _expiry(expires: str | None, days: int | None) -> dt.datetime | None:
    if expires and days:
        raise click.BadParameter("give --expires or --days, not both", param_hint="--expires")
    if days:
        return _now() + dt.timedelta(days=days)
    if expires:
        try:
            value = dt.datetime.fromisoformat(expires.replace("Z", "+00:00"))
        except ValueError:
            raise click.BadParameter(f"{expires!r} is not a date or ISO 8601 time, e.g. 2027-06-30",
                                     param_hint="--expires") from None
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return None


@click.group("token")
def token():
    """Issue, revoke and list the API tokens of `yzt serve` (only their hashes are stored)."""


@token.command("add")
@file_opt
@click.option("--user", required=True, help="the name the audit log records for this token")
@click.option("--role", required=True, type=click.Choice(ROLES), help="planner < inspector < admin")
@click.option("--unit", default=None, metavar="CODE", help="行政区代码 the token is scoped to (e.g. 130599)")
@click.option("--expires", default=None, metavar="WHEN", help="expiry: a date or ISO 8601 time (UTC if no zone)")
@click.option("--days", type=click.IntRange(1, 3650), default=None, help="expiry in this many days")
def add(path, user, role, unit, expires, days):
    """Issue a token: printed once on standard output; the file keeps its hash."""
    value, entry = add_token(path, user, role, unit, _expiry(expires, days))
    click.echo(f"yzt token: issued {entry['id']} for {entry['user']} ({role}"
               f"{', unit ' + unit if unit else ''}{', expires ' + entry['expires'] if entry['expires'] else ''}); "
               "it is shown only now:", err=True)
    click.echo(value)


@token.command("revoke")
@file_opt
@click.argument("token_id", metavar="ID")
def revoke(path, token_id):
    """Revoke the token ID (see `yzt token list`); a running server refuses it from its next request."""
    entry = revoke_token(path, token_id)
    click.echo(f"yzt token: revoked {entry['id']} of {entry['user']} at {entry['revoked']}")


@token.command("list")
@file_opt
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def list_tokens(path, as_json):
    """List the tokens: id, user, role, unit, created, expires, status (never the tokens)."""
    rows = [{k: e.get(k) for k in ("id", "user", "role", "unit", "created", "expires", "revoked")}
            | {"status": status_of(e)} for e in read_entries(path)]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    click.echo(f"{'id':<9} {'user':<12} {'role':<9} {'unit':<12} {'expires':<21} status")
    for r in rows:
        click.echo(f"{r['id']:<9} {r['user']:<12} {r['role']:<9} {r['unit'] or '-':<12} {r['expires'] or '-':<21} "
                   f"{r['status']}")
