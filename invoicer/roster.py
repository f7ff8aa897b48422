"""Reads the roster workbook into raw DataFrames, every row keeping its spreadsheet row number.

Nothing is interpreted here beyond finding the sheets and mapping English or Chinese headers to the
canonical column names; validate.py turns the raw cells into typed columns. Reading uses the Rust
``calamine`` reader (several times faster than openpyxl on large rosters).
"""
from __future__ import annotations

import csv
import functools
import hashlib
import io
import itertools
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pandas as pd
import python_calamine

from . import formats, xlsx_stream
from . import limits as limits_mod
from .errors import InputError
from .limits import CSV_SUFFIXES, Limits
from .stage import CHANGES, CUSTOMERS, RosterStage

SHEET_ALIASES = {
    "customers": ("customers", "客户"),
    "changes": ("changes", "变更"),
    "reseller": ("reseller", "经销商"),
}
REQUIRED_SHEETS = ("customers", "changes")

# canonical column -> (aliases, required)
COLUMNS: dict[str, dict[str, tuple[tuple[str, ...], bool]]] = {
    "customers": {
        "customer_id": (("客户编号",), True),
        "name": (("客户名称",), True),
        "opened_on": (("开通日期",), True),
        "seats": (("工号数",), True),
        "paid_through": (("已付至",), False),
        "legacy_rate": (("老资费",), False),
        "qq_number": (("企业QQ号码", "企业qq号码"), False),
        "email": (("邮箱",), False),
        "address": (("地址",), False),
        "tax_id": (("税号",), False),
        # buyer details the e-fapiao export needs (optional; see README "The clerk's month")
        "fapiao_kind": (("发票类型",), False),
        "phone": (("电话", "购买方电话"), False),
        "bank": (("开户行", "开户银行", "购买方开户银行"), False),
        "bank_account": (("银行账号", "账号", "购买方银行账号"), False),
    },
    "changes": {
        "customer_id": (("客户编号",), True),
        "date": (("日期",), True),
        "type": (("类型",), True),
        "seats": (("工号数",), False),
        "reference": (("备注",), False),
    },
}

RESELLER_KEYS = {
    "name": ("name", "名称", "经销商名称"),
    "tax_id": ("tax_id", "税号"),
    "address": ("address", "地址"),
    "phone": ("phone", "电话"),
    "bank": ("bank", "开户行", "银行"),
    "invoice_prefix": ("invoice_prefix", "发票前缀"),
}

HEADER_SEARCH_ROWS = 20  # a header row may sit below a title and notes, within the sheet's first rows
ROW = "_row"  # the spreadsheet's own row number (1-based, as Excel shows it)


@dataclass
class RawRoster:
    """A roster as read: its bytes, the reseller block, the sheet titles, the reader's warnings, and the
    customers and changes sheets' data rows staged on disk by customer (``stage``), read back a partition
    at a time (``partitions``) or, for a small roster or a test, whole (``customers``, ``changes``)."""

    path: str
    sha256: str
    data: bytes
    stage: RosterStage
    reseller: dict[str, str]
    sheet_titles: dict[str, str]
    warnings: list[str] = field(default_factory=list)

    @property
    def customers(self) -> pd.DataFrame:
        return self.stage.frame(CUSTOMERS)

    @property
    def changes(self) -> pd.DataFrame:
        return self.stage.frame(CHANGES)

    def partitions(self, size: int | None = None):
        """Each partition of whole customers as a ``RosterPart`` validate takes like a roster (see stage.py)."""
        for customers, changes in self.stage.partitions(size):
            yield RosterPart(customers, changes, self.reseller, self.sheet_titles)


@dataclass
class RosterPart:
    """Some customers of a roster (their rows of both sheets), with the roster's reseller block and titles."""

    customers: pd.DataFrame
    changes: pd.DataFrame
    reseller: dict[str, str]
    sheet_titles: dict[str, str]
    warnings: list[str] = field(default_factory=list)


