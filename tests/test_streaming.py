"""A run holds a chunk of the month, not the month (issue #13): invoices are built from the frames a chunk
at a time on every pass (documents.InvoiceSet), what is issued is numbered as a stream (pipeline.IssueList,
ledger.number_stream) and rendered and recorded in batches, and publishing streams the period's bills from
the ledger (publish.PeriodBills) into the summary and the e-fapiao export. None of that may change a byte:
these tests run the same months with tiny chunks and batches and compare everything."""
from __future__ import annotations

import datetime as dt
import sqlite3
from datetime import date as D
from pathlib import Path

import pytest

from invoicer import documents, pipeline, pricebook, publish, stage
from invoicer.pipeline import RunOptions, run
from invoicer.render import fapiao, summary

from .conftest import change, cust, write_roster


def _month(tmp_path: Path, name: str, n: int = 13, drop: tuple = (), more_seats: tuple = ()) -> Path:
    customers, changes = [], []
    for i in range(n):
        cid = f"C{i:03d}"
        if cid in drop:
            continue
        if i % 3 == 0:  # opens in the month
            customers.append(cust(cid, D(2026, 10, 1 + i), 3 + i, tax_id="" if i == 6 else None))
        elif i % 3 == 1:  # adds seats in the month
            customers.append(cust(cid, D(2026, 3, 1 + i), 5))
            changes.append(change(cid, D(2026, 10, 2 + i), "add", 1 + i % 4 + (1 if cid in more_seats else 0)))
        else:  # due for renewal: a notice
            customers.append(cust(cid, D(2025, 11, 1 + i), 4))
    return write_roster(tmp_path / name, customers, changes)


def _run(roster: Path, out: Path, amend=False) -> pipeline.RunReport:
    return run(RunOptions(roster=roster, period="2026-10", out=out, progress=False, workers=1, amend=amend))


def _ledger_rows(out: Path) -> list[tuple]:
    db = sqlite3.connect(out / "ledger.sqlite")
    try:
        return db.execute("SELECT kind, number, customer_id, content_json, file_name, file_sha256 FROM documents "
                          "ORDER BY id").fetchall()
    finally:
        db.close()


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and not p.name.startswith("ledger.sqlite") and p.name != "manifest.json"}


def test_tiny_chunks_and_batches_issue_the_same_month_byte_for_byte(tmp_path, monkeypatch, stub_render):
    first, amended = _month(tmp_path, "a.xlsx"), _month(tmp_path, "b.xlsx", drop=("C012",), more_seats=("C007",))
    _run(first, tmp_path / "big")
    big_amend = _run(amended, tmp_path / "big", amend=True)
    monkeypatch.setattr(stage, "PARTITION_ROWS", 2)  # documents are built a partition at a time
    monkeypatch.setattr(pipeline, "RENDER_BATCH", 3)
    monkeypatch.setattr(publish.PeriodBills, "BATCH", 2)
    _run(first, tmp_path / "small")
    small_amend = _run(amended, tmp_path / "small", amend=True)
    assert big_amend.issued == small_amend.issued
    # a credit note and its replacement, and a withdrawn invoice's credit note, numbered in customer order
    kinds = [r[0] for r in _ledger_rows(tmp_path / "big")]
    assert kinds.count("credit_note") == 2 and len(big_amend.issued) == 3
    assert _ledger_rows(tmp_path / "big") == _ledger_rows(tmp_path / "small")
    assert _files(tmp_path / "big") == _files(tmp_path / "small")


def _numbered_row_by_row(ledger, prefix: str, groups, digits: int) -> list[dict]:
    """The numbering as Ledger.number did it before it was a stream (the oracle): all groups sorted by
    customer id, each year's next number read from the ledger when the year is first met."""
    from invoicer.ledger import format_number

    out, next_by_year = [], {}
    for _, group in sorted(groups, key=lambda w: w[0]):
        for doc in group:
            year = D.fromisoformat(doc["issue_date"]).year
            if year not in next_by_year:
                next_by_year[year] = ledger.next_seq(prefix, year)
            out.append({**doc, "number": format_number(prefix, year, next_by_year[year], digits)})
            next_by_year[year] += 1
    return out


