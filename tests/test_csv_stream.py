"""A CSV roster is read as a stream (roster._csv_check, _CsvBook.rows, formats.csv_text): it reads what the
whole-file reader it replaced read and refuses what that refused, with the same line, whichever of a file's
problems came first there; the folder's files are packed into the same zip bytes; and the read holds memory
independent of the files' size.

The reference is the reader as it was (main at 8b42951), copied below unchanged and put back in place of the
stream (``read_old``) so that everything around it (read_roster_bytes, the stage) is the same code.
tests/data/csv_stream/ holds every CSV roster the suite's tests read in-process (collected by wrapping
read_roster_bytes while tests/test_csv_links.py, test_review7.py, test_review8.py, test_real_files.py,
test_formats.py, test_review_findings.py and test_validation.py ran); the corpus's CSV rosters
(tests/corpus.py, read in a child process there) are made here.
"""
from __future__ import annotations

import codecs
import csv
import io
import os
import re
import tracemalloc
import zipfile
from pathlib import Path, PurePosixPath

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from invoicer import formats, roster
from invoicer.errors import InputError
from invoicer.limits import Limits

DATA = Path(__file__).parent / "data"
HARVESTED = sorted((DATA / "csv_stream").glob("*.zip"))
FOLDERS = [DATA / "libreoffice" / "csv-gb18030", DATA / "libreoffice" / "csv-en-us"]


