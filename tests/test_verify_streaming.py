"""verify reads the ledger a chunk of documents at a time (issue #13): a 100,000-customer month is audited in
one chunk of parsed snapshots plus compact per-document state, never with every document parsed at once;
and where the chunks fall changes nothing it reports. The folders are rendered without layout
(tests/pdfstub.py): verify compares files by hash."""
from __future__ import annotations

import dataclasses
import datetime as dt
import math
import sqlite3
import weakref

import pytest

from invoicer import ledger as ledger_mod
from invoicer import verify as verify_mod
from invoicer.pipeline import RunOptions, run

from .conftest import change, cust, stubbed_render, write_roster

D = dt.date
CUSTOMERS = 24


def _roster(path, extra_seats: int):
    """CUSTOMERS customers (half opened in September, half in October), two with a renewal notice, and A's
    seats changed by extra_seats (a different roster makes an amend cancel A's invoice)."""
    customers = [cust(f"C{i:02d}", D(2026, 9 + i % 2, 8), 3 + i % 5) for i in range(CUSTOMERS)]
    customers += [cust("A", D(2026, 5, 1), 5),
                  cust("N1", D(2025, 11, 15), 3, paid_through=D(2026, 11, 14)),
                  cust("N2", D(2025, 11, 20), 4, paid_through=D(2026, 11, 19))]
    return write_roster(path, customers, [change("A", D(2026, 10, 1), "add", extra_seats)])


@pytest.fixture(scope="module")
def ledger_of_three_runs(tmp_path_factory):
    """One ledger, three runs: September, October, and October amended (a credit note and its replacement):
    verifying October prices the folder's roster and two other rosters, and meets a credit note."""
    base = tmp_path_factory.mktemp("verify_streaming")
    ledger = base / "ledger.sqlite"
    with stubbed_render():
        for period, extra, amend in (("2026-09", 1, False), ("2026-10", 1, False), ("2026-10", 2, True)):
            report = run(RunOptions(roster=_roster(base / f"{period}-{extra}.xlsx", extra), period=period,
                                    out=base / period, ledger=ledger, amend=amend, workers=1, progress=False))
            assert report.rejects == []
    return base, ledger


def _documents(ledger) -> int:
    db = sqlite3.connect(ledger)
    try:
        return db.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
    finally:
        db.close()


def test_verify_never_holds_more_than_a_chunk_of_parsed_documents(ledger_of_three_runs, monkeypatch):
    """Every parsed document (ledger.Issued) verify makes is watched: with a chunk of 3, no more than a chunk
    and its credit notes' originals are alive at once, though the ledger holds many times more; the
    documents table is read in keyset chunks, one query per chunk. Reading every document at once (as verify
    did) would hold them all."""
    base, ledger = ledger_of_three_runs
    total = _documents(ledger)
    chunk = 3
    assert total >= 8 * chunk
    monkeypatch.setattr(verify_mod, "CHUNK", chunk)
    monkeypatch.setattr(verify_mod._ListedBills, "BATCH", chunk)
    alive, peak = [0], [0]
    real_issued = ledger_mod.LedgerReader._issued

    def gone():
        alive[0] -= 1

    def issued(self, row):
        d = real_issued(self, row)
        weakref.finalize(d, gone)
        alive[0] += 1
        peak[0] = max(peak[0], alive[0])
        return d

    reads = []
    real_chunks = ledger_mod.LedgerReader.document_row_chunks

    def chunks(self, size=1000):
        for rows in real_chunks(self, size):
            reads.append(len(rows))
            yield rows

    monkeypatch.setattr(ledger_mod.LedgerReader, "_issued", issued)
    monkeypatch.setattr(ledger_mod.LedgerReader, "document_row_chunks", chunks)
    audit = verify_mod.verify(base / "2026-10", ledger)
    assert audit.problems == []
    assert 0 < peak[0] <= 2 * chunk, f"{peak[0]} parsed documents alive at once (chunk {chunk}, {total} in all)"
    assert sum(reads) == total and len(reads) == math.ceil(total / chunk) and max(reads) == chunk


def _tamper(folder, ledger) -> None:
    """Several tamperings that each check across documents sees: a forged column, an unreadable snapshot,
    a replaced notice, a missing invoice, a kept PDF deleted, a summary left as it was."""
    db = sqlite3.connect(ledger)
    db.executescript("DROP TRIGGER documents_immutable; DROP TRIGGER blobs_undeletable;")
    number = db.execute("SELECT number FROM documents WHERE period = '2026-10' AND kind = 'invoice' "
                        "ORDER BY id LIMIT 1 OFFSET 3").fetchone()[0]
    db.execute("UPDATE documents SET total_fen = 1 WHERE number = ?", (number,))
    db.execute("UPDATE documents SET content_json = 'not json' WHERE period = '2026-09' AND kind = 'invoice' "
               "AND id = (SELECT MIN(id) FROM documents WHERE period = '2026-09')")
    db.execute("DELETE FROM blobs WHERE sha256 = (SELECT file_sha256 FROM documents WHERE period = '2026-10' "
               "AND kind = 'invoice' ORDER BY id DESC LIMIT 1)")
    db.commit()
    db.close()
    next((folder / "notices").iterdir()).write_bytes(b"%PDF-1.7 not the notice issued")
    sorted((folder / "invoices").iterdir())[5].unlink()


def test_where_the_chunks_fall_changes_nothing_verify_reports(ledger_of_three_runs, monkeypatch, tmp_path):
    """A tampered folder audited with the default chunk, with one document per chunk and with one other
    roster kept priced at a time: the same problems in the same order, the same notes and count of checks."""
    import shutil

    base, ledger = ledger_of_three_runs
    folder, copy = tmp_path / "2026-10", tmp_path / "ledger.sqlite"
    shutil.copytree(base / "2026-10", folder)
    shutil.copy(ledger, copy)
    _tamper(folder, copy)
    audits = []
    for chunk, kept in ((verify_mod.CHUNK, verify_mod.PRICED_KEPT), (1, 1), (3, 1)):
        monkeypatch.setattr(verify_mod, "CHUNK", chunk)
        monkeypatch.setattr(verify_mod, "PRICED_KEPT", kept)
        monkeypatch.setattr(verify_mod._ListedBills, "BATCH", chunk)
        audits.append(dataclasses.asdict(verify_mod.verify(folder, copy)))
    assert audits[0] == audits[1] == audits[2]
    problems = audits[0]["problems"]
    for needle in ("the ledger's total_fen column says 1", "its recorded content is not readable JSON",
                   "notices/", "but missing from", "are missing (deleted from the ledger)"):
        assert any(needle in p for p in problems), (needle, problems)
