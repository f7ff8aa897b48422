"""Rosters written by LibreOffice Calc itself, not by openpyxl (tests/data/libreoffice; its make.py says how
they were made): the bundled sample as a clerk keeps it, with a merged title row above the header, seats as a
formula whose value LibreOffice saved, dates in Chinese and slashed formats, a number in a text-formatted
cell; saved as .ods, .xls and .xlsx, and exported as GB18030 CSV files in the zh-CN locale and in the
default en-US one. Each must bill exactly what the sample bills (rows one lower: the title row), except the
en-US CSV, whose dates (05/01/2026) are ambiguous and must be rejected, never guessed."""
from __future__ import annotations

from pathlib import Path

import pytest

from invoicer.pipeline import price_roster
from invoicer.validate import NOT_A_DATE

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "libreoffice"


@pytest.fixture(scope="module")
def sample():
    from invoicer import pricebook

    book = pricebook.load_default()
    return book, price_roster(ROOT / "samples" / "roster.xlsx", book, "2026-10")


def _without_rows(doc: dict) -> dict:
    return {**doc, "lines": [{k: v for k, v in x.items() if k != "row"} for x in doc["lines"]]}


def _rejects(priced, shift: int = 0) -> list[tuple]:
    """(sheet, row, column, value, reason), customer rows moved up by ``shift`` (and the rows they name)."""
    out = []
    for r in priced.rejects:
        reason = r.reason
        if shift and r.reason.startswith("duplicate customer_id: already on row "):
            reason = f"duplicate customer_id: already on row {int(reason.rsplit(' ', 1)[1]) - shift}"
        out.append((r.sheet, r.row - (shift if r.sheet == "客户" else 0), r.column, str(r.value), reason))
    return out


@pytest.mark.parametrize("name", ["roster.ods", "roster.xls", "roster.xlsx", "csv-gb18030"])
def test_a_roster_saved_by_libreoffice_bills_what_the_sample_bills(sample, name):
    book, want = sample
    got = price_roster(DATA / name, book, "2026-10")
    assert len(got.invoices) == len(want.invoices) == 20
    assert [_without_rows(d) for d in got.invoices] == [_without_rows(d) for d in want.invoices]
    assert got.notices == want.notices
    assert _rejects(got, shift=1) == _rejects(want)
    lines = {x["explanation"]: x["row"] for d in got.invoices for x in d["lines"]}
    want_lines = {x["explanation"]: x["row"] for d in want.invoices for x in d["lines"]}
    assert lines.keys() == want_lines.keys()
    # an opening line points at its customer's row, one lower than in the sample (the title row)
    assert any(lines[k] == want_lines[k] + 1 for k in lines if k.startswith("开通"))


def test_the_formula_and_the_text_formatted_number_are_read_as_their_values(sample):
    book, _ = sample
    for name in ("roster.ods", "roster.xls", "roster.xlsx", "csv-gb18030"):
        got = price_roster(DATA / name, book, "2026-10")
        seats = {d["customer"]["customer_id"]: d["lines"][0]["seats"] for d in got.invoices}
        assert (seats["C001"], seats["C002"]) == (5, 12), name  # =2+3, and 12 in a text-formatted cell


def test_month_first_dates_from_an_english_locale_are_rejected_not_guessed(sample):
    book, want = sample
    got = price_roster(DATA / "csv-en-us", book, "2026-10")
    dates = [r for r in got.rejects if r.column == "opened_on"]
    assert sum(str(r.value)[2] == "/" for r in dates) == 33  # every MM/DD/YYYY date (and 2026-13-01 as before)
    assert all(r.reason.startswith("not a date") for r in dates)
    found = {(r.row, str(r.value)): r.reason for r in dates}
    assert found[6, "05/01/2026"] == ("not a date: day and month order unknown (2026-01-05 or 2026-05-01?); "
                                      "write the year first or use an Excel date")
    assert found[27, "10/25/2025"] == "not a date: write the year first (2025-10-25) or use an Excel date"
    assert found[39, "2026-13-01"] == NOT_A_DATE  # the sample's own bad date, as it always was
    # C003's date was typed as text 2026/10/20 in the sample: it is the one customer still billed
    assert [d["customer"]["customer_id"] for d in got.invoices] == ["C003"]
    assert got.invoices[0]["total_fen"] == next(d for d in want.invoices
                                                 if d["customer"]["customer_id"] == "C003")["total_fen"]


def test_the_clerks_month_from_a_libreoffice_csv_export_runs_and_verifies(tmp_path, stub_render):
    from .conftest import run_cli

    out = tmp_path / "out"
    run = run_cli("run", DATA / "csv-gb18030", "--period", "2026-10", "--out", out, "--workers", "1")
    assert run.returncode == 1, run.stderr  # 1: issued, with rejected rows (README "Exit codes")
    assert len(list((out / "invoices").glob("*.pdf"))) == 20 and "Traceback" not in run.stderr
    check = run_cli("verify", out)
    assert check.returncode == 0, check.stdout + check.stderr
