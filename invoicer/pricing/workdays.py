"""Chinese working days: a renewal completes within N working days of signing (签署续约协议后,3个工作日内).

Uses the ``chinesecalendar`` package (mainland public holidays and make-up working days, 调休). A year the
price book's ``[calendar.YYYY]`` lists is taken from there instead (the clerk copies the State Council's
notice before the package has it; recorded with the price book, so verify recomputes the same dates). For
a year neither covers, it counts Monday to Friday and says so, so the printed date is never a silent guess.
"""
from __future__ import annotations

import datetime as dt
from functools import lru_cache

import chinese_calendar

from ..pricebook import YearSchedule


@lru_cache(maxsize=4096)
def add_working_days(start: dt.date, n: int, calendar: tuple[YearSchedule, ...] = ()) -> tuple[dt.date, bool]:
    """The n-th working day after ``start`` (the signing day itself does not count).

    Returns (date, exact): exact is False when a year outside the calendar's data was crossed and only
    weekends were skipped. Example: signed Wed 2026-09-30; Oct 1-7 are the National Day holiday, and Oct 8, Oct 9 and the
    make-up working Saturday Oct 10 are working days 1, 2 and 3, so it completes on 2026-10-10.
    """
    d, count, exact = start, 0, True
    listed = {y.year: y for y in calendar}
    while count < n:
        d += dt.timedelta(days=1)
        if d.year in listed:
            working = listed[d.year].is_workday(d)
        else:
            try:
                working = chinese_calendar.is_workday(d)
            except NotImplementedError:
                exact = False
                working = d.weekday() < 5
        count += working
    return d, exact
