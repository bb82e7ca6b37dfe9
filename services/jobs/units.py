"""The workbench scoped by unit: which county's patches a caller sees and judges.

A token's Principal carries ``unit``, a 行政区代码: a 县 (six digits) limits its holder to that county, a 市
(``XXXX00``) to the counties of that city, a 省 (``XX0000``) to the province's; ``None`` to whatever the store
holds. On a one-county store a caller whose unit does not cover the county is refused (403). On a province
store (layers/store/province.py) each county keeps its own flagged patches and workflow tables in its schema:
a county inspector's requests go to their county's book; a 市 / 省 user names the county (``?county=CODE``)
and may name only counties within their unit. Judging a patch of another county is therefore impossible: it
is not in the caller's book (404), and naming the other county is refused (403).
"""

from __future__ import annotations

import threading

from analysis.workflow import Workflow
from layers.errors import FieldError, NotFoundError, OutsideUnitError
from layers.store.province import RegionStore

from ..settings import Principal
from .patches import PatchBook
from .workflow import AuditSeal, open_patch_workflow


def unit_prefix(unit: str | None) -> str:
    """The code prefix a unit covers: 省 XX0000 → XX, 市 XXXX00 → XXXX, 县 → its six digits; None → ''."""
    if not unit:
        return ""
    code = str(unit)[:6]
    if code.endswith("0000"):
        return code[:2]
    if code.endswith("00"):
        return code[:4]
    return code


def check_covers(who: Principal, county: str) -> None:
    """OutsideUnitError unless the caller's unit covers ``county``."""
    if not str(county).startswith(unit_prefix(who.unit)):
        raise OutsideUnitError(f"user {who.user!r} works for unit {who.unit}; county {county} is outside it")


def scoped(book: PatchBook, who: Principal, county: str | None) -> PatchBook:
    """The one county of a single-county store, if the caller's unit (and ``?county=``) covers it."""
    if who.unit is None and county is None:
        return book
    held = str(book.store.meta().get("region_code") or "")
    if county is not None and county != held:
        raise NotFoundError(f"county {county} is not in this store; it holds {held or 'no county yet'}")
    if held:
        check_covers(who, held)
    return book


class UnitBooks:
    """The workbench of a province store: one PatchBook per county, on the county's own store, made on first use."""

    def __init__(self, region_url: str, workflow: Workflow, seal: AuditSeal | None = None):
        self.region_url = region_url
        self.workflow = workflow
        self.seal = seal  # one key for every county; the anchor file holds each county store's head by its url
        self._books: dict[str, PatchBook] = {}
        self._lock = threading.Lock()
        with RegionStore(region_url) as region:
            self._counties = region.counties()
            self._urls = {c: region.county_url(c) for c in self._counties}

    def counties(self) -> list[str]:
        return list(self._counties)

    def book(self, county: str) -> PatchBook:
        if county not in self._urls:
            raise NotFoundError(f"county {county} is not in this province; counties: {', '.join(self._counties)}")
        with self._lock:
            if county not in self._books:
                self._books[county] = PatchBook(open_patch_workflow(self._urls[county], self.workflow,
                                                                      self.seal))
            return self._books[county]

    def for_caller(self, who: Principal, county: str | None) -> PatchBook:
        """The book of the county the caller works on (``county``, else their own 县), within their unit."""
        prefix = unit_prefix(who.unit)
        if county is None:
            mine = [c for c in self._counties if c.startswith(prefix)]
            if len(mine) != 1:
                raise FieldError(f"this store is a province of {len(self._counties)} counties: give ?county=CODE "
                                   f"(yours: {', '.join(mine) or 'none'})")
            county = mine[0]
        check_covers(who, county)
        return self.book(county)
