"""The province store: many counties in one PostGIS database.

    postgresql://user@host:5432/gis?schema=prov          the region schema (this module)
    postgresql://user@host:5432/gis?schema=prov_130571   county 130571: an ordinary PostGIS store (postgis.py)

One database, one schema per county and one region schema:

- **each county** is an ordinary single-county store in schema ``<region schema>_<county code>``: its layers in
  its own 3° GK zone, its load records, findings, analysis and indicator runs, its workflow tables. Every
  county write is the county store's own atomic transaction (postgis.py), so a county is never half written,
  and the single-county commands work on a county's URL unchanged;
- **the region schema** holds what spans counties:

  - ``yzt_region_meta``: key / value: region_code, region_name, level, manifest, created_at, updated_at;
  - ``yzt_region_units``: the 省, 市 and 县 units: code, name, level, parent_code, and for a county its
    schema, EPSG, zone and manifest;
  - ``yzt_region_state``: per county and stage (ingest / analyse / indicators): the input checksum the stage
    last completed with, status, output id (load id / analysis run / indicator run), attempts, error,
    seconds, worker, times;
  - ``yzt_region_runs``: one row per province run of a stage: counties done, skipped, failed, timings;
  - ``rollup_runs``, ``rollup_values``, ``rollup_warnings``: the 村 → 乡 → 县 → 市 → 省 indicator roll-ups
    (plain store tables, written atomically by postgis.py).

State rows are upserted one county at a time (``INSERT … ON CONFLICT``), so workers finishing counties in any
order never overwrite each other, and a county's state is written only after its own data committed: a state
row says "done with checksum K" only for data that is in the county's schema.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pandas as pd

from ..errors import NotFoundError, StoreError
from .base import quote_ident as _q
from .postgis import connect, first_line, parse_url

META, UNITS, STATE, RUNS = "yzt_region_meta", "yzt_region_units", "yzt_region_state", "yzt_region_runs"
STAGES = ("ingest", "analyse", "indicators")
STATE_COLUMNS = ["county", "stage", "input_key", "status", "output_id", "attempts", "error", "seconds", "worker",
                 "started_at", "finished_at"]
UNIT_COLUMNS = ["code", "name", "level", "parent_code", "schema_name", "epsg", "zone", "manifest"]
_MAX_SCHEMA = 63


def county_schema(region_schema: str, code: str) -> str:
    """The schema of county ``code`` in the province store whose region schema is ``region_schema``."""
    if not re.fullmatch(r"\d{6}", str(code)):
        raise StoreError(f"county code {code!r} is not a 6-digit 行政区代码")
    name = f"{region_schema}_{code}"
    if len(name) > _MAX_SCHEMA:
        raise StoreError(f"schema {region_schema!r} is too long to name its counties' schemas "
                         f"({name!r} > {_MAX_SCHEMA} characters); use a shorter ?schema=")
    return name


def with_schema(url: str, schema: str) -> str:
    """``url`` with its ``?schema=`` replaced (the password and other parameters kept)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "schema"]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode([*query, ("schema", schema)]), ""))


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class RegionStore:
    """The region schema of a province store (see the module docstring). One connection per object."""

    def __init__(self, url: str):
        if not str(url).lower().startswith(("postgresql://", "postgres://")):
            raise StoreError(f"a province store is PostGIS: give postgresql://user@host:port/db?schema=name, not "
                             f"{url!r} (a GeoPackage holds one county)")
        _, self.schema, self.url = parse_url(url)
        self._target = str(url)
        self._conn = None

    def __repr__(self) -> str:
        return f"RegionStore({self.url!r})"

    # --- connection ---------------------------------------------------------------------------------------
    def _connection(self):
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = connect(self._target, application_name="yizhangtu-region")
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _t(self, name: str) -> str:
        return f"{_q(self.schema)}.{_q(name)}"

    @contextlib.contextmanager
    def _transaction(self, what: str):
        import psycopg

        conn = self._connection()
        try:
            with conn.transaction():
                yield conn
        except psycopg.Error as exc:
            raise StoreError(f"{what} in province store {self.url} failed: {first_line(exc)}") from None

    def _query(self, sql: str, params=()) -> list[tuple]:
        import psycopg

        try:
            return self._connection().execute(sql, params).fetchall()
        except psycopg.Error as exc:
            raise StoreError(f"reading province store {self.url} failed: {first_line(exc)}") from None

    # --- what the URL holds -----------------------------------------------------------------------------------
    def exists(self) -> bool:
        """True when the schema holds a region (its units table)."""
        return bool(self._query("SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = %s",
                                (self.schema, UNITS)))

    def county_url(self, code: str) -> str:
        """The store URL of county ``code`` (its own schema; the password kept for this process's use)."""
        return with_schema(self._target, county_schema(self.schema, code))

    def county_display_url(self, code: str) -> str:
        return with_schema(self.url, county_schema(self.schema, code))

    # --- registry ---------------------------------------------------------------------------------------------
    def _create(self, conn) -> None:
        if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'postgis'").fetchone() is None:
            raise StoreError(f"database of {self.url} lacks PostGIS: run CREATE EXTENSION postgis; as its owner")
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_q(self.schema)}")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {self._t(META)} (key text PRIMARY KEY, value text)")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {self._t(UNITS)} (code text PRIMARY KEY, name text NOT NULL, "
                     "level text NOT NULL, parent_code text, schema_name text, epsg integer, zone integer, "
                     "manifest text)")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {self._t(STATE)} (county text NOT NULL, stage text NOT NULL, "
                     "input_key text, status text NOT NULL, output_id text, attempts integer NOT NULL DEFAULT 0, "
                     "error text, seconds double precision, worker text, started_at text, finished_at text, "
                     "PRIMARY KEY (county, stage))")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {self._t(RUNS)} (seq bigserial PRIMARY KEY, run_id text NOT NULL, "
                     "stage text NOT NULL, started_at text, finished_at text, summary jsonb)")

    def register(self, code: str, name: str, level: str, units: Iterable[Mapping], manifest: str) -> None:
        """Create the region schema (first time) and write its units; refuses a schema holding another region.

        ``units``: dicts with code, name, level, parent_code (and for counties: manifest). Units no longer
        listed are dropped from the registry (their county schemas stay until removed by hand)."""
        units = list(units)
        with self._transaction("registering the region") as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"yzt-region:{self.schema}",))
            self._create(conn)
            held = dict(conn.execute(f"SELECT key, value FROM {self._t(META)}").fetchall())
            if held.get("region_code") and held["region_code"] != code:
                raise StoreError(f"province store {self.url} holds region {held['region_code']} "
                                 f"({held.get('region_name', '?')}), not {code}; use another ?schema=")
            now = _now()
            for key, value in {"region_code": code, "region_name": name, "level": level, "manifest": manifest,
                               "created_at": held.get("created_at", now), "updated_at": now}.items():
                conn.execute(f"INSERT INTO {self._t(META)} (key, value) VALUES (%s, %s) ON CONFLICT (key) "
                             "DO UPDATE SET value = EXCLUDED.value", (key, value))
            keep = [u["code"] for u in units]
            conn.execute(f"DELETE FROM {self._t(UNITS)} WHERE NOT (code = ANY(%s))", (keep,))
            for u in units:
                schema = county_schema(self.schema, u["code"]) if u["level"] == "county" else None
                conn.execute(
                    f"INSERT INTO {self._t(UNITS)} (code, name, level, parent_code, schema_name, manifest) "
                    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, "
                    "level = EXCLUDED.level, parent_code = EXCLUDED.parent_code, "
                    "schema_name = EXCLUDED.schema_name, manifest = EXCLUDED.manifest",
                    (u["code"], u["name"], u["level"], u.get("parent_code"), schema, u.get("manifest")))

    def set_county_crs(self, code: str, epsg: int, zone: int | None) -> None:
        with self._transaction("recording a county's CRS") as conn:
            conn.execute(f"UPDATE {self._t(UNITS)} SET epsg = %s, zone = %s WHERE code = %s", (epsg, zone, code))

    def meta(self) -> dict[str, str]:
        if not self.exists():
            return {}
        return dict(self._query(f"SELECT key, value FROM {self._t(META)}"))

    def units(self) -> pd.DataFrame:
        """The registry: one row per 省 / 市 / 县 (UNIT_COLUMNS), ordered by level then code."""
        self.require()
        rows = self._query(f"SELECT {', '.join(UNIT_COLUMNS)} FROM {self._t(UNITS)} ORDER BY "
                           "CASE level WHEN 'province' THEN 0 WHEN 'city' THEN 1 ELSE 2 END, code")
        return pd.DataFrame(rows, columns=UNIT_COLUMNS)

    def counties(self) -> list[str]:
        units = self.units()
        return units.loc[units["level"] == "county", "code"].tolist()

    def require(self) -> None:
        if not self.exists():
            raise NotFoundError(f"{self.url} holds no province (region set) yet; ingest one first: "
                                "yzt ingest DIR/region.yaml --store …")

    # --- run state --------------------------------------------------------------------------------------------
    def state(self, stage: str | None = None) -> pd.DataFrame:
        """Per county and stage: the last completed input checksum, status, output id … (STATE_COLUMNS)."""
        self.require()
        sql = f"SELECT {', '.join(STATE_COLUMNS)} FROM {self._t(STATE)}"
        params: tuple = ()
        if stage is not None:
            sql += " WHERE stage = %s"
            params = (stage,)
        return pd.DataFrame(self._query(sql + " ORDER BY county, stage", params), columns=STATE_COLUMNS)

    def state_of(self, county: str, stage: str) -> dict | None:
        rows = self._query(f"SELECT {', '.join(STATE_COLUMNS)} FROM {self._t(STATE)} WHERE county = %s AND "
                           "stage = %s", (county, stage))
        return dict(zip(STATE_COLUMNS, rows[0])) if rows else None

    def record(self, county: str, stage: str, *, status: str, input_key: str | None = None,
               output_id: str | None = None, error: str | None = None, seconds: float | None = None,
               worker: str | None = None, started_at: str | None = None) -> None:
        """Upsert one county's state for ``stage``: status ``done`` (with the checksum it completed with and its
        output id), ``failed`` (the error; the last good checksum and output id are kept) or ``running``."""
        if stage not in STAGES:
            raise StoreError(f"stage {stage!r} is unknown; stages: {', '.join(STAGES)}")
        with self._transaction("recording a county's state") as conn:
            if status == "done":
                conn.execute(
                    f"INSERT INTO {self._t(STATE)} AS s (county, stage, input_key, status, output_id, attempts, "
                    "error, seconds, worker, started_at, finished_at) VALUES (%s, %s, %s, 'done', %s, 1, NULL, %s, "
                    "%s, %s, %s) ON CONFLICT (county, stage) DO UPDATE SET input_key = EXCLUDED.input_key, "
                    "status = 'done', output_id = EXCLUDED.output_id, attempts = s.attempts + 1, error = NULL, "
                    "seconds = EXCLUDED.seconds, worker = EXCLUDED.worker, started_at = EXCLUDED.started_at, "
                    "finished_at = EXCLUDED.finished_at",
                    (county, stage, input_key, output_id, seconds, worker, started_at, _now()))
            else:
                conn.execute(
                    f"INSERT INTO {self._t(STATE)} AS s (county, stage, status, attempts, error, seconds, worker, "
                    "started_at, finished_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (county, stage) DO UPDATE SET status = EXCLUDED.status, "
                    "attempts = s.attempts + EXCLUDED.attempts, error = EXCLUDED.error, "
                    "seconds = EXCLUDED.seconds, worker = EXCLUDED.worker, started_at = EXCLUDED.started_at, "
                    "finished_at = EXCLUDED.finished_at",
                    (county, stage, status, 1 if status == "failed" else 0, error, seconds, worker, started_at,
                     None if status == "running" else _now()))

    def add_run(self, run_id: str, stage: str, started_at: str, summary: Mapping) -> None:
        with self._transaction("recording a province run") as conn:
            conn.execute(f"INSERT INTO {self._t(RUNS)} (run_id, stage, started_at, finished_at, summary) "
                         "VALUES (%s, %s, %s, %s, %s::jsonb)",
                         (run_id, stage, started_at, _now(), json.dumps(summary, ensure_ascii=False, default=str)))

    def runs(self, stage: str | None = None) -> pd.DataFrame:
        self.require()
        sql = f"SELECT run_id, stage, started_at, finished_at, summary FROM {self._t(RUNS)}"
        params: tuple = ()
        if stage:
            sql += " WHERE stage = %s"
            params = (stage,)
        return pd.DataFrame(self._query(sql + " ORDER BY seq", params),
                            columns=["run_id", "stage", "started_at", "finished_at", "summary"])


def is_region_store(target) -> bool:
    """True when ``target`` is a PostGIS URL whose schema holds a province (region set)."""
    text = str(getattr(target, "url", target)).strip()
    if not text.lower().startswith(("postgresql://", "postgres://")):
        return False
    target_url = getattr(target, "_target", text)
    with contextlib.closing(RegionStore(target_url)) as region:
        return region.exists()
