"""One root exception; each subclass also inherits the builtin it resembles.

Messages name the bad value and the remedy, e.g.
``layer 'yjjbnt' has no CRS and a 6-digit easting; set crs: EPSG:45xx in the manifest``.
HTTP status mapping lives in services/; nothing here knows about HTTP.
"""


class YztError(Exception):
    """Root of every error yizhangtu raises on purpose."""


class ManifestError(YztError, ValueError):
    """The manifest is malformed or names something that does not exist."""


class SourceError(YztError, OSError):
    """A source file cannot be opened or read (missing, broken, unsupported format)."""


class EncodingError(YztError, UnicodeError):
    """Text in a source cannot be decoded without mojibake."""


class FieldError(YztError, ValueError):
    """A required field is missing or a field value is unusable."""


class CodeSetError(YztError, ValueError):
    """Land-use codes are unknown or mix code sets (二调 / 三调 / 用地用海)."""


class CRSError(YztError, ValueError):
    """A CRS is missing, unknown, inconsistent with the region, or needs a datum transformation."""


class GeometryError(YztError, ValueError):
    """Geometries are unusable (not polygons, not repairable, outside the region)."""


class StoreError(YztError, RuntimeError):
    """The store cannot be opened, read or written."""


class OutsideUnitError(YztError, PermissionError):
    """The data asked for lies outside the caller's unit (a county inspector and another county's patches)."""


class NotFoundError(YztError, LookupError):
    """A layer, record or resource does not exist."""


class ConflictError(YztError, RuntimeError):
    """A write lost a race (stale version) or an illegal state transition was requested."""


class RuleError(YztError, ValueError):
    """A rules / registry / targets file is malformed."""