def _norm(header: object) -> str:
    return str(header).strip().casefold().replace(" ", "_") if header is not None else ""


def is_blank(v: object) -> bool:
    """An empty cell: nothing, or only white space."""
    return v is None or (isinstance(v, str) and not v.strip()) or (isinstance(v, float) and v != v)


@dataclass(frozen=True)
class CellProblem:
    """A cell the reader could not take at face value (an error cell, a formula without a saved value, a
    text over the length limit); validate rejects its row with ``reason``, showing ``value``."""

    value: str
    reason: str

    def __str__(self) -> str:
        return self.value


# Control characters (tab, line feed and return are text), the invisible characters that change the order
# text is shown in (a "Trojan Source" spoof of a name on a bill) and the two noncharacters XML cannot hold
# (U+FFFE, U+FFFF: a summary holding one is not well-formed). validate rejects a cell holding one; messages
# and the summary show them escaped (escape_controls).
CONTROL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
                        "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufffe\uffff]")


def escape_controls(text: str) -> str:
    """Control characters shown as \\x0b (direction controls as \\u202e): for sheet titles, headers and
    rejected values in messages and in the summary (openpyxl refuses to write the first; the second would
    reorder what is shown around them)."""
    return CONTROL_RE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                        else f"\\u{ord(m.group()):04x}", text)


def _limits() -> Limits:
    try:
        return limits_mod.current()
    except ValueError as exc:
        raise InputError(str(exc)) from None


def read_roster(path: str | Path, limits: Limits | None = None) -> RawRoster:
    """Read a roster file into raw frames (nothing interpreted but sheet and header names).

    ``path`` is an .xlsx/.xlsm/.xls/.ods workbook, a .zip of CSV files, a folder holding customers.csv
    and changes.csv (optionally reseller.csv, or their Chinese names 客户.csv, 变更.csv, 经销商.csv), or
    one of those CSV files (its companions are taken from the same folder). The format is told from the
    content, not the suffix. Returns a ``RawRoster`` whose ``data`` is the file's bytes (for a CSV pair:
    a deterministic zip of the CSV files, so the ledger can keep one blob and verify can re-read it).

    Refuses with ``InputError`` (exit code 2, one line): a missing or unreadable file, a file above the
    limits (``limits.current()``), a format it does not know, a missing or doubled sheet, a missing
    required column.
    """
    limits = limits or _limits()
    p = Path(path)
    try:
        if p.is_dir() or p.suffix.lower() in CSV_SUFFIXES:
            data = _pack_csv_pair(p, limits)
        else:
            formats.check_file_size(p.stat().st_size, str(p), limits)
            data = p.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot be read ({exc.strerror})") from None
    return read_roster_bytes(data, str(p), limits)


