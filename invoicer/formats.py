"""Which kind of file a roster is, and whether it is safe to hand to a reader.

A roster arrives as bytes from a hostile source, so nothing here trusts a header or a declared size:

- ``detect`` tells the format from the content (the file name is only a hint): a zip holding an Excel
  workbook (.xlsx, .xlsm), an OpenDocument spreadsheet (.ods) or CSV files, a legacy Excel file (.xls,
  an OLE2 compound file), or bare CSV text.
- ``inspect_zip`` inflates every member of a zip once, counting the bytes that really come out (not the
  sizes the zip claims), and refuses a file with too many members, too much data or a bomb-like ratio.
  A CSV member is handed, as it inflates, to the caller's reader (``csv_member``), which checks it as a
  stream; ``inflate_member`` inflates it again for the rows, and ``csv_text`` decodes it as a stream.
  While it inflates a worksheet it finds the sheet's real used range (its last used row and column) and
  the cells a reader would misread: a formula without a saved value (calamine reads it as empty) and an
  error cell such as ``#N/A`` (calamine reads it as empty too).
- ``check_extent`` refuses a sheet whose used range is larger than the limits, before a reader allocates
  rows x columns cells for it (calamine allocates the whole rectangle: one cell at XFD1048576 is
  17 billion cells).

Errors are ``InputError`` with one line naming the file and the limit (exit code 2).
"""
from __future__ import annotations

import codecs
import functools
import io
import re
import struct
import xml.etree.ElementTree as ET
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from .errors import InputError
from .limits import ENV, MB, Limits

OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_MAGIC = b"PK\x03\x04"
EMPTY_ZIP_MAGIC = b"PK\x05\x06"

FORMULA_WITHOUT_VALUE = "formula without a saved value: open and save the file in Excel"


@dataclass
class SheetScan:
    """What the scan of one worksheet found: its used range and the cells a reader would misread."""

    title: str
    rows: int = 0  # last used row (1-based); 0 for an empty sheet
    columns: int = 0  # last used column (1-based)
    # (row, column), both 0-based -> (value to show, reason)
    problems: dict[tuple[int, int], tuple[str, str]] = field(default_factory=dict)


@dataclass
class ZipScan:
    """What ``inspect_zip`` found: the scanned worksheets (xlsx, ods) or the CSV members' bytes (csvzip)."""

    kind: str  # "xlsx", "ods" or "csvzip"
    sheets: dict[str, SheetScan] = field(default_factory=dict)  # sheet title -> scan (xlsx and ods)
    texts: dict[str, bytes] = field(default_factory=dict)  # csvzip: member name -> bytes
    # csvzip read with a ``csv_member`` reader: member name -> what it returned (the bytes are not kept)
    csv: dict[str, object] = field(default_factory=dict)


def detect(data: bytes, name: str) -> str:
    """'xlsx', 'ods', 'xls', 'csvzip' or 'csv' from the first bytes (and, for a zip, its member names).

    Refuses (InputError) an empty file and a zip that holds none of those.
    """
    if not data:
        raise InputError(f"{name}: the file is empty")
    if data.startswith(OLE2_MAGIC):
        return "xls"
    if data.startswith(ZIP_MAGIC) or data.startswith(EMPTY_ZIP_MAGIC):
        try:
            names = zipfile.ZipFile(io.BytesIO(data)).namelist()
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
            raise InputError(f"{name}: not a readable Excel workbook: a damaged zip file ({exc})") from None
        if "xl/workbook.xml" in names or any(n.lower() == "xl/workbook.xml" for n in names):
            return "xlsx"
        if "content.xml" in names:
            return "ods"
        if any(n.lower().endswith(".csv") for n in names):
            return "csvzip"
        raise InputError(f"{name}: not a readable Excel workbook: a zip file holding no workbook "
                         f"(.xlsx, .ods) and no .csv files")
    head = data[:4096]
    if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(f"{name}: not a readable Excel workbook (.xlsx, .xlsm, .xls, .ods) nor a CSV file")
    return "csv"


def _col_number(letters: bytes) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + (ch - 64)
    return n


def _member_bytes(data: bytes, info: zipfile.ZipInfo, name: str) -> memoryview:
    """The member's compressed bytes, located from its local header (no copy)."""
    off = info.header_offset
    header = data[off:off + 30]
    if len(header) < 30 or header[:4] != ZIP_MAGIC:
        raise InputError(f"{name}: a damaged zip file (member {info.filename!r})")
    fname_len, extra_len = struct.unpack("<HH", header[26:30])
    start = off + 30 + fname_len + extra_len
    return memoryview(data)[start:start + info.compress_size]


