"""`invoicer template` writes the limits of the price book the roster will be billed with."""
from __future__ import annotations

from openpyxl import load_workbook

from .conftest import cust, run_cli, write_roster


def own_book(tmp_path, book):
    """A reseller's price book: accounts of 5 to 40 seats, legacy rates for accounts opened before 2011."""
    raw = (book.raw.replace(b"min_seats = 3\nmax_seats = 50", b"min_seats = 5\nmax_seats = 40")
           .replace(b'min_seats = 3\nmax_seats = 10', b'min_seats = 5\nmax_seats = 10')
           .replace(b'min_seats = 21\nmax_seats = 50', b'min_seats = 21\nmax_seats = 40')
           .replace(b'cutoff = "2010-03-01"', b'cutoff = "2011-01-01"'))
    assert raw.count(b"40") >= 2 and b"2011-01-01" in raw  # every replacement above took
    path = tmp_path / "own.toml"
    path.write_bytes(raw)
    return path


def seat_checks(ws) -> list[tuple[str, str]]:
    return [(dv.formula1, dv.formula2) for dv in ws.data_validations.dataValidation if dv.type == "whole"]


def test_template_takes_seat_limits_and_legacy_cutoff_from_the_price_book(tmp_path, book):
    pb = own_book(tmp_path, book)
    for lang, sheets, info in (("en", ("customers", "changes"), "instructions"), ("zh", ("客户", "变更"), "说明")):
        out = tmp_path / f"t-{lang}.xlsx"
        r = run_cli("template", out, "--lang", lang, "--pricebook", pb)
        assert (r.returncode, r.stderr) == (0, "")
        wb = load_workbook(out)
        assert seat_checks(wb[sheets[0]]) == [("5", "40")]
        assert seat_checks(wb[sheets[1]]) == [("1", "40")]
        text = {row[0]: row[1] for row in wb[info].iter_rows(values_only=True)}
        assert "the seat count before the first change row (5-40)" in text["customers / 客户"]
        assert "legacy_rate: only for accounts opened before 2011-01-01." in text["customers / 客户"]
        assert "2010-03-01" not in " ".join(text.values()) and "3-50" not in " ".join(text.values())


def test_default_template_keeps_the_shipped_limits(tmp_path):
    out = tmp_path / "t.xlsx"
    assert run_cli("template", out, "--lang", "en").returncode == 0
    wb = load_workbook(out)
    assert seat_checks(wb["customers"]) == [("3", "50")] and seat_checks(wb["changes"]) == [("1", "50")]
    text = " ".join(str(row[1]) for row in wb["instructions"].iter_rows(values_only=True))
    assert "(3-50)" in text and "opened before 2010-03-01." in text


def test_a_roster_filled_in_from_an_own_book_template_is_checked_against_that_book(tmp_path, book):
    pb = own_book(tmp_path, book)
    roster = write_roster(tmp_path / "r.xlsx", [cust("A", "2026-10-01", 4), cust("B", "2026-10-01", 5)])
    r = run_cli("check", roster, "--pricebook", pb)
    assert r.returncode == 1
    assert "rejected: sheet 'customers' row 2 column seats value '4': an account has 5 to 40 seats" in r.stdout
    assert "row 3" not in r.stdout


def test_an_unreadable_price_book_is_one_line_and_exit_2(tmp_path):
    r = run_cli("template", tmp_path / "t.xlsx", "--pricebook", tmp_path / "missing.toml")
    assert r.returncode == 2 and r.stderr.startswith("error: cannot read price book") and "Traceback" not in r.stderr
    assert not (tmp_path / "t.xlsx").exists()
