"""The vectorized billing engine: typed roster + price book + period -> priced lines, accounts, rejects.

How the history of every account is replayed without a Python loop per customer:
change rows are sorted by (customer, date, sheet row) and every running quantity (seats, renewals
signed) is a grouped cumulative sum over the rows still accepted. A row that breaks a rule given the state
before it (seats outside the limits, a change on an expired account, a renewal outside its window) is
rejected, and the sums are recomputed without it. Each round rejects the first offending row of every
customer at once, so the number of rounds is the largest number of offending rows of any one customer
(usually 0 or 1), not the number of customers, and a round after the first replays only the customers
that still had an offending row (a hostile roster with thousands of bad rows for one customer costs
rounds over that customer's rows, not over the whole roster). The result is exactly that of replaying
each account row by row (``reference.py`` does that, and the tests and benchmark compare the two).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import Reject
from ..money import div_round_half_up
from ..pricebook import PriceBook
from . import rules
from .dates import DAY, month_bounds, term_end, to_date
from .groups import group_cumsum, group_starts, sum_by_code
from .rules import tier_index, tier_table

LINE_COLUMNS = [
    "customer_id", "kind", "date", "seats", "account_seats", "months", "whole_months", "extra_days",
    "unit_fen", "annual_fen", "amount_fen", "list_fen", "tier", "legacy", "capped",
    "term_start", "term_end", "completes_on", "completes_exact", "reference", "row",
]

STATUS_ORDER = ("active", "renewal_due", "grace", "reclaimed")


@dataclass
class PeriodResult:
    """What ``price_period`` returns: the month's priced lines (``LINE_COLUMNS``, fen), each account's
    state at the end of the month (``account_state`` plus the renewal quote), and the change rows refused."""
    period: str
    period_start: dt.date
    period_end: dt.date
    lines: pd.DataFrame
    accounts: pd.DataFrame
    rejects: list[Reject]


@dataclass
class _Changes:
    """The change rows to replay, sorted by (customer, date, sheet row), with their customer's columns."""
    frame: pd.DataFrame
    code: np.ndarray  # index of the row's customer in the customer frame
    date: np.ndarray
    is_add: np.ndarray
    is_remove: np.ndarray
    is_renew: np.ndarray
    seats: np.ndarray  # seats added or removed (0 on a renewal)
    signed: np.ndarray  # +added, -removed, 0
    gstart: np.ndarray
    opened: np.ndarray
    seats0: np.ndarray
    term0: np.ndarray


def price_period(customers: pd.DataFrame, changes: pd.DataFrame, book: PriceBook, period: str,
                 sheets: tuple[str, str] = ("customers", "changes")) -> PeriodResult:
    """Price one calendar month ``period`` ('2026-10') of a roster.

    In: validate.py's typed frames (customers with ``valid``, ``opened_on``, ``seats``, ``term0``,
    ``legacy_fen``; changes with ``date``, ``type``, ``seats``, ``reference``, ``row``), the price book and
    the sheet titles for reject messages. Rows dated after the month are ignored (not this run).
    Out: a ``PeriodResult``. Refused (as ``Reject`` values, never exceptions): change rows dated before
    their account opened, and rows breaking a rule given the history before them (seat limits, a change
    on an expired account, a renewal outside its window).
    """
    start, end = month_bounds(period)
    _, changes_sheet = sheets
    cust = customers.loc[customers["valid"].to_numpy() & (customers["opened_on"].to_numpy() <= end)]
    cust = cust.drop_duplicates("customer_id").reset_index(drop=True)
    rejects: list[Reject] = []
    ch = _sorted_changes(cust, customers, changes, end, changes_sheet, rejects)
    accepted, state = _replay_accepting(ch, book, changes_sheet, rejects)
    seats_before, renews_before, expiry = state.seats_before, state.renews_before, state.expiry
    legacy_fen_r = cust["legacy_fen"].to_numpy(dtype=np.int64)[ch.code]
    eligible_r = rules.legacy_eligible(ch.opened, legacy_fen_r, book)
    legacy_row = rules.legacy_allowance_rows(eligible_r, accepted, ch.date, ch.is_add, ch.is_renew, ch.gstart, book)

    in_period = accepted & (ch.date >= start)
    lines = [_opening_lines(cust, book, start, end)]
    sel = in_period & ch.is_add
    if sel.any():
        lines.append(_addition_lines(ch, sel, book, seats_before, expiry, legacy_row, legacy_fen_r))
    sel = in_period & ch.is_renew
    if sel.any():
        lines.append(_renewal_lines(ch, sel, book, seats_before, expiry, renews_before, legacy_row, legacy_fen_r))
    accounts = _accounts_at_end(cust, ch, accepted, legacy_row, end, book)
    return PeriodResult(period, to_date(start), to_date(end), _line_frame(lines), accounts, rejects)


