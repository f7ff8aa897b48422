"""The price sheet's rules, one named function each, with the sheet's worked example as its doctest.

This is the room to look in for a rule: the engine (``engine.py``) sequences them over a whole roster,
``validate.py`` and the documents call them, and ``docs/decisions.md`` names the function implementing
each decision. The numbers come from the price book (``PriceBook``), never from here. Every function is
pure and takes scalars or numpy arrays (``datetime64[D]`` dates, int64 fen) and returns the same shape.

Rules (价格表) and their functions:

- whole-month rounding (近似到整月): ``prorate_months``
- renewal window (到期前一个月): ``renewal_window_opens``, ``renewal_too_early``; all dates: ``renewal_dates``
- grace and reclaim (保留一个月 / 号码回收): ``reclaim_on``, ``renewal_too_late``, ``account_expired``
- seat limits (3-50 工号): ``exceeds_max_seats``, ``below_min_seats``
- tier for a seat count (套餐): ``tier_table``, ``tier_index``, ``addition_tier_basis``
- the cap (a prorated seat costs at most a year): ``cap_at_annual``
- legacy allowance (2010年03月01日前开通的客户): ``opened_before_cutoff``, ``legacy_eligible``,
  ``legacy_allowance_rows``, ``legacy_monthly_fen``, ``legacy_renewal_allowance_used``, ``legacy_renewal_quote``
- renewal price (续费价格): ``renewal_unit_fen``
- renewal completion (3个工作日内完成续约): ``renewal_completes_on``

The doctests' ``BOOK`` is the shipped price book (see the repository's conftest.py).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..money import div_round_half_up
from ..pricebook import PriceBook
from .dates import DAY, add_months, as_days, to_date, ymd
from .groups import first_in_group
from .workdays import add_working_days

# -- whole-month rounding -------------------------------------------------------------------------------


def prorate_months(change_on, anniversary, round_up_after_days: int):
    """Whole months billed for a seat added on ``change_on`` until ``anniversary`` (paid-through + 1 day).

    m = the largest whole number with change_on + m months <= anniversary; r = the days left over.
    Bill m + 1 months when r > round_up_after_days, else m.  Returns (months, m, r).

    Price sheet (opened May 1, expires April 30, so the anniversary is May 1):
    added Oct 1 -> 7 months (r = 0); Oct 10 -> 7 months (m = 6, r = 21); Oct 16 -> 6 months (r = 15).

    >>> may1 = np.datetime64("2027-05-01")
    >>> [tuple(int(x) for x in prorate_months(np.datetime64(d), may1, 15))
    ...  for d in ("2026-10-01", "2026-10-10", "2026-10-16")]
    [(7, 7, 0), (7, 6, 21), (6, 6, 15)]
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


# -- renewal window, grace and reclaim ------------------------------------------------------------------


def renewal_window_opens(expiry, window_months: int) -> np.ndarray:
    """The first day a renewal may be signed: (expiry + 1 day) - window_months months.

    >>> str(renewal_window_opens(np.datetime64("2027-04-30"), 1))  # an April 30 expiry: April 1
    '2027-04-01'
    """
    return add_months(as_days(expiry) + DAY, -window_months)


def reclaim_on(expiry, grace_months: int) -> np.ndarray:
    """The day the number is reclaimed: (expiry + 1 day) + grace_months months. Grace runs from the day
    after expiry to the day before; a renewal signed on this day or later is refused.

    >>> str(reclaim_on(np.datetime64("2027-04-30"), 1))  # grace May 1 - May 31, reclaimed June 1
    '2027-06-01'
    >>> str(reclaim_on(np.datetime64("2026-10-31"), 1))
    '2026-12-01'
    """
    return add_months(as_days(expiry) + DAY, grace_months)


class RenewalDates(NamedTuple):
    anniversary: np.ndarray  # the day after expiry: a renewed term starts here
    window_opens: np.ndarray
    reclaim_on: np.ndarray


def renewal_dates(expiry, book: PriceBook) -> RenewalDates:
    """The anniversary, the window's first day and the reclaim day of a term ending on ``expiry``.

    >>> [str(x) for x in renewal_dates(np.datetime64("2027-04-30"), BOOK)]
    ['2027-05-01', '2027-04-01', '2027-06-01']
    """
    expiry = as_days(expiry)
    return RenewalDates(expiry + DAY, renewal_window_opens(expiry, book.window_months),
                        reclaim_on(expiry, book.grace_months))


def renewal_too_early(signed_on, window_opens) -> np.ndarray:
    """A renewal signed before its window opens is refused.

    >>> bool(renewal_too_early(np.datetime64("2027-03-31"), np.datetime64("2027-04-01")))
    True
    """
    return as_days(signed_on) < as_days(window_opens)


