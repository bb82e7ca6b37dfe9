"""Change candidates on the sample images against the planted truth; filters; blocks; morphology; Otsu."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shapely
import yaml

from analysis.raster import morphology
from analysis.raster.change import RASTER_SOURCE, detect_changes, evaluate, otsu_threshold
from analysis.raster.rules import ChangeRules, default_rules
from layers.raster import RasterSource

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"
TRUTH = SAMPLE / "raster_truth.yaml"


@pytest.fixture(scope="module")
def truth():
    if not TRUTH.is_file():
        pytest.fail(f"{TRUTH} is missing: run `python -m data.generate_rasters` after `python -m data.generate`",
                    pytrace=False)
    return yaml.safe_load(TRUTH.read_text(encoding="utf-8"))


def _detect(block=None, rules=None):
    with RasterSource(SAMPLE / "image_before.tif", "EPSG:4547", role="image_before") as b, \
            RasterSource(SAMPLE / "image_after.tif", "EPSG:4547", role="image_after") as a:
        return detect_changes(b, a, rules or default_rules().change, qsx="2024-04-12", hsx="2024-10-18",
                              round_="2024-H2", block=block)


@pytest.fixture(scope="module")
def result(truth):
    return _detect()


def _frames(truth, crs):
    import geopandas as gpd

    def frame(items):
        return gpd.GeoDataFrame({"id": [i["id"] for i in items], "kind": [i["kind"] for i in items]},
                                geometry=shapely.from_wkt([i["wkt"] for i in items]), crs=crs)

    return frame(truth["planted_changes"]), frame(truth["false_alarms"])


def test_precision_and_recall_against_the_planted_changes(result, truth):
    planted, false_alarms = _frames(truth, result.candidates.crs)
    ev = evaluate(result.candidates, planted, false_alarms)
    # Every planted change is a block of new ground cover ≥ 1 900 m² (≥ 118 cells) with a contrast of at least
    # ~5 noise σ against what was there; only changes between two similar grey surfaces can fall below the
    # automatic threshold. Precision must be ≥ 0.9: all false-alarm kinds are filtered, so a candidate off
    # the planted changes would be a defect of the pipeline, not of the data.
    assert ev["recall"] >= 0.85, ev
    assert ev["precision"] >= 0.9, ev
    assert ev["false_alarms_reported"] == [], ev  # no planted false alarm survives the filters


def test_each_filter_removes_exactly_the_planted_false_alarms(result, truth):
    kinds = [f["kind"] for f in truth["false_alarms"]]
    c = result.counts
    assert c["speckle"] == sum(truth["sensor_artefacts"].values())  # hot pixels, 2×2 clusters, strands
    assert c["min_area"] == kinds.count("small")
    assert c["illumination"] == kinds.count("illumination")
    assert c["seasonal"] == kinds.count("seasonal")
    assert c["raw_regions"] == c["speckle"] + c["after_cleanup"]
    assert c["kept"] == c["after_cleanup"] - c["min_area"] - c["illumination"] - c["seasonal"]
    removed = result.removed
    _, false_alarms = _frames(truth, removed.crs)
    # each removed candidate lies on the planted false alarm of its own kind
    kind_of = {"min_area": "small", "illumination": "illumination", "seasonal": "seasonal"}
    for _, row in removed.iterrows():
        fa = false_alarms[false_alarms["kind"] == kind_of[row["filter"]]]
        assert shapely.intersection(row.geometry, shapely.union_all(fa.geometry.values)).area \
            >= 0.5 * row.geometry.area


def test_candidates_carry_the_monitoring_schema(result):
    cand = result.candidates
    assert len(cand) == result.counts["kept"] > 0
    assert cand["JCBH"].tolist() == [f"RS-2024-H2-{i:04d}" for i in range(1, len(cand) + 1)]
    assert set(cand["SOURCE"]) == {RASTER_SOURCE} and set(cand["ROUND"]) == {"2024-H2"}
    assert set(cand["QSX"]) == {"2024-04-12"} and set(cand["HSX"]) == {"2024-10-18"}
    assert (cand["MJ"] >= 200).all() and (cand["MJ"] == cand["area_m2"]).all()
    assert cand["yzt_fid"].tolist() == list(range(1, len(cand) + 1))
    assert cand.crs.to_epsg() == 4547 and cand.geometry.is_valid.all()
    # numbered north → south
    ys = cand.geometry.representative_point().y.to_numpy()
    assert (np.diff(ys) <= 1e-6).all() or len(ys) < 2


@pytest.mark.slow
def test_blocks_give_the_same_candidates(result):
    small = _detect(block=256)
    assert small.counts == result.counts
    assert small.threshold == pytest.approx(result.threshold, abs=1e-12)
    a = result.candidates.geometry.to_numpy()
    b = small.candidates.geometry.to_numpy()
    assert len(a) == len(b) and shapely.equals(a, b).all()  # same cells (seam vertices may remain in b)
    assert result.candidates["MJ"].tolist() == small.candidates["MJ"].tolist()


def test_fixed_threshold_from_the_rules(truth):
    rules = ChangeRules(threshold=1e6)
    res = _detect(rules=rules)
    assert res.threshold == 1e6 and res.otsu_threshold is None and res.counts["raw_regions"] == 0
    assert len(res.candidates) == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("r_open,r_close", [(1, 1), (2, 1), (0, 2)])
def test_numpy_morphology_equals_scipy(seed, r_open, r_close):
    if not morphology.HAVE_SCIPY:
        pytest.fail("scipy is not installed; the comparison needs it (pip install scipy)")
    mask = np.random.default_rng(seed).random((61, 77)) > 0.6
    mask[10:30, 10:40] = True
    a = morphology.clean(mask, r_open, r_close, use_scipy=True)
    b = morphology.clean(mask, r_open, r_close, use_scipy=False)
    assert np.array_equal(a, b)
    assert not morphology.opening(np.eye(20, dtype=bool), 1, use_scipy=False).any()  # a 1-cell strand goes
    blob = np.zeros((9, 9), bool)
    blob[2:7, 2:7] = True
    blob[4, 4] = False
    assert np.array_equal(morphology.closing(blob, 1, use_scipy=False)[2:7, 2:7], np.ones((5, 5), bool))


def test_otsu_splits_a_bimodal_histogram():
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.normal(2.0, 0.3, 9000), rng.normal(6.0, 0.5, 1000)])
    counts, edges = np.histogram(values, bins=400, range=(0, 10))
    t = otsu_threshold(counts, edges)
    assert 3.0 < t < 5.0
    # no sample in the gap is misclassified
    assert ((values > t) == (values > 4.0)).mean() > 0.999
