"""Settings: the only place that reads the environment (prefix YZT_). Tests build Settings explicitly."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

ROLES = ("planner", "inspector", "admin")  # read; judge patches; ingest and configuration
RANK = {role: i + 1 for i, role in enumerate(ROLES)}  # planner 1 < inspector 2 < admin 3


class Principal(BaseModel):
    user: str
    role: str  # one of ROLES
    unit: str | None = None  # 行政区代码 the caller works for (县 / 市 / 省); None: every unit the store holds


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="YZT_", env_nested_delimiter="__")

    store: str = "out/sample/store.gpkg"  # a .gpkg path or postgresql://…?schema=…
    base_url: str = "http://localhost:8000"  # public URL of the app root (OGC links are built from it)
    ogc_prefix: str = "/ogc"  # where the OGC API (pygeoapi) is mounted
    anonymous_read: bool = True  # open the read-only OGC endpoints and pages to anonymous users
    # bearer token / API key (or "sha256:<hex>" of one) -> user, role, optional unit and expires
    tokens: dict[str, Principal] = {}
    tokens_file: Path | None = None  # written by `yzt token add` (hashes only); re-read when it changes
    auth_max_failures: int = 10  # unknown tokens per client address within auth_failure_window_s, then 429
    auth_failure_window_s: float = 60.0
    # the audit chain's HMAC key (keep it outside the store); or a file holding it; None = a key file
    # created beside the store (.<store>.audit-key) — see docs/security.md
    audit_key: SecretStr | None = None
    audit_key_file: Path | None = None
    evidence_dir: Path = Path("out/evidence")  # uploaded evidence files (photos)
    max_upload_bytes: int = 20 * 1024 * 1024  # per uploaded file (evidence, 合规性审查 shapefile zips)
    max_body_bytes: int = 2 * 1024 * 1024  # any other request body (JSON / YAML documents)
    page_limit_max: int = 10_000
    workdir: Path = Path("out/serve")  # generated pygeoapi config / OpenAPI document
    # Rule files a bureau may replace; None = the packaged defaults (see the README).
    workflow_file: Path | None = None  # statuses and moves (analysis/workflow.yaml)
    review_rules_file: Path | None = None  # 合规性审查 rules (analysis/review.yaml)
    rules_file: Path | None = None  # analysis rules (analysis/rules.yaml)
    registry_file: Path | None = None  # indicator registry (analysis/indicators.yaml)
    targets_dir: Path | None = None  # 绩效自评表 target files offered by the API (default: data/)
    # Imagery served as raster tiles (services/api/rasters.py): a manifest's rasters: section and/or role → path
    manifest: Path | None = None
    rasters: dict[str, Path] = {}  # image_before, image_after, basemap (offline orthophoto mosaic), dem
    # Evidence photos (services/jobs/evidence.py): flagged, not refused, when taken farther than this from the
    # patch or outside the allowed period (not before the patch's later image date, not older than max_age)
    evidence_max_distance_m: float = 200.0
    evidence_max_age_days: int = 365
