"""China-ready documents (issue #12): the VAT split, buyer tax ids, the [vat] price book section, bills that
are not 发票, and the e-fapiao bulk-import export checked cell by cell against hand-computed values."""
from __future__ import annotations

import datetime as dt
import io
import re
import subprocess
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openpyxl import Workbook, load_workbook

from invoicer import documents, pricebook
from invoicer.errors import InputError
from invoicer.render.fapiao import build_exports, unit_price
from invoicer.render.fapiao_layout import SHEETS
from invoicer.taxid import tax_id_problem
from invoicer.vat import split_gross, split_lines

from .conftest import change, cust, run_cli

D = dt.date
TAX_A = "91350100M000100Y43"
TAX_B = "91440300MA5FQ2XY7Q"


# ---- the split rule ------------------------------------------------------------------------------------

@given(st.integers(min_value=-10**9, max_value=10**9), st.sampled_from(["0.06", "0.03", "0.01"]))
def test_split_adds_up_and_is_symmetric(gross, rate):
    net, tax = split_gross(gross, rate)
    assert net + tax == gross
    assert split_gross(-gross, rate) == (-net, -tax)
    pct = int(Decimal(rate) * 100)
    # net is the nearest fen to gross / (1 + rate): within half a fen
    assert abs(Decimal(net) * (100 + pct) - Decimal(gross) * 100) <= Decimal(100 + pct) / 2


def test_a_bill_splits_line_by_line_where_rounding_matters():
    # 190.00 and 90.00: the lines' nets add to 264.16, while 280.00 / 1.06 would round to 264.15; and the
    # first line's tax (10.75) is not round(179.25 x 0.06) = 10.76: the tax is the remainder
    parts, net, tax = split_lines([19000, 9000], "0.06")
    assert parts == [(17925, 1075), (8491, 509)]
    assert (net, tax) == (26416, 1584)
    assert split_gross(28000, "0.06") == (26415, 1585)


def test_unit_price_is_exact_or_left_to_the_platform():
    assert unit_price(19000, 2) == "95.00"
    assert unit_price(100, 3) == ""


# ---- buyer tax ids ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [TAX_A, TAX_B, "11100000000013127D", "110108123456789", "11010519491231002X",
                                   "12345678901234567", "12345678901234567890", ""])
def test_tax_ids_accepted(value):
    assert tax_id_problem(value) is None


@pytest.mark.parametrize("value,reason", [
    ("91350100M000100Y44", "the check character (the 18th) should be 3, not 4"),
    ("91350100M000100y43", "a tax id's letters are capitals"),
    ("91350100M000I00Y43", "it may only hold digits and the capitals"),
    ("9135 0100M000100Y43", "a tax id has no spaces"),
    ("91110108XC0001", "this has 14"),
    ("11010519491231002-", "may only hold digits"),
])
def test_tax_ids_refused(value, reason):
    assert reason in tax_id_problem(value)


def test_a_bad_tax_id_rejects_that_cell_like_any_other(priced):
    p = priced([cust("A", D(2026, 10, 3), 5, tax_id="91350100M000100Y44"), cust("B", D(2026, 10, 3), 5, tax_id=TAX_A)])
    assert [(r.column, r.value, r.customer_id) for r in p.rejects] == [("tax_id", "91350100M000100Y44", "A")]
    assert "check character" in p.rejects[0].reason
    assert [d["customer"]["customer_id"] for d in p.invoices] == ["B"]


# ---- the price book's [vat] -------------------------------------------------------------------------------

def _book_text(extra: str = "", replace: tuple[str, str] | None = None) -> bytes:
    text = pricebook.load_default().raw.decode()
    if replace:
        assert replace[0] in text
        text = text.replace(*replace)
    return (text + extra).encode()


def test_default_vat_and_a_book_without_the_section():
    book = pricebook.load_default()
    assert book.vat.snapshot() == {"rate": "0.06", "item_name": "企业QQ软件服务费", "tax_code": "3040201990000000000",
                                   "unit": "工号", "fapiao_kind": "普通发票"}
    old = re.sub(r"\[vat\].*?(?=\[calendar\])", "", book.raw.decode(), flags=re.S)
    assert "[vat]" not in old
    assert pricebook.parse(old.encode(), "old.toml").vat == pricebook.VatSettings()


