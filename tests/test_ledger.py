"""Ledger: gapless numbers, idempotent re-runs, refusal and amendment, dry run, crashes, concurrency, verify,
and the failures a run meets (an unusable ledger or folder, a full disk) as one line and an exit code."""
from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import io
import json
import os
import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from openpyxl import load_workbook

from . import pdfstub, realproc
from .conftest import ROOT, change, cust, run_cli, write_roster

D = dt.date
# no assertion here reads what a PDF shows (files are compared by hash): PDFs without layout (tests/pdfstub.py)
pytestmark = pytest.mark.usefixtures("stub_render")


def files(out):
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in out.rglob("*.pdf")}


def numbers(ledger):
    db = sqlite3.connect(ledger)
    return db.execute("SELECT number, kind, customer_id FROM documents WHERE number IS NOT NULL ORDER BY id").fetchall()


@pytest.fixture
def roster(tmp_path):
    def make(extra_seats=2, name="杭州西湖电子商务有限公司", path="r.xlsx", ids=("A", "B")):
        return write_roster(tmp_path / path, [cust(ids[0], D(2026, 5, 1), 5, name=name),
                                              cust(ids[1], D(2026, 10, 8), 3)],
                            [change(ids[0], D(2026, 10, 1), "add", extra_seats)])
    return make


def test_rerun_reissues_nothing_and_republishes_missing_files(tmp_path, roster):
    out = tmp_path / "out"
    r1 = run_cli("run", roster(), "--period", "2026-10", "--out", out)
    assert r1.returncode == 0, r1.stderr
    first = files(out)
    assert set(first) == {"invoices/QQ-2026-000001.pdf", "invoices/QQ-2026-000002.pdf"}
    (out / "invoices" / "QQ-2026-000002.pdf").unlink()
    # a run killed inside an atomic write leaves a hidden temporary file: the next run of the folder
    # removes it whatever its age (it holds the ledger's write lock, under which every run writes its
    # folder, so no other writer is there); verify reports one meanwhile
    stale, fresh = out / "invoices" / ".QQ-2026-000009.pdf.ab12.tmp", out / ".summary.xlsx.cd34.tmp"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    r = run_cli("verify", out)
    assert r.returncode == 1 and ".summary.xlsx.cd34.tmp: a temporary file left by an interrupted write" in r.stdout
    r2 = run_cli("run", roster(), "--period", "2026-10", "--out", out)
    assert r2.returncode == 0 and "0 new, 2 unchanged" in r2.stdout
    assert files(out) == first  # same numbers, byte-identical files
    assert not stale.exists() and not fresh.exists()
    assert len(numbers(out / "ledger.sqlite")) == 2
    assert run_cli("verify", out).returncode == 0


def test_changed_input_is_refused_then_amended_with_a_credit_note(tmp_path, roster):
    out = tmp_path / "out"
    assert run_cli("run", roster(), "--period", "2026-10", "--out", out).returncode == 0
    changed = roster(extra_seats=3)
    r = run_cli("run", changed, "--period", "2026-10", "--out", out)
    assert r.returncode == 3
    assert "A: invoice QQ-2026-000001 total 1400.00 -> 2100.00" in r.stderr
    assert "--amend" in r.stderr
    assert len(numbers(out / "ledger.sqlite")) == 2  # nothing issued
    r = run_cli("run", changed, "--period", "2026-10", "--out", out, "--amend")
    assert r.returncode == 0, r.stderr
    assert numbers(out / "ledger.sqlite") == [("QQ-2026-000001", "invoice", "A"), ("QQ-2026-000002", "invoice", "B"),
                                              ("QQ-2026-000003", "credit_note", "A"),
                                              ("QQ-2026-000004", "invoice", "A")]
    assert (out / "credit_notes" / "QQ-2026-000003.pdf").is_file()
    ws = load_workbook(out / "summary.xlsx")["invoices"]
    rows = {r[0]: r for r in ws.iter_rows(min_row=2, values_only=True)}
    assert rows["QQ-2026-000001"][6] == "cancelled" and rows["QQ-2026-000003"][4] == -1400
    assert rows["QQ-2026-000003"][7] == "QQ-2026-000001" and rows["QQ-2026-000004"][4] == 2100
    total = [r for r in load_workbook(out / "summary.xlsx")["totals"].iter_rows(values_only=True)
             if r[0] == "grand_total"][0]
    assert total[4] == 2100 + 3000  # net of the credit note
    assert run_cli("verify", out).returncode == 0


