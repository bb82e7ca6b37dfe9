"""layers: read a bureau's source files, fix encodings and field names, bring everything into one
CGCS2000 CRS, validate, and store. Knows nothing of rules, HTTP or environment variables."""
