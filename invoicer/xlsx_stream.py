"""Reads one worksheet of an .xlsx/.xlsm as a stream of rows holding the cells python-calamine gives.

calamine loads a whole sheet into one dense range (and the whole shared-strings table into memory) before
the first row comes out; this reader parses the sheet's XML as it is inflated (``formats._inflate``, with the
zip-bomb limits ``formats.inspect_zip`` applies) and keeps a large shared-strings table in a temporary file,
so its memory does not grow with the roster.

Every value is the one python-calamine gives for the cell (its rules, found by experiment, are in the
functions below: numbers are floats; a number whose style has a date or duration format is a date, datetime,
time or timedelta; booleans; shared, inline and formula strings with calamine's ``_x00HH_`` escapes and
whitespace rules; error cells are ""). Rows run from row 1 and each is padded with "" from column A; a row is
as long as the longest row so far (calamine pads every row to the sheet's width, which is only known at the
end: a column mapped by a header row is always within the rows after it, so what a reader takes from the
rows is the same).

Whatever this reader does not reproduce exactly (a DOCTYPE, an encoding other than UTF-8, entities or
comments in a cell value, cells out of order, a date-typed cell, a cell calamine refuses...) raises
``Unsupported`` (before or while rows come out): the caller reads the file with calamine instead.
"""
from __future__ import annotations

import array
import datetime as dt
import functools
import io
import math
import os
import re
import tempfile
import xml.etree.ElementTree as ET
import zipfile

from . import formats
from .limits import MB, Limits

NS_XML = "{http://www.w3.org/XML/1998/namespace}"


class Unsupported(Exception):
    """The file uses something this reader does not reproduce exactly: read it with calamine."""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1] if tag[:1] == "{" else tag


# ------------------------------------------------------------------ values as python-calamine gives them

_FLOAT = re.compile(r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:inf|infinity|nan))")
_ESCAPE = re.compile(r"_x00(\+[0-9A-Fa-f]|[0-9A-Fa-f]{2})_")
_ERRORS = frozenset({"#DIV/0!", "#N/A", "#NAME?", "#NULL!", "#NUM!", "#REF!", "#VALUE!"})
_DIGITS = re.compile(r"[0-9]{1,18}")
OTHER, DATETIME, TIMEDELTA = 0, 1, 2
_EMPTY = object()  # calamine's Empty: not a cell of the range


def unescape(text: str) -> str:
    """calamine's unescape of Excel's ``_x00HH_`` (only code points below 0x100; ``_x005F_`` is "_")."""
    if "_x00" not in text:
        return text
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


def number_format(code: str) -> int:
    """calamine's reading of a custom number format: DATETIME, TIMEDELTA or OTHER (a port of
    ``formats::detect_custom_number_format``)."""
    escaped = is_quote = hms = ap = False
    brackets = 0
    prev = " "
    for s in code:
        if escaped:
            escaped = False
        elif s in "_\\*":
            escaped = True
        elif s == '"' and is_quote:
            is_quote = False
        elif is_quote:
            pass
        elif s == '"':
            is_quote = True
        elif s == ";":
            return OTHER
        elif s == "[":
            brackets = (brackets + 1) & 0xFF
        elif s == "]" and brackets == 1 and hms:
            return TIMEDELTA
        elif s == "]":
            brackets = max(brackets - 1, 0)
        elif s in "aA" and not ap and brackets == 0:
            ap = True
        elif s in "pm/PM" and ap and brackets == 0:
            return DATETIME
        elif s in "dmhysDMHYS" and not ap and brackets == 0:
            return DATETIME
        else:
            if hms and (s == prev or (s.isascii() and prev.isascii() and s.lower() == prev.lower())):
                pass
            else:
                hms = prev == "[" and s in "mhsMHS"
        prev = s
    return OTHER


_BUILTIN = {"14": DATETIME, "15": DATETIME, "16": DATETIME, "17": DATETIME, "18": DATETIME, "19": DATETIME,
            "20": DATETIME, "21": DATETIME, "22": DATETIME, "45": DATETIME, "47": DATETIME, "46": TIMEDELTA,
            # the East Asian built-in date formats (zh-CN Excel's 'yyyy年m月d日', '2026年10月'...: only the id is
            # written), dates to calamine too (review 9)
            **{str(i): DATETIME for i in (*range(27, 37), *range(50, 59))}}

_I64 = 2 ** 63
_DAY_MS = 86_400_000
_EPOCH = dt.datetime(1899, 12, 30)


def _days_from_civil(y: int, m: int, d: int) -> int:
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy


