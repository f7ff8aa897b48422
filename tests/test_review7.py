"""An attacker's review (h-review, session 7): a hostile reseller, a careless clerk and a tamperer who wants an
auditor's ``invoicer verify`` to pass over altered output. Each test states the promise it attacks, what was
expected and what happens today; the ones marked ``xfail(strict=True)`` fail today for the defect they name
and turn green (and must then lose the mark) when it is fixed. The plain tests are attacks that held.

verify compares files by hash and re-derives amounts from the ledger's snapshots, never from a PDF's text: the
folders are rendered without layout (tests/pdfstub.py).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import shutil
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import openpyxl
import pytest

from .conftest import (
    change,
    copy_of,
    cust,
    issued_month,
    run_cli,
    stubbed_render,
    write_roster,
)

D = dt.date
TAX_A = "91350100M000100Y43"  # a valid 统一社会信用代码 (tests/test_fapiao.py): bills go into the fapiao export
PERIOD = "2026-10"
pytestmark = pytest.mark.usefixtures("stub_render")


cli = run_cli  # the CLI in-process: returncode, stdout, stderr; an exception propagates (a traceback)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))


def write_manifest(folder: Path, m: dict) -> None:
    (folder / "manifest.json").write_text(json.dumps(m, indent=2, ensure_ascii=False, sort_keys=True) + "\n",
                                          encoding="utf-8")


def forget(m: dict, name: str) -> None:
    """Take a file out of a manifest as a forger would (its hash and its inode state)."""
    m["files"].pop(name)
    m.get("file_stats", {}).pop(name, None)


def rehash(folder: Path, m: dict, name: str) -> None:
    """The manifest is not chained: a forger who changed a file puts its new hash there."""
    m["files"][name] = sha(folder / name)
    m.get("file_stats", {}).pop(name, None)


def mismatches(r) -> str:
    return "\n".join(line for line in r.stdout.splitlines() if line.startswith("MISMATCH"))


# -- one folder: three bills with tax ids (so the e-fapiao export has rows), a renewal notice ---------------
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return issued_month(tmp_path_factory.mktemp("review7"),
                        [cust("A", D(2026, 5, 1), 5, tax_id=TAX_A), cust("B", D(2026, 10, 8), 3, tax_id=TAX_A),
                         cust("C", D(2026, 10, 20), 4, tax_id=TAX_A),
                         cust("N", D(2025, 11, 15), 3, paid_through=D(2026, 11, 14))],
                        [change("A", D(2026, 10, 1), "add", 2)], PERIOD)


@pytest.fixture
def folder(built, tmp_path):
    return copy_of(built.out, tmp_path)


def test_the_folder_as_built_is_clean_and_holds_what_the_attacks_assume(built):
    names = sorted(p.relative_to(built.out).as_posix() for p in built.out.rglob("*") if p.is_file())
    assert names == ["fapiao/QQ-2026-10.xlsx", "invoices/QQ-2026-000001.pdf", "invoices/QQ-2026-000002.pdf",
                     "invoices/QQ-2026-000003.pdf", "ledger.sqlite", "manifest.json", "notices/N-renewal.pdf",
                     "summary.xlsx"]
    r = cli("verify", built.out)
    assert r.returncode == 0, r.stdout


# -- 1. verify: a malformed manifest must be a MISMATCH line, never a traceback ------------------------------
@pytest.mark.parametrize("patch", [
    pytest.param({"counts": 1}, id="counts-int"),
    pytest.param({"counts": ["invoices"]}, id="counts-list"),
    pytest.param({"files": {"invoices/QQ-2026-000001.pdf": []}}, id="hash-list"),  # held since verify streams
    pytest.param({"files": {"invoices/QQ-2026-000001.pdf": {"sha256": "x"}}}, id="hash-object"),  # held too
    pytest.param({"period": None}, id="period-null"),
    pytest.param({"period": 202610}, id="period-int"),
])
def test_verify_of_a_malformed_manifest_is_a_mismatch_not_a_traceback(folder, patch):
    """Promise (README exit codes, BRIEF): no traceback ever reaches the user; verify lists what it finds
    (exit 1) or says the folder cannot be audited (exit 2). A forger, or a damaged copy, edits manifest.json
    (it is not chained). Expected: exit 1 or 2 with one line. Actual: TypeError / AttributeError."""
    m = read_manifest(folder)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(m.get(key), dict):
            m[key].update(value)
        else:
            m[key] = value
    write_manifest(folder, m)
    r = cli("verify", folder)
    assert r.returncode in (1, 2) and "Traceback" not in r.stderr


def test_well_formed_but_hostile_manifest_values_are_reported(folder):
    """Held: paths outside the folder, absolute paths, an unknown document and a wrong hash in the manifest
    are each a MISMATCH; nothing outside the folder is read."""
    m = read_manifest(folder)
    m["files"].update({"../outside.pdf": "0" * 64, "/etc/passwd": "0" * 64,
                       "invoices/QQ-2026-999999.pdf": "0" * 64, "summary.xlsx": "1" * 64})
    write_manifest(folder, m)
    r = cli("verify", folder)
    assert r.returncode == 1
    for needle in ("../outside.pdf: the manifest lists a path outside", "/etc/passwd: the manifest lists a path",
                   "invoices/QQ-2026-999999.pdf: listed in the manifest but missing", "summary.xlsx: changed"):
        assert needle in r.stdout, r.stdout


# -- 2. verify: the summary's invoices sheet "lists exactly the ledger's invoices" ---------------------------
def _edit_summary(folder: Path, edit) -> None:
    wb = openpyxl.load_workbook(folder / "summary.xlsx")
    edit(wb["invoices"])
    wb.save(folder / "summary.xlsx")
    m = read_manifest(folder)
    rehash(folder, m, "summary.xlsx")
    write_manifest(folder, m)


def test_a_summary_total_forged_with_its_manifest_hash_is_caught(folder):
    """Held: the invoices sheet's total is compared with the ledger."""
    def edit(ws):
        col = [c.value for c in ws[1]].index("total") + 1
        ws.cell(2, col).value = 1
    _edit_summary(folder, edit)
    r = cli("verify", folder)
    assert r.returncode == 1 and "summary.xlsx: QQ-2026-000001 says" in r.stdout, r.stdout


