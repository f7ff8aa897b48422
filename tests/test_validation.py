"""Bad input never crashes the run and never vanishes; unreadable files fail with one message, exit 2."""
from __future__ import annotations

import datetime as dt
import zipfile

import pytest
from openpyxl import Workbook, load_workbook

from .conftest import change, cust, run_cli, write_roster

D = dt.date


def reasons(p):
    return {(r.sheet, r.row, r.column, r.value): r.reason for r in p.rejects}


def test_each_bad_row_is_rejected_with_sheet_row_column_value_and_reason(priced):
    customers = [
        cust("OK1", D(2026, 10, 3), 5),
        cust("", D(2026, 10, 3), 5),                                  # row 3: blank id
        cust("BAD/ID", D(2026, 10, 3), 5),                            # row 4: path characters
        cust("D1", "2026-02-30", 5),                                  # row 5: impossible date
        cust("D2", D(2026, 10, 3), 2.5),                              # row 6: not whole
        cust("D3", D(2026, 10, 3), 60),                               # row 7: above 50
        cust("ok1", D(2026, 10, 3), 5),                               # row 8: duplicate (case-insensitive)
        cust("Q1", D(2026, 10, 3), 5, qq_number="9001234567"),        # row 9: not 400/800
        cust("P1", D(2026, 1, 1), 5, paid_through=D(2027, 1, 1)),     # row 10: not a term end
        cust("N1", D(2026, 10, 3), 5, name="  "),                     # row 11: blank name
    ]
    changes = [
        change("NOPE", D(2026, 10, 5), "add", 1),                     # row 2: unknown customer
        change("OK1", D(2026, 10, 5), "upgrade", 1),                  # row 3: unknown type
        change("OK1", "5 Oct", "add", 1),                             # row 4: bad date
        change("OK1", D(2026, 10, 5), "add", None),                   # row 5: seats missing
        change("OK1", D(2026, 10, 5), "add", -2),                     # row 6: not positive
        change("OK1", D(2026, 10, 1), "add", 1),                      # row 7: before the account opened
    ]
    p = priced(customers, changes)
    got = reasons(p)
    assert got[("customers", 3, "customer_id", "")] == "required value is blank"
    assert "letters, digits" in got[("customers", 4, "customer_id", "BAD/ID")]
    assert got[("customers", 5, "opened_on", "2026-02-30")].startswith("not a date")
    assert got[("customers", 6, "seats", "2.5")] == "seats must be a whole number"
    assert got[("customers", 7, "seats", "60")] == "an account has 3 to 50 seats"
    assert got[("customers", 8, "customer_id", "ok1")] == "duplicate customer_id: already on row 2"
    assert "400 or 800" in got[("customers", 9, "qq_number", "9001234567")]
    assert "last day of a term" in got[("customers", 10, "paid_through", "2027-01-01")]
    assert got[("customers", 11, "name", "")] == "required value is blank"
    assert "no such customer" in got[("changes", 2, "customer_id", "NOPE")]
    assert "add (加工号), remove (减工号) or renew (续费)" in got[("changes", 3, "type", "upgrade")]
    assert got[("changes", 4, "date", "5 Oct")].startswith("not a date")
    assert "need the number of seats" in got[("changes", 5, "seats", "")]
    assert got[("changes", 6, "seats", "-2")] == "seats must be a positive whole number"
    assert "before the account opened on 2026-10-03" in got[("changes", 7, "date", "2026-10-01")]
    assert len(p.rejects) == 15
    assert p.invoices == []  # OK1 has rejected change rows: no partial invoice; the duplicate blocks it too


def test_the_rest_of_the_roster_is_still_billed(priced):
    p = priced([cust("A", D(2026, 10, 3), 5), cust("B", D(2026, 10, 4), 5, qq_number="123")])
    assert [i["customer"]["customer_id"] for i in p.invoices] == ["A"]
    assert [r.customer_id for r in p.rejects] == ["B"]