def _pack_csv_pair(p: Path, limits: Limits) -> bytes:
    """The CSV files of a roster (a folder, or one of its files) packed into one deterministic zip."""
    folder = p if p.is_dir() else p.parent
    if not p.is_dir() and not p.exists():
        raise FileNotFoundError(p)
    wanted = {f"{_norm(a)}.csv" for aliases in SHEET_ALIASES.values() for a in aliases}
    named = sorted(f for f in folder.iterdir() if f.name.strip().casefold() in wanted)
    # a companion that is a link could show any file of this machine in the messages; refused, never followed
    links = [f.name for f in named if f.is_symlink()]
    if links:
        raise InputError(f"{p}: {', '.join(links)} in {folder} is a link; a roster's CSV files must be regular "
                         f"files (copy the file in instead)")
    found = [f for f in named if f.is_file()]
    if not found:
        raise InputError(f"{p}: no customers.csv (客户.csv) and changes.csv (变更.csv) in {folder}")
    formats.check_file_size(sum(f.stat().st_size for f in found), str(p), limits)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in found:
            info = zipfile.ZipInfo(f.name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            fd = os.open(f, os.O_RDONLY | os.O_NOFOLLOW)  # a link swapped in since the listing is refused
            with os.fdopen(fd, "rb") as fh:
                # copied a block at a time (the file is never whole in memory): the same bytes as writestr
                # of the whole file (one deflate stream, headers rewritten with the sizes and CRC at its end)
                info.file_size = os.fstat(fh.fileno()).st_size
                with zf.open(info, "w") as out:
                    while block := fh.read(PACK_BLOCK):
                        out.write(block)
    return buf.getvalue()


PACK_BLOCK = 1024 * 1024  # bytes of a CSV file copied into the roster's zip at a time


def read_roster_bytes(data: bytes, name: str, limits: Limits | None = None) -> RawRoster:
    """Read a roster from its bytes (the format told from the content); ``name`` is used in messages.

    Same result and refusals as ``read_roster``; this is how the watcher and verify re-read a roster.
    """
    limits = limits or _limits()
    formats.check_file_size(len(data), name, limits)
    kind = formats.detect(data, name)
    scans: dict[str, formats.SheetScan] = {}
    if kind == "csv" and not name.lower().endswith(CSV_SUFFIXES):
        raise InputError(f"{name}: not a readable Excel workbook (.xlsx, .xlsm, .xls, .ods) nor a CSV roster")
    if kind == "csv":
        raise InputError(f"{name}: a single CSV file; a CSV roster is a pair: put customers.csv and "
                         f"changes.csv in one folder (or one .zip) and give that")
    if kind == "csvzip":
        scan = formats.inspect_zip(data, name, kind, limits, csv_member=functools.partial(_csv_check, name, limits))
        sheets = _csv_sheets(scan.csv, name, limits)
        titles = _roles(list(sheets), name)
        book = _CsvBook(data, sheets)
    else:
        role_titles: dict[str, str] = {}

        def wanted(all_titles: list[str]) -> list[str]:
            role_titles.update(_roles(all_titles, name))
            return list(role_titles.values())

        if kind in ("xlsx", "ods"):
            scans = formats.inspect_zip(data, name, kind, limits, wanted).sheets
        elif kind == "xls":
            scans = formats.scan_xls(data, name)
        if scans:
            # calamine loads every sheet of an .ods or .xls when it opens it: check them all first
            for title in (role_titles.values() if kind == "xlsx" else list(scans)):
                if title in scans:
                    formats.check_extent(scans[title], name, limits)

        def calamine_book() -> _CalamineBook:
            if kind == "xlsx":
                _check_shared_strings_count(data, name, limits)
            try:
                wb = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
            except Exception as exc:  # calamine raises several types for corrupt or non-Excel files
                raise InputError(f"{name}: not a readable workbook (.xlsx, .xlsm, .xls, .ods): "
                                 f"{escape_controls(str(exc))[:200]}") from None
            return _CalamineBook(wb, scans)

        book = None
        if kind == "xlsx":  # streamed (memory flat in the rows), unless it uses what only calamine reads
            try:
                book = _StreamBook(xlsx_stream.XlsxBook(data, name, limits), scans)
            except xlsx_stream.Unsupported:
                book = None
        if book is None:
            book = calamine_book()
        titles = role_titles or _roles(book.wb.sheet_names, name)
    try:
        stage, reseller, warnings = _stage(book, titles, name, limits)
    except xlsx_stream.Unsupported:  # found while streaming: read again by calamine (the stage is dropped)
        book.close()
        book = calamine_book()
        stage, reseller, warnings = _stage(book, titles, name, limits)
    finally:
        book.close()
    return RawRoster(
        path=name,
        sha256=hashlib.sha256(data).hexdigest(),
        data=data,
        stage=stage,
        reseller=reseller,
        sheet_titles={k: escape_controls(v) for k, v in titles.items()},
        warnings=warnings,
    )


_UNIQUE_COUNT = re.compile(rb"""\suniqueCount\s*=\s*["']\s*\+?0*([0-9]{1,30})""")


def _check_shared_strings_count(data: bytes, name: str, limits: Limits) -> None:
    """Refuse (InputError, exit 2) an .xlsx whose shared strings declare more strings than their bytes can
    hold, before calamine opens it: calamine reserves memory for the declared count, and a forged count
    (uniqueCount="999999999999" in a 2 KB file) made its Rust code abort the whole process (a watcher with
    it) with a backtrace (review 9). A string takes at least five bytes (<si/>); the declared size is the
    one inflating checks."""

    try:
        members = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (zipfile.BadZipFile, ValueError, OSError):
        return  # calamine refuses it in one line
    for info in members:
        if not info.filename.casefold().endswith("sharedstrings.xml"):
            continue
        head, _ = formats.peek(formats.inflate_member(data, info, name, limits), 64 * 1024)
        found = _UNIQUE_COUNT.search(head)
        if found and int(found.group(1)) > info.file_size // 5 + 1:
            raise InputError(f"{name}: its shared strings ({info.filename}) declare {found.group(1)[:30].decode()} "
                             f"strings, more than their {info.file_size} bytes can hold: a damaged or forged "
                             f"workbook; open it in Excel and save it again")


def _stage(book, titles: dict[str, str], name: str, limits: Limits):
    """The customers and changes sheets' data rows staged, the reseller block and the reader's warnings."""
    warnings: list[str] = []
    stage = RosterStage({CUSTOMERS: list(COLUMNS["customers"]), CHANGES: list(COLUMNS["changes"])})
    try:
        for sheet, number in (("customers", CUSTOMERS), ("changes", CHANGES)):
            rows = book.rows(titles[sheet], name, limits)
            stage.add(number, _data_rows(rows, sheet, escape_controls(titles[sheet]), name, warnings, limits))
        reseller = {}
        if "reseller" in titles:
            reseller = _reseller(book.rows(titles["reseller"], name, limits, whole=True),
                                 escape_controls(titles["reseller"]), warnings)
    except BaseException:
        stage.close()
        raise
    return stage, reseller, warnings


def _roles(sheet_names: list[str], name: str) -> dict[str, str]:
    """Role -> sheet title, matching titles ignoring case and surrounding spaces; refuses a missing
    required sheet and two sheets for one role."""
    titles: dict[str, str] = {}
    for canonical, aliases in SHEET_ALIASES.items():
        matches = [t for t in sheet_names if _norm(t) in {_norm(a) for a in aliases}]
        if len(matches) > 1:
            both = " and ".join(f"'{escape_controls(t)}'" for t in matches)
            raise InputError(f"{name}: sheets {both} are both the '{canonical}' sheet ({aliases[1]}); "
                             f"keep one")
        if matches:
            titles[canonical] = matches[0]
    missing = [s for s in REQUIRED_SHEETS if s not in titles]
    if missing:
        found = ", ".join(escape_controls(t) for t in sheet_names) or "none"
        want = " and ".join(f"'{s}' ({SHEET_ALIASES[s][1]})" for s in missing)
        raise InputError(f"{name}: the workbook has no sheet {want}; sheets found: {found}")
    return titles


def _marked(rows, scan: formats.SheetScan | None):
    """The rows with the scan's misread cells (formula without a saved value, error) as CellProblem."""
    marks: dict[int, list] = {}  # row -> the scan's misread cells in it
    for (r, c), problem in (scan.problems.items() if scan else ()):
        marks.setdefault(r, []).append((c, problem))
    for r, row in enumerate(rows):
        for c, (value, reason) in marks.get(r, ()):
            if c >= len(row):
                row.extend([None] * (c + 1 - len(row)))
            row[c] = CellProblem(value, reason)
        yield row


class _StreamBook:
    """Sheets of an .xlsx/.xlsm streamed by xlsx_stream (the cells calamine gives, memory flat in the rows),
    with the scan's misread cells marked. Its rows are as long as the longest so far (calamine's are all as
    long as the sheet's widest): the same cells under every header; ``whole`` reads a small sheet (the
    reseller block) at once, padded as calamine pads it. Raises xlsx_stream.Unsupported for a file calamine
    must read."""

    def __init__(self, book: xlsx_stream.XlsxBook, scans: dict[str, formats.SheetScan]):
        self.book, self.scans = book, scans

    def rows(self, title: str, name: str, limits: Limits, whole: bool = False):
        rows = self.book.rows(title)
        if whole:
            rows = list(rows)
            width = max((len(r) for r in rows), default=0)
            rows = [r + [""] * (width - len(r)) for r in rows]
        return _marked(rows, self.scans.get(title))

    def close(self) -> None:
        self.book.close()


class _CalamineBook:
    """Sheets of an .xlsx/.xlsm/.xls/.ods read by calamine, with the scan's misread cells marked."""

    def __init__(self, wb, scans: dict[str, formats.SheetScan]):
        self.wb, self.scans = wb, scans

    def close(self) -> None:
        pass

    def rows(self, title: str, name: str, limits: Limits, whole: bool = False):
        """The sheet's rows padded from A1, one at a time (calamine holds the sheet's cells; the rows' Python
        values are made as they are read)."""
        try:
            sheet = self.wb.get_sheet_by_name(title)
            # rows are padded from A1: the extent is the used range's end, not its size
            (top, left) = sheet.start or (0, 0)
            formats.check_extent(formats.SheetScan(title, top + sheet.height, left + sheet.width), name, limits)
            rows = sheet.iter_rows()  # from row 1, but from the used range's first column
        except InputError:
            raise
        except BaseException as exc:
            raise _unreadable(exc, name, title) from None
        pad = [""] * left
        try:
            yield from _marked((pad + row if left else row for row in rows), self.scans.get(title))
        except BaseException as exc:  # a cell calamine cannot convert: OverflowError, or its Rust code panicking
            raise _unreadable(exc, name, title) from None


def _unreadable(exc: BaseException, name: str, title: str) -> BaseException:
    """What calamine raising ``exc`` while reading a sheet becomes: one line (InputError, exit 2) naming the
    file and the sheet. calamine raises several types, and a cell it cannot convert (a date-formatted number
    far outside any calendar) makes its Rust code panic: pyo3's PanicException, a BaseException. Python's
    own BaseExceptions (Ctrl-C, exit, a generator closed) are returned as they are."""
    if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit, InputError)) or not isinstance(
            exc, Exception) and type(exc).__name__ != "PanicException":
        return exc
    return InputError(f"{name}: sheet '{escape_controls(title)}' cannot be read: "
                      f"{escape_controls(str(exc))[:200]}")


