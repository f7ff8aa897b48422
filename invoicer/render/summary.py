"""The summary workbook (openpyxl) as bytes: invoices, lines, accounts, rejected, totals.

Sheet and column names are the contract of SPEC section 5. Every text cell is written as text: a value
starting with '=', '+', '-' or '@' stays a string, never a formula. The file is byte-for-byte
deterministic (fixed document dates and zip timestamps).

openpyxl writes the workbook: its parts, styles and each sheet's header row. The data rows (three million
cells for 100,000 customers) are serialised here instead (_SheetRows), into a temporary file per sheet,
exactly as openpyxl's write-only writer serialises them cell by cell (the same XML, byte for byte), and
spliced into their sheets as the zip is copied; a cell object per value cost about three times as much.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import io
import re
import shutil
import tempfile
import zipfile
from collections import defaultdict
from decimal import Decimal

from et_xmlfile.xmlfile import _IncrementalFileWriter
from openpyxl import LXML, Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell._writer import write_cell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font, numbers
from openpyxl.utils import get_column_letter
from openpyxl.utils.datetime import to_excel

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


# The data rows are serialised here as openpyxl's cell writer serialises them through et_xmlfile (the
# standard library's ElementTree); were lxml installed, openpyxl would serialise differently, so then it
# writes every cell itself (tests set this False to compare both ways byte for byte)
RAW_ROWS = not LXML
_MAX_EXACT_INT = 2 ** 53  # "%.16g" (openpyxl's safe_string) writes every integer below this exactly
_MAX_DECIMAL = Decimal("1e300")  # a Decimal far inside float range ("%.16g" of one beyond it is 'inf'; openpyxl's own)
assert DATE_FORMAT == numbers.FORMAT_DATE_YYYYMMDD2  # the format openpyxl gives a date by itself


class _Letters(dict):
    """Column index (from 0) -> its letters."""

    def __missing__(self, j: int) -> str:
        self[j] = get_column_letter(j + 1)
        return self[j]


_LETTERS = _Letters()


class _SheetRows:
    """One sheet's data rows (from row 2), serialised into a temporary file byte for byte as openpyxl's
    write-only worksheet would write ``[_cell(ws, v, fmt) for v in row]``: an inline string (never a
    formula) for text, the value of a number as "%.16g", a date as its Excel serial with the date style, a
    styled empty cell for a None in a formatted column, none for a None elsewhere. A style is registered
    in the workbook the first time a cell uses it, in the order openpyxl would register it. Any other value
    (a float, a bool, a datetime, text openpyxl would refuse or cut) goes through openpyxl's own cell
    writer, which serialises (or refuses) it as before."""

    def __init__(self, ws, formats: dict[int, str]):
        self.ws, self.formats = ws, formats
        self.file = tempfile.TemporaryFile()
        self.size = 0
        self._styles: dict[int, str] = {}
        self._serial: dict[dt.date, str] = {}

    def _style(self, j: int) -> str:
        """' s="N"' for column j's format ('' without one), registered at its first use."""
        s = self._styles.get(j)
        if s is None:
            fmt = self.formats.get(j)
            if fmt:
                template = WriteOnlyCell(self.ws)
                template.number_format = fmt
                s = f' s="{template.style_id}"'
            else:
                s = ""
            self._styles[j] = s
        return s

    def _date(self, value: dt.date) -> str:
        v = self._serial.get(value)
        if v is None:
            v = self._serial[value] = "%.16g" % to_excel(value, self.ws.parent.epoch)
        return v

    def _by_openpyxl(self, value, j: int, r: int) -> str:
        cell = _cell(self.ws, value, self.formats.get(j))
        cell.row, cell.column = r, j + 1
        if cell._value is None and not cell.has_style:
            return ""
        out: list[str] = []
        xf = _IncrementalFileWriter(out.append)
        with xf.element("row"):  # the context a cell is written in (no namespace prefixes in scope)
            start = len(out)
            write_cell(xf, self.ws, cell, cell.has_style)
            return "".join(out[start:])

    def write(self, rows) -> None:
        refs = _LETTERS
        iso = self.ws.parent.iso_dates
        formats = self.formats
        style = self._style
        illegal = ILLEGAL_CHARACTERS_RE.search
        chunk: list[str] = []
        r = 1
        for values in rows:
            r += 1
            n = str(r)
            chunk.append(f'<row r="{n}">')
            for j, v in enumerate(values):
                t = type(v)
                if t is str and len(v) <= 32767 and not illegal(v):
                    if not v:
                        chunk.append(f'<c r="{refs[j]}{n}"{style(j)} t="inlineStr" />')
                        continue
                    bare = v.strip()  # as openpyxl.xml.functions.whitespace
                    space = ' xml:space="preserve"' if bare and bare != v else ""
                    if "&" in v:  # as ElementTree escapes text
                        v = v.replace("&", "&amp;")
                    if "<" in v:
                        v = v.replace("<", "&lt;")
                    if ">" in v:
                        v = v.replace(">", "&gt;")
                    chunk.append(f'<c r="{refs[j]}{n}"{style(j)} t="inlineStr"><is><t{space}>{v}</t></is></c>')
                elif v is None:  # openpyxl skips an empty cell without a style
                    if formats.get(j):
                        chunk.append(f'<c r="{refs[j]}{n}"{style(j)} t="n" />')
                elif (t is int and -_MAX_EXACT_INT < v < _MAX_EXACT_INT) or \
                        (t is Decimal and v.is_finite() and -_MAX_DECIMAL < v < _MAX_DECIMAL):
                    chunk.append(f'<c r="{refs[j]}{n}"{style(j)} t="n"><v>{"%.16g" % v}</v></c>')
                elif t is dt.date and formats.get(j) == DATE_FORMAT and not iso:
                    chunk.append(f'<c r="{refs[j]}{n}"{style(j)} t="n"><v>{self._date(v)}</v></c>')
                else:
                    chunk.append(self._by_openpyxl(v, j, r))
            chunk.append("</row>")
            if len(chunk) > 20000:
                self._flush(chunk)
        self._flush(chunk)

    def _flush(self, chunk: list[str]) -> None:
        # as et_xmlfile's writer encodes: UTF-8, a character UTF-8 cannot hold as a character reference
        data = "".join(chunk).encode("utf-8", "xmlcharrefreplace")
        self.file.write(data)
        self.size += len(data)
        chunk.clear()


