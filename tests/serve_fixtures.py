"""Fixtures of the served app's tests (workbench, auth, review, indicators API, web page).

- ``analysed_gpkg`` (session): the sample county ingested (conftest ``sample_store``) and analysed once
  (``yzt analyse``), in a private copy. Read-only: tests that write use ``bench_gpkg``.
- ``bench_gpkg`` (function): a writable copy of ``analysed_gpkg``.
- ``analysed_pg`` (session): the same analysed store on PostGIS (layers copied from ``analysed_gpkg`` through
  the store API into a schema of its own), for the tests that run on both backends. Tests that write on it use
  patches of their own so that they do not depend on each other.
- ``client_for(store, tmp_path, **settings)``: a TestClient of create_app with the TOKENS below.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

INSPECTOR, PLANNER, ADMIN, INSPECTOR2 = "insp-0123456789", "plan-0123456789", "admin-0123456789", "insp2-0123456789"
TOKENS = {
    INSPECTOR: {"user": "张三", "role": "inspector"},
    INSPECTOR2: {"user": "赵六", "role": "inspector"},
    PLANNER: {"user": "李四", "role": "planner"},
    ADMIN: {"user": "王五", "role": "admin"},
}


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def settings_for(store, tmp_path: Path, **overrides):
    from services.settings import Settings

    values = {"store": str(store), "workdir": tmp_path / "work", "evidence_dir": tmp_path / "evidence",
              "tokens": TOKENS, "base_url": "http://testserver"}
    values.update(overrides)
    return Settings(**values)


def client_for(store, tmp_path: Path, **overrides):
    from fastapi.testclient import TestClient

    from services.app import create_app

    raise_errors = overrides.pop("raise_server_exceptions", True)
    return TestClient(create_app(settings_for(store, tmp_path, **overrides)), raise_server_exceptions=raise_errors)


@pytest.fixture(scope="session")
def analysed_gpkg(sample_store, tmp_path_factory) -> Path:
    from services.jobs.analyse import run_analysis

    path = tmp_path_factory.mktemp("analysed") / "store.gpkg"
    shutil.copyfile(sample_store, path)
    run_analysis(str(path))
    return path


@pytest.fixture
def bench_gpkg(analysed_gpkg, tmp_path) -> Path:
    path = tmp_path / "store.gpkg"
    shutil.copyfile(analysed_gpkg, path)
    return path


@pytest.fixture(scope="session")
def analysed_pg(analysed_gpkg, pg_url) -> str:
    import psycopg

    from layers.store import open_store

    schema = f"wb_{uuid.uuid4().hex[:10]}"
    url = f"{pg_url}?schema={schema}"
    src = open_store(analysed_gpkg)
    layers = {name: src.read_layer(name) for name in src.layer_names()}
    with open_store(url) as dst:
        dst.write_layers(layers, records=[], meta=src.meta())
        dst.write_tables({name: src.read_table(name) for name in src.table_names()})
    yield url
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def patch_ids(store) -> list[str]:
    from layers.store import open_store

    return [str(v) for v in open_store(store).read_layer("flagged_patches", columns=["JCBH"])["JCBH"]]