def renewal_too_late(signed_on, reclaim) -> np.ndarray:
    """A renewal signed on or after the reclaim day is refused: the account needs to be opened again.

    >>> [bool(renewal_too_late(np.datetime64(d), np.datetime64("2027-06-01"))) for d in ("2027-05-31", "2027-06-01")]
    [False, True]
    """
    return as_days(signed_on) >= as_days(reclaim)


def account_expired(on, expiry) -> np.ndarray:
    """Seats cannot change after expiry (in grace or reclaimed) until the account is renewed.

    >>> [bool(account_expired(np.datetime64(d), np.datetime64("2027-04-30"))) for d in ("2027-04-30", "2027-05-01")]
    [False, True]
    """
    return as_days(on) > as_days(expiry)


# -- seat limits and tiers ------------------------------------------------------------------------------


def exceeds_max_seats(seats_before, added, book: PriceBook) -> np.ndarray:
    """An addition may not take an account over the price book's maximum (50).

    >>> bool(exceeds_max_seats(45, 6, BOOK)), bool(exceeds_max_seats(45, 5, BOOK))
    (True, False)
    """
    return np.asarray(seats_before) + np.asarray(added) > book.max_seats


def below_min_seats(seats_before, removed, book: PriceBook) -> np.ndarray:
    """A removal may not take an account under the price book's minimum (3).

    >>> bool(below_min_seats(5, 3, BOOK)), bool(below_min_seats(5, 2, BOOK))
    (True, False)
    """
    return np.asarray(seats_before) - np.asarray(removed) < book.min_seats


class TierTable(NamedTuple):
    max_seats: np.ndarray  # ascending
    annual_fen: np.ndarray
    monthly_fen: np.ndarray
    labels: np.ndarray  # "3-10", ...


def tier_table(book: PriceBook) -> TierTable:
    """The price book's tiers as arrays, ascending by seats, for vectorized look-ups."""
    tiers = sorted(book.tiers, key=lambda t: t.min_seats)
    return TierTable(np.array([t.max_seats for t in tiers]), np.array([t.annual_fen for t in tiers], dtype=np.int64),
                     np.array([t.monthly_fen for t in tiers], dtype=np.int64),
                     np.array([t.label for t in tiers], dtype=object))


def tier_index(book: PriceBook, seats) -> np.ndarray:
    """Index of the tier for each seat count; counts below the first tier use it (one or two added seats).

    >>> t = tier_table(BOOK)
    >>> [t.labels[i] for i in tier_index(BOOK, np.array([1, 3, 10, 11, 21, 50]))]
    ['3-10', '3-10', '3-10', '11-20', '21-50', '21-50']
    """
    maxes = tier_table(book).max_seats
    return np.minimum(np.searchsorted(maxes, np.asarray(seats), side="left"), len(maxes) - 1)


def addition_tier_basis(seats_after, added, book: PriceBook):
    """The seat count whose tier prices an addition: the account after it (``tier_basis = account_total``)
    or only the seats added (``added_seats``).

    >>> int(addition_tier_basis(12, 3, BOOK))  # 9 + 3 seats: priced by the account's 12
    12
    """
    return seats_after if book.tier_basis == "account_total" else added


def cap_at_annual(raw_fen, annual_total_fen, book: PriceBook) -> tuple[np.ndarray, np.ndarray]:
    """(amount, capped): a prorated seat never costs more than a year, when the price book says so.

    >>> [int(x) for x in cap_at_annual(np.array([12 * 10000, 7 * 10000]), np.array([100000, 100000]), BOOK)[0]]
    [100000, 70000]
    """
    raw, cap = np.asarray(raw_fen), np.asarray(annual_total_fen)
    capped = book.cap_at_annual & (raw > cap)
    return np.where(capped, cap, raw), capped


# -- the legacy allowance -------------------------------------------------------------------------------


def opened_before_cutoff(opened_on, book: PriceBook) -> np.ndarray:
    """Only an account opened before the price book's cutoff (2010-03-01) may carry a legacy_rate.

    >>> [bool(opened_before_cutoff(np.datetime64(d), BOOK)) for d in ("2010-02-28", "2010-03-01")]
    [True, False]
    """
    return as_days(opened_on) < np.datetime64(book.legacy_cutoff, "D")


def legacy_eligible(opened_on, legacy_fen, book: PriceBook) -> np.ndarray:
    """An account with a legacy_rate, opened before the cutoff (a blank rate means market tiers).

    >>> legacy_eligible(np.array(["2009-05-01", "2009-05-01", "2011-01-01"], dtype="datetime64[D]"),
    ...                 np.array([80000, 0, 80000]), BOOK).tolist()
    [True, False, False]
    """
    return (np.asarray(legacy_fen) > 0) & opened_before_cutoff(opened_on, book)


