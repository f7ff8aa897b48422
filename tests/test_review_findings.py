"""An attacker's review of the merged product (its integration seams), kept as tests: each states the promise
it checks and the way it was broken before the fix (a forged e-fapiao export, a dry run writing to the ledger,
two prefixes in one folder, a cancelled invoice certified as in force, a deleted notice, malformed manifests,
a duplicated zip member, a reseller folder named like the ledger)."""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import shutil
import subprocess
import warnings
import zipfile
from pathlib import Path

import openpyxl
import pytest

from .conftest import SAMPLE, cust, run_cli, write_roster

D = dt.date
# no assertion here reads what a PDF shows: PDFs without layout (tests/pdfstub.py); the shared sample run
# (conftest.sample_run) is rendered for real
pytestmark = pytest.mark.usefixtures("stub_render")


cli = run_cli  # the CLI in-process


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()



@pytest.fixture
def sample_out(sample_run):
    """The sample roster billed once (its fapiao export has rows: buyers with tax ids); copy it to change it."""
    return sample_run[0]


def test_forged_fapiao_export_is_caught_by_verify_or_replaced_by_a_rerun(sample_out, tmp_path):
    """A forger raises an amount in the e-fapiao import file (what the clerk uploads to the tax platform) and
    puts the new hash in manifest.json (not chained, not anchored). Expected: verify names the file, or at
    least the next re-run of the period rebuilds the export from the ledger. Actual: verify says clean, and
    the re-run keeps the forged file (publish.publish_period's fapiao_kept shortcut re-hashes it against the
    forged manifest hash) and writes a new manifest that certifies it again."""
    out = tmp_path / "out"
    shutil.copytree(sample_out, out)
    export = out / "fapiao" / "SZTY-2026-10.xlsx"
    wb = openpyxl.load_workbook(export)
    ws = wb["2-发票明细信息"]
    assert ws["A4"].value == "SZTY-2026-000001" and ws["H4"].value == "5000.00"
    ws["H4"].value = "50000.00"
    wb.save(export)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"]["fapiao/SZTY-2026-10.xlsx"] = _sha(export)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
    forged = _sha(export)

    audit = cli("verify", out)
    rerun = cli("run", SAMPLE, "--period", "2026-10", "--out", out, "--workers", "1")
    assert rerun.returncode == 1, rerun.stderr
    assert audit.returncode == 1 or _sha(export) != forged


def _small_roster(path: Path, prefix: str, seats_first: int = 5) -> Path:
    cs = [cust(f"{prefix}{i}", D(2026, 9, 5), seats_first if i == 0 else 5) for i in range(3)]
    return write_roster(path, cs, reseller={"invoice_prefix": prefix})


def test_verify_pdf_says_an_invoice_was_cancelled(tmp_path):
    """A customer (or a hostile reseller) presents the original invoice after --amend cancelled it with a
    credit note. Expected: `verify FILE.pdf --ledger` says it was cancelled by credit note N (or refuses to
    certify it as in force). Actual: "issued as XX-2026-000001 ... unchanged since issue", nothing else."""
    out = tmp_path / "out"
    first, second = _small_roster(tmp_path / "a.xlsx", "XX"), _small_roster(tmp_path / "b.xlsx", "XX", 6)
    assert cli("run", first, "--period", "2026-09", "--out", out, "--workers", "1").returncode == 0
    assert cli("run", second, "--period", "2026-09", "--out", out, "--amend", "--workers", "1").returncode == 0
    assert (out / "credit_notes" / "XX-2026-000004.pdf").is_file()
    r = cli("verify", out / "invoices" / "XX-2026-000001.pdf", "--ledger", out / "ledger.sqlite")
    assert "cancel" in (r.stdout + r.stderr).lower() or "XX-2026-000004" in r.stdout + r.stderr


def test_second_prefix_into_the_same_folder_is_refused_or_reported(tmp_path):
    """The clerk bills roster XX, then (by mistake) roster YY for the same period into the same --out.
    Expected: the run refuses a folder whose manifest is another prefix's, or verify reports the XX PDFs
    that the manifest no longer lists. Actual: exit 0, the folder holds six invoices, the manifest, summary
    and fapiao export list only YY's three, and verify says clean."""
    out = tmp_path / "out"
    assert cli("run", _small_roster(tmp_path / "x.xlsx", "XX"), "--period", "2026-09", "--out", out,
               "--workers", "1").returncode == 0
    second = cli("run", _small_roster(tmp_path / "y.xlsx", "YY"), "--period", "2026-09", "--out", out,
                 "--workers", "1")
    manifest = json.loads((out / "manifest.json").read_text())
    listed = {n for n in manifest["files"] if n.startswith("invoices/")}
    on_disk = {f"invoices/{p.name}" for p in (out / "invoices").iterdir()}
    audit = cli("verify", out)
    assert second.returncode != 0 or audit.returncode == 1 or listed == on_disk


