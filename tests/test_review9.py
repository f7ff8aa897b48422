"""Review 9 (session 8's changes: the staged, partitioned roster, the .xlsx stream reader, CSV streaming, the
per-document bookkeeping, the e-fapiao stream). Each strict-xfail test is a defect found: its docstring says
the promise, the attack and what happened. The plain tests are attacks that held."""
from __future__ import annotations

import io
import zipfile

import pytest

from invoicer import pipeline, roster, xlsx_stream

from . import corpus
from .test_xlsx_stream import C, R, assert_same, book, stream_rows


def _rejects(data: bytes, name: str, pricebook, monkeypatch, stream: bool, period: str = "2026-10"):
    """The run's rejects and invoiced ids for a roster read by the stream reader or by calamine."""
    with monkeypatch.context() as m:
        if not stream:
            def refuse(*a, **k):
                raise xlsx_stream.Unsupported("test: calamine")
            m.setattr(xlsx_stream, "XlsxBook", refuse)
        raw = roster.read_roster_bytes(data, name)
    priced = pipeline._price(raw, pricebook, period)
    try:
        return ([(r.sheet, r.row, r.column, r.reason) for r in priced.rejects],
                [d["customer"]["customer_id"] for d in priced.invoices])
    finally:
        priced.close()


def _restyle(data: bytes, old: bytes, new: bytes) -> bytes:
    """The same .xlsx with one replacement in xl/styles.xml."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            body = src.read(info)
            if info.filename == "xl/styles.xml":
                assert old in body
                body = body.replace(old, new)
            dst.writestr(info.filename, body)
    return out.getvalue()


# ------------------------------------------------------------------ the .xlsx stream reader

EAST_ASIAN_DATE_FORMATS = [27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 50, 51, 52, 53, 54, 55, 56, 57, 58]


# fixed in session 8 (was a strict xfail)
@pytest.mark.parametrize("fid", EAST_ASIAN_DATE_FORMATS)
def test_east_asian_builtin_date_formats_read_as_calamine_reads_them(fid):
    """Promise: xlsx_stream gives exactly python-calamine's cells. Attack: a number styled with one of Excel's
    built-in East Asian date formats (numFmtId 27-36, 50-58: zh-CN Excel's 'yyyy年m月d日', '2026年10月' ...;
    written with no numFmt element, the id alone). What happened: calamine gives a datetime, the stream
    reader the bare float 45000.5."""
    xfs = "".join(f'<xf numFmtId="{i}"/>' for i in range(60))
    assert_same(book(R(1, C("A1", "45000.5", s=fid)), xfs=xfs), "S")


# fixed in session 8 (was a strict xfail)
def test_a_roster_dated_in_chinese_builtin_format_bills_as_it_did_before(tmp_path, book, monkeypatch):
    """Promise: the stream reader changes nothing a run gives (before session 8 calamine read every .xlsx).
    Attack: the corpus's base roster with its date cells styled numFmtId 31 ('yyyy"年"m"月"d"日"', what
    zh-CN Excel's built-in long date writes: the id only, no numFmt). What happened: through the stream
    reader every date is a number, so the rows are rejected (opened_on, change dates) and fewer customers
    are invoiced than calamine's reading gives."""
    path = corpus.write_xlsx_raw(tmp_path / "r.xlsx", corpus.base_sheets())
    data = _restyle(path.read_bytes(), b'<xf numFmtId="164" applyNumberFormat="1"/>',
                    b'<xf numFmtId="31" applyNumberFormat="1"/>')
    before = _rejects(data, "r.xlsx", book, monkeypatch, stream=False)
    assert before[1]  # calamine's reading bills customers
    assert _rejects(data, "r.xlsx", book, monkeypatch, stream=True) == before


