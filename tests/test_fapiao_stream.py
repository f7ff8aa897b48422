"""The e-fapiao exports made and checked one file at a time (issue #13: memory flat in the number of bills):
publish writes each import file as soon as it is full and verify compares each as it is rebuilt, and the
bytes are those the whole-period build made before (``_whole_period``: that code, kept here as it was), so
folders written before still verify."""
from __future__ import annotations

import datetime as dt
import io
import types

import pandas as pd
import pytest

from invoicer import documents, pricebook
from invoicer.publish import sha256
from invoicer.publish_fapiao import (
    expected_exports,
    fapiao_file_names,
    part_name,
    write_fapiao_exports,
)
from invoicer.render import fapiao
from invoicer.render.fapiao import (
    BASIC,
    CONSOLE_PROBLEMS,
    DETAIL,
    ILLEGAL_CHARACTERS_RE,
    LEFT_OUT,
    PROBLEM_COLUMNS,
    PROBLEMS_SHEET,
    RED_COLUMNS,
    SHEETS,
    VERSION_CELL,
    Exports,
    Workbook,
    _headers,
    _official_sheet,
    _text,
    bill_rows,
    plain_yuan,
    split_gross,
)
from invoicer.render.summary import deterministic_zip

from .conftest import change, cust, run_cli

D = dt.date
TAX = "91350100M000100Y43"
WHEN = dt.datetime(2026, 10, 31)


# ---- the whole-period build as it was (ea620a4), the reference the streamed files must equal: every file
# made at the end in openpyxl's cells (only bill_rows and the official sheets' layout are shared) ----------

def _whole_period(documents, default_vat: dict, extras, created: dt.datetime, rows_may_fail: int) -> Exports:
    if isinstance(documents, list):
        documents = sorted(documents, key=lambda d: d["number"])
    first: list = []
    part: list = first
    more: list[bytes] = []
    rows_in_part = detail_rows = 0
    problem_rows: list[list[str]] = []
    console: list[str] = []
    credits: list[dict] = []
    replaced_by: dict[str, str] = {}
    for doc in documents:
        if doc.get("replaces"):
            replaced_by[doc["replaces"]] = doc["number"]
        if doc["kind"] == "credit_note":
            credits.append(doc)
        if doc["kind"] != "invoice" or doc.get("status", "issued") != "issued":
            continue
        vat = doc.get("vat") or default_vat
        basic, details, problems = bill_rows(doc, extras.get(doc["customer"]["customer_id"], {}), vat)
        if problems:
            for p in problems:
                problem_rows.append([doc["number"], doc["customer"]["customer_id"], p, LEFT_OUT])
                console.append(f"fapiao: bill {doc['number']} ({doc['customer']['customer_id']}) left out of the "
                               f"import file: {p}")
            continue
        if rows_in_part + len(details) > rows_may_fail:
            if part is not first:
                more.append(_whole_book(part, None, created))
            part = []
            rows_in_part = 0
        part.append((basic, details))
        rows_in_part += len(details)
        detail_rows += len(details)
    if part is not first:
        more.append(_whole_book(part, None, created))
    if len(console) > CONSOLE_PROBLEMS:
        left = len(console) - CONSOLE_PROBLEMS
        console[CONSOLE_PROBLEMS:] = [f"fapiao: {left} more problem(s) keep bills out of the import file; every "
                                      f"one is listed in its problems sheet"]
    if more:
        text = (f"{detail_rows} detail rows: the platform may fail above {rows_may_fail} in one import, so they "
                f"are in {len(more) + 1} files (the first, then -part2 ...); import each")
        problem_rows.append(["", "", text, "已导出 included"])
        console.append(f"fapiao: {text}")
    main = _whole_book(first, problem_rows, created)
    red = _whole_red_list(credits, replaced_by, default_vat, created) if credits else None
    return Exports(main, red, console, more)


