"""The roster is validated and priced a partition of customers at a time (invoicer/stage.py). A partition
holds whole customers (every row whose id reads the same ignoring case), so every rule sees what it would
see in the whole roster. These tests prove it: the same roster priced in partitions of one and two
customers rows gives exactly what it gives in one partition: the rejects, the held invoices, every invoice
and notice, the summary's accounts, the e-fapiao buyer columns, the warnings; and a whole run publishes the
same bytes."""
from __future__ import annotations

import datetime as dt
import filecmp
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from invoicer import pipeline, stage
from invoicer.publish import account_records
from invoicer.roster import read_roster

from .conftest import SAMPLE, run_cli
from .corpus import CHANGE_HEADER, CUSTOMER_HEADER, write_corpus, write_xlsx_raw
from .test_roster_properties import change_row, customer_row

WHOLE = 10**9


def observed(priced) -> dict:
    """Everything a run takes from pricing, as plain values."""
    ids = sorted(set(priced.roster.customers["customer_id"]) | {"ZZ", ""})
    return {
        "rejects": [(r.sheet, r.row, r.column, r.value, r.reason, r.customer_id) for r in priced.rejects],
        "held": priced.held,
        "warnings": list(priced.roster.warnings),
        "reseller": priced.roster.reseller,
        "prefix": priced.prefix,
        "invoices": list(priced.invoices),
        "invoice_count": len(priced.invoices),
        "total_fen": priced.invoices.total_fen,
        "totals": priced.invoices.totals(),
        "notices": list(priced.notices),
        "notice_count": len(priced.notices),
        "accounts": list(account_records(priced.accounts)),
        "account_count": len(priced.accounts),
        "buyers": {cid: priced.roster.buyers.get(cid) for cid in ids},
        "issue_date": priced.issue_date,
    }


def priced_in(path, book, size: int, period: str = "2026-10"):
    priced = pipeline._price(read_roster(path), book, period, partition_rows=size)
    try:
        return observed(priced)
    finally:
        priced.close()


def assert_same_in_every_partitioning(path, book, period="2026-10", sizes=(1, 2)):
    """One customer key per partition (1), and keys grouped (2: a key of two rows makes one alone)."""
    whole = priced_in(path, book, WHOLE, period)
    for size in sizes:
        assert priced_in(path, book, size, period) == whole, f"partitions of {size}"
    return whole


# ids that differ only in case, in width (NFKC), in surrounding spaces, and one no customer row names
IDS = ["a1", "A1", "b2", "B2", "c3", "Ｃ3", " d4 ", "m5", "Z9", "z9", "k-1", "K_2"]
OPENED = st.dates(dt.date(2008, 1, 1), dt.date(2026, 10, 31))


def valid_customer():
    return st.tuples(st.sampled_from(IDS), st.just("公司"), OPENED, st.integers(3, 50), st.none(),
                     st.one_of(st.none(), st.sampled_from([900, 1200.5])), st.none()).map(list)


def valid_change():
    return st.tuples(st.sampled_from(IDS + ["q7"]), st.dates(dt.date(2009, 1, 1), dt.date(2026, 12, 31)),
                     st.sampled_from(["add", "remove", "renew", "续费", "加工号"]), st.integers(1, 12),
                     st.none()).map(list)


def _workbook(tmp_path, customers, changes):
    return write_xlsx_raw(tmp_path / "roster.xlsx", {"customers": [CUSTOMER_HEADER[:7], *customers],
                                                    "changes": [CHANGE_HEADER, *changes]})


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(customers=st.lists(valid_customer(), max_size=10), changes=st.lists(valid_change(), max_size=12),
       period=st.sampled_from(["2026-10", "2026-11", "2027-02"]))
def test_billable_rosters_give_the_same_in_every_partitioning(tmp_path, book, customers, changes, period):
    assert_same_in_every_partitioning(_workbook(tmp_path, customers, changes), book, period)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(customers=st.lists(customer_row(), max_size=8), changes=st.lists(change_row(), max_size=8))
def test_hostile_rosters_give_the_same_in_every_partitioning(tmp_path, book, customers, changes):
    assert_same_in_every_partitioning(_workbook(tmp_path, customers, changes), book)


