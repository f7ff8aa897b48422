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
from .dates import DAY, add_months, month_bounds, prorate_months, term_end, to_date
from .workdays import add_working_days

LINE_COLUMNS = [
    "customer_id", "kind", "date", "seats", "account_seats", "months", "whole_months", "extra_days",
    "unit_fen", "annual_fen", "amount_fen", "list_fen", "tier", "legacy", "capped",
    "term_start", "term_end", "completes_on", "completes_exact", "reference", "row",
]

STATUS_ORDER = ("active", "renewal_due", "grace", "reclaimed")


@dataclass
class PeriodResult:
    period: str
    period_start: dt.date
    period_end: dt.date
    lines: pd.DataFrame
    accounts: pd.DataFrame
    rejects: list[Reject]


def _group_cumsum(x: np.ndarray, gstart: np.ndarray) -> np.ndarray:
    """Inclusive cumulative sum of x within runs of equal customer (rows sorted by customer)."""
    c = np.cumsum(x, dtype=np.int64)
    base = np.where(gstart > 0, c[np.maximum(gstart - 1, 0)], 0)
    return c - base


def _tier_arrays(book: PriceBook):
    tiers = sorted(book.tiers, key=lambda t: t.min_seats)
    maxes = np.array([t.max_seats for t in tiers])
    annual = np.array([t.annual_fen for t in tiers], dtype=np.int64)
    monthly = np.array([t.monthly_fen for t in tiers], dtype=np.int64)
    labels = np.array([t.label for t in tiers], dtype=object)
    return maxes, annual, monthly, labels


def tier_index(book: PriceBook, seats: np.ndarray) -> np.ndarray:
    """Index of the tier for each seat count; counts below the first tier use it (one or two added seats)."""
    maxes = _tier_arrays(book)[0]
    return np.minimum(np.searchsorted(maxes, np.asarray(seats), side="left"), len(maxes) - 1)