def _immutable(path: Path) -> bool:
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0


def test_dry_run_reads_a_write_protected_ledger(tmp_path):
    """A dry run issues nothing, and LedgerReader says it is "for audits and dry runs". Expected: --dry-run
    against a write-protected ledger prints the plan (exit 0). Actual: exit 2, "the ledger is read-only, so
    nothing can be issued", and it creates ledger.sqlite-wal/-shm beside the archive. (chattr +i stands in
    for a read-only mount, since root ignores file modes.)"""
    out = tmp_path / "out"
    roster = _small_roster(tmp_path / "x.xlsx", "XX")
    assert cli("run", roster, "--period", "2026-09", "--out", out, "--workers", "1").returncode == 0
    ledger = out / "ledger.sqlite"
    if not _immutable(ledger):
        pytest.skip("cannot make the ledger immutable here (chattr)")
    try:
        r = cli("run", roster, "--period", "2026-09", "--out", out, "--dry-run")
    finally:
        subprocess.run(["chattr", "-i", str(ledger)], check=False)
    assert r.returncode == 0, r.stderr


def test_zip_with_two_members_of_one_name_is_refused(tmp_path):
    """A CSV-pair .zip holding two members both named customers.csv (different contents). Two files for one
    sheet in different folders are refused ("two files for the sheet 'customers'"), but the same name twice
    is read as the last member, which most unzip tools and file managers do not show first. Expected: exit 2
    naming both. Actual: the hidden second member is billed."""
    path = tmp_path / "pair.zip"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("customers.csv", "customer_id,name,opened_on,seats\nC1,Visible,2026-09-05,5\n")
            zf.writestr("customers.csv", "customer_id,name,opened_on,seats\nC1,Hidden,2026-09-05,7\n")
            zf.writestr("changes.csv", "customer_id,date,type,seats\n")
    r = cli("check", path, "--period", "2026-09")
    assert r.returncode == 2, r.stdout + r.stderr


def test_odd_name_in_the_previous_manifest_does_not_block_publishing(tmp_path):
    """manifest.json lists a file under fapiao/ whose name is not a safe name (a clerk's edit, a copy tool,
    a forger). publish_period calls place(n) on every old fapiao/ name while deciding whether to keep the
    exports, and UnsafePath escapes as PublishIncomplete. Expected: the hint is ignored (exports rebuilt),
    exit 0. Actual: exit 5 ("refusing unsafe file name 'old copy.xlsx'") on this and every re-run, with
    advice ("fix that and re-run") that cannot be followed from the message."""
    out = tmp_path / "out"
    roster = _small_roster(tmp_path / "x.xlsx", "XX")
    assert cli("run", roster, "--period", "2026-09", "--out", out, "--workers", "1").returncode == 0
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"]["fapiao/old copy.xlsx"] = "0" * 64
    (out / "manifest.json").write_text(json.dumps(manifest))
    r = cli("run", roster, "--period", "2026-09", "--out", out, "--workers", "1")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("patch", [{"chain_head": []}, {"chain_head": {"a": 1}}, {"total_fen": "x"}])
def test_verify_malformed_manifest_is_one_line(tmp_path, patch):
    """Expected: exit 1 (or 2) and a MISMATCH line naming the manifest field. Actual: TypeError: unhashable
    type: 'list' (verify._identity_and_chain: ``kept not in chain.heads``) and ValueError from plain_yuan in
    _check_counts."""
    out = tmp_path / "out"
    assert cli("run", _small_roster(tmp_path / "x.xlsx", "XX"), "--period", "2026-09", "--out", out,
               "--workers", "1").returncode == 0
    manifest = json.loads((out / "manifest.json").read_text())
    manifest.update(patch)
    (out / "manifest.json").write_text(json.dumps(manifest))
    try:
        r = cli("verify", out)
    except Exception as exc:  # noqa: BLE001 - what a clerk sees as a traceback
        pytest.fail(f"verify raised {type(exc).__name__}: {exc}")
    assert r.returncode in (1, 2)


