"""Invariants, checked with hypothesis over generated histories."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from invoicer import documents, pricebook
from invoicer.pricing import reference
from invoicer.pricing.engine import price_period
from invoicer.pricing.rules import prorate_months

BOOK = pricebook.load_default()
dates = st.dates(min_value=dt.date(2008, 1, 1), max_value=dt.date(2030, 12, 31))


@st.composite
def change_and_anniversary(draw):
    """A change date and an anniversary after it, at most a year later (a seat is added within a term)."""
    d = draw(dates)
    days_to_year = (reference.add_months(d, 12) - d).days
    return d, d + dt.timedelta(days=draw(st.integers(1, days_to_year)))


@given(change_and_anniversary())
def test_prorated_months_are_between_0_and_12_and_match_the_reference(case):
    d, anniversary = case
    months, whole, extra = prorate_months(np.datetime64(d), np.datetime64(anniversary), 15)
    assert 0 <= int(months) <= 12 and 0 <= int(extra) <= 31
    assert int(months) == reference.months_to(d, anniversary, 15)


@st.composite
def histories(draw):
    n = draw(st.integers(1, 6))
    customers, changes = [], []
    row = 2
    for i in range(n):
        opened = draw(st.dates(dt.date(2008, 6, 1), dt.date(2026, 10, 31)))
        legacy = draw(st.sampled_from([0, 0, 80000, 123456])) if opened < dt.date(2010, 3, 1) else 0
        customers.append({"customer_id": f"C{i}", "name": f"n{i}", "opened_on": opened,
                          "seats": draw(st.integers(3, 50)), "term0": 0, "legacy_fen": legacy, "row": i + 2})
        day = opened
        for _ in range(draw(st.integers(0, 8))):
            day = day + dt.timedelta(days=draw(st.integers(0, 400)))
            kind = draw(st.sampled_from(["add", "add", "remove", "renew", "renew"]))
            seats = draw(st.integers(1, 30)) if kind != "renew" else 0
            changes.append({"customer_id": f"C{i}", "date": day, "type": kind, "seats": seats, "reference": "",
                            "row": row})
            row += 1
    # the billed month is one in which something happens (an opening or a change row), so every example
    # prices or rejects something; a fixed list of months left almost every example with nothing to compare
    moments = [c["opened_on"] for c in customers] + [c["date"] for c in changes]
    period = draw(st.sampled_from(moments)).strftime("%Y-%m")
    return customers, changes, period


def frames(customers, changes):
    c = pd.DataFrame(customers)
    c["opened_on"] = c["opened_on"].astype("datetime64[s]")
    c["paid_through"] = c["opened_on"]
    c["valid"] = True
    for k in ("qq_number", "email", "address", "tax_id"):
        c[k] = ""
    ch = pd.DataFrame(changes, columns=["customer_id", "date", "type", "seats", "reference", "row"])
    ch["date"] = ch["date"].astype("datetime64[s]")
    ch["seats"] = ch["seats"].astype("int64")
    return c, ch


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_vectorized_engine_equals_the_row_by_row_reference(h):
    customers, changes, period = h
    c, ch = frames(customers, changes)
    result = price_period(c, ch, BOOK, period)
    got = [(r.customer_id, r.kind, r.date.date(), int(r.seats), int(r.months), int(r.unit_fen), int(r.amount_fen))
           for r in result.lines.itertuples()]
    want, rejected = reference.price_period(customers, changes, BOOK, period)
    assert got == want
    assert {r.row for r in result.rejects} == rejected
    for line in result.lines.itertuples():
        # at most a year, except a seat added in the last month of a term after the renewal was signed early:
        # it runs to the new paid-through date (SPEC: months to the paid-through date), up to 13 months
        renewed_ahead = line.term_end > line.date + pd.DateOffset(years=1)
        assert 0 <= line.months <= (13 if renewed_ahead else 12), line
        if line.kind == "addition":  # a prorated seat never costs more than a year
            assert line.amount_fen <= line.seats * line.annual_fen


@settings(max_examples=60, deadline=None)
@given(histories())
def test_lines_sum_to_invoice_totals_which_sum_to_the_summary_totals(h):
    from invoicer.render.summary import Totals

    customers, changes, period = h
    c, ch = frames(customers, changes)
    result = price_period(c, ch, BOOK, period)
    invs = documents.build_invoices(result.lines, c, set(), {}, BOOK, period, dt.date(2026, 10, 31))
    assume(invs)  # a month with only rejected rows has nothing to sum
    for inv in invs:
        assert inv["total_fen"] == sum(x["amount_fen"] for x in inv["lines"])
    invs = [{**i, "number": f"N{k}"} for k, i in enumerate(invs)]
    totals = Totals()
    for inv in invs:
        totals.add(inv)
    grand = totals.rows()[-1]
    assert int(grand[-1] * 100) == sum(i["total_fen"] for i in invs) == int(result.lines["amount_fen"].sum())