@pytest.mark.parametrize("old,new,message", [
    ('rate = "0.06"', 'rate = "0.13"', "vat.rate must be one of 0.06, 0.03, 0.01"),
    ('tax_code = "3040201990000000000"', 'tax_code = "304020199"', "19-digit"),
    ('fapiao_kind = "普通发票"', 'fapiao_kind = "纸质发票"', "vat.fapiao_kind must be"),
    ('item_name = "企业QQ软件服务费"', 'item_name = "*信息技术服务*企业QQ"', "without '*'"),
])
def test_bad_vat_settings_are_refused(old, new, message):
    with pytest.raises(InputError, match=re.escape(message)):
        pricebook.parse(_book_text(replace=(old, new)), "bad.toml")


def test_small_scale_rate_splits_at_three_percent(priced):
    book = pricebook.parse(_book_text(replace=('rate = "0.06"', "rate = 0.03")), "small.toml")
    assert book.vat.rate == "0.03"
    doc = priced([cust("A", D(2026, 10, 3), 3)], pb=book).invoices[0]
    assert (doc["total_fen"], doc["net_total_fen"], doc["tax_total_fen"]) == (300000, 291262, 8738)
    assert doc["vat"]["rate"] == "0.03"


# ---- documents: content hash unchanged, labels carried, old snapshots still render ----------------------

def _old_shape(doc: dict) -> dict:
    """The document as it was before bills stated VAT and carried labels."""
    old = {k: v for k, v in doc.items() if k not in ("vat", "labels", "net_total_fen", "tax_total_fen")}
    old["lines"] = [{k: v for k, v in x.items() if k not in documents.DERIVED_LINE_KEYS} for x in doc["lines"]]
    return old


def test_content_hash_ignores_the_new_fields(priced):
    doc = priced([cust("A", D(2026, 5, 1), 5)], [change("A", D(2026, 10, 10), "add", 1)]).invoices[0]
    assert doc["lines"][0]["net_fen"] == 66038 and doc["lines"][0]["tax_fen"] == 3962
    assert documents.content_hash(doc) == documents.content_hash(_old_shape(doc))
    credit = documents.credit_note_for({**doc, "number": "QQ-2026-000001"}, D(2026, 10, 31))
    assert (credit["net_total_fen"], credit["tax_total_fen"]) == (-66038, -3962)
    assert documents.content_hash(credit) == documents.content_hash(_old_shape(credit))
    assert credit["labels"]["title_zh"] == "贷项通知单"


@pytest.fixture(scope="module")
def renderer():
    from invoicer.render.pdf import Renderer

    return Renderer()


def _text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_template_prints_the_tier_basis_the_book_chose(priced, renderer):
    """Issue #15: with tier_basis = "added_seats" a line priced by 3 added seats says so."""
    book = pricebook.parse(_book_text(replace=('tier_basis = "account_total"', 'tier_basis = "added_seats"')),
                           "added.toml")
    custs, changes = [cust("A", D(2026, 5, 1), 9)], [change("A", D(2026, 10, 1), "add", 3)]
    by_added = _text(renderer.html({**priced(custs, changes, pb=book).invoices[0], "number": "QQ-2026-000001"}))
    assert "按新增工号数 by 3 added seats" in by_added and "by account total" not in by_added
    by_total = _text(renderer.html({**priced(custs, changes).invoices[0], "number": "QQ-2026-000001"}))
    assert "按账户工号数 by account total 12" in by_total


def test_a_snapshot_from_before_vat_still_renders(priced, renderer):
    doc = {**priced([cust("A", D(2026, 5, 1), 5)], [change("A", D(2026, 10, 10), "add", 2)]).invoices[0],
           "number": "QQ-2026-000001"}
    old = _text(renderer.html(_old_shape(doc)))
    assert "账单 BILL" in old and "加工号 Added seats" in old and "税额" not in old
    new = _text(renderer.html(doc))
    assert "含税金额 1,400.00 = 不含税金额 net 1,320.75 + 税额 VAT 79.25 (税率 rate 0.06)" in new
    assert "本单据不是发票" in new and "发票 Invoice" not in new


# ---- the export, cell by cell, through the real command line --------------------------------------------

CUSTOMER_HEADERS = ["客户编号", "客户名称", "开通日期", "工号数", "邮箱", "地址", "税号", "发票类型", "电话", "开户行", "银行账号"]


