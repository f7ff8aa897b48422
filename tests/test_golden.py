"""A whole run over the bundled sample, compared with the committed golden summary.

Regenerate after an intended change with:  UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py
and review the diff of samples/expected/summary-2026-10.json like any other code change.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from decimal import Decimal

from openpyxl import load_workbook

from .conftest import ROOT, SAMPLE

GOLDEN = ROOT / "samples" / "expected" / "summary-2026-10.json"
SHEETS = {
    "invoices": ["invoice_number", "customer_id", "customer_name", "issue_date", "total"],
    "lines": ["invoice_number", "customer_id", "kind", "date", "seats", "months", "unit_price", "amount",
              "explanation"],
    "accounts": ["customer_id", "seats", "paid_through", "status", "next_action_on"],
    "rejected": ["sheet", "row", "column", "value", "reason"],
    "totals": ["group", "key", "lines", "seats", "amount"],
}



MONEY = {"total", "unit_price", "amount", "list_amount", "discount", "renewal_quote",
         "net_total", "tax_total", "net", "tax"}  # net/tax: the VAT split


def _plain(column, v):
    if isinstance(v, (dt.datetime, dt.date)):
        return v.isoformat()[:10]
    if column in MONEY and v is not None:
        assert not isinstance(v, float) or v == round(v, 2)
        return f"{Decimal(str(v)):.2f}"
    return v


def dump(path) -> dict:
    wb = load_workbook(path)
    out = {}
    for sheet, required in SHEETS.items():
        rows = list(wb[sheet].iter_rows(values_only=True))
        assert list(rows[0][: len(required)]) == required or set(required) <= set(rows[0]), sheet
        out[sheet] = [{c: _plain(c, v) for c, v in zip(rows[0], r)} for r in rows[1:]]
    return out


def test_sample_summary_matches_the_golden_file(sample_run):
    got = dump(sample_run[0] / "summary.xlsx")
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(got, ensure_ascii=False, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    assert got == json.loads(GOLDEN.read_text(encoding="utf-8"))


def test_sample_exact_columns_and_invariants(sample_run):
    out, _ = sample_run
    wb = load_workbook(out / "summary.xlsx")
    for sheet, cols in SHEETS.items():
        header = [c.value for c in wb[sheet][1]]
        assert header[: len(cols)] == cols if sheet != "lines" else set(cols) <= set(header)
    s = dump(out / "summary.xlsx")
    by_invoice = {}
    for line in s["lines"]:
        by_invoice.setdefault(line["invoice_number"], Decimal(0))
        by_invoice[line["invoice_number"]] += Decimal(line["amount"])
    for inv in s["invoices"]:
        assert Decimal(inv["total"]) == by_invoice[inv["invoice_number"]]
    grand = [t for t in s["totals"] if t["group"] == "grand_total"][0]
    assert Decimal(grand["amount"]) == sum(Decimal(i["total"]) for i in s["invoices"]) == Decimal("107945.00")
    kinds = sum(Decimal(t["amount"]) for t in s["totals"] if t["group"] == "kind")
    tiers = sum(Decimal(t["amount"]) for t in s["totals"] if t["group"] == "tier")
    assert kinds == tiers == Decimal(grand["amount"])
    statuses = {a["customer_id"]: a["status"] for a in s["accounts"]}
    assert (statuses["C013"], statuses["C014"], statuses["C015"]) == ("renewal_due", "grace", "reclaimed")


def test_sample_price_sheet_examples_in_the_summary(sample_run):
    s = dump(sample_run[0] / "summary.xlsx")
    amount = {(x["customer_id"], x["kind"]): (x["months"], x["amount"]) for x in s["lines"]}
    assert amount[("C004", "addition")] == (7, "1400.00")
    assert amount[("C005", "addition")] == (7, "700.00")
    assert amount[("C006", "addition")] == (6, "600.00")
    assert amount[("C007", "renewal")] == (12, "3000.00")
    assert amount[("C008", "renewal")] == (12, "10450.00")


def test_formula_like_text_is_stored_as_text(sample_run):
    wb = load_workbook(sample_run[0] / "summary.xlsx")
    cells = [c for row in wb["invoices"].iter_rows() for c in row if isinstance(c.value, str) and c.value[:1] == "="]
    assert cells, "the sample has a customer named like a formula"
    assert all(c.data_type == "s" for c in cells)
    import zipfile

    sheet_xml = zipfile.ZipFile(sample_run[0] / "summary.xlsx").read("xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in sheet_xml


def test_manifest_lists_every_file_with_its_hash(sample_run):
    import hashlib

    out, _ = sample_run
    m = json.loads((out / "manifest.json").read_text())
    assert m["input"]["sha256"] == hashlib.sha256(SAMPLE.read_bytes()).hexdigest()
    assert m["pricebook"]["version"] and len(m["pricebook"]["sha256"]) == 64 and m["tool_version"]
    pdfs = {p.relative_to(out).as_posix() for p in out.rglob("*.pdf")}
    assert pdfs == {k for k in m["files"] if k.endswith(".pdf")}
    for name, digest in m["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