def _sorted_changes(cust, customers, changes, end, changes_sheet, rejects) -> _Changes:
    """The rows up to the end of the month, minus those dated before their account opened (rejected),
    sorted by (customer, date, sheet row)."""
    c_open = cust["opened_on"].to_numpy(dtype="datetime64[D]")
    ch = changes.loc[changes["date"].to_numpy(dtype="datetime64[D]") <= end]  # later rows: not this run
    code = pd.Index(cust["customer_id"]).get_indexer(ch["customer_id"])
    d = ch["date"].to_numpy(dtype="datetime64[D]")
    too_early = (code < 0) | (d < c_open[np.maximum(code, 0)])
    for i in np.flatnonzero(too_early):
        cid = ch["customer_id"].iat[i]
        opened = customers.loc[customers["customer_id"] == cid, "opened_on"].iloc[0]
        rejects.append(Reject(changes_sheet, int(ch["row"].iat[i]), "date", str(d[i]),
                              f"dated before the account opened on {np.datetime64(opened, 'D')}", cid))
    keep = ~too_early
    ch, code, d = ch.loc[keep], code[keep], d[keep]
    order = np.lexsort((ch["row"].to_numpy(), d, code))
    ch, code, d = ch.iloc[order].reset_index(drop=True), code[order], d[order]
    kind = ch["type"].to_numpy(dtype=object)
    is_add, is_remove, is_renew = kind == "add", kind == "remove", kind == "renew"
    n_seats = ch["seats"].to_numpy(dtype=np.int64)
    return _Changes(
        frame=ch, code=code, date=d, is_add=is_add, is_remove=is_remove, is_renew=is_renew, seats=n_seats,
        signed=np.where(is_add, n_seats, np.where(is_remove, -n_seats, 0)), gstart=group_starts(code),
        opened=c_open[code], seats0=cust["seats"].to_numpy(dtype=np.int64)[code],
        term0=cust["term0"].to_numpy(dtype=np.int64)[code])


@dataclass
class _State:
    """The running state of an account before each change row (given the rows accepted so far)."""
    seats_before: np.ndarray
    renews_before: np.ndarray
    expiry: np.ndarray  # last day of the term the row falls in
    window: np.ndarray  # the first day a renewal of that term may be signed
    reclaim: np.ndarray  # the day the number is reclaimed if that term is not renewed


def _replay(ch: _Changes, accepted: np.ndarray, rows: np.ndarray, book: PriceBook) -> _State:
    """Running state before each of ``rows`` (whole customers, in order) given the rows accepted."""
    g = ch.gstart if len(rows) == len(ch.code) else group_starts(ch.code[rows])
    delta = np.where(accepted[rows], ch.signed[rows], 0)
    seats_before = ch.seats0[rows] + group_cumsum(delta, g) - delta
    ren = (accepted[rows] & ch.is_renew[rows]).astype(np.int64)
    renews_before = group_cumsum(ren, g) - ren
    expiry = term_end(ch.opened[rows], ch.term0[rows] + renews_before)
    dates = rules.renewal_dates(expiry, book)
    return _State(seats_before, renews_before, expiry, dates.window_opens, dates.reclaim_on)


