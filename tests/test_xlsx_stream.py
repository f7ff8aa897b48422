"""xlsx_stream.py: the streamed .xlsx/.xlsm reader gives exactly the rows python-calamine gives (values and
types), for every workbook the suite has or makes and for random cells; what it does not reproduce it leaves
to calamine (Unsupported), and the roster read through it is the roster read through calamine."""
from __future__ import annotations

import datetime as dt
import io
import math
import zipfile
from pathlib import Path

import pytest
import python_calamine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from invoicer import formats, roster, xlsx_stream
from invoicer.errors import InputError
from invoicer.limits import Limits

from . import corpus

ROOT = Path(__file__).resolve().parents[1]
NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"


def _key(v):
    """A cell compared by type and value (5.0 is not 5, -0.0 is not 0.0, nan is nan)."""
    if isinstance(v, float) and math.isnan(v):
        return ("float", "nan")
    return (type(v).__name__, repr(v))


def calamine_rows(data: bytes, title: str) -> list[list]:
    """The rows as roster's _CalamineBook takes them from calamine: from row 1, padded from column A."""
    wb = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
    sheet = wb.get_sheet_by_name(title)
    top, left = sheet.start or (0, 0)
    return [[""] * left + r if left else r for r in sheet.iter_rows()]


def stream_rows(data: bytes, title: str, whole: bool = True) -> list[list]:
    book = xlsx_stream.XlsxBook(data, "t.xlsx", Limits())
    try:
        rows = list(book.rows(title))
    finally:
        book.close()
    if not whole:
        return rows
    width = max((len(r) for r in rows), default=0)
    return [r + [""] * (width - len(r)) for r in rows]


def assert_same(data: bytes, title: str) -> None:
    try:
        want = calamine_rows(data, title)
    except (Exception, BaseException) as exc:  # calamine's panics are BaseException
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        try:
            rows = stream_rows(data, title)
        except xlsx_stream.Unsupported:
            return  # left to calamine, which fails the same way
        # read where calamine fails: only a date or duration beyond any calendar, kept as its number
        assert type(exc).__name__ in ("PanicException", "OverflowError"), exc
        assert any(isinstance(v, float) and (abs(v) > 1e9 or v != v) for r in rows for v in r), rows
        return
    streamed = stream_rows(data, title, whole=False)
    width = max((len(r) for r in streamed), default=0)
    got = [r + [""] * (width - len(r)) for r in streamed]
    assert [[_key(v) for v in r] for r in got] == [[_key(v) for v in r] for r in want]
    # as streamed, each row is calamine's row cut after the longest row so far (never a cell less)
    longest = 0
    for r, w in zip(streamed, want):
        longest = max(longest, len(r))
        assert len(r) == longest and [_key(v) for v in r] == [_key(v) for v in w[:len(r)]]


def worksheets(data: bytes) -> list[str]:
    wb = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
    return [m.name for m in wb.sheets_metadata if str(m.typ).endswith("WorkSheet")]


def safe_to_load(data: bytes) -> bool:
    """Within the limits (calamine would allocate a range bomb's cells)."""
    try:
        for scan in formats.inspect_zip(data, "t", "xlsx", Limits()).sheets.values():
            formats.check_extent(scan, "t", Limits())
    except InputError:
        return False
    return True


# ------------------------------------------------------------------ every workbook the suite has or makes

def suite_workbooks(tmp: Path) -> list[Path]:
    corpus.write_corpus(tmp)
    made = sorted(p for p in tmp.rglob("*") if p.suffix.lower() in (".xlsx", ".xlsm"))
    have = sorted(p for p in (ROOT / "tests" / "data").rglob("*") if p.suffix.lower() in (".xlsx", ".xlsm"))
    return have + [ROOT / "samples" / "roster.xlsx"] + made