def price_period(customers: pd.DataFrame, changes: pd.DataFrame, book: PriceBook, period: str,
                 sheets: tuple[str, str] = ("customers", "changes")) -> PeriodResult:
    """Price one calendar month. ``customers`` and ``changes`` are validate.py's typed frames."""
    start, end = month_bounds(period)
    _, changes_sheet = sheets
    maxes, t_annual, t_monthly, t_labels = _tier_arrays(book)
    cutoff = np.datetime64(book.legacy_cutoff, "D")

    cust = customers.loc[customers["valid"].to_numpy() & (customers["opened_on"].to_numpy() <= end)]
    cust = cust.drop_duplicates("customer_id").reset_index(drop=True)
    c_open = cust["opened_on"].to_numpy(dtype="datetime64[D]")
    c_seats = cust["seats"].to_numpy(dtype=np.int64)
    c_term0 = cust["term0"].to_numpy(dtype=np.int64)
    c_legacy = cust["legacy_fen"].to_numpy(dtype=np.int64)
    rejects: list[Reject] = []

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
    signed = np.where(is_add, n_seats, np.where(is_remove, -n_seats, 0))
    n = len(ch)
    gstart = _group_starts(code)

    opened_r, seats0_r, term0_r = c_open[code], c_seats[code], c_term0[code]
    accepted = np.ones(n, dtype=bool)

    def replay(rows: np.ndarray):
        """Running state before each of ``rows`` (whole customers, in order) given the rows accepted."""
        g = gstart if len(rows) == n else _group_starts(code[rows])
        delta = np.where(accepted[rows], signed[rows], 0)
        seats_before = seats0_r[rows] + _group_cumsum(delta, g) - delta
        ren = (accepted[rows] & is_renew[rows]).astype(np.int64)
        renews_before = _group_cumsum(ren, g) - ren
        expiry = term_end(opened_r[rows], term0_r[rows] + renews_before)
        anniversary = expiry + DAY
        return (seats_before, renews_before, expiry, add_months(anniversary, -book.window_months),
                add_months(anniversary, book.grace_months))

    # Each round rejects the first offending row of every customer that has one; a customer with none is
    # settled (its rows depend on nothing else), so later rounds replay only the unsettled customers' rows.
    work = np.arange(n)
    state = replay(work)
    while len(work):
        seats_before, _, expiry, window, reclaim = state
        w_add, w_rem, w_ren, w_d, w_n = is_add[work], is_remove[work], is_renew[work], d[work], n_seats[work]
        expired = (w_add | w_rem) & (w_d > expiry)
        over = w_add & (seats_before + w_n > book.max_seats)
        under = w_rem & (seats_before - w_n < book.min_seats)
        early = w_ren & (w_d < window)
        late = w_ren & (w_d >= reclaim)
        bad = accepted[work] & (expired | over | under | early | late)
        if not bad.any():
            break
        idx = np.flatnonzero(bad)
        first = idx[np.r_[True, code[work[idx]][1:] != code[work[idx]][:-1]]]
        for j in first:
            i = work[j]
            if expired[j]:
                where = "reclaimed" if d[i] >= reclaim[j] else "in grace"
                col, why = "date", f"account expired on {expiry[j]} ({where}): seats cannot change until it is renewed"
            elif over[j]:
                col, why = "seats", (f"{seats_before[j]} + {n_seats[i]} seats would exceed the maximum of "
                                     f"{book.max_seats} per account")
            elif under[j]:
                col, why = "seats", (f"{seats_before[j]} - {n_seats[i]} seats would go below the minimum of "
                                     f"{book.min_seats} per account")
            elif early[j]:
                col, why = "date", (f"renewal signed before its window opens on {window[j]} "
                                    f"(the term ends {expiry[j]})")
            else:
                col, why = "date", (f"renewal too late: the account expired on {expiry[j]} and was reclaimed "
                                    f"on {reclaim[j]}; a new account is needed")
            value = str(d[i]) if col == "date" else str(n_seats[i])
            rejects.append(Reject(changes_sheet, int(ch["row"].iat[i]), col, value, why, ch["customer_id"].iat[i]))
        accepted[work[first]] = False
        work = work[np.isin(code[work], code[work[first]])]
        state = replay(work)
    if len(work) != n:  # the loop ended on a subset: the state of every row, given the final accepted rows
        state = replay(np.arange(n))
    seats_before, renews_before, expiry, _, _ = state

    # legacy allowances: the first accepted add and the first accepted renew on/after the cutoff
    legacy_cust = c_legacy[code] > 0
    after_cut = accepted & (d >= cutoff)
    first_add = _first_in_group(after_cut & is_add, gstart)
    first_renew = _first_in_group(after_cut & is_renew, gstart)
    legacy_row = legacy_cust & accepted & ((d < cutoff) | first_add | first_renew)

    in_period = accepted & (d >= start)
    lines = [_opening_lines(cust, book, start, end, t_annual, t_labels, cutoff)]
    sel = in_period & is_add
    if sel.any():
        lines.append(_addition_lines(ch, sel, book, seats_before, n_seats, expiry, legacy_row, c_legacy[code],
                                     t_annual, t_monthly, t_labels))
    sel = in_period & is_renew
    if sel.any():
        lines.append(_renewal_lines(ch, sel, book, seats_before, expiry, opened_r, term0_r, renews_before,
                                    legacy_row, c_legacy[code], t_annual, t_labels))
    line_frame = pd.concat([x for x in lines if len(x)], ignore_index=True) if any(len(x) for x in lines) \
        else pd.DataFrame(columns=LINE_COLUMNS)
    line_frame = line_frame[LINE_COLUMNS]
    kind_rank = line_frame["kind"].map({"opening": 0, "addition": 1, "renewal": 1}).to_numpy()
    line_frame = line_frame.assign(_k=kind_rank).sort_values(["customer_id", "_k", "date", "row"], kind="stable") \
        .drop(columns="_k").reset_index(drop=True)

    # account state at the end of the period
    delta = np.where(accepted, signed, 0)
    seats_end = c_seats + _sum_by_code(delta, code, len(cust))
    renewed = _sum_by_code((accepted & is_renew).astype(np.int64), code, len(cust))
    legacy_renew_used = _sum_by_code((legacy_row & is_renew & (d >= cutoff)).astype(np.int64), code, len(cust)) > 0
    accounts = account_state(cust["customer_id"].to_numpy(), c_open, c_term0 + renewed, seats_end, end, book)
    quote_legacy = (c_legacy > 0) & ~legacy_renew_used
    ti = tier_index(book, seats_end)
    accounts["quote_unit_fen"] = np.where(quote_legacy, c_legacy, t_annual[ti])
    accounts["quote_fen"] = seats_end * accounts["quote_unit_fen"].to_numpy()
    accounts["quote_tier"] = np.where(quote_legacy, "legacy", t_labels[ti])
    return PeriodResult(period, to_date(start), to_date(end), line_frame, accounts, rejects)


def _group_starts(code: np.ndarray) -> np.ndarray:
    """For rows sorted by customer code: the index of the first row of each row's customer."""
    n = len(code)
    if not n:
        return np.zeros(0, np.int64)
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = code[1:] != code[:-1]
    return np.maximum.accumulate(np.where(new_group, np.arange(n), 0))


def _sum_by_code(x: np.ndarray, code: np.ndarray, size: int) -> np.ndarray:
    sums = pd.Series(x, dtype="int64").groupby(code).sum()
    out = np.zeros(size, dtype=np.int64)
    out[sums.index.to_numpy()] = sums.to_numpy()
    return out


def _first_in_group(mask: np.ndarray, gstart: np.ndarray) -> np.ndarray:
    m = mask.astype(np.int64)
    return mask & (_group_cumsum(m, gstart) == 1)


def account_state(ids, opened, term_k, seats, on, book: PriceBook) -> pd.DataFrame:
    """Status of each account on day ``on``: active / renewal_due / grace / reclaimed, and the date of the
    next status change (window opens -> grace starts -> number reclaimed; none once reclaimed)."""
    expiry = term_end(opened, term_k)
    anniversary = expiry + DAY
    window = add_months(anniversary, -book.window_months)
    reclaim = add_months(anniversary, book.grace_months)
    on = np.datetime64(on, "D")
    status = np.select([on < window, on <= expiry, on < reclaim], list(STATUS_ORDER[:3]), STATUS_ORDER[3])
    nxt = np.select([on < window, on <= expiry, on < reclaim], [window, anniversary, reclaim],
                    np.datetime64("NaT"))
    return pd.DataFrame({
        "customer_id": ids, "seats": seats, "paid_through": expiry, "status": status,
        "next_action_on": nxt.astype("datetime64[D]"), "window_opens_on": window, "reclaim_on": reclaim,
    })