def _whole_red_list(credits: list[dict], replaced_by: dict[str, str], default_vat: dict,
                    created: dt.datetime) -> bytes:
    wb = Workbook()
    ws = wb.active
    ws.title = "红字 credit notes"
    for c, name in enumerate(RED_COLUMNS, 1):
        _text(ws, 1, c, name)
    for r, doc in enumerate(sorted(credits, key=lambda d: d["number"]), 2):
        vat = doc.get("vat") or default_vat
        if "net_total_fen" in doc:
            net, tax = doc["net_total_fen"], doc["tax_total_fen"]
        else:
            parts = [split_gross(x["amount_fen"], vat["rate"]) for x in doc["lines"]]
            net, tax = sum(p[0] for p in parts), sum(p[1] for p in parts)
        new = replaced_by.get(doc["cancels"], "")
        reason = (f"账单更正, 由 {new} 替代 (amended; replaced by {new})" if new
                  else "账单撤销, 本期不再计费 (withdrawn: no longer billed this period)")
        row = [doc["number"], doc["issue_date"], doc["cancels"], doc["cancels"], doc["customer"]["name"],
               doc["customer"].get("tax_id", "").upper(), plain_yuan(doc["total_fen"]), plain_yuan(net),
               plain_yuan(tax), vat["rate"], reason, new, "开票有误" if new else "服务中止"]
        for c, value in enumerate(row, 1):
            _text(ws, r, c, ILLEGAL_CHARACTERS_RE.sub("\N{REPLACEMENT CHARACTER}", str(value)))
    return _whole_save(wb, created)


def _whole_book(bills: list[tuple[dict, list[dict]]], problem_rows: list[list[str]] | None,
                 created: dt.datetime) -> bytes:
    wb = Workbook()
    wb.remove(wb.active)
    basic_ws = _official_sheet(wb, BASIC)
    version = wb.create_sheet("excelVersion")
    version.sheet_state = "hidden"
    _text(version, 4, 1, VERSION_CELL)
    detail_ws = _official_sheet(wb, DETAIL)
    for title, _m, _r in SHEETS[2:]:
        _official_sheet(wb, title)
    basic_col, detail_col = _headers(BASIC), _headers(DETAIL)
    next_detail = 4
    for r, (basic, details) in enumerate(bills, 4):
        for key, value in basic.items():
            _text(basic_ws, r, basic_col[key], value)
        for d in details:
            for key, value in d.items():
                _text(detail_ws, next_detail, detail_col[key], value)
            next_detail += 1
    if problem_rows is not None:
        probs = wb.create_sheet(PROBLEMS_SHEET)
        for c, name in enumerate(PROBLEM_COLUMNS, 1):
            _text(probs, 1, c, name)
        for r, row in enumerate(problem_rows, 2):
            for c, value in enumerate(row, 1):
                _text(probs, r, c, value)
    return _whole_save(wb, created)


def _whole_save(wb: Workbook, created: dt.datetime) -> bytes:
    wb.properties.creator = "qq-invoicer"
    wb.properties.lastModifiedBy = "qq-invoicer"
    wb.properties.created = wb.properties.modified = created
    buf = io.BytesIO()
    wb.save(buf)
    return deterministic_zip(buf.getvalue(), created)


def _whole_files(prefix, period, exports: Exports) -> dict[str, bytes]:
    main_name, red_name = fapiao_file_names(prefix, period)
    files = {main_name: exports.main}
    files.update((part_name(prefix, period, n), data) for n, data in enumerate(exports.more, 2))
    if exports.red is not None:
        files[red_name] = exports.red
    return files


# ---- a period of many parts, problems, cancelled bills, credit notes and replacements -----------------------

