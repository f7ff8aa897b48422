"""The auditor's verify against deliberately tampered copies of one small output folder (issue #11).

One folder is built per module (three invoices, a credit note and its replacement via --amend, a renewal
notice, a bound prefix owner) plus a second folder billed from the same roster into its own ledger (the
same documents, byte for byte: only the ledger's identity tells them apart). Each case copies the folder,
tampers as a forger would (dropping the triggers first where SQLite would refuse), and asserts that verify
exits 1 and names the problem. verify runs in-process.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import shutil
import sqlite3
import stat
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from invoicer.cli import main
from invoicer.pipeline import RunOptions, run

from .conftest import change, cust, stubbed_render, write_roster

D = dt.date
# verify compares files by hash and re-derives amounts from the ledger's snapshots, never from a PDF's text: the
# folders are rendered without layout (tests/pdfstub.py)
pytestmark = pytest.mark.usefixtures("stub_render")
PERIOD = "2026-10"


def cli(*args):
    """The CLI in-process: (returncode, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def _roster(path: Path, extra_seats: int) -> Path:
    return write_roster(path, [cust("A", D(2026, 5, 1), 5), cust("B", D(2026, 10, 8), 3),
                               cust("C", D(2026, 10, 20), 4),
                               cust("N", D(2025, 11, 15), 3, paid_through=D(2026, 11, 14))],
                        [change("A", D(2026, 10, 1), "add", extra_seats)])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("tamper")
    first, amended = _roster(base / "r1.xlsx", 2), _roster(base / "r2.xlsx", 3)
    out = base / "folder"
    with stubbed_render():  # module-scoped: made before the tests' own stub_render
        for roster, amend in ((first, False), (amended, True)):
            report = run(RunOptions(roster=roster, period=PERIOD, out=out, amend=amend, workers=1, progress=False,
                                    owner="reseller1"))
            assert report.rejects == []
        other = base / "other"
        run(RunOptions(roster=amended, period=PERIOD, out=other, workers=1, progress=False))
    return SimpleNamespace(base=base, out=out, other=other)


@pytest.fixture
def folder(built, tmp_path):
    copy = tmp_path / "folder"
    shutil.copytree(built.out, copy)
    return copy


def sql(folder: Path, *statements: str) -> None:
    db = sqlite3.connect(folder / "ledger.sqlite")
    for s in statements:
        db.execute(s)
    db.commit()
    db.close()


def drop_triggers(folder: Path, *tables: str) -> None:
    sql(folder, *[f"DROP TRIGGER IF EXISTS {t}_{k}" for t in tables for k in ("immutable", "undeletable")])


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def write_manifest(folder: Path, m: dict) -> None:
    (folder / "manifest.json").write_text(json.dumps(m, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


def sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_caught(folder: Path, *needles: str):
    r = cli("verify", folder)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    for needle in needles:
        assert needle in r.stdout, f"{needle!r} not in:\n{r.stdout}"
    return r


def test_the_folder_as_built_holds_what_the_cases_assume(built):
    db = sqlite3.connect(built.out / "ledger.sqlite")
    assert db.execute("SELECT number, kind, customer_id FROM documents WHERE number IS NOT NULL ORDER BY seq"
                      ).fetchall() == [("QQ-2026-000001", "invoice", "A"), ("QQ-2026-000002", "invoice", "B"),
                                       ("QQ-2026-000003", "invoice", "C"), ("QQ-2026-000004", "credit_note", "A"),
                                       ("QQ-2026-000005", "invoice", "A")]
    assert db.execute("SELECT file_name FROM documents WHERE kind = 'notice'").fetchall() == [
        ("notices/N-renewal.pdf",)]
    assert db.execute("SELECT prefix, owner FROM prefix_owners").fetchall() == [("QQ", "reseller1")]
    assert db.execute("SELECT run_id, prefix, year, issued, count_after, highest FROM series ORDER BY id"
                      ).fetchall() == [(1, "QQ", 2026, 3, 3, 3), (2, "QQ", 2026, 2, 5, 5)]
    # 1 genesis + 2 runs + 6 documents + 1 prefix owner + 2 series records
    assert db.execute("SELECT COUNT(*) FROM chain").fetchone()[0] == 12
    m = manifest(built.out)
    assert m["ledger_id"] == db.execute("SELECT value FROM meta WHERE key = 'ledger_id'").fetchone()[0]
    assert m["chain_head"] == db.execute("SELECT head_sha256 FROM chain WHERE seq = 11").fetchone()[0]


def test_the_untampered_copy_is_clean_and_prints_its_head(folder):
    r = cli("verify", folder)
    assert r.returncode == 0, r.stdout
    assert "clean:" in r.stdout and "ledger chain head " in r.stdout
    head = r.stdout.split("ledger chain head ")[1].split()[0]
    assert cli("verify", folder, "--head", head).returncode == 0
    r = cli("verify", folder, "--head", "0" * 64)
    assert r.returncode == 1 and "does not contain the head --head recorded" in r.stdout


def test_a_write_protected_copy_verifies_without_writing_anything(folder):
    ledger = folder / "ledger.sqlite"
    before = (ledger.read_bytes(), ledger.stat().st_mtime_ns)
    for p in [folder, *folder.rglob("*")]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        r = cli("verify", folder)
        assert r.returncode == 0, r.stdout + r.stderr
        assert (ledger.read_bytes(), ledger.stat().st_mtime_ns) == before
        assert sorted(p.name for p in folder.iterdir()) == ["credit_notes", "fapiao", "invoices", "ledger.sqlite", "manifest.json",
                                                           "notices", "summary.xlsx"]  # no -wal, no -shm
        pdf = folder / "invoices" / "QQ-2026-000002.pdf"
        r = cli("verify", pdf, "--ledger", ledger)
        assert r.returncode == 0 and "issued as QQ-2026-000002" in r.stdout
    finally:
        for p in [folder, *folder.rglob("*")]:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)


def test_verify_does_not_wait_for_a_running_job(folder):
    holder = sqlite3.connect(folder / "ledger.sqlite", isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("BEGIN IMMEDIATE")  # a run numbering right now
    try:
        t0 = time.monotonic()
        r = cli("verify", folder)
        assert r.returncode == 0, r.stdout
        assert time.monotonic() - t0 < 5
    finally:
        holder.execute("ROLLBACK")
        holder.close()


# -- the ledger replaced --------------------------------------------------------------------------------

def test_ledger_replaced_by_an_empty_file(folder):
    (folder / "ledger.sqlite").write_bytes(b"")
    assert_caught(folder, "not an invoicer ledger", "an empty or foreign database")


def test_ledger_replaced_by_a_fresh_sqlite_database(folder):
    (folder / "ledger.sqlite").unlink()
    sql(folder, "CREATE TABLE documents (id INTEGER PRIMARY KEY)")
    assert_caught(folder, "not an invoicer ledger", "runs, blobs, meta")


def test_ledger_replaced_by_a_truncated_file(folder):
    ledger = folder / "ledger.sqlite"
    ledger.write_bytes(ledger.read_bytes()[:1000])
    assert_caught(folder, "the ledger")


def test_ledger_replaced_by_another_folders_ledger(folder, built):
    shutil.copy(built.other / "ledger.sqlite", folder / "ledger.sqlite")
    assert_caught(folder, "the ledger is not the one this folder was issued from",
                  "does not contain the head the manifest recorded")


def test_manifest_pointed_at_another_ledger(folder, built):
    m = manifest(folder)
    m["ledger"] = str((built.other / "ledger.sqlite").resolve())
    write_manifest(folder, m)
    assert_caught(folder, "the ledger is not the one this folder was issued from")


# -- rows deleted behind the triggers -------------------------------------------------------------------

def test_the_last_invoice_deleted(folder):
    drop_triggers(folder, "documents")
    sql(folder, "DELETE FROM documents WHERE number = 'QQ-2026-000005'")
    (folder / "invoices" / "QQ-2026-000005.pdf").unlink()
    m = manifest(folder)
    del m["files"]["invoices/QQ-2026-000005.pdf"]
    write_manifest(folder, m)
    assert_caught(folder, "documents row 6 is missing: deleted after it was recorded",
                  "numbers QQ-2026: run 2 recorded 5 number(s) up to 5, the ledger now holds 4 up to 4",
                  "ledger trigger documents_undeletable is missing")


def test_the_last_invoice_deleted_with_the_chain_cut_back(folder):
    """A forger who also removes the tail of the chain and the series record: the manifest's head is gone."""
    drop_triggers(folder, "documents", "chain", "series")
    sql(folder, "DELETE FROM documents WHERE number = 'QQ-2026-000005'",
        "DELETE FROM chain WHERE seq >= (SELECT seq FROM chain WHERE table_name = 'documents' AND row_id = 6)",
        "DELETE FROM series WHERE run_id = 2")
    assert_caught(folder, "does not contain the head the manifest recorded",
                  "invoices/QQ-2026-000005.pdf: not a document this ledger issued (listed in the manifest)")


def test_all_documents_deleted(folder):
    drop_triggers(folder, "documents")
    sql(folder, "DELETE FROM documents")
    assert_caught(folder, "documents row 1 is missing", "documents row 6 is missing",
                  "invoices/QQ-2026-000001.pdf: not a document this ledger issued",
                  "notices/N-renewal.pdf: not a document this ledger issued",
                  "manifest: 3 invoices, the ledger issued 0")


def test_the_notices_deleted(folder):
    drop_triggers(folder, "documents")
    sql(folder, "DELETE FROM documents WHERE kind = 'notice'")
    assert_caught(folder, "documents row 4 is missing", "notices/N-renewal.pdf: not a document this ledger issued")


def test_the_runs_deleted(folder):
    drop_triggers(folder, "runs")
    sql(folder, "DELETE FROM runs")
    r = assert_caught(folder, "runs row 1 is missing", "runs row 2 is missing")
    pdf = folder / "invoices" / "QQ-2026-000001.pdf"
    r = cli("verify", pdf, "--ledger", folder / "ledger.sqlite")
    assert r.returncode == 1 and "not certified" in r.stdout and "issued as" not in r.stdout


def test_the_prefix_owners_deleted(folder):
    drop_triggers(folder, "prefix_owners")
    sql(folder, "DELETE FROM prefix_owners")
    assert_caught(folder, "prefix_owners row 1 is missing")


def test_a_document_inserted_behind_the_ledgers_back(folder):
    sql(folder, "INSERT INTO documents (run_id, kind, prefix, year, seq, number, customer_id, period, issue_date, "
                "total_fen, content_sha256, content_json, file_name, file_sha256, cancels, input_sha256, "
                "pricebook_sha256) SELECT run_id, kind, prefix, year, 6, 'QQ-2026-000006', customer_id, period, "
                "issue_date, total_fen, content_sha256, content_json, 'invoices/QQ-2026-000006.pdf', file_sha256, "
                "cancels, input_sha256, pricebook_sha256 FROM documents WHERE number = 'QQ-2026-000002'")
    assert_caught(folder, "documents row 7 (QQ-2026-000006) is not in the hash chain: written behind the ledger's back",
                  "QQ-2026-000006: the ledger's number column says 'QQ-2026-000006', its hashed content says "
                  "'QQ-2026-000002'")


# -- columns outside the hashed content updated ---------------------------------------------------------

def test_an_invoice_total_forged(folder):
    drop_triggers(folder, "documents")
    sql(folder, "UPDATE documents SET total_fen = 1 WHERE number = 'QQ-2026-000002'")
    assert_caught(folder, "documents row 2 (QQ-2026-000002) was changed after it was recorded",
                  "QQ-2026-000002: the ledger's total_fen column says 1, its hashed content says 300000")
    r = cli("verify", folder / "invoices" / "QQ-2026-000002.pdf", "--ledger", folder / "ledger.sqlite")
    assert r.returncode == 1 and "not certified" in r.stdout
    assert "total 0.01" not in r.stdout and "issued as" not in r.stdout


def test_a_run_date_forged(folder):
    drop_triggers(folder, "runs")
    sql(folder, "UPDATE runs SET recorded_at = '2020-01-01 00:00:00'")
    assert_caught(folder, "runs row 1 (run of QQ 2026-10) was changed after it was recorded")
    r = cli("verify", folder / "invoices" / "QQ-2026-000002.pdf", "--ledger", folder / "ledger.sqlite")
    assert r.returncode == 1 and "not certified" in r.stdout and "2020-01-01" not in r.stdout


def test_a_pdf_swapped_for_another_customers_with_forged_hashes(folder):
    target, other = folder / "invoices" / "QQ-2026-000002.pdf", folder / "invoices" / "QQ-2026-000003.pdf"
    forged = other.read_bytes().replace(b"%%EOF", b"%%EOF\n% swapped")  # new bytes, another customer's invoice
    target.write_bytes(forged)
    digest = sha(target)
    drop_triggers(folder, "documents")
    db = sqlite3.connect(folder / "ledger.sqlite")
    db.execute("INSERT INTO blobs VALUES (?, 'pdf', 'invoices/QQ-2026-000002.pdf', ?)", (digest, forged))
    db.execute("UPDATE documents SET file_sha256 = ? WHERE number = 'QQ-2026-000002'", (digest,))
    db.commit()
    db.close()
    m = manifest(folder)
    m["files"]["invoices/QQ-2026-000002.pdf"] = digest
    write_manifest(folder, m)
    assert_caught(folder, "documents row 2 (QQ-2026-000002) was changed after it was recorded")
    r = cli("verify", target, "--ledger", folder / "ledger.sqlite")
    assert r.returncode == 1 and "not certified" in r.stdout and "issued as" not in r.stdout


# -- the folder and the manifest ------------------------------------------------------------------------

def test_an_extra_pdf_never_issued_not_listed(folder):
    shutil.copy(folder / "invoices" / "QQ-2026-000001.pdf", folder / "invoices" / "QQ-2026-000099.pdf")
    assert_caught(folder, "invoices/QQ-2026-000099.pdf: not a document this ledger issued (not in the manifest)")


def test_an_extra_pdf_never_issued_listed_in_the_manifest(folder):
    extra = folder / "credit_notes" / "QQ-2026-000099.pdf"
    extra.parent.mkdir(exist_ok=True)
    shutil.copy(folder / "invoices" / "QQ-2026-000001.pdf", extra)
    m = manifest(folder)
    m["files"]["credit_notes/QQ-2026-000099.pdf"] = sha(extra)
    write_manifest(folder, m)
    assert_caught(folder, "credit_notes/QQ-2026-000099.pdf: not a document this ledger issued (listed in the manifest)")


def test_a_manifest_listing_a_document_that_is_not_there(folder):
    m = manifest(folder)
    m["files"]["notices/Z-renewal.pdf"] = "0" * 64
    write_manifest(folder, m)
    assert_caught(folder, "notices/Z-renewal.pdf: listed in the manifest but missing",
                  "notices/Z-renewal.pdf: listed in the manifest, but this ledger never issued it")


def test_dropped_triggers_are_reported_not_repaired(folder):
    drop_triggers(folder, "documents", "blobs", "runs", "prefix_owners", "series", "chain")
    assert_caught(folder, *[f"ledger trigger {t}_{k} is missing" for t in
                            ("documents", "blobs", "runs", "prefix_owners", "series", "chain")
                            for k in ("immutable", "undeletable")])
    db = sqlite3.connect(folder / "ledger.sqlite")
    assert db.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger'").fetchone()[0] == 2  # meta's
    db.close()


def test_a_trigger_replaced_by_one_that_refuses_nothing(folder):
    sql(folder, "DROP TRIGGER documents_immutable",
        "CREATE TRIGGER documents_immutable BEFORE UPDATE ON documents BEGIN SELECT 1; END")
    assert_caught(folder, "ledger trigger documents_immutable was replaced")


def test_a_kept_pdf_deleted(folder):
    drop_triggers(folder, "blobs")
    sql(folder, "DELETE FROM blobs WHERE name = 'invoices/QQ-2026-000003.pdf'",
        "DELETE FROM blobs WHERE name = 'notices/N-renewal.pdf'")
    assert_caught(folder, "invoices/QQ-2026-000003.pdf: the PDF bytes the ledger kept for QQ-2026-000003 are missing",
                  "notices/N-renewal.pdf: the PDF bytes the ledger kept for notice are missing")


def test_every_problem_is_listed(folder):
    """Several tamperings at once: each is named, none stops the audit."""
    drop_triggers(folder, "blobs", "documents")
    sql(folder, "UPDATE blobs SET data = x'00' WHERE name = 'invoices/QQ-2026-000001.pdf'",
        "UPDATE blobs SET data = x'00' WHERE name = 'invoices/QQ-2026-000002.pdf'",
        "UPDATE documents SET issue_date = '2026-10-01' WHERE number = 'QQ-2026-000003'")
    (folder / "invoices" / ".QQ-2026-000001.pdf.x1y2.tmp").write_bytes(b"half")
    assert_caught(folder, "the PDF bytes the ledger kept for QQ-2026-000001 are damaged",
                  "the PDF bytes the ledger kept for QQ-2026-000002 are damaged",
                  "QQ-2026-000003: the ledger's issue_date column says '2026-10-01'",
                  "invoices/.QQ-2026-000001.pdf.x1y2.tmp: a temporary file left by an interrupted write")


def test_a_temporary_file_left_behind(folder):
    (folder / ".summary.xlsx.ab12.tmp").write_bytes(b"half")
    assert_caught(folder, ".summary.xlsx.ab12.tmp: a temporary file left by an interrupted write")


def test_the_chains_first_link_rewritten(folder):
    drop_triggers(folder, "chain")
    sql(folder, "DELETE FROM chain WHERE seq = 1")
    assert_caught(folder, "chain link 1 is missing (removed from the chain)", "chain link 2 does not follow link 1")


# -- a ledger written before the chain ------------------------------------------------------------------

def _as_written_before_the_chain(folder: Path) -> None:
    """What an older version left: no chain, no series, no identity, and a manifest that names none."""
    sql(folder, "DROP TABLE chain", "DROP TABLE series", "DROP TRIGGER meta_identity_fixed",
        "DROP TRIGGER meta_identity_kept", "DELETE FROM meta WHERE key IN ('ledger_id', 'chain_genesis')")
    m = manifest(folder)
    for key in ("ledger_id", "chain_head", "chain_link"):
        del m[key]
    write_manifest(folder, m)


def test_an_older_ledger_still_verifies_and_is_chained_from_its_next_run(folder, built, tmp_path):
    _as_written_before_the_chain(folder)
    r = cli("verify", folder)
    assert r.returncode == 0, r.stdout
    assert "note: this ledger has no hash chain" in r.stdout
    ledger = folder / "ledger.sqlite"
    nov = tmp_path / "2026-11"
    report = run(RunOptions(roster=_roster(tmp_path / "r.xlsx", 3), period="2026-11", out=nov, ledger=ledger,
                            workers=1, progress=False))
    assert report.rejects == []
    for out in (folder, nov):
        r = cli("verify", out, "--ledger", ledger)
        assert r.returncode == 0, r.stdout
        assert "note: 9 record(s) written before this ledger was upgraded to the hash chain are unchained" \
            in r.stdout
    # the rows written before the chain are sealed as a whole by its first link
    drop_triggers(folder, "runs")
    sql(folder, "UPDATE runs SET recorded_at = '2020-01-01 00:00:00' WHERE id = 1")
    r = cli("verify", folder)
    assert r.returncode == 1
    assert "runs: the 2 record(s) written before the chain began changed since it began" in r.stdout


def test_verify_never_shows_a_traceback_for_a_missing_ledger_or_folder(tmp_path, folder):
    r = cli("verify", tmp_path / "nowhere")
    assert r.returncode == 2 and "no such folder" in r.stderr
    (folder / "ledger.sqlite").unlink()
    assert_caught(folder, "no ledger there")
    r = cli("verify", folder / "invoices" / "QQ-2026-000001.pdf", "--ledger", tmp_path / "none.sqlite")
    assert r.returncode == 2 and "no ledger there" in r.stderr
    assert not os.path.exists(tmp_path / "none.sqlite")


def test_an_old_notice_file_replaced_though_no_longer_listed(folder):
    """A notice the manifest no longer lists is still a ledger document, and still in force (the folder's
    roster, priced again from the ledger, gives it): its bytes must be the ones issued."""
    m = manifest(folder)
    del m["files"]["notices/N-renewal.pdf"]
    write_manifest(folder, m)
    assert cli("verify", folder).returncode == 0
    (folder / "notices" / "N-renewal.pdf").write_bytes(b"%PDF-1.7 a notice never issued")
    assert_caught(folder, "notices/N-renewal.pdf: differs from the file issued as notice")


def test_a_summary_rewritten_with_its_manifest_hash(folder):
    from openpyxl import load_workbook

    from invoicer.render.summary import deterministic_zip

    path = folder / "summary.xlsx"
    wb = load_workbook(path)
    ws = wb["invoices"]
    for row in ws.iter_rows(min_row=2):
        if row[0].value == "QQ-2026-000002":
            row[4].value = 30
    ws.delete_rows(ws.max_row)  # and the replacement invoice left out
    buf = io.BytesIO()
    wb.save(buf)
    path.write_bytes(deterministic_zip(buf.getvalue()))
    m = manifest(folder)
    m["files"]["summary.xlsx"] = sha(path)
    write_manifest(folder, m)
    assert_caught(folder, "summary.xlsx: QQ-2026-000002 says customer B, 2026-10-31, total 30, issued; the "
                          "ledger: customer B, 2026-10-31, total 3000.00, issued",
                  "summary.xlsx: does not list QQ-2026-000005")
