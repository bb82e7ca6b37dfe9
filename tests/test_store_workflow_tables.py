"""The workflow tables of a store (layers.store.workflow), the same tests on both backends: rows round-trip
with their seq, filters and order, a state row is updated in place, the mirror columns of flagged_patches are
written, a patch is found by its JCBH or a merged source id, a failed transaction leaves nothing behind, and the
audit / evidence tables refuse to be edited."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import shapely

from layers.errors import NotFoundError, StoreError
from layers.store import open_store, open_workflow_tables
from layers.store.query import Compare, In
from layers.store.workflow import AUDIT, EVIDENCE, LAYER, STATE, TABLES
from tests.store_fixtures import EPSG, META, X0, Y0


def _patches() -> gpd.GeoDataFrame:
    ids = ["WP000", "WP001", "WP002"]
    return gpd.GeoDataFrame({
        "JCBH": ids, "source_ids": [json.dumps([i]) for i in ids[:2]] + [json.dumps(["WP002", "OLD-9", "A_%"])],
        "status": ["待核查"] * 3, "judgement": [None] * 3, "version": np.ones(3, dtype=np.int64),
    }, geometry=[shapely.box(X0 + 100 * i, Y0, X0 + 100 * i + 50, Y0 + 50) for i in range(3)], crs=EPSG)


@pytest.fixture(params=["gpkg", "postgis"])
def target(request, tmp_path):
    url = str(tmp_path / "store.gpkg") if request.param == "gpkg" else request.getfixturevalue("pg_schema_url")
    with open_store(url) as store:
        store.write_layers({LAYER: _patches()}, records=[], meta=META)
    return url


def _audit_row(n: int, jcbh: str) -> dict:
    return {"at": f"2025-01-0{n}T00:00:00.000000Z", "user": "张三", "role": "inspector", "action": "judgement",
            "case_id": jcbh, "JCBH": jcbh, "version_before": n, "version_after": n + 1, "note": f"第{n}次",
            "before": "{}", "after": "{}", "prev_hash": "0" * 64, "hash": f"{n:064d}"}


def test_tables_are_created_by_the_first_write_and_listed_by_the_store(target):
    tables = open_workflow_tables(target)
    assert tables.has_tables() == set()
    assert tables.select(AUDIT) == [] and tables.count(AUDIT) == 0
    with tables.transaction(write=True) as tx:
        assert tx.append(AUDIT, _audit_row(1, "WP000")) == 1
    assert tables.has_tables() == set(TABLES)
    assert set(TABLES) <= set(open_store(target).table_names())
    assert open_store(target).read_table(AUDIT, columns=["note"])["note"].tolist() == ["第1次"]


def test_rows_round_trip_with_their_seq_filters_and_order(target):
    tables = open_workflow_tables(target)
    with tables.transaction(write=True) as tx:
        for n, jcbh in enumerate(["WP000", "WP001", "WP000"], start=1):
            assert tx.append(AUDIT, _audit_row(n, jcbh)) == n
    rows = tables.select(AUDIT)
    assert [r["seq"] for r in rows] == [1, 2, 3]
    assert rows[0] == {"seq": 1, **{k: None for k in ("from_status", "to_status", "from_judgement", "to_judgement",
                                                      "evidence_id")}, **_audit_row(1, "WP000")}
    newest = tables.select(AUDIT, Compare("JCBH", "=", "WP000"), newest_first=True, limit=1)
    assert [r["seq"] for r in newest] == [3]
    assert tables.count(AUDIT, In("case_id", ("WP000", "WP009"))) == 2
    page = tables.select(AUDIT, newest_first=True, limit=2, offset=1)
    assert [r["note"] for r in page] == ["第2次", "第1次"]


def test_state_upsert_mirror_and_lookup(target):
    tables = open_workflow_tables(target)
    state = {"case_id": "WP002", "JCBH": "WP002", "source_ids": json.dumps(["WP002", "OLD-9", "A_%"]),
             "status": "已核查", "judgement": "违法", "version": 2, "note": "现场", "status_since": None,
             "updated_at": "2025-01-01T00:00:00.000000Z", "updated_by": "张三"}
    with tables.transaction(write=True) as tx:
        assert tx.patch_row("WP002")["JCBH"] == "WP002"
        assert tx.patch_row("OLD-9")["JCBH"] == "WP002"  # a merged source id
        assert tx.patch_row("A_%")["JCBH"] == "WP002"  # LIKE wildcards in an id match only themselves
        assert tx.patch_row("A_") is None and tx.patch_row("OLD") is None
        tx.upsert_state(state)
        tx.upsert_state({**state, "version": 3, "note": "更正"})  # the same case: updated, not added
        tx.mirror("WP002", "已核查", "违法", 3)
        assert [r["note"] for r in tx.states_for("X", ["OLD-9"])] == ["更正"]
        assert tx.states_for("WP001", ["WP001"]) == []
    rows = tables.select(STATE)
    assert len(rows) == 1 and rows[0]["version"] == 3 and rows[0]["seq"] == 1
    layer = open_store(target).read_layer(LAYER, columns=["JCBH", "status", "judgement", "version"])
    assert layer[["status", "version"]].values.tolist() == [["待核查", 1], ["待核查", 1], ["已核查", 3]]
    assert layer["judgement"].iloc[2] == "违法"


def test_a_failed_transaction_leaves_nothing(target):
    tables = open_workflow_tables(target)
    with tables.transaction(write=True) as tx:
        tx.append(AUDIT, _audit_row(1, "WP000"))
    with pytest.raises(RuntimeError, match="boom"), tables.transaction(write=True) as tx:
        tx.append(AUDIT, _audit_row(2, "WP001"))
        tx.mirror("WP001", "已核查", "合法", 2)
        raise RuntimeError("boom")
    assert [r["seq"] for r in tables.select(AUDIT)] == [1]
    assert open_store(target).read_layer(LAYER, columns=["version"])["version"].tolist() == [1, 1, 1]


def test_audit_and_evidence_cannot_be_edited(target):
    tables = open_workflow_tables(target)
    with tables.transaction(write=True) as tx:
        tx.append(AUDIT, _audit_row(1, "WP000"))
        tx.append(EVIDENCE, {"evidence_id": "e" * 32, "case_id": "WP000", "JCBH": "WP000", "bytes": 3})
    for table in (AUDIT, EVIDENCE):
        with pytest.raises(StoreError, match="append-only"), tables.transaction(write=True) as tx:
            tx._run(f"DELETE FROM {tx.t(table)}")
    assert tables.count(AUDIT) == 1 and tables.count(EVIDENCE) == 1


def test_a_store_without_flagged_patches(tmp_path):
    target = str(tmp_path / "empty.gpkg")
    with pytest.raises(NotFoundError, match="does not exist yet"):
        open_workflow_tables(target).select(AUDIT)
    with open_store(target) as store:
        store.write_tables({"other": _patches().drop(columns="geometry").iloc[:0]})
    with pytest.raises(NotFoundError, match="has no flagged_patches layer"), \
            open_workflow_tables(target).transaction(write=True) as tx:
        tx.patch_row("WP000")