@dataclass(frozen=True)
class _CsvFile:
    """One CSV member of a roster as its check (``_csv_check``) found it: the sheet it is (its title), the
    encoding it is read in, and the one-line refusal it earns (None: none)."""

    info: zipfile.ZipInfo
    title: str
    encoding: str | None
    problem: str | None


class _CsvBook:
    """The CSV files of a roster: checked whole as they were inflated (``_csv_check``), then read again, one
    row at a time, for the stage (the zip's bytes are kept; its inflated files and their text never whole)."""

    def __init__(self, data: bytes, sheets: dict[str, _CsvFile]):
        self.data, self.sheets = data, sheets

    def rows(self, title: str, name: str, limits: Limits, whole: bool = False):
        """The file's rows of text cells, as read when it was checked (empty cells stay '', as calamine gives
        them; rows are not padded, ``whole`` or not)."""
        f = self.sheets[title]
        _field_limit(f.info.file_size, limits)
        return csv.reader(formats.csv_text(formats.inflate_member(self.data, f.info, name, limits), f.encoding))

    def close(self) -> None:
        pass


def _field_limit(size: int, limits: Limits) -> None:
    """No cell can be longer than its file (decoded, a file of ``size`` bytes has at most ``size``
    characters): a cell over limits.text is a rejected cell (_records), as in a workbook, not a csv.Error that
    refuses the whole roster. Only ever raised (the limit is the csv module's, for every file read)."""
    csv.field_size_limit(max(csv.field_size_limit(), limits.text + 1, size + 1))


