"""Shared fixtures: a throw-away PostGIS cluster, fresh schemas, and the sample county ingested once.

- ``pg_cluster`` / ``pg_url`` (session): a PostgreSQL + PostGIS cluster started with tests.pgcluster in a
  temporary directory and stopped at the end. When PostgreSQL or PostGIS is not installed the tests that use
  it FAIL with the install hint (a missing backend is a broken environment, not a reason to skip).
- ``pg_schema_url`` (function): a store URL on a schema of its own, dropped after the test.
- ``sample_manifest`` (session): path of data/sample/manifest.yaml.
- ``sample_store`` (session): path of a GeoPackage with the whole sample ingested once. Read-only: tests that
  write use ``sample_store_copy`` (function), a private copy of that file.
- ``sample_pg_store`` (session): PostGIS store URL (schema ``sample``) with the whole sample ingested once.
  Read-only too.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_MANIFEST = ROOT / "data" / "sample" / "manifest.yaml"


@pytest.fixture(scope="session")
def pg_cluster():
    from layers.errors import StoreError
    from tests.pgcluster import start_cluster

    # /tmp is world-traversable: the cluster runs as the postgres OS user when we are root.
    base = Path(tempfile.mkdtemp(prefix="yzt-pg-"))
    try:
        cluster = start_cluster(base)
    except StoreError as exc:
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"cannot start the PostGIS test cluster: {exc}", pytrace=False)
    yield cluster
    try:
        cluster.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_url(pg_cluster) -> str:
    """URL of the test database (PostGIS enabled), without a schema."""
    return pg_cluster.url


@pytest.fixture
def pg_schema_url(pg_url):
    """A PostGIS store URL on a fresh schema, dropped after the test."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield f"{pg_url}?schema={schema}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(scope="session")
def sample_manifest() -> Path:
    if not SAMPLE_MANIFEST.is_file():
        pytest.fail(f"{SAMPLE_MANIFEST} is missing: generate the sample county with `python -m data.generate`",
                    pytrace=False)
    return SAMPLE_MANIFEST


def _ingest_sample(manifest_path: Path, target: str):
    from layers.ingest import ingest
    from layers.manifest import load_manifest
    from layers.store import open_store

    with open_store(target) as store:
        return ingest(load_manifest(manifest_path), store, progress=False)


@pytest.fixture(scope="session")
def sample_store(sample_manifest, tmp_path_factory) -> Path:
    """Path of a GeoPackage holding the whole sample county (ingested once per session). Do not write to it."""
    path = tmp_path_factory.mktemp("sample_store") / "store.gpkg"
    _ingest_sample(sample_manifest, str(path))
    return path


@pytest.fixture
def sample_store_copy(sample_store, tmp_path) -> Path:
    """A private, writable copy of ``sample_store``."""
    path = tmp_path / "store.gpkg"
    shutil.copyfile(sample_store, path)
    return path


@pytest.fixture(scope="session")
def sample_pg_store(sample_manifest, pg_url) -> str:
    """PostGIS store URL (schema ``sample``) holding the whole sample county. Do not write to it."""
    url = f"{pg_url}?schema=sample"
    _ingest_sample(sample_manifest, url)
    return url
