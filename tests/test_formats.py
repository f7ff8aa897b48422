"""formats.py alone: format detection, CSV encodings, the zip inspection that counts real bytes, and the
worksheet scan that finds the used range and the cells a reader would misread."""
from __future__ import annotations

import io
import struct
import zipfile

import pytest

from invoicer import formats
from invoicer.errors import InputError
from invoicer.limits import Limits


def scan(xml: bytes, chunk: int = 7) -> formats.SheetScan:
    sheet = formats.SheetScan("s")
    scanner = formats._XlsxSheetScanner(sheet)
    for i in range(0, len(xml), chunk):  # small chunks: rows cut anywhere must still be seen whole
        scanner.feed(xml[i:i + chunk])
    scanner.close()
    return sheet


def test_scan_finds_the_used_range_errors_and_formulas_without_values():
    s = scan(b'<row r="1"><c r="A1" t="str"><f>IF(1,"",1)</f><v></v></c><c r="B1"><f>SUM(A2)</f><v /></c>'
             b'<c r="C1" t="e"><v>#N/A</v></c><c r="D1"><f>2+3</f><v>5</v></c></row>'
             b'<row r="40"><c r="AB40"><v>1</v></c></row>')
    assert (s.rows, s.columns) == (40, 28)
    assert s.problems == {(0, 1): ("=SUM(A2)", formats.FORMULA_WITHOUT_VALUE),
                          (0, 2): ("#N/A", "the cell holds the error #N/A")}


def test_scan_counts_positions_when_cells_carry_no_reference_and_reads_prefixes():
    s = scan(b"<x:row><x:c/><x:c/><x:c><x:v>1</x:v></x:c></x:row><x:row/><x:row><x:c><x:v>1</x:v></x:c></x:row>")
    assert (s.rows, s.columns) == (3, 3)
    s = scan(b'<x:row r="7"><x:c r="XFD7" t="e"><x:v>#REF!</x:v></x:c></x:row>')
    assert (s.rows, s.columns, s.problems) == (7, 16384, {(6, 16383): ("#REF!", "the cell holds the error #REF!")})


def test_check_extent_names_the_limit_and_its_variable():
    with pytest.raises(InputError, match=r"f: sheet 's' uses 1048576 rows x 1 columns = 1048576 cells "
                                         r"\(limit 1000; raise with INVOICER_MAX_CELLS\)"):
        formats.check_extent(formats.SheetScan("s", 1048576, 1), "f", Limits(cells=1000, rows=10 ** 7))


@pytest.mark.parametrize("data, kind", [
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100, "xls"),
    (b"customer_id,name\n", "csv"),
])
def test_detect_by_content(data, kind):
    assert formats.detect(data, "x.xlsx") == kind


@pytest.mark.parametrize("raw", [
    "客户编号,名称\n".encode("utf-8"),
    b"\xef\xbb\xbf" + "客户编号,名称\n".encode("utf-8"),
    "客户编号,名称\n".encode("gbk"),
    "客户编号,名称\n".encode("gb18030"),
])
def test_csv_encodings(raw):
    assert formats.decode_csv(raw, "c.csv") == "客户编号,名称\n"


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_a_member_that_inflates_beyond_its_declared_size_is_refused():
    data = bytearray(_zip({"customers.csv": b"a,b\n" * 1000, "changes.csv": b"c\n"}))
    # declare 100 bytes for customers.csv in its local header and in the central directory
    local = data.index(b"PK\x03\x04")
    struct.pack_into("<I", data, local + 22, 100)
    central = data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, 100)
    with pytest.raises(InputError, match="larger than declared"):
        formats.inspect_zip(bytes(data), "z.zip", "csvzip", Limits())


def test_ratio_members_and_unpacked_limits():
    bomb = _zip({"customers.csv": b"\0" * (8 * 1024 * 1024)})
    with pytest.raises(InputError, match="like a zip bomb .limit 200; raise with INVOICER_MAX_RATIO"):
        formats.inspect_zip(bomb, "z.zip", "csvzip", Limits())
    with pytest.raises(InputError, match="holds 3 files"):
        formats.inspect_zip(_zip({"a": b"", "b": b"", "c": b""}), "z.zip", "csvzip", Limits(members=2))
    with pytest.raises(InputError, match="unpacks to more than 1 MB"):
        formats.inspect_zip(bomb, "z.zip", "csvzip", Limits(unpacked_mb=1, ratio=10 ** 6))
    ok = formats.inspect_zip(_zip({"customers.csv": b"x" * 10}), "z.zip", "csvzip", Limits())
    assert ok.texts == {"customers.csv": b"x" * 10}