def test_dry_run_numbers_and_writes_nothing(tmp_path, roster):
    out = tmp_path / "out"
    r = run_cli("run", roster(), "--period", "2026-10", "--out", out, "--dry-run")
    assert r.returncode == 0 and "new        A: 1,400.00" in r.stdout
    assert not out.exists()
    run_cli("run", roster(), "--period", "2026-10", "--out", out)
    before = files(out)
    r = run_cli("run", roster(extra_seats=3), "--period", "2026-10", "--out", out, "--dry-run")
    assert "unchanged  B: QQ-2026-000002" in r.stdout and "changed    A: invoice QQ-2026-000001" in r.stdout
    assert files(out) == before and len(numbers(out / "ledger.sqlite")) == 2


def test_several_periods_against_one_ledger_bill_their_own_month(tmp_path):
    roster = write_roster(tmp_path / "legacy.xlsx", [cust("L", D(2009, 5, 1), 5, legacy_rate="1100")],
                          [change("L", D(2010, 5, 10), "renew"), change("L", D(2010, 12, 1), "add", 2),
                           change("L", D(2011, 1, 10), "add", 1), change("L", D(2011, 5, 5), "renew")],
                          reseller={"name": "测试经销商", "invoice_prefix": "LG"})
    ledger = tmp_path / "ledger.sqlite"
    totals = {}
    for period in ("2010-05", "2010-12", "2011-01", "2011-05"):
        out = tmp_path / period
        r = run_cli("run", roster, "--period", period, "--out", out, "--ledger", ledger)
        assert r.returncode == 0, r.stderr
        totals[period] = [r[4] for r in load_workbook(out / "summary.xlsx")["invoices"].iter_rows(min_row=2,
                                                                                                   values_only=True)]
        assert run_cli("verify", out, "--ledger", ledger).returncode == 0
    assert totals == {"2010-05": [5500], "2010-12": [1100], "2011-01": [400], "2011-05": [8000]}
    assert [n for n, _, _ in numbers(ledger)] == ["LG-2010-000001", "LG-2010-000002", "LG-2011-000001",
                                                  "LG-2011-000002"]


def test_a_lost_pdf_comes_back_as_issued_after_the_templates_changed(tmp_path, roster):
    """The ledger keeps every issued PDF's bytes: a lost file is restored byte for byte even when the
    templates (or fonts, or WeasyPrint) changed since, which re-rendering could not do."""
    import shutil

    from invoicer.render.pdf import DEFAULT_TEMPLATES

    out, tpl = tmp_path / "out", tmp_path / "tpl"
    assert run_cli("run", roster(), "--period", "2026-10", "--out", out).returncode == 0
    first = files(out)
    shutil.copytree(DEFAULT_TEMPLATES, tpl)
    with open(tpl / "style.css", "a", encoding="utf-8") as css:
        css.write("\n.seller-name { color: #7a1f5c; }\n")  # a new look from now on
    (out / "invoices" / "QQ-2026-000001.pdf").unlink()
    r = run_cli("run", roster(), "--period", "2026-10", "--out", out, "--templates", tpl)
    assert r.returncode == 0, r.stderr
    assert files(out) == first
    db = sqlite3.connect(out / "ledger.sqlite")
    assert db.execute("SELECT COUNT(*) FROM blobs WHERE kind = 'pdf'").fetchone()[0] == 2
    with pytest.raises(sqlite3.IntegrityError, match="immutable"):
        db.execute("UPDATE blobs SET data = x'00' WHERE kind = 'pdf'")
    with pytest.raises(sqlite3.IntegrityError, match="never deleted"):
        db.execute("DELETE FROM blobs")
    # bytes damaged behind the triggers' back are found by verify
    db.execute("DROP TRIGGER blobs_immutable")
    db.execute("UPDATE blobs SET data = x'00' WHERE name = 'invoices/QQ-2026-000002.pdf'")
    db.commit()
    db.close()
    r = run_cli("verify", out)
    assert r.returncode == 1 and "the PDF bytes the ledger kept for QQ-2026-000002 are damaged" in r.stdout