def _roster(path, customers: list[list], changes: list[list]):
    wb = Workbook()
    ws = wb.active
    ws.title = "客户"
    ws.append(CUSTOMER_HEADERS)
    for row in customers:
        ws.append(row)
    ch = wb.create_sheet("变更")
    ch.append(["客户编号", "日期", "类型", "工号数", "备注"])
    for row in changes:
        ch.append(row)
    for sheet in (ws, ch):
        for r in sheet.iter_rows():
            for c in r:
                if isinstance(c.value, str) and c.value.startswith("="):
                    c.data_type = "s"
    rs = wb.create_sheet("经销商")
    rs.append(["name", "深圳市测试经销商有限公司"])
    rs.append(["invoice_prefix", "FP"])
    wb.save(path)
    return path


CUSTOMERS = [
    # 18 seats + 2 on Oct 1 (tier 11-20: 2 x 95 x 1 month) + 1 on Oct 5 (account 21: tier 21-50, 1 x 90 x 1)
    ["A", "甲公司", D(2025, 11, 1), 18, "a@jia.cn", "北京市海淀区", TAX_A, None, None, None, None],
    ["B", "=乙公司", D(2026, 10, 8), 5, None, "上海市", TAX_B, "专票", "021-1234 5678", "招商银行上海分行", "6225 0000 1111"],
    ["C", "丙公司", D(2026, 10, 9), 3, None, None, None, "增值税专用发票", None, None, None],
]
CHANGES = [["A", D(2026, 10, 1), "add", 2, "HT-1"], ["A", D(2026, 10, 5), "add", 1, "HT-2"]]


def _rows(ws, first: int) -> list[list]:
    return [[c for c in r] for r in ws.iter_rows(min_row=first, values_only=True) if any(v is not None for v in r)]


