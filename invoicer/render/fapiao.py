"""Issued bills -> the e-fapiao platform's bulk-issue import file (批量开具, template V260401) as bytes.

The clerk uploads ``fapiao/<prefix>-<period>.xlsx`` to the 电子发票服务平台 instead of typing every line:
one row per issued (not cancelled) bill in ``1-发票基本信息``, one row per line in ``2-发票明细信息``, linked
by 发票流水号 = our bill number. ``fapiao/<prefix>-<period>-red.xlsx`` lists every credit note of the period
so the clerk can raise the red-letter (红字) fapiao for each reversed bill.

Pure: documents in, bytes and problems out; no output files, no clock. Every cell is text (the template says so,
and a buyer named "=..." must stay a name), amounts exact to the fen (vat.split_gross is the one split
rule; the platform applies the same rule to 金额 with 是否含税 = 是). Where the platform's rules are stricter
than our data (field lengths, rows, a 专票 without the buyer's tax id), the bill is left out of the import
sheets, never truncated, and listed in the ``problems`` sheet and in ``Exports.problems`` for the console.

Memory does not grow with the month (issue #13): the bills are read once, in number order, and each import
file of at most ROWS_MAY_FAIL detail rows is made as soon as it is full and handed on (``stream_exports``);
the problem rows and the credit notes' rows wait in temporary files (the only files used) and are
serialised into their sheets as openpyxl would (summary._SheetRows), not held as cells.
"""
from __future__ import annotations

import datetime as dt
import io
import pickle
import tempfile
from dataclasses import dataclass, field
from decimal import Decimal

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.utils import column_index_from_string

from ..money import plain_yuan
from ..vat import split_gross
from .fapiao_layout import SHEETS, VERSION_CELL
from .summary import RAW_ROWS, _SheetRows, copy_deterministic_zip

BASIC, DETAIL = "1-发票基本信息", "2-发票明细信息"
PROBLEMS_SHEET = "problems"
PROBLEM_COLUMNS = ["发票流水号 bill", "客户编号 customer", "问题 problem", "处理 action"]
LEFT_OUT = "未导出 left out of the import sheets"
# the template: "超过2000行后可能会导致系统异常无法开具发票，超过5000行后无法开具发票": files hold at most 2000
ROWS_MAY_FAIL = 2000
# problems told on the console (and kept in the manifest's warnings) one per line, at most; the rest are
# counted in one line (the problems sheet lists them all)
CONSOLE_PROBLEMS = 20
SPECIAL = "增值税专用发票"

RED_COLUMNS = ["贷项通知单号 credit note", "开具日期 issued", "原账单号 original bill", "原发票流水号 fapiao serial",
               "购买方名称 buyer", "购买方纳税人识别号 buyer tax id", "冲销金额(含税) amount", "不含税金额 net",
               "税额 VAT", "税率 rate", "原因 reason", "替代账单号 replaced by", "建议红冲原因 suggested red reason"]

# Platform limits of the fields we fill (row 2 of the template: "限N字符")
LIMITS = {"发票流水号": 20, "购买方名称": 100, "购买方纳税人识别号": 20, "购买方地址": 100, "购买方电话": 50,
          "购买方开户银行": 100, "购买方银行账号": 100, "备注": 230, "购买方邮箱": 72, "项目名称": 100,
          "商品和服务税收编码": 20, "规格型号": 40, "单位": 22}


@dataclass
class Exports:
    """What one period's fapiao files hold: the import workbook(s), the red-letter list (None without credit
    notes), and one plain line per problem for the console."""

    main: bytes
    red: bytes | None
    problems: list[str] = field(default_factory=list)
    more: list[bytes] = field(default_factory=list)  # further import files when one would pass ROWS_MAY_FAIL


def _headers(title: str) -> dict[str, int]:
    """Header text of row 3 -> 1-based column, for one official sheet."""
    for name, _merged, rows in SHEETS:
        if name == title:
            return {text: column_index_from_string(letter) for letter, text in rows[3]}
    raise KeyError(title)