def legacy_allowance_rows(eligible, accepted, dates, is_add, is_renew, gstart, book: PriceBook) -> np.ndarray:
    """Change rows priced at the account's own legacy_rate: every row of an eligible account dated before
    the cutoff, then the first accepted ``add`` and the first accepted ``renew`` on or after it (one of
    each). Rows are sorted by customer and date; ``gstart`` as in ``groups.group_starts``.

    >>> d = np.array(["2009-06-01", "2010-05-01", "2010-06-01", "2011-04-20", "2012-04-20"], dtype="datetime64[D]")
    >>> add, ren = np.array([1, 1, 1, 0, 0], bool), np.array([0, 0, 0, 1, 1], bool)
    >>> legacy_allowance_rows(np.ones(5, bool), np.ones(5, bool), d, add, ren, np.zeros(5, int), BOOK).tolist()
    [True, True, False, True, False]
    """
    after_cut = accepted & (dates >= np.datetime64(book.legacy_cutoff, "D"))
    first_add = first_in_group(after_cut & is_add, gstart)
    first_renew = first_in_group(after_cut & is_renew, gstart)
    return eligible & accepted & ((dates < np.datetime64(book.legacy_cutoff, "D")) | first_add | first_renew)


def legacy_monthly_fen(legacy_fen, book: PriceBook) -> np.ndarray:
    """The monthly rate of an added seat at the legacy allowance: legacy_rate / 10, rounded half-up to the
    fen once, so the printed unit x seats x months is the amount.

    >>> legacy_monthly_fen(np.array([80000, 123456, 5]), BOOK).tolist()  # 800.00 -> 80.00; 1234.56 -> 123.46
    [8000, 12346, 1]
    """
    return np.array([div_round_half_up(int(x), book.monthly_divisor) for x in np.asarray(legacy_fen)],
                    dtype=np.int64)


def legacy_renewal_allowance_used(legacy_row, is_renew, dates, book: PriceBook) -> np.ndarray:
    """The rows that use up an account's one legacy renewal: a legacy-priced renewal on or after the cutoff
    (renewals before it were at the legacy rate without using the allowance).

    >>> d = np.array(["2009-09-01", "2010-09-01"], dtype="datetime64[D]")
    >>> legacy_renewal_allowance_used(np.array([True, True]), np.array([True, True]), d, BOOK).tolist()
    [False, True]
    """
    return legacy_row & is_renew & (as_days(dates) >= np.datetime64(book.legacy_cutoff, "D"))


def legacy_renewal_quote(eligible, renew_allowance_used) -> np.ndarray:
    """A renewal notice quotes the legacy rate while the account's legacy renewal is still unused.

    >>> legacy_renewal_quote(np.array([True, True, False]), np.array([False, True, False])).tolist()
    [True, False, False]
    """
    return np.asarray(eligible) & ~np.asarray(renew_allowance_used)


# -- renewal price and completion -----------------------------------------------------------------------


def renewal_unit_fen(book: PriceBook, seats, legacy_fen=0, use_legacy=False) -> np.ndarray:
    """The annual price per seat of a renewal: the tier of the seat count on the signing date (or the
    legacy rate when the allowance applies). The renewal costs seats x this.

    >>> int(3 * renewal_unit_fen(BOOK, 3)) // 100  # 3 seats renew for 3 x 1000
    3000
    >>> int((5 + 6) * renewal_unit_fen(BOOK, 5 + 6)) // 100  # opened with 5, +6: 11 x 950
    10450
    """
    t = tier_table(book)
    return np.where(use_legacy, legacy_fen, t.annual_fen[tier_index(book, seats)])


def renewal_completes_on(signed_on, book: PriceBook) -> tuple[np.ndarray, np.ndarray]:
    """(date, exact) for each signing date: the renewal completes on the price book's N-th Chinese working
    day after signing (3个工作日内); exact is False where only weekends could be skipped.

    >>> [str(x) for x in renewal_completes_on(np.array(["2026-09-30"], dtype="datetime64[D]"), BOOK)[0]]
    ['2026-10-10']
    """
    done = [add_working_days(to_date(x), book.completion_working_days, book.calendar) for x in as_days(signed_on)]
    return (np.array([x for x, _ in done], dtype="datetime64[D]").reshape(np.shape(signed_on)),
            np.array([ok for _, ok in done], dtype=bool).reshape(np.shape(signed_on)))

