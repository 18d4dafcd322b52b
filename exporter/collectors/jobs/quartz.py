"""A job's cron schedule (Quartz syntax, as Databricks takes it) read with APScheduler's
CronTrigger, and the longest gap between its fire times: the period a scheduled job promises.

Quartz writes ``seconds minutes hours day-of-month month day-of-week [year]``, with ``?`` for
"no value", day-of-week 1=SUN..7=SAT, ``L`` (the last day of the month; alone in day of week,
Saturday; ``6L`` the last Friday), ``#`` (``2#3``: the third Monday) and ``W`` (nearest
weekday). CronTrigger takes the same
fields one by one, with 0=MON..6=SUN and ``last``, ``last fri``, ``3rd mon`` in its day field;
what has no translation (``W``, ``L-3``, ``LW``) gives no interval (``Untranslatable``).
"""

from __future__ import annotations

import itertools
import re
import threading
from datetime import datetime, timedelta, timezone

from apscheduler.triggers.cron import CronTrigger

WINDOW = timedelta(days=8)  # the gaps looked at: those of the next 8 days ...
MAX_FIRES = 20_000  # ... or of this many fire times, whichever comes first
MAX_EXPRESSION = 200  # characters of a cron expression; a longer one is not read
CACHE_SIZE = 10_000  # (expression, timezone) pairs remembered ...
CACHE_SECONDS = 86_400.0  # ... for a day (the gaps move with DST and the months)

# Quartz's day-of-week numbers and names as CronTrigger's names.
_DOW = {
    "1": "sun",
    "2": "mon",
    "3": "tue",
    "4": "wed",
    "5": "thu",
    "6": "fri",
    "7": "sat",
    **{n: n.lower() for n in ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")},
}
_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # Quartz's 1..7
_ORDINALS = {"1": "1st", "2": "2nd", "3": "3rd", "4": "4th", "5": "5th"}
_FIELD_RE = re.compile(r"^[0-9A-Za-z*?/,#-]+$")


class Untranslatable(ValueError):
    """A Quartz expression CronTrigger cannot take (or that is not a Quartz expression)."""


def _day_number(token: str, field: str) -> int:
    """A Quartz day of week (1..7 or SUN..SAT) as 1..7."""
    name = _DOW.get(token.upper())
    if name is None:
        raise Untranslatable(f"day of week {field!r}")
    return _NAMES.index(name) + 1


def _days(part: str, field: str) -> list[int]:
    """One comma-separated part of Quartz's day of week (``MON``, ``2-6``, ``FRI-MON``,
    ``1/2``, ``MON-FRI/2``) as the days it names, 1..7."""
    span, _, step_text = part.partition("/")
    step = int(step_text) if step_text.isdigit() else 0
    if step_text and not 1 <= step <= 7:
        raise Untranslatable(f"day of week {field!r}")
    if span == "*":
        first, last = 1, 7
    elif "-" in span:
        a, _, b = span.partition("-")
        first, last = _day_number(a, field), _day_number(b, field)
    else:
        first = _day_number(span, field)
        last = 7 if step else first
    count = (last - first) % 7 + 1  # FRI-MON wraps over the week's end
    return [(first - 1 + i) % 7 + 1 for i in range(0, count, step or 1)]


def _day_of_week(field: str) -> tuple[str, str]:
    """Quartz's day-of-week as (CronTrigger's day, CronTrigger's day_of_week)."""
    if field in ("?", "*"):
        return "", "*"
    if field.upper() == "L":  # alone in day of week: the last day of the week, Saturday
        return "", _NAMES[6]
    if field.endswith("L") and len(field) > 1:  # 6L: the last Friday of the month
        day = _DOW.get(field[:-1].upper())
        if day is None:
            raise Untranslatable(f"day of week {field!r}")
        return f"last {day}", "*"
    if "#" in field:  # 2#3: the third Monday
        day_text, _, nth = field.partition("#")
        day = _DOW.get(day_text.upper())
        if day is None or nth not in _ORDINALS:
            raise Untranslatable(f"day of week {field!r}")
        return f"{_ORDINALS[nth]} {day}", "*"
    days = sorted({d for part in field.split(",") for d in _days(part, field)})
    return "", ",".join(_NAMES[d - 1] for d in days)


def _day_of_month(field: str) -> str:
    if field == "?":
        return ""
    if field == "L":
        return "last"
    if "W" in field.upper() or "L" in field.upper():
        raise Untranslatable(f"day of month {field!r}")
    return field


def trigger(expression: str, timezone_id: str) -> CronTrigger:
    """The CronTrigger of a Quartz expression in a timezone; Untranslatable otherwise."""
    if not isinstance(expression, str) or len(expression) > MAX_EXPRESSION:
        raise Untranslatable("not a cron expression")
    fields = expression.split()
    if len(fields) not in (6, 7) or not all(_FIELD_RE.match(f) for f in fields):
        raise Untranslatable("a Quartz expression has 6 or 7 fields")
    second, minute, hour, dom, month, dow = fields[:6]
    year = fields[6] if len(fields) == 7 else None
    if "?" in (second, minute, hour, month) or year == "?":
        raise Untranslatable("'?' only in a day field")
    by_week, day_of_week = _day_of_week(dow)
    by_month = _day_of_month(dom)
    if by_week and by_month and by_month != "*":
        raise Untranslatable("both a day of month and a day of week")
    if dom != "?" and dow != "?" and dom != "*" and dow != "*":
        raise Untranslatable("both a day of month and a day of week")
    day = by_week or by_month or "*"
    try:
        return CronTrigger(
            second=second,
            minute=minute,
            hour=hour,
            day=day,
            month=month.lower(),
            day_of_week=day_of_week,
            year=None if year in (None, "*") else year,
            timezone=timezone_id,
        )
    except Exception as exc:  # APScheduler's ValueError, an unknown zone, ...
        raise Untranslatable(str(exc)[:100]) from None


def longest_gap(cron: CronTrigger, now: datetime) -> float | None:
    """The longest gap (seconds) between consecutive fire times from ``now``: those of the
    next 8 days and the first after them (a weekly or monthly schedule has its full period);
    None when it fires fewer than twice (a year field in the past)."""
    fires: list[datetime] = []
    previous: datetime | None = None
    at = now
    end = now + WINDOW
    while len(fires) < MAX_FIRES:
        fire = cron.get_next_fire_time(previous, at)
        if fire is None:
            break
        fires.append(fire)
        if fire > end and len(fires) >= 2:
            break
        previous, at = fire, fire + timedelta(seconds=1)
    if len(fires) < 2:
        return None
    # On the timestamps: two datetimes of one zone subtract as wall clocks (a 25-hour day
    # would be 24).
    times = [fire.timestamp() for fire in fires]
    return max(b - a for a, b in itertools.pairwise(times))


class Intervals:
    """Each (expression, timezone)'s longest gap, computed once a day at most (thousands of
    jobs share a few schedules). Thread-safe."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], tuple[float, float | None]] = {}
        self._lock = threading.Lock()

    def interval(self, expression: str, timezone_id: str, now: float) -> float | None:
        """Seconds; None when there is none (Untranslatable raised for what cannot be read)."""
        key = (expression, timezone_id)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        gap = longest_gap(
            trigger(expression, timezone_id), datetime.fromtimestamp(now, tz=timezone.utc)
        )
        with self._lock:
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = (now, gap)
        return gap