def test_every_workbook_of_the_suite_reads_as_calamine_reads_it(tmp_path):
    checked, fell_back = [], []
    for path in suite_workbooks(tmp_path):
        data = path.read_bytes()
        try:
            if formats.detect(data, path.name) != "xlsx" or not safe_to_load(data):
                continue
        except InputError:
            continue  # empty, not a zip
        try:
            titles = worksheets(data)
        except Exception:
            continue  # calamine cannot open it (a truncated zip): roster refuses it before any reader
        for title in titles:
            try:
                assert_same(data, title)
            except xlsx_stream.Unsupported as exc:
                fell_back.append((path.name, title, str(exc)))
                continue
            checked.append((path.name, title))
    names = {n for n, _ in checked}
    assert {"roster.xlsx", "base.xlsx", "base.xlsm", "shared.xlsx", "norefs.xlsx", "prefix.xlsx", "values.xlsx",
            "cells.xlsx", "formula.xlsx", "long.xlsx", "titled.xlsx"} <= names, names
    assert len(checked) >= 40
    assert fell_back == [], fell_back


def test_the_libreoffice_workbook_and_the_sample_are_streamed():
    for path in (ROOT / "tests" / "data" / "libreoffice" / "roster.xlsx", ROOT / "samples" / "roster.xlsx"):
        data = path.read_bytes()
        for title in worksheets(data):
            assert_same(data, title)


# ------------------------------------------------------------------ hand-made parts: calamine's rules

def book(sheet_data: str, sst: str | None = None, numfmts: str = "", xfs: str = '<xf numFmtId="0"/>',
         wbpr: str = "", head: str = "") -> bytes:
    files = {
        "[Content_Types].xml": '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.'
                               'openxmlformats.org/package/2006/content-types"/>',
        "_rels/.rels": '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.'
                       'org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.'
                       'org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>'
                       '</Relationships>',
        "xl/workbook.xml": f'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{NS}" xmlns:r="http://schemas.'
                           f'openxmlformats.org/officeDocument/2006/relationships">{wbpr}<sheets><sheet name="S" '
                           f'sheetId="1" r:id="rId1"/></sheets></workbook>',
        "xl/_rels/workbook.xml.rels": '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.'
                                      'openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type='
                                      '"http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
                                      'worksheet" Target="worksheets/sheet1.xml"/></Relationships>',
        "xl/styles.xml": f'<?xml version="1.0" encoding="UTF-8"?><styleSheet xmlns="{NS}"><numFmts>{numfmts}'
                         f'</numFmts><cellXfs>{xfs}</cellXfs></styleSheet>',
        "xl/worksheets/sheet1.xml": f'<?xml version="1.0" encoding="UTF-8"?>{head}<worksheet xmlns="{NS}">'
                                    f'<sheetData>{sheet_data}</sheetData></worksheet>',
    }
    if sst is not None:
        files["xl/sharedStrings.xml"] = f'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="{NS}">{sst}</sst>'
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for k, v in files.items():
            z.writestr(k, v.encode())
    return buf.getvalue()


def C(ref, v, s=None, t=None):
    return (f'<c r="{ref}"' + (f' s="{s}"' if s is not None else "") + (f' t="{t}"' if t else "")
            + f"><v>{v}</v></c>")


def R(n, *cells):
    return f'<row r="{n}">' + "".join(cells) + "</row>"


XFS = ('<xf numFmtId="0"/><xf numFmtId="14"/><xf numFmtId="20"/><xf numFmtId="46"/><xf numFmtId="22"/>'
       '<xf numFmtId="164"/><xf numFmtId="165"/><xf/><xf numFmtId="47"/><xf numFmtId="45"/>')
NUMFMTS = '<numFmt numFmtId="164" formatCode="yyyy-mm-dd"/><numFmt numFmtId="165" formatCode="[h]:mm"/>'