def test_chinese_headers_text_dates_and_type_words(tmp_path, book):
    from invoicer.pipeline import price_roster

    wb = Workbook()
    ws = wb.active
    ws.title = "客户"
    ws.append(["备用", "工号数", "客户名称", "开通日期", "客户编号"])  # any order, an extra column
    ws.append(["x", 5, "杭州测试有限公司", "2026年5月1日", "H1"])
    ch = wb.create_sheet("变更")
    ch.append(["类型", "日期", "客户编号", "工号数", "备注"])
    ch.append(["加工号", "2026/10/10", "H1", 1, "合同-1"])
    wb.save(tmp_path / "zh.xlsx")
    p = price_roster(tmp_path / "zh.xlsx", book, "2026-10")
    assert not p.rejects
    assert [(x["kind"], x["months"], x["amount_fen"], x["reference"]) for x in p.invoices[0]["lines"]] == \
        [("addition", 7, 70000, "合同-1")]
    assert any("extra columns ignored: 备用" in w for w in p.roster.warnings)


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b"this is not a workbook"), "not a readable Excel workbook"),
    (lambda p: zipfile.ZipFile(p, "w").writestr("x.txt", "hi"), "not a readable Excel workbook"),
])
def test_unreadable_file_fails_with_one_message_and_exit_2(tmp_path, make, message):
    f = tmp_path / "bad.xlsx"
    make(f)
    r = run_cli("run", f, "--period", "2026-10", "--out", tmp_path / "out")
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out" / "summary.xlsx").exists()


def test_missing_file_sheet_or_column_exit_2(tmp_path):
    r = run_cli("check", tmp_path / "nope.xlsx")
    assert r.returncode == 2 and "no such file" in r.stderr
    wb = Workbook()
    wb.active.title = "customers"
    wb.active.append(["customer_id", "name", "opened_on", "seats"])
    wb.save(tmp_path / "nosheet.xlsx")
    r = run_cli("check", tmp_path / "nosheet.xlsx")
    assert r.returncode == 2 and "no sheet 'changes' (变更)" in r.stderr
    write_roster(tmp_path / "nocol.xlsx", [], [], customer_headers=["customer_id", "name", "seats"])
    r = run_cli("check", tmp_path / "nocol.xlsx")
    assert r.returncode == 2 and "lacks the required column 'opened_on' (开通日期)" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("period, line", [
    ("2026-13", "error: period must look like 2026-10 (year-month), not '2026-13'"),
    ("Oct-2026", "error: period must look like 2026-10 (year-month), not 'Oct-2026'"),
    ("0000-01", "error: period '0000-01' is out of range: the year must be 2000 to 2099"),
    ("2100-01", "error: period '2100-01' is out of range: the year must be 2000 to 2099"),
    # digits of another script: a bare \d took them and the date code raised (a traceback; test_review7)
    ("٢٠٢٦-١٠", "error: period must look like 2026-10 (year-month), not "
                                               "'٢٠٢٦-١٠'"),
    ("２１００-０１", "error: period '２１００-０１' is out of "
                                               "range: the year must be 2000 to 2099"),
])
def test_bad_period_option_is_one_line_and_exit_2(tmp_path, period, line):
    for command in (["run", tmp_path / "x.xlsx", "--out", tmp_path], ["check", tmp_path / "x.xlsx"]):
        r = run_cli(*command, "--period", period)
        assert (r.returncode, r.stderr.splitlines()) == (2, [line])


@pytest.mark.parametrize("typed", ["2026-10", " 2026-10 ", "２０２６-１０",
                                   "２０２６－１０", "20２６-10"])
def test_a_period_typed_full_width_is_read_as_ascii(typed):
    """A clerk's Chinese input method types ２０２６-１０ or ２０２６－１０: read NFKC-normalised, like roster dates."""
    from invoicer.limits import check_period

    assert check_period(typed) == "2026-10"


def test_check_prints_rejects_and_exit_code(tmp_path):
    good = write_roster(tmp_path / "g.xlsx", [cust("A", D(2026, 10, 3), 5)])
    r = run_cli("check", good)
    assert (r.returncode, r.stdout.strip()) == (0, "no rejected rows")
    bad = write_roster(tmp_path / "b.xlsx", [cust("A", D(2026, 10, 3), 1)])
    r = run_cli("check", bad)
    assert r.returncode == 1
    assert "rejected: sheet 'customers' row 2 column seats value '1': an account has 3 to 50 seats" in r.stdout


