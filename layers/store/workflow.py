"""The enforcement workflow's tables in a store: case state, the append-only audit log, evidence metadata —
and the mirror columns of the ``flagged_patches`` layer. One interface (:class:`WorkflowTables`), two backends
(gpkg_workflow.py, postgis_workflow.py), the same tables and the same rules.

Tables (next to the layers; listed by ``store.table_names()`` and readable with ``store.read_table``):

- ``workflow_state``: one row per case: case_id (unique), JCBH, source_ids (JSON list), status, judgement,
  version, note, status_since, updated_at, updated_by. The truth; the ``status`` / ``judgement`` / ``version``
  columns of ``flagged_patches`` are a mirror written in the same transaction.
- ``workflow_audit``: one row per change, never updated or deleted (triggers refuse UPDATE / DELETE, and
  TRUNCATE on PostGIS).
- ``workflow_evidence``: evidence files' metadata, append-only like the audit log.
- ``workflow_head``: the head of the audit chain (one row per chain: its last seq and hash, sealed by the
  caller's key), replaced with every audit row: deleting the log's last rows leaves a head that no longer
  matches, and a new head cannot be written without the key.

Every row read comes with ``seq``, its row id (1, 2, … in append order). What the rows mean — moves, hashes,
who may do what — is the business of the caller (services/jobs/workflow.py); this module only stores.

Concurrency: a write transaction first takes the store's writer lock (GeoPackage: the flock of
``GeoPackageStore.writer_lock()``; PostGIS: the schema's advisory lock, ``PostGISStore.lock_writers``), so a
change never interleaves with a layer replacement or another change.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..errors import NotFoundError
from .base import Store
from .base import quote_ident as _q
from .query import Expr
from .sql import PK, compile_filter

LAYER = "flagged_patches"  # the layer whose rows carry the mirror columns
STATE, AUDIT, EVIDENCE, HEAD = "workflow_state", "workflow_audit", "workflow_evidence", "workflow_head"
TABLES = (STATE, AUDIT, EVIDENCE, HEAD)
APPEND_ONLY = (AUDIT, EVIDENCE)
MIRROR_COLUMNS = ("status", "judgement", "version")

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
HEAD_COLUMNS = {"name": "str", "seq": "int", "hash": "str", "mac": "str", "at": "str"}
COLUMNS = {STATE: STATE_COLUMNS, AUDIT: AUDIT_COLUMNS, EVIDENCE: EVIDENCE_COLUMNS, HEAD: HEAD_COLUMNS}
TITLES = {STATE: "图斑核查状态", AUDIT: "操作留痕 (append-only)", EVIDENCE: "核查举证 (append-only)",
          HEAD: "留痕链头 (audit chain head)"}
UNIQUE = {(STATE, "case_id"), (HEAD, "name")}


def json_list_pattern(value: str) -> str:
    """A LIKE pattern matching the JSON string "value" inside a JSON list stored as text (wildcards escaped)."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f'%"{escaped}"%'


class MissingTable(Exception):
    """Internal: a statement named a table the store does not hold (yet)."""


