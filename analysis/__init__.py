"""analysis: pure functions over GeoDataFrames — overlay, judgement rules, conflicts, indicators, rasters.
No file or network I/O, no environment."""
