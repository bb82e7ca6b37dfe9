"""A pytest plugin for the ogctests 0.1.15 *filtering* suite (``-p tests.ogctests_workaround``), working around
its link-parsing bug — a bug of the suite, not of the server — so that its queryables tests ct2 and ct3 run:

1. ``ogctests.features.filtering.utils.parse_link_header`` keeps a link's target under ``"iri"`` with its angle
   brackets, while ``test_ct2`` reads ``link.get("href")``: every queryables URI comes out as None. It also
   keeps the quotes around parameter values (RFC 8288: ``rel="…"`` must be quoted when it is a URI, as ours
   is) and splits ``key=value`` on every ``=``. Replaced by a parser that stores ``href`` (and ``iri``) without
   brackets and values without quotes.
2. ``test_ct2`` stores the queryables URI as a one-element *list* (a list comprehension), and ``test_ct3``
   requests that list as a URL and compares it with ``$id``. An autouse fixture unwraps the list before each
   test.

docs/ogc.md ("ogctests") has the details and the suite's other bugs (ct5, ct7, ct8, ct10), which no server
can pass; when an ogctests release fixes them, drop this plugin.
"""

from __future__ import annotations

import pytest


def parse_link_header(raw_link_header: str) -> list[dict]:
    """RFC 8288 Link header → [{"href": …, "iri": …, "rel": …, "type": …}] (brackets and quotes removed)."""
    links = []
    for link in (raw_link_header or "").split(","):
        parts = [p.strip() for p in link.split(";")]
        if not parts or not parts[0].startswith("<"):
            continue
        target = parts[0][1:-1] if parts[0].endswith(">") else parts[0][1:]
        parsed = {"href": target, "iri": target}
        for part in parts[1:]:
            key, sep, value = part.partition("=")
            if sep:
                parsed[key.strip()] = value.strip().strip('"')
        links.append(parsed)
    return links


def _patch() -> None:
    import ogctests.features.filtering.utils as utils

    utils.parse_link_header = parse_link_header


_patch()  # before pytest imports the suite's test modules (they bind the name at import)


@pytest.fixture(autouse=True)
def _unwrap_queryables_uri(request):
    if "filterable_resources" in request.fixturenames:
        for resource in request.getfixturevalue("filterable_resources"):
            uri = resource.get("queryables_uri")
            if isinstance(uri, list) and len(uri) == 1:
                resource["queryables_uri"] = uri[0]
    yield
