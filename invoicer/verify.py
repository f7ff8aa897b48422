"""What an auditor runs: ``invoicer verify OUTDIR``, or ``invoicer verify FILE.pdf --ledger L`` for one PDF
(a customer's copy, an e-mail attachment): is it exactly a document the ledger issued?

For a folder:

1. Every file the manifest lists still has the SHA-256 the manifest recorded.
2. Every issued document of the manifest's period is on disk with the SHA-256 the ledger recorded when
   it was issued (documents of other periods are checked too when their file is in this folder).
3. Every invoice is recomputed from the roster and price book bytes the ledger kept, and must say
   exactly what was issued; every credit note must negate the invoice it cancels.
4. The PDF bytes the ledger kept at issue (ledgers written before it kept them have none) still have
   the SHA-256 recorded for the document.
5. Numbers are gapless per prefix and year, and the ledger's immutability triggers are in place.
"""
from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from pathlib import Path

from . import documents as docs_mod
from . import pricebook
from .errors import InvoicerError
from .ledger import Ledger
from .money import fmt_yuan, plain_yuan
from .publish import sha256


def verify(outdir: Path, ledger_path: Path | None = None) -> tuple[list[str], int]:
    problems: list[str] = []
    checked = 0
    manifest_path = outdir / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvoicerError(f"{manifest_path}: cannot read the manifest ({exc})") from None
    for name, expected in manifest["files"].items():
        checked += 1
        path = outdir / name
        if not path.is_file():
            problems.append(f"{name}: listed in the manifest but missing")
        elif sha256(path.read_bytes()) != expected:
            problems.append(f"{name}: changed since it was written (SHA-256 differs from the manifest)")
    if ledger_path is None:
        recorded = Path(manifest.get("ledger", "ledger.sqlite"))
        ledger_path = recorded if recorded.is_absolute() else outdir / recorded
    ledger = _open_ledger(ledger_path)
    try:
        docs = ledger.documents()
        prefix, period = manifest["invoice_prefix"], manifest["period"]
        latest_notice = {d.file_name: d for d in docs if d.kind == "notice" and d.period == period}
        for d in docs:
            path = outdir / d.file_name
            mine = d.prefix == prefix and d.period == period
            if d.kind == "notice" and latest_notice.get(d.file_name) is not d:
                continue
            if d.kind == "notice" and d.file_name not in manifest["files"]:
                continue
            if not path.is_file():
                if mine:
                    problems.append(f"{d.file_name}: issued ({d.number or d.kind}) but missing from {outdir}")
                continue
            checked += 1
            if sha256(path.read_bytes()) != d.file_sha256:
                problems.append(f"{d.file_name}: differs from the file issued as {d.number or d.kind} "
                                f"(SHA-256 differs from the ledger)")
        problems += _recompute(ledger, docs)
        checked += len(docs)
        kept_problems, kept = _kept_bytes(ledger, docs)
        problems += kept_problems
        checked += kept
        problems += _gapless(ledger)
        problems += _triggers(ledger)
        checked += 2
    finally:
        ledger.close()
    return problems, checked


