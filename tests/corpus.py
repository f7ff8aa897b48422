"""A corpus of roster files, real-world and hostile, written at test time (nothing binary is committed).

``write_corpus(folder)`` writes one file per case of issue #14 and per format and returns the ``Case``s:
what to run and what must come out (exit 2 with one line naming the problem, or a run in which every input
row is billed or rejected exactly once). ``python -m tests.corpus DIR`` writes them for a look by hand.

``drive(cases_json)`` is the child-process side used by tests/test_corpus.py: it runs ``invoicer run`` on
each case in turn, in one process (so pandas and WeasyPrint are imported once), and prints one JSON line
per case.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import sys
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

D = dt.date
CUSTOMER_HEADER = ["customer_id", "name", "opened_on", "seats", "paid_through", "legacy_rate", "qq_number",
                   "email", "address", "tax_id"]
CHANGE_HEADER = ["customer_id", "date", "type", "seats", "reference"]


def base_sheets() -> dict[str, list[list]]:
    """The content every format case holds: three billed customers, a rejected row on each sheet, Chinese
    text, a legacy rate, a reseller block. Billed for 2026-10: two invoices, one held customer."""
    return {
        "customers": [
            CUSTOMER_HEADER,
            ["A1", "深圳市腾达科技有限公司", D(2026, 10, 3), 5, None, None, 4001234567, "a@example.cn", "深圳南山", "91440300MA5FQ2XY7Q"],
            ["B2", "Hangzhou West Lake Ltd", D(2025, 11, 1), 11, None, None, None, None, None, None],
            ["C3", "老客户公司", D(2008, 11, 1), 3, D(2026, 10, 31), 1200, None, None, None, None],
            ["D4", "坏行公司", "2026-13-01", 5, None, None, None, None, None, None],
        ],
        "changes": [
            CHANGE_HEADER,
            ["B2", D(2026, 10, 10), "add", 2, "合同-7"],
            ["C3", D(2026, 10, 8), "renew", None, None],
            ["A1", D(2026, 10, 20), "upgrade", 1, None],
        ],
        "reseller": [["name", "深圳天翼经销商"], ["invoice_prefix", "SZTY"]],
    }


@dataclass
class Case:
    """One corpus file and what must come out of ``invoicer run`` on it."""

    name: str
    path: str
    expect: str  # "exit2": one line containing ``message``; "rows": the partition holds
    message: str = ""
    env: dict = field(default_factory=dict)  # INVOICER_MAX_* limits for this case
    args: list = field(default_factory=list)  # replaces the default run options when given
    rejects: list = field(default_factory=list)  # [sheet, row, column, reason substring] that must appear
    invoiced: list | None = None  # customer ids that must (exactly) get an invoice
    same_as: str = ""  # a group: every case of the group gives the same summary cells


# ------------------------------------------------------------------ writers


def write_xlsx(path: Path, sheets: dict[str, list[list]]) -> Path:
    """An .xlsx as openpyxl (and so Excel-like tools) writes it; date objects become date cells."""
    from openpyxl import Workbook

    wb = Workbook()
    wb.remove(wb.active)
    for title, rows in sheets.items():
        ws = wb.create_sheet(title)
        for r in rows:
            ws.append(list(r))
        for row in ws.iter_rows():
            for cell in row:
                if isinstance(cell.value, dt.date):
                    cell.number_format = "yyyy-mm-dd"
    wb.save(path)
    return path


def write_xlsm(path: Path, sheets) -> Path:
    """An .xlsm: the same package with the macro-enabled content type (no macros needed to read it)."""
    tmp = write_xlsx(path.with_suffix(".tmp.xlsx"), sheets)
    with zipfile.ZipFile(tmp) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "[Content_Types].xml":
                data = data.replace(b"spreadsheetml.sheet.main+xml", b"ms-excel.sheet.macroEnabled.main+xml")
            dst.writestr(item, data)
    tmp.unlink()
    return path


def _col(n: int) -> str:
    s = ""
    while n:
        n, r = divmod(n - 1, 26)
        s = chr(65 + r) + s
    return s


def _serial(d: dt.date) -> int:
    return (d - dt.date(1899, 12, 30)).days


def write_xlsx_raw(path: Path, sheets: dict[str, list[list]], *, refs: bool = True, prefix: str = "",
                   shared: bool = True, dimension: str | None = None, raw_cells: dict | None = None,
                   extra_members: dict | None = None) -> Path:
    """A hand-made .xlsx in the ways other writers differ from openpyxl: shared strings (Excel, WPS,
    LibreOffice), cells without references (allowed by the standard), a namespace prefix (the OpenXML SDK),
    a declared dimension that lies. ``raw_cells`` {(title, "B3"): "<c ...>...</c>"} puts exact XML in a
    cell (formulas with cached values, error cells)."""
    ns = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    p = f"{prefix}:" if prefix else ""
    strings: list[str] = []
    index: dict[str, int] = {}
    raw_cells = raw_cells or {}

    def cell(ref: str, v) -> str:
        r = f' r="{ref}"' if refs else ""
        if v is None:
            return ""
        if isinstance(v, bool):
            return f'<{p}c{r} t="b"><{p}v>{int(v)}</{p}v></{p}c>'
        if isinstance(v, dt.date):
            return f'<{p}c{r} s="1"><{p}v>{_serial(v)}</{p}v></{p}c>'
        if isinstance(v, (int, float)):
            return f'<{p}c{r}><{p}v>{v!r}</{p}v></{p}c>'
        if shared:
            if v not in index:
                index[v] = len(strings)
                strings.append(v)
            return f'<{p}c{r} t="s"><{p}v>{index[v]}</{p}v></{p}c>'
        return f'<{p}c{r} t="inlineStr"><{p}is><{p}t>{escape(v)}</{p}t></{p}is></{p}c>'

    sheet_xml = []
    for title, rows in sheets.items():
        body = []
        width = max((len(r) for r in rows), default=1)
        for i, row in enumerate(rows, 1):
            cells = []
            for j, v in enumerate(row, 1):
                ref = f"{_col(j)}{i}"
                if (title, ref) in raw_cells:
                    cells.append(raw_cells[(title, ref)])
                elif v is None and not refs:
                    cells.append(f"<{p}c/>")  # a position holder, as writers without references do
                else:
                    cells.append(cell(ref, v))
            body.append(f'<{p}row r="{i}">{"".join(cells)}</{p}row>' if refs else f'<{p}row>{"".join(cells)}</{p}row>')
        dim = dimension or f"A1:{_col(width)}{max(len(rows), 1)}"
        sheet_xml.append(
            f'<?xml version="1.0" encoding="UTF-8"?><{p}worksheet xmlns{":" + prefix if prefix else ""}="{ns}">'
            f'<{p}dimension ref="{dim}"/><{p}sheetData>{"".join(body)}</{p}sheetData></{p}worksheet>')
    wb_sheets = "".join(f'<sheet name="{escape(t)}" sheetId="{i}" r:id="rId{i}"/>'
                        for i, t in enumerate(sheets, 1))
    rels = "".join(f'<Relationship Id="rId{i}" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
                   f'relationships/worksheet" Target="worksheets/sheet{i}.xml"/>' for i in range(1, len(sheets) + 1))
    rels += (f'<Relationship Id="rId{len(sheets) + 1}" Type="http://schemas.openxmlformats.org/officeDocument/'
             f'2006/relationships/styles" Target="styles.xml"/>')
    if shared:
        rels += (f'<Relationship Id="rId{len(sheets) + 2}" Type="http://schemas.openxmlformats.org/'
                 f'officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/>')
    overrides = "".join(f'<Override PartName="/xl/worksheets/sheet{i}.xml" ContentType="application/'
                        f'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
                        for i in range(1, len(sheets) + 1))
    files = {
        "[Content_Types].xml": (
            '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
            'content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
            'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName='
            '"/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.'
            'main+xml"/><Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-'
            'officedocument.spreadsheetml.styles+xml"/><Override PartName="/xl/sharedStrings.xml" ContentType='
            '"application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
            f'{overrides}</Types>'),
        "_rels/.rels": (
            '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/'
            'package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
            'officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>'),
        "xl/workbook.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{ns}" xmlns:r="http://schemas.'
            f'openxmlformats.org/officeDocument/2006/relationships"><sheets>{wb_sheets}</sheets></workbook>'),
        "xl/_rels/workbook.xml.rels": (
            '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/'
            f'package/2006/relationships">{rels}</Relationships>'),
        "xl/styles.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><styleSheet xmlns="{ns}"><numFmts count="1"><numFmt '
            'numFmtId="164" formatCode="yyyy-mm-dd"/></numFmts><fonts count="1"><font/></fonts><fills '
            'count="1"><fill/></fills><borders count="1"><border/></borders><cellStyleXfs count="1"><xf/>'
            '</cellStyleXfs><cellXfs count="2"><xf numFmtId="0"/><xf numFmtId="164" applyNumberFormat="1"/>'
            '</cellXfs></styleSheet>'),
    }
    for i, x in enumerate(sheet_xml, 1):
        files[f"xl/worksheets/sheet{i}.xml"] = x
    if shared:
        files["xl/sharedStrings.xml"] = (
            f'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="{ns}" count="{len(strings)}" uniqueCount='
            f'"{len(strings)}">' + "".join(f"<si><t>{escape(s)}</t></si>" for s in strings) + "</sst>")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in files.items():
            zf.writestr(name, text.encode("utf-8") if isinstance(text, str) else text)
        for name, data in (extra_members or {}).items():
            zf.writestr(name, data)
    return path


def write_ods(path: Path, sheets: dict[str, list[list]], raw_rows: dict | None = None) -> Path:
    """An OpenDocument spreadsheet as LibreOffice writes one (trailing empty rows repeated a million times).
    ``raw_rows`` {title: "<table:table-row>...</table:table-row>"} appends exact XML to a table."""
    def cell(v) -> str:
        if v is None:
            return "<table:table-cell/>"
        if isinstance(v, dt.date):
            return (f'<table:table-cell office:value-type="date" office:date-value="{v.isoformat()}">'
                    f"<text:p>{v.isoformat()}</text:p></table:table-cell>")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return (f'<table:table-cell office:value-type="float" office:value="{v!r}"><text:p>{v}</text:p>'
                    "</table:table-cell>")
        return f'<table:table-cell office:value-type="string"><text:p>{escape(str(v))}</text:p></table:table-cell>'

    tables = []
    for title, rows in sheets.items():
        body = "".join("<table:table-row>" + "".join(cell(v) for v in r) + "</table:table-row>" for r in rows)
        body += (raw_rows or {}).get(title, "")
        body += ('<table:table-row table:number-rows-repeated="1048000"><table:table-cell '
                 'table:number-columns-repeated="1024"/></table:table-row>')
        tables.append(f'<table:table table:name="{escape(title)}">{body}</table:table>')
    content = (
        '<?xml version="1.0" encoding="UTF-8"?><office:document-content '
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
        'xmlns:calcext="urn:org:documentfoundation:names:experimental:calc:xmlns:calcext:1.0" '
        'office:version="1.2"><office:body><office:spreadsheet>' + "".join(tables)
        + "</office:spreadsheet></office:body></office:document-content>")
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest="urn:oasis:names:tc:'
        'opendocument:xmlns:manifest:1.0" manifest:version="1.2"><manifest:file-entry manifest:full-path="/" '
        'manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/><manifest:file-entry '
        'manifest:full-path="content.xml" manifest:media-type="text/xml"/></manifest:manifest>')
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.spreadsheet")
        zf.writestr("META-INF/manifest.xml", manifest, zipfile.ZIP_DEFLATED)
        zf.writestr("content.xml", content, zipfile.ZIP_DEFLATED)
    return path


def write_xls(path: Path, sheets: dict[str, list[list]], far_cell: tuple[int, int] | None = None) -> Path:
    """A legacy .xls (BIFF8, through xlwt); date objects become date cells."""
    import xlwt

    wb = xlwt.Workbook(encoding="utf-8")
    date_style = xlwt.easyxf(num_format_str="yyyy-mm-dd")
    for title, rows in sheets.items():
        ws = wb.add_sheet(title)
        for i, r in enumerate(rows):
            for j, v in enumerate(r):
                if v is None:
                    continue
                if isinstance(v, dt.date):
                    ws.write(i, j, v, date_style)
                else:
                    ws.write(i, j, v)
        if far_cell:
            ws.write(*far_cell, "far")
            far_cell = None
    wb.save(str(path))
    return path


def _csv_bytes(rows: list[list], encoding: str, bom: bool = False) -> bytes:
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    for r in rows:
        w.writerow(["" if v is None else v.isoformat() if isinstance(v, dt.date) else v for v in r])
    data = buf.getvalue().encode(encoding)
    return (b"\xef\xbb\xbf" + data) if bom else data


def write_csv_dir(folder: Path, sheets, encoding: str = "utf-8", bom: bool = False) -> Path:
    """customers.csv + changes.csv (+ reseller.csv) in a folder; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for title, rows in sheets.items():
        (folder / f"{title}.csv").write_bytes(_csv_bytes(rows, encoding, bom))
    return folder


