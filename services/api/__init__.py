"""HTTP routes, one module per concern (tiles, rasters, reports, review uploads, exports, glyphs)."""