_EPOCH_DAYS = _days_from_civil(1899, 12, 30)
_CHRONO_MIN = _days_from_civil(-262144, 1, 1) - _EPOCH_DAYS  # chrono's NaiveDate range, in days from the epoch
_CHRONO_MAX = _days_from_civil(262143, 12, 31) - _EPOCH_DAYS
_PY_MIN = dt.date(1, 1, 1).toordinal() - dt.date(1899, 12, 30).toordinal()
_PY_MAX = dt.date(9999, 12, 31).toordinal() - dt.date(1899, 12, 30).toordinal()


def _ms(x: float) -> int:
    """Rust's ``(x).round() as i64`` (half away from zero, saturating, NaN 0); i64::MIN panics in chrono."""
    if x != x:
        return 0
    if math.isinf(x):
        r = _I64 - 1 if x > 0 else -_I64
    else:
        a = abs(x)
        f = math.floor(a)
        r = f + 1 if a - f >= 0.5 else f
        r = int(r) if x >= 0 else -int(r)
        r = min(max(r, -_I64), _I64 - 1)
    return r  # -_I64: chrono (calamine) panics on it; the callers keep the number instead


def _datetime(v: float, is_1904: bool):
    """A number in a date-formatted cell, as python-calamine converts it."""
    f = v + 1462.0 if is_1904 else v
    f = f if f >= 60.0 else f + 1.0
    ms = _ms(f * _DAY_MS)
    if ms == -_I64:  # calamine's Rust code panics here (a traceback past any handler): the number is kept
        return v
    days, rem = divmod(ms, _DAY_MS)
    if not _CHRONO_MIN <= days <= _CHRONO_MAX:
        return v
    if v < 1.0:
        return dt.time(rem // 3_600_000, rem // 60_000 % 60, rem // 1000 % 60, rem % 1000 * 1000)
    if not _PY_MIN <= days <= _PY_MAX:
        return v
    moment = _EPOCH + dt.timedelta(days=days, milliseconds=rem)
    if v.is_integer() and v <= 2.0 ** 64:
        return moment.date()
    return moment


def _timedelta(v: float):
    """A number in a duration-formatted cell as python-calamine converts it, or the number itself where
    calamine panics or raises (beyond chrono's or Python's range: no duration the roster could use)."""
    ms = _ms(v * _DAY_MS)
    if ms == -_I64:
        return v
    try:
        return dt.timedelta(milliseconds=ms)
    except OverflowError:
        return v


def _number(v: float, fmt: int, is_1904: bool):
    if fmt == DATETIME:
        return _datetime(v, is_1904)
    if fmt == TIMEDELTA:
        return _timedelta(v)
    return v


# ------------------------------------------------------------------ parts of the package


class _Strings:
    """The shared-strings table: in memory while small, then in a temporary file read back by offset."""

    IN_MEMORY = 20_000  # strings kept as a list before the table moves to a file (tests lower it)

    def __init__(self):
        self.items: list[str] | None = []
        self.file = None
        self.offsets = array.array("q", [0])
        self.pending: list[bytes] = []
        self.count = 0

    def add(self, s: str) -> None:
        self.count += 1
        try:
            if self.items is not None:
                self.items.append(s)
                if len(self.items) > self.IN_MEMORY:
                    self.file = tempfile.TemporaryFile()
                    for item in self.items:
                        self._write(item)
                    self.items = None
            else:
                self._write(s)
        except OSError as exc:  # a full or unwritable temporary folder: calamine holds the table in memory
            raise Unsupported(f"the shared strings' temporary file failed ({exc})") from None

    def _write(self, s: str) -> None:
        b = s.encode("utf-8", "surrogatepass")
        self.pending.append(b)
        self.offsets.append(self.offsets[-1] + len(b))
        if len(self.pending) >= 4096:
            self.file.write(b"".join(self.pending))
            self.pending.clear()

    def finish(self) -> None:
        if self.file is not None:
            try:
                self.file.write(b"".join(self.pending))
                self.file.flush()
            except OSError as exc:
                raise Unsupported(f"the shared strings' temporary file failed ({exc})") from None
            self.pending.clear()
            self._fd = self.file.fileno()
            self.get = functools.lru_cache(maxsize=4096)(self._read)

    def _read(self, i: int) -> str:
        start = self.offsets[i]
        try:
            return os.pread(self._fd, self.offsets[i + 1] - start, start).decode("utf-8", "surrogatepass")
        except OSError as exc:
            raise Unsupported(f"the shared strings' temporary file failed ({exc})") from None

    def get(self, i: int) -> str:
        return self.items[i]

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


_DOCTYPE = re.compile(rb"<!DOCTYPE")
_ROOT = re.compile(rb"<[A-Za-z_]")
_DECL_ENCODING = re.compile(rb"""<\?xml[^>]*?encoding\s*=\s*["']([^"']*)["']""")
# in a worksheet, what calamine reads from the raw bytes where expat resolves or normalises: an entity, a
# comment, a CDATA section or a carriage return in a <v> value, an entity in a cell's or row's attributes
_V_ODD = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?v(?:\s[^>]*)?>[^<&\r]*(?:[&\r]|<[!?])"
                    rb"|<(?:[A-Za-z_][\w.-]*:)?(?:c|row)\s[^>&]*&")