def test_a_summary_listing_a_bill_twice_is_caught(folder):
    """Promise (README "What verify proves"): "the summary's invoices sheet lists exactly the ledger's invoices
    and credit notes of the period". A forger (or a clerk's slip) repeats QQ-2026-000001's row, so the sheet's
    total column sums 5,000 CNY more than was billed, and puts the new hash in the manifest. Expected: exit 1
    naming the repeated row. Actual: clean."""
    _edit_summary(folder, lambda ws: ws.append([c.value for c in ws[2]]))
    r = cli("verify", folder)
    assert r.returncode == 1, r.stdout
    assert "QQ-2026-000001" in mismatches(r)


def test_a_summary_vat_and_buyer_name_forged_with_its_manifest_hash_are_caught(folder):
    """Promise (README "The clerk's month" 4.): "The bill, summary.xlsx (lines.net, lines.tax,
    invoices.net_total, tax_total, vat_rate) and the import file agree to the fen", and verify checks the
    invoices sheet against the ledger "with their customer ... total". A forger moves 100 CNY of one bill from
    VAT to net and renames its buyer in the summary, and rehashes it in the manifest. Expected: exit 1.
    Actual: clean."""
    def edit(ws):
        header = [c.value for c in ws[1]]
        net, tax = (ws.cell(2, header.index(k) + 1) for k in ("net_total", "tax_total"))
        from decimal import Decimal
        net.value, tax.value = Decimal(str(net.value)) + 100, Decimal(str(tax.value)) - 100
        ws.cell(2, header.index("customer_name") + 1).value = "某某空壳公司"
    _edit_summary(folder, edit)
    r = cli("verify", folder)
    assert r.returncode == 1, r.stdout


def test_a_summary_deleted_with_its_manifest_entry_is_caught(folder):
    """Promise (README "What verify proves"): the folder is audited in both directions, and the summary's
    invoices sheet must list the ledger's bills. A forger deletes summary.xlsx and its manifest entry.
    Expected: exit 1, "summary.xlsx: missing". Actual: clean."""
    (folder / "summary.xlsx").unlink()
    m = read_manifest(folder)
    forget(m, "summary.xlsx")
    write_manifest(folder, m)
    r = cli("verify", folder)
    assert r.returncode == 1, r.stdout


# -- 3. verify: the e-fapiao export -----------------------------------------------------------------------
def test_the_fapiao_export_deleted_with_its_manifest_entry_is_caught(folder):
    """Promise (verify._check_fapiao's own docstring and README): the exports "are rebuilt from the ledger ...
    a missing one ... [is a problem]: the manifest alone (not chained) cannot vouch for them". A forger removes
    fapiao/ (what the clerk uploads to the tax platform: three bills with tax ids) and its manifest entry.
    Expected: exit 1, "fapiao/QQ-2026-10.xlsx: missing". Actual: clean."""
    shutil.rmtree(folder / "fapiao")
    m = read_manifest(folder)
    forget(m, "fapiao/QQ-2026-10.xlsx")
    write_manifest(folder, m)
    r = cli("verify", folder)
    assert r.returncode == 1, r.stdout
    assert "fapiao/QQ-2026-10.xlsx" in mismatches(r)


def test_a_fapiao_export_forged_or_added_is_caught(folder):
    """Held: an amount changed in the export (hash rehashed in the manifest) and an extra export are named."""
    export = folder / "fapiao" / "QQ-2026-10.xlsx"
    wb = openpyxl.load_workbook(export)
    ws = wb["2-发票明细信息"]
    for row in ws.iter_rows(min_row=4):
        for c in row:
            if c.value == "5000.00" or c.value == "5000":
                c.value = "4000.00"
    wb.save(export)
    shutil.copy(export, folder / "fapiao" / "QQ-2026-10-part2.xlsx")
    m = read_manifest(folder)
    rehash(folder, m, "fapiao/QQ-2026-10.xlsx")
    write_manifest(folder, m)
    r = cli("verify", folder)
    assert r.returncode == 1
    assert "fapiao/QQ-2026-10.xlsx: is not the e-fapiao export" in r.stdout, r.stdout
    assert "fapiao/QQ-2026-10-part2.xlsx: not an export" in r.stdout, r.stdout