@pytest.fixture(scope="module")
def period(tmp_path_factory):
    from invoicer.pipeline import price_roster

    from .conftest import write_roster

    # 30 bills with the tax id (some of 2 or 3 lines), 26 without (a problem each: more than a screenful)
    customers = [cust(f"T{i:02d}", D(2026, 10, 1 + i % 20), 3 + i % 5, tax_id=TAX) for i in range(30)]
    customers += [cust(f"N{i:02d}", D(2026, 10, 2), 3) for i in range(CONSOLE_PROBLEMS + 6)]
    customers += [cust(f"M{i}", D(2026, 5, 1), 4, tax_id=TAX) for i in range(4)]
    changes = [change(f"M{i}", D(2026, 10, d), "add", 1) for i in range(4) for d in range(1, 3 + i % 3)]
    path = write_roster(tmp_path_factory.mktemp("fp") / "r.xlsx", customers, changes)
    p = price_roster(path, pricebook.load_default(), "2026-10")
    bills = [{**d, "number": f"FP-2026-{n:06d}", "status": "issued"} for n, d in enumerate(p.invoices, 1)]
    n = len(bills)
    docs = list(bills)
    # three bills cancelled by credit notes, two of them replaced by a new bill
    for k, i in enumerate((0, 7, 33)):
        docs[i] = {**bills[i], "status": "cancelled"}
        n += 1
        docs.append({**documents.credit_note_for(bills[i], D(2026, 10, 31)), "number": f"FP-2026-{n:06d}",
                     "status": "credit_note"})
        if k < 2:
            n += 1
            docs.append({**bills[i], "number": f"FP-2026-{n:06d}", "status": "issued",
                         "replaces": bills[i]["number"]})
    assert sum(len(d["lines"]) > 1 for d in bills) >= 3
    return docs


class _Counted:
    """An iterable over the documents (one pass, as publish.PeriodBills) that counts what was read."""

    def __init__(self, docs):
        self.docs, self.read = docs, 0

    def __iter__(self):
        for d in self.docs:
            self.read += 1
            yield d


@pytest.mark.parametrize("limit, raw", [(1, True), (7, True), (3, False)])
def test_streamed_exports_are_the_bytes_the_whole_period_build_made(period, limit, raw, monkeypatch, tmp_path):
    """raw: the problems sheet's rows serialised here and spliced in (summary._SheetRows), else by openpyxl
    (as when lxml is installed)."""
    monkeypatch.setattr(fapiao, "ROWS_MAY_FAIL", limit)
    monkeypatch.setattr(fapiao, "RAW_ROWS", raw)
    vat = pricebook.load_default().vat.snapshot()
    whole = _whole_period(period, vat, {}, WHEN, limit)
    reference = _whole_files("FP", "2026-10", whole)
    assert len(whole.more) >= 3 and whole.red is not None and len(whole.problems) == CONSOLE_PROBLEMS + 2
    # what publish writes, file by file
    book = pricebook.load_default()
    roster = types.SimpleNamespace(customers=pd.DataFrame(), warnings=[])
    files: dict[str, str] = {}
    written = write_fapiao_exports(tmp_path, "FP", "2026-10", _Counted(period), book, roster, WHEN, files)
    assert written == list(reference)  # the import file, -part2 ..., the red-letter list, as always listed
    assert {f"fapiao/{p.name}": p.read_bytes() for p in (tmp_path / "fapiao").iterdir()} == reference
    assert files == {name: sha256(data) for name, data in reference.items()}
    assert roster.warnings == whole.problems
    # every file at once (tests and tools), in the same order
    exports, problems = expected_exports("FP", "2026-10", period, book, roster, WHEN)
    assert list(exports.items()) == list(reference.items()) and problems == whole.problems
    built = fapiao.build_exports(period, vat, {}, WHEN)
    assert (built.main, built.more, built.red, built.problems) == (whole.main, whole.more, whole.red,
                                                                  whole.problems)
    # a re-run writes nothing (the same bytes)
    assert write_fapiao_exports(tmp_path, "FP", "2026-10", period, book, roster, WHEN, {}) == []


