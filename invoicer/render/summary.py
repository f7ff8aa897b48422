"""The summary workbook (openpyxl) as bytes: invoices, lines, accounts, rejected, totals.

Sheet and column names are the contract of SPEC section 5. Every text cell is written as text: a value
starting with '=', '+', '-' or '@' stays a string, never a formula. The file is byte-for-byte
deterministic (fixed document dates and zip timestamps).
"""
from __future__ import annotations

import datetime as dt
import io
import re
import tempfile
import zipfile
from collections import defaultdict

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font

from ..errors import Reject
from ..money import fen_to_decimal

MONEY_FORMAT = "#,##0.00"
DATE_FORMAT = "yyyy-mm-dd"

INVOICE_COLUMNS = ["invoice_number", "customer_id", "customer_name", "issue_date", "total", "document",
                   "status", "cancels", "period", "total_in_words",
                   "net_total", "tax_total", "vat_rate"]  # VAT: blank for bills issued before it
LINE_COLUMNS = ["invoice_number", "customer_id", "kind", "date", "seats", "months", "unit_price", "amount",
                "explanation", "tier", "account_seats", "whole_months", "extra_days", "list_amount", "discount",
                "term_start", "term_end", "completes_on", "legacy", "capped", "reference", "source_row",
                "net", "tax"]  # VAT split (vat.split_gross), blank for bills issued before it
ACCOUNT_COLUMNS = ["customer_id", "seats", "paid_through", "status", "next_action_on", "customer_name",
                   "window_opens_on", "reclaim_on", "renewal_quote", "invoice_held"]
REJECT_COLUMNS = ["sheet", "row", "column", "value", "reason", "customer_id"]
TOTAL_COLUMNS = ["group", "key", "lines", "seats", "amount"]


def _cell(ws, value, fmt: str | None = None, bold: bool = False):
    c = WriteOnlyCell(ws, value=value)
    if isinstance(value, str):
        c.data_type = "s"  # never a formula, whatever the text starts with
    if fmt:
        c.number_format = fmt
    if bold:
        c.font = Font(bold=True)
    return c


def _fen(fen: int | None):
    return None if fen is None else fen_to_decimal(fen)


def _date(s: str):
    return dt.date.fromisoformat(s) if s else None


def _row(ws, values: list, formats: dict[int, str]):
    ws.append([_cell(ws, v, formats.get(i)) for i, v in enumerate(values)])


def _sheet(wb, title: str, columns: list[str], rows, formats: dict[str, str], widths: dict[str, int]):
    ws = wb.create_sheet(title)
    for i, name in enumerate(columns):
        letter = chr(ord("A") + i) if i < 26 else "A" + chr(ord("A") + i - 26)
        ws.column_dimensions[letter].width = widths.get(name, 14)
    ws.freeze_panes = "A2"
    ws.append([_cell(ws, c, bold=True) for c in columns])
    fmt_by_index = {columns.index(k): v for k, v in formats.items() if k in columns}
    for r in rows:
        _row(ws, r, fmt_by_index)
    return ws


class Totals:
    """Per kind, per tier and grand total, accumulated line by line (as the lines sheet streams out)."""

    def __init__(self):
        self.by_kind, self.by_tier = defaultdict(lambda: [0, 0, 0]), defaultdict(lambda: [0, 0, 0])
        self.grand = [0, 0, 0]

    def add(self, doc: dict) -> None:
        sign = -1 if doc["kind"] == "credit_note" else 1
        for x in doc["lines"]:
            for acc in (self.by_kind[x["kind"]], self.by_tier[x["tier"]], self.grand):
                acc[0] += sign
                acc[1] += sign * x["seats"]
                acc[2] += x["amount_fen"]

    def rows(self) -> list[list]:
        rows = [["kind", k, *self.by_kind[k][:2], fen_to_decimal(self.by_kind[k][2])]
                for k in ("opening", "addition", "renewal") if k in self.by_kind]
        rows += [["tier", k, *v[:2], fen_to_decimal(v[2])] for k, v in sorted(self.by_tier.items())]
        rows.append(["grand_total", "all", *self.grand[:2], fen_to_decimal(self.grand[2])])
        return rows


def render_summary(documents, accounts: list[dict], rejects: list[Reject], created: dt.datetime) -> bytes:
    """The summary workbook's bytes (see write_summary, which writes the same bytes into a file)."""
    buf = io.BytesIO()
    write_summary(buf, documents, accounts, rejects, created)
    return buf.getvalue()