def _sheet(wb, title: str, columns: list[str], rows, formats: dict[str, str], widths: dict[str, int],
           spliced: dict | None = None):
    """Make a sheet: its header through openpyxl; its rows through openpyxl too, or, given ``spliced``
    (a dict), serialised into a temporary file (_SheetRows) kept in spliced[ws] for the zip's copy."""
    ws = wb.create_sheet(title)
    for i, name in enumerate(columns):
        letter = chr(ord("A") + i) if i < 26 else "A" + chr(ord("A") + i - 26)
        ws.column_dimensions[letter].width = widths.get(name, 14)
    ws.freeze_panes = "A2"
    ws.append([_cell(ws, c, bold=True) for c in columns])
    fmt_by_index = {columns.index(k): v for k, v in formats.items() if k in columns}
    if spliced is None:
        for r in rows:
            ws.append([_cell(ws, v, fmt_by_index.get(i)) for i, v in enumerate(r)])
    else:
        spliced[ws] = _SheetRows(ws, fmt_by_index)
        spliced[ws].write(rows)
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
    """Write the summary workbook into ``dest`` (a seekable binary file), streamed: each sheet's data rows
    go to a temporary file (_SheetRows), the workbook with the sheets' headers to another (openpyxl), and
    from there, a block at a time, into ``dest`` with fixed timestamps and the rows spliced into their
    sheets; the workbook (15 MB for 100,000 customers) is never in memory.

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
    with contextlib.ExitStack() as temporaries:
        spliced: dict | None = {} if RAW_ROWS else None  # worksheet -> its _SheetRows
        if spliced is not None:
            temporaries.callback(lambda: [body.file.close() for body in spliced.values()])
        _sheet(wb, "invoices", INVOICE_COLUMNS, inv_rows(), fmts, {"customer_name": 34, "invoice_number": 18,
                                                                    "total_in_words": 30}, spliced)
        _sheet(wb, "lines", LINE_COLUMNS, line_rows(), fmts, {"explanation": 90, "invoice_number": 18}, spliced)
        _sheet(wb, "accounts", ACCOUNT_COLUMNS, acc_rows, fmts, {"customer_name": 34, "invoice_held": 40},
               spliced)
        _sheet(wb, "rejected", REJECT_COLUMNS, rej_rows, fmts, {"reason": 80, "value": 24}, spliced)
        rows = totals.rows()
        assert rows[-1][-1] == fen_to_decimal(grand[0]), "summary totals must equal the sum of the invoices"
        _sheet(wb, "totals", TOTAL_COLUMNS, rows, fmts, {}, spliced)
        wb.properties.creator = "qq-invoicer"
        wb.properties.created = wb.properties.modified = created
        made = temporaries.enter_context(tempfile.TemporaryFile())
        wb.save(made)
        made.seek(0)
        # the sheets' paths are known once saved (xl/worksheets/sheetN.xml)
        copy_deterministic_zip(made, dest, created, {ws.path.lstrip("/"): (body.file, body.size)
                                                     for ws, body in (spliced or {}).items()})


# openpyxl stamps the moment of saving into docProps/core.xml whatever the workbook's properties say
_CORE_DATES = re.compile(rb"(<dcterms:(created|modified)\b[^>]*>)[^<]*(</dcterms:\2>)")


def deterministic_zip(data: bytes, stamp: dt.datetime | None = None) -> bytes:
    """Rewrite a zip (xlsx) with fixed member timestamps, so equal content gives equal bytes. With a
    stamp, the document's created and modified dates (docProps/core.xml) are set to it too."""
    out = io.BytesIO()
    copy_deterministic_zip(io.BytesIO(data), out, stamp)
    return out.getvalue()


def copy_deterministic_zip(source, dest, stamp: dt.datetime | None = None, rows: dict | None = None) -> None:
    """``deterministic_zip`` from one seekable binary file into another, a block at a time. ``rows``: member
    name -> (binary file, its size): a sheet's rows, serialised by _SheetRows, copied in just before the
    member's ``</sheetData>`` (after its header row)."""
    rows = rows or {}
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
            if info.filename in rows:
                sheet = src.read(info.filename)  # the sheet as openpyxl wrote it: its header row only
                cut = sheet.find(b"</sheetData>")
                assert cut > 0 and sheet.count(b"</sheetData>") == 1, info.filename
                body, size = rows[info.filename]
                fixed.file_size = len(sheet) + size
                body.seek(0)
                with dst.open(fixed, "w") as w:
                    w.write(sheet[:cut])
                    shutil.copyfileobj(body, w, 1 << 20)
                    w.write(sheet[cut:])
                continue
            # a sheet of 100,000 rows is copied a block at a time, never inflated whole in memory
            fixed.file_size = info.file_size
            with src.open(info) as r, dst.open(fixed, "w") as w:
                shutil.copyfileobj(r, w, 1 << 20)

