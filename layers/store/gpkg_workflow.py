"""The workflow tables (workflow.py) in a GeoPackage: plain attribute tables registered in ``gpkg_contents``,
written in place with Python's sqlite3 under the store's writer lock; append-only by triggers."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from ..errors import NotFoundError, StoreError
from .base import quote_ident as _q
from .gpkg import GeoPackageStore
from .gpkg_sqlite import connect
from .workflow import (
    APPEND_ONLY,
    AUDIT,
    COLUMNS,
    EVIDENCE,
    TABLES,
    TITLES,
    UNIQUE,
    MissingTable,
    WorkflowTables,
    WorkflowTx,
)

_SQLITE = {"str": "TEXT", "int": "INTEGER", "float": "REAL"}


class GeoPackageWorkflowTables(WorkflowTables):
    dialect = "sqlite"
    store: GeoPackageStore

    @contextlib.contextmanager
    def _transaction(self, write: bool) -> Iterator[WorkflowTx]:
        path = self.store.path
        if not path.is_file():
            raise NotFoundError(f"store {self.store.url} does not exist yet; ingest and analyse a region first")
        # a write holds the store's writer lock: a copy-on-write write_layers must not copy the file before
        # this transaction commits (it would then replace the file with its copy and drop the change)
        lock = self.store.writer_lock() if write else contextlib.nullcontext()
        with lock:
            con = connect(path, readonly=not write)
            try:
                con.execute("BEGIN IMMEDIATE" if write else "BEGIN")

                def execute(sql: str, params: Sequence[Any], fetch: bool) -> list[dict] | None:
                    try:
                        cur = con.execute(sql, tuple(params))
                    except sqlite3.OperationalError as exc:
                        if "no such table" in str(exc):
                            raise MissingTable(str(exc)) from None
                        raise
                    if not fetch:
                        return None
                    names = [d[0] for d in cur.description]
                    return [dict(zip(names, r)) for r in cur.fetchall()]

                yield WorkflowTx(self, execute, _q)
                con.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    con.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"workflow tables of {self.store.url}: {exc}") from None
                raise
            finally:
                con.close()

    def _has_tables(self, tx: WorkflowTx) -> set[str]:
        marks = ", ".join("?" * len(TABLES))
        rows = tx._rows(f"SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ({marks})", TABLES)
        return {r["name"] for r in rows}

    def _create_tables(self, tx: WorkflowTx) -> None:
        have = self._has_tables(tx)
        for table, cols in COLUMNS.items():
            if table in have:
                continue
            decl = "".join(f", {_q(c)} {_SQLITE[k]}{' UNIQUE' if (table, c) in UNIQUE else ''}"
                           for c, k in cols.items())
            tx._run(f'CREATE TABLE {_q(table)} ("fid" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL{decl})')
            tx._run("DELETE FROM gpkg_contents WHERE table_name = ?", (table,))
            tx._run("INSERT INTO gpkg_contents (table_name, data_type, identifier, description, last_change) "
                    "VALUES (?, 'attributes', ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                    (table, table, TITLES[table]))
            if table in APPEND_ONLY:
                for op in ("UPDATE", "DELETE"):
                    tx._run(f"CREATE TRIGGER {_q(f'{table}_no_{op.lower()}')} BEFORE {op} ON {_q(table)} "
                            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {op} is not allowed'); END")
        tx._run(f"CREATE INDEX IF NOT EXISTS {_q(AUDIT + '_case')} ON {_q(AUDIT)} (case_id)")
        tx._run(f"CREATE INDEX IF NOT EXISTS {_q(EVIDENCE + '_case')} ON {_q(EVIDENCE)} (case_id)")

    def _appended(self, tx: WorkflowTx, table: str) -> None:
        tx._run("UPDATE gpkg_contents SET last_change = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE table_name = ?",
                (table,))