def test_template_is_a_valid_empty_roster_with_drop_downs(tmp_path):
    for lang in ("zh", "en"):
        out = tmp_path / f"t-{lang}.xlsx"
        assert run_cli("template", out, "--lang", lang).returncode == 0
        wb = load_workbook(out)
        changes = wb["变更" if lang == "zh" else "changes"]
        kinds = [dv for dv in changes.data_validations.dataValidation if dv.type == "list"]
        assert kinds and ("续费" if lang == "zh" else "renew") in kinds[0].formula1
        assert any(dv.type == "whole" for dv in changes.data_validations.dataValidation)
        assert run_cli("check", out).returncode == 0


# ---------------------------------------------------------------- the table of named checks

def test_checks_are_listed_named_and_documented():
    from invoicer import validate as v

    names = [c.__name__ for c in v.CUSTOMER_CHECKS]
    assert names[:4] == ["check_cell_problems", "check_customer_required", "check_customer_id_format",
                         "check_duplicate_ids"]
    assert "check_change_seats" in [c.__name__ for c in v.CHANGE_CHECKS]
    assert all(c.__doc__ and c.__name__.startswith("check_") for c in v.CUSTOMER_CHECKS + v.CHANGE_CHECKS)


def _customers_frame(*rows):
    import pandas as pd

    from invoicer.roster import COLUMNS, ROW

    cols = list(COLUMNS["customers"])
    frame = pd.DataFrame([dict(zip(cols, r)) for r in rows], columns=cols).astype(object)
    frame = frame.where(frame.notna(), None)
    frame[ROW] = list(range(2, 2 + len(rows)))
    return frame


def _found(findings):
    return [(f.column, [int(i) for i in f.mask.nonzero()[0]]) for f in findings]


def test_one_check_alone_seats_in_range(book):
    from invoicer.validate import check_seats_in_range, customer_cells

    cells = customer_cells(_customers_frame(["A", "n", D(2026, 1, 1), 3], ["B", "n", D(2026, 1, 1), 51],
                                            ["C", "n", D(2026, 1, 1), 1e308], ["D", "n", D(2026, 1, 1), "１２"]), book)
    (f,) = check_seats_in_range(cells)
    assert _found([f]) == [("seats", [1, 2])] and f.reason == "an account has 3 to 50 seats"


def test_one_check_alone_id_format_and_duplicates(book):
    from invoicer.validate import (
        check_customer_id_format,
        check_duplicate_ids,
        customer_cells,
    )

    cells = customer_cells(_customers_frame(["A-1", "n"], ["-A", "n"], ["_B", "n"], ["a/1", "n"], ["a-1", "n"],
                                            ["\u00a0Ｃ１\u3000", "n"]), book)
    assert _found(check_customer_id_format(cells)) == [("customer_id", [3]), ("customer_id", [1, 2, 3])]
    (dup,) = check_duplicate_ids(cells)
    assert _found([dup]) == [("customer_id", [4])]
    assert dup.reason(None, 4) == "duplicate customer_id: already on row 2"
    assert cells.ids[5] == "C1"  # full-width and surrounding spaces normalised


def test_one_check_alone_change_seats(book):
    import pandas as pd

    from invoicer.roster import COLUMNS, ROW
    from invoicer.validate import change_cells, check_change_seats

    cols = list(COLUMNS["changes"])
    frame = pd.DataFrame([["A", D(2026, 10, 1), "add", v, None] for v in (None, 0, 1e20, 2, "３")],
                         columns=cols).astype(object)
    frame = frame.where(frame.notna(), None)
    frame[ROW] = list(range(2, 7))
    cells = change_cells(frame, pd.DataFrame({"customer_id": ["A"], "valid": [True], "row": [2]}), book=book)
    assert _found(check_change_seats(cells)) == [("seats", [0]), ("seats", [1]), ("seats", [2])]


