"""Calendar arithmetic for terms, windows and proration, vectorized over numpy ``datetime64[D]``.

Every function accepts scalars or arrays and returns the same shape. Month arithmetic clamps at the end
of the month (Jan 31 + 1 month = Feb 28/29), and "d + m months" is always computed from d itself,
never by chaining one month at a time.
"""
from __future__ import annotations

import datetime as dt

import numpy as np

DAY = np.timedelta64(1, "D")


def as_days(values) -> np.ndarray:
    return np.asarray(values, dtype="datetime64[D]")


def ymd(d) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def prorate_months(change_on, anniversary, round_up_after_days: int):
    """Whole months billed for a seat added on ``change_on`` until ``anniversary`` (paid-through + 1 day).

    m = the largest whole number with change_on + m months <= anniversary; r = the days left over.
    Bill m + 1 months when r > round_up_after_days, else m.  Returns (months, m, r).

    Price sheet (opened May 1, expires April 30, so the anniversary is May 1):
    added Oct 1 -> 7 months (r = 0); Oct 10 -> 7 months (m = 6, r = 21); Oct 16 -> 6 months (r = 15).
    """
    d, a = as_days(change_on), as_days(anniversary)
    yd, md, _ = ymd(d)
    ya, ma, _ = ymd(a)
    m = (ya - yd) * 12 + (ma - md)
    m = np.where(add_months(d, m) > a, m - 1, m)
    m = np.maximum(m, 0)
    r = np.maximum((a - add_months(d, m)).astype(np.int64), 0)
    months = m + (r > round_up_after_days)
    return months, m, r


def to_date(value) -> dt.date:
    return np.datetime64(value, "D").astype(dt.date)


def month_bounds(period: str) -> tuple[np.datetime64, np.datetime64]:
    """'2026-10' -> (2026-10-01, 2026-10-31)."""
    start = np.datetime64(period, "M")
    return start.astype("datetime64[D]"), (start + 1).astype("datetime64[D]") - DAY
