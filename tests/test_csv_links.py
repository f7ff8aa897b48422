"""A CSV roster given as a folder: a companion file that is a link is refused, never followed (it could show
any file of the machine in the error message or be billed as the roster)."""
from __future__ import annotations

import pytest

from invoicer.errors import InputError
from invoicer.roster import read_roster

CUSTOMERS = "customer_id,name,opened_on,seats\nA,甲公司,2026-10-03,5\n"
CHANGES = "customer_id,date,type,seats\n"


def test_a_linked_changes_csv_is_refused_without_reading_its_target(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:SECRET-FIRST-LINE\n")
    folder = tmp_path / "roster"
    folder.mkdir()
    (folder / "customers.csv").write_text(CUSTOMERS, encoding="utf-8")
    (folder / "changes.csv").symlink_to(secret)
    with pytest.raises(InputError) as err:
        read_roster(folder)
    assert "changes.csv" in str(err.value) and "link" in str(err.value)
    assert "SECRET" not in str(err.value)


def test_regular_companions_are_read(tmp_path):
    folder = tmp_path / "roster"
    folder.mkdir()
    (folder / "customers.csv").write_text(CUSTOMERS, encoding="utf-8")
    (folder / "changes.csv").write_text(CHANGES, encoding="utf-8")
    raw = read_roster(folder)
    assert raw.sha256  # read and packed; the frames are checked by the corpus tests


# -- quotes in a hand-edited CSV: a cell may run across lines, a stray quote may not swallow rows -----------
HEAD = "customer_id,name,opened_on,seats,address\n"


def _pair(tmp_path, customers: str, changes: str = CHANGES, reseller: str | None = None):
    folder = tmp_path / "roster"
    folder.mkdir(parents=True)
    (folder / "customers.csv").write_text(customers, encoding="utf-8", newline="")
    (folder / "changes.csv").write_text(changes, encoding="utf-8", newline="")
    if reseller is not None:
        (folder / "reseller.csv").write_text(reseller, encoding="utf-8", newline="")
    return folder


@pytest.mark.parametrize("eol", ["\n", "\r\n"])
def test_a_quoted_cell_with_a_line_break_is_one_cell_and_every_row_is_read(tmp_path, eol):
    """What a spreadsheet writes for an address typed with Alt+Enter (also with commas on its lines)."""
    text = (HEAD + 'A,甲公司,2026-10-03,5,"北京市海淀区' + eol + '中关村1号"' + eol
            + 'B,"Yi, Ltd",2026-10-04,6,"Room 5, Bldg 3' + eol + 'Haidian, Beijing"' + eol
            + 'C,丙公司,2026-10-05,7,' + eol)
    raw = read_roster(_pair(tmp_path, text))
    assert list(raw.customers["customer_id"]) == ["A", "B", "C"]
    assert list(raw.customers["address"])[:2] == ["北京市海淀区" + eol + "中关村1号",
                                                  "Room 5, Bldg 3" + eol + "Haidian, Beijing"]


def test_text_after_a_closing_quote_on_one_line_is_read_as_before(tmp_path):
    raw = read_roster(_pair(tmp_path, HEAD + 'A,"北京"甲公司,2026-10-03,5,\nB,乙公司,2026-10-04,6,\n'))
    assert list(raw.customers["name"]) == ["北京甲公司", "乙公司"]


@pytest.mark.parametrize("customers, needle", [
    # never closed: the rest of the file would be one cell (also on the last line, with or without its end)
    (HEAD + 'A,"北京甲公司,2026-10-08,3\nB,乙公司,2026-10-09,4\n',
     'a quote (") on line 2 opens a cell that is never closed'),
    (HEAD + 'A,甲公司,2026-10-08,3,\nB,"乙公司,2026-10-09,4',
     'a quote (") on line 3 opens a cell that is never closed'),
    # closed by another stray quote lines later, with text after it
    (HEAD + 'A,"北京甲公司,2026-10-08,3,\nB,乙公司,2026-10-09,4,\nC,丙"公司,2026-10-10,5,\n',
     'lines 2-4 are read as one row: a quote (") opens a cell there that a quote on line 4 closes'),
    # closed by another stray quote just before a comma: the lines between look like rows
    (HEAD + 'A,"北京甲公司,2026-10-08,3,\nB,乙公司,2026-10-09,4,\nC",丙公司,2026-10-10,5,\n',
     "lines 2-4 are read as one row: a quoted cell there holds a line that looks like a row of its own "
     "('B,乙公司,2026-10-09,4,')"),
])
def test_a_stray_quote_that_would_swallow_rows_refuses_the_file_naming_the_lines(tmp_path, customers, needle):
    with pytest.raises(InputError) as err:
        read_roster(_pair(tmp_path, customers))
    assert f"customers.csv: {needle}" in str(err.value)
    assert 'remove the stray quote (")' in str(err.value)


def test_a_stray_quote_in_the_changes_and_reseller_files_is_caught_too(tmp_path):
    changes = CHANGES + 'A,2026-10-05,add,1,"ref\nA,2026-10-06,add,2",\n'
    with pytest.raises(InputError, match=r"changes.csv: lines 2-3 are read as one row"):
        read_roster(_pair(tmp_path / "c", CUSTOMERS, changes))
    reseller = 'key,value\nname,"深圳腾云\ninvoice_prefix,SZ"\n'
    with pytest.raises(InputError, match=r"reseller.csv: lines 2-3 are read as one row.*'invoice_prefix,SZ'"):
        read_roster(_pair(tmp_path / "r", CUSTOMERS, reseller=reseller))


def test_a_cell_longer_than_the_text_limit_is_a_rejected_cell_in_csv_as_in_a_workbook(tmp_path):
    from invoicer.limits import Limits
    from invoicer.roster import CellProblem

    raw = read_roster(_pair(tmp_path, HEAD + "A,甲公司,2026-10-03,5,\nB,乙公司,2026-10-04,6," + "地" * 101 + "\n"),
                      Limits(text=100))
    cell = raw.customers["address"].iloc[1]
    assert isinstance(cell, CellProblem) and "longer than 100 characters" in cell.reason
    assert list(raw.customers["customer_id"]) == ["A", "B"]
