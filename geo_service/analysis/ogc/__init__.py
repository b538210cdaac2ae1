"""OGC API – Features (Parts 1, 2 and 3) over the snapshot and the case store, independent of
the web framework: which collections there are, the items query (paging, bbox, datetime,
property filters, CQL2), coordinate systems by reference, and the JSON documents with their
links. ``web/routers/ogc.py`` only reads the request and sends what these build.
"""

from __future__ import annotations

from geo_service.core.errors import InputError


class OGCRequestError(InputError):
    """A query the OGC API cannot answer as asked (bad ``crs``, ``bbox``, ``limit``, ``filter``,
    ``datetime``, an unknown parameter): 400, as the standard asks, naming the parameter."""

    status = 400