def _zip_named(members: list[tuple[bytes, bool, bytes]]) -> bytes:
    """A zip whose member names are the given bytes, with the UTF-8 flag (bit 11) set or clear, as zip tools
    write them (zipfile itself always writes a non-ASCII name as flagged UTF-8)."""
    class ToolsName(zipfile.ZipInfo):
        def _encodeFilenameFlags(self):  # the bytes as the tool wrote them
            return self.raw, (self.flag_bits | 0x800 if self.utf8 else self.flag_bits & ~0x800)

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for raw, utf8, data in members:
            info = ToolsName(raw.decode("utf-8" if utf8 else "cp437"))
            info.compress_type, info.raw, info.utf8 = zipfile.ZIP_DEFLATED, raw, utf8
            zf.writestr(info, data)
    return buf.getvalue()


@pytest.mark.parametrize("raw, utf8, shown", [
    ("客户.csv".encode("gbk"), False, "客户.csv"),  # Windows' compressed folder on a Chinese Windows
    ("roster/变更.csv".encode("gb18030"), False, "roster/变更.csv"),
    ("客户.csv".encode("utf-8"), False, "客户.csv"),  # Info-ZIP on Linux/macOS: UTF-8, no flag
    ("客户.csv".encode("utf-8"), True, "客户.csv"),
    ("caf\x82.csv".encode("latin-1"), False, "caf\u00e9.csv"),  # cp437 meant (é), neither UTF-8 nor GB18030
    (b"customers.csv", False, "customers.csv"),
])
def test_a_zip_member_name_is_read_in_the_encoding_its_tool_wrote(raw, utf8, shown):
    data = _zip_named([(raw, utf8, b"x")])
    assert formats.inspect_zip(data, "z.zip", "csvzip", Limits()).texts == {shown: b"x"}


def test_two_members_whose_names_read_the_same_once_decoded_are_refused():
    """客户.csv flagged UTF-8 and 客户.csv in GBK without the flag: two different names to zipfile, one name
    to the clerk (the duplicate check runs on the decoded name)."""
    data = _zip_named([("客户.csv".encode("utf-8"), True, b"a"), ("客户.csv".encode("gbk"), False, b"b")])
    with pytest.raises(InputError, match="holds two files named '客户.csv'"):
        formats.inspect_zip(data, "z.zip", "csvzip", Limits())


def test_ods_scan_counts_repeats_and_finds_errors_and_formulas_without_values():
    content = (
        '<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
        'xmlns:calcext="urn:org:documentfoundation:names:experimental:calc:xmlns:calcext:1.0"><office:body>'
        '<office:spreadsheet><table:table table:name="customers">'
        '<table:table-row><table:table-cell table:number-columns-repeated="3"/><table:table-cell '
        'office:value-type="float" office:value="0" calcext:value-type="error" table:formula="of:=1/0">'
        '<text:p>#DIV/0!</text:p></table:table-cell><table:table-cell table:formula="of:=[.A1]"/></table:table-row>'
        '<table:table-row table:number-rows-repeated="10"><table:table-cell/></table:table-row>'
        '<table:table-row><table:table-cell office:value-type="string"><text:p>x</text:p></table:table-cell>'
        '</table:table-row><table:table-row table:number-rows-repeated="1048000"><table:table-cell '
        'table:number-columns-repeated="1024"/></table:table-row></table:table></office:spreadsheet>'
        '</office:body></office:document-content>').encode()
    (sheet,) = formats._scan_ods([content[:50], content[50:]]).values()
    assert (sheet.title, sheet.rows, sheet.columns) == ("customers", 12, 5)
    assert sheet.problems == {(0, 3): ("#DIV/0!", "the cell holds the error #DIV/0!"),
                              (0, 4): ("of:=[.A1]", formats.FORMULA_WITHOUT_VALUE)}