def _csv_sheets(checked: dict[str, _CsvFile], name: str, limits: Limits) -> dict[str, _CsvFile]:
    """Sheet title -> its CSV file, in the zip's order; the title is the file's stem (customers, 客户...).
    Refuses (InputError) the first file, in the zip's order, that its check refused, and a second file
    for one title."""
    sheets: dict[str, _CsvFile] = {}
    for f in checked.values():
        if f.problem is not None:
            raise InputError(f.problem)
        if f.title in sheets:
            raise InputError(f"{name}: two files for the sheet '{f.title}'")
        sheets[f.title] = f
    return sheets


def _csv_check(name: str, limits: Limits, member: str, info: zipfile.ZipInfo, chunks, again) -> _CsvFile:
    """Check one CSV member of a roster as it inflates (``formats.inspect_zip``'s ``csv_member``), keeping
    none of it: its encoding, its quotes (``_csv_scan``) and its size in rows and columns.

    The encoding is ``formats.decode_csv``'s: told by a BOM, else UTF-8 if the whole file decodes as
    UTF-8, else GB18030. The file is decoded as UTF-8 while it is checked; a byte that is not UTF-8 (in
    a GBK file: mostly in the header) sends it, once inflated to its end, through the check again as GB18030.
    """
    title = PurePosixPath(member).stem.strip()
    where = f"{name}: {member}"
    role = next((c for c, aliases in SHEET_ALIASES.items() if _norm(title) in {_norm(a) for a in aliases}), None)
    head, chunks = formats.peek(chunks, 3)
    _field_limit(info.file_size, limits)
    for encoding in formats.csv_encodings(head):
        try:
            problem = _csv_scan(formats.csv_text(chunks, encoding), role, where, limits)
        except UnicodeDecodeError:
            for _ in chunks:  # every byte inflated (the zip's limits) before it is read in another encoding
                pass
            chunks = again()
            continue
        return _CsvFile(info, title, encoding, problem)
    return _CsvFile(info, title, None, f"{where}: a CSV file in an unknown encoding (save it as UTF-8 or GBK)")