def test_issue_list_numbers_as_the_row_by_row_rule_did(tmp_path, stub_render):
    """The streamed numbering gives what the row-by-row numbering gave for the same plan (a new invoice; a
    credit note before its replacement; a credit note alone), customer by customer."""
    from invoicer.ledger import Ledger

    _run(_month(tmp_path, "a.xlsx"), tmp_path / "out")
    book = pricebook.load_default()
    priced = pipeline.price_roster(_month(tmp_path, "b.xlsx", n=15, drop=("C004",), more_seats=("C007",)), book,
                                   "2026-10")
    ledger = Ledger(tmp_path / "out" / "ledger.sqlite")
    try:
        ledger.begin_read()
        plan = pipeline.plan_against(ledger, priced.prefix, "2026-10", priced.invoices)
        assert plan.new and plan.changed and plan.withdrawn
        streamed = [(d["number"], d["kind"], d["customer"]["customer_id"])
                    for d, _, _ in pipeline.IssueList(ledger, priced, plan, "2026-10", book.number_digits)
                    if d["kind"] != "notice"]
        groups = [(n.customer_id, [next(d for d in priced.invoices if d["customer"]["customer_id"] == n.customer_id)])
                  for n in plan.new]
        for new, old in plan.changed:
            credit = documents.credit_note_for({**old.content, "number": old.number}, D(2026, 10, 31))
            groups.append((old.customer_id, [credit, {**new, "replaces": old.number}]))
        for old in plan.withdrawn:
            groups.append((old.customer_id, [documents.credit_note_for({**old.content, "number": old.number},
                                                                       D(2026, 10, 31))]))
        reference = [(d["number"], d["kind"], d["customer"]["customer_id"])
                     for d in _numbered_row_by_row(ledger, priced.prefix, groups, book.number_digits)]
        assert streamed == reference
    finally:
        ledger.rollback()
        ledger.close()


def test_invoice_set_is_the_built_list_in_chunks(priced, monkeypatch):
    monkeypatch.setattr(stage, "PARTITION_ROWS", 2)  # documents are built a partition at a time
    p = priced([cust(f"C{i}", D(2026, 10, 1 + i), 3 + i) for i in range(5)])
    built = list(p.invoices)
    assert len(p.invoices) == 5 and [d["customer"]["customer_id"] for d in built] == [f"C{i}" for i in range(5)]
    assert p.invoices[4] == built[4] and p.invoices[-1] == built[-1] and p.invoices[1:3] == built[1:3]
    assert p.invoices == built and list(p.invoices) == built  # every pass builds the same documents
    assert p.invoices.total_fen == sum(d["total_fen"] for d in built)
    assert p.invoices.totals() == [(d["customer"]["customer_id"], d["total_fen"]) for d in built]
    with pytest.raises(IndexError):
        p.invoices[5]
    total = p.invoices.total_fen
    p.invoices.release()  # what a run does once they are recorded (publishing reads the ledger)
    assert len(p.invoices) == 5 and p.invoices.total_fen == total
    with pytest.raises(RuntimeError, match="released"):
        list(p.invoices)


def test_a_dry_run_without_a_ledger_builds_no_invoice(tmp_path, monkeypatch):
    """Its plan (whose invoice, how much) comes from the frames: at 100,000 customers building every
    invoice only to read two fields of each cost seconds."""
    roster = _month(tmp_path, "r.xlsx")
    want = pipeline.price_roster(roster, pricebook.load_default(), "2026-10").invoices.totals()

    def no(*a, **k):
        raise AssertionError("an invoice was built")

    monkeypatch.setattr(documents, "build_invoices", no)
    rep = run(RunOptions(roster=roster, period="2026-10", out=tmp_path / "out", dry_run=True, progress=False))
    assert [(n.customer_id, n.total_fen) for n in rep.plan.new] == want and len(want) > 3
    assert not (tmp_path / "out" / "ledger.sqlite").exists()


class _TwoPasses:
    """An iterable that may be read twice, like publish.PeriodBills, and counts its passes."""

    def __init__(self, docs):
        self.docs, self.passes = docs, 0

    def __iter__(self):
        self.passes += 1
        return iter(list(self.docs))


def _bills(priced, n):
    docs = []
    for i, d in enumerate(priced([cust(f"C{i}", D(2026, 10, 1 + i), 3 + i, tax_id="91440300MA5EXAMPLE" if i == 2
                                       else "") for i in range(n)]).invoices, 1):
        docs.append({**d, "number": f"T-2026-{i:06d}", "status": "issued"})
    return docs


def test_summary_and_exports_from_a_stream_equal_those_from_a_list(priced, monkeypatch):
    docs = _bills(priced, 6)
    when = dt.datetime(2026, 10, 31)
    stream = _TwoPasses(docs)
    assert summary.render_summary(stream, [], [], when) == summary.render_summary(docs, [], [], when)
    assert stream.passes == 2  # the invoices sheet, then the lines sheet with the totals
    vat = pricebook.load_default().vat.snapshot()
    monkeypatch.setattr(fapiao, "ROWS_MAY_FAIL", 1)  # a file per bill: parts made as they fill
    stream = _TwoPasses(docs)
    a, b = fapiao.build_exports(stream, vat, {}, when), fapiao.build_exports(list(reversed(docs)), vat, {}, when)
    assert stream.passes == 1 and (a.main, a.more, a.problems) == (b.main, b.more, b.problems)