# Characters XML 1.0 cannot hold that calamine reads all the same (control characters, U+FFFE, U+FFFF: a
# roster may hold them, validate rejects the cell): expat refuses them, so each is carried through the parser
# as a code point of plane 16's private use area and turned back in the values (a part already holding one of
# those code points is left to calamine).
_ODD_BYTES = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]|\xef\xbf[\xbe\xbf]")
_PUA_BASE = 0x10FF00
_CARRIED = {bytes([b]): chr(_PUA_BASE + b).encode() for b in [*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20)]}
_CARRIED.update({"\ufffe".encode(): chr(_PUA_BASE + 0x20).encode(), "\uffff".encode(): chr(_PUA_BASE + 0x21).encode()})
_BACK = {ord(v.decode()): k.decode() for k, v in _CARRIED.items()}
_PUA_BYTES = b"\xf4\x8f\xbc"  # the UTF-8 lead of U+10FF00..U+10FF3F


def _safe_chunks(chunks, check_values: bool = False, odd: list | None = None):
    """The part's chunks, refusing (Unsupported) what expat would read differently from calamine or what must
    not be parsed at all: a DOCTYPE (no DTD, no entity of any kind is ever expanded), an encoding other than
    UTF-8; in a worksheet, an entity, comment or CDATA section in a ``<v>`` value (calamine reads only the
    text before it). Characters XML cannot hold are carried as private-use code points (``odd`` is set)."""
    first = True
    tail = b""
    held = b""
    for chunk in chunks:
        if first:
            first = False
            if chunk.startswith((b"\xfe\xff", b"\xff\xfe")) or b"\x00" in chunk[:4]:
                raise Unsupported("a part not in UTF-8")
            root = _ROOT.search(chunk)
            prolog = chunk[:root.start()] if root else chunk
            if _DOCTYPE.search(prolog):
                raise Unsupported("a part with a DOCTYPE")
            enc = _DECL_ENCODING.search(prolog)
            if enc and enc.group(1).lower() not in (b"utf-8", b"utf8"):
                raise Unsupported("a part not in UTF-8")
        buf = held + chunk
        cut = max(len(buf) - 3, 0)
        while cut > 0 and 0x80 <= buf[cut] < 0xC0:  # never cut inside a character
            cut -= 1
        held = buf[cut:]
        out = buf[:cut]
        if out:
            yield _checked(out, tail, check_values, odd)
            tail = out[-80:]
    if held:
        yield _checked(held, tail, check_values, odd)


def _checked(chunk: bytes, tail: bytes, check_values: bool, odd: list | None) -> bytes:
    odd = odd if odd is not None else []
    if check_values:
        both = tail + chunk
        if (b"&" in both or b"\r" in both or b"<!" in both or b"<?" in both) and _V_ODD.search(both):
            raise Unsupported("an entity or comment in a cell value")
    if _PUA_BYTES in chunk or _PUA_BYTES in tail[-3:] + chunk[:3]:
        odd.append("stand-in")
    if _ODD_BYTES.search(chunk):
        odd.append("carried")
        chunk = _ODD_BYTES.sub(lambda m: _CARRIED[m.group()], chunk)
    if "stand-in" in odd and "carried" in odd:
        raise Unsupported("a workbook holding both characters XML cannot hold and their stand-ins")
    return chunk


