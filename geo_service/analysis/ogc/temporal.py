"""The ``datetime`` parameter (an instant or an interval, RFC 3339, ``..`` for an open end) and the
timestamps of CQL2 filters, as UTC instants.

A time without an offset is read as Beijing time (Asia/Shanghai), as everywhere in this service;
a date alone means that whole day in Beijing time.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

import pandas as pd

from geo_service.analysis.ogc import OGCRequestError
from geo_service.core.errors import quote
from geo_service.core.workcalendar import SHANGHAI

YEARS = (1900, 2199)
MAX_CHARS = 100
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
OPEN = ("", "..")


def as_utc(moment: datetime) -> pd.Timestamp:
    """An aware UTC timestamp (a naive one is Beijing time)."""
    if moment.tzinfo is None or moment.tzinfo.utcoffset(moment) is None:
        moment = moment.replace(tzinfo=SHANGHAI)
    return pd.Timestamp(moment).tz_convert("UTC")


def _moment(text: str, end: bool) -> pd.Timestamp:
    """One end of the interval: the first (or, for ``end``, the last) instant it names."""
    try:
        if _DATE.match(text):
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day, tzinfo=SHANGHAI)
            moment = start + timedelta(days=1) - timedelta(microseconds=1) if end else start
        else:
            moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise OGCRequestError(
            f"not an RFC 3339 date or date-time: {quote(text)} (e.g. 2025-03-08T09:00:00Z, "
            "2025-03-08, or an interval 2025-03-01/2025-03-31, ../2025-03-31, 2025-03-01/..)",
            "datetime",
        ) from None
    if not YEARS[0] <= moment.year <= YEARS[1]:
        raise OGCRequestError(f"year must lie within {YEARS[0]}..{YEARS[1]}", "datetime")
    return as_utc(moment)


def parse_datetime(value: str) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """``datetime`` as a closed UTC interval (None for an open end); an instant is an interval
    of one instant, a date the whole day."""
    text = value.strip()
    if len(text) > MAX_CHARS:
        raise OGCRequestError(f"too long ({len(text):,} characters)", "datetime")
    if "/" not in text:
        if text in OPEN:
            raise OGCRequestError("an instant or an interval, not empty", "datetime")
        return _moment(text, end=False), _moment(text, end=True)
    first, _, last = text.partition("/")
    if "/" in last:
        raise OGCRequestError(f"an interval has two ends: {quote(value)}", "datetime")
    if first in OPEN and last in OPEN:
        raise OGCRequestError("an interval needs at least one closed end", "datetime")
    start = None if first in OPEN else _moment(first, end=False)
    stop = None if last in OPEN else _moment(last, end=True)
    if start is not None and stop is not None and start > stop:
        raise OGCRequestError(f"the interval ends before it starts: {quote(value)}", "datetime")
    return start, stop
