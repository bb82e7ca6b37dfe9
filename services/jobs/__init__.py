"""Use cases shared by the HTTP routes and the CLI: no HTTP, no click (reports, evidence checks, exports, glyphs)."""