def test_verify_tells_whether_one_pdf_is_exactly_an_issued_document(tmp_path, roster):
    """An auditor holding a customer's copy asks the ledger: issued as what, and unchanged?"""
    out = tmp_path / "out"
    assert run_cli("run", roster(), "--period", "2026-10", "--out", out).returncode == 0
    ledger = out / "ledger.sqlite"
    copy = tmp_path / "from-email.pdf"
    copy.write_bytes((out / "invoices" / "QQ-2026-000001.pdf").read_bytes())
    r = run_cli("verify", copy, "--ledger", ledger)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "issued as QQ-2026-000001 (invoice, customer A, 2026-10, total 1,400.00 CNY" in r.stdout
    assert "unchanged since issue" in r.stdout

    forged = tmp_path / "QQ-2026-000001.pdf"
    forged.write_bytes(copy.read_bytes().replace(b"%%EOF", b"%%EOF\n% edited"))
    r = run_cli("verify", forged, "--ledger", ledger)
    assert r.returncode == 1 and "not the file issued as QQ-2026-000001" in r.stdout

    stranger = tmp_path / "other.pdf"
    stranger.write_bytes(b"%PDF-1.7 not ours")
    r = run_cli("verify", stranger, "--ledger", ledger)
    assert r.returncode == 1 and "not a document this ledger issued" in r.stdout

    r = run_cli("verify", copy)  # which ledger? it must be said
    assert r.returncode == 2 and "pass --ledger" in r.stderr and "Traceback" not in r.stderr


def test_issued_documents_cannot_be_edited_and_verify_finds_tampering(tmp_path, roster):
    out = tmp_path / "out"
    run_cli("run", roster(), "--period", "2026-10", "--out", out)
    db = sqlite3.connect(out / "ledger.sqlite")
    with pytest.raises(sqlite3.IntegrityError, match="immutable"):
        db.execute("UPDATE documents SET total_fen = 1")
    with pytest.raises(sqlite3.IntegrityError, match="never deleted"):
        db.execute("DELETE FROM documents")
    db.rollback()
    db.close()
    pdf = out / "invoices" / "QQ-2026-000001.pdf"
    pdf.write_bytes(pdf.read_bytes().replace(b"%%EOF", b"%%EOF "))
    r = run_cli("verify", out)
    assert r.returncode == 1
    assert "invoices/QQ-2026-000001.pdf: changed since it was written" in r.stdout
    assert "differs from the file issued as QQ-2026-000001" in r.stdout


@pytest.mark.parametrize("point", ["before_commit", "after_commit"])
def test_a_run_killed_mid_way_is_completed_by_a_rerun(tmp_path, roster, point):
    out = tmp_path / "out"
    env = {**os.environ, "INVOICER_TEST_CRASH_AT": point}
    r = realproc.run(["run", roster(), "--period", "2026-10", "--out", out], env=env, cwd=ROOT)
    assert r.returncode == 70
    issued = numbers(out / "ledger.sqlite")
    assert len(issued) == (0 if point == "before_commit" else 2)  # all of the run or none of it
    r = run_cli("run", roster(), "--period", "2026-10", "--out", out)
    assert r.returncode == 0, r.stderr
    assert [n for n, _, _ in numbers(out / "ledger.sqlite")] == ["QQ-2026-000001", "QQ-2026-000002"]
    assert run_cli("verify", out).returncode == 0