def _replay_accepting(ch: _Changes, book: PriceBook, changes_sheet: str,
                      rejects: list[Reject]) -> tuple[np.ndarray, _State]:
    """Replay every account, refusing rows that break a rule given the state before them; returns which
    rows were accepted and the state before every row given exactly those."""
    n = len(ch.code)
    accepted = np.ones(n, dtype=bool)
    # Each round rejects the first offending row of every customer that has one; a customer with none is
    # settled (its rows depend on nothing else), so later rounds replay only the unsettled customers' rows.
    work = np.arange(n)
    state = _replay(ch, accepted, work, book)
    while len(work):
        s = state
        w_add, w_rem, w_ren, w_d, w_n = ch.is_add[work], ch.is_remove[work], ch.is_renew[work], ch.date[work], \
            ch.seats[work]
        expired = (w_add | w_rem) & rules.account_expired(w_d, s.expiry)
        over = w_add & rules.exceeds_max_seats(s.seats_before, w_n, book)
        under = w_rem & rules.below_min_seats(s.seats_before, w_n, book)
        early = w_ren & rules.renewal_too_early(w_d, s.window)
        late = w_ren & rules.renewal_too_late(w_d, s.reclaim)
        bad = accepted[work] & (expired | over | under | early | late)
        if not bad.any():
            break
        idx = np.flatnonzero(bad)
        first = idx[np.r_[True, ch.code[work[idx]][1:] != ch.code[work[idx]][:-1]]]
        for j in first:
            i = work[j]
            d_i, n_i = ch.date[i], ch.seats[i]
            if expired[j]:
                where = "reclaimed" if d_i >= s.reclaim[j] else "in grace"
                col, why = "date", f"account expired on {s.expiry[j]} ({where}): seats cannot change until it is renewed"
            elif over[j]:
                col, why = "seats", (f"{s.seats_before[j]} + {n_i} seats would exceed the maximum of "
                                     f"{book.max_seats} per account")
            elif under[j]:
                col, why = "seats", (f"{s.seats_before[j]} - {n_i} seats would go below the minimum of "
                                     f"{book.min_seats} per account")
            elif early[j]:
                col, why = "date", (f"renewal signed before its window opens on {s.window[j]} "
                                    f"(the term ends {s.expiry[j]})")
            else:
                col, why = "date", (f"renewal too late: the account expired on {s.expiry[j]} and was reclaimed "
                                    f"on {s.reclaim[j]}; a new account is needed")
            value = str(d_i) if col == "date" else str(n_i)
            rejects.append(Reject(changes_sheet, int(ch.frame["row"].iat[i]), col, value, why,
                                  ch.frame["customer_id"].iat[i]))
        accepted[work[first]] = False
        work = work[np.isin(ch.code[work], ch.code[work[first]])]
        state = _replay(ch, accepted, work, book)
    if len(work) != n:  # the loop ended on a subset: the state of every row, given the final accepted rows
        state = _replay(ch, accepted, np.arange(n), book)
    return accepted, state