@pytest.mark.parametrize("sheet_data,sst", [
    (R(1, C("A1", 5), C("B1", 5.5), C("C1", 1, t="b"), C("D1", 0, t="b"), C("E1", "true", t="b")), None),
    ('<row r="3"><c r="C3"><v>5</v></c></row><row r="5"><c r="B5"><v>1</v></c><c r="E5" s="0"/></row>', None),
    (R(1, C("A1", 5), '<c r="D1" s="0"/>') + R(4, '<c r="A4" s="0"/>'), None),  # style-only cells: no cell
    (R(1, C("A1", 5), '<c r="C1"><f>1+1</f></c>', '<c r="E1" t="e"><v>#N/A</v></c>'), None),  # error: a cell
    (R(1, *[C(f"{chr(65 + i)}1", v) for i, v in enumerate(
        ["1e308", "-0", "007", "1E3", "inf", "abc", " 5", "12345678901234567890", "+5", ".5", "5.", "1e", "nan",
         "-inf", "1_000", "0x10", "4e-324", "1e5000"])]), None),
    (R(1, C("A1", 0, t="s"), C("B1", 1, t="s"), C("C1", 2, t="s"), C("D1", 3, t="s"), C("E1", 4, t="s")),
     '<si><t>a\r\nb_x000D__x005f_x0041_ _x00+9_</t></si><si><r><t>x</t></r><r><t xml:space="preserve"> y </t>'
     '</r><rPh><t>P</t></rPh></si><si><t>1</t><r><t>2</t></r></si><si><r><t>1</t></r><t> 2 \t</t></si>'
     '<si></si>'),
    (R(1, '<c r="A1" t="inlineStr"><is><t xml:space="preserve"> a _x0041_ \r\n</t></is></c>',
       '<c r="B1" t="inlineStr"><is><r><t>x</t></r><r><t> y </t></r><rPh><t>PH</t></rPh></is></c>',
       '<c r="C1" t="inlineStr"><is></is></c>', '<c r="D1" t="s"><is><t>q</t></is></c>',
       '<c r="E1" t="inlineStr"><v>zz</v></c>', '<c r="F1"><is><t>  </t></is></c>'), None),
    (R(1, C("A1", "a _x000d_ b _x597D_ ", t="str"), C("B1", "", t="str"), '<c r="C1" t="str"><f>x</f><v/></c>',
       C("D1", "x_x000D_")), None),
    ('<row><c><v>1</v></c><c/><c><v>3</v></c></row><row r="4"><c><v>4</v></c><c r="D4"><v>5</v></c><c><v>6</v>'
     '</c></row><row><c t="inlineStr"><is><t>x</t></is></c></row><row/><row><c r="b7"><v>7</v></c></row>', None),
    (R(1, '<c r="A1"><v>5</v><f>1</f></c>', '<c r="B1"><f>1</f><v>6</v></c>', C("D1", 1), C("C1", 2),
       C("C1", 3), '<c r="C1"/>'), None),
    ("", None),
    (R(1, C("A1", 0, t="s"), C("B1", 1, t="s"), C("C1", 2, t="s")),  # read by events: CDATA, a comment
     '<si><t><![CDATA[a</si><b ]]></t></si><!-- </si> --><si><r><t>x</t></r><!-- y --><r><t>z</t></r></si>'
     '<si/>'),
    ('<row r="2"/>', None),
    ("\n  " + R(1, C("A1", 1)) + "\n  ", None),
])
def test_cells_as_calamine_reads_them(sheet_data, sst):
    assert_same(book(sheet_data, sst=sst), "S")


@pytest.mark.parametrize("wbpr", ["", '<workbookPr date1904="true"/>', '<workbookPr date1904="1"/>',
                                  '<workbookPr date1904="on"/>', '<workbookPr date1904="false"/>'])
@pytest.mark.parametrize("v", ["0", "0.5", "1", "1.5", "45000", "45000.25", "-1", "60", "61", "59", "2958465",
                               "2958466", "-0.5", "0.99999999999", "nan", "2.5e-9", "45000.999999994",
                               "-1462", "-1461.5", "-700000", "1e7", "45000.0000057870"])