def _patched(data: bytes, member: str, old: bytes, new: bytes) -> bytes:
    """The same .xlsx with the first ``old`` in ``member`` replaced."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            body = src.read(info)
            if info.filename == member:
                assert old in body
                body = body.replace(old, new, 1)
            dst.writestr(info.filename, body)
    return out.getvalue()


DEEP = b"<x>" * 100_000 + b"</x>" * 100_000  # 700 KB of XML, deflated to a few KB


# fixed in session 8 (was a strict xfail)
def test_a_deeply_nested_shared_string_is_one_line_not_a_traceback(tmp_path):
    """Promise: no traceback ever reaches the user (one line, a documented exit code); whatever the stream
    reader does not take is Unsupported (left to calamine). Attack: a 4 KB .xlsx whose first shared string
    <si> holds 100,000 nested elements after its <t>. What happened: xlsx_stream._string's recursive walk
    raises RecursionError, which no handler catches: a 40-line Python traceback on stderr and exit 1 (the
    code for 'rows rejected')."""
    from .conftest import run_cli

    base = corpus.write_xlsx_raw(tmp_path / "base.xlsx", corpus.base_sheets()).read_bytes()
    path = tmp_path / "deep.xlsx"
    path.write_bytes(_patched(base, "xl/sharedStrings.xml", b"</si>", DEEP + b"</si>"))
    assert len(path.read_bytes()) < 10_000
    r = run_cli("run", path, "--period", "2026-10", "--out", tmp_path / "out", "--workers", 1)
    # fixed: the stream reader leaves the file to calamine, which reads it: a normal run (its rejected rows)
    assert "Traceback" not in r.stderr and r.returncode == 1 and "rejected: sheet" in r.stderr, r.stderr[-300:]


# fixed in session 8 (was a strict xfail)
@pytest.mark.parametrize("inner", ["<t>a</t>" + DEEP.decode(), DEEP.decode()])
def test_a_deeply_nested_inline_string_is_left_to_calamine(inner):
    """Promise: the stream reader gives calamine's cells or raises Unsupported. Attack: an inline string
    (<is>) holding 100,000 nested elements. What happened: RecursionError from xlsx_stream._string."""
    data = book(R(1, f'<c r="A1" t="inlineStr"><is>{inner}</is></c>'))
    try:
        stream_rows(data, "S")
    except xlsx_stream.Unsupported:
        pass


# fixed in session 8 (was a strict xfail)
@pytest.mark.parametrize("sheet_data,sst", [
    (R(1, C("A1", 0, t="s")), "<si><t>a<t>b</t>c</t></si>"),
    (R(1, C("A1", 0, t="s")), "<si><t>a<r><t>b</t></r>c</t></si>"),
    (R(1, '<c r="A1" t="inlineStr"><is><t>a<t>b</t>c</t></is></c>'), None),
])
def test_a_text_nested_in_a_string_text_reads_as_calamine_reads_it(sheet_data, sst):
    """Promise: xlsx_stream gives exactly python-calamine's cells (or Unsupported). Attack: a shared or
    inline string whose <t> holds another <t> (<si><t>a<t>b</t>c</t></si>, or a run inside it: not valid
    SpreadsheetML, but well-formed XML a hand-made or broken writer can produce). What happened: calamine
    gives 'ab' (its text ends at the first </t>), the stream reader 'abc' (itertext of the outer <t>).
    Fixed: the stream reader leaves such a string to calamine (Unsupported), so the roster gets calamine's."""
    data = book(sheet_data, sst=sst)
    with pytest.raises(xlsx_stream.Unsupported, match="inside a string's text"):
        stream_rows(data, "S")
    from .test_xlsx_stream import calamine_rows

    assert calamine_rows(data, "S") == [["ab"]]


# ------------------------------------------------------------------ partitions (held)