def _line_frame(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The month's lines in print order: per customer, the opening first, then changes by date and row."""
    line_frame = pd.concat([x for x in parts if len(x)], ignore_index=True) if any(len(x) for x in parts) \
        else pd.DataFrame(columns=LINE_COLUMNS)
    line_frame = line_frame[LINE_COLUMNS]
    kind_rank = line_frame["kind"].map({"opening": 0, "addition": 1, "renewal": 1}).to_numpy()
    return line_frame.assign(_k=kind_rank).sort_values(["customer_id", "_k", "date", "row"], kind="stable") \
        .drop(columns="_k").reset_index(drop=True)


def _accounts_at_end(cust, ch: _Changes, accepted, legacy_row, end, book: PriceBook) -> pd.DataFrame:
    """Each account's state at the end of the month, with the renewal it would be quoted."""
    code, size = ch.code, len(cust)
    c_open = cust["opened_on"].to_numpy(dtype="datetime64[D]")
    c_legacy = cust["legacy_fen"].to_numpy(dtype=np.int64)
    delta = np.where(accepted, ch.signed, 0)
    seats_end = cust["seats"].to_numpy(dtype=np.int64) + sum_by_code(delta, code, size)
    renewed = sum_by_code((accepted & ch.is_renew).astype(np.int64), code, size)
    used_rows = rules.legacy_renewal_allowance_used(legacy_row, ch.is_renew, ch.date, book)
    legacy_renew_used = sum_by_code(used_rows.astype(np.int64), code, size) > 0
    accounts = account_state(cust["customer_id"].to_numpy(), c_open,
                             cust["term0"].to_numpy(dtype=np.int64) + renewed, seats_end, end, book)
    quote_legacy = rules.legacy_renewal_quote(rules.legacy_eligible(c_open, c_legacy, book), legacy_renew_used)
    t = tier_table(book)
    ti = tier_index(book, seats_end)
    accounts["quote_unit_fen"] = rules.renewal_unit_fen(book, seats_end, c_legacy, quote_legacy)
    accounts["quote_fen"] = seats_end * accounts["quote_unit_fen"].to_numpy()
    accounts["quote_tier"] = np.where(quote_legacy, "legacy", t.labels[ti])
    return accounts


def account_state(ids, opened, term_k, seats, on, book: PriceBook) -> pd.DataFrame:
    """Status of each account on day ``on``: active / renewal_due / grace / reclaimed, and the date of the
    next status change (window opens -> grace starts -> number reclaimed; none once reclaimed).

    In: parallel arrays (customer ids, opened_on dates, the index of the current term, seats) and a day.
    Out: one row per account with seats, paid_through, status, next_action_on, window_opens_on, reclaim_on.
    """
    expiry = term_end(opened, term_k)
    anniversary, window, reclaim = rules.renewal_dates(expiry, book)
    on = np.datetime64(on, "D")
    status = np.select([on < window, on <= expiry, on < reclaim], list(STATUS_ORDER[:3]), STATUS_ORDER[3])
    nxt = np.select([on < window, on <= expiry, on < reclaim], [window, anniversary, reclaim],
                    np.datetime64("NaT"))
    return pd.DataFrame({
        "customer_id": ids, "seats": seats, "paid_through": expiry, "status": status,
        "next_action_on": nxt.astype("datetime64[D]"), "window_opens_on": window, "reclaim_on": reclaim,
    })


def _opening_lines(cust, book, start, end) -> pd.DataFrame:
    """Accounts opened in the month: a year of every seat at the tier of the seat count (or legacy rate)."""
    t = tier_table(book)
    o = cust["opened_on"].to_numpy(dtype="datetime64[D]")
    sel = (o >= start) & (o <= end)
    c = cust.loc[sel]
    seats = c["seats"].to_numpy(dtype=np.int64)
    ti = tier_index(book, seats)
    legacy = rules.legacy_eligible(o[sel], c["legacy_fen"].to_numpy(), book)
    unit = np.where(legacy, c["legacy_fen"].to_numpy(), t.annual_fen[ti])
    return pd.DataFrame({
        "customer_id": c["customer_id"].to_numpy(), "kind": "opening", "date": o[sel], "seats": seats,
        "account_seats": seats, "months": 12, "whole_months": 12, "extra_days": 0, "unit_fen": unit,
        "annual_fen": unit, "amount_fen": seats * unit, "list_fen": seats * book.list_price_fen,
        "tier": np.where(legacy, "legacy", t.labels[ti]), "legacy": legacy, "capped": False,
        "term_start": o[sel], "term_end": term_end(o[sel], 0), "completes_on": np.datetime64("NaT", "D"),
        "completes_exact": True, "reference": "", "row": c["row"].to_numpy(),
    })


def _addition_lines(ch: _Changes, sel, book, seats_before, expiry, legacy_row, legacy_fen) -> pd.DataFrame:
    """Seats added in the month: seats x monthly rate x whole months to the anniversary, capped at a year."""
    t = tier_table(book)
    d = ch.date[sel]
    added = ch.seats[sel]
    total = seats_before[sel] + added
    ti = tier_index(book, rules.addition_tier_basis(total, added, book))
    legacy = legacy_row[sel]
    annual = np.where(legacy, legacy_fen[sel], t.annual_fen[ti])
    monthly = np.where(legacy, rules.legacy_monthly_fen(legacy_fen[sel], book), t.monthly_fen[ti])
    months, whole, extra = rules.prorate_months(d, expiry[sel] + DAY, book.round_up_after_days)
    amount, capped = rules.cap_at_annual(added * monthly * months, added * annual, book)
    list_monthly = div_round_half_up(book.list_price_fen, book.monthly_divisor)
    list_amount = rules.cap_at_annual(added * list_monthly * months, added * book.list_price_fen, book)[0]
    frame = ch.frame
    return pd.DataFrame({
        "customer_id": frame["customer_id"].to_numpy()[sel], "kind": "addition", "date": d, "seats": added,
        "account_seats": total, "months": months, "whole_months": whole, "extra_days": extra, "unit_fen": monthly,
        "annual_fen": annual, "amount_fen": amount, "list_fen": list_amount,
        "tier": np.where(legacy, "legacy", t.labels[ti]), "legacy": legacy, "capped": capped,
        "term_start": d, "term_end": expiry[sel], "completes_on": np.datetime64("NaT", "D"), "completes_exact": True,
        "reference": frame["reference"].to_numpy()[sel], "row": frame["row"].to_numpy()[sel],
    })


def _renewal_lines(ch: _Changes, sel, book, seats_before, expiry, renews_before, legacy_row,
                   legacy_fen) -> pd.DataFrame:
    """Renewals signed in the month: a year of the seats on the signing date, for the term after expiry."""
    t = tier_table(book)
    d = ch.date[sel]
    seats = seats_before[sel]
    ti = tier_index(book, seats)
    legacy = legacy_row[sel]
    unit = rules.renewal_unit_fen(book, seats, legacy_fen[sel], legacy)
    done, exact = rules.renewal_completes_on(d, book)
    frame = ch.frame
    return pd.DataFrame({
        "customer_id": frame["customer_id"].to_numpy()[sel], "kind": "renewal", "date": d, "seats": seats,
        "account_seats": seats, "months": 12, "whole_months": 12, "extra_days": 0, "unit_fen": unit,
        "annual_fen": unit, "amount_fen": seats * unit, "list_fen": seats * book.list_price_fen,
        "tier": np.where(legacy, "legacy", t.labels[ti]), "legacy": legacy, "capped": False,
        "term_start": expiry[sel] + DAY,
        "term_end": term_end(ch.opened[sel], ch.term0[sel] + renews_before[sel] + 1),
        "completes_on": done, "completes_exact": exact,
        "reference": frame["reference"].to_numpy()[sel], "row": frame["row"].to_numpy()[sel],
    })