def test_two_runs_at_once_never_interleave_numbers(tmp_path, roster):
    """Two clerks bill different months of one reseller at the same moment against one ledger."""
    ledger, r = tmp_path / "shared.sqlite", roster()
    procs = [realproc.popen(["run", r, "--period", period, "--out", tmp_path / period, "--ledger", ledger,
                             "--workers", "1"], cwd=ROOT, stdout=realproc.PIPE, stderr=realproc.PIPE)
             for period in ("2026-10", "2026-05", "2026-10")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    issued = numbers(ledger)
    assert sorted(n for n, _, _ in issued) == [f"QQ-2026-{i:06d}" for i in range(1, 4)]  # no duplicate, no gap
    periods = [json.loads(row[0])["period"] for row in sqlite3.connect(ledger).execute(
        "SELECT content_json FROM documents WHERE number IS NOT NULL ORDER BY seq")]
    assert periods in (["2026-10", "2026-10", "2026-05"], ["2026-05", "2026-10", "2026-10"])  # never interleaved


def test_a_busy_ledger_fails_with_a_clear_message_and_exit_4(tmp_path, roster):
    out = tmp_path / "out"
    run_cli("run", roster(), "--period", "2026-10", "--out", out)
    holder = sqlite3.connect(out / "ledger.sqlite", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        r = run_cli("run", roster(), "--period", "2026-10", "--out", out, "--wait", "0.5")
    finally:
        holder.execute("ROLLBACK")
    assert r.returncode == 4 and "in use by another run" in r.stderr


def test_manifest_and_summary_agree_with_the_ledger(tmp_path, roster):
    out = tmp_path / "out"
    run_cli("run", roster(), "--period", "2026-10", "--out", out)
    m = json.loads((out / "manifest.json").read_text())
    assert m["counts"]["invoices"] == 2 and m["total_fen"] == 140000 + 300000


def cli(*args):
    """The CLI in-process (monkeypatched faults reach it): returncode, stdout, stderr."""
    from invoicer.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def one_line(r) -> str:
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    return r.stderr


def test_a_rerun_rewrites_nothing_summary_and_manifest_stay_byte_identical(tmp_path, roster):
    """openpyxl stamps the save time into docProps/core.xml: the summary's dates are the period's instead."""
    out, same = tmp_path / "out", roster()  # the same file: a new roster workbook has its own save time
    assert cli("run", same, "--period", "2026-10", "--out", out, "--workers", 1).returncode == 0
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (out / "summary.xlsx", out / "manifest.json")}
    time.sleep(1.1)  # openpyxl's stamp has whole seconds
    r = cli("run", same, "--period", "2026-10", "--out", out, "--workers", 1)
    assert r.returncode == 0 and "0 new, 2 unchanged" in r.stdout
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (out / "summary.xlsx", out / "manifest.json")}
    assert after == before
    import zipfile

    core = zipfile.ZipFile(out / "summary.xlsx").read("docProps/core.xml").decode()
    assert '<dcterms:modified xsi:type="dcterms:W3CDTF">2026-10-31T00:00:00Z</dcterms:modified>' in core
    assert '<dcterms:created xsi:type="dcterms:W3CDTF">2026-10-31T00:00:00Z</dcterms:created>' in core


def test_unusable_ledgers_and_folders_are_one_line_and_exit_2(tmp_path, roster):
    out = tmp_path / "out"
    assert cli("run", roster(), "--period", "2026-10", "--out", out, "--workers", 1).returncode == 0
    ledger = out / "ledger.sqlite"

    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")
    r = cli("run", roster(), "--period", "2026-10", "--out", not_a_folder)
    assert r.returncode == 2 and "--out is a file" in one_line(r)
    r = cli("run", roster(), "--period", "2026-10", "--out", tmp_path / "o2", "--ledger", out)
    assert r.returncode == 2 and f"{out}: is a folder; --ledger names the ledger file" in one_line(r)

    truncated = tmp_path / "truncated.sqlite"
    truncated.write_bytes(ledger.read_bytes()[:3000])
    r = cli("run", roster(), "--period", "2026-10", "--out", tmp_path / "o3", "--ledger", truncated)
    assert r.returncode == 2 and "not an invoicer ledger" in one_line(r)
    text = tmp_path / "notes.sqlite"
    text.write_text("these are not the ledger you are looking for\n" * 200)
    r = cli("run", roster(), "--period", "2026-10", "--out", tmp_path / "o4", "--ledger", text)
    assert r.returncode == 2 and "not an invoicer ledger (not an SQLite database" in one_line(r)
    assert text.read_text().startswith("these are not")  # untouched


def test_a_read_only_ledger_is_refused_in_one_line(tmp_path, roster, monkeypatch):
    out = tmp_path / "out"
    assert cli("run", roster(), "--period", "2026-10", "--out", out, "--workers", 1).returncode == 0
    real_connect = sqlite3.connect

    def read_only(path, **kw):  # what a write-protected file gives (chmod does not stop root, who runs CI)
        return real_connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True, **kw)

    monkeypatch.setattr(sqlite3, "connect", read_only)
    r = cli("run", roster(extra_seats=3), "--period", "2026-10", "--out", out, "--amend")
    assert r.returncode == 2 and "the ledger is read-only, so nothing can be issued" in one_line(r)