def test_ids_that_fold_or_normalise_oddly_give_the_same_in_every_partitioning(tmp_path, book):
    """Attack held: ids equal only after NFKC, casefold (ß/SS/ẞ, Kelvin sign, long s, Ω/Ohm, ǅ titlecase,
    dotless/dotted i), NBSP and zero-width padding, full-width digits, numbers as ids (1.0, 1, "1", "01"),
    change rows naming customers only after normalisation and ids only the changes sheet has: partitions of
    one and two keys give what one partition gives."""
    import datetime as dt

    from .test_partitions import _workbook, assert_same_in_every_partitioning

    ids = ["ß1", "SS1", "ss1", "ẞ1", "ı1", "I1", "İ1", "i1", "ﬁ1", "FI1", "Ｆｉ１", "\u00a0a2\u00a0", "a2",
           "a\u200b2", "A2", 1.0, "1", 1, "01", 2.0, "２", "K3", "\u212a3", "k3", "ſ4", "S4", "s4", "Ω5",
           "\u21265", "ω5", "ǅ6", "Ǆ6", "ǆ6", "Ⅻ7", "XII7", "ⓐ8", "A8"]
    customers = [[cid, "公司", dt.date(2025, 10, 10), 5, None, None, None] for cid in ids]
    changes = [[cid, dt.date(2026, 10, 3), "add", 1, None]
               for cid in ids + ["ss1", "fi1", "1.0", "k3", "ǆ6", "xii7", "q9", "Q9"]]
    whole = assert_same_in_every_partitioning(_workbook(tmp_path, customers, changes), book)
    assert whole["invoices"] and len(whole["rejects"]) > 40


def _edited(data: bytes, edits: list[tuple[str, bytes, bytes]]) -> bytes:
    """The same .xlsx with regular-expression edits (member, pattern, replacement), each made once."""
    import re

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            body = src.read(info)
            for member, pattern, new in edits:
                if info.filename == member:
                    body, n = re.subn(pattern, new, body, count=1)
                    assert n == 1, (member, pattern)
            dst.writestr(info.filename, body)
    return out.getvalue()


