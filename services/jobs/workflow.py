"""Persistence of the enforcement workflow: statuses, versions, judgements, evidence metadata, and the
append-only audit log — on both stores (GeoPackage and PostGIS), with the same tables and the same rules.

Tables (in the store, next to the layers; listed by ``store.table_names()`` and readable with
``store.read_table``):

- ``workflow_state``: one row per case (the patch as staff know it): case_id (the JCBH of the patch when it
  was first touched), JCBH (its current representative id), source_ids (JSON), status, judgement, version,
  note, status_since, updated_at, updated_by. This table is the truth; the ``status`` / ``judgement`` /
  ``version`` columns of the ``flagged_patches`` layer are a mirror written in the same transaction (so the
  OGC API and the indicators see them) and re-synchronised by :meth:`WorkflowStore.sync_layer`.
- ``workflow_audit``: one row per change, never updated or deleted: who (user, role), when (UTC), what
  (action, from/to status and judgement, versions, note, evidence id) and the state before and after as JSON.
  Rows are chained by SHA-256 (``prev_hash`` → ``hash``) so an edit made behind the service's back (a trigger
  dropped by hand) is detected by :meth:`WorkflowStore.verify_audit`. UPDATE / DELETE (and TRUNCATE on
  PostGIS) are refused by triggers.
- ``workflow_evidence``: evidence files (photos with time, position, azimuth) — metadata only, the file lives
  under ``settings.evidence_dir``; append-only like the audit log.

Re-running ``yzt analyse`` replaces ``flagged_patches`` but not these tables: a state row belongs to the patch
whose JCBH equals its case_id / JCBH or that shares a source id with it (analysis.workflow.match_states), so
statuses survive re-runs, re-issued rounds and different dedupe merges. ``yzt analyse`` also carries the
mirror columns over itself (analysis.judge.carry_over_status).

Concurrency: every change runs in ONE transaction that first takes the store's writer lock, through the
store's own public API so the two can never drift apart — GeoPackage: ``GeoPackageStore.writer_lock()``, the
flock ``write_layers`` / ``write_tables`` hold, so a copy-on-write layer replacement can never drop a change;
PostGIS: ``PostGISStore.lock_writers(conn)``, the per-schema advisory lock (``advisory_lock_key``) the store's
writers hold, so a table swap never races a change. It then reads the current version, refuses a stale
If-Match (StaleVersionError → 412), validates the move (analysis.workflow) and writes state, mirror, evidence
and audit row together. PostGIS connections come from ``layers.store.postgis.connect`` (the store's session
settings and error message).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import sqlite3
import struct
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import shapely

from analysis.workflow import Workflow, match_states
from layers.errors import NotFoundError, StoreError
from layers.store import open_store
from layers.store.base import Store
from layers.store.base import quote_ident as _q

from .errors import StaleVersionError
from .settings import Principal

LAYER = "flagged_patches"
STATE, AUDIT, EVIDENCE = "workflow_state", "workflow_audit", "workflow_evidence"
TABLES = (STATE, AUDIT, EVIDENCE)
APPEND_ONLY = (AUDIT, EVIDENCE)

STATE_COLUMNS = {"case_id": "str", "JCBH": "str", "source_ids": "str", "status": "str", "judgement": "str",
                 "version": "int", "note": "str", "status_since": "str", "updated_at": "str", "updated_by": "str"}
AUDIT_COLUMNS = {"at": "str", "user": "str", "role": "str", "action": "str", "case_id": "str", "JCBH": "str",
                 "from_status": "str", "to_status": "str", "from_judgement": "str", "to_judgement": "str",
                 "version_before": "int", "version_after": "int", "note": "str", "evidence_id": "str",
                 "before": "str", "after": "str", "prev_hash": "str", "hash": "str"}
EVIDENCE_COLUMNS = {"evidence_id": "str", "case_id": "str", "JCBH": "str", "kind": "str", "filename": "str",
                    "path": "str", "content_type": "str", "bytes": "int", "sha256": "str", "taken_at": "str",
                    "lon": "float", "lat": "float", "azimuth": "float", "note": "str", "uploaded_at": "str",
                    "uploaded_by": "str"}
COLUMNS = {STATE: STATE_COLUMNS, AUDIT: AUDIT_COLUMNS, EVIDENCE: EVIDENCE_COLUMNS}
_SQLITE = {"str": "TEXT", "int": "INTEGER", "float": "REAL"}
_PG = {"str": "text", "int": "bigint", "float": "double precision"}
ACTIONS = ("judgement", "transition", "evidence")
GENESIS = "0" * 64


def now_utc() -> str:
    """UTC timestamps as fixed-width text: they sort as they compare."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json(value) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _ids(text) -> list[str]:
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return []
    try:
        value = json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return [str(text)]
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _like(value: str) -> str:
    """A LIKE pattern matching the JSON string "value" inside a JSON list (wildcards escaped)."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f'%"{escaped}"%'


def audit_hash(prev_hash: str, row: dict) -> str:
    body = {k: row.get(k) for k in AUDIT_COLUMNS if k not in ("prev_hash", "hash")}
    return hashlib.sha256((prev_hash + "\n" + _json(body)).encode("utf-8")).hexdigest()


@dataclass
class PatchState:
    case_id: str
    JCBH: str
    source_ids: list[str]
    status: str
    judgement: str | None
    version: int
    note: str | None = None
    status_since: str | None = None
    updated_at: str | None = None
    updated_by: str | None = None

    def brief(self) -> dict:
        return {"status": self.status, "judgement": self.judgement, "version": self.version}

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Outcome:
    state: PatchState
    audit: dict
    move: str | None  # the transition's name, None for evidence


# --- the backend-neutral part --------------------------------------------------------------------------------

class _Tx:
    """A transaction: ``?`` placeholders, ``{T}`` = the quoted name of a table of this store."""

    def __init__(self, execute, table, dialect: str):
        self._execute = execute
        self.t = table
        self.dialect = dialect

    def rows(self, sql: str, params=()) -> list[dict]:
        return self._execute(sql, params, True)

    def run(self, sql: str, params=()) -> None:
        self._execute(sql, params, False)


class WorkflowStore:
    """Workflow persistence on one store. Use :func:`open_workflow_store`."""

    dialect = ""

    def __init__(self, store: Store, workflow: Workflow):
        self.store = store
        self.workflow = workflow

    # --- to implement per backend ---------------------------------------------------------------------
    def _transaction(self, write: bool) -> contextlib.AbstractContextManager[_Tx]:  # pragma: no cover
        raise NotImplementedError

    def _has_tables(self, tx: _Tx) -> set[str]:  # pragma: no cover
        raise NotImplementedError

    def _create_tables(self, tx: _Tx) -> None:  # pragma: no cover
        raise NotImplementedError

    def _appended(self, tx: _Tx, table: str) -> None:
        """Bookkeeping after appending a row (catalog row counts, last_change)."""

    def close(self) -> None:
        pass

    # --- reading -------------------------------------------------------------------------------------
    def _select(self, table: str, where: str = "", params=(), order: str = "fid", limit: int | None = None,
                offset: int = 0) -> list[dict]:
        with self._transaction(write=False) as tx:
            if table not in self._has_tables(tx):
                return []
            cols = ", ".join(["fid", *(_q(c) for c in COLUMNS[table])])
            sql = f"SELECT {cols} FROM {tx.t(table)}{(' WHERE ' + where) if where else ''} ORDER BY {order}"
            if limit is not None:
                sql += f" LIMIT {int(limit)} OFFSET {int(offset)}"
            return tx.rows(sql, params)

    def _count(self, table: str, where: str = "", params=()) -> int:
        with self._transaction(write=False) as tx:
            if table not in self._has_tables(tx):
                return 0
            rows = tx.rows(f"SELECT count(*) AS n FROM {tx.t(table)}{(' WHERE ' + where) if where else ''}", params)
            return int(rows[0]["n"])

    def states(self) -> pd.DataFrame:
        """Every workflow state row (one per case), oldest first."""
        rows = self._select(STATE)
        return pd.DataFrame(rows, columns=["fid", *STATE_COLUMNS]).drop(columns="fid")

    def effective(self, patches: pd.DataFrame) -> pd.DataFrame:
        """``patches`` (JCBH, source_ids, status, judgement, version …) with the workflow columns taken from the
        state table where a case matches, plus case_id, note, updated_at, updated_by, status_since."""
        states = self.states()
        out = patches.copy()
        n = len(out)
        for col in ("case_id", "note", "updated_at", "updated_by", "status_since"):
            out[col] = np.array([None] * n, dtype=object)
        out["case_id"] = out["JCBH"].astype(object).to_numpy()  # a case untouched so far: its own JCBH
        if len(states) == 0 or n == 0:
            return out
        match = match_states(out["JCBH"].astype(str).tolist(), out["source_ids"].tolist(),
                             states["case_id"].tolist(), states["JCBH"].tolist(), states["source_ids"].tolist(),
                             states["updated_at"].fillna("").tolist())
        hit = match >= 0
        if hit.any():
            src = states.iloc[match[hit]]
            for col in ("status", "judgement", "version", "case_id", "note", "updated_at", "updated_by",
                        "status_since"):
                values = out[col].to_numpy(dtype=object).copy() if col in out.columns else \
                    np.array([None] * n, dtype=object)
                values[hit] = src[col].to_numpy(dtype=object)
                out[col] = values
        out["version"] = pd.to_numeric(out["version"], errors="coerce").fillna(1).astype(int)
        return out

    def history(self, case_ids: list[str], jcbh: list[str] | None = None) -> list[dict]:
        """Audit rows of a case (all its case ids and JCBHs), oldest first."""
        keys = [k for k in dict.fromkeys([*case_ids, *(jcbh or [])]) if k]
        if not keys:
            return []
        marks = ", ".join("?" * len(keys))
        rows = self._select(AUDIT, f"case_id IN ({marks}) OR {_q('JCBH')} IN ({marks})", (*keys, *keys))
        return [_audit_out(r) for r in rows]

    def audit(self, *, user: str | None = None, jcbh: str | None = None, action: str | None = None,
              since: str | None = None, limit: int = 100, offset: int = 0) -> tuple[list[dict], int]:
        """Audit rows (newest first) with optional filters, and how many match."""
        conds, params = [], []
        if user:
            conds.append(f"{_q('user')} = ?")
            params.append(user)
        if jcbh:
            conds.append(f"({_q('JCBH')} = ? OR case_id = ?)")
            params += [jcbh, jcbh]
        if action:
            conds.append("action = ?")
            params.append(action)
        if since:
            conds.append("at >= ?")
            params.append(since)
        where = " AND ".join(conds)
        total = self._count(AUDIT, where, tuple(params))
        rows = self._select(AUDIT, where, tuple(params), order="fid DESC", limit=limit, offset=offset)
        return [_audit_out(r) for r in rows], total

    def evidence(self, case_ids: list[str]) -> list[dict]:
        keys = [k for k in dict.fromkeys(case_ids) if k]
        if not keys:
            return []
        rows = self._select(EVIDENCE, f"case_id IN ({', '.join('?' * len(keys))})", tuple(keys))
        return [{k: v for k, v in r.items() if k != "fid"} for r in rows]

    def evidence_item(self, evidence_id: str) -> dict:
        rows = self._select(EVIDENCE, "evidence_id = ?", (evidence_id,))
        if not rows:
            raise NotFoundError(f"evidence {evidence_id!r} does not exist")
        return {k: v for k, v in rows[0].items() if k != "fid"}

    def verify_audit(self) -> dict:
        """Recompute the hash chain: {rows, ok, first_bad_seq, reason}."""
        rows = self._select(AUDIT)
        prev = GENESIS
        for r in rows:
            if r["prev_hash"] != prev:
                return {"rows": len(rows), "ok": False, "first_bad_seq": r["fid"],
                        "reason": f"row {r['fid']} does not follow row before it (a row was removed or reordered)"}
            if audit_hash(prev, r) != r["hash"]:
                return {"rows": len(rows), "ok": False, "first_bad_seq": r["fid"],
                        "reason": f"row {r['fid']} was altered after it was written"}
            prev = r["hash"]
        return {"rows": len(rows), "ok": True, "first_bad_seq": None, "reason": None}

    # --- writing -------------------------------------------------------------------------------------
    def apply(self, jcbh: str, expected_version: int, who: Principal, action: str, *, to: str | None = None,
              judgement: str | None = None, note: str | None = None, evidence: dict | None = None) -> Outcome:
        """Record one change on patch ``jcbh`` atomically; StaleVersionError if ``expected_version`` is not
        current, TransitionError / RoleError / FieldError if the workflow refuses the move."""
        if action not in ACTIONS:
            raise ValueError(f"action {action!r}")
        note = (note or "").strip() or None
        with self._transaction(write=True) as tx:
            if not {STATE, AUDIT, EVIDENCE} <= self._has_tables(tx):
                self._create_tables(tx)
            layer_row = self._patch_row(tx, jcbh)
            current = self._current_state(tx, layer_row)
            if int(expected_version) != current.version:
                raise StaleVersionError(
                    f"patch {current.JCBH} is at version {current.version}, not {expected_version}: "
                    f"{current.updated_by or 'someone'} changed it at {current.updated_at or 'an earlier time'}; "
                    "reload it (GET /api/patches/…), check the change, and retry with its ETag",
                    current_version=current.version)
            stamp = now_utc()
            before = current.brief()
            move_name = None
            new = PatchState(**{**current.as_dict(), "JCBH": layer_row["JCBH"],
                                "source_ids": _ids(layer_row["source_ids"])})
            if action == "evidence":
                if not evidence:
                    raise ValueError("evidence metadata missing")
            else:
                target = to
                if action == "judgement":
                    move = self.workflow.judgement_move(current.status)
                    target = move.target if move is not None else self.workflow.initial
                    if move is None:
                        from analysis.workflow import TransitionError

                        judging = "; ".join(f"{t.source} → {t.target}" for t in self.workflow.transitions
                                            if t.judgement == "required")
                        raise TransitionError(f"patch {current.JCBH} is {current.status}: a judgement cannot be "
                                              f"recorded in this status (judgements are recorded by: {judging})")
                n_evidence = self._evidence_since(tx, current)
                move = self.workflow.check(status=current.status, judgement=current.judgement, to=target,
                                           new_judgement=judgement, role=who.role, note=note,
                                           evidence_count=n_evidence, patch=f"patch {current.JCBH}")
                move_name = move.name
                new.judgement = self.workflow.next_judgement(move, current.judgement, judgement)
                if move.target != current.status:
                    new.status_since = stamp
                new.status = move.target
            new.version = current.version + 1
            new.note = note if action != "evidence" else current.note
            new.updated_at, new.updated_by = stamp, who.user
            self._write_state(tx, new)
            self._mirror(tx, new)
            if evidence:
                row = {**{k: None for k in EVIDENCE_COLUMNS}, **evidence, "case_id": new.case_id, "JCBH": new.JCBH,
                       "uploaded_at": stamp, "uploaded_by": who.user}
                self._insert(tx, EVIDENCE, row)
            audit_row = {
                "at": stamp, "user": who.user, "role": who.role, "action": action, "case_id": new.case_id,
                "JCBH": new.JCBH, "from_status": current.status, "to_status": new.status,
                "from_judgement": current.judgement, "to_judgement": new.judgement,
                "version_before": current.version, "version_after": new.version, "note": note,
                "evidence_id": evidence["evidence_id"] if evidence else None,
                "before": _json(before), "after": _json({**new.brief(), **({"move": move_name} if move_name else {}),
                                                         **({"evidence": evidence} if evidence else {})}),
            }
            last = tx.rows(f"SELECT hash FROM {tx.t(AUDIT)} ORDER BY fid DESC LIMIT 1")
            audit_row["prev_hash"] = last[0]["hash"] if last else GENESIS
            audit_row["hash"] = audit_hash(audit_row["prev_hash"], audit_row)
            self._insert(tx, AUDIT, audit_row)
            seq = tx.rows(f"SELECT max(fid) AS seq FROM {tx.t(AUDIT)}")[0]["seq"]
        return Outcome(new, {"seq": int(seq), **_audit_out(audit_row)}, move_name)

    def sync_layer(self) -> int:
        """Write the state table's status / judgement / version onto the flagged_patches rows that disagree
        (after a re-analysis raced with a change). Returns the number of rows corrected."""
        with self._transaction(write=False) as tx:
            if STATE not in self._has_tables(tx) or LAYER not in self.store.layer_names():
                return 0
        layer = pd.DataFrame(self.store.read_layer(LAYER, columns=["JCBH", "source_ids", "status", "judgement",
                                                                   "version"]).drop(columns="geometry"))
        eff = self.effective(layer)
        diff = (eff["status"].astype(str).to_numpy() != layer["status"].astype(str).to_numpy()) | \
               (eff["judgement"].fillna("").astype(str).to_numpy() != layer["judgement"].fillna("").astype(str)
                .to_numpy()) | (eff["version"].astype(int).to_numpy() !=
                                pd.to_numeric(layer["version"], errors="coerce").fillna(0).astype(int).to_numpy())
        if not diff.any():
            return 0
        with self._transaction(write=True) as tx:
            for _, r in eff[diff].iterrows():
                tx.run(f"UPDATE {tx.t(LAYER)} SET status = ?, judgement = ?, version = ? WHERE {_q('JCBH')} = ?",
                       (r["status"], r["judgement"], int(r["version"]), r["JCBH"]))
        return int(diff.sum())

    # --- pieces of a change ----------------------------------------------------------------------------
    def _patch_row(self, tx: _Tx, jcbh: str) -> dict:
        cols = ", ".join(_q(c) for c in ("JCBH", "source_ids", "status", "judgement", "version"))
        try:
            rows = tx.rows(f"SELECT {cols} FROM {tx.t(LAYER)} WHERE {_q('JCBH')} = ?", (jcbh,))
            if not rows:  # an id merged into another ground change by a later analysis
                rows = tx.rows(f"SELECT {cols} FROM {tx.t(LAYER)} WHERE source_ids LIKE ? ESCAPE '\\' ORDER BY fid",
                               (_like(jcbh),))
        except _MissingTable:
            raise NotFoundError(f"store {self.store.url} has no {LAYER} layer; run `yzt analyse --store …` first") \
                from None
        if not rows:
            raise NotFoundError(f"patch {jcbh!r} is not in {LAYER} (neither as JCBH nor as a merged source id)")
        return rows[0]

    def _current_state(self, tx: _Tx, layer_row: dict) -> PatchState:
        ids = [layer_row["JCBH"], *_ids(layer_row["source_ids"])]
        conds = ["case_id = ?", f"{_q('JCBH')} = ?"] + ["source_ids LIKE ? ESCAPE '\\'"] * len(ids)
        rows = tx.rows(f"SELECT * FROM {tx.t(STATE)} WHERE {' OR '.join(conds)}",
                       (layer_row["JCBH"], layer_row["JCBH"], *(_like(i) for i in ids)))
        if rows:
            order = [r.get("updated_at") or "" for r in rows]
            i = match_states([layer_row["JCBH"]], [ids], [r["case_id"] for r in rows], [r["JCBH"] for r in rows],
                             [r["source_ids"] for r in rows], order)[0]
            if i >= 0:
                r = rows[i]
                return PatchState(case_id=r["case_id"], JCBH=r["JCBH"], source_ids=_ids(r["source_ids"]),
                                  status=r["status"], judgement=r["judgement"], version=int(r["version"]),
                                  note=r["note"], status_since=r["status_since"], updated_at=r["updated_at"],
                                  updated_by=r["updated_by"])
        version = layer_row.get("version")
        status = layer_row.get("status") or self.workflow.initial
        return PatchState(case_id=layer_row["JCBH"], JCBH=layer_row["JCBH"], source_ids=_ids(layer_row["source_ids"]),
                          status=status, judgement=layer_row.get("judgement") or None,
                          version=int(version) if version is not None else 1)

    def _evidence_since(self, tx: _Tx, state: PatchState) -> int:
        if state.status_since:
            rows = tx.rows(f"SELECT count(*) AS n FROM {tx.t(EVIDENCE)} WHERE case_id = ? AND uploaded_at >= ?",
                           (state.case_id, state.status_since))
        else:
            rows = tx.rows(f"SELECT count(*) AS n FROM {tx.t(EVIDENCE)} WHERE case_id = ?", (state.case_id,))
        return int(rows[0]["n"])

    def _write_state(self, tx: _Tx, s: PatchState) -> None:
        row = {**s.as_dict(), "source_ids": _json(s.source_ids)}
        exists = tx.rows(f"SELECT fid FROM {tx.t(STATE)} WHERE case_id = ?", (s.case_id,))
        if exists:
            sets = ", ".join(f"{_q(c)} = ?" for c in STATE_COLUMNS if c != "case_id")
            tx.run(f"UPDATE {tx.t(STATE)} SET {sets} WHERE case_id = ?",
                   (*(row[c] for c in STATE_COLUMNS if c != "case_id"), s.case_id))
        else:
            self._insert(tx, STATE, row)

    def _mirror(self, tx: _Tx, s: PatchState) -> None:
        tx.run(f"UPDATE {tx.t(LAYER)} SET status = ?, judgement = ?, version = ? WHERE {_q('JCBH')} = ?",
               (s.status, s.judgement, s.version, s.JCBH))

    def _insert(self, tx: _Tx, table: str, row: dict) -> None:
        cols = list(COLUMNS[table])
        tx.run(f"INSERT INTO {tx.t(table)} ({', '.join(_q(c) for c in cols)}) VALUES ({', '.join('?' * len(cols))})",
               tuple(row.get(c) for c in cols))
        self._appended(tx, table)


def _audit_out(row: dict) -> dict:
    out = {k: v for k, v in row.items() if k != "fid"}
    if "fid" in row:
        out = {"seq": int(row["fid"]), **out}
    for key in ("before", "after"):
        if isinstance(out.get(key), str):
            out[key] = json.loads(out[key])
    return out


class _MissingTable(Exception):
    pass


# --- GeoPackage ------------------------------------------------------------------------------------------------

def _gpkg_header(blob: bytes) -> tuple[bool, tuple | None, int]:
    """(empty flag, envelope (minx, maxx, miny, maxy) or None, offset of the WKB) of a GeoPackage geometry."""
    flags = blob[3]
    order = "<" if flags & 1 else ">"
    env_kind = (flags >> 1) & 7
    size = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}.get(env_kind, 0)
    envelope = struct.unpack(order + "4d", blob[8:40]) if size else None
    return bool(flags & 0x10), envelope, 8 + size


def _st_function(which: str):
    index = {"ST_MinX": 0, "ST_MaxX": 1, "ST_MinY": 2, "ST_MaxY": 3}.get(which)

    def fn(blob):
        if blob is None or len(blob) < 8 or blob[:2] != b"GP":
            return None if index is not None else 1
        empty, envelope, offset = _gpkg_header(blob)
        if which == "ST_IsEmpty":
            return int(empty or shapely.is_empty(shapely.from_wkb(bytes(blob[offset:]))))
        if empty:
            return None
        if envelope is None:
            b = shapely.bounds(shapely.from_wkb(bytes(blob[offset:])))
            envelope = (b[0], b[2], b[1], b[3])
        return float(envelope[index])

    return fn


def _connect_sqlite(path, readonly: bool) -> sqlite3.Connection:
    uri = f"{path.as_uri()}?mode=ro" if readonly else path.as_uri()
    con = sqlite3.connect(uri, uri=True, timeout=60, isolation_level=None, check_same_thread=False)
    # the GeoPackage's R*Tree triggers name these SpatiaLite-style functions; GDAL provides them, plain SQLite
    # does not. Attribute-only updates never call them, but SQLite resolves them when it compiles the UPDATE.
    for name in ("ST_IsEmpty", "ST_MinX", "ST_MaxX", "ST_MinY", "ST_MaxY"):
        con.create_function(name, 1, _st_function(name), deterministic=True)
    return con


class GeoPackageWorkflowStore(WorkflowStore):
    dialect = "sqlite"

    @contextlib.contextmanager
    def _transaction(self, write: bool) -> Iterator[_Tx]:
        path = self.store.path
        if not path.is_file():
            raise NotFoundError(f"store {self.store.url} does not exist yet; ingest and analyse a region first")
        lock = self.store.writer_lock() if write else contextlib.nullcontext()  # see module docstring
        with lock:
            con = _connect_sqlite(path, readonly=not write)
            try:
                con.execute("BEGIN IMMEDIATE" if write else "BEGIN")

                def execute(sql, params, fetch):
                    try:
                        cur = con.execute(sql, tuple(params))
                    except sqlite3.OperationalError as exc:
                        if "no such table" in str(exc):
                            raise _MissingTable(str(exc)) from None
                        raise
                    if not fetch:
                        return None
                    names = [d[0] for d in cur.description]
                    return [dict(zip(names, r)) for r in cur.fetchall()]

                yield _Tx(execute, _q, self.dialect)
                con.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    con.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"workflow tables of {self.store.url}: {exc}") from None
                raise
            finally:
                con.close()

    def _has_tables(self, tx: _Tx) -> set[str]:
        marks = ", ".join("?" * len(TABLES))
        return {r["name"] for r in tx.rows(f"SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ({marks})",
                                           TABLES)}

    def _create_tables(self, tx: _Tx) -> None:
        have = self._has_tables(tx)
        for table, cols in COLUMNS.items():
            if table in have:
                continue
            decl = "".join(f", {_q(c)} {_SQLITE[k]}" for c, k in cols.items())
            unique = ' UNIQUE' if table == STATE else ''
            decl = decl.replace(f'{_q("case_id")} TEXT', f'{_q("case_id")} TEXT{unique}', 1) if table == STATE else decl
            tx.run(f'CREATE TABLE {_q(table)} ("fid" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL{decl})')
            tx.run("DELETE FROM gpkg_contents WHERE table_name = ?", (table,))
            tx.run("INSERT INTO gpkg_contents (table_name, data_type, identifier, description, last_change) "
                   "VALUES (?, 'attributes', ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                   (table, table, {STATE: "图斑核查状态", AUDIT: "操作留痕 (append-only)",
                                   EVIDENCE: "核查举证 (append-only)"}[table]))
            if table in APPEND_ONLY:
                for op in ("UPDATE", "DELETE"):
                    tx.run(f"CREATE TRIGGER {_q(f'{table}_no_{op.lower()}')} BEFORE {op} ON {_q(table)} "
                           f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {op} is not allowed'); END")
        tx.run(f"CREATE INDEX IF NOT EXISTS {_q(AUDIT + '_case')} ON {_q(AUDIT)} (case_id)")
        tx.run(f"CREATE INDEX IF NOT EXISTS {_q(EVIDENCE + '_case')} ON {_q(EVIDENCE)} (case_id)")

    def _appended(self, tx: _Tx, table: str) -> None:
        tx.run("UPDATE gpkg_contents SET last_change = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE table_name = ?",
               (table,))


# --- PostGIS ----------------------------------------------------------------------------------------------------

class PostGISWorkflowStore(WorkflowStore):
    dialect = "postgresql"

    def __init__(self, store: Store, workflow: Workflow, target: str):
        super().__init__(store, workflow)
        from layers.store.postgis import SharedConnection

        self.schema = store.schema_name
        # a connection of its own, not the store object's: a change waiting for the writer lock holds no lock
        # that the same process's store reads need
        self._shared = SharedConnection(target, "yizhangtu-workflow")

    def close(self) -> None:
        self._shared.close()

    def _t(self, name: str) -> str:
        return f"{_q(self.schema)}.{_q(name)}"

    @contextlib.contextmanager
    def _transaction(self, write: bool) -> Iterator[_Tx]:
        import psycopg
        from psycopg.rows import dict_row

        with self._shared.lock:
            conn = self._shared.get()
            try:
                with conn.transaction():
                    if write:  # the store's per-schema writer lock: serialises with write_layers / write_tables
                        self.store.lock_writers(conn)
                    else:
                        conn.execute("SET TRANSACTION READ ONLY")

                    def execute(sql, params, fetch):
                        with conn.cursor(row_factory=dict_row) as cur:
                            try:
                                with conn.transaction():  # a savepoint: a missing table leaves the tx usable
                                    cur.execute(sql.replace("?", "%s"), tuple(params) if params else None)
                            except psycopg.errors.UndefinedTable as exc:
                                raise _MissingTable(str(exc)) from None
                            return cur.fetchall() if fetch else None

                    yield _Tx(execute, self._t, self.dialect)
            except psycopg.Error as exc:
                raise StoreError(f"workflow tables of {self.store.url}: {str(exc).strip().splitlines()[0]}") from None

    def _has_tables(self, tx: _Tx) -> set[str]:
        rows = tx.rows("SELECT tablename FROM pg_tables WHERE schemaname = ? AND tablename = ANY(?)",
                       (self.schema, list(TABLES)))
        return {r["tablename"] for r in rows}

    def _create_tables(self, tx: _Tx) -> None:
        have = self._has_tables(tx)
        fn = self._t("yzt_append_only")
        tx.run(f"CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $body$ BEGIN "
               "RAISE EXCEPTION 'table %.% is append-only: % is not allowed', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP "
               "USING ERRCODE = 'insufficient_privilege'; END $body$")
        for table, cols in COLUMNS.items():
            if table in have:
                continue
            decl = "".join(f", {_q(c)} {_PG[k]}{' UNIQUE NOT NULL' if (table, c) == (STATE, 'case_id') else ''}"
                           for c, k in cols.items())
            tx.run(f"CREATE TABLE {self._t(table)} (fid bigserial PRIMARY KEY{decl})")
            if table in APPEND_ONLY:
                tx.run(f"CREATE TRIGGER {_q(table + '_append_only')} BEFORE UPDATE OR DELETE ON {self._t(table)} "
                       f"FOR EACH ROW EXECUTE FUNCTION {fn}()")
                tx.run(f"CREATE TRIGGER {_q(table + '_no_truncate')} BEFORE TRUNCATE ON {self._t(table)} "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION {fn}()")
                tx.run(f"CREATE INDEX {_q(table + '_case')} ON {self._t(table)} (case_id)")
            catalog = tx.rows("SELECT 1 AS x FROM pg_tables WHERE schemaname = ? AND tablename = 'yzt_layers'",
                              (self.schema,))
            if catalog:  # list the table in the store's catalog: store.table_names() / read_table see it
                tx.run(f"DELETE FROM {self._t('yzt_layers')} WHERE name = ?", (table,))
                tx.run(f"INSERT INTO {self._t('yzt_layers')} (name, kind, n_rows) VALUES (?, 'table', 0)", (table,))

    def _appended(self, tx: _Tx, table: str) -> None:
        tx.run(f"UPDATE {self._t('yzt_layers')} SET n_rows = (SELECT count(*) FROM {self._t(table)}), "
               "written_at = now() WHERE name = ?", (table,))


def open_workflow_store(target: str, workflow: Workflow) -> WorkflowStore:
    """The workflow persistence for the store at ``target`` (a .gpkg path or a postgresql:// URL)."""
    store = open_store(target)
    if str(target).strip().lower().startswith(("postgresql://", "postgres://")):
        return PostGISWorkflowStore(store, workflow, str(target).strip())
    return GeoPackageWorkflowStore(store, workflow)
