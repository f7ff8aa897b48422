"""An attacker's review of session 8's changes (h-review2): the output-folder lock, links in the output folder,
the manifest's relative ledger path, verify's new strictness, the summary's hand-written rows and the input
changes (money text, digits, direction controls, year-last dates, CSV quotes, GBK zip names).

Each test states the promise it attacks and what was expected. The "Defects" were found as strict xfails and
fixed in the same session (their docstrings still say what happened before the fix); the plain tests below
them are attacks that held. Folders are rendered without layout (tests/pdfstub.py).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import shutil
import zipfile
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest

from invoicer.errors import Reject

from .conftest import copy_of, cust, issued_month, run_cli, write_roster

D = dt.date
TAX_A = "91350100M000100Y43"  # a valid 统一社会信用代码: bills go into the e-fapiao export
PERIOD = "2026-10"
pytestmark = pytest.mark.usefixtures("stub_render")

cli = run_cli


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def mismatches(r) -> str:
    return "\n".join(line for line in r.stdout.splitlines() if line.startswith("MISMATCH"))


def run(roster, out, *more, cwd=None):
    return cli("run", roster, "--period", PERIOD, "--out", out, "--workers", "1", *more, cwd=cwd)


def csv_roster(folder: Path, customers: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "customers.csv").write_text(customers, encoding="utf-8")
    (folder / "changes.csv").write_text("customer_id,date,type,seats,reference\n", encoding="utf-8")
    return folder / "customers.csv"


# -- one folder: two bills with tax ids, a renewal notice, a rejected row -----------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return issued_month(tmp_path_factory.mktemp("review8"),
                        [cust("A", D(2026, 10, 3), 5, tax_id=TAX_A), cust("B", D(2026, 10, 8), 3, tax_id=TAX_A),
                         cust("N", D(2025, 11, 15), 3, paid_through=D(2026, 11, 14))], (), PERIOD)


@pytest.fixture
def folder(built, tmp_path):
    return copy_of(built.out, tmp_path)


def _forge_summary(folder: Path, sheet: str, edit) -> None:
    """Edit the summary with openpyxl and put its new hash in the manifest (the manifest is not chained)."""
    path = folder / "summary.xlsx"
    wb = openpyxl.load_workbook(path)
    edit(wb[sheet])
    wb.save(path)
    m = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    m["files"]["summary.xlsx"] = sha(path)
    m.get("file_stats", {}).pop("summary.xlsx", None)
    (folder / "manifest.json").write_text(json.dumps(m, indent=2, ensure_ascii=False, sort_keys=True) + "\n",
                                          encoding="utf-8")


def _column(ws, name: str) -> int:
    return next(c.column for c in ws[1] if c.value == name)


# ==========================================================================================================
# Defects (strict xfails)
# ==========================================================================================================

@pytest.mark.parametrize("char", ["\uffff", "\ufffe"])
def test_a_name_holding_an_xml_noncharacter_never_makes_an_unreadable_summary(tmp_path, char):
    """Promise (render/summary.py, README Outputs; the brief's claim 5): the summary's rows never break the
    XML; bad input is a rejected row, never a broken output. Attack: a CSV roster whose customer name holds
    U+FFFF (or U+FFFE), which UTF-8 holds but XML 1.0 forbids (not a Char). Expected: the row rejected (as
    a control character is, roster.CONTROL_RE) or the character escaped, and summary.xlsx readable.
    Actual: exit 0, the bill issued, and summary.xlsx unreadable by any XML reader (openpyxl: ParseError
    'not well-formed (invalid token)'; Excel repairs the file by dropping the sheet's data); verify then
    reports 'summary.xlsx: cannot be read as the summary' for every re-run. Where: roster.CONTROL_RE
    (direction controls and C0/C1 only) let the noncharacters through; _SheetRows.write (and openpyxl's own
    writer, ILLEGAL_CHARACTERS_RE) write them raw."""
    roster = csv_roster(tmp_path / "in", f"customer_id,name,opened_on,seats\nA,甲{char}公司,2026-10-08,3\n")
    out = tmp_path / "out"
    r = run(roster, out)
    assert "Traceback" not in r.stderr
    if (out / "summary.xlsx").exists():
        openpyxl.load_workbook(out / "summary.xlsx")  # ParseError today
        assert cli("verify", out).returncode == 0


@pytest.mark.parametrize("text", ["0,990", "00,500", "000,999"])
def test_a_decimal_comma_after_a_zero_is_not_read_as_thousands(text):
    """Promise (money.AMOUNT_TEXT, decisions.md 'money text'; review7): commas only as thousands separators; a
    decimal comma (9,99 in a European-locale sheet) is a rejected cell, never misread. Attack: a legacy_rate
    typed with a decimal comma and three decimals whose first group is 0: '0,990' (0.99 yuan), '00,500'.
    No one writes 990 as '0,990': a leading zero group is not a thousands form. Expected: MoneyError (a
    rejected cell). Actual: 99000 fen (990 yuan), 1000 times the amount meant. Where: money.AMOUNT_TEXT's
    ``\\d{1,3}(?:,\\d{3})+`` allows a first group of 0 or with leading zeros (should be [1-9]\\d{0,2})."""
    from invoicer.money import MoneyError, yuan_to_fen

    with pytest.raises(MoneyError):
        yuan_to_fen(text)


def test_a_rerun_never_writes_through_a_ledger_that_is_a_link(built, folder, tmp_path):
    """Promise (publish.holds_regular, 1b4323f and eb8e116; the brief's claim 2): links in the output folder
    are never followed, a re-run restores real files and never writes outside the folder; verify names
    every link. Attack: out/ledger.sqlite replaced by a link to a copy elsewhere (the other documents'
    links are replaced by re-runs: manifest.json, summary.xlsx, fapiao/, a bill). Expected: the re-run
    refuses (exit 2, one line naming the link) or makes the folder clean, and writes nothing outside.
    Actual: exit 0, the outside ledger written through the link (its bytes change: the run's row), and
    verify reports 'ledger.sqlite: a symbolic link' after this and every later re-run: run and verify
    disagree and nothing the clerk runs makes the folder pass. Where: pipeline.run's ``ledger_path = out /
    LEDGER_NAME`` is opened by Ledger (sqlite3) without holds_regular's check; verify._scan_folder names it."""
    outside = tmp_path / "elsewhere" / "ledger.sqlite"
    outside.parent.mkdir()
    shutil.copy(folder / "ledger.sqlite", outside)
    (folder / "ledger.sqlite").unlink()
    (folder / "ledger.sqlite").symlink_to(outside)
    before = sha(outside)
    r = run(built.roster, folder)
    assert "Traceback" not in r.stderr
    assert sha(outside) == before, "the run wrote through the link, outside the folder"
    assert r.returncode != 0 or cli("verify", folder).returncode == 0, "exit 0, but the folder fails verify"


def test_an_archive_under_a_symlinked_parent_audits_its_own_ledger_copy(tmp_path):
    """Promise (561bd1c, README Outputs: 'a copy of out/ audits against its own ledger'; the brief's claim 3).
    Attack: the watcher's layout, W/ledger.sqlite shared and the folder W/qq/2026-10, where W/qq is a link to
    another disk (W/qq -> disk/qq, a common way to add space). The manifest names the ledger
    '../../../W/ledger.sqlite' (relpath of the resolved paths: from disk/qq/2026-10). The auditor copies
    the archive with its ledger (cp -rL W arch: arch/ledger.sqlite, arch/qq/2026-10). Expected: verify of
    arch/qq/2026-10 audits arch/ledger.sqlite (here deleted, to show which one is read: exit 1, no ledger).
    Actual: exit 0, clean: it audited the live W/ledger.sqlite, so an archive's tampered ledger copy is
    never looked at. Where: publish.publish_period, the manifest's "ledger": os.path.relpath(
    Path(opts.ledger).resolve(), out.resolve()); verify joins it to the folder as given."""
    roster = write_roster(tmp_path / "r.xlsx", [cust("A", D(2026, 10, 3), 5)])
    (tmp_path / "disk" / "qq").mkdir(parents=True)
    live = tmp_path / "W"
    live.mkdir()
    (live / "qq").symlink_to(tmp_path / "disk" / "qq", target_is_directory=True)
    assert run(roster, live / "qq" / PERIOD, "--ledger", live / "ledger.sqlite").returncode == 0
    arch = tmp_path / "arch"
    shutil.copytree(live, arch)  # links followed: the archive holds real folders
    assert cli("verify", arch / "qq" / PERIOD).returncode == 0  # audits something: which ledger?
    (arch / "ledger.sqlite").unlink()  # the archive's own copy gone
    r = cli("verify", arch / "qq" / PERIOD)
    assert r.returncode == 1 and "ledger" in mismatches(r), r.stdout


def test_a_summary_total_shown_through_a_forged_number_format_is_caught(folder):
    """Promise (README 'What verify proves': the summary's invoices sheet lists each bill 'with their
    customer, date, total and status'; the brief's claim 4: every column). Attack: the forger leaves every
    cell's value alone and sets the number format of QQ-2026-000001's total to '"9,999.00"' (a literal:
    Excel, LibreOffice and WPS show 9,999.00 whatever the value), puts the summary's new hash in the
    manifest (not chained). Expected: verify names the summary (the format is not the one the run writes,
    or the shown value is not the ledger's). Actual: clean (exit 0). Where: verify compares values only
    (_sheet_value / the invoices-sheet walk); the summary's money format is fixed (render.summary MONEY_FORMAT),
    so any other number format on a money cell is a forgery. (A hidden row, ws.row_dimensions[r].hidden,
    likewise hides a bill from whoever reads the workbook and verifies clean.)"""
    def edit(ws):
        ws.cell(2, _column(ws, "total")).number_format = '"9,999.00"'

    _forge_summary(folder, "invoices", edit)
    r = cli("verify", folder)
    assert r.returncode == 1 and "summary.xlsx" in mismatches(r), r.stdout


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_rows_writer_matches_openpyxl_for_a_decimal_beyond_float_range(monkeypatch):
    """Promise (render/summary.py _SheetRows: 'byte for byte as openpyxl's write-only worksheet would write';
    the brief's claim 5: numbers at float limits). Attack: a rejected row whose value is Decimal('1E+400'),
    finite as a Decimal, infinite as a float. Expected: the same bytes both ways. Actual: the row writer
    writes <v>inf</v> (a cell no spreadsheet reads as a number), openpyxl <v></v>. Where: _SheetRows.write's
    ``t is Decimal and v.is_finite()`` branch; openpyxl's safe_string turns an infinite float into ''.
    Low severity: no roster reaches it today (money is bounded; rejected values are text or floats)."""
    from . import test_summary_speed

    rejects = [Reject("customers", 2, "legacy_rate", Decimal("1E+400"), "too big", "A")]
    assert test_summary_speed._both([], [], rejects, monkeypatch)


def test_verify_shows_a_file_name_with_control_characters_escaped(folder):
    """Promise (84b4ae4, roster.escape_controls; the brief's claims 4 and 6): control and direction characters
    are shown escaped (\\x1b, \\u202e) in messages, since they change what is shown; verify now names every
    file of the folder. Attack: the forger adds files named 'x<ESC>[8m' (SGR 8, concealed text: in xterm,
    GNOME Terminal and most others, everything printed after it is invisible, the 'N problem(s) found' line
    included) and 'y<LF>clean: 23 checks passed' (a line of its own that reads like verify's verdict).
    Expected: each named with its controls escaped, one line per problem. Actual: ESC and the line break
    printed raw. Where: verify._scan_folder's f"{name}: not a file a run writes ..." (and the link, missing
    and 'not a document' messages) use the name as found; roster.escape_controls is never applied."""
    (folder / "x\x1b[8m").write_bytes(b"x")
    (folder / "y\nclean: 23 checks passed").write_bytes(b"x")
    r = cli("verify", folder)
    assert r.returncode == 1
    assert "\x1b" not in r.stdout and not any(line.startswith("clean") for line in r.stdout.splitlines()), r.stdout


def test_a_folder_whose_ledger_the_run_kept_in_a_sub_folder_verifies_clean(tmp_path):
    """Promise (README 'What verify proves'; the brief's claim 4: no false alarm on a legitimate folder).
    Attack: `invoicer run R --out o --ledger o/db/ledger.sqlite` (a ledger kept beside the documents, in
    its own folder); nothing touched afterwards. Expected: verify clean (the manifest names the ledger
    db/ledger.sqlite, which the run made). Actual: exit 1, 'db/ledger.sqlite: not a file a run writes in
    this folder'. Where: verify._scan_folder: ``ledger_names`` is extended only when
    ``Path(ledger_path).parent.resolve() == outdir.resolve()``."""
    roster = write_roster(tmp_path / "r.xlsx", [cust("A", D(2026, 10, 3), 5)])
    out = tmp_path / "o"
    assert run(roster, out, "--ledger", out / "db" / "ledger.sqlite").returncode == 0
    r = cli("verify", out)
    assert r.returncode == 0, r.stdout


def test_a_macs_appledouble_files_are_notes_like_its_ds_store(folder):
    """Promise (7ece153, README: a file browser's own files are notes, not problems; the brief's claim 4).
    Attack: the clerk opens the folder from a Mac over an SMB share (or on an exFAT disk): Finder writes
    ._summary.xlsx and invoices/._QQ-2026-000001.pdf (AppleDouble metadata) beside the files it touches, as
    it writes .DS_Store. Expected: notes, exit 0 (as .DS_Store). Actual: exit 1, '._summary.xlsx: not a
    file a run writes' and 'invoices/._QQ-2026-000001.pdf: not a document this ledger issued'. Where:
    verify._DESKTOP_FILES / _not_audited know .DS_Store, Thumbs.db, desktop.ini, not '._' files (the
    watcher's names.ignored skips every name starting with '.')."""
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / "._summary.xlsx").write_bytes(b"\0\5\x16\7" + bytes(78))
    (folder / "invoices" / "._QQ-2026-000001.pdf").write_bytes(b"\0\5\x16\7" + bytes(78))
    r = cli("verify", folder)
    assert r.returncode == 0, r.stdout


def test_another_month_is_refused_in_a_folder_an_unfinished_run_left_without_its_manifest(tmp_path, monkeypatch):
    """Promise (eb8e116, README exit codes; the brief's claim 1): a folder holds one prefix and one period,
    and after exit 5 're-running the same command publishes the rest'. Attack: 2026-10 is issued into out/
    and its publishing fails at the manifest (a full disk: exit 5, the bill, summary and e-fapiao export
    written, no manifest.json); the clerk then bills 2026-05 into the same --out. Expected: the 2026-05 run
    refused (the folder holds QQ 2026-10's bill, summary and fapiao/QQ-2026-10.xlsx), so the 2026-10 re-run
    can still finish it. Actual: 2026-05 exits 0 and publishes there (its summary replaces October's; the
    folder holds both months' bills); the 2026-10 re-run is refused for good ('holds QQ 2026-05'), and
    verify names October's bill and export. Where: pipeline._one_series_per_folder: 'a folder without a
    readable manifest is taken as new', whatever documents it holds."""
    import errno

    from invoicer import publish

    roster = write_roster(tmp_path / "r.xlsx", [cust("A", D(2026, 5, 8), 3), cust("B", D(2026, 10, 8), 4)])
    out = tmp_path / "out"
    real = publish.write_json

    def disk_full_at_the_manifest(path, obj):  # the full manifest: the claim written before the commit fits
        if path.name == "manifest.json" and obj.get("files"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, obj)

    with monkeypatch.context() as mp:
        mp.setattr(publish, "write_json", disk_full_at_the_manifest)
        assert run(roster, out).returncode == 5
    # the bill is there, the manifest only the claim written before the commit (publish.claim_folder)
    claim = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert (out / "invoices" / "QQ-2026-000001.pdf").is_file() and claim.get("incomplete")
    unfinished = cli("verify", out)
    assert unfinished.returncode == 1 and "publishing of QQ 2026-10 did not finish" in unfinished.stdout
    may = cli("run", roster, "--period", "2026-05", "--out", out, "--workers", "1")
    assert may.returncode == 2, may.stdout + may.stderr
    assert "that month's publishing did not finish: re-run it" in may.stderr
    assert run(roster, out).returncode == 0 and cli("verify", out).returncode == 0


# ==========================================================================================================
# Attacks that held
# ==========================================================================================================

# -- 1. the output-folder lock -----------------------------------------------------------------------------
def test_the_folder_lock_is_let_go_after_an_exception_exit_3_and_exit_5(tmp_path, monkeypatch):
    """A run that ends in a traceback-worthy exception, a Conflict (exit 3) or PublishIncomplete (exit 5)
    leaves the folder unlocked: the next run with --wait 0 is never busy (exit 4)."""
    from invoicer import pipeline

    roster = write_roster(tmp_path / "r.xlsx", [cust("A", D(2026, 10, 3), 5)])
    other = write_roster(tmp_path / "r2.xlsx", [cust("A", D(2026, 10, 3), 6)])
    out = tmp_path / "out"
    with monkeypatch.context() as mp:
        def boom(*a, **k):
            raise RuntimeError("a bug")
        mp.setattr(pipeline, "plan_against", boom)
        with pytest.raises(RuntimeError):
            run(roster, out)
    assert run(roster, out, "--wait", "0").returncode == 0
    assert run(other, out, "--wait", "0").returncode == 3  # changes an issued invoice without --amend
    with monkeypatch.context() as mp:
        def full(*a, **k):
            raise OSError(28, "No space left on device")
        mp.setattr(pipeline, "publish_period", full)
        assert run(other, out, "--wait", "0", "--amend").returncode == 5
    r = run(other, out, "--wait", "0", "--amend")
    assert r.returncode == 0, r.stdout + r.stderr
    assert cli("verify", out).returncode == 0


def test_the_lock_is_on_the_folder_not_its_name(tmp_path):
    """The same folder reached through a link (or a trailing slash) is the same lock; a dry run still
    plans while it is held."""
    from invoicer import pipeline

    roster = write_roster(tmp_path / "r.xlsx", [cust("A", D(2026, 10, 3), 5)])
    out = tmp_path / "out"
    (tmp_path / "alias").symlink_to(out, target_is_directory=False)
    with pipeline._folder_lock(out, 0, False):
        r = run(roster, tmp_path / "alias", "--wait", "0.1")
        assert r.returncode == 4 and "another run is writing this folder" in r.stderr, r.stdout + r.stderr
        assert run(roster, str(out) + "/", "--wait", "0").returncode == 4
        assert run(roster, out, "--dry-run").returncode == 0
    assert run(roster, tmp_path / "alias").returncode == 0


# -- 2. links in the output folder ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["manifest.json", "summary.xlsx", "fapiao/QQ-2026-10.xlsx",
                                  "notices/N-renewal.pdf"])
def test_a_link_at_a_file_a_run_writes_is_named_and_replaced_never_followed(built, folder, tmp_path, name):
    """A link (to an identical copy outside) at the manifest, the summary, the e-fapiao export or a notice:
    verify names it; the re-run replaces it with a regular file, the outside copy untouched; then clean."""
    outside = tmp_path / "elsewhere" / Path(name).name
    outside.parent.mkdir()
    shutil.copy(folder / name, outside)
    before = sha(outside)
    (folder / name).unlink()
    (folder / name).symlink_to(outside)
    r = cli("verify", folder)
    assert r.returncode == 1 and f"{name}: a symbolic link" in mismatches(r), r.stdout
    assert run(built.roster, folder).returncode == 0
    assert not (folder / name).is_symlink() and (folder / name).is_file() and sha(outside) == before
    assert cli("verify", folder).returncode == 0


def test_a_dangling_link_and_a_link_inside_the_folder_are_replaced(built, folder, tmp_path):
    bill = folder / "invoices" / "QQ-2026-000001.pdf"
    bill.unlink()
    bill.symlink_to(tmp_path / "nowhere.pdf")
    summary = folder / "summary.xlsx"
    shutil.copy(summary, folder / "notices" / "copy.xlsx")
    summary.unlink()
    summary.symlink_to("notices/copy.xlsx")
    r = cli("verify", folder)
    assert r.returncode == 1 and "QQ-2026-000001.pdf: a symbolic link" in r.stdout and "copy.xlsx" in r.stdout
    assert run(built.roster, folder).returncode == 0
    assert not bill.is_symlink() and bill.is_file() and not (tmp_path / "nowhere.pdf").exists()
    assert not summary.is_symlink() and summary.is_file()


# -- 3. the manifest's relative ledger path ----------------------------------------------------------------
def test_the_watchers_layout_a_shared_ledger_an_amended_month_and_lock_files_verify_clean(tmp_path):
    """OUT/<reseller>/<period> on OUT/ledger.sqlite, two resellers, one amended month (a credit note), the
    clerk's office lock files: clean. A copy of OUT audits its own ledger (the live one moved away); the
    folder moved without its ledger is one line; moved beside another ledger it is named, never clean."""
    live = tmp_path / "W"
    ledger = live / "ledger.sqlite"
    first = write_roster(tmp_path / "r1.xlsx", [cust("A", D(2026, 10, 3), 5, tax_id=TAX_A),
                                                  cust("B", D(2026, 10, 8), 3, tax_id=TAX_A)])
    amended = write_roster(tmp_path / "r2.xlsx", [cust("A", D(2026, 10, 3), 6, tax_id=TAX_A)])
    zz = write_roster(tmp_path / "rz.xlsx", [cust("Z", D(2026, 10, 9), 2)], reseller={"invoice_prefix": "ZZ"})
    qq_dir, zz_dir = live / "qq" / PERIOD, live / "zz" / PERIOD
    assert run(first, qq_dir, "--ledger", ledger).returncode == 0
    assert run(zz, zz_dir, "--ledger", ledger).returncode in (0, 1)
    assert run(amended, qq_dir, "--ledger", ledger, "--amend").returncode == 0
    assert list((qq_dir / "credit_notes").glob("*.pdf"))
    assert json.loads((qq_dir / "manifest.json").read_text())["ledger"] == "../../ledger.sqlite"
    (qq_dir / ".~lock.summary.xlsx#").write_text("clerk")
    (qq_dir / "fapiao" / "~$QQ-2026-10.xlsx").write_text("clerk")
    for f in (qq_dir, zz_dir):
        r = cli("verify", f)
        assert r.returncode == 0, r.stdout
    arch = tmp_path / "arch"
    shutil.copytree(live, arch)
    ledger.rename(tmp_path / "hidden.sqlite")
    assert cli("verify", arch / "qq" / PERIOD).returncode == 0  # its own copy
    (tmp_path / "hidden.sqlite").rename(ledger)
    moved = tmp_path / "moved" / "x"
    shutil.copytree(qq_dir, moved)
    r = cli("verify", moved)
    assert r.returncode == 1 and "no ledger there" in r.stdout and "Traceback" not in r.stderr
    other = tmp_path / "other"
    assert run(zz, other / "zz" / PERIOD, "--ledger", other / "ledger.sqlite").returncode in (0, 1)
    shutil.copytree(qq_dir, other / "qq" / PERIOD)
    r = cli("verify", other / "qq" / PERIOD)
    assert r.returncode == 1 and "not the one this folder was issued from" in r.stdout


def test_relative_out_and_ledger_and_symlinked_parents_verify_clean(tmp_path):
    roster = write_roster(tmp_path / "r.xlsx", [cust("A", D(2026, 10, 3), 5)])
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    assert run(roster, "o/2026-10", "--ledger", "l/ledger.sqlite", cwd=cwd).returncode == 0
    assert cli("verify", "o/2026-10", cwd=cwd).returncode == 0
    assert cli("verify", cwd / "o" / "2026-10").returncode == 0
    (tmp_path / "deep" / "a" / "b").mkdir(parents=True)
    (tmp_path / "s").symlink_to(tmp_path / "deep" / "a" / "b")
    (tmp_path / "ls").symlink_to(tmp_path / "deep")
    assert run(roster, tmp_path / "s" / "o", "--ledger", tmp_path / "ls" / "a" / "L.sqlite").returncode == 0
    assert cli("verify", tmp_path / "s" / "o").returncode == 0


# -- 4. verify on legitimate folders -------------------------------------------------------------------------
def test_an_empty_month_and_a_month_of_notices_only_verify_clean(built, tmp_path):
    notices = write_roster(tmp_path / "n.xlsx", [cust("N", D(2025, 11, 15), 3, paid_through=D(2026, 11, 14))])
    for roster, period in ((built.roster, "2026-08"), (notices, PERIOD)):
        out = tmp_path / f"out-{period}"
        assert cli("run", roster, "--period", period, "--out", out, "--workers", "1").returncode == 0
        r = cli("verify", out)
        assert r.returncode == 0, r.stdout


# -- 5. the summary's rows ---------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_xml_specials_and_odd_numbers_are_the_bytes_openpyxl_writes(monkeypatch):
    from . import test_summary_speed

    values = ["a]]>b", "<x>&amp;</x>", "\"'", "&#x41;", "\u2028x\u2028", "\x85", " ", "\t", "x\r\ny", "\ud800",
              "\U0010ffff", "=1+1", "@SUM(A1)", "+1", "-1", " lead", "trail ", "z" * 32767, "z" * 32768,
              Decimal("-0"), Decimal("-0.00"), Decimal("1E-400"), Decimal("9007199254740993"), 2 ** 53 - 1,
              -(2 ** 53 - 1), -(2 ** 53), 5e-324, -0.0]
    rejects = [Reject("customers", i, "name", v, "why", "A") for i, v in enumerate(values)]
    assert test_summary_speed._both([], [], rejects, monkeypatch)


def test_text_that_looks_like_a_formula_stays_text_in_a_real_run(tmp_path):
    roster = csv_roster(tmp_path / "in", 'customer_id,name,opened_on,seats\nA,"=HYPERLINK(""http://x"")",'
                                         '2026-10-08,3\nB,@SUM(1),2026-10-08,x\n')
    out = tmp_path / "out"
    assert run(roster, out).returncode == 1
    with zipfile.ZipFile(out / "summary.xlsx") as z:
        sheets = b"".join(z.read(n) for n in z.namelist() if n.startswith("xl/worksheets/"))
    assert b"<f>" not in sheets and b"<f " not in sheets
    wb = openpyxl.load_workbook(out / "summary.xlsx")
    assert wb["invoices"]["C2"].value == '=HYPERLINK("http://x")' and wb["invoices"]["C2"].data_type == "s"


# -- 6. input ----------------------------------------------------------------------------------------------
def test_money_text_digits_and_dates_are_never_misread():
    from invoicer.money import MoneyError, yuan_to_fen
    from invoicer.validate import parse_date, parse_whole

    assert yuan_to_fen("1,000.50") == 100050 and yuan_to_fen(" 12 ") == 1200 and yuan_to_fen(".5") == 50
    for bad in ("9,99", "1.000,00", "1_000", "1,000,00", "1e3", "١٢", "１２,000", "12 000", "NaN", "Infinity"):
        with pytest.raises(MoneyError):
            yuan_to_fen(bad)
    for text in ("05/01/26", "26/05/01", "10/05/2026", "2026-10-05T00:00", "20261005", "26-10-05",
                 "2026-10-05\u202e"):
        assert parse_date(text) is None, text
    for text in ("٣", "³", "3e0", "0x3", "3_0", "-3"):
        assert parse_whole(text) is None, text


def test_direction_controls_are_rejected_and_shown_escaped(tmp_path):
    roster = csv_roster(tmp_path / "in", "customer_id,name,opened_on,seats\nA,甲\u202e公司,2026-10-08,3\n"
                                         "B,乙公司,2026-10-08,3\n")
    r = cli("check", roster, "--period", PERIOD)
    assert r.returncode == 1 and "\\u202e" in r.stdout and "\u202e" not in r.stdout, r.stdout


def test_a_stray_quote_never_makes_a_later_customer_vanish(tmp_path):
    """A quote that opens a name and is closed lines later by '",' (a legit cell end) swallows rows: refused
    (exit 2 naming lines) or every customer billed or rejected; never fewer."""
    roster = csv_roster(tmp_path / "in", 'customer_id,name,opened_on,seats\nA,"甲公司,2026-10-01,3\n'
                                         'B,乙公司,2026-10-02,3\nC,丙公司",2026-10-03,3\nD,丁公司,2026-10-04,3\n')
    r = cli("check", roster, "--period", PERIOD)
    assert r.returncode == 2 and "line" in r.stderr, r.stdout + r.stderr


def test_a_gbk_named_zip_and_a_duplicate_by_decoded_name(tmp_path, monkeypatch):
    def gbk_names(self):
        return self.filename.encode("gbk"), self.flag_bits & ~0x800

    data = "客户编号,客户名称,开通日期,工号数\nA,甲公司,2026-10-08,3\n".encode("gbk")
    roster = tmp_path / "roster.zip"
    with monkeypatch.context() as mp:
        mp.setattr(zipfile.ZipInfo, "_encodeFilenameFlags", gbk_names)
        with zipfile.ZipFile(roster, "w") as z:
            z.writestr("客户.csv", data)
            z.writestr("变更.csv", "客户编号,日期,类型,工号数\n".encode("gbk"))
    assert cli("check", roster, "--period", PERIOD).returncode == 0
    buf = io.BytesIO(roster.read_bytes())
    with zipfile.ZipFile(buf, "a") as z:  # the same sheet again, its name flagged UTF-8
        z.writestr("客户.csv", data)
    twice = tmp_path / "twice.zip"
    twice.write_bytes(buf.getvalue())
    r = cli("check", twice, "--period", PERIOD)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stdout + r.stderr


def test_a_full_width_period_is_read(tmp_path):
    roster = write_roster(tmp_path / "r.xlsx", [cust("A", D(2026, 10, 3), 5)])
    r = cli("run", roster, "--period", "２０２６-１０", "--out", tmp_path / "out", "--workers", "1")
    assert r.returncode == 0 and json.loads((tmp_path / "out" / "manifest.json").read_text())["period"] == PERIOD
    assert os.path.isfile(tmp_path / "out" / "invoices" / "QQ-2026-000001.pdf")