def _opening_lines(cust, book, start, end, t_annual, t_labels, cutoff) -> pd.DataFrame:
    o = cust["opened_on"].to_numpy(dtype="datetime64[D]")
    sel = (o >= start) & (o <= end)
    c = cust.loc[sel]
    seats = c["seats"].to_numpy(dtype=np.int64)
    ti = tier_index(book, seats)
    legacy = (c["legacy_fen"].to_numpy() > 0) & (o[sel] < cutoff)
    unit = np.where(legacy, c["legacy_fen"].to_numpy(), t_annual[ti])
    return pd.DataFrame({
        "customer_id": c["customer_id"].to_numpy(), "kind": "opening", "date": o[sel], "seats": seats,
        "account_seats": seats, "months": 12, "whole_months": 12, "extra_days": 0, "unit_fen": unit,
        "annual_fen": unit, "amount_fen": seats * unit, "list_fen": seats * book.list_price_fen,
        "tier": np.where(legacy, "legacy", t_labels[ti]), "legacy": legacy, "capped": False,
        "term_start": o[sel], "term_end": term_end(o[sel], 0), "completes_on": np.datetime64("NaT", "D"),
        "completes_exact": True, "reference": "", "row": c["row"].to_numpy(),
    })


def _addition_lines(ch, sel, book, seats_before, n_seats, expiry, legacy_row, legacy_fen, t_annual, t_monthly,
                    t_labels) -> pd.DataFrame:
    d = ch["date"].to_numpy(dtype="datetime64[D]")[sel]
    added = n_seats[sel]
    total = seats_before[sel] + added
    basis = total if book.tier_basis == "account_total" else added
    ti = tier_index(book, basis)
    legacy = legacy_row[sel]
    annual = np.where(legacy, legacy_fen[sel], t_annual[ti])
    legacy_monthly = np.array([div_round_half_up(int(x), book.monthly_divisor) for x in legacy_fen[sel]],
                              dtype=np.int64)
    monthly = np.where(legacy, legacy_monthly, t_monthly[ti])
    months, whole, extra = prorate_months(d, expiry[sel] + DAY, book.round_up_after_days)
    raw = added * monthly * months
    cap = added * annual
    capped = book.cap_at_annual & (raw > cap)
    amount = np.where(capped, cap, raw)
    list_monthly = div_round_half_up(book.list_price_fen, book.monthly_divisor)
    list_amount = np.minimum(added * list_monthly * months, added * book.list_price_fen) if book.cap_at_annual \
        else added * list_monthly * months
    return pd.DataFrame({
        "customer_id": ch["customer_id"].to_numpy()[sel], "kind": "addition", "date": d, "seats": added,
        "account_seats": total, "months": months, "whole_months": whole, "extra_days": extra, "unit_fen": monthly,
        "annual_fen": annual, "amount_fen": amount, "list_fen": list_amount,
        "tier": np.where(legacy, "legacy", t_labels[ti]), "legacy": legacy, "capped": capped,
        "term_start": d, "term_end": expiry[sel], "completes_on": np.datetime64("NaT", "D"), "completes_exact": True,
        "reference": ch["reference"].to_numpy()[sel], "row": ch["row"].to_numpy()[sel],
    })


def _renewal_lines(ch, sel, book, seats_before, expiry, opened, term0, renews_before, legacy_row, legacy_fen,
                   t_annual, t_labels) -> pd.DataFrame:
    d = ch["date"].to_numpy(dtype="datetime64[D]")[sel]
    seats = seats_before[sel]
    ti = tier_index(book, seats)
    legacy = legacy_row[sel]
    unit = np.where(legacy, legacy_fen[sel], t_annual[ti])
    done = [add_working_days(to_date(x), book.completion_working_days, book.calendar) for x in d]
    return pd.DataFrame({
        "customer_id": ch["customer_id"].to_numpy()[sel], "kind": "renewal", "date": d, "seats": seats,
        "account_seats": seats, "months": 12, "whole_months": 12, "extra_days": 0, "unit_fen": unit,
        "annual_fen": unit, "amount_fen": seats * unit, "list_fen": seats * book.list_price_fen,
        "tier": np.where(legacy, "legacy", t_labels[ti]), "legacy": legacy, "capped": False,
        "term_start": expiry[sel] + DAY, "term_end": term_end(opened[sel], term0[sel] + renews_before[sel] + 1),
        "completes_on": np.array([x for x, _ in done], dtype="datetime64[D]"),
        "completes_exact": np.array([ok for _, ok in done], dtype=bool),
        "reference": ch["reference"].to_numpy()[sel], "row": ch["row"].to_numpy()[sel],
    })