def _inflate(data: bytes, info: zipfile.ZipInfo, name: str, budget: int, limits: Limits):
    """Yield the member's uncompressed bytes in chunks, counting what really comes out.

    Refuses a member whose output passes ``budget`` (what is left of the unpacked limit), differs from the
    size the zip declares, or inflates more than ``limits.ratio`` times its compressed size.
    """
    raw = _member_bytes(data, info, name)
    produced = 0

    def account(n: int) -> None:
        nonlocal produced
        produced += n
        if produced > budget:
            raise InputError(f"{name}: unpacks to more than {limits.unpacked_mb} MB "
                             f"(limit {limits.describe('unpacked_mb')})")
        if produced > MB and produced > limits.ratio * max(info.compress_size, 1):
            raise InputError(f"{name}: member {info.filename!r} unpacks more than {limits.ratio} times its "
                             f"packed size, like a zip bomb (limit {limits.describe('ratio')})")
        if produced > info.file_size:
            raise InputError(f"{name}: a damaged zip file (member {info.filename!r} is larger than declared)")

    if info.compress_type == zipfile.ZIP_STORED:
        for i in range(0, len(raw), MB):
            chunk = bytes(raw[i:i + MB])
            account(len(chunk))
            yield chunk
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        d = zlib.decompressobj(-15)
        try:
            for i in range(0, len(raw), 256 * 1024):
                piece = raw[i:i + 256 * 1024]
                while piece:
                    chunk = d.decompress(piece, MB)
                    account(len(chunk))
                    yield chunk
                    piece = d.unconsumed_tail
            chunk = d.flush()
        except zlib.error as exc:
            raise InputError(f"{name}: a damaged zip file (member {info.filename!r}: {exc})") from None
        account(len(chunk))
        yield chunk
    else:
        raise InputError(f"{name}: member {info.filename!r} uses a compression this reader does not accept")
    if produced != info.file_size:
        raise InputError(f"{name}: a damaged zip file (member {info.filename!r} is shorter than declared)")


def inspect_zip(data: bytes, name: str, kind: str, limits: Limits, wanted=None, csv_member=None) -> ZipScan:
    """Inflate every member once within the limits; scan the worksheets ``wanted(titles)`` selects.

    ``wanted`` gets the list of sheet titles (in workbook order) and returns the titles to scan; default:
    all. Returns the scans (xlsx/ods) or the CSV members' bytes (csvzip).

    ``csv_member(member, info, chunks, again)``, when given, reads each CSV member of a csvzip as it
    inflates instead of keeping its bytes: ``chunks`` yields the member's bytes (refusing, as it goes, what
    the limits refuse), ``again()`` yields them once more from the start; what it returns is kept in
    ``scan.csv``. Whatever it leaves unread is inflated after it, so every limit is checked on every member,
    in the zip's order, before the caller sees any result.
    """
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise InputError(f"{name}: a damaged zip file ({exc})") from None
    if len(infos) > limits.members:
        raise InputError(f"{name}: holds {len(infos)} files, more than a workbook needs "
                         f"(limit {limits.describe('members')})")
    # a CSV member's name as its zip tool meant it (GBK from a Chinese Windows); workbook parts are ASCII
    member = {id(i): member_name(i) if kind == "csvzip" else i.filename for i in infos}
    seen: set[str] = set()
    for i in infos:  # a repeated name is read as its last copy, which unzip tools do not show: refused
        for n in {i.filename, member[id(i)]}:  # also two names that read the same once decoded
            if n in seen:
                raise InputError(f"{name}: holds two files named {member[id(i)]!r}; a roster has one of each")
        seen.update({i.filename, member[id(i)]})
    scan = ZipScan(kind)
    by_name = {i.filename: i for i in infos}
    targets: dict[str, str] = {}  # member -> sheet title to scan
    budget = limits.unpacked_mb * MB

    def read_small(member: str, cap: int = 16 * MB) -> bytes:
        nonlocal budget
        info = by_name[member]
        out = b"".join(_inflate(data, info, name, min(budget, cap), limits))
        budget -= len(out)
        return out

    if kind == "xlsx":
        titles = _xlsx_sheets(read_small, by_name, name)
        chosen = set(wanted([t for t, _ in titles]) if wanted else [t for t, _ in titles])
        targets = {member: title for title, member in titles if title in chosen and member in by_name}
        small_members = {"xl/workbook.xml", "xl/_rels/workbook.xml.rels"}
    elif kind == "ods":
        small_members = set()
    else:
        small_members = set()
    for info in infos:
        if info.filename in small_members or info.is_dir():
            continue
        if kind == "xlsx" and info.filename in targets:
            sheet = SheetScan(targets[info.filename])
            scanner = _XlsxSheetScanner(sheet)
            for chunk in _inflate(data, info, name, budget, limits):
                scanner.feed(chunk)
            scanner.close()
            budget -= info.file_size
            scan.sheets[sheet.title] = sheet
        elif kind == "ods" and info.filename == "content.xml":
            scan.sheets = _scan_ods(_inflate(data, info, name, budget, limits))
            budget -= info.file_size
        elif kind == "csvzip" and info.filename.lower().endswith(".csv") and csv_member is not None:
            chunks = _inflate(data, info, name, budget, limits)
            again = functools.partial(_inflate, data, info, name, budget, limits)
            scan.csv[member[id(info)]] = csv_member(member[id(info)], info, chunks, again)
            for _ in chunks:  # what the reader left unread (it stopped early): the limits hold for all of it
                pass
            budget -= info.file_size
        elif kind == "csvzip" and info.filename.lower().endswith(".csv"):
            out = b"".join(_inflate(data, info, name, budget, limits))
            budget -= len(out)
            scan.texts[member[id(info)]] = out
        else:
            for _ in _inflate(data, info, name, budget, limits):
                pass
            budget -= info.file_size
    return scan