def _cli_process(*args):
    """``invoicer ARGS`` in a process of its own (an abort must not take the test run with it)."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", "import sys; from invoicer.cli import main; sys.exit(main())",
                           *map(str, args)], capture_output=True, text=True, timeout=120)


LYING_COUNT = ("xl/sharedStrings.xml", rb'uniqueCount="\d+"', b'uniqueCount="999999999999"')


# fixed in session 8 (was a strict xfail): refused in one line before calamine opens it
@pytest.mark.parametrize("why_calamine", [
    ("xl/worksheets/sheet1.xml", rb"<v>5</v>", b"<v>&#53;</v>"),  # an entity in a value: left to calamine
])
def test_a_lying_shared_strings_count_is_one_line_not_an_abort(tmp_path, why_calamine):
    """Promise: no traceback (a Rust panic or abort counts) reaches the user: one line, a documented exit
    code. Attack: the corpus's base roster (2 KB) with sharedStrings' uniqueCount="999999999999" and one
    thing the stream reader leaves to calamine (here an entity in a number; a repeated attribute on <sst>
    does the same). What happened:
    the stream reader rightly gives up, the fallback python_calamine reserves uniqueCount * 24 bytes and
    Rust aborts the whole process ("memory allocation of 23999999999976 bytes failed", a 50-line backtrace,
    SIGABRT, exit 134); a watcher reading it in-process dies with it. (calamine alone did the same before
    session 8; the stream reader, which reads the lying count fine, does not cover the fallback.)"""
    base = corpus.write_xlsx_raw(tmp_path / "base.xlsx", corpus.base_sheets()).read_bytes()
    path = tmp_path / "lie.xlsx"
    path.write_bytes(_edited(base, [LYING_COUNT, why_calamine]))
    r = _cli_process("run", path, "--period", "2026-10", "--out", tmp_path / "out", "--workers", 1)
    assert r.returncode in (0, 1, 2) and r.stderr.count("\n") <= 1, (r.returncode, r.stderr[:300])


def test_a_lying_shared_strings_count_alone_is_read_by_the_stream_reader(tmp_path, book, monkeypatch):
    """Attack held: the lying uniqueCount alone: the stream reader reads the file (it never trusts the count)
    and bills what the honest file bills."""
    base = corpus.write_xlsx_raw(tmp_path / "base.xlsx", corpus.base_sheets()).read_bytes()
    assert (_rejects(_edited(base, [LYING_COUNT]), "r.xlsx", book, monkeypatch, stream=True)
            == _rejects(base, "r.xlsx", book, monkeypatch, stream=True))


# ------------------------------------------------------------------ CSV streaming (held)

CSV_HEAD = "customer_id,name,opened_on,seats,paid_through,legacy_rate,qq_number\n"


@pytest.mark.parametrize("encoding,bom,newline", [("utf-8", "", "\r\n"), ("utf-8", "\ufeff", "\r"),
                                                  ("gb18030", "", "\n"), ("utf-16-le", "\ufeff", "\r\n"),
                                                  ("utf-16-be", "\ufeff", "\n")])
def test_csv_read_in_tiny_buffers_reads_as_in_one(tmp_path, monkeypatch, encoding, bom, newline):
    """Attack held: quoted cells holding quotes, line breaks (\\r\\n, \\r, U+2028) and 4-byte characters
    (😀, 𠀀: surrogate pairs in UTF-16, four bytes in GB18030) cut by every 5-byte buffer boundary read
    the same rows and rejects as the default 64 KiB buffer (also compared, off-line, with the code before
    session 8 on 68 hostile CSV pairs: identical rows, warnings and refusals)."""
    import pandas as pd

    from invoicer import formats

    rows = "".join(f'C{i},"😀𠀀名,""引号""\n第二\u2028行",2025-10-10,5,,,\n' for i in range(40))
    (tmp_path / "customers.csv").write_bytes((bom + CSV_HEAD + rows).replace("\n", newline).encode(encoding))
    (tmp_path / "changes.csv").write_bytes((bom + "customer_id,date,type,seats,reference\nC1,2026-10-03,add,1,"
                                            "x\n").replace("\n", newline).encode(encoding))

    def read():
        raw = roster.read_roster(tmp_path)
        try:
            return raw.customers, raw.changes, raw.warnings
        finally:
            raw.stage.close()

    whole = read()
    assert len(whole[0]) == 40 and whole[0]["name"].iat[0] == '😀𠀀名,"引号"' + newline + "第二\u2028行"
    monkeypatch.setattr(formats, "CSV_BUFFER", 5)
    tiny = read()
    pd.testing.assert_frame_equal(tiny[0], whole[0])
    pd.testing.assert_frame_equal(tiny[1], whole[1])
    assert tiny[2] == whole[2]


# ------------------------------------------------------------------ re-runs, the manifest, the e-fapiao stream (held)

def test_reruns_restore_files_edited_in_place_and_never_issue_twice(tmp_path, stub_render):
    """Attack held: the e-fapiao import file and a PDF edited in place (same size, modification time set
    back), then the manifest replaced by 200,000 levels of nested arrays: each re-run issues nothing and
    puts every file back byte for byte; verify is clean. A manifest forged to list an edited PDF's new inode
    state is trusted by the re-run (the manifest is a hint: not hashed again), but verify names the file."""
    import hashlib
    import json
    import os

    from .conftest import SAMPLE, run_cli

    out = tmp_path / "out"

    def files():
        return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.rglob("*"))
                if p.is_file() and p.name not in ("ledger.sqlite", "manifest.json")}

    def rerun():
        r = run_cli("run", SAMPLE, "--period", "2026-10", "--out", out, "--workers", 1)
        assert r.returncode == 1 and "issued 0 numbered document(s)" in r.stdout, r.stdout[-300:]

    def edit(name):
        p = out / name
        st = p.stat()
        data = bytearray(p.read_bytes())
        data[-20] ^= 1
        p.write_bytes(bytes(data))
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))

    assert run_cli("run", SAMPLE, "--period", "2026-10", "--out", out, "--workers", 1).returncode == 1
    first = files()
    assert "fapiao/SZTY-2026-10.xlsx" in first
    edit("fapiao/SZTY-2026-10.xlsx")
    edit("invoices/SZTY-2026-000003.pdf")
    rerun()
    assert files() == first
    (out / "manifest.json").write_text('{"files": ' + "[" * 200_000 + "]" * 200_000 + "}")
    edit("notices/C014-overdue.pdf")
    rerun()
    assert files() == first
    assert run_cli("verify", out).returncode == 0
    manifest = json.loads((out / "manifest.json").read_text())
    edit("invoices/SZTY-2026-000006.pdf")
    st = (out / "invoices/SZTY-2026-000006.pdf").lstat()
    manifest["file_stats"]["invoices/SZTY-2026-000006.pdf"] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
    (out / "manifest.json").write_text(json.dumps(manifest))
    rerun()
    v = run_cli("verify", out)
    assert v.returncode != 0 and "SZTY-2026-000006.pdf" in v.stdout


def _stream_peak(data: bytes, title: str) -> tuple[int, int]:
    """(rows read, peak bytes Python allocated) streaming one sheet."""
    import tracemalloc

    from invoicer.limits import Limits

    tracemalloc.start()
    try:
        reader = xlsx_stream.XlsxBook(data, "r.xlsx", Limits())
        try:
            n = sum(1 for _ in reader.rows(title))
        finally:
            reader.close()
        return n, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


SELF_CLOSING = {
    # empty formatted rows as Excel writes them (a clerk who formatted rows far down)
    "empty rows": ("xl/worksheets/sheet1.xml", rb"</sheetData>",
                   lambda n: b"".join(b'<row r="%d" spans="1:7" s="1" customFormat="1" ht="15"/>' % i
                                      for i in range(6, 6 + n)) + b"</sheetData>"),
    # style-only cells (no value: no cell to calamine) in one row
    "style-only cells": ("xl/worksheets/sheet1.xml", rb"</sheetData>",
                         lambda n: b'<row r="6">' + b"".join(b'<c r="A6" s="%d"/>' % (i % 2) for i in range(n))
                         + b"</row></sheetData>"),
    # empty shared strings (<si/>)
    "empty shared strings": ("xl/sharedStrings.xml", rb"</sst>",
                             lambda n: b"".join(b'<si a="%d"/>' % i for i in range(n)) + b"</sst>"),
}


# fixed in session 8 (was a strict xfail)
@pytest.mark.parametrize("shape", list(SELF_CLOSING))
def test_self_closing_runs_are_streamed_in_bounded_memory(tmp_path, shape):
    """Promise: the stream reader parses a sheet and the shared strings a batch (BATCH = 256 KiB of XML) at
    a time, so its memory does not grow with the file. Attack: the base roster with 30,000 self-closing
    elements added: empty formatted rows (<row r="N" spans="1:7" s="1" customFormat="1" ht="15"/>, as Excel
    writes rows a clerk formatted far down), style-only cells in one row (<c r="A6" s="1"/>), or empty
    shared strings (<si a="N"/>). What happened: batches are cut only after a </row> or </si>, so the whole
    run is one ET.fromstring: ~25 bytes per byte of XML, growing with the run (60,000 rows: 43 MB; 1 M empty
    rows, a 2.6 MB file: 860 MB resident; the limits allow 1 GB of XML at 200:1, a 5 MB file), where
    calamine kept none of them. The file is read in the end (5 rows), so nothing refuses it.
    Fixed: a self-closing row or shared string ends a batch too, so memory is bounded by a batch (measured:
    30,000 then 100,000 then 300,000 empty rows 7.6, 9.2, 9.2 MB); one row of more than 256 KB of XML is
    left to calamine (Unsupported), which keeps no style-only cell."""
    base = corpus.write_xlsx_raw(tmp_path / "base.xlsx", corpus.base_sheets()).read_bytes()
    member, anchor, make = SELF_CLOSING[shape]
    if shape == "style-only cells":
        with pytest.raises(xlsx_stream.Unsupported, match="a row of more than 256 KB"):
            _stream_peak(_edited(base, [(member, anchor, make(30_000))]), "customers")
        return
    few_rows, few = _stream_peak(_edited(base, [(member, anchor, make(30_000))]), "customers")
    many_rows, many = _stream_peak(_edited(base, [(member, anchor, make(120_000))]), "customers")
    assert few_rows == many_rows == 5
    # four times the run: the batch's bound, not the run's size (shared strings: the spill file's index keeps
    # an offset per string in an array, a few bytes each)
    assert many - few < (90_000 * 48 if shape == "empty shared strings" else 3 * 2**20), (few, many)


def test_one_id_on_hundreds_of_rows_and_changes_without_customers_give_the_same_in_every_partitioning(
        tmp_path, book):
    """Attack held: 400 customers rows of one id in varying case and width (one key: a partition far over
    its size), 400 changes of it, and 300 changes of ids no customers row names; and a customers sheet
    with no rows under a full changes sheet: partitions of one give what one partition gives."""
    import datetime as dt

    from .test_partitions import _workbook, assert_same_in_every_partitioning

    variants = ["x1", "X1", "Ｘ1", " x1 "]
    customers = [[variants[i % 4], "公司", dt.date(2025, 10, 10), 5, None, None, None] for i in range(400)]
    customers += [["y2", "公司", dt.date(2025, 10, 10), 5, None, None, None]]
    changes = [[variants[i % 4], dt.date(2026, 10, 3), "add", 1, None] for i in range(400)]
    changes += [[f"z{i % 7}", dt.date(2026, 10, 3), "add", 1, None] for i in range(300)]
    changes += [["y2", dt.date(2026, 10, 5), "add", 2, None]]
    whole = assert_same_in_every_partitioning(_workbook(tmp_path, customers, changes), book, sizes=(1,))
    assert [d["customer"]["customer_id"] for d in whole["invoices"]] == ["y2"]
    empty = tmp_path / "empty"
    empty.mkdir()
    whole = assert_same_in_every_partitioning(_workbook(empty, [], changes), book, sizes=(1,))
    assert not whole["invoices"] and len(whole["rejects"]) == len(changes)


def test_an_amending_rerun_in_partitions_of_one_publishes_what_one_partition_publishes(tmp_path, stub_render,
                                                                                      monkeypatch):
    """Attack held: the sample issued, then re-run after the clerk changed C002's seats, turned C003's id to
    lower case (c003: its invoice withdrawn, a new one issued; the ledger's cursor meets 'c003' after every
    upper-case id) and deleted C004's row: credit notes, replacements and new numbers in one run. Each run
    in partitions of one customer publishes the files, bytes and manifest entries one partition publishes."""
    import filecmp
    import json

    import openpyxl

    from invoicer import stage

    from .conftest import SAMPLE, run_cli

    wb = openpyxl.load_workbook(SAMPLE)
    ws = wb["客户"]
    for row in ws.iter_rows(min_row=2):
        if row[0].value == "C002":
            row[3].value = 14
        elif row[0].value == "C003":
            row[0].value = "c003"
    ws.delete_rows(next(r[0].row for r in ws.iter_rows(min_row=2) if r[0].value == "C004"))
    changed = tmp_path / "changed.xlsx"
    wb.save(changed)

    def month(out, size):
        with monkeypatch.context() as m:
            m.setattr(stage, "PARTITION_ROWS", size)
            for roster_path, more in ((SAMPLE, []), (changed, ["--amend"])):
                r = run_cli("run", roster_path, "--period", "2026-10", "--out", out, "--workers", 1, *more)
                assert r.returncode == 1, r.stderr[-300:]
        return r

    whole, parts = tmp_path / "whole", tmp_path / "parts"
    month(whole, 10**9)
    names = list(json.loads((whole / "manifest.json").read_text())["files"])
    assert len(names) > 25 and any("credit" in n for n in names), names
    month(parts, 1)
    a, b = (json.loads((d / "manifest.json").read_text()) for d in (whole, parts))
    assert a["files"] == b["files"] and a["counts"] == b["counts"] and a["total_fen"] == b["total_fen"]
    match, mismatch, errors = filecmp.cmpfiles(whole, parts, list(a["files"]), shallow=False)
    assert (mismatch, errors) == ([], []) and len(match) == len(a["files"]) > 20