def write_summary(dest, documents, accounts: list[dict], rejects: list[Reject], created: dt.datetime) -> None:
    """Write the summary workbook into ``dest`` (a seekable binary file), streamed: the sheets go to
    openpyxl's temporary files, the workbook to a temporary file, and from there, a block at a time, into
    ``dest`` with fixed timestamps; the workbook (15 MB for 100,000 customers) is never in memory.

    documents: issued invoices and credit notes of the period (with 'number' and 'status'), in number
    order: a list, or any iterable that can be iterated twice (publish.PeriodBills streams them from the
    ledger); it is read in two passes (the invoices sheet, then the lines sheet, which also sums the totals),
    so no copy of the month's documents is held in memory."""
    wb = Workbook(write_only=True)
    grand = [0]

    def inv_rows():
        for doc in documents:
            assert sum(x["amount_fen"] for x in doc["lines"]) == doc["total_fen"], doc["number"]
            grand[0] += doc["total_fen"]
            yield [doc["number"], doc["customer"]["customer_id"], doc["customer"]["name"], _date(doc["issue_date"]),
                   fen_to_decimal(doc["total_fen"]), doc["kind"], doc.get("status", "issued"),
                   doc.get("cancels") or "", doc["period"], doc["total_words"], _fen(doc.get("net_total_fen")),
                   _fen(doc.get("tax_total_fen")), (doc.get("vat") or {}).get("rate")]

    totals = Totals()

    def line_rows():
        for doc in documents:
            totals.add(doc)
            for x in doc["lines"]:
                yield [doc["number"], doc["customer"]["customer_id"], x["kind"], _date(x["date"]), x["seats"],
                       x["months"], fen_to_decimal(x["unit_fen"]), fen_to_decimal(x["amount_fen"]),
                       x["explanation"], x["tier"], x["account_seats"], x["whole_months"], x["extra_days"],
                       fen_to_decimal(x["list_fen"]), fen_to_decimal(x["discount_fen"]), _date(x["term_start"]),
                       _date(x["term_end"]), _date(x["completes_on"]), "yes" if x["legacy"] else "",
                       "yes" if x["capped"] else "", x["reference"], x["row"], _fen(x.get("net_fen")),
                       _fen(x.get("tax_fen"))]

    acc_rows = ([a["customer_id"], a["seats"], _date(a["paid_through"]), a["status"], _date(a["next_action_on"]),
                 a["customer_name"], _date(a["window_opens_on"]), _date(a["reclaim_on"]),
                 fen_to_decimal(a["quote_fen"]), a["invoice_held"]] for a in accounts)
    rej_rows = ([r.sheet, r.row, r.column, r.value, r.reason, r.customer_id] for r in rejects)
    money = {k: MONEY_FORMAT for k in ("total", "unit_price", "amount", "list_amount", "discount", "renewal_quote",
                                       "net_total", "tax_total", "net", "tax")}
    dates = {k: DATE_FORMAT for k in ("issue_date", "date", "paid_through", "next_action_on", "term_start",
                                      "term_end", "completes_on", "window_opens_on", "reclaim_on")}
    fmts = {**money, **dates}
    _sheet(wb, "invoices", INVOICE_COLUMNS, inv_rows(), fmts, {"customer_name": 34, "invoice_number": 18,
                                                                "total_in_words": 30})
    _sheet(wb, "lines", LINE_COLUMNS, line_rows(), fmts, {"explanation": 90, "invoice_number": 18})
    _sheet(wb, "accounts", ACCOUNT_COLUMNS, acc_rows, fmts, {"customer_name": 34, "invoice_held": 40})
    _sheet(wb, "rejected", REJECT_COLUMNS, rej_rows, fmts, {"reason": 80, "value": 24})
    rows = totals.rows()
    assert rows[-1][-1] == fen_to_decimal(grand[0]), "summary totals must equal the sum of the invoices"
    _sheet(wb, "totals", TOTAL_COLUMNS, rows, fmts, {})
    wb.properties.creator = "qq-invoicer"
    wb.properties.created = wb.properties.modified = created
    with tempfile.TemporaryFile() as made:
        wb.save(made)
        made.seek(0)
        copy_deterministic_zip(made, dest, created)


# openpyxl stamps the moment of saving into docProps/core.xml whatever the workbook's properties say
_CORE_DATES = re.compile(rb"(<dcterms:(created|modified)\b[^>]*>)[^<]*(</dcterms:\2>)")


def deterministic_zip(data: bytes, stamp: dt.datetime | None = None) -> bytes:
    """Rewrite a zip (xlsx) with fixed member timestamps, so equal content gives equal bytes. With a
    stamp, the document's created and modified dates (docProps/core.xml) are set to it too."""
    out = io.BytesIO()
    copy_deterministic_zip(io.BytesIO(data), out, stamp)
    return out.getvalue()


def copy_deterministic_zip(source, dest, stamp: dt.datetime | None = None) -> None:
    """``deterministic_zip`` from one seekable binary file into another, a block at a time."""
    import shutil

    src = zipfile.ZipFile(source)
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o600 << 16
            if stamp is not None and info.filename == "docProps/core.xml":
                when = stamp.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
                member = _CORE_DATES.sub(lambda m: m.group(1) + when + m.group(3), src.read(info.filename))
                dst.writestr(fixed, member)
                continue
            # a sheet of 100,000 rows is copied a block at a time, never inflated whole in memory
            fixed.file_size = info.file_size
            with src.open(info) as r, dst.open(fixed, "w") as w:
                shutil.copyfileobj(r, w, 1 << 20)