# -- 4. verify: documents ---------------------------------------------------------------------------------
def test_swapped_edited_deleted_and_extra_documents_are_caught(folder):
    """Held: two bills swapped (manifest rehashed), a notice edited, an invoice deleted with its manifest
    entry, and a copy of a bill in a sub-folder are each named; a forged ledger row (the JSON of a document,
    behind the dropped triggers) breaks the chain."""
    a, b = folder / "invoices" / "QQ-2026-000001.pdf", folder / "invoices" / "QQ-2026-000002.pdf"
    da, db_ = a.read_bytes(), b.read_bytes()
    a.write_bytes(db_)
    b.write_bytes(da)
    (folder / "notices" / "N-renewal.pdf").write_bytes(b"%PDF-1.7 not the notice")
    (folder / "invoices" / "QQ-2026-000003.pdf").unlink()
    (folder / "invoices" / "sub").mkdir()
    (folder / "invoices" / "sub" / "QQ-2026-000001.pdf").write_bytes(da)
    m = read_manifest(folder)
    for name in ("invoices/QQ-2026-000001.pdf", "invoices/QQ-2026-000002.pdf"):
        rehash(folder, m, name)
    forget(m, "invoices/QQ-2026-000003.pdf")
    write_manifest(folder, m)
    db = sqlite3.connect(folder / "ledger.sqlite")
    db.execute("DROP TRIGGER IF EXISTS documents_immutable")
    db.execute("UPDATE documents SET content_json = replace(content_json, '测试公司B', '测试公司X') "
               "WHERE number = 'QQ-2026-000002'")
    db.commit()
    db.close()
    r = cli("verify", folder)
    assert r.returncode == 1
    out = mismatches(r)
    for needle in ("invoices/QQ-2026-000001.pdf: differs", "invoices/QQ-2026-000002.pdf: differs",
                   "notices/N-renewal.pdf", "invoices/QQ-2026-000003.pdf: issued (QQ-2026-000003) but missing",
                   "invoices/sub/QQ-2026-000001.pdf: not a document this ledger issued",
                   "documents_immutable", "QQ-2026-000002: recorded content does not match"):
        assert needle in out, out


# -- 5. verify: one ledger for several resellers (the watcher's OUT/ledger.sqlite) --------------------------
@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """Two resellers' folders on one ledger, as the watcher keeps them (one ledger for every reseller and
    period) and as the README tells the clerk to keep months. Each reseller has a customer N (ids are the
    reseller's own: 'N', 'C001' collide across resellers) with a renewal notice in 2026-10."""
    base = tmp_path_factory.mktemp("review7-shared")
    x = write_roster(base / "x.xlsx", [cust("A", D(2026, 10, 8), 3),
                                       cust("N", D(2025, 11, 15), 3, paid_through=D(2026, 11, 14))],
                     reseller={"invoice_prefix": "XX"})
    y = write_roster(base / "y.xlsx", [cust("B", D(2026, 10, 8), 4),
                                       cust("N", D(2025, 11, 15), 9, name="另一家公司", paid_through=D(2026, 11, 14))],
                     reseller={"invoice_prefix": "YY"})
    ledger = base / "ledger.sqlite"
    with stubbed_render():
        for roster, name in ((x, "x"), (y, "y")):
            r = cli("run", roster, "--period", PERIOD, "--out", base / name, "--ledger", ledger, "--workers", "1")
            assert r.returncode == 0, r.stdout + r.stderr
    return SimpleNamespace(base=base, ledger=ledger, x=base / "x", y=base / "y")


def test_the_shared_ledger_holds_two_notices_of_one_name(shared):
    db = sqlite3.connect(shared.ledger)
    assert db.execute("SELECT prefix, period, customer_id, file_name FROM documents WHERE kind = 'notice' "
                      "ORDER BY id").fetchall() == [("XX", PERIOD, "N", "notices/N-renewal.pdf"),
                                                     ("YY", PERIOD, "N", "notices/N-renewal.pdf")]
    db.close()
    assert sha(shared.x / "notices" / "N-renewal.pdf") != sha(shared.y / "notices" / "N-renewal.pdf")
    assert cli("verify", shared.y).returncode == 0


def test_an_untouched_folder_on_a_shared_ledger_verifies_clean(shared):
    """Promise (README "What verify proves"): an untouched folder is clean (exit 0). Folder XX was billed
    first; YY then issued a notice for its own customer N in the same ledger and period. Expected: verify XX
    exit 0. Actual: exit 1, "notices/N-renewal.pdf: differs from the file issued as notice"."""
    r = cli("verify", shared.x)
    assert r.returncode == 0, r.stdout


def test_another_resellers_notice_swapped_in_is_caught(shared, tmp_path):
    """Promise: every document of the folder's prefix and period is in the folder with the SHA-256 it was
    issued with. A forger replaces XX's renewal notice for N with YY's (same name, same ledger and period;
    another buyer, another renewal price) and puts its hash in XX's manifest. Expected: exit 1 naming the
    notice. Actual: clean."""
    x = tmp_path / "x"
    shutil.copytree(shared.x, x)
    shutil.copy(shared.y / "notices" / "N-renewal.pdf", x / "notices" / "N-renewal.pdf")
    m = read_manifest(x)
    rehash(x, m, "notices/N-renewal.pdf")
    m["ledger"] = str(shared.ledger)
    write_manifest(x, m)
    r = cli("verify", x)
    assert r.returncode == 1, r.stdout
    assert "notices/N-renewal.pdf" in mismatches(r)


def test_verify_pdf_does_not_call_a_notice_superseded_by_another_resellers(shared):
    """Promise (README): ``verify FILE.pdf --ledger L`` says what the PDF is. XX's renewal notice is XX's
    latest for N. Expected: certified, nothing about being superseded. Actual: "superseded: a newer
    notices/N-renewal.pdf was issued since"."""
    r = cli("verify", shared.x / "notices" / "N-renewal.pdf", "--ledger", shared.ledger)
    assert r.returncode == 0, r.stdout
    assert "issued as the notice for N" in r.stdout
    assert "superseded" not in r.stdout, r.stdout