UTF8_NAME_FLAG = 0x800  # general purpose bit 11: the member's name is UTF-8


def member_name(info: zipfile.ZipInfo) -> str:
    """A zip member's name as the tool that made the zip meant it.

    A name stored without the UTF-8 flag is decoded by ``zipfile`` as cp437 (the zip format's original code
    page), but zip tools write the system's own code page there: Windows' "compressed folder" and most zip
    tools on a Chinese Windows write GBK, so 客户.csv reads as '┐═╗º.csv'; Info-ZIP on Linux and macOS
    write UTF-8 without the flag. Such a name (not plain ASCII) is turned back into its bytes and decoded
    as UTF-8 when it is valid UTF-8, else as GB18030 (a superset of GBK) when it decodes so, else left as
    cp437. Decoding never makes a '/' (GBK's two-byte characters have no byte below 0x40 after the first),
    and every check on names (duplicates, the sheet a file is) runs on the decoded name.
    """
    if info.flag_bits & UTF8_NAME_FLAG:
        return info.filename
    try:
        raw = info.filename.encode("cp437")
    except UnicodeEncodeError:  # not decoded as cp437 (a ZipFile opened with another metadata_encoding)
        return info.filename
    if raw.isascii():
        return info.filename
    for encoding in ("utf-8", "gb18030"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return info.filename


NS_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
NS_REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
NS_PKG_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}"


def _xlsx_sheets(read_small, by_name, name: str) -> list[tuple[str, str]]:
    """[(sheet title, worksheet member)] from xl/workbook.xml and its relationships."""
    try:
        wb = ET.fromstring(read_small("xl/workbook.xml"))
        rels = ET.fromstring(read_small("xl/_rels/workbook.xml.rels")) if "xl/_rels/workbook.xml.rels" in by_name \
            else None
    except (ET.ParseError, KeyError) as exc:
        raise InputError(f"{name}: not a readable Excel workbook (its workbook part is damaged: {exc})") from None
    targets = {}
    if rels is not None:
        for r in rels.iter(f"{NS_PKG_REL}Relationship"):
            target = r.get("Target", "")
            member = target.lstrip("/") if target.startswith("/") else str(PurePosixPath("xl") / target)
            targets[r.get("Id")] = _normpath(member)
    out = []
    for s in wb.iter(f"{NS_MAIN}sheet"):
        out.append((s.get("name", ""), targets.get(s.get(f"{NS_REL}id"), "")))
    return out


def _normpath(p: str) -> str:
    parts: list[str] = []
    for part in p.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part and part != ".":
            parts.append(part)
    return "/".join(parts)