STRAY_QUOTE_HELP = ('remove the stray quote ("), or write it twice ("") inside a quoted cell; a line break inside '
                    'a quoted name or address is fine')


def _csv_scan(lines, role: str | None, where: str, limits: Limits) -> str | None:
    """One pass over the lines of one CSV file (``formats.csv_text``), keeping one row at a time: the
    one-line refusal it earns, or None. The file is refused (in this order of precedence, as when it was read
    whole) when it is not CSV, for a stray quote that would join lines (the first, by line), for more rows
    than ``limits.rows``, for more columns than ``limits.columns``. A UnicodeDecodeError (the file is not in
    this encoding) passes through.

    A quote (") opening a cell runs that cell on to the next quote, across line ends: that is how a
    spreadsheet writes a cell holding a line break, and how a stray quote typed into a hand-edited file
    swallows the customers after it. Those rows would be neither billed nor rejected, so a file of a sheet
    (``role``: customers, changes or reseller) is refused when a cell runs across lines and
    - its quote is never closed (the rest of the file would be one cell), or
    - its closing quote is followed by more text (``"北京甲公司,...`` closed by a stray quote lines later), or
    - one of its later lines looks like a row of the sheet (as many commas as the sheet's required columns
      need; in the reseller sheet, a line starting with one of its keys).
    A single-line cell with text after its closing quote (``"北京"甲公司``) is read as before (北京甲公司).
    """
    seen: list[str] = []  # the lines of the record being read (the reader reads no further than its end)

    def tap():
        for line in lines:
            seen.append(line)
            yield line

    reader = csv.reader(tap())
    rows = width = 0
    stray = None
    start = 1  # the line the next record starts on
    last = None  # the latest record, when it is one line: (its line number, the line)
    try:
        for record in reader:
            rows += 1
            if len(record) > width:
                width = len(record)
            end = reader.line_num
            if role is not None and stray is None:
                if end > start:  # a cell runs across lines (rare)
                    stray = _stray_quote(start, end, "".join(seen), role, where)
                    last = None
                else:
                    last = (start, seen[0])
            seen.clear()
            start = end + 1
    except csv.Error as exc:
        for _ in lines:  # decoded to its end: a file in another encoding is read again as that first
            pass
        return f"{where}: not a readable CSV file ({exc})"
    if stray is None and last is not None and last[0] == reader.line_num:
        # the file's last line, one record: the only one-line record that can hold a quote never closed
        stray = _stray_quote(last[0], last[0], last[1], role, where)
    if stray is not None:
        return stray
    if rows > limits.rows:
        return f"{where} has {rows} rows (limit {limits.describe('rows')})"
    if width > limits.columns:
        return f"{where} has {width} columns (limit {limits.describe('columns')})"
    return None