def _by_header(ws) -> list[dict]:
    headers = [c.value for c in ws[3]]
    return [{h: v for h, v in zip(headers, r) if h and v is not None} for r in _rows(ws, 4)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fapiao")
    out = root / "out"
    first = run_cli("run", _roster(root / "r1.xlsx", CUSTOMERS, CHANGES), "--period", "2026-10", "--out", out)
    exported = (out / "fapiao" / "FP-2026-10.xlsx").read_bytes()
    summary = (out / "summary.xlsx").read_bytes()
    pdf = subprocess.run(["pdftotext", "-layout", str(out / "invoices" / "FP-2026-000001.pdf"), "-"],
                         capture_output=True, text=True, check=True).stdout
    # the second addition is withdrawn: --amend cancels A's bill with a credit note and issues a replacement
    second = run_cli("run", _roster(root / "r2.xlsx", CUSTOMERS, CHANGES[:1]), "--period", "2026-10", "--out", out,
                     "--amend")
    return {"first": first, "second": second, "export": exported, "summary": summary, "pdf": pdf, "out": out}


def test_export_sheets_and_header_rows_are_the_official_ones(runs):
    assert runs["first"].returncode == 0, runs["first"].stderr
    wb = load_workbook(io.BytesIO(runs["export"]))
    assert wb.sheetnames == ["1-发票基本信息", "excelVersion", "2-发票明细信息", "3-特定业务信息", "4-附加要素信息",
                             "problems"]
    assert wb["excelVersion"].sheet_state == "hidden" and wb["excelVersion"]["A4"].value == "pt:20260401"
    for title, merged, rows in SHEETS:
        ws = wb[title]
        assert sorted(str(r) for r in ws.merged_cells.ranges) == merged
        for r, cells in rows.items():
            assert [(c.column_letter, c.value) for c in ws[r] if c.value is not None] == cells, (title, r)
    basic = [c.value for c in wb["1-发票基本信息"][3] if c.value]
    assert basic[:7] == ["发票流水号", "发票类型", "特定业务类型", "是否含税", "受票方自然人标识", "购买方名称", "购买方纳税人识别号"]
    assert len(basic) == 36 and basic[-1] == "复核人"  # A-AM with L-O under one merged header
    assert [c.value for c in wb["2-发票明细信息"][3]] == [
        "发票流水号", "项目名称", "商品和服务税收编码", "规格型号", "单位", "数量", "单价", "金额", "税率", "折扣金额",
        "是否使用优惠政策", "优惠政策类型", "即征即退类型", "煤炭种类"]


def test_export_every_cell_of_a_small_roster(runs):
    wb = load_workbook(io.BytesIO(runs["export"]))
    assert _by_header(wb["1-发票基本信息"]) == [
        {"发票流水号": "FP-2026-000001", "发票类型": "普通发票", "是否含税": "是", "购买方名称": "甲公司",
         "购买方纳税人识别号": TAX_A, "购买方地址": "北京市海淀区", "备注": "账单号 FP-2026-000001 账期 2026-10",
         "购买方邮箱": "a@jia.cn"},
        {"发票流水号": "FP-2026-000002", "发票类型": "增值税专用发票", "是否含税": "是", "购买方名称": "=乙公司",
         "购买方纳税人识别号": TAX_B, "购买方地址": "上海市", "购买方电话": "021-1234 5678",
         "购买方开户银行": "招商银行上海分行", "购买方银行账号": "6225 0000 1111", "备注": "账单号 FP-2026-000002 账期 2026-10"},
    ]
    item = {"项目名称": "企业QQ软件服务费", "商品和服务税收编码": "3040201990000000000", "单位": "工号", "税率": "0.06"}
    assert _by_header(wb["2-发票明细信息"]) == [
        {"发票流水号": "FP-2026-000001", **item, "规格型号": "2工号×1月", "数量": "2", "单价": "95.00", "金额": "190.00"},
        {"发票流水号": "FP-2026-000001", **item, "规格型号": "1工号×1月", "数量": "1", "单价": "90.00", "金额": "90.00"},
        {"发票流水号": "FP-2026-000002", **item, "规格型号": "5工号×12月", "数量": "5", "单价": "1000.00",
         "金额": "5000.00"},
    ]
    for title in ("1-发票基本信息", "2-发票明细信息"):  # every data cell is text, even "=乙公司"
        assert {c.data_type for r in wb[title].iter_rows(min_row=4) for c in r if c.value is not None} == {"s"}
    assert _rows(wb["problems"], 2) == [["FP-2026-000003", "C", "a 增值税专用发票 needs the buyer's tax id (税号); add it "
                                         "to the roster and re-run with --amend", "未导出 left out of the import sheets"]]
    assert "fapiao: bill FP-2026-000003 (C) left out of the import file: a 增值税专用发票 needs" in runs["first"].stderr


def test_export_pdf_and_summary_agree_to_the_fen(runs):
    wb = load_workbook(io.BytesIO(runs["summary"]))
    lines = [r for r in _rows(wb["lines"], 2)]
    head = [c.value for c in wb["lines"][1]]
    got = [(r[0], Decimal(str(r[head.index("amount")])), Decimal(str(r[head.index("net")])),
            Decimal(str(r[head.index("tax")]))) for r in lines]
    assert got[:2] == [("FP-2026-000001", Decimal("190.00"), Decimal("179.25"), Decimal("10.75")),
                       ("FP-2026-000001", Decimal("90.00"), Decimal("84.91"), Decimal("5.09"))]
    inv_head = [c.value for c in wb["invoices"][1]]
    first = _rows(wb["invoices"], 2)[0]
    assert [str(first[inv_head.index(k)]) for k in ("total", "net_total", "tax_total", "vat_rate")] == \
        ["280", "264.16", "15.84", "0.06"]
    text = " ".join(runs["pdf"].split())
    for needed in ("含税金额 190.00 = 不含税金额 net 179.25 + 税额 VAT 10.75", "含税金额 90.00 = 不含税金额 net 84.91 + 税额 VAT 5.09",
                   "¥ 280.00", "其中 不含税金额 Net 264.16", "税额 VAT 0.06 15.84", "账单号 Bill No.", "本单据不是发票"):
        assert needed in text, needed
    ex = load_workbook(io.BytesIO(runs["export"]))
    amounts = [(r[0], r[7], r[8]) for r in _rows(ex["2-发票明细信息"], 4)]
    assert amounts[:2] == [("FP-2026-000001", "190.00", "0.06"), ("FP-2026-000001", "90.00", "0.06")]
    # what the platform computes from them is what the bill printed
    assert split_lines([19000, 9000], "0.06")[1:] == (26416, 1584)


def test_a_credit_note_after_amend_is_listed_for_the_red_letter_fapiao(runs):
    assert runs["second"].returncode == 0, runs["second"].stderr
    out = runs["out"]
    red = load_workbook(out / "fapiao" / "FP-2026-10-red.xlsx").active
    assert _rows(red, 2) == [[
        "FP-2026-000004", "2026-10-31", "FP-2026-000001", "FP-2026-000001", "甲公司", TAX_A, "-280.00", "-264.16",
        "-15.84", "0.06", "账单更正, 由 FP-2026-000005 替代 (amended; replaced by FP-2026-000005)", "FP-2026-000005",
        "开票有误"]]
    main = load_workbook(out / "fapiao" / "FP-2026-10.xlsx")
    assert [r[0] for r in _rows(main["1-发票基本信息"], 4)] == ["FP-2026-000002", "FP-2026-000005"]  # not the cancelled one
    assert [(r[0], r[7]) for r in _rows(main["2-发票明细信息"], 4)] == [
        ("FP-2026-000002", "5000.00"), ("FP-2026-000005", "190.00")]
    import json

    files = json.loads((out / "manifest.json").read_text())["files"]
    assert {"fapiao/FP-2026-10.xlsx", "fapiao/FP-2026-10-red.xlsx"} <= set(files)


def test_export_bytes_are_deterministic_and_limits_are_listed_not_truncated(priced):
    p = priced([cust("A", D(2026, 10, 3), 5, tax_id=TAX_A, name="长" * 101)])
    doc = {**p.invoices[0], "number": "FP-2026-000001", "status": "issued"}
    created = dt.datetime(2026, 10, 31)
    a = build_exports([doc], pricebook.load_default().vat.snapshot(), {}, created)
    assert a.main == build_exports([doc], pricebook.load_default().vat.snapshot(), {}, created).main
    assert a.red is None
    assert a.problems == ["fapiao: bill FP-2026-000001 (A) left out of the import file: 购买方名称 has 101 characters; "
                          f"the platform takes at most 100: '{'长' * 101}'"]
    long_number = {**doc, "number": "ABCDEFGHIJKL-2026-000001"}
    b = build_exports([long_number], pricebook.load_default().vat.snapshot(), {}, created)
    assert "发票流水号 has 24 characters; the platform takes at most 20" in b.problems[0]
    wb = load_workbook(io.BytesIO(b.main))
    assert _rows(wb["1-发票基本信息"], 4) == [] and _rows(wb["2-发票明细信息"], 4) == []


def test_bills_issued_before_vat_are_exported_with_the_books_rate(priced):
    """A ledger from before bills stated VAT: its bill and its credit note still reach both files."""
    doc = priced([cust("A", D(2026, 5, 1), 5, tax_id=TAX_A)], [change("A", D(2026, 10, 10), "add", 2)]).invoices[0]
    old = {**_old_shape(doc), "number": "FP-2026-000001", "status": "cancelled"}
    credit = {**documents.credit_note_for(old, D(2026, 10, 31)), "number": "FP-2026-000002"}
    assert "vat" not in credit and "net_total_fen" not in credit
    again = {**doc, "number": "FP-2026-000003", "status": "issued", "replaces": "FP-2026-000001"}
    ex = build_exports([old, credit, again], pricebook.load_default().vat.snapshot(), {}, dt.datetime(2026, 10, 31))
    assert ex.problems == []
    assert [r[0] for r in _rows(load_workbook(io.BytesIO(ex.main))["1-发票基本信息"], 4)] == ["FP-2026-000003"]
    red = _rows(load_workbook(io.BytesIO(ex.red)).active, 2)
    assert [r[:4] + r[6:10] for r in red] == [["FP-2026-000002", "2026-10-31", "FP-2026-000001", "FP-2026-000001",
                                              "-1400.00", "-1320.75", "-79.25", "0.06"]]


def test_issued_bills_state_the_split_the_rule_gives(priced):
    from invoicer.vat import split_problems

    p = priced([cust("A", D(2025, 11, 1), 18)], [change("A", D(2026, 10, 1), "add", 2),
                                                  change("A", D(2026, 10, 5), "add", 1)])
    doc = p.invoices[0]
    assert [(x["amount_fen"], x["net_fen"], x["tax_fen"]) for x in doc["lines"]] == [(19000, 17925, 1075),
                                                                                       (9000, 8491, 509)]
    assert split_problems(doc) == []
    tampered = {**doc, "lines": [{**doc["lines"][0], "net_fen": 17926, "tax_fen": 1074}, doc["lines"][1]]}
    assert split_problems(tampered)[0] == "line 1: net/tax 17926/1074 fen, the rule gives 17925/1075"


def test_control_characters_are_a_listed_problem_not_a_crash(priced):
    # a crafted workbook can carry them (openpyxl will not write one, so the snapshot is edited here)
    doc = priced([cust("A", D(2026, 10, 3), 5, tax_id=TAX_A)]).invoices[0]
    doc = {**doc, "customer": {**doc["customer"], "address": "上海\x01市"}, "number": "FP-2026-000001",
           "status": "issued"}
    ex = build_exports([doc], pricebook.load_default().vat.snapshot(), {}, dt.datetime(2026, 10, 31))
    assert ex.problems == ["fapiao: bill FP-2026-000001 (A) left out of the import file: 购买方地址 holds control "
                           "characters, which a workbook cannot hold: '上海\\x01市'"]


def test_roster_fapiao_columns_are_checked(tmp_path, book):
    from invoicer.pipeline import price_roster

    rows = [["A", "甲", D(2026, 10, 3), 5, None, None, TAX_A, "专票", None, None, "6225 0000 1111"],
            ["B", "乙", D(2026, 10, 3), 5, None, None, TAX_B, "纸质发票", None, None, None],
            ["C", "丙", D(2026, 10, 3), 5, None, None, TAX_A, None, None, None, 6225880112345678]]
    p = price_roster(_roster(tmp_path / "r.xlsx", rows, []), book, "2026-10")
    assert [(r.row, r.column) for r in p.rejects] == [(3, "fapiao_kind"), (4, "bank_account")]
    assert "must be 普通发票 (普票) or 增值税专用发票 (专票)" in p.rejects[0].reason
    assert "type it as text" in p.rejects[1].reason
    kinds = p.roster.customers.set_index("customer_id")["fapiao_kind"].to_dict()
    assert kinds["A"] == "增值税专用发票"


def test_a_period_too_big_for_one_import_goes_into_parts_and_stale_parts_go(priced, monkeypatch, tmp_path):
    import types

    import pandas as pd

    from invoicer.publish_fapiao import write_fapiao_exports
    from invoicer.render import fapiao

    monkeypatch.setattr(fapiao, "ROWS_MAY_FAIL", 2)
    p = priced([cust(c, D(2026, 10, 3), 5, tax_id=TAX_A) for c in "ABC"]
               + [cust("D", D(2026, 5, 1), 5, tax_id=TAX_A)],
               [change("D", D(2026, 10, d), "add", 1) for d in (1, 2, 3)])
    docs = [{**d, "number": f"FP-2026-00000{n}", "status": "issued"} for n, d in enumerate(p.invoices, 1)]
    roster = types.SimpleNamespace(customers=pd.DataFrame(), warnings=[])
    files: dict[str, str] = {}
    book = pricebook.load_default()
    written = write_fapiao_exports(tmp_path, "FP", "2026-10", docs, book, roster, dt.datetime(2026, 10, 31), files)
    assert written == ["fapiao/FP-2026-10.xlsx", "fapiao/FP-2026-10-part2.xlsx"] and set(files) == set(written)
    main = load_workbook(tmp_path / "fapiao" / "FP-2026-10.xlsx")
    part2 = load_workbook(tmp_path / "fapiao" / "FP-2026-10-part2.xlsx")
    assert [r[0] for r in _rows(main["1-发票基本信息"], 4)] == ["FP-2026-000001", "FP-2026-000002"]
    assert [r[0] for r in _rows(part2["1-发票基本信息"], 4)] == ["FP-2026-000003"]
    assert roster.warnings == [
        "fapiao: bill FP-2026-000004 (D) left out of the import file: 3 lines; the platform cannot issue a fapiao "
        "of more than 2",
        "fapiao: 3 detail rows: the platform may fail above 2 in one import, so they are in 2 files (the first, "
        "then -part2 ...); import each"]
    # a later, smaller run: the old part is removed, so no bill can be imported twice
    roster.warnings.clear()
    write_fapiao_exports(tmp_path, "FP", "2026-10", docs[:2], book, roster, dt.datetime(2026, 10, 31), {})
    assert sorted(x.name for x in (tmp_path / "fapiao").iterdir()) == ["FP-2026-10.xlsx"]
