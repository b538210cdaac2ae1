"""Deadlines in working time: 处置时限 are set in working hours or working days.

A working day is a day China's State Council calendar makes one (``chinese-calendar``: public
holidays off, make-up Saturdays and Sundays on); for a year that calendar does not know yet,
Monday to Friday. Working hours are 08:30–12:00 and 13:30–17:30 in Asia/Shanghai, so a
working day is 7.5 working hours. A limit in plain ``hours`` runs round the clock (a broken
manhole cover does not wait for Monday). Every function takes and returns aware datetimes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo

import chinese_calendar

SHANGHAI = ZoneInfo("Asia/Shanghai")
WORK_PERIODS: tuple[tuple[time, time], ...] = (
    (time(8, 30), time(12, 0)),
    (time(13, 30), time(17, 30)),
)
WORKDAY_HOURS = sum(
    (datetime.combine(date.min, b) - datetime.combine(date.min, a)).total_seconds() / 3600
    for a, b in WORK_PERIODS
)  # 7.5


class LimitUnit(StrEnum):
    working_hours = "working_hours"
    working_days = "working_days"
    hours = "hours"


UNIT_TEXT = {
    LimitUnit.working_hours: "个工作时",
    LimitUnit.working_days: "个工作日",
    LimitUnit.hours: "小时",
}


@lru_cache(maxsize=4096)
def is_workday(day: date) -> bool:
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:  # a year the calendar has no data for yet
        return day.weekday() < 5


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("working-time arithmetic needs an aware datetime")
    return at.astimezone(SHANGHAI)


def add_working_hours(start: datetime, hours: float) -> datetime:
    """The moment ``hours`` of working time after ``start`` (counted from the next working
    period if ``start`` falls outside one)."""
    left = timedelta(hours=hours)
    at = _aware(start)
    day = at.date()
    for _ in range(3660):  # ten years of days: a bound, never reached by a real limit
        if is_workday(day):
            for a, b in WORK_PERIODS:
                begin = datetime.combine(day, a, SHANGHAI)
                end = datetime.combine(day, b, SHANGHAI)
                if end <= at:
                    continue
                begin = max(begin, at)
                if begin + left <= end:
                    return (begin + left).astimezone(UTC)
                left -= end - begin
        day += timedelta(days=1)
        at = datetime.combine(day, time(0), SHANGHAI)
    raise ValueError(f"a limit of {hours} working hours is too long")


def deadline(start: datetime, value: float, unit: LimitUnit) -> datetime:
    """When a case filed (or escalated) at ``start`` with this limit falls due, in UTC."""
    if unit is LimitUnit.hours:
        return (_aware(start) + timedelta(hours=value)).astimezone(UTC)
    hours = value * WORKDAY_HOURS if unit is LimitUnit.working_days else value
    return add_working_hours(start, hours)
