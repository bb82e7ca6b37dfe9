"""tests.pgcluster: the throw-away PostGIS cluster used by the tests and benchmarks."""

from __future__ import annotations

import psycopg
import pytest

import tests.pgcluster as pgc
from layers.errors import StoreError


def test_cluster_serves_postgis_on_localhost(pg_cluster):
    assert pg_cluster.url == f"postgresql://postgres@127.0.0.1:{pg_cluster.port}/yzt"
    with psycopg.connect(pg_cluster.url) as conn:
        version = conn.execute("SELECT postgis_lib_version()").fetchone()[0]
        area = conn.execute("SELECT ST_Area(ST_MakeEnvelope(0, 0, 10, 20, 4547))").fetchone()[0]
    assert version.split(".")[0] >= "3" and area == 200.0
    other = pg_cluster.create_database("yzt_other")
    with psycopg.connect(other) as conn:
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'postgis'").fetchone()[0] == 1


def test_missing_binaries_fail_with_the_install_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("YZT_PG_BIN", str(tmp_path))
    monkeypatch.setattr(pgc, "PG_ROOT", tmp_path / "nowhere")
    monkeypatch.setattr(pgc.shutil, "which", lambda name: None)
    with pytest.raises(StoreError, match="apt-get install postgresql-15-postgis-3"):
        pgc.start_cluster(tmp_path / "cluster")


def test_missing_postgis_fails_with_the_install_hint(tmp_path):
    fake = tmp_path / "99" / "bin"  # no /usr/share/postgresql/99
    fake.mkdir(parents=True)
    with pytest.raises(StoreError, match="PostGIS extension is not installed.*apt-get install"):
        pgc.check_postgis(fake)
