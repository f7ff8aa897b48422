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


def test_bad_period_option_exits_2(tmp_path):
    r = run_cli("run", tmp_path / "x.xlsx", "--period", "2026-13", "--out", tmp_path)
    assert r.returncode == 2 and "period must look like 2026-10" in r.stderr


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
