from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
from openpyxl import Workbook

from invoicer import pricebook
from invoicer.pipeline import price_roster

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "roster.xlsx"
INVOICER = [sys.executable, "-m", "invoicer.cli"]

CUSTOMER_HEADERS = ["customer_id", "name", "opened_on", "seats", "paid_through", "legacy_rate", "qq_number",
                    "email", "address", "tax_id"]
CHANGE_HEADERS = ["customer_id", "date", "type", "seats", "reference"]


def write_roster(path: Path, customers: list[dict], changes: list[dict] = (), reseller: dict | None = None,
                 customer_headers=None, change_headers=None, sheet_names=("customers", "changes")) -> Path:
    """A roster workbook from dicts; dates may be date objects (Excel dates) or text."""
    wb = Workbook()
    ws = wb.active
    ws.title = sheet_names[0]
    ch_h = customer_headers or CUSTOMER_HEADERS
    ws.append(ch_h)
    for c in customers:
        ws.append([c.get(h) for h in (customer_headers and CUSTOMER_HEADERS[: len(ch_h)] or CUSTOMER_HEADERS)])
    cs = wb.create_sheet(sheet_names[1])
    cs.append(change_headers or CHANGE_HEADERS)
    for c in changes:
        cs.append([c.get(h) for h in CHANGE_HEADERS])
    for sheet in (ws, cs):
        for row in sheet.iter_rows():
            for cell in row:
                if isinstance(cell.value, dt.date):
                    cell.number_format = "yyyy-mm-dd"
                if isinstance(cell.value, str) and cell.value[:1] == "=":
                    cell.data_type = "s"
    if reseller:
        rs = wb.create_sheet("reseller")
        for k, v in reseller.items():
            rs.append([k, v])
    wb.save(path)
    return path


def cust(cid, opened, seats, **kw) -> dict:
    return {"customer_id": cid, "name": kw.pop("name", f"测试公司{cid}"), "opened_on": opened, "seats": seats, **kw}


def change(cid, date, kind, seats=None, **kw) -> dict:
    return {"customer_id": cid, "date": date, "type": kind, "seats": seats, **kw}


@pytest.fixture(scope="session")
def book():
    return pricebook.load_default()


@pytest.fixture
def priced(tmp_path, book):
    """priced(customers, changes, period) -> Priced (read, validated and priced through the real pipeline)."""
    counter = iter(range(10_000))

    def go(customers, changes=(), period="2026-10", reseller=None, pb=None):
        path = write_roster(tmp_path / f"r{next(counter)}.xlsx", customers, changes, reseller)
        return price_roster(path, pb or book, period)

    return go


def run_cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([*INVOICER, *map(str, args)], capture_output=True, text=True, cwd=cwd or ROOT,
                          env=None, timeout=300)


def lines_of(p, cid=None) -> list[dict]:
    out = []
    for inv in p.invoices:
        if cid is None or inv["customer"]["customer_id"] == cid:
            out += inv["lines"]
    return out
