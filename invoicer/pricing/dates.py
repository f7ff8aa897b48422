"""Calendar arithmetic for terms and windows, vectorized over numpy ``datetime64[D]`` (the rules built on
it, such as whole-month proration, are in ``rules.py``).

Every function accepts scalars or arrays and returns the same shape. Month arithmetic clamps at the end
of the month (Jan 31 + 1 month = Feb 28/29), and "d + m months" is always computed from d itself,
never by chaining one month at a time.
"""
from __future__ import annotations

import datetime as dt

import numpy as np

DAY = np.timedelta64(1, "D")


def as_days(values) -> np.ndarray:
    """Dates (text, ``datetime.date``, datetime64, or arrays of them) as ``datetime64[D]``."""
    return np.asarray(values, dtype="datetime64[D]")


def ymd(d) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(year, month 1-12, day 1-31) of each date.

    >>> [int(x) for x in ymd(np.datetime64("2026-10-05"))]
    [2026, 10, 5]
    """
    d = as_days(d)
    months = d.astype("datetime64[M]")
    y = months.astype("datetime64[Y]").astype(np.int64) + 1970
    m = months.astype(np.int64) % 12 + 1
    day = (d - months.astype("datetime64[D]")).astype(np.int64) + 1
    return y, m, day


def add_months(d, n) -> np.ndarray:
    """d + n calendar months, clamped at month end.

    >>> str(add_months(np.datetime64("2024-01-31"), 1))
    '2024-02-29'
    """
    d = as_days(d)
    months = d.astype("datetime64[M]")
    day = (d - months.astype("datetime64[D]")).astype(np.int64)  # 0-based day of month
    target = months + np.asarray(n, dtype=np.int64).astype("timedelta64[M]")
    first = target.astype("datetime64[D]")
    last_day = (target + np.timedelta64(1, "M")).astype("datetime64[D]") - DAY
    dim = (last_day - first).astype(np.int64)  # days in month - 1
    return first + np.minimum(day, dim).astype("timedelta64[D]")


def term_start(opened_on, k) -> np.ndarray:
    """Start of term k: opened_on + k years (term 0 starts on opened_on)."""
    return add_months(opened_on, np.asarray(k, dtype=np.int64) * 12)


def term_end(opened_on, k) -> np.ndarray:
    """Last day of term k: opened_on + (k+1) years - 1 day (opened May 1 -> expires April 30)."""
    return term_start(opened_on, np.asarray(k, dtype=np.int64) + 1) - DAY


def term_index_of_end(opened_on, end) -> tuple[np.ndarray, np.ndarray]:
    """(k, ok): the term k whose last day is ``end``; ok is False where ``end`` ends no term."""
    opened_on, end = as_days(opened_on), as_days(end)
    y_next, _, _ = ymd(end + DAY)
    y_open, _, _ = ymd(opened_on)
    k = y_next - y_open - 1
    ok = (k >= 0) & (term_end(opened_on, np.maximum(k, 0)) == end)
    return k, ok


def to_date(value) -> dt.date:
    """One date (datetime64, text, Timestamp) as ``datetime.date``."""
    return np.datetime64(value, "D").astype(dt.date)


def month_bounds(period: str) -> tuple[np.datetime64, np.datetime64]:
    """The first and last day of a month.

    >>> [str(x) for x in month_bounds("2026-02")]
    ['2026-02-01', '2026-02-28']
    """
    start = np.datetime64(period, "M")
    return start.astype("datetime64[D]"), (start + 1).astype("datetime64[D]") - DAY
