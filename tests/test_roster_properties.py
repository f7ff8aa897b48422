"""Random workbooks (random cell types, blanks, duplicate ids, out-of-range dates and numbers, control
characters): every row is rejected or accepted exactly once, nothing raises, and the summary workbook
can always be written with the rejects."""
from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from invoicer.pipeline import price_roster
from invoicer.render.summary import render_summary
from invoicer.roster import read_roster

from .corpus import CHANGE_HEADER, CUSTOMER_HEADER, partition_violations, write_xlsx_raw

IDS = ["A1", "a1", "B2", "-C3", "_D4", "E\x0b5", "Ｆ６", " G7 ", "H8"]
texts = st.sampled_from(["", " ", "\u00a0", "深圳公司", "=HYPERLINK(1)", "x\x1by", "#N/A", "2026-10-05",
                         "２０２６－１０－０５", "１２", "upgrade", "add", "renew", "加工号", "1e308", "9" * 30])
numbers = st.one_of(st.integers(-10, 60), st.sampled_from([1e308, 1e20, 2.5, -0.0, 4001234567, 1200]))
dates = st.one_of(st.dates(dt.date(2008, 1, 1), dt.date(2027, 12, 31)),
                  st.sampled_from([dt.date(1900, 3, 1), dt.date(2150, 1, 1), dt.date(9999, 12, 31)]))
cell = st.one_of(st.none(), texts, numbers, dates, st.booleans())


def customer_row():
    return st.tuples(st.sampled_from(IDS), st.one_of(texts, st.none()), st.one_of(dates, cell),
                     st.one_of(st.integers(1, 55), cell), st.one_of(st.none(), dates, cell),
                     st.one_of(st.none(), numbers, cell), st.one_of(st.none(), cell)).map(list)


def change_row():
    return st.tuples(st.sampled_from(IDS + ["ZZ"]), st.one_of(dates, cell),
                     st.one_of(st.sampled_from(["add", "remove", "renew", "续费"]), cell),
                     st.one_of(st.integers(-2, 60), cell), st.one_of(st.none(), texts)).map(list)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(customers=st.lists(customer_row(), max_size=8), changes=st.lists(change_row(), max_size=8))
def test_random_workbooks_partition_every_row(tmp_path, book, customers, changes):
    path = write_xlsx_raw(tmp_path / "random.xlsx", {"customers": [CUSTOMER_HEADER[:7], *customers],
                                                     "changes": [CHANGE_HEADER, *changes]})
    priced = price_roster(path, book, "2026-10")
    assert partition_violations(priced, read_roster(path)) == []
    # the run's last step before publishing: the rejects (control characters and all) must be writable
    render_summary([], [], priced.rejects, dt.datetime(2026, 10, 31))