def write_csv_zip(path: Path, sheets, encoding: str = "gb18030") -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for title, rows in sheets.items():
            zf.writestr(f"{title}.csv", _csv_bytes(rows, encoding))
    return path


# ------------------------------------------------------------------ the cases


def _with(sheets, sheet: str, *rows) -> dict:
    out = {k: [list(r) for r in v] for k, v in sheets.items()}
    out[sheet].extend(list(r) for r in rows)
    return out


def write_corpus(folder: Path) -> list[Case]:
    """Write every case into ``folder`` (which must exist) and return them."""
    f = Path(folder)
    base = base_sheets()
    cases: list[Case] = []
    base_rejects = [["customers", 5, "opened_on", "not a date"], ["changes", 4, "type", "type must be"]]
    held_base = ["B2", "C3"]  # A1 has a rejected change row: held

    def fmt(name, path, **kw):
        cases.append(Case(name, str(path), "rows", rejects=base_rejects, invoiced=held_base, same_as="base", **kw))

    # --- formats: the same content in each
    fmt("xlsx-openpyxl", write_xlsx(f / "base.xlsx", base))
    fmt("xlsm", write_xlsm(f / "base.xlsm", base))
    fmt("xlsx-shared-strings", write_xlsx_raw(f / "shared.xlsx", base))
    fmt("xlsx-no-cell-references", write_xlsx_raw(f / "norefs.xlsx", base, refs=False, shared=False))
    fmt("xlsx-namespace-prefix", write_xlsx_raw(f / "prefix.xlsx", base, prefix="x"))
    fmt("xls", write_xls(f / "base.xls", base))
    fmt("ods", write_ods(f / "base.ods", base))
    fmt("csv-utf8", write_csv_dir(f / "csv-utf8", base) / "customers.csv")
    fmt("csv-utf8-bom-folder", write_csv_dir(f / "csv-bom", base, bom=True))
    fmt("csv-gbk", write_csv_dir(f / "csv-gbk", base, encoding="gbk") / "customers.csv")
    fmt("csv-zip-gb18030", write_csv_zip(f / "csv.zip", base))

    # --- bombs and limits: refused before parsing, exit 2
    cases.append(Case("range-bomb-XFD1048576", str(_far_cell_xlsx(f / "far.xlsx", base)), "exit2",
                      message="uses 1048576 rows"))
    cases.append(Case("range-bomb-no-references", str(write_xlsx_raw(
        f / "wide.xlsx", _with(base, "customers", ["Z9"] + [None] * 20000 + ["x"]), refs=False)), "exit2",
        message="columns"))
    cases.append(Case("range-bomb-ods-repeat", str(write_ods(f / "far.ods", base, raw_rows={
        "customers": '<table:table-row table:number-rows-repeated="900000"><table:table-cell '
                     'office:value-type="string" table:number-columns-repeated="300"><text:p>x</text:p>'
                     '</table:table-cell></table:table-row>'})), "exit2", message="rows"))
    cases.append(Case("range-bomb-xls", str(write_xls(f / "far.xls", base, far_cell=(65535, 255))), "exit2",
                      message="columns"))
    cases.append(Case("zip-bomb-ratio", str(write_xlsx_raw(
        f / "bomb.xlsx", base, extra_members={"xl/media/pad.bin": b"\0" * (64 * 1024 * 1024)})), "exit2",
        message="zip bomb"))
    cases.append(Case("zip-bomb-shared-strings", str(_shared_strings_bomb(f / "sst.xlsx", base)), "exit2",
                      message="zip bomb"))
    cases.append(Case("too-many-members", str(write_xlsx_raw(
        f / "members.xlsx", base, extra_members={f"xl/media/{i}.txt": b"x" for i in range(1500)})), "exit2",
        message="holds"))
    cases.append(Case("unpacked-limit", str(write_xlsx_raw(
        f / "unpacked.xlsx", base, extra_members={"xl/media/noise.bin": os.urandom(1536 * 1024)})), "exit2",
        message="INVOICER_MAX_UNPACKED_MB", env={"INVOICER_MAX_UNPACKED_MB": "1"}))
    cases.append(Case("rows-limit", str(f / "base.xlsx"), "exit2", message="INVOICER_MAX_ROWS",
                      env={"INVOICER_MAX_ROWS": "3"}))
    cases.append(Case("file-size-limit", str(write_xlsx_raw(
        f / "big.xlsx", base, extra_members={"xl/media/noise.bin": os.urandom(1536 * 1024)})), "exit2",
        message="INVOICER_MAX_FILE_MB", env={"INVOICER_MAX_FILE_MB": "1"}))
    long_text = "长" * 20_000
    cases.append(Case("cell-text-limit", str(write_xlsx(f / "long.xlsx", _with(
        base, "customers", ["E5", long_text, D(2026, 10, 3), 5]))), "rows",
        rejects=base_rejects + [["customers", 6, "name", "longer than 10000 characters"]], invoiced=held_base))
    cases.append(Case("empty-file", str(_write(f / "empty.xlsx", b"")), "exit2", message="empty"))
    cases.append(Case("not-a-workbook", str(_write(f / "text.xlsx", b"hello")), "exit2",
                      message="not a readable Excel workbook"))
    cases.append(Case("truncated-zip", str(_write(f / "cut.xlsx", (f / "base.xlsx").read_bytes()[:3000])),
                      "exit2", message="not a readable"))

    # --- values that used to crash the run: rejected cells
    values = _with(base, "customers",
                   ["E5", "大数公司", D(2026, 10, 3), 1e308],
                   ["E6", "大数公司", D(2026, 10, 3), 1e20],
                   ["E7", "大数公司", D(2026, 10, 3), "123456789012345678901234567890"],
                   ["E8", "老公司", D(2008, 1, 1), 5, None, 1e308],
                   ["E9", "老公司", D(2008, 1, 1), 5, None, "123456789012345678901234567890"],
                   ["E\x0b10", "控制字符", D(2026, 10, 3), 5],
                   ["E11", "名称\x1b[31m", D(2026, 10, 3), 5],
                   ["-E12", "横杠", D(2026, 10, 3), 5],
                   ["_E13", "下划线", D(2026, 10, 3), 5],
                   ["E14", "远日", D(9999, 1, 1), 5])
    values = _with(values, "changes", ["B2", D(2026, 10, 12), "add", 1e20, "大"],
                   ["B2", D(2026, 10, 13), "add", 1, "ref\x0bx"])
    cases.append(Case("crashing-values", str(write_xlsx_raw(f / "values.xlsx", values)), "rows", rejects=base_rejects + [
        ["customers", 6, "seats", "an account has 3 to 50 seats"],
        ["customers", 7, "seats", "an account has 3 to 50 seats"],
        ["customers", 8, "seats", "an account has 3 to 50 seats"],
        ["customers", 9, "legacy_rate", "at most 100000 yuan"],
        ["customers", 10, "legacy_rate", "at most 100000 yuan"],
        ["customers", 11, "customer_id", "may only hold letters"],
        ["customers", 12, "name", "control character (\\x1b)"],
        ["customers", 13, "customer_id", "must start with a letter or digit"],
        ["customers", 14, "customer_id", "must start with a letter or digit"],
        ["customers", 15, "opened_on", "not a date"],
        ["changes", 5, "seats", "at most 50 seats"],
        ["changes", 6, "reference", "control character (\\x0b)"],
    ], invoiced=["C3"]))

    # --- misreads
    two = {"Customers": base["customers"], "客户": base["customers"], "changes": base["changes"]}
    cases.append(Case("two-customer-sheets", str(write_xlsx(f / "two.xlsx", two)), "exit2",
                      message="sheets 'Customers' and '客户' are both"))
    spaced = {" CUSTOMERS ": base["customers"], "Changes ": base["changes"], "reseller": base["reseller"]}
    cases.append(Case("sheet-names-case-and-spaces", str(write_xlsx(f / "spaced.xlsx", spaced)), "rows",
                      invoiced=held_base))
    dup = _with(base, "customers", ["b2", "重复", D(2026, 10, 3), 5])
    cases.append(Case("held-by-case", str(write_xlsx(f / "dup.xlsx", dup)), "rows",
                      rejects=base_rejects + [["customers", 6, "customer_id", "duplicate customer_id"]],
                      invoiced=["C3"]))

    # --- cells
    cells = _with(base, "customers",
                  ["Ｅ５", "全角公司", "２０２６－１０－０５", "１２"],
                  ["\u00a0E6\u3000", "\u00a0空格公司 ", " 2026-10-06\u00a0", " 5 "],
                  ["E7", "公式公司", D(2026, 10, 7), None],
                  ["E8", "无值公式", D(2026, 10, 8), None],
                  ["E9", "错误公司", D(2026, 10, 9), None],
                  ["E10", "引用错误", D(2026, 10, 9), None])
    raw = {("customers", "D8"): '<c r="D8"><f>2+3</f><v>5</v></c>',
           ("customers", "D9"): '<c r="D9"><f>SUM(Z1:Z9)</f></c>',
           ("customers", "D10"): '<c r="D10" t="e"><v>#N/A</v></c>',
           ("customers", "D11"): '<c r="D11" t="e"><f>A1/0</f><v>#REF!</v></c>'}
    cases.append(Case("cells-normalised-formulas-errors", str(write_xlsx_raw(f / "cells.xlsx", cells, raw_cells=raw)),
                      "rows", rejects=base_rejects + [
                          ["customers", 9, "seats", "formula without a saved value"],
                          ["customers", 10, "seats", "the cell holds the error #N/A"],
                          ["customers", 11, "seats", "the cell holds the error #REF!"]],
                      invoiced=["B2", "C3", "E5", "E6", "E7"]))
    ods_error = ('<table:table-row><table:table-cell office:value-type="string"><text:p>E9</text:p></table:table-cell>'
                 '<table:table-cell office:value-type="string"><text:p>n</text:p></table:table-cell><table:table-cell '
                 'office:value-type="date" office:date-value="2026-10-03"/><table:table-cell office:value-type="float" '
                 'office:value="0" calcext:value-type="error" table:formula="of:=1/0"><text:p>#DIV/0!</text:p>'
                 '</table:table-cell></table:table-row>')
    cases.append(Case("ods-error-cell", str(write_ods(f / "error.ods", base, raw_rows={"customers": ods_error})), "rows",
                      rejects=base_rejects + [["customers", 6, "seats", "the cell holds the error #DIV/0!"]],
                      invoiced=held_base))
    titled = {k: ([["客户名单 2026年10月"], [None]] + v if k in ("customers", "changes") else v) for k, v in base.items()}
    cases.append(Case("header-below-title", str(write_xlsx(f / "titled.xlsx", titled)), "rows",
                      rejects=[["customers", 7, "opened_on", "not a date"], ["changes", 6, "type", "type must be"]],
                      invoiced=held_base))
    openpyxl_formula = _with(base, "customers", ["E5", "公式", D(2026, 10, 3), "=1+4"])
    cases.append(Case("formula-as-openpyxl-writes", str(write_xlsx(f / "formula.xlsx", openpyxl_formula)), "rows",
                      rejects=base_rejects + [["customers", 6, "seats", "formula without a saved value"]],
                      invoiced=held_base))

    # --- options
    cases.append(Case("period-malformed", str(f / "base.xlsx"), "exit2", message="period must look like 2026-10",
                      args=["--period", "Oct-2026"]))
    cases.append(Case("period-year-0000", str(f / "base.xlsx"), "exit2", message="out of range",
                      args=["--period", "0000-01"]))
    cases.append(Case("csv-single-file-without-pair", str(write_csv_dir(f / "lonely", {"customers": base["customers"]})
                                                             / "customers.csv"), "exit2", message="no sheet 'changes'"))
    return cases


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _far_cell_xlsx(path: Path, sheets) -> Path:
    """The 5 KB workbook with one cell at XFD1048576 (a reader allocating the range needs 512 GiB)."""
    from openpyxl import load_workbook

    write_xlsx(path, sheets)
    wb = load_workbook(path)
    wb["customers"]["XFD1048576"] = "far"
    wb.save(path)
    return path