def _stray_quote(first: int, last: int, source: str, role: str, where: str) -> str | None:
    """Why the record on lines ``first``-``last`` (their text: ``source``) joins lines it should not (see
    ``_csv_scan``), or None. A one-line record is refused only for a quote it never closes."""
    lines_named = f"line {first}" if first == last else f"lines {first}-{last}"
    strict = csv.reader(io.StringIO(source, newline=""), strict=True)
    try:
        records = list(strict)
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            return (f"{where}: a quote (\") on line {first} opens a cell that is never closed, so every line after "
                    f"it would be read into that one cell; {STRAY_QUOTE_HELP}")
        if first == last:
            return None
        return (f"{where}: {lines_named} are read as one row: a quote (\") opens a cell there that a quote on "
                f"line {first + strict.line_num - 1} closes with more text after it; {STRAY_QUOTE_HELP}")
    if first == last:
        return None
    for cell in (c for record in records for c in record if "\n" in c or "\r" in c):  # (others have no later line)
        joined = _row_like_line(cell, role)
        if joined is not None:
            return (f"{where}: {lines_named} are read as one row: a quoted cell there holds a line that looks "
                    f"like a row of its own ({escape_controls(joined[:40])!r}); {STRAY_QUOTE_HELP}")
    return None


def _row_like_line(cell: str, role: str) -> str | None:
    """A line after the first of a multi-line cell that looks like a row of the ``role`` sheet, or None."""
    later = _LINE_BREAK.split(cell)[1:]
    if role == "reseller":
        return next((line for line in later if "," in line and _norm(line.split(",", 1)[0]) in _RESELLER_KEYS), None)
    commas = _ROW_COMMAS[role]
    return next((line for line in later if line.count(",") >= commas), None)


_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_RESELLER_KEYS = {_norm(a) for aliases in RESELLER_KEYS.values() for a in aliases}
# commas in a line that looks like a row of the sheet: one fewer than its required columns
_ROW_COMMAS = {role: sum(1 for _aliases, required in spec.values() if required) - 1 for role, spec in COLUMNS.items()}