_P = rb"(?:[A-Za-z_][\w.-]*:)?"  # an optional namespace prefix (the OpenXML SDK writes <x:c>)
_ROW_END = re.compile(rb"</" + _P + rb"row>")
_CELL_REF = re.compile(rb"<" + _P + rb'c\b[^>]*?\sr="([A-Z]{1,3})([0-9]{1,7})"')
_CELL_TAG = re.compile(rb"<" + _P + rb"c[\s>/]")
_ERROR_CELL = re.compile(rb"<" + _P + rb'c\b([^>]*\st="e"[^>/]*)>(.*?)</' + _P + rb"c>", re.S)
_NO_VALUE_FORMULA = re.compile(rb"<" + _P + rb"c\b([^>]*)>\s*<" + _P + rb"f\b[^>]*(?:/>|>([^<]*)</" + _P
                               + rb"f>)\s*(?:<" + _P + rb"v\s*/>|<" + _P + rb"v>\s*</" + _P + rb"v>)?\s*</"
                               + _P + rb"c>")
_REF_ATTR = re.compile(rb'\sr="([A-Z]{1,3})([0-9]{1,7})"')
_V = re.compile(rb"<" + _P + rb"v>([^<]*)</" + _P + rb"v>")
_TOKENS = re.compile(rb"<" + _P + rb"row\b([^>]*?)/?>|<" + _P + rb"c\b([^>]*?)/?>")
_ROW_R = re.compile(rb'\sr="([0-9]{1,7})"')


class _XlsxSheetScanner:
    """Finds a worksheet's used range and its misread cells, fed the sheet's XML in chunks.

    The XML is cut at row ends, so every regular expression sees whole rows; memory stays one chunk plus
    one row.
    """

    def __init__(self, sheet: SheetScan):
        self.sheet = sheet
        self.tail = b""
        self.positional_row = 0  # for cells and rows without an r attribute (allowed by the standard)

    def feed(self, chunk: bytes) -> None:
        buf = self.tail + chunk
        ends = None
        for ends in _ROW_END.finditer(buf, max(0, len(buf) - len(chunk) - 64)):
            pass
        if ends is None:
            self.tail = buf
            return
        cut = ends.end()
        self._scan(buf[:cut])
        self.tail = buf[cut:]

    def close(self) -> None:
        if self.tail:
            self._scan(self.tail)
            self.tail = b""

    def _scan(self, xml: bytes) -> None:
        s = self.sheet
        refs = _CELL_REF.findall(xml)
        if len(refs) == len(_CELL_TAG.findall(xml)):
            if refs:
                s.rows = max(s.rows, max(int(r) for _, r in refs))
                s.columns = max(s.columns, max(_col_number(c) for c in {c for c, _ in refs}))
        else:
            self._scan_positional(xml)
        for m in _ERROR_CELL.finditer(xml):
            ref = _REF_ATTR.search(m.group(1))
            v = _V.search(m.group(2))
            if ref:
                shown = v.group(1).decode("utf-8", "replace") if v else "#ERROR"
                s.problems[(int(ref.group(2)) - 1, _col_number(ref.group(1)) - 1)] = (
                    shown, f"the cell holds the error {shown}")
        for m in _NO_VALUE_FORMULA.finditer(xml):
            ref = _REF_ATTR.search(m.group(1))
            if ref and b't="str"' not in m.group(1):  # t="str" with an empty <v>: a saved empty text
                formula = (m.group(2) or b"").decode("utf-8", "replace")
                s.problems[(int(ref.group(2)) - 1, _col_number(ref.group(1)) - 1)] = (
                    f"={formula}" if formula else "(formula)", FORMULA_WITHOUT_VALUE)

    def _scan_positional(self, xml: bytes) -> None:
        """Slow path: some cells or rows carry no reference, so count positions as a reader does."""
        s = self.sheet
        col = 0
        for m in _TOKENS.finditer(xml):
            if m.group(1) is not None:
                r = _ROW_R.search(b" " + m.group(1))
                self.positional_row = int(r.group(1)) if r else self.positional_row + 1
                col = 0
                continue
            ref = _REF_ATTR.search(b" " + m.group(2))
            if ref:
                col = _col_number(ref.group(1))
                row = int(ref.group(2))
            else:
                col += 1
                row = self.positional_row
            s.rows = max(s.rows, row)
            s.columns = max(s.columns, col)


NS_TABLE = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"
NS_OFFICE = "urn:oasis:names:tc:opendocument:xmlns:office:1.0"
NS_CALCEXT = "urn:org:documentfoundation:names:experimental:calc:xmlns:calcext:1.0"