def test_a_rerun_on_a_shared_ledger_restores_its_own_notice(shared, tmp_path):
    """Held: the run itself takes the notice in force per prefix (ledger.customer_notice_hashes): a lost XX
    notice is restored as XX's, not YY's."""
    x = tmp_path / "x"
    shutil.copytree(shared.x, x)
    ledger = tmp_path / "ledger.sqlite"
    shutil.copy(shared.ledger, ledger)
    (x / "notices" / "N-renewal.pdf").unlink()
    r = cli("run", shared.base / "x.xlsx", "--period", PERIOD, "--out", x, "--ledger", ledger, "--workers", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert sha(x / "notices" / "N-renewal.pdf") == sha(shared.x / "notices" / "N-renewal.pdf")


def test_another_folders_bill_added_to_this_folder_is_caught(shared, tmp_path):
    """Promise (pipeline._one_series_per_folder, README Outputs): an output folder holds one prefix and one
    period, and verify audits it "in both directions". A forger (or a clerk's stray copy) puts reseller YY's
    bill YY-2026-000001.pdf into XX's invoices/: a bill to another company, in no manifest entry, summary row
    or e-fapiao export of this folder. Expected: exit 1 naming it. Actual: clean."""
    x = tmp_path / "x"
    shutil.copytree(shared.x, x)
    shutil.copy(shared.y / "invoices" / "YY-2026-000001.pdf", x / "invoices" / "YY-2026-000001.pdf")
    m = read_manifest(x)
    m["ledger"] = str(shared.ledger)
    write_manifest(x, m)
    r = cli("verify", x)
    assert r.returncode == 1, r.stdout
    assert "YY-2026-000001" in mismatches(r)


def test_a_forged_grand_total_in_the_summary_is_caught_or_repaired(built, folder):
    """Promise (SPEC 1): auditors "open the PDFs and the summary ... and prove that nothing was altered after
    issue"; SPEC 5: the sum of lines equals each invoice total equals the summary totals. A forger lowers the
    totals sheet's grand total and puts the summary's new hash in the manifest. Expected: verify names
    summary.xlsx, or at least a re-run of the period restores it. Actual: verify clean and the re-run keeps
    it (README "What it cannot prove" says the other sheets are outside verify's proof)."""
    from decimal import Decimal

    wb = openpyxl.load_workbook(folder / "summary.xlsx")
    ws = wb["totals"]
    forged = 0
    for row in ws.iter_rows():
        for c in row:
            if isinstance(c.value, (int, float, Decimal)) and not isinstance(c.value, bool) and c.value > 1000:
                c.value = Decimal(str(c.value)) - 1000
                forged += 1
    assert forged
    wb.save(folder / "summary.xlsx")
    m = read_manifest(folder)
    rehash(folder, m, "summary.xlsx")
    write_manifest(folder, m)
    forged_sha = sha(folder / "summary.xlsx")
    caught = cli("verify", folder).returncode == 1
    r = cli("run", built.roster, "--period", PERIOD, "--out", folder, "--workers", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert caught or sha(folder / "summary.xlsx") != forged_sha


# -- 6. hostile or careless rosters: one bad cell is a rejected cell, the rest billed ------------------------
def _csv_pair(folder: Path, customers: str, changes: str = "customer_id,date,type,seats,reference\n") -> Path:
    folder.mkdir()
    (folder / "customers.csv").write_text(customers, encoding="utf-8")
    (folder / "changes.csv").write_text(changes, encoding="utf-8")
    return folder


def test_a_cell_over_the_length_limit_in_a_workbook_is_a_rejected_cell(tmp_path):
    """Held (the twin of the next test): in an .xlsx, B's 10,001-character address rejects B; A is billed."""
    roster = write_roster(tmp_path / "r.xlsx", [cust("A", D(2026, 10, 8), 3),
                                                cust("B", D(2026, 10, 9), 4, address="地" * 10_001)])
    r = cli("run", roster, "--period", PERIOD, "--out", tmp_path / "out", "--workers", "1")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "column address" in r.stderr and "longer than 10000 characters" in r.stderr
    assert (tmp_path / "out" / "invoices" / "QQ-2026-000001.pdf").is_file()


def test_a_cell_over_the_length_limit_in_a_csv_roster_is_a_rejected_cell(tmp_path):
    """Promise (README Limits): "characters in one cell (a longer cell is a rejected cell)"; SPEC 4: bad
    input never stops the batch; README Formats: the same content in any format gives the same invoices.
    A CSV pair whose customer B has a 10,001-character address. Expected: exit 1, B rejected (sheet, row,
    column, reason), A billed, as for the same roster in .xlsx. Actual: exit 2, "customers.csv: not a
    readable CSV file (field larger than field limit (10000) ...)", nothing billed (in the drop folder the
    reseller's whole file goes to failed/)."""
    pair = _csv_pair(tmp_path / "pair", "customer_id,name,opened_on,seats,address\n"
                                        f"A,甲公司,2026-10-08,3,\nB,乙公司,2026-10-09,4,{'地' * 10_001}\n")
    r = cli("run", pair, "--period", PERIOD, "--out", tmp_path / "out", "--workers", "1")
    assert r.returncode == 1, r.stdout + r.stderr
    assert (tmp_path / "out" / "invoices" / "QQ-2026-000001.pdf").is_file()


def test_a_stray_quote_in_a_csv_roster_does_not_make_later_customers_vanish(tmp_path):
    """Promise (SPEC 4): "Bad input never stops the batch and never vanishes: each bad row is rejected with
    sheet, row number, column, value and a plain reason ... everything else is billed". A clerk types a
    name with a leading quote ("北京 ...) into a hand-edited customers.csv. Expected: customers B and C are
    billed, or named as rejected (or the file is refused as malformed, exit 2). Actual: exit 1 with one
    reject (row 2, opened_on blank); B and C are in no bill and no reject."""
    pair = _csv_pair(tmp_path / "pair", "customer_id,name,opened_on,seats\n"
                                        'A,"北京甲公司,2026-10-08,3\nB,乙公司,2026-10-09,4\nC,丙公司,2026-10-10,5\n')
    r = cli("run", pair, "--period", PERIOD, "--out", tmp_path / "out", "--workers", "1")
    bills = sorted(p.name for p in (tmp_path / "out" / "invoices").glob("*.pdf"))
    billed_or_named = r.returncode == 2 or (len(bills) == 2 or all(f"row {n}" in r.stderr for n in (3, 4)))
    assert billed_or_named, (r.returncode, bills, r.stderr)


# -- 7. verify without --head: rows deleted by cutting the chain's tail -----------------------------------------
def _cut_the_tail(folder: Path, keep_documents: int) -> None:
    """What a forger with the folder does to unissue the last documents of the last run, computing no hash:
    delete those rows, the run's series record and the chain links from the first of them on (the chain
    left is a true prefix of the original), put the triggers back exactly, delete the files, rebuild the
    e-fapiao export with the product's own code as verify does, drop the bills' rows from the summary's
    invoices sheet, and rewrite the manifest (not chained: head, files, counts, total)."""
    import datetime as dt_

    from invoicer.ledger import APPEND_ONLY, LedgerReader, _append_only
    from invoicer.pricing.dates import month_bounds, to_date
    from invoicer.publish import bill_status
    from invoicer.publish_fapiao import expected_exports
    from invoicer.verify import _priced_from_manifest

    path = folder / "ledger.sqlite"
    db = sqlite3.connect(path)
    gone = db.execute("SELECT file_name, number FROM documents WHERE id > ?", (keep_documents,)).fetchall()
    first = db.execute("SELECT MIN(seq) FROM chain WHERE table_name = 'documents' AND row_id > ?",
                       (keep_documents,)).fetchone()[0]
    for table in ("documents", "series", "chain"):
        db.execute(f"DROP TRIGGER {table}_undeletable")
    db.execute("DELETE FROM documents WHERE id > ?", (keep_documents,))
    db.execute("DELETE FROM series")
    db.execute("DELETE FROM chain WHERE seq >= ?", (first,))
    head = db.execute("SELECT head_sha256 FROM chain ORDER BY seq DESC LIMIT 1").fetchone()[0]
    db.executescript("".join(_append_only(*spec) for spec in APPEND_ONLY if spec[0] in ("documents", "series",
                                                                                         "chain")))
    db.commit()
    db.close()
    m = read_manifest(folder)
    numbers = {n for _, n in gone if n}
    for name, _ in gone:
        (folder / name).unlink()
        forget(m, name)
    m["chain_head"] = head
    reader = LedgerReader(path)
    try:
        ids = [row["id"] for chunk in reader.document_row_chunks() for row in chunk]
        bills = [d for d in reader.issued_by_id(ids) if d.kind != "notice"
                 and d.prefix == m["invoice_prefix"] and d.period == m["period"]]
        priced, book, why = _priced_from_manifest(reader, m, m["invoice_prefix"], m["period"])
        assert priced is not None, why
        cancelled = {d.cancels for d in bills if d.kind == "credit_note"}
        listed = sorted(({**d.content, "status": bill_status(d.kind, d.number, cancelled)} for d in bills),
                        key=lambda x: x["number"])
        created = dt_.datetime.combine(to_date(month_bounds(m["period"])[1]), dt_.time())
        exports, _ = expected_exports(m["invoice_prefix"], m["period"], listed, book, priced.roster, created)
    finally:
        reader.close()
    for name, data in exports.items():
        (folder / name).write_bytes(data)
        rehash(folder, m, name)
    m["counts"].update(invoices=sum(1 for d in bills if d.kind == "invoice"),
                       notices=m["counts"].get("notices", 0) - sum(1 for _, n in gone if not n))
    m["total_fen"] = sum(d.content["total_fen"] for d in bills)
    write_manifest(folder, m)
    wb = openpyxl.load_workbook(folder / "summary.xlsx")
    ws = wb["invoices"]
    for i in range(ws.max_row, 1, -1):
        if ws.cell(i, 1).value in numbers:
            ws.delete_rows(i)
    wb.save(folder / "summary.xlsx")
    m = read_manifest(folder)
    rehash(folder, m, "summary.xlsx")
    write_manifest(folder, m)


def test_the_tail_cut_is_caught_with_a_head_kept_apart(built, folder):
    """Held (README "What it cannot prove"): the head an auditor kept apart is gone from the chain."""
    kept_head = read_manifest(built.out)["chain_head"]
    _cut_the_tail(folder, keep_documents=2)
    r = cli("verify", folder, "--head", kept_head)
    assert r.returncode == 1 and "does not contain the head --head recorded" in r.stdout, r.stdout


def test_the_last_bill_and_notice_unissued_by_cutting_the_chains_tail_is_caught(built, folder):
    """Promise (README "What verify proves"): "A row deleted (the last invoice, the notices, the runs ...) ...
    breaks it and is named" and "every document of the ledger for the folder's prefix and period is in the
    folder". A forger deletes C's bill QQ-2026-000003 and N's renewal notice from the ledger together with the
    tail of the chain (deleting rows, hashing nothing) and makes the folder match. Expected: exit 1 (the run
    that issued 3 numbers now has 2; the recorded roster bills C). Actual: clean, 'verify' prints the cut
    chain's head as the one to keep."""
    _cut_the_tail(folder, keep_documents=2)
    r = cli("verify", folder)
    assert r.returncode == 1, r.stdout


# -- 8. periods typed with a Chinese input method ---------------------------------------------------------
@pytest.mark.parametrize("command", ["check", "run"])
def test_a_period_typed_in_full_width_digits_is_one_line_not_a_traceback(tmp_path, command):
    """Promise (README exit codes): a bad option is exit 2 with one message, no traceback (and README Cells:
    full-width digits are read as ASCII). A clerk types the period with a Chinese input method:
    `--period ２０２６-１０`. Expected: exit 2 with one line, or the period read as 2026-10. Actual:
    ValueError: Error parsing datetime string "２０２６-１０" (a traceback)."""
    roster = write_roster(tmp_path / "r.xlsx", [cust("A", D(2026, 10, 8), 3)])
    extra = ["--out", tmp_path / "out", "--workers", "1"] if command == "run" else []
    r = cli(command, roster, "--period", "２０２６-１０", *extra)
    assert r.returncode in (0, 2), r.stdout + r.stderr


def test_a_drop_named_with_full_width_digits_gets_a_plain_reason_or_is_billed(tmp_path):
    """Promise (README drop folder): any name is handled; a file that cannot be billed goes to failed/ with
    "why in plain words". A reseller's file named roster-20２６-10.xlsx (an IME's full-width 2 and 6).
    Expected: billed for 2026-10, or failed with a reason about the name. Actual: failed with "internal
    error (ValueError: Error parsing datetime string ...)"."""
    from invoicer.watch.service import Watcher, WatchOptions

    inbox = tmp_path / "inbox" / "sz"
    inbox.mkdir(parents=True)
    write_roster(inbox / "roster-20２６-10.xlsx", [cust("A", D(2026, 10, 8), 3)])
    log = io.StringIO()
    Watcher(WatchOptions(inbox=tmp_path / "inbox", out=tmp_path / "out", once=True, settle_s=0.05, workers=1),
            log_to=log).serve()
    events = [e for e in map(json.loads, log.getvalue().splitlines()) if e.get("event") == "file"]
    assert len(events) == 1
    assert "internal error" not in json.dumps(events[0], ensure_ascii=False), events[0]


def test_a_notice_deleted_after_pointing_the_manifest_at_an_earlier_roster_is_caught(tmp_path):
    """Promise (README "What verify proves"; the fix of test_review_findings'
    test_verify_catches_a_notice_deleted_with_its_manifest_entry): every document of the ledger for the
    folder's prefix and period is in the folder. The month was billed from r1, then re-run from r2, which
    adds account N and issues N's renewal notice. A forger deletes the notice and its manifest entry and
    sets the manifest's input to r1's hash (r1 is in the ledger). Expected: exit 1 naming
    notices/N-renewal.pdf (the ledger's latest run of 2026-10 priced r2). Actual: clean."""
    r1 = write_roster(tmp_path / "r1.xlsx", [cust("A", D(2026, 10, 8), 3)])
    r2 = write_roster(tmp_path / "r2.xlsx", [cust("A", D(2026, 10, 8), 3),
                                             cust("N", D(2025, 11, 15), 3, paid_through=D(2026, 11, 14))])
    out = tmp_path / "out"
    for roster in (r1, r2):
        assert cli("run", roster, "--period", PERIOD, "--out", out, "--workers", "1").returncode == 0
    assert (out / "notices" / "N-renewal.pdf").is_file()
    (out / "notices" / "N-renewal.pdf").unlink()
    m = read_manifest(out)
    forget(m, "notices/N-renewal.pdf")
    m["counts"]["notices"] = 0
    m["input"]["sha256"] = sha(r1)
    write_manifest(out, m)
    r = cli("verify", out)
    assert r.returncode == 1, r.stdout
    assert "notices/N-renewal.pdf" in mismatches(r)


@pytest.mark.parametrize("where", ["QQ-2026-000004.pdf", "Invoices/QQ-2026-000004.pdf",
                                   "invoices/.QQ-2026-000004.pdf", "credit_notes_old/QQ-2026-000004.pdf"])
def test_a_forged_bill_elsewhere_in_the_folder_is_reported(folder, where):
    """Promise (README "What verify proves", both directions): the folder holds what the ledger issued and
    nothing else it did not (a temporary file left behind is already reported). A forger drops a fake bill
    QQ-2026-000004.pdf (a copy of a real one) where a reader of the folder finds it. Expected: exit 1 naming
    it. Actual: clean."""
    fake = folder / where
    fake.parent.mkdir(exist_ok=True)
    fake.write_bytes((folder / "invoices" / "QQ-2026-000001.pdf").read_bytes())
    r = cli("verify", folder)
    assert r.returncode == 1, r.stdout


def test_a_zip_of_chinese_named_csv_files_made_on_chinese_windows_is_read(tmp_path, monkeypatch):
    """Promise (README Formats): a CSV roster is "a .zip of customers.csv and changes.csv ... the Chinese
    names 客户.csv, 变更.csv, 经销商.csv work too. UTF-8 ... or GBK/GB18030 (what Excel and WPS in China
    save)". Windows' built-in "compressed folder" and many zip tools on a Chinese Windows store member names
    in the OEM code page (GBK) without the UTF-8 flag. Expected: read as 客户.csv and 变更.csv (exit 0).
    Actual: exit 2, the sheets are not found."""
    import zipfile

    def gbk_names(self):  # what such a zip tool writes: GBK bytes, flag bit 11 (UTF-8) clear
        return self.filename.encode("gbk"), self.flag_bits & ~0x800

    roster = tmp_path / "roster.zip"
    with monkeypatch.context() as mp:
        mp.setattr(zipfile.ZipInfo, "_encodeFilenameFlags", gbk_names)
        with zipfile.ZipFile(roster, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("客户.csv", "客户编号,客户名称,开通日期,工号数\nA,甲公司,2026-10-08,3\n".encode("gbk"))
            z.writestr("变更.csv", "客户编号,日期,类型,工号数\n".encode("gbk"))
    assert zipfile.ZipFile(roster).namelist() != ["客户.csv", "变更.csv"]  # as zipfile reads them
    r = cli("check", roster, "--period", PERIOD)
    assert r.returncode == 0, r.stdout + r.stderr


# -- 9. one folder, one month: two runs at once -----------------------------------------------------------
def test_two_months_started_at_once_into_one_folder_cannot_both_publish_there(tmp_path, monkeypatch):
    """Promise (pipeline._one_series_per_folder; README Outputs): an output folder holds one prefix and one
    period; billing another into it is refused before anything is numbered. A clerk starts 2026-10 and
    2026-05 into the same --out at the same moment (two terminals). The interleaving is made exact here: the
    2026-05 run starts (in a thread) just after the 2026-10 run passed its check. Found: both issued and
    published, the folder mixed (the check was read once, before the ledger lock). Now a run holds the
    folder from its check to its last file (pipeline._folder_lock): the 2026-05 run waits, then sees the
    2026-10 manifest and is refused (exit 2); the folder is one month's."""
    import threading

    from invoicer import pipeline
    from invoicer.errors import InvoicerError

    roster = write_roster(tmp_path / "r.xlsx", [cust("A", D(2026, 5, 8), 3), cust("B", D(2026, 10, 8), 4)])
    out = tmp_path / "out"
    original = pipeline._one_series_per_folder
    codes, started = [], []

    def month(period: str) -> int:
        try:
            pipeline.run(pipeline.RunOptions(roster=roster, period=period, out=out, workers=1, progress=False))
            return 0
        except InvoicerError as exc:
            return exc.exit_code

    def check_then_start_the_other_run(folder, prefix, period):
        claimed = original(folder, prefix, period)
        if period == "2026-10" and not started:
            started.append(threading.Thread(target=lambda: codes.append(month("2026-05"))))
            started[0].start()
        return claimed

    monkeypatch.setattr(pipeline, "_one_series_per_folder", check_then_start_the_other_run)
    codes.append(month("2026-10"))
    started[0].join(60)
    assert sorted(codes) == [0, 2], codes
    assert read_manifest(out)["period"] == "2026-10"
    assert sorted(p.name for p in (out / "invoices").iterdir()) == ["QQ-2026-000001.pdf"]


def test_a_run_into_a_folder_another_run_holds_waits_then_is_busy(tmp_path):
    """The folder lock waits --wait seconds like the ledger's, then exit 4 with one line; a dry run takes
    no lock (it writes nothing)."""
    from invoicer import pipeline

    roster = write_roster(tmp_path / "r.xlsx", [cust("B", D(2026, 10, 8), 4)])
    out = tmp_path / "out"
    with pipeline._folder_lock(out, 0, False):
        r = cli("run", roster, "--period", PERIOD, "--out", out, "--wait", "0.2", "--workers", "1")
        assert r.returncode == 4 and "another run is writing this folder" in r.stderr, r.stdout + r.stderr
        assert cli("run", roster, "--period", PERIOD, "--out", out, "--dry-run").returncode == 0
    assert cli("run", roster, "--period", PERIOD, "--out", out, "--workers", "1").returncode == 0


# -- 10. the careless clerk -------------------------------------------------------------------------------
def test_template_never_overwrites_an_existing_roster(tmp_path):
    """Promise (README Commands; SPEC: bad input never vanishes): `invoicer template roster.xlsx` writes a
    blank roster. A clerk runs the README's example in the folder where this month's filled-in roster.xlsx
    is. Expected: refused (exit 2, "roster.xlsx exists"), the roster intact. Actual: exit 0, the month's
    customers replaced by a blank template."""
    roster = write_roster(tmp_path / "roster.xlsx", [cust("A", D(2026, 10, 8), 3)])
    before = sha(roster)
    r = cli("template", roster)
    assert sha(roster) == before and r.returncode == 2, r.stdout + r.stderr
    assert "exists" in r.stderr and "--force" in r.stderr and "Traceback" not in r.stderr
    assert cli("template", roster, "--force").returncode == 0 and sha(roster) != before  # asked for: replaced
    assert cli("template", tmp_path / "new.xlsx").returncode == 0 and (tmp_path / "new.xlsx").is_file()


# -- 11. links in the output folder -----------------------------------------------------------------------
def _bill_made_a_link_out(folder: Path, tmp_path: Path) -> Path:
    """invoices/QQ-2026-000001.pdf replaced by a symbolic link to an identical copy outside the folder (whoever
    controls the target can change the bill later without touching the folder)."""
    bill = folder / "invoices" / "QQ-2026-000001.pdf"
    outside = tmp_path / "elsewhere" / "QQ-2026-000001.pdf"
    outside.parent.mkdir()
    shutil.copy(bill, outside)
    bill.unlink()
    bill.symlink_to(outside)
    return outside


def test_verify_reports_a_document_that_is_a_link_out_of_the_folder(folder, tmp_path):
    """Promise (README "What verify proves"): the folder holds the issued files. Expected: exit 1 naming
    invoices/QQ-2026-000001.pdf. Actual: clean."""
    _bill_made_a_link_out(folder, tmp_path)
    r = cli("verify", folder)
    assert r.returncode == 1 and "QQ-2026-000001" in mismatches(r), r.stdout


def test_a_rerun_replaces_a_document_that_is_a_link_out_of_the_folder(built, folder, tmp_path):
    """Promise (README Ledger and audit): a re-run on the same input "re-publishes missing files byte for
    byte", and exit 5 says "re-running the same command publishes the rest". Expected: exit 0, the bill a
    regular file again, the outside file untouched. Found: exit 5 on every re-run (publish resolved the link
    and refused a path outside). Now a link is never followed (publish.holds_regular): the re-run replaces
    it with the bill."""
    outside = _bill_made_a_link_out(folder, tmp_path)
    target = outside.read_bytes()
    r = cli("run", built.roster, "--period", PERIOD, "--out", folder, "--workers", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    bill = folder / "invoices" / "QQ-2026-000001.pdf"
    assert not bill.is_symlink() and bill.is_file() and outside.read_bytes() == target
    # a link to an identical copy inside the folder is replaced too (its target could change later)
    inside = folder / "copy.pdf"
    shutil.copy(bill, inside)
    bill.unlink()
    bill.symlink_to(inside)
    assert cli("run", built.roster, "--period", PERIOD, "--out", folder, "--workers", "1").returncode == 0
    assert not bill.is_symlink() and bill.read_bytes() == inside.read_bytes()


def test_a_manifest_entry_with_an_overlong_name_does_not_stop_the_audit(folder):
    """Promise (README "What verify proves"): verify "lists every problem it finds (exit 1) and goes on after
    each one"; exit 2 is for a folder without a readable manifest. A forger who altered a bill adds one
    entry with a 300-character name to the manifest. Expected: exit 1 listing the altered bill (and the odd
    entry). Actual: exit 2, "error: ...: File name too long", the altered bill not mentioned."""
    (folder / "invoices" / "QQ-2026-000002.pdf").write_bytes(b"%PDF-1.7 forged")
    m = read_manifest(folder)
    m["files"]["invoices/" + "y" * 300 + ".pdf"] = "0" * 64
    write_manifest(folder, m)
    r = cli("verify", folder)
    assert r.returncode == 1 and "QQ-2026-000002" in mismatches(r), r.stdout + r.stderr


# -- 12. verify: a ledger row's JSON edited into another shape ----------------------------------------------
def _edit_first_bills_json(folder: Path, make) -> None:
    db = sqlite3.connect(folder / "ledger.sqlite")
    db.execute("DROP TRIGGER documents_immutable")
    content = json.loads(db.execute("SELECT content_json FROM documents WHERE id = 1").fetchone()[0])
    db.execute("UPDATE documents SET content_json = ? WHERE id = 1", (json.dumps(make(content)),))
    db.commit()
    db.close()


_SHAPES = {
    "a-list": lambda c: [],
    "null": lambda c: None,
    "total-text": lambda c: {**c, "total_fen": "x"},
    "total-null": lambda c: {**c, "total_fen": None},
    "total-1e308": lambda c: {**c, "total_fen": 1e308},
    "lines-null": lambda c: {**c, "lines": None},
    "customer-text": lambda c: {**c, "customer": "A"},
}


@pytest.mark.parametrize("shape", list(_SHAPES))
def test_verify_of_a_ledger_row_edited_into_another_json_shape_is_a_mismatch(folder, shape):
    """Promise (README "What verify proves"; BRIEF): an edit behind the triggers breaks the chain "and is
    named"; no traceback ever reaches the user. A forger (or a damaged restore) rewrites QQ-2026-000001's
    content_json as valid JSON of another shape. Expected: exit 1, a MISMATCH naming QQ-2026-000001 (its
    content no longer matches its hash, the chain is broken). Actual: a traceback."""
    _edit_first_bills_json(folder, _SHAPES[shape])
    r = cli("verify", folder)
    assert r.returncode == 1 and "QQ-2026-000001" in mismatches(r), r.stdout


@pytest.mark.parametrize("shape", ["a-list", "null", "lines-null", "customer-text"])
def test_verify_of_one_pdf_whose_ledger_row_was_reshaped_is_not_certified(folder, shape):
    """Promise (README): `verify FILE.pdf --ledger L` certifies a PDF only if its record checks out, else
    says "not certified" (exit 1). Expected: exit 1, not certified. Actual: a traceback."""
    _edit_first_bills_json(folder, _SHAPES[shape])
    r = cli("verify", folder / "invoices" / "QQ-2026-000001.pdf", "--ledger", folder / "ledger.sqlite")
    assert r.returncode == 1 and "not certified" in r.stdout, r.stdout


def test_verify_of_a_number_edited_to_text_is_a_mismatch(folder):
    """Promise (BRIEF, README): verify names every problem, never a traceback. Every other column of every
    ledger table was edited to odd values in this review and verify named each; a document's seq edited to
    'x' behind the triggers is the one that crashes it. Expected: exit 1 naming the row. Actual: TypeError."""
    db = sqlite3.connect(folder / "ledger.sqlite")
    db.execute("DROP TRIGGER documents_immutable")
    db.execute("UPDATE documents SET seq = 'x' WHERE id = 1")
    db.commit()
    db.close()
    r = cli("verify", folder)
    assert r.returncode == 1 and "QQ-2026" in mismatches(r), r.stdout


def test_a_rerun_replaces_a_document_folder_that_is_a_link(built, folder, tmp_path):
    """The folder twin of the link test above: invoices/ replaced by a link to a copy elsewhere made every
    re-run fail (exit 5, 'refusing a path outside') and the sweep of temporary files would have followed it.
    The link is removed (never followed), the folder made again and its bills restored from the ledger."""
    outside = tmp_path / "elsewhere"
    shutil.copytree(folder / "invoices", outside)
    (outside / ".keep.pdf.1234.tmp").write_bytes(b"not ours")  # what a sweep through the link would delete
    shutil.rmtree(folder / "invoices")
    (folder / "invoices").symlink_to(outside, target_is_directory=True)
    r = cli("run", built.roster, "--period", PERIOD, "--out", folder, "--workers", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not (folder / "invoices").is_symlink() and len(list((folder / "invoices").glob("*.pdf"))) == 3
    assert (outside / ".keep.pdf.1234.tmp").exists() and len(list(outside.glob("*.pdf"))) == 3
    assert cli("verify", folder).returncode == 0
