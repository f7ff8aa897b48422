"""A blank roster workbook a reseller fills in: sheets and headers in Chinese or English, a drop-down
for the change type, date-formatted date columns, whole-number checks for seats, and instructions.

The seat limits and the legacy cutoff come from the price book the roster will be billed with, so a
reseller's own book (``--pricebook``) gets a template that checks its own limits."""
from __future__ import annotations

import datetime as dt
import io

from openpyxl import Workbook
from openpyxl.styles import Font, PatternFill
from openpyxl.worksheet.datavalidation import DataValidation

from .pricebook import PriceBook, load_default
from .render.summary import deterministic_zip
from .roster import COLUMNS, RESELLER_KEYS, SHEET_ALIASES

ROWS = 500
EN_TYPES = "add,remove,renew"
ZH_TYPES = "加工号,减工号,续费"
DATE_COLUMNS = {"opened_on", "paid_through", "date"}



def instructions(book: PriceBook) -> list[tuple[str, str]]:
    """The instructions sheet's rows (topic, text), with the price book's seat limits and legacy cutoff."""
    return [
        ("customers / 客户", "One row per account. customer_id: letters, digits, '-' or '_' (it names files). "
                            f"seats: the seat count before the first change row ({book.min_seats}-{book.max_seats}). "
                            "paid_through: optional, the last day of the last term paid before the first renew row "
                            "(default: end of the first term). legacy_rate: only for accounts opened before "
                            f"{book.legacy_cutoff}."),
        ("changes / 变更", "One row per change: add (加工号) / remove (减工号) need seats; renew (续费) uses the seat "
                         "count on its date. Rows are applied in date order; on the same date, in sheet order."),
        ("reseller / 经销商", "Key/value rows: name, tax_id, address, phone, bank, invoice_prefix (letters and "
                            "digits; numbers look like PREFIX-2026-000001)."),
        ("dates / 日期", "Excel dates, or text 2026-10-05, 2026/10/05, 2026年10月5日."),
        ("errors / 错误", "Run `invoicer check roster.xlsx`: every bad row is listed with sheet, row, column, value "
                        "and reason; nothing is billed for a customer with a rejected row."),
    ]


def blank_roster(lang: str = "zh", book: PriceBook | None = None) -> bytes:
    """The bytes of a blank roster workbook (.xlsx), identical for the same language and price book.

    ``lang`` "zh" gives Chinese sheet names and headers, anything else English. ``book`` (default: the
    shipped price book) sets the seats checks: an account has min_seats..max_seats, a change row
    1..max_seats; and the legacy cutoff named in the instructions.
    """
    zh = lang == "zh"
    book = book or load_default()
    wb = Workbook()
    head_font = Font(bold=True, color="FFFFFF")
    head_fill = PatternFill("solid", fgColor="0B4F8A")
    first = True
    for sheet in ("customers", "changes"):
        title = SHEET_ALIASES[sheet][1] if zh else sheet
        ws = wb.active if first else wb.create_sheet(title)
        ws.title = title
        first = False
        cols = list(COLUMNS[sheet].items())
        for i, (name, (aliases, required)) in enumerate(cols, start=1):
            c = ws.cell(row=1, column=i, value=aliases[0] if zh else name)
            c.font, c.fill = head_font, head_fill
            letter = c.column_letter
            ws.column_dimensions[letter].width = 16 if name not in ("name", "address") else 32
            if name in DATE_COLUMNS:
                for r in range(2, ROWS + 2):
                    ws.cell(row=r, column=i).number_format = "yyyy-mm-dd"
                dv = DataValidation(type="date", operator="greaterThan", formula1="1",
                                    error="请输入日期 Enter a date", showErrorMessage=True)
                dv.add(f"{letter}2:{letter}{ROWS + 1}")
                ws.add_data_validation(dv)
            if name == "seats":
                low = str(book.min_seats if sheet == "customers" else 1)
                high = str(book.max_seats)
                dv = DataValidation(type="whole", operator="between", formula1=low, formula2=high,
                                    error=f"整数 {low}-{high} / whole number {low}-{high}", showErrorMessage=True)
                dv.add(f"{letter}2:{letter}{ROWS + 1}")
                ws.add_data_validation(dv)
            if name == "type":
                dv = DataValidation(type="list", formula1=f'"{ZH_TYPES if zh else EN_TYPES}"', allow_blank=False,
                                    error="add / remove / renew", showErrorMessage=True)
                dv.add(f"{letter}2:{letter}{ROWS + 1}")
                ws.add_data_validation(dv)
            if name in ("customer_id", "qq_number", "tax_id"):
                for r in range(2, ROWS + 2):
                    ws.cell(row=r, column=i).number_format = "@"  # text: keeps leading zeros
        ws.freeze_panes = "A2"
    rs = wb.create_sheet(SHEET_ALIASES["reseller"][1] if zh else "reseller")
    for key, aliases in RESELLER_KEYS.items():
        rs.append([aliases[1] if zh and len(aliases) > 1 else key, ""])
    rs.column_dimensions["A"].width, rs.column_dimensions["B"].width = 18, 48
    info = wb.create_sheet("说明" if zh else "instructions")
    info.column_dimensions["A"].width, info.column_dimensions["B"].width = 22, 120
    for k, v in instructions(book):
        info.append([k, v])
    stamp = dt.datetime(2026, 1, 1)  # fixed, so the same price book gives the same bytes
    wb.properties.created = wb.properties.modified = stamp
    buf = io.BytesIO()
    wb.save(buf)
    return deterministic_zip(buf.getvalue(), stamp)
