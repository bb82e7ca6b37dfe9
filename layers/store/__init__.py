"""Stores: the embedded GeoPackage (default) and PostGIS, behind one interface (see base.Store)."""