def _scan_ods(chunks) -> dict[str, SheetScan]:
    """Used range and misread cells of every table in an ODS content.xml, streamed (repeats counted)."""
    parser = ET.XMLPullParser(events=("start", "end"))
    T, O, C = f"{{{NS_TABLE}}}", f"{{{NS_OFFICE}}}", f"{{{NS_CALCEXT}}}"
    out: dict[str, SheetScan] = {}
    sheet = None
    row = col = 0
    row_repeat = 1
    row_max_col = 0
    for chunk in chunks:
        parser.feed(chunk)
        for event, el in parser.read_events():
            tag = el.tag
            if event == "start":
                if tag == f"{T}table":
                    sheet = SheetScan(el.get(f"{T}name", ""))
                    out[sheet.title] = sheet
                    row = 0
                elif tag == f"{T}table-row" and sheet is not None:
                    row_repeat = int(el.get(f"{T}number-rows-repeated", "1") or 1)
                    col = 0
                    row_max_col = 0
                continue
            # end events
            if tag in (f"{T}table-cell", f"{T}covered-table-cell") and sheet is not None:
                repeat = int(el.get(f"{T}number-columns-repeated", "1") or 1)
                has_value = el.get(f"{O}value-type") is not None or len(el) > 0
                if has_value:
                    row_max_col = col + repeat
                    if el.get(f"{C}value-type") == "error":
                        text = "".join(el.itertext()).strip() or "#ERROR"
                        sheet.problems[(row, col)] = (text, f"the cell holds the error {text}")
                elif el.get(f"{T}formula"):
                    sheet.problems[(row, col)] = (el.get(f"{T}formula"), FORMULA_WITHOUT_VALUE)
                    row_max_col = col + 1
                col += repeat
                el.clear()
            elif tag == f"{T}table-row" and sheet is not None:
                if row_max_col:
                    sheet.rows = row + row_repeat
                    sheet.columns = max(sheet.columns, row_max_col)
                row += row_repeat
                el.clear()
            elif tag == f"{T}table":
                sheet = None
    return out


def check_extent(sheet: SheetScan, name: str, limits: Limits) -> None:
    """Refuse a sheet whose used range (A1 to its last used cell) is above the row, column or cell limits."""
    where = f"{name}: sheet '{sheet.title}'"
    if sheet.rows > limits.rows:
        raise InputError(f"{where} uses {sheet.rows} rows (limit {limits.describe('rows')})")
    if sheet.columns > limits.columns:
        raise InputError(f"{where} uses {sheet.columns} columns (limit {limits.describe('columns')})")
    if sheet.rows * sheet.columns > limits.cells:
        raise InputError(f"{where} uses {sheet.rows} rows x {sheet.columns} columns = "
                         f"{sheet.rows * sheet.columns} cells (limit {limits.describe('cells')})")


def check_file_size(size: int, name: str, limits: Limits) -> None:
    """Refuse a file above the file-size limit before reading it."""
    if size > limits.file_mb * MB:
        raise InputError(f"{name}: {size / MB:.1f} MB is larger than the limit of {limits.file_mb} MB "
                         f"(raise with {ENV['file_mb']})")


def csv_encodings(head: bytes) -> tuple[str, ...]:
    """The encodings a CSV file starting with ``head`` (its first 3 bytes, or all of a shorter file) is read
    in, the first that decodes the whole file: UTF-8 with BOM, UTF-16 with BOM, else UTF-8 then GB18030."""
    if head.startswith(codecs.BOM_UTF8):
        return ("utf-8-sig",)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return ("utf-16",)
    return ("utf-8", "gb18030")


def decode_csv(data: bytes, name: str) -> str:
    """CSV bytes as text: UTF-8 (with or without BOM), UTF-16 with BOM, else GB18030 (a superset of GBK).

    Refuses bytes that are none of these.
    """
    for enc in csv_encodings(data[:3]):
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    raise InputError(f"{name}: a CSV file in an unknown encoding (save it as UTF-8 or GBK)")


def inflate_member(data: bytes, info: zipfile.ZipInfo, name: str, limits: Limits):
    """A zip member's bytes in chunks (again, after ``inspect_zip`` checked it within the limits)."""
    return _inflate(data, info, name, limits.unpacked_mb * MB, limits)


def peek(chunks, n: int) -> tuple[bytes, object]:
    """(the first ``n`` bytes of a stream of chunks, or all of a shorter one; the same stream, whole)."""
    chunks = iter(chunks)
    head: list[bytes] = []
    size = 0
    for chunk in chunks:
        head.append(chunk)
        size += len(chunk)
        if size >= n:
            break
    first = head[0][:n] if head and len(head[0]) >= n else b"".join(head)[:n]

    def whole():
        while head:
            yield head.pop(0)  # not kept here once read
        yield from chunks

    return first, whole()