def test_numbers_in_date_and_duration_formats_as_calamine_converts_them(v, wbpr):
    cells = [C(f"{chr(65 + i)}1", v, s=i) for i in range(10)] + [C("K1", v, s=99), C("L1", v, s="x"),
                                                               C("M1", v, s="01")]
    assert_same(book(R(1, *cells), numfmts=NUMFMTS, xfs=XFS, wbpr=wbpr), "S")


@pytest.mark.parametrize("sheet_data,sst", [
    (R(1, C("A1", 5, t="zz")), None),  # a type calamine refuses
    (R(1, C("A1", "#SPILL!", t="e")), None),  # an error value calamine refuses
    (R(1, C("A1", "2", t="b")), None),
    (R(1, C("A1", "abc", t="n")), None),
    (R(1, C("A1", 9, t="s")), "<si><t>a</t></si>"),  # no such shared string
    (R(1, '<c r="A1"><extLst/><v>1</v></c>'), None),
    (R(1, C("A1", "2026-01-02", t="d")), None),  # ISO dates: left to calamine
    (R(2, C("A2", 2)) + R(1, C("B1", 1)), None),  # rows out of order
    (R(1, C("A1", "&#53;")), None),  # an entity in a number (calamine reads no text before it: empty)
    (R(1, C("A1", "5<!-- x -->6")), None),
    (R(1, C("A1", "a\r\nb")), None),  # calamine keeps the raw line end of an untyped text
    (R(1, C("A1", 1, t="&#115;")), None),  # calamine reads attributes raw
    (R(1, C("A1", "<![CDATA[5]]>")), None),
])
def test_what_calamine_reads_differently_or_refuses_is_left_to_it(sheet_data, sst):
    data = book(sheet_data, sst=sst, numfmts=NUMFMTS, xfs=XFS)
    with pytest.raises(xlsx_stream.Unsupported):
        stream_rows(data, "S")


@pytest.mark.parametrize("cell", [C("A1", "1e10", s=3), C("A1", "-2e11", s=1), C("A1", "-2e11", s=3)])
def test_a_date_or_duration_calamine_cannot_convert_is_kept_as_its_number(cell):
    """A date- or duration-formatted number beyond any calendar (or beyond Python's durations): calamine
    raises, or its Rust code panics (a PanicException and a Rust backtrace on stderr, which no handler stops);
    the stream reader keeps the number, which the roster's checks reject as not a date."""
    data = book(R(1, cell), numfmts=NUMFMTS, xfs=XFS)
    with pytest.raises(BaseException) as failed:
        calamine_rows(data, "S")
    assert type(failed.value).__name__ in ("PanicException", "OverflowError")
    assert stream_rows(data, "S") == [[float(cell.split("<v>")[1].split("<")[0])]]


def test_a_doctype_is_never_parsed():
    bomb = ('<!DOCTYPE worksheet [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
            '<!ENTITY ext SYSTEM "file:///etc/passwd">]>')
    data = book(R(1, C("A1", 1)), head=bomb)
    with pytest.raises(xlsx_stream.Unsupported, match="DOCTYPE"):
        stream_rows(data, "S")


# ------------------------------------------------------------------ number formats

FORMAT_ALPHABET = 'dmhysDMHYSaApP/[]";\\_*0#., @-:E+ＭＨ'