def _header_row(rows: list[list], spec: dict) -> int | None:
    """The header row: the first of the top rows that names every required column (a title row above it
    is skipped), else the first non-blank row (whose missing columns are then reported)."""
    lookup = {_norm(a) for c, (aliases, req) in spec.items() for a in (c, *aliases)}
    required = [{_norm(a) for a in (c, *aliases)} for c, (aliases, req) in spec.items() if req]
    first = None
    for i, r in enumerate(rows[:HEADER_SEARCH_ROWS]):
        if not any(not is_blank(v) for v in r):
            continue
        if first is None:
            first = i
        names = {_norm(v) for v in r if not is_blank(v) and not isinstance(v, CellProblem)} & lookup
        if all(names & want for want in required):
            return i
    if first is None:
        first = next((i for i, r in enumerate(rows) if any(not is_blank(v) for v in r)), None)
    return first


def _data_rows(rows, sheet: str, title: str, name: str, warnings: list[str], limits: Limits | None = None):
    """A sheet's data rows, read from ``rows`` (any iterable of rows, read once) as (row number, cells in
    ``COLUMNS[sheet]`` order): the header row is found among the first rows and mapped to the columns; a
    cell over the text limit becomes a CellProblem; wholly blank rows are skipped. Refuses (InputError) a
    sheet without a header, a column named twice, a missing required column."""
    spec = COLUMNS[sheet]
    max_text = (limits or Limits()).text
    rows = iter(rows)
    head = [r for _, r in zip(range(HEADER_SEARCH_ROWS), rows)]
    header_idx = _header_row(head, spec)
    if header_idx is None:
        raise InputError(f"{name}: sheet '{title}' is empty (it needs a header row)")
    header = [escape_controls(str(h)) if isinstance(h, str) else h for h in head[header_idx]]
    lookup = {}
    for canonical, (aliases, _req) in spec.items():
        for a in (canonical, *aliases):
            lookup[_norm(a)] = canonical
    positions: dict[str, int] = {}
    extra = []
    for pos, h in enumerate(header):
        if is_blank(h):
            continue
        canonical = lookup.get(_norm(h))
        if canonical is None:
            extra.append(str(h).strip())
        elif canonical in positions:
            raise InputError(f"{name}: sheet '{title}' has the column '{canonical}' twice (row {header_idx + 1})")
        else:
            positions[canonical] = pos
    missing = [c for c, (aliases, req) in spec.items() if req and c not in positions]
    if missing:
        want = ", ".join(f"'{c}' ({spec[c][0][0]})" for c in missing)
        found = ", ".join(str(h).strip() for h in header if not is_blank(h))
        raise InputError(
            f"{name}: sheet '{title}' lacks the required column {want} in its header row "
            f"{header_idx + 1}; columns found: {found}"
        )
    if extra:
        warnings.append(f"sheet '{title}': extra columns ignored: {', '.join(extra)}")
    return _records(itertools.chain(head[header_idx + 1:], rows), header_idx + 2, spec, positions, max_text)


def _records(rows, first: int, spec: dict, positions: dict[str, int], max_text: int):
    for i, r in enumerate(rows, first):
        cells = {c: (r[positions[c]] if c in positions and positions[c] < len(r) else None) for c in spec}
        for c, v in cells.items():
            if isinstance(v, str) and len(v) > max_text:
                cells[c] = CellProblem(v[:20] + "...", f"longer than {max_text} characters (limit "
                                                        f"{limits_mod.ENV['text']})")
        if all(is_blank(v) for v in cells.values()):
            continue  # wholly blank rows are layout, not data
        yield i, tuple(cells.values())


def _reseller(rows: list[list], title: str, warnings: list[str]) -> dict[str, str]:
    lookup = {_norm(a): k for k, aliases in RESELLER_KEYS.items() for a in aliases}
    out: dict[str, str] = {}
    for r in rows:
        if len(r) < 2 or is_blank(r[0]):
            continue
        key = lookup.get(_norm(r[0]))
        if key is None:
            if _norm(r[0]) not in ("key", "项目", "field"):
                warnings.append(f"sheet '{title}': unknown key '{str(r[0]).strip()}' ignored")
            continue
        v = r[1]
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        out[key] = "" if v is None else str(v).strip()
    return out
