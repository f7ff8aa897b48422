"""verify and the folder around the documents: what it reports beside the ledger's documents (files no run
writes, links, a manifest that is not what a run writes) and what it only notes (a file browser's files, a
run's staging folder). The attacks themselves are in tests/test_review7.py; these pin the lines verify says
and the things it must not call a problem. Folders are rendered without layout (tests/pdfstub.py)."""
from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest

from .conftest import cust, run_cli, stubbed_render, write_roster

D = dt.date
PERIOD = "2026-10"
pytestmark = pytest.mark.usefixtures("stub_render")


cli = run_cli  # the CLI in-process


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("verify_folder")
    roster = write_roster(base / "r.xlsx", [cust("A", D(2026, 10, 8), 3), cust("B", D(2026, 10, 9), 4),
                                            cust("N", D(2025, 11, 15), 3, paid_through=D(2026, 11, 14))])
    with stubbed_render():
        r = cli("run", roster, "--period", PERIOD, "--out", base / "out", "--workers", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    return base / "out"


@pytest.fixture
def folder(built, tmp_path):
    copy = tmp_path / "out"
    shutil.copytree(built, copy)
    return copy


def _manifest(folder: Path, edit) -> None:
    m = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    edit(m)
    (folder / "manifest.json").write_text(json.dumps(m), encoding="utf-8")


def test_a_file_browsers_files_and_a_runs_staging_folder_are_notes_not_problems(folder):
    for name in (".DS_Store", "invoices/.DS_Store", "notices/Thumbs.db", "fapiao/desktop.ini", "~$summary.xlsx",
                 "fapiao/.~lock.QQ-2026-10.xlsx#"):
        (folder / name).write_bytes(b"x")
    (folder / ".staging-0123abcd").mkdir()
    (folder / ".staging-0123abcd" / "lock").write_bytes(b"")
    r = cli("verify", folder)
    assert r.returncode == 0, r.stdout
    assert "note: invoices/.DS_Store: a file browser's own file" in r.stdout
    assert "note: .staging-0123abcd/: the staging folder of a run" in r.stdout
    assert "note: ~$summary.xlsx: an office program's lock file" in r.stdout
    assert "note: fapiao/.~lock.QQ-2026-10.xlsx#: an office program's lock file" in r.stdout


def test_an_extra_file_anywhere_and_a_link_to_a_file_inside_are_problems(folder):
    (folder / "notes.txt").write_text("not ours")
    (folder / "fapiao" / "old").mkdir()
    (folder / "fapiao" / "old" / "QQ-2026-10.xlsx").write_bytes(b"x")
    shutil.copy(folder / "summary.xlsx", folder / "summary-copy.xlsx")
    (folder / "summary.xlsx").unlink()
    (folder / "summary.xlsx").symlink_to("summary-copy.xlsx")  # a link inside the folder: still not followed
    r = cli("verify", folder)
    assert r.returncode == 1
    out = r.stdout
    assert "MISMATCH: notes.txt: not a file a run writes in this folder" in out, out
    assert "MISMATCH: fapiao/old/QQ-2026-10.xlsx: not a file a run writes" in out, out
    assert "MISMATCH: summary.xlsx: a symbolic link (to summary-copy.xlsx)" in out, out
    assert "summary.xlsx: missing" not in out, out  # the link is named once, as a link


def test_manifest_counts_that_are_not_counts_are_named(folder):
    _manifest(folder, lambda m: m.update(counts=["invoices"]))
    r = cli("verify", folder)
    assert r.returncode == 1 and "MISMATCH: manifest: its counts are not a table of counts" in r.stdout, r.stdout


@pytest.mark.parametrize("period", ["2026-13", "２０２６-１０", "", None, ["2026-10"]])
def test_a_manifest_period_that_is_not_a_month_is_one_line(folder, period):
    _manifest(folder, lambda m: m.update(period=period))
    r = cli("verify", folder)
    assert r.returncode == 2 and "is not a month like 2026-10" in r.stderr, r.stdout + r.stderr
    assert "Traceback" not in r.stderr


def test_a_manifest_naming_another_roster_than_the_latest_run_is_named(folder):
    _manifest(folder, lambda m: m["input"].update(sha256="0" * 64))
    r = cli("verify", folder)
    assert r.returncode == 1
    assert "MISMATCH: manifest: input '" + "0" * 64 + "', the ledger's latest run of QQ 2026-10 (run 1) priced" \
        in r.stdout, r.stdout


def test_an_untouched_folder_whose_ledger_sits_in_it_under_another_name_is_clean(built, tmp_path):
    folder = tmp_path / "out"
    shutil.copytree(built, folder)
    (folder / "ledger.sqlite").rename(folder / "books.sqlite")
    r = cli("verify", folder, "--ledger", folder / "books.sqlite")
    assert r.returncode == 0, r.stdout


def test_an_output_folder_kept_inside_this_one_is_a_note_and_audited_on_its_own(built, tmp_path):
    """out/ billed one month with its ledger inside; the next month billed into out/2026-11 with --ledger
    out/ledger.sqlite (README Outputs): verifying out/ names the inner folder once, as a note, not each of its
    files as a stray one; a stray file beside it is still a problem."""
    folder = tmp_path / "out"
    shutil.copytree(built, folder)
    roster = write_roster(tmp_path / "r11.xlsx", [cust("A", D(2026, 10, 8), 3)])
    r = cli("run", roster, "--period", "2026-11", "--out", folder / "2026-11", "--ledger", folder / "ledger.sqlite",
            "--workers", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    r = cli("verify", folder)
    assert r.returncode == 0, r.stdout
    assert "note: 2026-11/: another output folder" in r.stdout
    assert cli("verify", folder / "2026-11").returncode == 0
    (folder / "2026-12").mkdir()
    (folder / "2026-12" / "QQ-2026-000009.pdf").write_bytes(b"%PDF-1.7")
    r = cli("verify", folder)
    assert r.returncode == 1 and "MISMATCH: 2026-12/QQ-2026-000009.pdf: not a file a run writes" in r.stdout


def test_a_line_amount_forged_in_the_summary_is_caught(folder):
    """The lines sheet's amounts of each bill sum to the bill's total in the ledger: a line lowered in the
    summary (its manifest hash rewritten) is named; a line of a bill never issued is named too."""
    import hashlib

    import openpyxl

    wb = openpyxl.load_workbook(folder / "summary.xlsx")
    ws = wb["lines"]
    header = [c.value for c in ws[1]]
    ws.cell(2, header.index("amount") + 1).value = 1
    ws.append(["QQ-2026-999999", "Z", *[None] * (len(header) - 2)])
    wb.save(folder / "summary.xlsx")
    digest = hashlib.sha256((folder / "summary.xlsx").read_bytes()).hexdigest()
    _manifest(folder, lambda m: m["files"].update({"summary.xlsx": digest}))
    r = cli("verify", folder)
    assert r.returncode == 1
    assert "MISMATCH: summary.xlsx: the lines sheet's lines of QQ-2026-000001 sum to " in r.stdout, r.stdout
    assert "the lines sheet lists lines of QQ-2026-999999, which this ledger did not issue" in r.stdout, r.stdout


def test_only_bills_that_carry_the_vat_split_require_the_e_fapiao_exports(folder):
    """The rule (docs/decisions.md): the exports came with the VAT split, so a period whose bills carry it
    must have them, and a period of older bills (none carries it) need not, unless the folder has fapiao/ or
    its manifest lists an export. Checked on _check_fapiao itself: a ledger of bills issued before the VAT
    split cannot be made by this version."""
    from invoicer import verify as verify_mod
    from invoicer.ledger import LedgerReader

    shutil.rmtree(folder / "fapiao")
    _manifest(folder, lambda m: [m["files"].pop(n) for n in list(m["files"]) if n.startswith("fapiao/")])
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    reader = LedgerReader(folder / "ledger.sqlite")
    try:
        for vat_era, expected in ((False, []), (True, ["fapiao/: the e-fapiao exports cannot be checked (why)"])):
            bills, audit = verify_mod._Bills(), verify_mod.Audit()
            bills.vat_era = vat_era
            verify_mod._check_fapiao(folder, reader, bills, manifest, "QQ", PERIOD, (None, None, "why"), audit)
            assert audit.problems == expected
    finally:
        reader.close()