@settings(max_examples=30, deadline=None)
@given(st.lists(st.text(FORMAT_ALPHABET, min_size=1, max_size=12), min_size=1, max_size=40))
def test_custom_number_formats_are_read_as_calamine_reads_them(codes):
    # each code its own style; the value 1.5 comes out as a float, a datetime or a timedelta
    numfmts = "".join(f'<numFmt numFmtId="{164 + i}" formatCode="{_attr(c)}"/>' for i, c in enumerate(codes))
    xfs = "".join(f'<xf numFmtId="{164 + i}"/>' for i in range(len(codes)))
    cells = [f'<c r="A{i + 1}" s="{i}"><v>1.5</v></c>' for i in range(len(codes))]
    data = book("".join(f'<row r="{i + 1}">{c}</row>' for i, c in enumerate(cells)), numfmts=numfmts, xfs=xfs)
    assert_same(data, "S")


def _attr(s: str) -> str:
    return s.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


# ------------------------------------------------------------------ random cells written by openpyxl

TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12).filter(
    lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s))
SAFE_TEXT = st.one_of(
    TEXT,
    st.sampled_from(["_x000D_", "a_x000D_b", "_x005F_x000D_", "客户编号", " padded ", "\t", "\r\n", "x\ny",
                     "=1+2", "1.5", "TRUE", "#N/A", "", " "]),
).map(lambda s: "".join(c for c in s if c in "\t\n\r" or ord(c) >= 0x20 and c not in "\ufffe\uffff"))
VALUES = st.one_of(
    st.none(),
    SAFE_TEXT,
    st.integers(min_value=-(2 ** 53), max_value=2 ** 53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e308, -0.0, 0.1, 5e-324, 2 ** 63, 1e20]),
    st.booleans(),
    st.dates(min_value=dt.date(1900, 3, 1), max_value=dt.date(9999, 12, 31)),
    st.datetimes(min_value=dt.datetime(1900, 3, 1), max_value=dt.datetime(9999, 12, 31)),
    st.times(),
)
NUMBER_FORMATS = st.sampled_from(["General", "yyyy-mm-dd", "mm-dd-yy", "d-mmm-yy", "h:mm", "h:mm:ss AM/PM",
                                  "yyyy-mm-dd hh:mm:ss", "[h]:mm:ss", "0.00", "#,##0", "@", "mm:ss",
                                  "[$-404]e/m/d", 'yyyy"年"m"月"d"日"', "0%"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cells=st.dictionaries(st.tuples(st.integers(0, 30), st.integers(0, 12)),
                             st.tuples(VALUES, NUMBER_FORMATS), max_size=40),
       epoch_1904=st.booleans())
def test_random_cells_written_by_openpyxl_read_as_calamine_reads_them(cells, epoch_1904):
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "S"
    if epoch_1904:
        wb.epoch = dt.datetime(1904, 1, 1)
    for (r, c), (v, fmt) in cells.items():
        cell = ws.cell(row=r + 1, column=c + 1, value=v)
        cell.number_format = fmt
    buf = io.BytesIO()
    wb.save(buf)
    assert_same(buf.getvalue(), "S")


# ------------------------------------------------------------------ the shared strings off the heap


def test_a_large_shared_strings_table_is_read_from_a_file(tmp_path, monkeypatch):
    path = corpus.write_xlsx_raw(tmp_path / "s.xlsx", corpus.base_sheets())
    data = path.read_bytes()
    want = {t: calamine_rows(data, t) for t in worksheets(data)}
    monkeypatch.setattr(xlsx_stream._Strings, "IN_MEMORY", 2)
    book_ = xlsx_stream.XlsxBook(data, "s.xlsx", Limits())
    try:
        assert book_.strings.items is None and book_.strings.count > 2  # spilled to the file
        for t, rows in want.items():
            got = list(book_.rows(t))
            width = max((len(r) for r in got), default=0)
            assert [r + [""] * (width - len(r)) for r in got] == rows
    finally:
        book_.close()


# ------------------------------------------------------------------ the roster read through it


def _read(data: bytes, name: str, monkeypatch, stream: bool):
    with monkeypatch.context() as m:
        if not stream:
            def refuse(*a, **k):
                raise xlsx_stream.Unsupported("test: calamine")
            m.setattr(xlsx_stream, "XlsxBook", refuse)
        try:
            raw = roster.read_roster_bytes(data, name)
        except InputError as exc:
            return ("refused", str(exc))
    try:
        return (raw.customers.to_dict("records"), raw.changes.to_dict("records"), raw.reseller, raw.warnings,
                raw.sheet_titles)
    finally:
        raw.stage.close()


def _typed(x):
    if isinstance(x, dict):
        return {k: _typed(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_typed(v) for v in x]
    return _key(x) if not isinstance(x, str) else x


def test_every_roster_of_the_corpus_reads_the_same_through_either_reader(tmp_path, monkeypatch):
    for path in suite_workbooks(tmp_path):
        data = path.read_bytes()
        try:
            kind = formats.detect(data, path.name)
        except InputError:
            continue
        if kind != "xlsx":
            continue
        calamine = _read(data, path.name, monkeypatch, stream=False)
        streamed = _read(data, path.name, monkeypatch, stream=True)
        assert _typed(streamed) == _typed(calamine), path.name


def test_a_file_found_unsupported_midway_is_read_again_by_calamine(tmp_path, monkeypatch):
    sheets = corpus.base_sheets()
    raw_cells = {("changes", "E3"): '<c r="E3" t="d"><v>2026-10-12</v></c>'}  # only calamine reads t="d"
    path = corpus.write_xlsx_raw(tmp_path / "d.xlsx", sheets, raw_cells=raw_cells)
    data = path.read_bytes()
    with pytest.raises(xlsx_stream.Unsupported):
        for title in worksheets(data):
            stream_rows(data, title)
    streamed = _read(data, "d.xlsx", monkeypatch, stream=True)
    assert streamed[0] and _typed(streamed) == _typed(_read(data, "d.xlsx", monkeypatch, stream=False))


RAW_TEXT = st.text(st.one_of(st.characters(codec="utf-8", exclude_categories=("Cs",)),
                             st.sampled_from(list("\x00\x01\x0b\x0c\x1b\x1f\x7f\x85\ufffe\uffff\t\r\n 客_"))),
                   max_size=10) | st.sampled_from(["_x000D_", "a_x000D_b", "_x005F_x000D_", "_x00+9_", " pad ",
                                                   "\U0010ff0b"])
RAW_VALUES = st.one_of(st.none(), RAW_TEXT, st.integers(-(2 ** 60), 2 ** 60), st.floats(), st.booleans(),
                       st.dates(min_value=dt.date(1900, 3, 1), max_value=dt.date(9999, 12, 31)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(RAW_VALUES, max_size=8), max_size=8), refs=st.booleans(), shared=st.booleans(),
       prefix=st.sampled_from(["", "x"]))
def test_random_hostile_cells_written_raw_read_as_calamine_reads_them(tmp_path, rows, refs, shared, prefix):
    # control characters, U+FFFE, escapes and their stand-ins, cells without references, a namespace prefix
    path = corpus.write_xlsx_raw(tmp_path / "r.xlsx", {"S": rows or [[None]]}, refs=refs, shared=shared,
                                 prefix=prefix)
    texts = "".join(v for r in rows for v in r if isinstance(v, str))
    carried = any((ord(c) < 0x20 and c not in "\t\n\r") or c in "\ufffe\uffff" for c in texts)
    stand_in = any(0x10FF00 <= ord(c) <= 0x10FF3F for c in texts)
    if carried and stand_in:  # both a character XML cannot hold and its stand-in: left to calamine
        with pytest.raises(xlsx_stream.Unsupported, match="stand-ins"):
            stream_rows(path.read_bytes(), "S")
    else:
        assert_same(path.read_bytes(), "S")


def test_rows_cut_anywhere_by_the_inflater_and_parsed_a_row_at_a_time_read_the_same(tmp_path, monkeypatch):
    # the sheet XML arrives in pieces of 7 bytes (a tag, a character, a </row> cut anywhere) and every
    # row is its own batch; the shared strings spill to the file
    inflate = formats._inflate

    def tiny(*args, **kwargs):
        for chunk in inflate(*args, **kwargs):
            for i in range(0, len(chunk), 7):
                yield chunk[i:i + 7]

    paths = [ROOT / "samples" / "roster.xlsx", ROOT / "tests" / "data" / "libreoffice" / "roster.xlsx"]
    sheets = corpus._with(corpus.base_sheets(), "customers", ["E\x0b10", "控制字符\x1b", dt.date(2026, 10, 3), 5])
    for name, kw in {"shared": {}, "norefs": {"refs": False, "shared": False}, "prefix": {"prefix": "x"}}.items():
        paths.append(corpus.write_xlsx_raw(tmp_path / f"{name}.xlsx", sheets, **kw))
    paths.append(corpus.write_xlsx(tmp_path / "openpyxl.xlsx", corpus.base_sheets()))
    want = {p: {t: calamine_rows(p.read_bytes(), t) for t in worksheets(p.read_bytes())} for p in paths}
    monkeypatch.setattr(formats, "_inflate", tiny)
    monkeypatch.setattr(xlsx_stream, "BATCH", 1)
    monkeypatch.setattr(xlsx_stream._Strings, "IN_MEMORY", 3)
    for p in paths:
        for t, rows in want[p].items():
            assert [[_key(v) for v in r] for r in stream_rows(p.read_bytes(), t)] == \
                [[_key(v) for v in r] for r in rows], (p.name, t)


def test_a_failing_temporary_folder_leaves_the_file_to_calamine(tmp_path, monkeypatch):
    path = corpus.write_xlsx_raw(tmp_path / "s.xlsx", corpus.base_sheets())
    data = path.read_bytes()
    want = _read(data, "s.xlsx", monkeypatch, stream=False)
    monkeypatch.setattr(xlsx_stream._Strings, "IN_MEMORY", 2)

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(xlsx_stream.tempfile, "TemporaryFile", full)
    with pytest.raises(xlsx_stream.Unsupported, match="temporary file"):
        xlsx_stream.XlsxBook(data, "s.xlsx", Limits())
    assert _typed(_read(data, "s.xlsx", monkeypatch, stream=True)) == _typed(want)


def test_a_roster_with_a_date_beyond_any_calendar_rejects_its_row_in_one_line(tmp_path):
    """Before the stream reader, calamine's Rust code panicked on this cell: a PanicException and a Rust
    backtrace reached the clerk. Now the row is rejected, its value shown, and the rest is checked."""
    import openpyxl

    from .conftest import CHANGE_HEADERS, CUSTOMER_HEADERS, run_cli

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "customers"
    ws.append(CUSTOMER_HEADERS)
    ws.append(["A1", "甲公司", -2e11, 5])
    ws.append(["B2", "乙公司", dt.date(2026, 10, 5), 5])
    ws["C2"].number_format = ws["C3"].number_format = "yyyy-mm-dd"
    wb.create_sheet("changes").append(CHANGE_HEADERS)
    wb.save(tmp_path / "far.xlsx")
    r = run_cli("check", tmp_path / "far.xlsx")
    assert r.returncode == 1 and "panicked" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert "row 2 column opened_on value '-200000000000': not a date" in r.stdout
    assert "1 row(s) rejected" in r.stdout


def test_the_tag_cache_stays_bounded_whatever_names_a_workbook_uses():
    """The local names of tags are remembered for the life of the process (the watcher reads many files):
    a hostile workbook naming millions of elements differently must not grow it for good."""
    for i in range(xlsx_stream._LOCAL_MAX + 100):
        assert xlsx_stream._loc("{urn:x}e%d" % i) == "e%d" % i
    assert len(xlsx_stream._LOCAL) <= xlsx_stream._LOCAL_MAX