class _FullDiskAtCommit:
    """A connection whose COMMIT fails as SQLite's does when the disk is full."""

    def __init__(self, real):
        object.__setattr__(self, "_real", real)

    def __getattr__(self, name):
        return getattr(self._real, name)

    def __setattr__(self, name, value):
        setattr(self._real, name, value)

    def execute(self, sql, *args):
        if sql == "COMMIT":
            raise sqlite3.OperationalError("database or disk is full")
        return self._real.execute(sql, *args)


def test_a_full_disk_at_commit_issues_nothing(tmp_path, roster, monkeypatch):
    out = tmp_path / "out"
    real_connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **kw: _FullDiskAtCommit(real_connect(*a, **kw)))
    r = cli("run", roster(), "--period", "2026-10", "--out", out, "--workers", 1)
    assert r.returncode == 2 and "the disk is full" in one_line(r) and "nothing was issued" in r.stderr
    monkeypatch.undo()
    assert numbers(out / "ledger.sqlite") == []
    assert not (out / "invoices").exists()
    assert cli("run", roster(), "--period", "2026-10", "--out", out, "--workers", 1).returncode == 0
    assert [n for n, _, _ in numbers(out / "ledger.sqlite")] == ["QQ-2026-000001", "QQ-2026-000002"]


def test_a_full_disk_after_commit_says_issued_and_a_rerun_publishes_the_rest(tmp_path, roster, monkeypatch):
    out = tmp_path / "out"

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    from invoicer import pipeline

    real_publish = pipeline.publish_period

    def publish_on_a_full_disk(*a, **kw):  # the disk fills after the commit: publishing's first write fails
        monkeypatch.setattr(os, "fsync", no_space)
        return real_publish(*a, **kw)

    monkeypatch.setattr(pipeline, "publish_period", publish_on_a_full_disk)
    r = cli("run", roster(), "--period", "2026-10", "--out", out, "--workers", 1)
    monkeypatch.undo()
    assert r.returncode == 5, r.stderr
    line = one_line(r)
    assert "2026-10 was issued (2 numbered document(s) committed to the ledger" in line
    assert "the disk is full" in line and "re-run the same command to publish the rest" in line
    assert [p.name for p in out.rglob(".*.tmp")] == []  # the failed write left no temporary file
    assert len(numbers(out / "ledger.sqlite")) == 2
    r = cli("run", roster(), "--period", "2026-10", "--out", out, "--workers", 1)
    assert r.returncode == 0 and "0 new, 2 unchanged" in r.stdout
    assert set(files(out)) == {"invoices/QQ-2026-000001.pdf", "invoices/QQ-2026-000002.pdf"}
    assert cli("verify", out).returncode == 0


def test_the_ledger_reader_opens_nothing_for_writing(tmp_path, roster):
    """Ledger.open_readonly: the reads a dry run or an audit needs, on a ledger nobody may write."""
    from invoicer.ledger import Ledger

    out = tmp_path / "out"
    assert cli("run", roster(), "--period", "2026-10", "--out", out, "--workers", 1).returncode == 0
    with Ledger.open_readonly(out / "ledger.sqlite") as reader:
        assert sorted(reader.active_invoices("QQ", "2026-10")) == ["A", "B"]
        assert reader.next_seq("QQ", 2026) == 3
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.db.execute("INSERT INTO meta VALUES ('x', 'y')")
        assert reader.check_chain().problems == []
    assert sorted(p.name for p in out.iterdir()) == ["fapiao", "invoices", "ledger.sqlite", "manifest.json", "summary.xlsx"]


def test_out_under_a_file_is_refused_before_anything_is_issued(tmp_path, roster):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    ledger = tmp_path / "ledger.sqlite"
    r = cli("run", roster(), "--period", "2026-10", "--out", blocker / "2026-10", "--ledger", ledger)
    assert r.returncode == 2 and f"--out lies under a file ({blocker})" in one_line(r)
    assert not ledger.exists()


