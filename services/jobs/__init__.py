"""Use cases: what a command or a route asks the system to do, as plain functions and classes — no HTTP, no
click, no environment. The CLI (services/cli) and the HTTP API (services/api) are thin doors onto these.

- ingest.py     check a manifest (入库质检), load its layers into a store
- analyse.py    pre-judge monitoring patches, dedupe, planning conflicts → flagged_patches, planning_conflicts
- indicators.py indicator runs (compute, store, load), drill-down, the 绩效自评表 scores
- rasters.py    slope grades, change candidates, zonal statistics, camera coverage
- patches.py    the flagged patches as the workbench lists and shows them (filters, detail)
- review.py     合规性审查 of a GeoJSON site
- workflow.py   the enforcement workflow applied to flagged patches: changes, history, evidence, audit
- reports.py    核查表 PDFs (one patch, a round); evidence.py the EXIF / distance / period checks of photos
- sites.py      合规性审查 sites from 界址点 coordinate files and zipped shapefiles
- exchange.py   exports through a field-mapping template; colors.py the 三调 colour table; glyphs.py glyph PBFs
"""