def verify_pdf(path: Path, ledger_path: Path) -> tuple[list[str], list[str]]:
    """(problems, findings) for one PDF: a document issued byte for byte, or what it is not."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvoicerError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    digest = sha256(data)
    ledger = _open_ledger(ledger_path)
    try:
        sql = ("SELECT d.*, r.recorded_at FROM documents d JOIN runs r ON r.id = d.run_id WHERE {} "
               "ORDER BY d.id LIMIT 1")
        row = ledger.db.execute(sql.format("d.file_sha256 = ?"), (digest,)).fetchone()
        if row is not None:
            what = row["number"] or f"the {row['kind']} for {row['customer_id']}"
            return [], [f"{path.name}: issued as {what} ({row['kind']}, customer {row['customer_id']}, "
                        f"{row['period']}, total {fmt_yuan(row['total_fen'])} CNY, recorded "
                        f"{row['recorded_at']} UTC); unchanged since issue (SHA-256 {row['file_sha256']})"]
        row = ledger.db.execute(sql.format("d.number = ?"), (path.stem,)).fetchone()
        if row is not None:
            return [f"{path.name}: not the file issued as {row['number']} (issued SHA-256 {row['file_sha256']}, "
                    f"this file {digest}); re-running {row['period']} restores the issued file from the "
                    f"ledger"], []
        return [f"{path.name}: not a document this ledger issued (SHA-256 {digest})"], []
    finally:
        ledger.close()


def _open_ledger(path: Path) -> Ledger:
    if not path.is_file():
        raise InvoicerError(f"{path}: no ledger there (pass --ledger)")
    return Ledger(path)


def _recompute(ledger: Ledger, docs) -> list[str]:
    from .pipeline import price_roster_bytes

    problems = []
    cache: dict[tuple[str, str, str, str], dict[str, dict]] = {}
    by_number = {d.number: d for d in docs if d.number}
    for d in docs:
        if d.content_sha256 != docs_mod.content_hash(d.content):
            problems.append(f"{d.number or d.file_name}: recorded content does not match its recorded hash")
            continue
        if d.kind == "credit_note":
            original = by_number.get(d.content.get("cancels"))
            if original is None or original.content["total_fen"] != -d.content["total_fen"] or \
                    [x["amount_fen"] for x in original.content["lines"]] != [-x["amount_fen"] for x in d.content["lines"]]:
                problems.append(f"{d.number}: credit note does not negate the invoice it cancels")
            continue
        if d.kind != "invoice":
            continue
        key = (d.input_sha256, d.pricebook_sha256, d.period, d.prefix)
        if key not in cache:
            roster_bytes, book_bytes = ledger.blob(d.input_sha256), ledger.blob(d.pricebook_sha256)
            if roster_bytes is None or book_bytes is None:
                problems.append(f"{d.number}: the ledger lost the roster or price book it was priced from")
                continue
            book = pricebook.parse(book_bytes, source="ledger:" + d.pricebook_sha256[:12])
            # a roster without invoice_prefix was priced with its run's default prefix (a drop folder's is
            # made from the folder's name), which is the prefix the document was numbered in
            book = dataclasses.replace(book, default_prefix=d.prefix)
            priced = price_roster_bytes(roster_bytes, "ledger:" + d.input_sha256[:12], book, d.period)
            cache[key] = {x["customer"]["customer_id"]: x for x in priced.invoices}
        again = cache[key].get(d.customer_id)
        if again is None:
            problems.append(f"{d.number}: recomputing {d.period} from the recorded roster bills nothing for "
                            f"{d.customer_id}")
        elif docs_mod.content_hash(again) != d.content_sha256:
            problems.append(f"{d.number}: recomputing from the recorded roster and price book gives "
                            f"{plain_yuan(again['total_fen'])}, the invoice says {plain_yuan(d.content['total_fen'])}")
    return problems


def _kept_bytes(ledger: Ledger, docs) -> tuple[list[str], int]:
    problems, kept = [], 0
    for d in docs:
        data = ledger.blob(d.file_sha256)
        if data is None:
            continue
        kept += 1
        if sha256(data) != d.file_sha256:
            problems.append(f"{d.file_name}: the PDF bytes the ledger kept for {d.number or d.kind} are damaged")
    return problems, kept


def _gapless(ledger: Ledger) -> list[str]:
    seqs = defaultdict(list)
    for row in ledger.db.execute("SELECT prefix, year, seq FROM documents WHERE seq IS NOT NULL"):
        seqs[(row[0], row[1])].append(row[2])
    problems = []
    for (prefix, year), s in seqs.items():
        if sorted(s) != list(range(1, len(s) + 1)):
            problems.append(f"numbers {prefix}-{year}: not gapless ({len(s)} documents, highest {max(s)})")
    return problems


def _triggers(ledger: Ledger) -> list[str]:
    names = {r[0] for r in ledger.db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    need = {"documents_immutable", "documents_undeletable", "blobs_immutable", "blobs_undeletable"}
    return [f"ledger trigger {n} is missing: issued records could be edited" for n in sorted(need - names)]
