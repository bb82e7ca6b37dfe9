"""JSON-ready plain values from what pandas and numpy hand out: numpy scalars → Python, NaN / NA / NaT → None,
dates and timestamps → ISO 8601 text."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pandas as pd


def plain(value: Any) -> Any:
    """One value as JSON can carry it (lists and dicts are returned as they are)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, (pd.Timestamp, dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, np.generic):
        return plain(value.item())
    return value


def plain_record(record: dict, drop: tuple[str, ...] = ()) -> dict:
    """Every value of a record through :func:`plain` (keys in ``drop`` left out)."""
    return {k: plain(v) for k, v in record.items() if k not in drop}
