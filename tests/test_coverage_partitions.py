"""A survey layer's areas and coverage validation in spatial partitions (layers.topology.spatial_parts and
coverage_part, run by services.jobs.ingest.PartitionedCoverage) against the same computation over the whole
layer at once, on the sample county's DLTB with the defects of real deliveries planted across it.

Expected values: ``ellipsoidal_area`` and ``invalid_edges`` over the whole layer (what the one-process ingest
computes), and the envelope neighbours an STRtree finds, for the rows a partition must read."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely

from layers.area import ellipsoidal_area
from layers.topology import invalid_edges, spatial_parts
from services.jobs.ingest import PartitionedCoverage, survey_parts
from tests.conftest import SAMPLE_MANIFEST

DLTB = SAMPLE_MANIFEST.parent / "dltb_2024.parquet"


@pytest.fixture(scope="module")
def layer() -> tuple[np.ndarray, int]:
    """The sample county's DLTB with what breaks a coverage in real data, spread over the county so that
    some of it lies on every partition border:

    - 150 patches nudged by 0.3 m / −0.2 m (a digitising slip: an overlap on one side, a slit on the other);
    - 40 patches with one vertex moved 2 m out (a sliver over the neighbour);
    - a 20 m-wide road patch across the whole county, laid over the patches it crosses (a linear patch whose
      envelope meets every partition);
    - 30 patches delivered twice (an exact duplicate overlaps its twin entirely);
    - a patch with a hole (an island patch taken out and never delivered)."""
    frame = gpd.read_parquet(DLTB, columns=["geometry"])
    geoms = np.asarray(frame.geometry.values, dtype=object).copy()
    rng = np.random.default_rng(20261205)
    for k in rng.choice(len(geoms), 150, replace=False):
        geoms[k] = shapely.affinity.translate(geoms[k], 0.3, -0.2)
    for k in rng.choice(len(geoms), 40, replace=False):
        ring = np.asarray(geoms[k].exterior.coords)
        ring[1] += (2.0, 2.0)
        geoms[k] = shapely.Polygon(ring)
    minx, miny, maxx, maxy = shapely.total_bounds(geoms)
    mid = (miny + maxy) / 2
    road = shapely.box(minx, mid - 10, maxx, mid + 10)
    twins = geoms[rng.choice(len(geoms), 30, replace=False)]
    island = shapely.box(*shapely.centroid(geoms[7]).buffer(3).bounds)
    geoms[7] = geoms[7].difference(island)
    geoms = np.concatenate([geoms, [road], twins])
    return geoms, int(frame.crs.to_epsg())


@pytest.fixture(scope="module")
def whole(layer):
    geoms, epsg = layer
    return ellipsoidal_area(geoms, epsg), invalid_edges(geoms)


@pytest.mark.parametrize("parts", [2, 3, 5, 8])
def test_partitions_give_every_patch_the_answer_of_the_whole_layer(layer, whole, parts):
    geoms, epsg = layer
    area, invalid = whole
    assert invalid.sum() > 300  # the planted defects are there to be found
    got_area, got_invalid, used = PartitionedCoverage(parts)(geoms, epsg)
    assert used == parts
    np.testing.assert_array_equal(got_invalid, invalid)
    np.testing.assert_array_equal(got_area, area)  # to the bit: the area of a patch is its own


@pytest.mark.parametrize("parts", [2, 5, 8])
def test_each_partition_reads_every_neighbour_of_its_own_rows(layer, parts):
    geoms, _ = layer
    cut = spatial_parts(geoms, parts)
    owners = np.concatenate([p.core for p in cut])
    assert np.array_equal(np.sort(owners), np.arange(len(geoms)))  # every row is one partition's own, once
    sizes = [len(p.core) for p in cut]
    assert max(sizes) - min(sizes) <= 1
    tree = shapely.STRtree(shapely.envelope(geoms))
    for p in cut:
        own, near = tree.query(shapely.envelope(geoms[p.core]), predicate="intersects")
        assert set(near) <= set(p.rows)
        assert set(p.core) <= set(p.rows)
        # a compact cell: it reads far fewer rows than the layer (the road is everyone's neighbour)
        assert len(p.rows) < len(p.core) + 0.1 * len(geoms)


def test_a_layer_smaller_than_its_partitions_and_the_count_of_partitions():
    geoms = np.array([shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1)], dtype=object)
    cut = spatial_parts(geoms, 5)
    assert [list(p.core) for p in cut] == [[0], [1]]
    assert [list(p.rows) for p in cut] == [[0, 1], [0, 1]]
    assert (survey_parts(1_000_000, 500_000), survey_parts(1_000_001, 500_000), survey_parts(10, None),
            survey_parts(3, 1)) == (2, 3, 1, 3)


def test_a_long_patch_wrong_only_at_its_far_end():
    """A river merged from the patches along a line across the county, matching its neighbours everywhere but
    at its far end, where one neighbour is nudged 1 m over it. The river's partition's box lies around its
    own other rows; only the neighbours found for a patch that long bring the far end's patch in."""
    frame = gpd.read_parquet(DLTB, columns=["geometry"])
    geoms = np.asarray(frame.geometry.values, dtype=object)
    minx, miny, maxx, maxy = shapely.total_bounds(geoms)
    mid = (miny + maxy) / 2
    crossed = shapely.intersects(geoms, shapely.LineString([(minx, mid), (maxx, mid)]))
    river = shapely.coverage_union_all(geoms[crossed])
    rest = geoms[~crossed].copy()
    layer = np.concatenate([rest, [river]])
    assert not invalid_edges(layer)[-1]  # the river matches its neighbours
    epsg = int(frame.crs.to_epsg())
    for parts in (4, 8):
        (home,) = [p for p in spatial_parts(layer, parts) if len(layer) - 1 in p.core]
        x0, y0, x1, y1 = home.box
        touching = np.flatnonzero(shapely.intersects(rest, river))
        b = shapely.bounds(rest[touching])
        outside = touching[(b[:, 0] > x1 + 5) | (b[:, 2] < x0 - 5) | (b[:, 1] > y1 + 5) | (b[:, 3] < y0 - 5)]
        far = outside[np.argmax(np.abs(shapely.get_x(shapely.centroid(rest[outside])) - (x0 + x1) / 2))]
        above = shapely.centroid(rest[far]).y > mid
        nudged = layer.copy()
        nudged[far] = shapely.affinity.translate(rest[far], 0.0, -1.0 if above else 1.0)
        invalid = invalid_edges(nudged)
        assert invalid[-1] and invalid[far]
        (home,) = [p for p in spatial_parts(nudged, parts) if len(layer) - 1 in p.core]
        assert far not in set(np.flatnonzero(_meets(shapely.bounds(nudged), home.box)))  # not through the box
        _, got, _ = PartitionedCoverage(parts)(nudged, epsg)
        np.testing.assert_array_equal(got, invalid)


def _meets(bounds: np.ndarray, box) -> np.ndarray:
    return (bounds[:, 0] <= box[2]) & (bounds[:, 2] >= box[0]) & (bounds[:, 1] <= box[3]) & (bounds[:, 3] >= box[1])