def test_values_that_used_to_crash_are_rejected_cells(tmp_path, book):
    from invoicer.pipeline import price_roster

    from .conftest import CHANGE_HEADERS, CUSTOMER_HEADERS
    from .corpus import write_xlsx_raw

    def roster(customers, changes):  # openpyxl refuses control characters: write the XML by hand
        return write_xlsx_raw(tmp_path / "v.xlsx", {
            "customers": [CUSTOMER_HEADERS] + [[c.get(h) for h in CUSTOMER_HEADERS] for c in customers],
            "changes": [CHANGE_HEADERS] + [[c.get(h) for h in CHANGE_HEADERS] for c in changes]})

    p = price_roster(roster([
        cust("A", D(2026, 10, 3), 1e308),
        cust("B", D(2026, 10, 3), "123456789012345678901234567890"),
        cust("C", D(2008, 1, 1), 5, legacy_rate=1e20),
        cust("D", D(2026, 10, 3), 5, name="坏\x1b名"),
        cust("-E", D(2026, 10, 3), 5),
        cust("F", D(9999, 1, 1), 5),
        cust("G", D(2026, 10, 3), 5),
    ], [change("G", D(2026, 10, 9), "add", 1e20), change("G", D(2026, 10, 9), "add", 1, reference="x\x0by")]),
        book, "2026-10")
    got = reasons(p)
    assert got[("customers", 2, "seats", "1e+308")] == "an account has 3 to 50 seats"
    assert got[("customers", 3, "seats", "123456789012345678901234567890")] == "an account has 3 to 50 seats"
    assert got[("customers", 4, "legacy_rate", "1e+20")] == \
        "legacy_rate must be at most 100000 yuan per seat per year"
    assert got[("customers", 5, "name", "坏\\x1b名")] == "contains a control character (\\x1b); remove it"
    assert got[("customers", 6, "customer_id", "-E")] == "customer_id must start with a letter or digit: it names files"
    assert got[("customers", 7, "opened_on", "9999-01-01")].startswith("not a date")
    assert got[("changes", 2, "seats", "1e+20")] == \
        "an account has at most 50 seats: a change cannot add or remove more"
    assert got[("changes", 3, "reference", "x\\x0by")] == "contains a control character (\\x0b); remove it"
    assert len(p.rejects) == 8 and p.invoices == []


def test_an_id_differing_only_in_case_from_a_rejected_duplicate_is_held(priced):
    p = priced([cust("K1", D(2026, 10, 3), 5), cust("k1", D(2026, 10, 4), 5), cust("L1", D(2026, 10, 3), 5)])
    assert [r.customer_id for r in p.rejects] == ["k1"]
    assert [i["customer"]["customer_id"] for i in p.invoices] == ["L1"]


def test_full_width_and_non_breaking_spaces_are_normalised(priced):
    p = priced([cust("Ｍ１", "２０２６－１０－０５", "１２", name="\u00a0全角公司 ")],
               [change("M1", " 2026年10月6日\u3000", "加工号", "２")])
    assert not p.rejects
    (inv,) = p.invoices
    assert (inv["customer"]["customer_id"], inv["customer"]["name"]) == ("M1", "全角公司")
    assert [(x["kind"], x["seats"]) for x in inv["lines"]] == [("opening", 12), ("addition", 2)]


def test_sheet_names_match_ignoring_case_and_spaces_and_two_matches_are_refused(tmp_path, book):
    from invoicer.errors import InputError
    from invoicer.pipeline import price_roster

    path = write_roster(tmp_path / "s.xlsx", [cust("A", D(2026, 10, 3), 5)], sheet_names=(" CUSTOMERS ", "Changes"))
    assert [i["customer"]["customer_id"] for i in price_roster(path, book, "2026-10").invoices] == ["A"]
    wb = load_workbook(path)
    wb.copy_worksheet(wb[" CUSTOMERS "]).title = "客户"
    wb.save(path)
    with pytest.raises(InputError, match="sheets ' CUSTOMERS ' and '客户' are both the 'customers' sheet"):
        price_roster(path, book, "2026-10")


