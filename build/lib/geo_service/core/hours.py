"""Opening hours in OpenStreetMap ``opening_hours`` syntax, evaluated in Asia/Shanghai time.

Parsing and evaluation are delegated to ``opening-hours-py`` (a complete implementation of the
OSM specification, Rust core), so weekday ranges and lists, ``off``, several spans a day,
spans past midnight (``16:00-01:00``) and ``24/7`` all follow the published rules rather than
a hand-written subset. This module adds what the service needs on top: a short error message
for the load report, the local clock, a vectorised "open at" over a whole layer, and a short
Chinese description for residents' pages.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
from opening_hours import OpeningHours, State

from geo_service.core.errors import quote

TIMEZONE = ZoneInfo("Asia/Shanghai")
ACTIVE = "active"


class HoursError(ValueError):
    """An ``opening_hours`` string that does not parse."""


def _short_parser_message(hours: str, message: str) -> str:
    """The parser's multi-line diagnostic, cut down to one line for a load report."""
    col = re.search(r"-->\s*\d+:(\d+)", message)
    expected = re.search(r"=\s*(.+)", message)
    where = f" at character {col.group(1)}" if col else ""
    why = f": {expected.group(1).strip()}" if expected else ""
    return f"not valid opening_hours syntax{where}{why} (got {quote(hours)})"


@lru_cache(maxsize=4096)
def parse(hours: str) -> OpeningHours:
    """The parsed expression, cached: a layer repeats a handful of distinct strings."""
    if not isinstance(hours, str) or not hours.strip():
        raise HoursError("empty opening hours")
    try:
        return OpeningHours(hours.strip(), timezone=TIMEZONE)
    except Exception as exc:  # the binding raises its own ParserError / SyntaxError types
        raise HoursError(_short_parser_message(hours, str(exc))) from None


def check(value: object) -> str | None:
    """Schema field check: an error message for a bad ``hours`` value, None when it parses."""
    try:
        parse(str(value))
    except HoursError as exc:
        return str(exc)
    return None


def local_time(at: datetime | None = None) -> datetime:
    """``at`` in Asia/Shanghai: None is now, a naive datetime is read as Shanghai wall time."""
    if at is None:
        return datetime.now(TIMEZONE)
    if at.tzinfo is None:
        return at.replace(tzinfo=TIMEZONE)
    return at.astimezone(TIMEZONE)


def is_open(hours: str | None, at: datetime | None = None, status: str = ACTIVE) -> bool:
    """Open at ``at``: the hours say open and the facility is active (not suspended, moved
    or retired). Unknown or unparsable hours count as not open."""
    if status != ACTIVE or not hours:
        return False
    try:
        oh = parse(hours)
    except HoursError:
        return False
    return bool(oh.state(local_time(at))[0] == State.OPEN)


def open_mask(
    hours: Sequence[str | None], status: Sequence[str | None], at: datetime | None = None
) -> npt.NDArray[np.bool_]:
    """``is_open`` for a whole layer, evaluating each distinct hours string once."""
    when = local_time(at)
    verdict = {h: is_open(h, when) for h in set(hours)}
    return np.fromiter(
        (s == ACTIVE and verdict[h] for h, s in zip(hours, status, strict=True)),
        dtype=bool,
        count=len(hours),
    )


def next_change(hours: str | None, at: datetime | None = None) -> datetime | None:
    """When the hours next switch between open and closed (None: never, or unknown hours)."""
    if not hours:
        return None
    try:
        nxt = parse(hours).next_change(local_time(at))
    except HoursError:
        return None
    return nxt.astimezone(TIMEZONE) if nxt is not None else None


# --- Chinese text for residents' pages ---------------------------------------------------------

WEEKDAYS = {"Mo": "周一", "Tu": "周二", "We": "周三", "Th": "周四", "Fr": "周五", "Sa": "周六",
            "Su": "周日"}  # fmt: skip
_DAY = r"(?:Mo|Tu|We|Th|Fr|Sa|Su)"
_DAYS = rf"{_DAY}(?:-{_DAY})?(?:,{_DAY}(?:-{_DAY})?)*"
_SPAN = r"\d{2}:\d{2}-\d{2}:\d{2}"
_RULE = re.compile(rf"^(?:(?P<days>{_DAYS})\s+)?(?P<what>off|closed|{_SPAN}(?:,{_SPAN})*)$")


def _describe_days(days: str | None) -> str:
    if days is None or days == "Mo-Su":
        return "每天"
    parts = []
    for item in days.split(","):
        a, _, b = item.partition("-")
        parts.append(f"{WEEKDAYS[a]}至{WEEKDAYS[b]}" if b else WEEKDAYS[a])
    return "、".join(parts)


def _describe_span(span: str) -> str:
    start, end = span.split("-")
    if end <= start:  # the OSM convention for a span that runs past midnight
        end = f"次日{end}"
    return f"{start}–{end}"


def describe(hours: str | None) -> str:
    """A short Chinese reading of the hours: "周一至周六 08:00–18:00；周日休息".

    Covers the common forms (weekday ranges and lists, several spans, past midnight, off,
    24/7); anything richer is shown as written rather than guessed at.
    """
    if not hours or not hours.strip():
        return "营业时间未知"
    text = hours.strip()
    if text == "24/7":
        return "全天24小时营业"
    out = []
    for rule in (r.strip() for r in text.split(";")):
        if not rule:
            continue
        m = _RULE.match(rule)
        if m is None:
            return text
        days = _describe_days(m.group("days"))
        what = m.group("what")
        if what in ("off", "closed"):
            out.append(f"{days}休息")
        else:
            out.append(f"{days} " + "、".join(_describe_span(s) for s in what.split(",")))
    return "；".join(out) if out else text


def _when_text(moment: datetime, now: datetime) -> str:
    days = (moment.date() - now.date()).days
    clock = moment.strftime("%H:%M")
    if days == 0:
        return clock
    if days == 1:
        return f"凌晨 {clock}" if moment.hour < 6 else f"明天 {clock}"
    if days < 7:
        return f"{WEEKDAYS[list(WEEKDAYS)[moment.weekday()]]} {clock}"
    return moment.strftime("%m月%d日 %H:%M")


def state_text(hours: str | None, at: datetime | None = None) -> str:
    """The badge text, e.g. "营业中 · 18:00 收摊" or "休息中 · 明天 08:00 开门"."""
    now = local_time(at)
    if check(hours) is not None:
        return "营业时间未知"
    open_ = is_open(hours, now)
    nxt = next_change(hours, now)
    label = "营业中" if open_ else "休息中"
    if nxt is None or nxt - now > timedelta(days=60):
        return label
    verb = "收摊" if open_ else "开门"
    return f"{label} · {_when_text(nxt, now)} {verb}"