class WorkflowTx:
    """One transaction on the workflow tables. ``execute(sql, params, fetch)`` runs SQL with ``ph``
    placeholders; ``t(name)`` is the quoted name of a table of the store."""

    def __init__(self, tables: WorkflowTables, execute: Callable, t: Callable[[str], str]):
        self._tables = tables
        self._execute = execute
        self.t = t
        self.dialect = tables.dialect
        self.ph = "?" if tables.dialect == "sqlite" else "%s"

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict]:
        return self._execute(sql, params, True)

    def _run(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._execute(sql, params, False)

    # --- generic reads ------------------------------------------------------------------------------
    def has_tables(self) -> set[str]:
        """Which of the workflow tables exist."""
        return self._tables._has_tables(self)

    def select(self, table: str, where: Expr | None = None, *, newest_first: bool = False,
               limit: int | None = None, offset: int = 0) -> list[dict]:
        """Rows of a workflow table (each with ``seq``), oldest first unless ``newest_first``; [] while the table
        does not exist."""
        if table not in self.has_tables():
            return []
        params: list = []
        cols = ", ".join([f"{PK} AS seq", *(_q(c) for c in COLUMNS[table])])
        sql = f"SELECT {cols} FROM {self.t(table)}{self._where(where, params)} " \
              f"ORDER BY {PK}{' DESC' if newest_first else ''}"
        if limit is not None:
            sql += f" LIMIT {int(limit)} OFFSET {int(offset)}"
        return self._rows(sql, params)

    def count(self, table: str, where: Expr | None = None) -> int:
        if table not in self.has_tables():
            return 0
        params: list = []
        rows = self._rows(f"SELECT count(*) AS n FROM {self.t(table)}{self._where(where, params)}", params)
        return int(rows[0]["n"])

    def _where(self, where: Expr | None, params: list) -> str:
        if where is None:
            return ""
        return " WHERE " + compile_filter(where, self.dialect, params=params)

    # --- the pieces of a change ---------------------------------------------------------------------
    def patch_row(self, jcbh: str) -> dict | None:
        """The flagged_patches row (JCBH, source_ids, status, judgement, version) whose JCBH is ``jcbh``, else the
        first whose source_ids list it (an id merged into another ground change by a later analysis); None if
        neither. NotFoundError if the store has no flagged_patches layer."""
        cols = ", ".join(_q(c) for c in ("JCBH", "source_ids", *MIRROR_COLUMNS))
        ph = self.ph
        try:
            rows = self._rows(f"SELECT {cols} FROM {self.t(LAYER)} WHERE {_q('JCBH')} = {ph}", (jcbh,))
            if not rows:
                rows = self._rows(f"SELECT {cols} FROM {self.t(LAYER)} WHERE source_ids LIKE {ph} ESCAPE '\\' "
                                  f"ORDER BY {PK}", (json_list_pattern(jcbh),))
        except MissingTable:
            raise NotFoundError(f"store {self._tables.store.url} has no {LAYER} layer; run `yzt analyse --store …` "
                                "first") from None
        return rows[0] if rows else None

    def states_for(self, jcbh: str, ids: list[str]) -> list[dict]:
        """State rows whose case_id or JCBH is ``jcbh``, or whose source_ids list one of ``ids``."""
        ph = self.ph
        conds = [f"case_id = {ph}", f"{_q('JCBH')} = {ph}"] + [f"source_ids LIKE {ph} ESCAPE '\\'"] * len(ids)
        return self._rows(f"SELECT * FROM {self.t(STATE)} WHERE {' OR '.join(conds)}",
                          (jcbh, jcbh, *(json_list_pattern(i) for i in ids)))

    def upsert_state(self, row: dict) -> None:
        """Insert or update the state row of ``row["case_id"]``."""
        ph = self.ph
        exists = self._rows(f"SELECT {PK} FROM {self.t(STATE)} WHERE case_id = {ph}", (row["case_id"],))
        if exists:
            cols = [c for c in STATE_COLUMNS if c != "case_id"]
            sets = ", ".join(f"{_q(c)} = {ph}" for c in cols)
            self._run(f"UPDATE {self.t(STATE)} SET {sets} WHERE case_id = {ph}",
                      (*(row.get(c) for c in cols), row["case_id"]))
        else:
            self.append(STATE, row)

    def mirror(self, jcbh: str, status: str, judgement: str | None, version: int) -> None:
        """Write the mirror columns of the flagged_patches row ``jcbh``."""
        ph = self.ph
        self._run(f"UPDATE {self.t(LAYER)} SET status = {ph}, judgement = {ph}, version = {ph} "
                  f"WHERE {_q('JCBH')} = {ph}", (status, judgement, int(version), jcbh))

    def put_head(self, row: dict) -> None:
        """Replace the head row named ``row["name"]``."""
        self._run(f"DELETE FROM {self.t(HEAD)} WHERE name = {self.ph}", (row["name"],))
        self.append(HEAD, row)

    def append(self, table: str, row: dict) -> int:
        """Append a row (missing columns are NULL); its seq."""
        cols = list(COLUMNS[table])
        marks = ", ".join([self.ph] * len(cols))
        self._run(f"INSERT INTO {self.t(table)} ({', '.join(_q(c) for c in cols)}) VALUES ({marks})",
                  tuple(row.get(c) for c in cols))
        self._tables._appended(self, table)
        return int(self._rows(f"SELECT max({PK}) AS seq FROM {self.t(table)}")[0]["seq"])


class WorkflowTables(ABC):
    """The workflow tables of one store. Use :func:`layers.store.open_workflow_tables`."""

    dialect = ""

    def __init__(self, store: Store):
        self.store = store

    @abstractmethod
    def _transaction(self, write: bool) -> contextlib.AbstractContextManager[WorkflowTx]:
        """A transaction; a write one holds the store's writer lock."""

    @abstractmethod
    def _has_tables(self, tx: WorkflowTx) -> set[str]: ...

    @abstractmethod
    def _create_tables(self, tx: WorkflowTx) -> None: ...

    def _appended(self, tx: WorkflowTx, table: str) -> None:
        """Bookkeeping after appending a row (catalog row counts, last_change)."""

    @contextlib.contextmanager
    def transaction(self, write: bool = False) -> Iterator[WorkflowTx]:
        """One transaction: everything in it is written together or not at all. ``write``: hold the store's
        writer lock and create the workflow tables if they are missing."""
        with self._transaction(write) as tx:
            if write and not set(TABLES) <= self._has_tables(tx):
                self._create_tables(tx)
            yield tx

    def select(self, table: str, where: Expr | None = None, *, newest_first: bool = False,
               limit: int | None = None, offset: int = 0) -> list[dict]:
        with self.transaction() as tx:
            return tx.select(table, where, newest_first=newest_first, limit=limit, offset=offset)

    def count(self, table: str, where: Expr | None = None) -> int:
        with self.transaction() as tx:
            return tx.count(table, where)

    def has_tables(self) -> set[str]:
        with self.transaction() as tx:
            return tx.has_tables()

    def close(self) -> None:
        pass