def test_verify_catches_a_notice_deleted_with_its_manifest_entry(tmp_path):
    """A forger (or a reseller's clerk who wants a customer to miss a renewal) deletes a renewal notice and
    its manifest entry (files, file_stats, counts). The ledger issued it for this prefix and period, and the
    kept roster still yields it. README: "Every document of the ledger for the folder's prefix and period is
    in the folder". Expected: verify names notices/N-renewal.pdf. Actual: clean (verify._audit_ledger skips
    a notice whose file name is not in the manifest's files)."""
    out = tmp_path / "out"
    roster = write_roster(tmp_path / "n.xlsx", [cust("A", D(2026, 10, 8), 3),
                                                cust("N", D(2025, 11, 15), 3, paid_through=D(2026, 11, 14))])
    assert cli("run", roster, "--period", "2026-10", "--out", out, "--workers", "1").returncode == 0
    notice = out / "notices" / "N-renewal.pdf"
    assert notice.is_file()
    notice.unlink()
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"].pop("notices/N-renewal.pdf")
    manifest["file_stats"].pop("notices/N-renewal.pdf")
    manifest["counts"]["notices"] = 0
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert cli("verify", out).returncode == 1


def test_dry_run_writes_nothing_to_the_ledger(tmp_path):
    """A forger drops an append-only trigger (verify reports it: "ledger trigger blobs_immutable is
    missing"); the clerk then runs `--dry-run`, which promises "nothing numbered or written". Expected: the
    ledger is untouched and verify still names the dropped trigger. Actual: the dry run executes the schema
    script (CREATE TRIGGER IF NOT EXISTS, INSERT OR IGNORE ledger_id), re-creating the trigger and erasing
    the evidence; a ledger whose ledger_id was removed gets a new identity the same way."""
    import sqlite3

    out = tmp_path / "out"
    roster = _small_roster(tmp_path / "x.xlsx", "XX")
    assert cli("run", roster, "--period", "2026-09", "--out", out, "--workers", "1").returncode == 0
    db = sqlite3.connect(out / "ledger.sqlite")
    db.execute("DROP TRIGGER blobs_immutable")
    db.commit()
    db.close()
    before = cli("verify", out)
    assert before.returncode == 1 and "blobs_immutable" in before.stdout
    assert cli("run", roster, "--period", "2026-09", "--out", out, "--dry-run").returncode == 0
    after = cli("verify", out)
    assert "blobs_immutable" in after.stdout


def _watch_once(root: Path) -> list[dict]:
    from invoicer.watch.service import Watcher, WatchOptions

    log = io.StringIO()
    opts = WatchOptions(inbox=root / "inbox", out=root / "out", once=True, settle_s=0.05, workers=1)
    Watcher(opts, log_to=log).serve()
    return [e for e in map(json.loads, log.getvalue().splitlines()) if e.get("event") == "file"]


def test_reseller_folder_named_like_the_ledger(tmp_path, capsys):
    """A reseller folder named ``ledger.sqlite`` (a SAFE_NAME) bills into OUT/ledger.sqlite/<period>/, under
    the shared ledger file. Expected: refused with a plain reason (or billed elsewhere). Actual: a traceback
    on the watcher's stderr and "internal error (NotADirectoryError ... '<OUT>/ledger.sqlite/2026-09')" in
    the reseller's .error.txt, which also shows the operator's OUT path."""
    (tmp_path / "inbox" / "ledger.sqlite").mkdir(parents=True)
    write_roster(tmp_path / "inbox" / "ledger.sqlite" / "roster-2026-09.xlsx", [cust("A1", D(2026, 9, 5), 5)])
    files = _watch_once(tmp_path)
    assert [e["result"] for e in files] == ["failed"]
    assert "Traceback" not in capsys.readouterr().err
    assert "internal error" not in files[0]["reason"]


def test_watcher_second_prefix_same_month_keeps_the_folder_consistent(tmp_path):
    """A reseller drops a roster naming invoice_prefix XX, then (same month) one without a prefix (the folder's
    default, R1). Both are billed into OUT/r1/2026-09/. Expected: refused (one roster is a reseller's whole
    month), or the manifest lists every invoice of the folder. Actual: the XX invoices stay in invoices/ but
    drop out of manifest.json, summary.xlsx and the fapiao export; verify says clean."""
    (tmp_path / "inbox" / "r1").mkdir(parents=True)
    write_roster(tmp_path / "inbox" / "r1" / "a-2026-09.xlsx", [cust("A1", D(2026, 9, 5), 5)],
                 reseller={"invoice_prefix": "XX"})
    first = _watch_once(tmp_path)
    assert [e["result"] for e in first] == ["billed"]
    write_roster(tmp_path / "inbox" / "r1" / "b-2026-09.xlsx", [cust("B1", D(2026, 9, 5), 5)])
    second = _watch_once(tmp_path)
    folder = tmp_path / "out" / "r1" / "2026-09"
    listed = {n for n in json.loads((folder / "manifest.json").read_text())["files"] if n.startswith("invoices/")}
    on_disk = {f"invoices/{p.name}" for p in (folder / "invoices").iterdir()}
    assert second[0]["result"] == "failed" or listed == on_disk