def test_the_tests_rosters_bill_across_partitions(tmp_path, book):
    """The comparison is not vacuous: a roster of mixed-case ids bills several customers, holds some, and is
    cut into as many partitions as it has customers."""
    customers = [[cid, "公司", dt.date(2025, 10, 10), 5, None, None, None] for cid in ("b2", "A1", "a1", "c3", "Z9")]
    changes = [["c3", dt.date(2026, 10, 3), "add", 2, None], ["q7", dt.date(2026, 10, 3), "add", 2, None],
               ["Z9", dt.date(2026, 10, 9), "remove", 1, None]]
    path = _workbook(tmp_path, customers, changes)
    whole = assert_same_in_every_partitioning(path, book)
    assert [d["customer"]["customer_id"] for d in whole["invoices"]] == ["c3"]
    assert [a["customer_id"] for a in whole["accounts"]] == ["A1", "Z9", "b2", "c3"]  # code point order
    assert {r[5] for r in whole["rejects"]} == {"a1", "q7"}
    assert whole["held"]["a1"] == "held: customers row 4 rejected (customer_id)"  # a duplicate of A1 (row 3)
    # A1 gets no invoice either (ids are compared ignoring case), and its summary row says why
    held = {a["customer_id"]: a["invoice_held"] for a in whole["accounts"]}
    assert held == {"A1": "held: customers row 4 rejected (customer_id)", "Z9": "", "b2": "", "c3": ""}
    raw = read_roster(path)
    sizes = [len(c) for c, _ in raw.stage.partitions(1)]
    assert sizes == [2, 1, 1, 1, 0]  # A1 with a1; b2; c3; Z9; the changes of q7 (no customers row) last


def test_the_corpus_and_the_sample_give_the_same_in_every_partitioning(tmp_path, book):
    """Partitioning happens after reading, so of the corpus's cases holding the same content in other
    formats (``same_as``) one is enough."""
    (tmp_path / "corpus").mkdir()
    cases = [c for c in write_corpus(tmp_path / "corpus") if c.expect == "rows"]
    paths = [SAMPLE] + [c.path for c in cases if c.same_as != "base"] + [next(c.path for c in cases if c.same_as)]
    assert len(paths) > 5
    for path in paths:
        assert_same_in_every_partitioning(path, book, sizes=(1,))


def test_a_run_in_partitions_of_one_publishes_the_same_files(tmp_path, stub_render, monkeypatch):
    """The whole run, CLI to files, with every customer its own partition, gives the folder a run in one
    partition gives: summary, e-fapiao export and PDFs byte for byte, the same manifest entries."""
    whole = tmp_path / "whole"
    assert run_cli("run", SAMPLE, "--period", "2026-10", "--out", whole, "--workers", 1).returncode == 1
    monkeypatch.setattr(stage, "PARTITION_ROWS", 1)
    parts = tmp_path / "parts"
    assert run_cli("run", SAMPLE, "--period", "2026-10", "--out", parts, "--workers", 1).returncode == 1
    a, b = (json.loads((d / "manifest.json").read_text()) for d in (whole, parts))
    assert a["files"] == b["files"] and a["counts"] == b["counts"] and a["total_fen"] == b["total_fen"]
    assert len(a["files"]) > 20
    names = [n for n in a["files"]]
    match, mismatch, errors = filecmp.cmpfiles(whole, parts, names, shallow=False)
    assert (mismatch, errors) == ([], []) and len(match) == len(names)


def test_a_full_temporary_folder_stops_the_run_in_one_line_before_anything_is_issued(tmp_path, monkeypatch):
    """The stage is a temporary file: a full disk there (SQLite's "database or disk is full", made here by
    capping the file at a few pages) is one line and exit 2, and nothing is numbered."""
    real_init = stage.RosterStage.__init__

    def small(self, columns):
        real_init(self, columns)
        self.db.execute("PRAGMA max_page_count = 8")

    monkeypatch.setattr(stage.RosterStage, "__init__", small)
    out = tmp_path / "out"
    r = run_cli("run", SAMPLE, "--period", "2026-10", "--out", out, "--workers", 1)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "temporary copy of the roster failed (database or disk is full)" in r.stderr
    assert "Traceback" not in r.stderr and not (out / "ledger.sqlite").exists()
