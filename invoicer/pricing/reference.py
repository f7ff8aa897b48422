"""A plain, row-by-row implementation of the same billing rules, written independently of the
vectorized engine (its own date arithmetic with ``datetime`` and ``calendar``).

It is the oracle the property tests and ``benchmarks/pricing.py`` compare the engine against; it is not
used in production runs. It takes the same typed frames and returns comparable lines and rejected rows.
"""
from __future__ import annotations

import calendar
import datetime as dt

from ..money import div_round_half_up
from ..pricebook import PriceBook


def add_months(d: dt.date, n: int) -> dt.date:
    """d + n calendar months, clamped at month end."""
    total = d.year * 12 + d.month - 1 + n
    y, m = divmod(total, 12)
    m += 1
    return dt.date(y, m, min(d.day, calendar.monthrange(y, m)[1]))


def term_end(opened: dt.date, k: int) -> dt.date:
    """Last day of term k of an account opened on ``opened``."""
    return add_months(opened, 12 * (k + 1)) - dt.timedelta(days=1)


def months_to(d: dt.date, anniversary: dt.date, round_up_after: int) -> int:
    """Months billed for a seat added on d until the anniversary, counted one month at a time."""
    m = 0
    while add_months(d, m + 1) <= anniversary:
        m += 1
    r = (anniversary - add_months(d, m)).days
    return m + (1 if r > round_up_after else 0)


def tier(book: PriceBook, seats: int):
    """The tier for a seat count (the first tier below it, the last above it)."""
    for t in sorted(book.tiers, key=lambda t: t.min_seats):
        if seats <= t.max_seats:
            return t
    return max(book.tiers, key=lambda t: t.max_seats)


def price_period(customers: list[dict], changes: list[dict], book: PriceBook, period: str):
    """Returns (lines, rejected_rows): lines as (customer_id, kind, date, seats, months, unit_fen, amount_fen)
    sorted like the engine's; rejected_rows as a set of change-sheet row numbers."""
    y, m = map(int, period.split("-"))
    start = dt.date(y, m, 1)
    end = dt.date(y, m, calendar.monthrange(y, m)[1])
    cutoff = book.legacy_cutoff
    lines, rejected = [], set()
    by_customer: dict[str, list[dict]] = {}
    for c in changes:
        by_customer.setdefault(c["customer_id"], []).append(c)
    for cust in customers:
        cid, opened = cust["customer_id"], cust["opened_on"]
        if opened > end:
            for ch in by_customer.get(cid, []):
                if ch["date"] <= end:
                    rejected.add(ch["row"])
            continue
        seats, k, legacy = cust["seats"], cust["term0"], cust["legacy_fen"]
        add_used = renew_used = False
        if start <= opened <= end:
            t = tier(book, seats)
            unit = legacy if legacy and opened < cutoff else t.annual_fen
            lines.append((cid, "opening", opened, seats, 12, unit, seats * unit))
        rows = sorted(by_customer.get(cid, []), key=lambda c: (c["date"], c["row"]))
        for ch in rows:
            d = ch["date"]
            if d > end:
                continue
            if d < opened:
                rejected.add(ch["row"])
                continue
            expiry = term_end(opened, k)
            anniversary = expiry + dt.timedelta(days=1)
            n = ch["seats"]
            if ch["type"] in ("add", "remove"):
                after = seats + n if ch["type"] == "add" else seats - n
                if d > expiry or not book.min_seats <= after <= book.max_seats:
                    rejected.add(ch["row"])
                    continue
                if ch["type"] == "add":
                    use_legacy = bool(legacy) and (d < cutoff or not add_used)
                    if d >= cutoff and legacy:
                        add_used = True
                    basis = after if book.tier_basis == "account_total" else n
                    t = tier(book, basis)
                    annual = legacy if use_legacy else t.annual_fen
                    monthly = div_round_half_up(legacy, book.monthly_divisor) if use_legacy else t.monthly_fen
                    months = months_to(d, anniversary, book.round_up_after_days)
                    amount = n * monthly * months
                    if book.cap_at_annual:
                        amount = min(amount, n * annual)
                    if d >= start:
                        lines.append((cid, "addition", d, n, months, monthly, amount))
                seats = after
            else:
                window = add_months(anniversary, -book.window_months)
                reclaim = add_months(anniversary, book.grace_months)
                if d < window or d >= reclaim:
                    rejected.add(ch["row"])
                    continue
                use_legacy = bool(legacy) and (d < cutoff or not renew_used)
                if d >= cutoff and legacy:
                    renew_used = True
                unit = legacy if use_legacy else tier(book, seats).annual_fen
                if d >= start:
                    lines.append((cid, "renewal", d, seats, 12, unit, seats * unit))
                k += 1
    lines.sort(key=lambda x: (x[0], x[1] != "opening", x[2]))
    return lines, rejected
