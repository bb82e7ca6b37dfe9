"""Test package (a regular package: pygeoapi installs a top-level `tests` package that would shadow a namespace one)."""