CSV_BUFFER = 64 * 1024  # bytes read and decoded at a time (tests make it tiny to cut characters and lines)


class _ChunkStream(io.RawIOBase):
    """A readable raw stream over an iterator of bytes chunks (exceptions of the iterator pass through)."""

    def __init__(self, chunks):
        self._chunks = iter(chunks)
        self._left = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._left:
            self._left = memoryview(b"")  # the chunk read is let go before the next one is made
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._left = memoryview(chunk)
        n = min(len(b), len(self._left))
        b[:n] = self._left[:n]
        self._left = self._left[n:]
        return n


def csv_text(chunks, encoding: str) -> io.TextIOWrapper:
    """CSV bytes (an iterator of chunks) as a stream of text lines, decoded as it is read: the lines and
    characters of ``io.StringIO(data.decode(encoding), newline="")`` (lines end at \\r\\n, \\r or \\n, kept),
    raising UnicodeDecodeError where ``data.decode(encoding)`` would fail (at the latest at the end)."""
    text = io.TextIOWrapper(io.BufferedReader(_ChunkStream(chunks), CSV_BUFFER), encoding=encoding,
                            errors="strict", newline="")
    text._CHUNK_SIZE = CSV_BUFFER
    return text


_XLS_ERRORS = {0x00: "#NULL!", 0x07: "#DIV/0!", 0x0F: "#VALUE!", 0x17: "#REF!", 0x1D: "#NAME?", 0x24: "#NUM!",
               0x2A: "#N/A"}
_XLS_CELLS = {0x0203, 0x027E, 0x00FD, 0x0204, 0x0201, 0x0205, 0x0006, 0x00D6}  # one cell at row, column
_XLS_MULTI = {0x00BD, 0x00BE}  # MULRK, MULBLANK: a run of cells in one row


def scan_xls(data: bytes, name: str) -> dict[str, SheetScan]:
    """Used range and error cells of every sheet of a legacy .xls (BIFF8), from its cell records.

    calamine allocates each sheet's whole used range when it opens the file, so this runs first.
    """
    import olefile

    try:
        ole = olefile.OleFileIO(data)
        stream_name = "Workbook" if ole.exists("Workbook") else "Book"
        wb = ole.openstream(stream_name).read()
    except Exception as exc:  # olefile raises several types for damaged compound files
        raise InputError(f"{name}: not a readable Excel workbook (.xls): {exc}") from None
    names: dict[int, str] = {}
    out: dict[str, SheetScan] = {}
    sheet: SheetScan | None = None
    bofs = 0
    pos = 0
    while pos + 4 <= len(wb):
        rtype, length = struct.unpack_from("<HH", wb, pos)
        body = wb[pos + 4:pos + 4 + length]
        if rtype == 0x0809:  # BOF: the globals first, then one per sheet
            bofs += 1
            title = names.get(pos)
            sheet = SheetScan(title) if title is not None else None
            if sheet is not None:
                out[title] = sheet
        elif rtype == 0x0085 and len(body) >= 8:  # BOUNDSHEET: a sheet's name and where its records start
            offset, cch, flags = struct.unpack_from("<I", body)[0], body[6], body[7]
            raw = body[8:8 + cch * (2 if flags & 1 else 1)]
            names[offset] = raw.decode("utf-16-le" if flags & 1 else "latin-1", "replace")
        elif sheet is not None and len(body) >= 4 and (rtype in _XLS_CELLS or rtype in _XLS_MULTI):
            row, col = struct.unpack_from("<HH", body)
            last = struct.unpack_from("<H", body, len(body) - 2)[0] if rtype in _XLS_MULTI else col
            sheet.rows = max(sheet.rows, row + 1)
            sheet.columns = max(sheet.columns, last + 1)
            if rtype == 0x0205 and len(body) >= 8 and body[7] == 1:  # BOOLERR holding an error
                shown = _XLS_ERRORS.get(body[6], "#ERROR")
                sheet.problems[(row, col)] = (shown, f"the cell holds the error {shown}")
            elif rtype == 0x0006 and len(body) >= 14 and body[6] == 2 and body[12:14] == b"\xff\xff":
                shown = _XLS_ERRORS.get(body[8], "#ERROR")  # a formula whose saved result is an error
                sheet.problems[(row, col)] = (shown, f"the cell holds the error {shown}")
        pos += 4 + length
    if bofs == 0:
        raise InputError(f"{name}: not a readable Excel workbook (.xls): no workbook records")
    return out