# -- the reader as it was (8b42951: invoicer/roster.py and invoicer/formats.py), the reference ---------------
def old_pack_csv_pair(p: Path, limits: Limits) -> bytes:
    """The CSV files of a roster (a folder, or one of its files) packed into one deterministic zip."""
    folder = p if p.is_dir() else p.parent
    if not p.is_dir() and not p.exists():
        raise FileNotFoundError(p)
    wanted = {f"{roster._norm(a)}.csv" for aliases in roster.SHEET_ALIASES.values() for a in aliases}
    named = sorted(f for f in folder.iterdir() if f.name.strip().casefold() in wanted)
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
            fd = os.open(f, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as fh:
                zf.writestr(info, fh.read())
    return buf.getvalue()


def old_decode_csv(data: bytes, name: str) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        encodings = ("utf-8-sig",)
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        encodings = ("utf-16",)
    else:
        encodings = ("utf-8", "gb18030")
    for enc in encodings:
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    raise InputError(f"{name}: a CSV file in an unknown encoding (save it as UTF-8 or GBK)")


class OldCsvBook:
    def __init__(self, data: bytes, sheets: dict[str, list[list]]):  # (the new book's arguments)
        self.sheets = sheets

    def rows(self, title: str, name: str, limits: Limits, whole: bool = False) -> list[list]:
        return self.sheets[title]

    def close(self) -> None:
        pass


def old_csv_sheets(texts: dict[str, bytes], name: str, limits: Limits) -> dict[str, list[list]]:
    sheets = {}
    for member, raw in texts.items():
        title = PurePosixPath(member).stem.strip()
        text = old_decode_csv(raw, f"{name}: {member}")
        csv.field_size_limit(max(limits.text, len(text)) + 1)
        try:
            rows = old_csv_rows(text, title, f"{name}: {member}")
        except csv.Error as exc:
            raise InputError(f"{name}: {member}: not a readable CSV file ({exc})") from None
        if len(rows) > limits.rows:
            raise InputError(f"{name}: {member} has {len(rows)} rows (limit {limits.describe('rows')})")
        width = max((len(r) for r in rows), default=0)
        if width > limits.columns:
            raise InputError(f"{name}: {member} has {width} columns (limit {limits.describe('columns')})")
        if title in sheets:
            raise InputError(f"{name}: two files for the sheet '{title}'")
        sheets[title] = rows
    return sheets


def old_csv_rows(text: str, title: str, where: str) -> list[list]:
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = list(reader)
    role = next((c for c, aliases in roster.SHEET_ALIASES.items()
                 if roster._norm(title) in {roster._norm(a) for a in aliases}), None)
    if not rows or '"' not in text or role is None:
        return rows
    if reader.line_num == len(rows):
        end = len(text) - (2 if text.endswith("\r\n") else 1 if text.endswith(("\n", "\r")) else 0)
        spans = [(len(rows), len(rows), text[max(text.rfind("\n", 0, end), text.rfind("\r", 0, end)) + 1:])]
    else:
        reader = csv.reader(io.StringIO(text, newline=""))
        lines = list(io.StringIO(text, newline=""))
        spans, rows, start = [], [], 1
        for record in reader:
            rows.append(record)
            if reader.line_num > start or reader.line_num == len(lines):
                spans.append((start, reader.line_num, "".join(lines[start - 1:reader.line_num])))
            start = reader.line_num + 1
    help_ = roster.STRAY_QUOTE_HELP
    for first, last, source in spans:
        lines_named = f"line {first}" if first == last else f"lines {first}-{last}"
        strict = csv.reader(io.StringIO(source, newline=""), strict=True)
        try:
            records = list(strict)
        except csv.Error as exc:
            if "unexpected end of data" in str(exc):
                raise InputError(f"{where}: a quote (\") on line {first} opens a cell that is never closed, so "
                                 f"every line after it would be read into that one cell; {help_}") from None
            if first == last:
                continue
            raise InputError(f"{where}: {lines_named} are read as one row: a quote (\") opens a cell there that "
                             f"a quote on line {first + strict.line_num - 1} closes with more text after it; "
                             f"{help_}") from None
        if first == last:
            continue
        for cell in (c for record in records for c in record):
            joined = old_row_like_line(cell, role)
            if joined is not None:
                raise InputError(f"{where}: {lines_named} are read as one row: a quoted cell there holds a line "
                                 f"that looks like a row of its own ({roster.escape_controls(joined[:40])!r}); "
                                 f"{help_}")
    return rows


def old_row_like_line(cell: str, role: str) -> str | None:
    later = re.split(r"\r\n|\r|\n", cell)[1:]
    if role == "reseller":
        keys = {roster._norm(a) for aliases in roster.RESELLER_KEYS.values() for a in aliases}
        return next((line for line in later if "," in line and roster._norm(line.split(",", 1)[0]) in keys), None)
    commas = sum(1 for _aliases, required in roster.COLUMNS[role].values() if required) - 1
    return next((line for line in later if line.count(",") >= commas), None)


# -- reading with either reader ----------------------------------------------------------------------------
def _whole_member(name, limits, member, info, chunks, again):
    return b"".join(chunks)  # as the old inspect_zip kept it: every member inflated before any is decoded


def _outcome(read):
    try:
        raw = read()
    except InputError as exc:
        return ("refused", str(exc))
    try:
        return ("read", raw.customers, raw.changes, raw.reseller, raw.sheet_titles, raw.warnings, raw.sha256)
    finally:
        raw.stage.close()


def read_old(data: bytes, name: str = "r.zip", limits: Limits | None = None):
    with pytest.MonkeyPatch.context() as m:
        m.setattr(roster, "_csv_check", _whole_member)
        m.setattr(roster, "_csv_sheets", old_csv_sheets)
        m.setattr(roster, "_CsvBook", OldCsvBook)
        return _outcome(lambda: roster.read_roster_bytes(data, name, limits or Limits()))


def read_new(data: bytes, name: str = "r.zip", limits: Limits | None = None):
    return _outcome(lambda: roster.read_roster_bytes(data, name, limits or Limits()))


def assert_same(old, new):
    assert old[0] == new[0], (old, new)
    if old[0] == "refused":
        assert old[1] == new[1]
        return
    for a, b in zip(old[1:3], new[1:3]):
        pd.testing.assert_frame_equal(a, b)
    assert old[3:] == new[3:]


def sheets_old(data: bytes, name: str, limits: Limits):
    """The CSV level alone (quicker, for the properties): sheet title -> rows, or the refusal."""
    try:
        return old_csv_sheets(formats.inspect_zip(data, name, "csvzip", limits).texts, name, limits)
    except InputError as exc:
        return str(exc)


def sheets_new(data: bytes, name: str, limits: Limits):
    try:
        scan = formats.inspect_zip(data, name, "csvzip", limits,
                                   csv_member=lambda *a: roster._csv_check(name, limits, *a))
        sheets = roster._csv_sheets(scan.csv, name, limits)
        book = roster._CsvBook(data, sheets)
        return {title: list(book.rows(title, name, limits)) for title in sheets}
    except InputError as exc:
        return str(exc)


def zipped(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, raw in members:
            zf.writestr(member, raw)
    return buf.getvalue()


TINY = (1, 2, 3, 5, 7, 64)  # bytes decoded at a time: characters, BOMs and \r\n cut everywhere


# -- every CSV roster the suite has or makes -------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus_rosters(tmp_path_factory):
    from .corpus import write_corpus

    folder = tmp_path_factory.mktemp("corpus")
    paths = [Path(c.path) for c in write_corpus(folder)]
    return [p for p in paths if p.is_dir() or p.suffix.lower() in (".csv", ".zip")]


def test_the_suite_has_csv_rosters_to_compare():
    assert len(HARVESTED) >= 20 and all(f.is_dir() for f in FOLDERS)


@pytest.mark.parametrize("path", HARVESTED + FOLDERS, ids=lambda p: p.name)
def test_every_csv_roster_of_the_suite_reads_as_before(path):
    data = path.read_bytes() if path.is_file() else old_pack_csv_pair(path, Limits())
    if path.is_dir():
        assert roster._pack_csv_pair(path, Limits()) == data
    old = read_old(data)
    assert_same(old, read_new(data))
    for size in TINY:
        with pytest.MonkeyPatch.context() as m:
            m.setattr(formats, "CSV_BUFFER", size)
            assert_same(old, read_new(data))
            assert sheets_new(data, "r.zip", Limits()) == sheets_old(data, "r.zip", Limits())


def test_every_csv_roster_of_the_corpus_reads_and_packs_as_before(corpus_rosters):
    assert len(corpus_rosters) >= 5
    for path in corpus_rosters:
        if path.is_dir() or path.suffix.lower() == ".csv":
            data = old_pack_csv_pair(path, Limits())
            assert roster._pack_csv_pair(path, Limits()) == data
        else:
            data = path.read_bytes()
        assert_same(read_old(data, path.name), read_new(data, path.name))


@pytest.mark.parametrize("path", HARVESTED + FOLDERS, ids=lambda p: p.name)
def test_packing_a_folder_gives_the_bytes_it_gave(path, tmp_path):
    """The files copied a block at a time (here 7 bytes, to cut them everywhere) make the same zip."""
    if path.is_dir():
        folder = path
    else:
        folder = tmp_path / "roster"
        folder.mkdir()
        for info in zipfile.ZipFile(path).infolist():
            shown = PurePosixPath(formats.member_name(info)).name
            if "/" not in formats.member_name(info) and not (folder / shown).exists():
                (folder / shown).write_bytes(zipfile.ZipFile(path).read(info))
    try:
        data = old_pack_csv_pair(folder, Limits())
    except InputError as exc:
        with pytest.raises(InputError, match=re.escape(str(exc))):
            roster._pack_csv_pair(folder, Limits())
        return
    with pytest.MonkeyPatch.context() as m:
        m.setattr(roster, "PACK_BLOCK", 7)
        assert roster._pack_csv_pair(folder, Limits()) == data
    assert roster._pack_csv_pair(folder, Limits()) == data


def test_a_file_larger_than_a_block_packs_as_before(tmp_path):
    folder = tmp_path / "roster"
    folder.mkdir()
    lines = "".join(f"C{i:07d},测试公司{i}有限公司,2026-10-01,{i % 50 + 1}\n" for i in range(60_000))
    (folder / "customers.csv").write_text("customer_id,name,opened_on,seats\n" + lines, encoding="utf-8")
    (folder / "changes.csv").write_text("customer_id,date,type,seats\n", encoding="utf-8")
    assert (folder / "customers.csv").stat().st_size > 2 * roster.PACK_BLOCK
    assert roster._pack_csv_pair(folder, Limits()) == old_pack_csv_pair(folder, Limits())


# -- which problem a file is refused for, when it has several ------------------------------------------------
CUSTOMERS = "customer_id,name,opened_on,seats\nA,甲公司,2026-10-03,5\n"
CHANGES = "customer_id,date,type,seats\n"
STRAY = 'customer_id,name,opened_on,seats\nA,"甲公司,2026-10-01,3\nB,乙公司,2026-10-02,4\n'


@pytest.mark.parametrize("members", [
    # the first file in the zip's order is named, whatever the sheets' order: a stray quote in changes.csv
    # before a customers.csv without its seats column (the header is read when the rows are staged)
    [("changes.csv", 'customer_id,date,type\nA,"2026-10-01,add\nB,2026-10-02,add\n'),
     ("customers.csv", "customer_id,name,opened_on\nA,甲,2026-10-01\n")],
    [("customers.csv", STRAY), ("changes.csv", "客户编号,日期\n".encode("gbk") + b"\xff\xff")],
    [("changes.csv", "客户编号,日期\n".encode("gbk") + b"\xff\xff"), ("customers.csv", STRAY)],
    # a file that is no sheet is still read, and refused for what would refuse a sheet
    [("customers.csv", CUSTOMERS), ("changes.csv", CHANGES), ("notes.csv", b"\x81\x30\xff")],
    [("customers.csv", CUSTOMERS), ("notes.csv", "x," * 250 + "\n"), ("changes.csv", CHANGES)],
    # two files of one sheet: named after the second file's own problems
    [("customers.csv", CUSTOMERS), ("x/customers.csv", STRAY), ("changes.csv", CHANGES)],
    [("customers.csv", CUSTOMERS), ("x/customers.csv", CUSTOMERS), ("changes.csv", CHANGES)],
    # no changes sheet, and a stray quote: the quote
    [("customers.csv", STRAY)],
    [("customers.csv", CUSTOMERS)],
])
def test_the_first_problem_named_is_the_one_named_before(members):
    data = zipped([(m, t.encode("utf-8") if isinstance(t, str) else t) for m, t in members])
    old = read_old(data)
    assert old[0] == "refused"
    assert_same(old, read_new(data))


def test_a_member_too_large_after_a_bad_file_is_refused_first_as_before():
    """Every member is inflated within the limits before any file's own problem is named."""
    bomb = b"a," * (3 * 1024 * 1024)
    data = zipped([("customers.csv", STRAY.encode()), ("changes.csv", CHANGES.encode()), ("big.csv", bomb)])
    old = read_old(data, limits=Limits(ratio=20))
    assert old[0] == "refused" and "zip bomb" in old[1]
    assert_same(old, read_new(data, limits=Limits(ratio=20)))


def test_gbk_text_after_a_megabyte_of_ascii_is_read_as_gb18030_as_before():
    """UTF-8 is decided by the whole file: a GBK name at its end makes the whole file GB18030, read again;
    a stray quote found while it was read as UTF-8 is then found again, on the same line."""
    rows = "".join(f"C{i:07d},Company {i} {'Ltd ' * 25},2026-10-01,3\n" for i in range(9_000))
    assert len(rows) > 1024 * 1024
    joined = 'Y,"Yi\nY,Ltd,2026-10-01,3",2026-10-01,3\n'
    for head, tail, refused in (("", "Z,甲公司,2026-10-01,3\n", False), ("", 'Z,"甲公司,2026-10-01,3\n', True),
                                (joined, "Z,甲公司,2026-10-01,3\n", True)):
        text = "customer_id,name,opened_on,seats\n" + head + rows + tail
        data = zipped([("customers.csv", text.encode("gb18030")), ("changes.csv", CHANGES.encode())])
        old = sheets_old(data, "r.zip", Limits())
        assert sheets_new(data, "r.zip", Limits()) == old
        if refused:
            assert "quote" in old
        else:
            assert old["customers"][-1][1] == "甲公司"
            assert_same(read_old(data), read_new(data))


def test_limits_on_rows_and_columns_name_the_same_counts():
    text = "customer_id,name,opened_on,seats,x,y\n" + "A,甲,2026-10-01,3\n" * 30
    data = zipped([("customers.csv", text.encode()), ("changes.csv", CHANGES.encode())])
    for limits in (Limits(rows=30), Limits(rows=31), Limits(columns=5), Limits(columns=6), Limits(text=3)):
        assert_same(read_old(data, limits=limits), read_new(data, limits=limits))
    assert "has 31 rows" in read_new(data, limits=Limits(rows=30))[1]


# -- random CSV text, every encoding, cut everywhere ---------------------------------------------------------
PIECES = ["a", "甲公司", "𠀀", "€", "Yi, Ltd", ",", ",", '"', '"', '""', "\r", "\n", "\r\n", "\n", " ", "3",
          "2026-10-01", "C1", "name", "tax_id", "\x00", "\u2028", "\ufeff", "A,甲,2026-10-01,3\n", '"甲', '甲"',
          "name,甲\n", "B,2026-10-02,add\n"]
HEADERS = ["", "customer_id,name,opened_on,seats\n", "客户编号,客户名称,开通日期,工号数\r\n", "customer_id,date,type\n"]
ENCODINGS = ["utf-8", "utf-8-sig", "gb18030", "utf-16", "utf-16-le", "utf-16-be"]
LIKELY = ["utf-8"] * 8 + ["gb18030"] * 5 + ENCODINGS  # most files decode: their other problems are compared

csv_text_st = st.tuples(st.sampled_from(HEADERS), st.lists(st.sampled_from(PIECES), max_size=40)).map(
    lambda t: t[0] + "".join(t[1]))


@st.composite
def csv_file(draw):
    """Bytes of one CSV file: random text in an encoding, sometimes with a byte that breaks it."""
    if draw(st.booleans()):  # written by a spreadsheet: quoted cells holding commas, quotes and line breaks
        cells = st.text(st.sampled_from(list('a甲, "\r\n1') + ["𠀀"]), max_size=8)
        rows = draw(st.lists(st.lists(cells, max_size=5), max_size=6))
        buf = io.StringIO(newline="")
        csv.writer(buf, lineterminator=draw(st.sampled_from(["\n", "\r\n", "\r"]))).writerows(rows)
        text = draw(st.sampled_from(HEADERS)) + buf.getvalue()
    else:
        text = draw(csv_text_st)
    data = text.encode(draw(st.sampled_from(LIKELY)), "surrogatepass")
    if data and draw(st.integers(0, 15)) == 0:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff", b"\x80", b"\xa1", b"\x81\x30", b"\xef\xbb"])) + data[at:]
    return data


@st.composite
def csv_zip(draw):
    names = draw(st.permutations(["customers.csv", "changes.csv", "reseller.csv", "客户.csv", "notes.csv"]))
    members = [(n, draw(csv_file())) for n in names[:draw(st.integers(1, 4))]]
    return zipped(members)


limits_st = st.builds(Limits, rows=st.sampled_from([2, 5, 500_000, 500_000]), columns=st.sampled_from([2, 4, 200, 200]),
                      text=st.sampled_from([3, 10_000]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=csv_zip(), limits=limits_st, size=st.sampled_from(TINY + (64 * 1024,)))
def test_random_csv_files_read_and_are_refused_as_before(data, limits, size):
    old = sheets_old(data, "r.zip", limits)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(formats, "CSV_BUFFER", size)
        assert sheets_new(data, "r.zip", limits) == old


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=csv_zip(), limits=limits_st)
def test_random_csv_rosters_read_into_the_same_frames_as_before(data, limits):
    assert_same(read_old(data, limits=limits), read_new(data, limits=limits))


@settings(max_examples=150, deadline=None)
@given(text=csv_text_st, encoding=st.sampled_from(ENCODINGS), cuts=st.lists(st.integers(0, 200), max_size=8),
       size=st.sampled_from(TINY), bad=st.sampled_from([b"", b"\xff", b"\x80", b"\xe4\xb8"]))
def test_csv_text_gives_the_lines_of_the_decoded_file(text, encoding, cuts, size, bad):
    """formats.csv_text over the bytes in any chunks: the lines io.StringIO(data.decode(...), newline="")
    gives, or a UnicodeDecodeError where decoding the whole fails."""
    data = text.encode(encoding, "surrogatepass") + bad
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    chunks = [data[a:b] for a, b in zip(points, points[1:])]
    for enc in formats.csv_encodings(data[:3]):
        try:
            want = list(io.StringIO(data.decode(enc), newline=""))
        except UnicodeDecodeError:
            want = UnicodeDecodeError
        with pytest.MonkeyPatch.context() as m:
            m.setattr(formats, "CSV_BUFFER", size)
            head, stream = formats.peek(iter(chunks), 3)
            assert head == data[:3]
            try:
                got = list(formats.csv_text(stream, enc))
            except UnicodeDecodeError:
                got = UnicodeDecodeError
        assert got == want


def test_decode_csv_chooses_as_before():
    for data in (codecs.BOM_UTF8 + "甲".encode(), codecs.BOM_UTF16_LE + "甲".encode("utf-16-le"), b"\xef\xbb",
                 "甲".encode("gbk"), "甲".encode(), b"\xff", b"", b"\xff\xfe\x00"):
        try:
            want = old_decode_csv(data, "x")
        except InputError as exc:
            want = str(exc)
        try:
            got = formats.decode_csv(data, "x")
        except InputError as exc:
            got = str(exc)
        assert got == want


# -- memory ---------------------------------------------------------------------------------------------------
def test_reading_a_csv_roster_holds_no_more_than_inflating_it(tmp_path):
    """A customers.csv of 15,000 customers (GB18030: read first as UTF-8, then again) is checked and read row
    by row holding what inflating it holds (zlib's output chunks, about 3 MB) and a decoded buffer: never the
    file, its text or its rows (the old reader held all three, over 10 MB here)."""
    lines = "".join(f'C{i:07d},"测试公司{i}有限公司",2026-10-01,{i % 50 + 1},"深圳市南山区\n科技园{i}号"\n'
                    for i in range(15_000))
    data = zipped([("customers.csv", ("customer_id,name,opened_on,seats,address\n" + lines).encode("gb18030")),
                   ("changes.csv", CHANGES.encode())])
    del lines
    limits = Limits()
    tracemalloc.start()
    try:
        scan = formats.inspect_zip(data, "r.zip", "csvzip", limits,
                                   csv_member=lambda *a: roster._csv_check("r.zip", limits, *a))
        sheets = roster._csv_sheets(scan.csv, "r.zip", limits)
        book = roster._CsvBook(data, sheets)
        count = sum(1 for _ in book.rows("customers", "r.zip", limits))
        _, read = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        size = sum(len(chunk) for chunk in formats.inflate_member(data, sheets["customers"].info, "r.zip", limits))
        _, inflating = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 15_001 and size > 1024 * 1024
    assert read < inflating + 1024 * 1024, (read, inflating)