def test_the_pdf_stub_gives_a_real_process_the_same_bytes_as_this_one(tmp_path):
    """tests/pdfstub.py (test_pdfstub) reaches the processes tests/realproc.py starts: a test never mixes stub
    and real PDFs."""
    roster = write_roster(tmp_path / "r.xlsx", [cust("A", D(2026, 10, 3), 5)])
    child = realproc.run(["run", roster, "--period", "2026-10", "--out", tmp_path / "child", "--workers", "1"],
                         cwd=ROOT)
    assert child.returncode == 0, child.stderr
    assert run_cli("run", roster, "--period", "2026-10", "--out", tmp_path / "here").returncode == 0
    name = "invoices/QQ-2026-000001.pdf"
    mine = (tmp_path / "here" / name).read_bytes()
    assert pdfstub.is_stub(mine) and (tmp_path / "child" / name).read_bytes() == mine


def test_a_withdrawn_invoice_says_whether_a_rejected_row_holds_it(tmp_path, stub_render):
    """Exit 3 lists each issued invoice the input would withdraw, and why: a rejected row of the customer
    (which one: fix it rather than cancel the bill) or no billable line any more."""
    out = tmp_path / "out"
    first = write_roster(tmp_path / "r1.xlsx", [cust("A", D(2026, 10, 3), 5), cust("B", D(2026, 10, 8), 3)])
    assert run_cli("run", first, "--period", "2026-10", "--out", out).returncode == 0
    # A's QQ number is now mistyped (an optional column, but a rejected row holds the whole customer); B is gone
    second = write_roster(tmp_path / "r2.xlsx", [cust("A", D(2026, 10, 3), 5, qq_number="12345")])
    r = run_cli("run", second, "--period", "2026-10", "--out", out)
    assert r.returncode == 3, r.stdout + r.stderr
    assert ("A: invoice QQ-2026-000001 would no longer be issued (held: customers row 2 rejected (qq_number): "
            "fix that row, or amend to cancel it)") in r.stderr
    assert "B: invoice QQ-2026-000002 would no longer be issued (no billable line now)" in r.stderr


def test_an_archive_copied_with_its_ledger_is_audited_against_its_own_copy(tmp_path, roster, stub_render):
    """The manifest names a --ledger relative to the folder: verify of an archive (the folder and its ledger
    copied elsewhere, as the watcher lays them out) audits the archive's ledger, not the live one, even
    after the live ledger is gone or has moved on."""
    import shutil

    live = tmp_path / "live"
    out = live / "SZ" / "2026-10"
    assert run_cli("run", roster(), "--period", "2026-10", "--out", out, "--ledger", live / "ledger.sqlite"
                   ).returncode == 0
    assert json.loads((out / "manifest.json").read_text(encoding="utf-8"))["ledger"] == "../../ledger.sqlite"
    archive = tmp_path / "archive-2026"
    shutil.copytree(live, archive)
    shutil.rmtree(live)
    assert run_cli("verify", archive / "SZ" / "2026-10").returncode == 0
    db = sqlite3.connect(archive / "ledger.sqlite")  # the archive's own ledger is the one audited
    db.execute("DROP TRIGGER documents_undeletable")
    db.commit()
    db.close()
    r = run_cli("verify", archive / "SZ" / "2026-10")
    assert r.returncode == 1 and "documents_undeletable" in r.stdout, r.stdout


def test_a_disk_full_before_the_commit_issues_nothing(tmp_path, roster, monkeypatch, stub_render):
    """The folder's claim (a manifest naming only the prefix and period) is written before the commit: a
    disk already full stops the run there, one line, exit 2, nothing numbered; the next run issues all."""
    out = tmp_path / "out"

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    r = cli("run", roster(), "--period", "2026-10", "--out", out, "--workers", 1)
    monkeypatch.undo()
    assert r.returncode == 2 and "the disk is full" in r.stderr, r.stdout + r.stderr
    assert numbers(out / "ledger.sqlite") == [] and not (out / "manifest.json").exists()
    assert cli("run", roster(), "--period", "2026-10", "--out", out, "--workers", 1).returncode == 0
    assert len(numbers(out / "ledger.sqlite")) == 2 and cli("verify", out).returncode == 0