def test_a_limit_is_raised_by_its_environment_variable(tmp_path, monkeypatch, book):
    from invoicer import limits
    from invoicer.errors import InputError
    from invoicer.pipeline import price_roster

    path = write_roster(tmp_path / "r.xlsx", [cust(f"C{i}", D(2026, 10, 3), 5) for i in range(5)])
    monkeypatch.setenv("INVOICER_MAX_ROWS", "5")
    with pytest.raises(InputError, match=r"uses 6 rows \(limit 5; raise with INVOICER_MAX_ROWS\)"):
        price_roster(path, book, "2026-10")
    monkeypatch.setenv("INVOICER_MAX_ROWS", "6")
    assert len(price_roster(path, book, "2026-10").invoices) == 5
    monkeypatch.setenv("INVOICER_MAX_ROWS", "lots")
    with pytest.raises(InputError, match="INVOICER_MAX_ROWS must be a positive whole number, not 'lots'"):
        price_roster(path, book, "2026-10")
    assert limits.Limits().rows == 500_000 and ".csv" in limits.ROSTER_SUFFIXES


@pytest.mark.usefixtures("stub_render")  # the CSV input path; PDFs without layout
def test_a_csv_pair_runs_and_verifies_clean(tmp_path):
    from .corpus import base_sheets, write_csv_dir

    folder = write_csv_dir(tmp_path / "roster", base_sheets(), encoding="gbk")
    r = run_cli("run", folder, "--period", "2026-10", "--out", tmp_path / "out")
    assert r.returncode == 1, r.stderr
    assert "2 new" in r.stdout and "2 row(s) rejected" in r.stdout
    v = run_cli("verify", tmp_path / "out")
    assert v.returncode == 0 and v.stdout.startswith("clean:"), v.stdout + v.stderr


def test_a_legacy_rate_with_a_decimal_comma_is_rejected_not_read_as_a_hundred_times_more(priced):
    """Commas are thousands separators only (1,000.50): "9,99" (a European decimal comma) was read as 999
    yuan, "1.000,00" as 1 yuan and "1_000" as 1000. Each is now a rejected cell; proper grouping is read."""
    p = priced([
        cust("A", D(2008, 1, 1), 5, legacy_rate="9,99"),
        cust("B", D(2008, 1, 1), 5, legacy_rate="1.000,00"),
        cust("C", D(2008, 1, 1), 5, legacy_rate="1_000"),
        cust("D", D(2008, 1, 1), 5, legacy_rate="1,000.50"),
    ])
    bad = {(r.row, r.column, r.value): r.reason for r in p.rejects}
    amount = "legacy_rate must be a positive amount in yuan with at most two decimals"
    assert bad == {(2, "legacy_rate", "9,99"): amount, (3, "legacy_rate", "1.000,00"): amount,
                   (4, "legacy_rate", "1_000"): amount}
    assert p.roster.customers.set_index("customer_id").at["D", "legacy_fen"] == 100050


def test_a_direction_control_in_a_name_is_rejected_and_shown_escaped(priced):
    """U+202E (right-to-left override) and its kin are invisible and make a PDF or a spreadsheet show the
    text after them in another order than the roster holds it ("Trojan Source"): a bill could show a
    name that is not the customer's. Rejected like other control characters, shown escaped."""
    p = priced([cust("A", D(2026, 10, 3), 5, name="深圳\u202e司公限有"),
                cust("B", D(2026, 10, 3), 5, address="南山区\u2066科技园\u2069"),
                cust("C", D(2026, 10, 3), 5, name="正常公司")])
    got = reasons(p)
    assert got[("customers", 2, "name", "深圳\\u202e司公限有")] == "contains a control character (\\u202e); remove it"
    assert got[("customers", 3, "address", "南山区\\u2066科技园\\u2069")] == \
        "contains a control character (\\u2066); remove it"
    assert [d["customer"]["customer_id"] for d in p.invoices] == ["C"]


def test_digits_of_other_scripts_are_not_read_as_numbers(priced):
    """Full-width digits are NFKC-normalised to ASCII; Arabic-Indic digits (٣) are not, and Python's int()
    and regex \\d would take them: seats and QQ numbers are ASCII digits or rejected."""
    p = priced([cust("A", D(2026, 10, 3), "٥"), cust("B", D(2026, 10, 3), 5, qq_number="٤٠٠٦٨٨١٢٣٤"),
                cust("C", D(2026, 10, 3), "５", qq_number="４００６８８１２３４")])
    got = {(r.row, r.column) for r in p.rejects}
    assert got == {(2, "seats"), (3, "qq_number")}, p.rejects
    assert [(d["customer"]["customer_id"], d["customer"]["qq_number"]) for d in p.invoices] == [("C", "4006881234")]