def _shared_strings_bomb(path: Path, sheets) -> Path:
    write_xlsx_raw(path, sheets)
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "xl/sharedStrings.xml":
                data = data.replace(b"</sst>", b"<si><t>" + b"A" * (48 * 1024 * 1024) + b"</t></si></sst>")
            dst.writestr(item, data)
    tmp.replace(path)
    return path


# ------------------------------------------------------------------ the child process


def drive(cases: list[dict], work: Path) -> None:
    """Run ``invoicer run`` on each case in this process; print one JSON line per case."""
    import contextlib
    import resource
    import time
    import traceback

    from invoicer import cli, pricebook
    from invoicer.pipeline import price_roster

    book = pricebook.load_default()
    _render_each_document_once()
    warm = next((c for c in cases if c["expect"] == "rows"), None)
    if warm:  # the first PDF loads WeasyPrint and the fonts: keep that out of the first case's time
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            cli.main(["run", warm["path"], "--period", "2026-10", "--out", str(work / "warm-up"), "--workers", "1"])
    for n, c in enumerate(cases):
        out = work / f"out{n}"
        args = ["run", c["path"], "--period", "2026-10", "--out", str(out), "--workers", "1"]
        if c["args"]:
            args = ["run", c["path"], *c["args"], "--out", str(out), "--workers", "1"]
        saved = {k: os.environ.get(k) for k in c["env"]}
        os.environ.update(c["env"])
        err, std = io.StringIO(), io.StringIO()
        result: dict = {"name": c["name"]}
        start = time.perf_counter()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
                result["code"] = cli.main(args)
        except BaseException:  # noqa: BLE001 - a traceback is what this test looks for
            result["code"] = None
            result["traceback"] = traceback.format_exc()
        result["seconds"] = time.perf_counter() - start
        result["stderr"] = err.getvalue()
        if result["code"] in (0, 1):
            try:
                result.update(_partition(price_roster(Path(c["path"]), book, "2026-10"), Path(c["path"]), out))
            except BaseException:  # noqa: BLE001
                result["traceback"] = traceback.format_exc()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        result["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps(result, ensure_ascii=False), flush=True)


def _render_each_document_once() -> None:
    """The eleven format cases hold the same content, so their runs issue the same documents (same numbers:
    each case has its own ledger). Here a document identical to one already rendered (same templates, same
    content and number) gets the bytes it got then, instead of WeasyPrint laying it out again; every other
    document, hostile cell values included, is rendered for real. Nothing here compares PDF bytes."""
    import hashlib

    from invoicer.render import pdf

    real, done = pdf.Renderer.render, {}

    def render(self, doc):
        key = hashlib.sha256((str(self.root) + json.dumps(doc, sort_keys=True, ensure_ascii=False)).encode())
        if key.hexdigest() not in done:
            done[key.hexdigest()] = real(self, doc)
        return done[key.hexdigest()]

    pdf.Renderer.render = render


def partition_violations(priced, raw) -> list[str]:
    """What breaks "every input row is rejected or accepted, exactly once, and no billed line comes from a
    rejected row" for a priced roster (pipeline.Priced) and its raw rows (roster.RawRoster)."""
    from collections import Counter

    from invoicer.roster import ROW

    cs, chs = raw.sheet_titles["customers"], raw.sheet_titles["changes"]
    every = {(cs, int(r)) for r in raw.customers[ROW]} | {(chs, int(r)) for r in raw.changes[ROW]}
    counts = Counter((r.sheet, r.row) for r in priced.rejects)
    rejected = set(counts)
    typed = priced.roster
    accepted = {(cs, int(r)) for r in typed.customers.loc[typed.customers["valid"], "row"]}
    accepted |= {(chs, int(r)) for r in typed.changes["row"]} - rejected
    violations = [f"rejected {n} times: {k}" for k, n in counts.items() if n != 1]
    violations += [f"both accepted and rejected: {k}" for k in sorted(accepted & rejected)]
    violations += [f"neither accepted nor rejected: {k}" for k in sorted(every - accepted - rejected)]
    violations += [f"not an input row: {k}" for k in sorted((accepted | rejected) - every)]
    for inv in priced.invoices:
        for line in inv["lines"]:
            where = (cs if line["kind"] == "opening" else chs, line["row"])
            if where in rejected:
                violations.append(f"billed from a rejected row: {where}")
    return violations


def _partition(priced, path: Path, out: Path) -> dict:
    """Every input row rejected or accepted, exactly once; no billed line from a rejected row; plus the
    summary's cells, for comparing formats. ``violations`` lists what broke the partition."""
    from openpyxl import load_workbook

    from invoicer.roster import read_roster

    violations = partition_violations(priced, read_roster(path))
    summary = load_workbook(out / "summary.xlsx", read_only=True)
    cells = {ws.title: [["" if v is None else str(v) for v in row] for row in ws.iter_rows(values_only=True)]
             for ws in summary.worksheets}
    if len(cells.get("rejected", [[]])) - 1 != len(priced.rejects):
        violations.append("the summary's rejected sheet does not list every reject")
    return {
        "violations": violations,
        "rejected": [[r.sheet, r.row, r.column, r.reason] for r in priced.rejects],
        "invoiced": sorted({inv["customer"]["customer_id"] for inv in priced.invoices}),
        "summary": cells,
    }


def main(argv: list[str]) -> None:
    if argv and argv[0] == "--drive":
        drive(json.loads(Path(argv[1]).read_text()), Path(argv[2]))
        return
    folder = Path(argv[0] if argv else "corpus")
    folder.mkdir(parents=True, exist_ok=True)
    for c in write_corpus(folder):
        print(json.dumps(asdict(c), ensure_ascii=False))


if __name__ == "__main__":
    main(sys.argv[1:])
