"""OGC API Features over the store: pygeoapi's API with our provider plugin, mounted in the app.

- app.py       the Starlette app: pygeoapi's handlers, our conformance and queryables, errors from the one table
- params.py    items / item request checks (400 naming the bad value)
- provider.py  the pygeoapi provider plugin (registered by dotted path) over the store's paged reader
- features.py  a page of rows as GeoJSON features
- cql.py       CQL2 text → store filters
- crs.py       the CRSs served, axis order, cached transformations, bbox → spatial selection
- config.py    the pygeoapi configuration and OpenAPI document generated from the store
- upstream.py  the pygeoapi / pygeofilter helpers we replace, each with its upstream patch in docs/upstream/
- OGC API – Tiles (vector tiles of every collection) comes from services/api/tiles.py, routed by app.py
"""
