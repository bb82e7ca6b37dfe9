"""What a load leaves behind: a LoadRecord per stored layer, and Findings (入库质检 results).

Both are plain data so the check report, the store and the indicators can carry them unchanged.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

# Finding severities: an "error" stops ingest of that layer; a "warning" is stored and reported.
ERROR, WARNING, INFO = "error", "warning", "info"


@dataclass
class Finding:
    """One 入库质检 finding: what, where, which records."""

    layer: str  # role, e.g. "dltb"
    check: str  # short machine code, e.g. "area_mismatch", "invalid_geometry", "unknown_code"
    severity: str  # error | warning | info
    message: str  # one readable sentence naming the values and the remedy
    ids: list = field(default_factory=list)  # record ids behind it (BSM / JCBH / row numbers)
    count: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LoadRecord:
    """Provenance of one stored layer: enough to trace any number back to its inputs."""

    layer: str  # stored layer name (= role)
    source_path: str  # one path, or several joined by ';' for multi-file roles
    source_layer: str | None
    sha256: str  # checksum of the source file(s) (all files of a shapefile / .gdb folder)
    source_crs: str  # as found / as declared (WKT name or EPSG)
    crs_resolution: str  # how the source CRS was known: prj / manifest / 8-digit easting zone / region
    transformation: str  # what was applied to reach the target CRS (PROJ description, parameters)
    target_crs: str  # e.g. EPSG:4547
    encoding: str | None
    field_mapping: dict  # standard code -> source field
    code_set: str | None  # sandiao / erdiao / ydyh for layers with DLBM
    rows_read: int
    rows_written: int
    repaired: int = 0  # invalid geometries repaired by make_valid
    dropped_empty: int = 0
    duplicates: int = 0  # exact duplicate geometries (reported, kept)
    area_mismatches: int = 0  # |TBMJ − area| above tolerance
    loaded_at: str = ""  # ISO-8601 UTC
    load_id: str = ""  # uuid of the ingest run
    version: str = ""  # yizhangtu version

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)
