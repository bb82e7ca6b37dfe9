"""The workflow tables (workflow.py) in a PostGIS schema: plain tables listed in the store's catalog, written
on a connection of their own under the schema's advisory writer lock; append-only by triggers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from ..errors import StoreError
from .base import quote_ident as _q
from .postgis import CATALOG, PostGISStore, SharedConnection, first_line
from .workflow import APPEND_ONLY, COLUMNS, TABLES, UNIQUE, MissingTable, WorkflowTables, WorkflowTx

_PG = {"str": "text", "int": "bigint", "float": "double precision"}


class PostGISWorkflowTables(WorkflowTables):
    dialect = "postgis"
    store: PostGISStore

    def __init__(self, store: PostGISStore):
        super().__init__(store)
        self.schema = store.schema_name
        # a connection of its own, not the store object's: a change waiting for the writer lock holds no lock
        # that the same process's store reads need
        self._shared = SharedConnection(store._target, "yizhangtu-workflow")

    def close(self) -> None:
        self._shared.close()

    def _t(self, name: str) -> str:
        return f"{_q(self.schema)}.{_q(name)}"

    @contextlib.contextmanager
    def _transaction(self, write: bool) -> Iterator[WorkflowTx]:
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

                    def execute(sql: str, params: Sequence[Any], fetch: bool) -> list[dict] | None:
                        with conn.cursor(row_factory=dict_row) as cur:
                            try:
                                with conn.transaction():  # a savepoint: a missing table leaves the tx usable
                                    cur.execute(sql, tuple(params) if params else None)
                            except psycopg.errors.UndefinedTable as exc:
                                raise MissingTable(str(exc)) from None
                            return cur.fetchall() if fetch else None

                    yield WorkflowTx(self, execute, self._t)
            except psycopg.Error as exc:
                raise StoreError(f"workflow tables of {self.store.url}: {first_line(exc)}") from None

    def _has_tables(self, tx: WorkflowTx) -> set[str]:
        rows = tx._rows("SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename = ANY(%s)",
                        (self.schema, list(TABLES)))
        return {r["tablename"] for r in rows}

    def _create_tables(self, tx: WorkflowTx) -> None:
        have = self._has_tables(tx)
        fn = self._t("yzt_append_only")
        tx._run(f"CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $body$ BEGIN "
                "RAISE EXCEPTION 'table %.% is append-only: % is not allowed', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP "
                "USING ERRCODE = 'insufficient_privilege'; END $body$")
        for table, cols in COLUMNS.items():
            if table in have:
                continue
            decl = "".join(f", {_q(c)} {_PG[k]}{' UNIQUE NOT NULL' if (table, c) in UNIQUE else ''}"
                           for c, k in cols.items())
            tx._run(f"CREATE TABLE {self._t(table)} (fid bigserial PRIMARY KEY{decl})")
            if table in APPEND_ONLY:
                tx._run(f"CREATE TRIGGER {_q(table + '_append_only')} BEFORE UPDATE OR DELETE ON {self._t(table)} "
                        f"FOR EACH ROW EXECUTE FUNCTION {fn}()")
                tx._run(f"CREATE TRIGGER {_q(table + '_no_truncate')} BEFORE TRUNCATE ON {self._t(table)} "
                        f"FOR EACH STATEMENT EXECUTE FUNCTION {fn}()")
                tx._run(f"CREATE INDEX {_q(table + '_case')} ON {self._t(table)} (case_id)")
            catalog = tx._rows("SELECT 1 AS x FROM pg_tables WHERE schemaname = %s AND tablename = %s",
                               (self.schema, CATALOG))
            if catalog:  # list the table in the store's catalog: store.table_names() / read_table see it
                tx._run(f"DELETE FROM {self._t(CATALOG)} WHERE name = %s", (table,))
                tx._run(f"INSERT INTO {self._t(CATALOG)} (name, kind, n_rows) VALUES (%s, 'table', 0)", (table,))

    def _appended(self, tx: WorkflowTx, table: str) -> None:
        tx._run(f"UPDATE {self._t(CATALOG)} SET n_rows = (SELECT count(*) FROM {self._t(table)}), "
                "written_at = now() WHERE name = %s", (table,))