_SHEETDATA_OPEN = re.compile(rb"<((?:[A-Za-z_][\w.-]*:)?)sheetData(\s[^>]*?)?(/?)>")
# where a batch may end: after a row (or a shared string), closed or self-closing (Excel writes the empty
# rows a clerk formatted as <row r="9" s="1" customFormat="1"/>: a run of them is a batch too, review 9). A
# "/>" inside an attribute value would cut a tag in two: the batch then fails to parse, and calamine reads
# the file (Unsupported), never a wrong row.
_ROW_CLOSE = re.compile(rb"</(?:[A-Za-z_][\w.-]*:)?row\s*>|<(?:[A-Za-z_][\w.-]*:)?row\b[^>]*/>")
_SI_CLOSE = re.compile(rb"</(?:[A-Za-z_][\w.-]*:)?si\s*>|<(?:[A-Za-z_][\w.-]*:)?si\b[^>]*/>")
def _row_ends(buf: bytes, start: int, stop: int):
    """Where each row in ``buf[start:stop]`` ends; a row (or the XML before ``stop`` after the last) of more
    than ROW_MAX bytes is Unsupported: one row is one tree, so thousands of style-only cells in a row (no
    cell to calamine, review 9) would be held at once."""
    prev = start
    for m in _ROW_CLOSE.finditer(buf, start, stop):
        if m.end() - prev > ROW_MAX:
            raise Unsupported("a row of more than 256 KB of XML")
        prev = m.end()
        yield prev
    if stop - prev > ROW_MAX:
        raise Unsupported("a row of more than 256 KB of XML")


ROW_MAX = 1 << 18  # bytes of XML of one row at most (a roster's row is a few hundred): more is left to calamine
_DIMENSION = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?dimension\b([^>]*)>")
_DIMENSION_REF = re.compile(rb"""\sref\s*=\s*["'][A-Za-z]+0*[1-9][0-9]*(?::[A-Za-z]+0*[1-9][0-9]*)?["']""")
_START_TAG = re.compile(rb"""<([A-Za-z_][^\s/>]*)(?:\s+[^\s=/>]+\s*=\s*(?:"[^"]*"|'[^']*'))*\s*>""")


def _root_tags(head: bytes) -> tuple[bytes, bytes]:
    """The worksheet's root start tag (with its namespace declarations) and its end tag."""
    at = _ROOT.search(head)
    m = _START_TAG.match(head, at.start()) if at else None
    if m is None:
        raise Unsupported("no worksheet element before sheetData")
    return m.group(), b"</" + m.group(1) + b">"


BATCH = 256 * 1024  # bytes of a sheet's XML parsed at once
_LOCAL: dict[str, str] = {}
_LOCAL_MAX = 4096  # tags kept: a workbook names a few dozen; a hostile one's millions of names are not kept


def _loc(tag: str) -> str:
    """``_local``, remembered for the process (the watcher reads many files) up to _LOCAL_MAX tags."""
    try:
        return _LOCAL[tag]
    except KeyError:
        local = _local(tag)
        if len(_LOCAL) < _LOCAL_MAX:
            _LOCAL[tag] = local
        return local


_COLUMNS: dict[str, int] = {}


def _column(letters: str) -> int:
    """The 0-based column of a reference's letters (1 to 3 ASCII letters, either case)."""
    try:
        return _COLUMNS[letters]
    except KeyError:
        if not (1 <= len(letters) <= 3 and letters.isascii() and letters.isalpha()):
            raise Unsupported("a cell reference calamine reads differently") from None
        n = 0
        for ch in letters.upper():
            n = n * 26 + ord(ch) - 64
        _COLUMNS[letters] = n - 1
        return n - 1


class _SheetState:
    """Where a sheet's stream stands: calamine's row position, the row being gathered, the rows yielded."""

    def __init__(self):
        self.row_index = 0  # calamine's row for cells without a reference
        self.cur = -1  # the row being gathered (0-based), -1 before the first cell
        self.cells: dict[int, object] = {}
        self.emitted = 0  # rows yielded so far
        self.width = 0  # the longest row so far
        self.checked = (0, 0)

    def move(self, pos_r: int, out: list) -> None:
        if pos_r < self.cur:
            raise Unsupported("cells out of order")
        if self.cur >= 0:
            self._flush(out)
        self.cur = pos_r

    def _flush(self, out: list) -> None:
        cells = self.cells
        self.width = width = max(self.width, max(cells) + 1)
        while self.emitted < self.cur:
            out.append([""] * width)
            self.emitted += 1
        row = [""] * width
        for k, v in cells.items():
            row[k] = v
        out.append(row)
        self.emitted += 1
        self.cells = {}

    def check(self, book, title: str) -> None:
        if (self.emitted, self.width) != self.checked:
            self.checked = (self.emitted, self.width)
            formats.check_extent(formats.SheetScan(title, self.emitted, self.width), book.name, book.limits)

    def finish(self, book, title: str) -> list:
        out: list = []
        if self.cur >= 0:
            self._flush(out)
            self.check(book, title)
        return out