def test_each_import_file_is_given_while_the_bills_are_still_being_read(period, monkeypatch):
    """A full part is made and let go before the next bills are read: no file waits for the whole period."""
    monkeypatch.setattr(fapiao, "ROWS_MAY_FAIL", 3)
    docs = _Counted(period)
    console: list[str] = []
    seen = []
    for n, data in fapiao.stream_exports(docs, pricebook.load_default().vat.snapshot(), {}, WHEN, console):
        seen.append((n, docs.read))
        assert console == []  # the problems are told once the last file is made
    parts = [(n, read) for n, read in seen if n >= 2]
    assert [n for n, _ in parts] == list(range(2, len(parts) + 2)) and len(parts) >= 3
    assert all(read < len(period) for _, read in parts[:-1])  # made as they filled, not at the end
    assert [n for n, _ in seen[len(parts):]] == [1, fapiao.RED]  # then the first import file, then the red list
    assert console and console[-1].startswith("fapiao: ") and "import each" in console[-1]


def test_a_published_month_of_many_parts_verifies_part_by_part(tmp_path, monkeypatch, stub_render):
    """End to end: a run writes a month of several import files; verify rebuilds and compares each; a part
    altered, removed or added is named."""
    from .test_fapiao import _roster

    monkeypatch.setattr(fapiao, "ROWS_MAY_FAIL", 2)
    rows = [[f"C{i:02d}", f"公司{i}", D(2026, 10, 1 + i), 3 + i % 3, None, None, TAX, None, None, None, None]
            for i in range(9)]
    out = tmp_path / "out"
    r = run_cli("run", _roster(tmp_path / "r.xlsx", rows, []), "--period", "2026-10", "--out", out)
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in (out / "fapiao").iterdir())
    assert names == ["FP-2026-10-part2.xlsx", "FP-2026-10-part3.xlsx", "FP-2026-10-part4.xlsx",
                     "FP-2026-10-part5.xlsx", "FP-2026-10.xlsx"]
    v = run_cli("verify", out)
    assert v.returncode == 0, v.stdout + v.stderr
    part3 = out / "fapiao" / "FP-2026-10-part3.xlsx"
    part3.write_bytes((out / "fapiao" / "FP-2026-10-part4.xlsx").read_bytes())
    (out / "fapiao" / "FP-2026-10-part5.xlsx").unlink()
    (out / "fapiao" / "FP-2026-10-part6.xlsx").write_bytes(b"x")
    v = run_cli("verify", out)
    assert v.returncode == 1
    mismatches = [line for line in v.stdout.splitlines() if "fapiao/" in line]
    assert any("fapiao/FP-2026-10-part3.xlsx: is not the e-fapiao export" in x for x in mismatches), v.stdout
    assert any("fapiao/FP-2026-10-part5.xlsx: missing" in x for x in mismatches), v.stdout
    assert any("fapiao/FP-2026-10-part6.xlsx: not an export" in x for x in mismatches), v.stdout
    assert not any("FP-2026-10.xlsx" in x or "part2" in x or "part4" in x for x in mismatches), v.stdout


def test_the_red_letter_list_is_in_number_order_even_from_a_stream_that_is_not(period):
    """Credit notes come in number order from the ledger's readers; the red-letter list sorts them all the
    same, as it always did."""
    vat = pricebook.load_default().vat.snapshot()
    credits = [i for i, d in enumerate(period) if d["kind"] == "credit_note"]
    assert len(credits) == 3
    shuffled = list(period)
    shuffled[credits[0]], shuffled[credits[-1]] = shuffled[credits[-1]], shuffled[credits[0]]
    whole = _whole_period(_Counted(shuffled), vat, {}, WHEN, fapiao.ROWS_MAY_FAIL)
    streamed = fapiao.build_exports(_Counted(shuffled), vat, {}, WHEN)
    assert streamed.red == whole.red == fapiao.build_exports(period, vat, {}, WHEN).red
    assert (streamed.main, streamed.more, streamed.problems) == (whole.main, whole.more, whole.problems)
