"""The time index of a series: parsing its cells, the season its spacing implies, and
sine/cosine calendar features.

A time column's cells are ISO 8601 dates or times (``2020-01-31``,
``2020-01-31 13:00``, ``2020-01-31T13:00:00``) or plain numbers (a year, a step
count). Dates give a default season (:func:`season_of`: 24 for hourly data, 7 for
daily, 12 for monthly, ...) and calendar features (:func:`calendar_features`): for a
field with period P, ``sin(2 pi v / P)`` and ``cos(2 pi v / P)``, so that 23:00 and
00:00 lie close together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

import numpy as np

from tbptt.errors import TBPTTError, quoted

CALENDAR_FIELDS = {"hour": 24.0, "weekday": 7.0, "month": 12.0, "dayofyear": 365.25}
"""Calendar fields and their periods."""

SEASONS = ((3600, 24), (86400, 7), (7 * 86400, 52), (30 * 86400, 12), (91 * 86400, 4))
"""Typical spacing in seconds (to within a fifth) and the season it implies: hourly
data repeats daily, daily weekly, weekly and monthly yearly, quarterly yearly."""


def parse_time(cell: str) -> datetime | None:
    """``cell`` as an ISO 8601 date or time, or None (a number is not a time)."""
    try:
        return datetime.fromisoformat(cell)
    except ValueError:
        return None


def as_datetimes(times: Sequence[str]) -> list[datetime] | None:
    """Every cell parsed as a date or time, or None if any is not one."""
    parsed = [parse_time(cell) for cell in times]
    if any(stamp is None for stamp in parsed):
        return None
    return parsed  # type: ignore[return-value]


def season_of(times: Sequence[str] | None) -> int | None:
    """The season a time index's median spacing implies (see ``SEASONS``), or None
    without dates or for a spacing that is none of those."""
    stamps = None if times is None or len(times) < 2 else as_datetimes(times)
    if stamps is None:
        return None
    gaps = [(b - a).total_seconds() for a, b in zip(stamps, stamps[1:], strict=False)]
    spacing = float(np.median(gaps))
    for seconds, season in SEASONS:
        if abs(spacing - seconds) <= 0.2 * seconds:
            return season
    return None


def calendar_features(
    times: Sequence[str], fields: Sequence[str]
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Sine and cosine of each calendar field: ``(N, 2 * len(fields))`` float32, and
    their names (``hour_sin``, ``hour_cos``, ...)."""
    for name in fields:
        if name not in CALENDAR_FIELDS:
            known = ", ".join(CALENDAR_FIELDS)
            raise TBPTTError(f"calendar field {quoted(name)} is unknown; choose among {known}")
    stamps = as_datetimes(times)
    if stamps is None:
        raise TBPTTError(
            "calendar features need a time column of dates or times (ISO 8601); "
            "drop --calendar or give such a --time-column"
        )
    columns, names = [], []
    for name in fields:
        value = np.array([field_value(stamp, name) for stamp in stamps], dtype=np.float64)
        angle = 2 * math.pi * value / CALENDAR_FIELDS[name]
        columns += [np.sin(angle), np.cos(angle)]
        names += [f"{name}_sin", f"{name}_cos"]
    return np.stack(columns, axis=1).astype(np.float32), tuple(names)


def field_value(stamp: datetime, name: str) -> float:
    """The calendar field ``name`` of ``stamp``, counted from 0."""
    if name == "hour":
        return stamp.hour + stamp.minute / 60
    if name == "weekday":
        return stamp.weekday()
    if name == "month":
        return stamp.month - 1
    return stamp.timetuple().tm_yday - 1