class XlsxBook:
    """The workbook's shared parts (relationships, date system, number formats, shared strings), read once;
    ``rows(title)`` streams one sheet. Raises Unsupported when calamine should read the file instead."""

    def __init__(self, data: bytes, name: str, limits: Limits, members: dict[str, str] | None = None):
        self.data, self.name, self.limits = data, name, limits
        zf = zipfile.ZipFile(io.BytesIO(data))
        self.infos = {i.filename: i for i in zf.infolist()}
        self.lower: dict[str, str | None] = {}
        for n in self.infos:
            key = n.replace("\\", "/").lower()
            self.lower[key] = None if key in self.lower else n  # two names differing in case: ambiguous
        self.strings = _Strings()
        self.odd: list = []  # set once a part held characters XML cannot hold
        self._dates: dict = {}  # (text, format) -> value: rosters repeat their dates
        self._cell_tags: set[str] = set()
        self._v_tags: set[str] = set()
        try:
            self._read_package()
        except BaseException:
            self.strings.close()
            raise

    def close(self) -> None:
        self.strings.close()

    # -- parts
    def _member(self, path: str) -> str | None:
        key = path.replace("\\", "/").lower()
        if key not in self.lower:
            return None
        if self.lower[key] is None:
            raise Unsupported(f"two parts named {path!r} but for case")
        return self.lower[key]

    def _chunks(self, member: str, check_values: bool = False):
        info = self.infos[member]
        return _safe_chunks(formats._inflate(self.data, info, self.name, self.limits.unpacked_mb * MB,
                                             self.limits), check_values, self.odd)

    def _back(self, text: str) -> str:
        """A value's stand-ins turned back into the characters XML cannot hold (see _CARRIED)."""
        return text.translate(_BACK) if "carried" in self.odd else text

    def _small(self, member: str) -> bytes:
        return b"".join(self._chunks(member))

    def _tree(self, member: str):
        try:
            return ET.fromstring(self._small(member))
        except ET.ParseError as exc:
            raise Unsupported(f"{member}: {exc}") from None

    def _read_package(self) -> None:
        root_rels = self._member("_rels/.rels")
        if root_rels is None:
            raise Unsupported("no _rels/.rels")
        doc = [r.get("Target", "") for r in self._tree(root_rels).iter()
               if _local(r.tag) == "Relationship" and r.get("Type", "").endswith("/relationships/officeDocument")]
        if [t.lstrip("/") for t in doc[-1:]] != ["xl/workbook.xml"] or len(doc) != 1:
            raise Unsupported("the workbook is not xl/workbook.xml")
        wb_member = self._member("xl/workbook.xml")
        rels_member = self._member("xl/_rels/workbook.xml.rels")
        if wb_member is None or rels_member is None:
            raise Unsupported("no workbook or no workbook relationships")
        rels = {}
        for r in self._tree(rels_member).iter():
            if _local(r.tag) == "Relationship":
                rels[r.get("Id")] = (r.get("Type", ""), r.get("Target", ""))
        raw_wb = self._small(wb_member)
        try:
            wb = ET.fromstring(raw_wb)
        except ET.ParseError as exc:
            raise Unsupported(f"workbook: {exc}") from None
        self.sheets: dict[str, str] = {}  # title -> member
        for s in wb.iter():
            if _local(s.tag) != "sheet":
                continue
            if s.get("state", "visible") not in ("visible", "hidden", "veryHidden"):
                raise Unsupported("a sheet state calamine refuses")
            ids = [v for k, v in s.attrib.items() if _local(k) == "id"]
            if len(ids) != 1 or ids[0] not in rels:
                raise Unsupported("a sheet without its relationship")
            typ, target = rels[ids[0]]
            if typ.rsplit("/", 1)[-1] not in ("worksheet", "chartsheet", "dialogsheet"):
                raise Unsupported("a sheet type calamine refuses")
            path = target[1:] if target.startswith("/") else "xl/" + target
            if typ.rsplit("/", 1)[-1] == "worksheet":
                ours = target.lstrip("/") if target.startswith("/") else formats._normpath("xl/" + target)
                member = self._member(path)
                if member is None or member != ours:
                    raise Unsupported("a worksheet path read differently")
                self.sheets[s.get("name", "")] = member
        self.is_1904 = False
        for m in re.finditer(rb"<workbookPr(?=[\s/>])([^>]*)>", raw_wb):
            v = re.search(rb"""(?<![\w:.-])date1904\s*=\s*(["'])(.*?)\1""", m.group(1))
            self.is_1904 = bool(v) and v.group(2) in (b"1", b"true")
        self.formats = self._styles()
        sst = self._member("xl/sharedStrings.xml")
        if sst is not None:
            self._shared_strings(sst)
        self.strings.finish()

    def _styles(self) -> list[int]:
        member = self._member("xl/styles.xml")
        out: list[int] = []
        if member is None:
            return out
        custom: dict[str, str] = {}
        in_fmts = in_xfs = 0
        parser = ET.XMLPullParser(events=("start", "end"))
        try:
            for chunk in self._chunks(member):
                parser.feed(chunk)
                for event, el in parser.read_events():
                    tag = _local(el.tag)
                    if event == "start":
                        if tag == "numFmts":
                            in_fmts += 1
                        elif tag == "cellXfs":
                            in_xfs += 1
                        elif tag == "numFmt" and in_fmts:
                            if el.get("numFmtId") is not None and el.get("formatCode") is not None:
                                custom[el.get("numFmtId")] = self._back(el.get("formatCode"))
                        elif tag == "xf" and in_xfs:
                            fid = el.get("numFmtId")
                            out.append(OTHER if fid is None else number_format(custom[fid]) if fid in custom
                                       else _BUILTIN.get(fid, OTHER))
                    else:
                        if tag == "numFmts":
                            in_fmts -= 1
                        elif tag == "cellXfs":
                            in_xfs -= 1
            parser.close()
        except ET.ParseError as exc:
            raise Unsupported(f"styles: {exc}") from None
        return out

    def _shared_strings(self, member: str) -> None:
        """The table, parsed in batches of whole ``<si>`` items (by events when it holds comments or CDATA,
        where a batch could not be cut safely)."""
        buf = b""
        root_open = root_close = close = None
        scan_from = 0
        for chunk in self._chunks(member):
            buf += chunk
            if root_open is None:
                at = _ROOT.search(buf)
                tag = _START_TAG.match(buf, at.start()) if at else None
                if tag is None:
                    if at is not None and re.match(rb"<[^>]*/>", buf[at.start():]):
                        return  # <sst/>
                    if len(buf) > 16 * MB:
                        raise Unsupported("shared strings: no root element in the first 16 MB")
                    continue
                root_open, root_close = tag.group(), b"</" + tag.group(1) + b">"
                close = re.compile(rb"</" + re.escape(tag.group(1)) + rb"\s*>")
                buf = buf[tag.end():]
            if b"<!--" in buf or b"<![CDATA[" in buf:
                self.strings.close()
                self.strings = _Strings()
                return self._shared_strings_by_events(member)
            end = close.search(buf, max(scan_from - 32, 0))
            stop = end.start() if end else len(buf)
            cut = 0
            last = None
            for last in _SI_CLOSE.finditer(buf, max(scan_from - 32, 0), stop):
                if last.end() - cut >= BATCH:
                    self._strings_batch(root_open + buf[cut:last.end()] + root_close)
                    cut = last.end()
            if end is not None:
                self._strings_batch(root_open + buf[cut:end.start()] + root_close)
                return
            if last is not None and last.end() > cut:
                self._strings_batch(root_open + buf[cut:last.end()] + root_close)
                cut = last.end()
            buf = buf[cut:]
            scan_from = len(buf)
        raise Unsupported("shared strings: the table ends before its root element does")

    def _strings_batch(self, xml: bytes) -> None:
        try:
            root = ET.fromstring(xml)
        except ET.ParseError as exc:
            raise Unsupported(f"shared strings: {exc}") from None
        add, back = self.strings.add, self._back
        for si in root:
            if _loc(si.tag) == "si":
                add(back(_string(si)))
            elif any(_loc(e.tag) == "si" for e in si.iter()):
                raise Unsupported("shared strings nested in other elements")

    def _shared_strings_by_events(self, member: str) -> None:
        parser = ET.XMLPullParser(events=("start", "end"))
        root = None
        try:
            for chunk in self._chunks(member):
                parser.feed(chunk)
                for event, el in parser.read_events():
                    if event == "start":
                        if root is None:
                            root = el
                        continue
                    if _local(el.tag) == "si":
                        self.strings.add(self._back(_string(el)))
                        root.clear()
            parser.close()
        except ET.ParseError as exc:
            raise Unsupported(f"shared strings: {exc}") from None

    # -- a sheet
    def rows(self, title: str):
        """The sheet's rows from row 1, each padded with "" from column A (see the module's doc).

        The sheet's XML is cut after its last complete row in each inflated chunk, and those rows are parsed
        at once (in the root element's namespaces); calamine reads nothing after ``</sheetData>``."""
        member = self.sheets.get(title)
        if member is None:
            raise Unsupported(f"no worksheet {title!r}")
        state = _SheetState()
        buf = b""
        root_open = root_close = data_close = None
        scan_from = 0
        for chunk in self._chunks(member, check_values=True):
            buf += chunk
            if root_open is None:  # the head: the root's start tag, the dimension, up to <sheetData>
                open_ = _SHEETDATA_OPEN.search(buf)
                if open_ is None:
                    if len(buf) > 16 * MB:
                        raise Unsupported("no sheetData in the first 16 MB")
                    continue
                root_open, root_close = _root_tags(buf[:open_.start()])
                head = buf[:open_.start()]
                for dim in _DIMENSION.finditer(head):
                    if not _DIMENSION_REF.search(dim.group(1)):
                        raise Unsupported("a dimension calamine refuses")
                if open_.group(2) and b"xmlns" in open_.group(2):
                    raise Unsupported("namespaces declared on sheetData")
                if open_.group(3):  # <sheetData/>
                    return
                data_close = re.compile(rb"</" + re.escape(open_.group(1)) + rb"sheetData\s*>")
                buf = buf[open_.end():]
                scan_from = 0
            if b"<!--" in buf or b"<![CDATA[" in buf:
                raise Unsupported("a comment or CDATA section among the rows")
            end = data_close.search(buf, max(scan_from - 32, 0))
            if end is not None:
                cut = 0
                for last in _row_ends(buf, 0, end.start()):
                    if last - cut >= BATCH:
                        yield from self._batch(state, root_open + buf[cut:last] + root_close, title)
                        cut = last
                yield from self._batch(state, root_open + buf[cut:end.start()] + root_close, title)
                break
            cut = 0  # parse a batch of whole rows every BATCH bytes (its tree is a few times its size)
            last = None
            for last in _row_ends(buf, max(scan_from - 32, 0), len(buf)):
                if last - cut >= BATCH:
                    yield from self._batch(state, root_open + buf[cut:last] + root_close, title)
                    cut = last
            if last is not None and last > cut:
                yield from self._batch(state, root_open + buf[cut:last] + root_close, title)
                cut = last
            buf = buf[cut:]
            if len(buf) > ROW_MAX:
                raise Unsupported("a row of more than 256 KB of XML")
            scan_from = len(buf)
        else:
            raise Unsupported("the sheet ends before </sheetData>")
        yield from state.finish(self, title)

    def _batch(self, state: _SheetState, xml: bytes, title: str):
        try:
            root = ET.fromstring(xml)
        except ET.ParseError as exc:
            raise Unsupported(f"{title}: {exc}") from None
        out = []
        loc = _loc
        value_of, v_of = self._value, self._v
        cell_tags, v_tags = self._cell_tags, self._v_tags  # tags seen to be <c>, <v> (any prefix)
        strings = self.strings
        count, get = strings.count, strings.get
        columns = _COLUMNS
        float_match = _FLOAT.fullmatch
        last_digits, last_r = None, 0
        for row in root:
            if loc(row.tag) != "row":
                raise Unsupported("cells outside rows")
            r = row.get("r")
            if r is not None:
                if not _DIGITS.fullmatch(r) or r.strip("0") == "":
                    raise Unsupported("a row reference calamine reads differently")
                state.row_index = int(r) - 1
            col_index = 0
            row_index = state.row_index
            cells = state.cells
            for c in row:
                tag = c.tag
                if tag not in cell_tags:
                    if loc(tag) != "c":
                        raise Unsupported("a row holding something else than cells")
                    cell_tags.add(tag)
                ref = c.get("r")
                if ref is not None:  # letters then digits, as "AB12"
                    letters = ref.rstrip("0123456789")
                    col_index = columns.get(letters)
                    if col_index is None:
                        col_index = _column(letters)
                    digits = ref[len(letters):]
                    if digits != last_digits:
                        if not (len(digits) <= 7 and digits.isascii() and digits.isdigit() and digits.strip("0")):
                            raise Unsupported("a cell reference calamine reads differently")
                        last_digits, last_r = digits, int(digits) - 1
                    pos_r = last_r
                else:
                    pos_r = row_index
                value = _EMPTY
                if len(c) == 1 and not len(c[0]) and (c[0].tag in v_tags or loc(c[0].tag) == "v"):
                    v_tags.add(c[0].tag)
                    v = c[0].text
                    t = c.get("t")
                    if t == "s" and v and len(v) < 18 and v.isascii() and v.isdigit() and int(v) < count:
                        value = get(int(v))
                    elif t is None and v and c.get("s") is None and float_match(v):
                        value = float(v)
                    elif t != "inlineStr" and t != "is":
                        value = v_of(v or "", t, c.get("s"))
                elif len(c):
                    value = value_of(c)
                if value is not _EMPTY:
                    if pos_r != state.cur:
                        state.move(pos_r, out)
                        cells = state.cells
                    cells[col_index] = value
                col_index += 1
            state.row_index += 1
        if out:
            state.check(self, title)
        return out

    def _value(self, c):
        """The cell's value as python-calamine gives it, or _EMPTY (not part of the range): its last child
        decides (a formula after the value empties the cell, as in calamine)."""
        value = _EMPTY
        for child in c:
            tag = _loc(child.tag)
            if tag == "v":
                t = c.get("t")
                if t == "s":  # the usual text cell: an index into the shared strings
                    v = child.text
                    if v and len(v) < 18 and v.isascii() and v.isdigit() and not len(child):
                        i = int(v)
                        if i < self.strings.count:
                            value = self.strings.get(i)
                            continue
                    value = self._v(v or "", t, c.get("s")) if not len(child) else self._value_markup()
                elif t == "inlineStr" or t == "is":
                    value = _EMPTY
                elif len(child):
                    raise Unsupported("markup inside a cell value")
                else:
                    value = self._v(child.text or "", t, c.get("s"))
            elif tag == "is":
                value = self._back(_string(child))
            elif tag == "f":
                value = _EMPTY
            else:
                raise Unsupported("a cell holding something else than a value, formula or string")
        return value

    @staticmethod
    def _value_markup():
        raise Unsupported("markup inside a cell value")

    def _v(self, v: str, t: str | None, s: str | None):
        if t is None or t == "n":
            if not v:
                return _EMPTY
            if _FLOAT.fullmatch(v):
                if s is None:
                    return float(v)
                i = int(s) if _DIGITS.fullmatch(s) else 0
                fmt = self.formats[i] if i < len(self.formats) else OTHER
                if fmt == OTHER:
                    return float(v)
                key = (v, fmt)
                try:
                    return self._dates[key]
                except KeyError:
                    if len(self._dates) > 10_000:
                        self._dates.clear()
                    self._dates[key] = value = _number(float(v), fmt, self.is_1904)
                    return value
            if t is None:
                return self._back(v)
            raise Unsupported("a number calamine cannot read")
        if t == "s":
            if not v:
                return _EMPTY
            if not _DIGITS.fullmatch(v) or int(v) >= self.strings.count:
                raise Unsupported("a shared string index calamine reads differently")
            return self.strings.get(int(v))
        if t == "str":
            return unescape(self._back(v))
        if t == "b":
            if not v:
                return _EMPTY
            if v in ("0", "false"):
                return False
            if v in ("1", "true"):
                return True
            raise Unsupported("a boolean calamine reads differently")
        if t == "e":
            if not v:
                return _EMPTY
            if v in _ERRORS:
                return ""
            raise Unsupported("an error value calamine refuses")
        raise Unsupported(f"a cell type {t!r} this reader does not take")


def _string(el) -> str:
    """A shared or inline string: the text of its ``<t>`` elements outside phonetic runs, each trimmed of
    ASCII white space unless ``xml:space="preserve"``, with ``_x00HH_`` escapes read."""
    if len(el) == 1:  # the usual: one <t>
        t = el[0]
        if _loc(t.tag) == "t" and not len(t):
            text = t.text or ""
            if t.get(f"{NS_XML}space") != "preserve":
                text = text.strip(" \t\r\n")
            return unescape(text)
    parts: list[str] = []
    stack = [iter(el)]  # walked without recursion: a string may nest elements 100,000 deep (review 9)
    while stack:
        ch = next(stack[-1], None)
        if ch is None:
            stack.pop()
            continue
        tag = _loc(ch.tag)
        if tag == "rPh":
            continue
        if tag == "t":
            if len(ch):  # calamine ends the text at the first </t> inside it: not reproduced
                raise Unsupported("an element inside a string's text")
            text = ch.text or ""
            if ch.get(f"{NS_XML}space") != "preserve":
                text = text.strip(" \t\r\n")
            parts.append(unescape(text))
        else:
            stack.append(iter(ch))
    return "".join(parts)