def _text(ws, row: int, col: int, value) -> None:
    if value is None or value == "":
        return
    c = ws.cell(row=row, column=col, value=str(value))
    c.data_type = "s"  # text, never a formula or a number, whatever it looks like


def _official_sheet(wb: Workbook, title: str):
    ws = wb.create_sheet(title)
    for name, merged, rows in SHEETS:
        if name != title:
            continue
        for r, cells in rows.items():
            for letter, text in cells:
                _text(ws, r, column_index_from_string(letter), text)
        for rng in merged:
            ws.merge_cells(rng)
    return ws


def unit_price(amount_fen: int, quantity: int) -> str:
    """单价 as text: amount / quantity when it is exact to the fen (always, for our lines: an amount is
    seats x a per-seat price), else '' so that the platform derives it from 金额 and 数量.

    >>> unit_price(140000, 2), unit_price(100, 3)
    ('700.00', '')
    """
    if quantity <= 0 or amount_fen % quantity:
        return ""
    return plain_yuan(amount_fen // quantity)


def bill_rows(doc: dict, extra: dict, vat: dict) -> tuple[dict, list[dict], list[str]]:
    """One bill -> (its 1-发票基本信息 row, its 2-发票明细信息 rows, problems that keep it out of the import).
    ``extra``: the roster's fapiao columns for this customer (fapiao_kind, phone, bank, bank_account)."""
    cust = doc["customer"]
    kind = extra.get("fapiao_kind") or vat["fapiao_kind"]
    tax_id = cust.get("tax_id", "").strip().upper()
    basic = {"发票流水号": doc["number"], "发票类型": kind, "是否含税": "是", "购买方名称": cust["name"],
             "购买方纳税人识别号": tax_id, "购买方地址": cust.get("address", ""),
             "购买方电话": extra.get("phone", ""), "购买方开户银行": extra.get("bank", ""),
             "购买方银行账号": extra.get("bank_account", ""), "购买方邮箱": cust.get("email", ""),
             "备注": f"账单号 {doc['number']} 账期 {doc['period']}"}
    details, problems = [], []
    for x in doc["lines"]:
        if x["amount_fen"] == 0:
            continue  # nothing to tax; the platform refuses a line of 0.00 (listed below if the bill is empty)
        details.append({"发票流水号": doc["number"], "项目名称": vat["item_name"], "商品和服务税收编码": vat["tax_code"],
                        "规格型号": f"{x['seats']}工号×{x['months']}月", "单位": vat["unit"],
                        "数量": str(x["seats"]) if unit_price(x["amount_fen"], x["seats"]) else "",
                        "单价": unit_price(x["amount_fen"], x["seats"]), "金额": plain_yuan(x["amount_fen"]),
                        "税率": vat["rate"]})
    if not details:
        problems.append("the bill's amount is 0.00: there is nothing to put on a fapiao")
    if kind == SPECIAL and not tax_id:
        problems.append("a 增值税专用发票 needs the buyer's tax id (税号); add it to the roster and re-run with --amend")
    elif not tax_id:
        problems.append("the platform needs the buyer's tax id (税号) for a fapiao to an enterprise; add it to "
                        "the roster and re-run with --amend (it is printed on the bill)")
    for row in [basic, *details]:
        for key, value in row.items():
            if ILLEGAL_CHARACTERS_RE.search(value):
                problems.append(f"{key} holds control characters, which a workbook cannot hold: {value!r}")
                continue
            limit = LIMITS.get(key)
            if limit and len(value) > limit:
                problems.append(f"{key} has {len(value)} characters; the platform takes at most {limit}: {value!r}")
    if len(details) > ROWS_MAY_FAIL:
        problems.append(f"{len(details)} lines; the platform cannot issue a fapiao of more than {ROWS_MAY_FAIL}")
    return basic, details, sorted(set(problems), key=problems.index)


def build_exports(documents, default_vat: dict, extras, created: dt.datetime) -> Exports:
    """documents: the period's issued bills and credit notes, each with 'number' and 'status' (as for the
    summary): a list, or an iterable in number order (publish.PeriodBills), read in one pass. default_vat:
    the price book's [vat] snapshot, for bills issued before documents recorded theirs. extras: customer_id
    -> the roster's fapiao columns (anything with ``get(customer_id, default)``: a dict, or
    publish_fapiao.BuyerColumns). Returns the workbooks' bytes (deterministic) and the problems, one line
    each: every file at once (``stream_exports`` gives them one at a time, as publish and verify read them).
    Bills go into import files of at most ROWS_MAY_FAIL detail rows each (the first is ``main``, the others
    ``more``), a bill never split across two files."""
    console: list[str] = []
    main, red, more = b"", None, {}
    for n, data in stream_exports(documents, default_vat, extras, created, console):
        if n == 1:
            main = data
        elif n == RED:
            red = data
        else:
            more[n] = data
    return Exports(main, red, console, [more[n] for n in sorted(more)])


RED = 0  # stream_exports' number of the red-letter list (import files are 1, 2, ...)


def stream_exports(documents, default_vat: dict, extras, created: dt.datetime, console: list[str]):
    """``build_exports`` one file at a time: yields (n, bytes) for import file n >= 2 as soon as it is full,
    then import file 1 (made last: its problems sheet lists the whole period), then (RED, bytes) for the
    red-letter list when the period has credit notes; ``console`` receives the problems once the last file
    is yielded. The documents are read in one pass, a file is let go once yielded: memory is bounded by
    two import files' rows, not by the number of bills (the problem rows and the credit notes' rows wait
    in temporary files; the first import file's and the red-letter list's bytes, compressed, do grow with
    them, as does ``replaced_by``, a number per replacing bill)."""
    if isinstance(documents, list):
        documents = sorted(documents, key=lambda d: d["number"])
    first: list[tuple[dict, list[dict]]] = []
    part: list[tuple[dict, list[dict]]] = first
    parts = 1
    rows_in_part = detail_rows = 0
    told: list[str] = []  # the first CONSOLE_PROBLEMS + 1 problem lines (the console's screenful)
    left_out = 0
    # kept on disk as they come: the first import file's problems sheet (a row per problem) and the
    # red-letter list (a row per credit note: a month amended wholesale has one per bill)
    problem_rows, red_rows = _Spilled(), _Spilled()
    red_in_order, last_credit = True, None
    replaced_by: dict[str, str] = {}
    try:
        for doc in documents:
            if doc.get("replaces"):
                replaced_by[doc["replaces"]] = doc["number"]
            if doc["kind"] == "credit_note":
                red = _red_row(doc, default_vat)
                if last_credit is not None and red[0] < last_credit:
                    red_in_order = False
                last_credit = red[0]
                red_rows.append(red)
            if doc["kind"] != "invoice" or doc.get("status", "issued") != "issued":
                continue
            vat = doc.get("vat") or default_vat
            basic, details, problems = bill_rows(doc, extras.get(doc["customer"]["customer_id"], {}), vat)
            if problems:
                for p in problems:
                    problem_rows.append([doc["number"], doc["customer"]["customer_id"], p, LEFT_OUT])
                    left_out += 1
                    if len(told) <= CONSOLE_PROBLEMS:
                        told.append(f"fapiao: bill {doc['number']} ({doc['customer']['customer_id']}) left out of "
                                    f"the import file: {p}")
                continue
            if rows_in_part + len(details) > ROWS_MAY_FAIL:
                if part is not first:
                    yield parts, _import_book(part, None, created)
                parts += 1
                part = []
                rows_in_part = 0
            part.append((basic, details))
            rows_in_part += len(details)
            detail_rows += len(details)
        if part is not first:
            yield parts, _import_book(part, None, created)
        del part
        if left_out > CONSOLE_PROBLEMS:  # the sheet lists every one; the console and manifest a screenful
            told[CONSOLE_PROBLEMS:] = [f"fapiao: {left_out - CONSOLE_PROBLEMS} more problem(s) keep bills out of "
                                       f"the import file; every one is listed in its problems sheet"]
        if parts > 1:
            text = (f"{detail_rows} detail rows: the platform may fail above {ROWS_MAY_FAIL} in one import, so "
                    f"they are in {parts} files (the first, then -part2 ...); import each")
            problem_rows.append(["", "", text, "已导出 included"])
            told.append(f"fapiao: {text}")
        main = _import_book(first, problem_rows, created)
        del first
        yield 1, main
        del main
        if len(red_rows):
            # in number order as the documents come; else (never from the ledger's readers) sorted here
            yield RED, _red_list(red_rows if red_in_order else sorted(red_rows, key=lambda x: x[0]),
                                 len(red_rows), replaced_by, created)
    finally:
        problem_rows.close()
        red_rows.close()
    console.extend(told)


def _import_book(bills: list[tuple[dict, list[dict]]], problem_rows: list[list[str]] | None,
                 created: dt.datetime) -> bytes:
    """One import workbook: the official sheets with these bills' rows, and the problems sheet if given."""
    wb = Workbook()
    wb.remove(wb.active)
    basic_ws = _official_sheet(wb, BASIC)
    version = wb.create_sheet("excelVersion")
    version.sheet_state = "hidden"
    _text(version, 4, 1, VERSION_CELL)
    detail_ws = _official_sheet(wb, DETAIL)
    for title, _m, _r in SHEETS[2:]:
        _official_sheet(wb, title)
    basic_col, detail_col = _headers(BASIC), _headers(DETAIL)
    next_detail = 4
    for r, (basic, details) in enumerate(bills, 4):
        for key, value in basic.items():
            _text(basic_ws, r, basic_col[key], value)
        for d in details:
            for key, value in d.items():
                _text(detail_ws, next_detail, detail_col[key], value)
            next_detail += 1
    spliced = {}
    if problem_rows is not None:
        probs = wb.create_sheet(PROBLEMS_SHEET)
        for c, name in enumerate(PROBLEM_COLUMNS, 1):
            _text(probs, 1, c, name)
        if RAW_ROWS:  # serialised as openpyxl would, into a temporary file spliced into the sheet (a month of
            # problems is never a cell object per value): each row has its problem, so the last row is the
            # sheet's last, and the header's four columns its width
            spliced[probs] = body = _SheetRows(probs, {})
            body.write([None if v is None or v == "" else str(v) for v in row] for row in problem_rows)
            if len(problem_rows):
                probs.calculate_dimension = lambda: f"A1:D{len(problem_rows) + 1}"
        else:
            for r, row in enumerate(problem_rows, 2):
                for c, value in enumerate(row, 1):
                    _text(probs, r, c, value)
    return _save(wb, created, spliced)


class _Spilled:
    """Rows appended as they come into a temporary file and read back, in order, once all are there: a
    month's problem rows are not held in memory."""

    def __init__(self):
        self.file = tempfile.TemporaryFile()
        self.count = 0

    def append(self, row: list[str]) -> None:
        pickle.dump(row, self.file, pickle.HIGHEST_PROTOCOL)
        self.count += 1

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        self.file.seek(0)
        for _ in range(self.count):
            yield pickle.load(self.file)

    def close(self) -> None:
        self.file.close()


def _red_row(doc: dict, default_vat: dict) -> tuple[str, list, str]:
    """A credit note's number, its row of the red-letter list but for the last three cells (they name the
    bill that replaces the cancelled one: ``_red_list`` adds them), and the number of the bill it cancels."""
    vat = doc.get("vat") or default_vat
    if "net_total_fen" in doc:
        net, tax = doc["net_total_fen"], doc["tax_total_fen"]
    else:  # reverses a bill issued before bills stated VAT: the same rule, line by line
        parts = [split_gross(x["amount_fen"], vat["rate"]) for x in doc["lines"]]
        net, tax = sum(p[0] for p in parts), sum(p[1] for p in parts)
    row = [doc["number"], doc["issue_date"], doc["cancels"], doc["cancels"], doc["customer"]["name"],
           doc["customer"].get("tax_id", "").upper(), plain_yuan(doc["total_fen"]), plain_yuan(net),
           plain_yuan(tax), vat["rate"]]
    return doc["number"], row, doc["cancels"]


def _red_list(red_rows, count: int, replaced_by: dict[str, str], created: dt.datetime) -> bytes:
    """One row per credit note (``count`` of ``_red_row``, in number order): the bill it reverses, that bill's
    发票流水号, the amount and why (``replaced_by``: a cancelled bill's number -> the number of the bill that
    replaces it)."""
    wb = Workbook()
    ws = wb.active
    ws.title = "红字 credit notes"
    for c, name in enumerate(RED_COLUMNS, 1):
        _text(ws, 1, c, name)

    def rows():
        for _number, row, cancels in red_rows:
            new = replaced_by.get(cancels, "")
            reason = (f"账单更正, 由 {new} 替代 (amended; replaced by {new})" if new
                      else "账单撤销, 本期不再计费 (withdrawn: no longer billed this period)")
            yield [ILLEGAL_CHARACTERS_RE.sub("\N{REPLACEMENT CHARACTER}", str(value))
                   for value in [*row, reason, new, "开票有误" if new else "服务中止"]]

    spliced = {}
    if RAW_ROWS:  # as the problems sheet (_import_book): each row has its number (A) and its last cell (M)
        spliced[ws] = body = _SheetRows(ws, {})
        body.write([v or None for v in row] for row in rows())
        ws.calculate_dimension = lambda: f"A1:M{count + 1}"
    else:
        for r, row in enumerate(rows(), 2):
            for c, value in enumerate(row, 1):
                _text(ws, r, c, value)
    return _save(wb, created, spliced)


def _save(wb: Workbook, created: dt.datetime, spliced: dict | None = None) -> bytes:
    """The workbook's bytes, deterministic (summary.copy_deterministic_zip); ``spliced``: worksheet -> its
    rows serialised by summary._SheetRows, copied into the sheet after the rows openpyxl wrote."""
    wb.properties.creator = "qq-invoicer"
    wb.properties.lastModifiedBy = "qq-invoicer"
    wb.properties.created = wb.properties.modified = created
    buf = io.BytesIO()
    try:
        wb.save(buf)
        # a cell refers to its sheet and the sheet to its cells: a cycle, which Python frees only at its next
        # full collection, so a month's import files piled up as garbage (tens of MB at 100,000 customers);
        # emptied here, each file's cells are freed as soon as it is saved
        for ws in wb.worksheets:
            ws._cells.clear()
        buf.seek(0)
        out = io.BytesIO()
        copy_deterministic_zip(buf, out, created, {ws.path.lstrip("/"): (body.file, body.size)
                                                   for ws, body in (spliced or {}).items()})
        return out.getvalue()
    finally:
        for body in (spliced or {}).values():
            body.file.close()


def totals_by_bill(data: bytes) -> dict[str, Decimal]:
    """Sum of 金额 per 发票流水号 of an import file (what the platform will invoice), for checks and tests."""
    from openpyxl import load_workbook

    ws = load_workbook(io.BytesIO(data))[DETAIL]
    col = _headers(DETAIL)
    out: dict[str, Decimal] = {}
    for row in ws.iter_rows(min_row=4, values_only=True):
        if row[col["发票流水号"] - 1]:
            key = row[col["发票流水号"] - 1]
            out[key] = out.get(key, Decimal(0)) + Decimal(row[col["金额"] - 1])
    return out