def test_a_month_of_problems_is_a_screenful_on_the_console_and_whole_in_the_sheet(priced):
    import io

    from openpyxl import load_workbook

    docs = _bills(priced, fapiao.CONSOLE_PROBLEMS + 6)  # one bill has a tax id; the others are problems
    ex = fapiao.build_exports(docs, pricebook.load_default().vat.snapshot(), {}, dt.datetime(2026, 10, 31))
    assert len(ex.problems) == fapiao.CONSOLE_PROBLEMS + 1
    assert ex.problems[-1].startswith("fapiao: 5 more problem(s)")
    sheet = load_workbook(io.BytesIO(ex.main))[fapiao.PROBLEMS_SHEET]
    assert sheet.max_row - 1 == fapiao.CONSOLE_PROBLEMS + 5  # a row per bill left out


def test_a_dry_run_against_a_ledger_closes_it(tmp_path, monkeypatch, stub_render):
    """A long-lived caller (the watcher) must not keep a handle on the ledger after a dry run."""
    from invoicer import ledger as ledger_mod

    roster = _month(tmp_path, "a.xlsx", n=3)
    _run(roster, tmp_path / "out")
    closed = []
    real = ledger_mod.LedgerReader.close
    monkeypatch.setattr(ledger_mod.LedgerReader, "close", lambda self: (closed.append(self), real(self))[1])
    report = run(RunOptions(roster=roster, period="2026-10", out=tmp_path / "out", progress=False, workers=1,
                            dry_run=True))
    assert report.dry_run and len(report.plan.unchanged) == 2 and closed


def test_account_rows_in_chunks_are_the_sorted_accounts(priced):
    p = priced([cust(c, D(2026, 10, 3), 3 + i, name=f"公司{c}") for i, c in enumerate(["Z9", "A1", "M5", "B2", "Y0"])])
    whole = list(publish.account_records(p.accounts))
    assert [a["customer_id"] for a in whole] == ["A1", "B2", "M5", "Y0", "Z9"]
    assert [a["customer_name"] for a in whole] == ["公司A1", "公司B2", "公司M5", "公司Y0", "公司Z9"]
    assert list(publish.account_records(p.accounts, chunk=2)) == whole


def test_the_manifest_is_written_as_json_dumps_would_and_only_when_it_changed(tmp_path):
    import json

    path = tmp_path / "manifest.json"
    obj = {"files": {f"invoices/QQ-2026-{i:06d}.pdf": "ab" * 32 for i in range(20_000)}, "名": ["中文", None, 1]}
    expected = (json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode()
    assert publish.write_json(path, obj) is True and path.read_bytes() == expected
    inode = path.stat().st_ino
    assert publish.write_json(path, obj) is False and path.stat().st_ino == inode  # same bytes: left alone

    def broken():
        yield b"{"
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        publish.atomic_write_blocks(path, broken())
    assert path.read_bytes() == expected and [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_a_made_file_replaces_its_place_only_when_its_bytes_differ(tmp_path):
    """The summary is written into a temporary file beside its place, never held in memory: an equal file
    is left alone (same inode), a different one replaced atomically, a failed write leaves the old file and
    no temporary file."""
    path = tmp_path / "summary.xlsx"
    body = b"PK" + bytes(range(256)) * 20_000  # several blocks of the hash loop

    assert publish.write_made_if_different(path, lambda f: f.write(body)) == (True, publish.sha256(body))
    assert path.read_bytes() == body
    inode = path.stat().st_ino
    assert publish.write_made_if_different(path, lambda f: f.write(body)) == (False, publish.sha256(body))
    assert path.stat().st_ino == inode and [p.name for p in tmp_path.iterdir()] == ["summary.xlsx"]

    def full_disk(f):
        f.write(b"PK half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        publish.write_made_if_different(path, full_disk)
    assert path.read_bytes() == body and [p.name for p in tmp_path.iterdir()] == ["summary.xlsx"]
    assert publish.write_made_if_different(path, lambda f: f.write(b"PK other"))[0] is True
    assert path.read_bytes() == b"PK other" and path.stat().st_ino != inode


def test_buyer_columns_are_the_valid_customers_fapiao_columns(tmp_path, book):
    from invoicer.pipeline import price_roster
    from invoicer.publish_fapiao import BuyerColumns

    from .test_fapiao import TAX_A, _roster

    rows = [["A", "甲", D(2026, 10, 3), 5, None, None, TAX_A, "专票", "021-1", "工行", "6225 0000 1111"],
            ["B", "乙", D(2026, 10, 3), 5, None, None, TAX_A, "纸质发票", None, None, None],
            ["C", "丙", D(2026, 10, 3), 5, None, None, TAX_A, None, None, None, None]]
    p = price_roster(_roster(tmp_path / "r.xlsx", rows, []), book, "2026-10")
    buyers = BuyerColumns(p.roster.customers)
    assert buyers.get("A", {}) == {"fapiao_kind": "增值税专用发票", "phone": "021-1", "bank": "工行",
                                   "bank_account": "6225 0000 1111"}
    assert buyers.get("B", {}) == {}  # its row was rejected
    assert buyers.get("C") == {"fapiao_kind": "", "phone": "", "bank": "", "bank_account": ""}  # empty cells
    assert buyers.get("nobody", {}) == {}
