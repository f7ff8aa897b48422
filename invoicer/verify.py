"""What an auditor runs: ``invoicer verify OUTDIR``, or ``invoicer verify FILE.pdf --ledger L`` for one PDF
(a customer's copy, an e-mail attachment): is it exactly a document the ledger issued?

The ledger is opened strictly read-only (LedgerReader: no schema script, no lock, nothing written), so a
write-protected archive can be audited and a running job is never waited for. Nothing is repaired: every
problem is listed, and the audit goes on after each one.

For a folder, both directions:

1. The ledger is this folder's: the manifest's ledger identity and chain head are this ledger's.
2. The ledger is intact: its hash chain links every run, document, prefix owner and series count to the
   one before (a row deleted, inserted or edited behind the triggers breaks it); each series still holds
   the count and highest number its last run left; the append-only triggers are in place; the columns of
   each document say what its hashed content says; its kept PDF bytes are there and intact.
3. Every document of the ledger for the folder's prefix and period is in the folder with the SHA-256 it
   was issued with; every file of invoices/, credit_notes/ and notices/, and every file the manifest lists,
   is a document of this ledger (with the hash the ledger recorded); the manifest's counts and total are
   the ledger's; no temporary file of an interrupted write is left.
4. Every invoice is recomputed from the roster and price-book bytes the ledger kept, and must say exactly
   what was issued; every credit note must negate the invoice it cancels; numbers are gapless.

What it cannot prove: a ledger rewritten wholesale by someone holding every file (chain recomputed,
manifest rewritten) is consistent. The answer is a head kept apart: ``--head HASH`` checks that the chain
still contains a head noted earlier (each manifest records one, and verify prints the current one).
"""
from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from . import documents as docs_mod
from . import pricebook
from .errors import InvoicerError
from .ledger import Issued, LedgerReader, NotALedger
from .money import fmt_yuan, plain_yuan
from .publish import bill_status, file_name_for, sha256

DOCUMENT_FOLDERS = ("invoices", "credit_notes", "notices")


@dataclass
class Audit:
    """The outcome of ``verify``: problems (each a tampering or a loss, exit 1), notes (facts that are not
    problems, e.g. records older than the chain), how many checks ran, and the ledger's chain head."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: int = 0
    head: str | None = None

    def __iter__(self):  # problems, checked = verify(...) as before
        return iter((self.problems, self.checked))


def verify(outdir: Path, ledger_path: Path | None = None, head: str | None = None) -> Audit:
    """Audit an output folder against its ledger (by default the one the manifest names). ``head``: a chain
    head the auditor kept; the ledger must still contain it. Returns an Audit; raises InvoicerError (exit 2)
    only when the folder has no readable manifest, since then there is nothing to audit."""
    audit = Audit()
    manifest_path = outdir / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = dict(manifest["files"])
        prefix, period = manifest["invoice_prefix"], manifest["period"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvoicerError(f"{manifest_path}: cannot read the manifest ({exc})") from None
    _check_manifest_files(outdir, files, audit)
    audit.problems += _temporary_files(outdir)
    if ledger_path is None:
        recorded = Path(str(manifest.get("ledger") or "ledger.sqlite"))
        ledger_path = recorded if recorded.is_absolute() else outdir / recorded
    try:
        ledger = LedgerReader(ledger_path)
    except NotALedger as exc:
        audit.problems.append(f"the ledger cannot be audited: {exc}")
        return audit
    try:
        _audit_ledger(ledger, outdir, manifest, files, prefix, period, head, audit)
    except sqlite3.Error as exc:  # a damaged page: say so, with everything found before it
        audit.problems.append(f"{ledger_path}: the ledger is damaged ({exc}); the audit stopped there")
    finally:
        ledger.close()
    return audit


def _audit_ledger(ledger: LedgerReader, outdir: Path, manifest: dict, files: dict[str, str], prefix: str,
                  period: str, head: str | None, audit: Audit) -> None:
    chain = _identity_and_chain(ledger, manifest, head, audit)
    pairs = _load_documents(ledger, audit)
    docs = [d for _, d in pairs]
    audit.checked += len(pairs)
    mine = [d for d in docs if d.prefix == prefix and d.period == period]
    by_file: dict[str, list[Issued]] = defaultdict(list)
    for d in docs:
        by_file[d.file_name].append(d)
    latest_notice = {d.file_name: d for d in docs if d.kind == "notice" and d.period == period}
    # the notices in force: those the folder's roster gives (priced again from the ledger's copy), so a notice
    # deleted together with its manifest entry is still missed; without that roster, the manifest's list
    repriced = _priced_from_manifest(ledger, manifest, prefix, period)
    priced = repriced[0]
    current = {file_name_for(n) for n in priced.notices} if priced is not None else set()
    bills = [d for d in mine if d.kind != "notice"]

    # the ledger's documents -> the folder
    compared: set[str] = set()
    for d in docs:
        if d.kind == "notice" and (latest_notice.get(d.file_name) is not d or
                                   (d.file_name not in files and not (d in mine and d.file_name in current))):
            continue
        path = outdir / d.file_name
        if not path.is_file():
            if d in mine:
                audit.problems.append(f"{d.file_name}: issued ({d.number or d.kind}) but missing from {outdir}")
            continue
        audit.checked += 1
        compared.add(d.file_name)
        if _hash_file(path) != d.file_sha256:
            audit.problems.append(f"{d.file_name}: differs from the file issued as {d.number or d.kind} "
                                  f"(SHA-256 differs from the ledger)")

    # the folder and the manifest -> the ledger's documents
    for folder in DOCUMENT_FOLDERS:
        if not (outdir / folder).is_dir():
            continue
        for path in sorted((outdir / folder).rglob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            name = path.relative_to(outdir).as_posix()
            audit.checked += 1
            if name not in by_file:
                listed = "listed in the manifest" if name in files else "not in the manifest"
                audit.problems.append(f"{name}: not a document this ledger issued ({listed})")
            elif name not in compared and _hash_file(path) not in {d.file_sha256 for d in by_file[name]}:
                audit.problems.append(f"{name}: differs from every document this ledger issued under that name")
    for name, digest in files.items():
        if PurePosixPath(name).parts[:1] not in [(f,) for f in DOCUMENT_FOLDERS]:
            continue
        audit.checked += 1
        issued = by_file.get(name)
        if not issued:
            if not (outdir / name).is_file():
                audit.problems.append(f"{name}: listed in the manifest, but this ledger never issued it")
        elif digest not in {d.file_sha256 for d in issued}:
            audit.problems.append(f"{name}: the manifest's SHA-256 is not the one the ledger issued it with")
    _check_counts(bills, manifest, prefix, period, audit)
    _check_summary(outdir / "summary.xlsx", bills, prefix, period, audit)
    _check_fapiao(outdir, bills, manifest, prefix, period, repriced, audit)

    audit.problems += _columns_match_content(pairs)
    # the folder's own roster was priced just above: its invoices are not priced a second time
    known = {} if priced is None else {
        (manifest["input"]["sha256"], manifest["pricebook"]["sha256"], period, prefix):
            {x["customer"]["customer_id"]: x for x in priced.invoices}}
    audit.problems += _recompute(ledger, docs, known)
    kept_problems, kept = _kept_bytes(ledger, pairs, chain)
    audit.problems += kept_problems
    audit.checked += kept
    audit.problems += _gapless(ledger)
    audit.problems += ledger.series_problems()
    audit.problems += ledger.trigger_problems()
    audit.checked += 3


def _identity_and_chain(ledger: LedgerReader, manifest: dict, head: str | None, audit: Audit):
    """The manifest's ledger is this one (identity, and its chain still holds the manifest's head)."""
    chain = ledger.check_chain()
    audit.problems += chain.problems
    audit.notes += chain.notes
    audit.head = chain.head
    audit.checked += chain.links + 1
    wanted_id = manifest.get("ledger_id")
    if wanted_id is None:
        audit.notes.append("the manifest was written before manifests named their ledger: the ledger's "
                           "identity is not checked")
    elif wanted_id != ledger.ledger_id:
        audit.problems.append(f"the ledger is not the one this folder was issued from: the manifest names "
                              f"ledger {wanted_id}, this is {ledger.ledger_id or 'a ledger without an identity'} "
                              f"(the ledger was replaced, or the manifest points at another)")
    for what, kept in (("the manifest", manifest.get("chain_head")), ("--head", head)):
        if kept is None:
            continue
        if not isinstance(kept, str) or kept not in chain.heads:
            audit.problems.append(f"the ledger's hash chain does not contain the head {what} recorded ({kept}): "
                                  f"records were removed or the ledger was rewritten or replaced")
    return chain


def _load_documents(ledger: LedgerReader, audit: Audit) -> list[tuple[sqlite3.Row, Issued]]:
    """Every document row whose recorded content can be read, with it (the others are problems)."""
    pairs = []
    for r in ledger.db.execute("SELECT * FROM documents ORDER BY id"):
        try:
            pairs.append((r, ledger._issued(r)))
        except (ValueError, TypeError):
            audit.problems.append(f"{r['number'] or r['file_name']}: its recorded content is not readable JSON")
    return pairs


def _check_manifest_files(outdir: Path, files: dict[str, str], audit: Audit) -> None:
    for name, expected in files.items():
        audit.checked += 1
        parts = PurePosixPath(name).parts
        if PurePosixPath(name).is_absolute() or ".." in parts or not parts:
            audit.problems.append(f"{name}: the manifest lists a path outside the folder")
            continue
        path = outdir / name
        if not path.is_file():
            audit.problems.append(f"{name}: listed in the manifest but missing")
        elif _hash_file(path) != expected:
            audit.problems.append(f"{name}: changed since it was written (SHA-256 differs from the manifest)")


def _temporary_files(outdir: Path) -> list[str]:
    problems = []
    for folder in (outdir, *(outdir / f for f in DOCUMENT_FOLDERS)):
        if folder.is_dir():
            for tmp in sorted(folder.glob(".*.tmp")):
                problems.append(f"{tmp.relative_to(outdir).as_posix()}: a temporary file left by an interrupted "
                                f"write (the next run of this folder removes it)")
    return problems


def _check_counts(listed: list[Issued], manifest: dict, prefix: str, period: str, audit: Audit) -> None:
    """The manifest's invoice and credit-note counts and total are what the ledger issued for the period
    (``listed``: the ledger's invoices and credit notes of the folder's prefix and period)."""
    cancelled = {d.cancels for d in listed if d.kind == "credit_note"}
    ledger_counts = {"invoices": sum(1 for d in listed if d.kind == "invoice" and d.number not in cancelled),
                     "credit_notes": sum(1 for d in listed if d.kind == "credit_note")}
    counts = manifest.get("counts") or {}
    audit.checked += 1
    for key, value in ledger_counts.items():
        if key in counts and counts[key] != value:
            audit.problems.append(f"manifest: {counts[key]} {key.replace('_', ' ')}, the ledger issued {value} "
                                  f"for {prefix} {period}")
    total = sum(d.content.get("total_fen", 0) for d in listed)
    if "total_fen" in manifest and manifest["total_fen"] != total:
        said = manifest["total_fen"]
        said = plain_yuan(said) if isinstance(said, int) and not isinstance(said, bool) else repr(said)
        audit.problems.append(f"manifest: total {said}, the ledger's documents of {prefix} {period} total "
                              f"{plain_yuan(total)}")


def _check_summary(path: Path, listed: list[Issued], prefix: str, period: str, audit: Audit) -> None:
    """The summary's invoices sheet lists exactly the ledger's invoices and credit notes of the period, with
    their customer, issue date, total and status (a summary rewritten with its manifest hash is caught)."""
    if not path.is_file():
        return
    from decimal import Decimal

    from openpyxl import load_workbook

    from .money import fen_to_decimal

    cancelled = {d.cancels for d in listed if d.kind == "credit_note"}
    want = {d.number: (d.customer_id, d.content.get("issue_date"), fen_to_decimal(d.content.get("total_fen", 0)),
                       bill_status(d.kind, d.number, cancelled))
            for d in listed}
    audit.checked += 1
    try:
        wb = load_workbook(path, read_only=True, data_only=True)
        rows = list(wb["invoices"].iter_rows(values_only=True))
        wb.close()
    except Exception as exc:  # a damaged or foreign file: openpyxl raises many kinds
        audit.problems.append(f"summary.xlsx: cannot be read as the summary ({type(exc).__name__}: {exc})")
        return
    header = list(rows[0]) if rows else []
    try:
        at = {c: header.index(c) for c in ("invoice_number", "customer_id", "issue_date", "total", "status")}
    except ValueError:
        audit.problems.append("summary.xlsx: the invoices sheet lacks its columns")
        return
    seen = set()
    for row in rows[1:]:
        number = row[at["invoice_number"]]
        seen.add(number)
        if number not in want:
            audit.problems.append(f"summary.xlsx: lists {number}, which this ledger did not issue for {prefix} {period}")
            continue
        when = row[at["issue_date"]]
        total = row[at["total"]]
        got = (row[at["customer_id"]], str(when)[:10] if when is not None else None,
               Decimal(str(total)) if isinstance(total, (int, float)) else total, row[at["status"]])
        if got != want[number]:
            audit.problems.append(f"summary.xlsx: {number} says customer {got[0]}, {got[1]}, total {got[2]}, "
                                  f"{got[3]}; the ledger: customer {want[number][0]}, {want[number][1]}, total "
                                  f"{want[number][2]}, {want[number][3]}")
    for number in sorted(set(want) - seen):
        audit.problems.append(f"summary.xlsx: does not list {number}")


COLUMN_OF_CONTENT = (("kind", "kind"), ("number", "number"), ("period", "period"), ("issue_date", "issue_date"),
                     ("total_fen", "total_fen"), ("cancels", "cancels"))




def _priced_from_manifest(ledger: LedgerReader, manifest: dict, prefix: str, period: str):
    """(priced, book, None): the manifest's roster priced again with its price book (both kept in the
    ledger), as the run that wrote the folder priced it; (None, None, why) when that cannot be done."""
    from .pipeline import price_roster_bytes

    try:
        roster_sha, book_sha = manifest["input"]["sha256"], manifest["pricebook"]["sha256"]
        roster_bytes, book_bytes = ledger.blob(roster_sha), ledger.blob(book_sha)
        if roster_bytes is None or book_bytes is None:
            return None, None, "the ledger does not hold the roster or price book the manifest names"
        book = dataclasses.replace(pricebook.parse(book_bytes, source="ledger:" + book_sha[:12]),
                                   default_prefix=prefix)
        return price_roster_bytes(roster_bytes, "ledger:" + roster_sha[:12], book, period), book, None
    except (InvoicerError, KeyError, TypeError, ValueError) as exc:
        return None, None, str(exc)

def _check_fapiao(outdir: Path, bills: list[Issued], manifest: dict, prefix: str, period: str, repriced,
                  audit: Audit) -> None:
    """The e-fapiao exports (what the clerk uploads to the tax platform) are rebuilt from the ledger: the
    period's bills, the price book and roster the manifest names (their bytes kept in the ledger). A file in
    fapiao/ that is not exactly the rebuilt one, a missing one and an extra one are problems: the manifest
    alone (not chained) cannot vouch for them."""
    import datetime as dt

    from .pricing.dates import month_bounds, to_date
    from .publish_fapiao import FOLDER, expected_exports

    folder = outdir / FOLDER
    if not folder.is_dir() and not any(str(n).startswith(FOLDER + "/") for n in manifest.get("files", {})):
        return  # a folder published before the exports existed
    priced, book, why = repriced
    if priced is None:
        audit.problems.append(f"fapiao/: the e-fapiao exports cannot be checked ({why})")
        return
    try:
        cancelled = {d.cancels for d in bills if d.kind == "credit_note"}
        listed = sorted(({**d.content, "status": bill_status(d.kind, d.number, cancelled)} for d in bills),
                        key=lambda x: x["number"])
        created = dt.datetime.combine(to_date(month_bounds(period)[1]), dt.time())
        expected, _ = expected_exports(prefix, period, listed, book, priced.roster, created)
    except (InvoicerError, KeyError, TypeError, ValueError) as exc:
        audit.problems.append(f"fapiao/: the e-fapiao exports cannot be rebuilt from the ledger ({exc})")
        return
    on_disk = {f"{FOLDER}/{p.name}" for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")} \
        if folder.is_dir() else set()
    for name, data in sorted(expected.items()):
        audit.checked += 1
        if name not in on_disk:
            audit.problems.append(f"{name}: missing (the ledger's bills of {prefix} {period} make it)")
        elif _hash_file(outdir / name) != sha256(data):
            audit.problems.append(f"{name}: is not the e-fapiao export of the ledger's bills of {prefix} {period} "
                                  f"(rebuilt from the ledger, it differs: altered after it was written)")
    for name in sorted(on_disk - set(expected)):
        audit.problems.append(f"{name}: not an export of the ledger's bills of {prefix} {period}")

def _columns_match_content(pairs: list[tuple[sqlite3.Row, Issued]]) -> list[str]:
    """A document's columns (what ``verify FILE.pdf`` prints, what numbering reads) say what its hashed
    content says: an UPDATE of total_fen or issue_date behind the triggers is caught even without a chain."""
    problems = []
    for r, d in pairs:
        c = d.content
        label = r["number"] or r["file_name"]
        for column, key in COLUMN_OF_CONTENT:
            recorded = c.get(key, 0 if key == "total_fen" else None)
            if r[column] != recorded:
                problems.append(f"{label}: the ledger's {column} column says {r[column]!r}, its hashed content "
                                f"says {recorded!r} (edited behind the ledger's back)")
        if r["customer_id"] != (c.get("customer") or {}).get("customer_id"):
            problems.append(f"{label}: the ledger's customer_id column differs from its hashed content")
    return problems


def verify_pdf(path: Path, ledger_path: Path, head: str | None = None) -> tuple[list[str], list[str]]:
    """(problems, findings) for one PDF: a document issued byte for byte, or what it is not. It certifies
    a document only when the document's row matches its hashed content and the ledger's chain is intact
    (so a forged total or date, or a swapped file with a forged hash, is refused). Raises InvoicerError
    (exit 2) when the PDF cannot be read; an unusable ledger is a problem (exit 1)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvoicerError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    digest = sha256(data)
    try:
        ledger = LedgerReader(ledger_path)
    except NotALedger as exc:
        if not Path(ledger_path).exists():
            raise
        return [f"the ledger cannot be audited: {exc}"], []
    try:
        sql = ("SELECT d.*, r.recorded_at FROM documents d LEFT JOIN runs r ON r.id = d.run_id WHERE {} "
               "ORDER BY d.id LIMIT 1")
        row = ledger.db.execute(sql.format("d.file_sha256 = ?"), (digest,)).fetchone()
        if row is None:
            row = ledger.db.execute(sql.format("d.number = ?"), (path.stem,)).fetchone()
            if row is not None:
                return [f"{path.name}: not the file issued as {row['number']} (issued SHA-256 "
                        f"{row['file_sha256']}, this file {digest}); re-running {row['period']} restores the "
                        f"issued file from the ledger"], []
            return [f"{path.name}: not a document this ledger issued (SHA-256 {digest})"], []
        what = row["number"] or f"the {row['kind']} for {row['customer_id']}"
        refused = _row_problems(ledger, row, head)
        if refused:
            return [f"{path.name}: matches the file recorded for {what}, but the ledger's record cannot be "
                    f"trusted, so it is not certified: {p}" for p in refused], []
        found = [f"{path.name}: issued as {what} ({row['kind']}, customer {row['customer_id']}, "
                 f"{row['period']}, total {fmt_yuan(row['total_fen'])} CNY, issued {row['issue_date']}, "
                 f"recorded {row['recorded_at']} UTC); unchanged since issue (SHA-256 {row['file_sha256']})"]
        if row["number"]:
            credit = ledger.db.execute("SELECT number, issue_date FROM documents WHERE kind = 'credit_note' AND "
                                       "cancels = ? ORDER BY id LIMIT 1", (row["number"],)).fetchone()
            if credit is not None:
                found.append(f"{path.name}: NOT IN FORCE: {row['number']} was cancelled by credit note "
                             f"{credit['number']} (issued {credit['issue_date']})")
        else:
            newer = ledger.db.execute("SELECT 1 FROM documents WHERE kind = 'notice' AND file_name = ? AND "
                                      "id > ? LIMIT 1", (row["file_name"], row["id"])).fetchone()
            if newer is not None:
                found.append(f"{path.name}: superseded: a newer {row['file_name']} was issued since")
        return [], found
    except sqlite3.Error as exc:
        return [f"{ledger_path}: the ledger is damaged ({exc})"], []
    finally:
        ledger.close()


def _row_problems(ledger: LedgerReader, row: sqlite3.Row, head: str | None) -> list[str]:
    """Why one document's record cannot be trusted (empty when it can)."""
    problems = []
    try:
        doc = ledger._issued(row)
    except (ValueError, TypeError):
        return ["its recorded content is not readable"]
    if doc.content_sha256 != docs_mod.content_hash(doc.content):
        problems.append("its recorded content does not match its recorded hash")
    problems += _columns_match_content([(row, doc)])
    if row["recorded_at"] is None:
        problems.append(f"the run that issued it (run {row['run_id']}) is missing")
    chain = ledger.check_chain()
    problems += chain.problems
    if head is not None and head not in chain.heads:
        problems.append(f"the ledger's hash chain does not contain the head you kept ({head})")
    problems += ledger.trigger_problems()
    kept = ledger.blob(doc.file_sha256)
    if kept is not None and sha256(kept) != doc.file_sha256:
        problems.append("the PDF bytes the ledger kept for it are damaged")
    elif kept is None and chain.covers("documents", row["id"]):
        problems.append("the PDF bytes the ledger kept for it are missing")
    return problems


def _hash_file(path: Path) -> str | None:
    try:
        return sha256(path.read_bytes())
    except OSError:
        return None


def _recompute(ledger: LedgerReader, docs: list[Issued], known: dict | None = None) -> list[str]:
    """Every invoice priced again from the roster and price book it was issued from (``known``: invoices by
    customer already priced, keyed like the cache); every credit note negates the invoice it cancels."""
    from .pipeline import price_roster_bytes

    problems = []
    cache: dict[tuple[str, str, str, str], dict[str, dict] | None] = dict(known or {})
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
            cache[key] = None
            try:
                roster_bytes, book_bytes = ledger.blob(d.input_sha256), ledger.blob(d.pricebook_sha256)
            except sqlite3.Error as exc:
                problems.append(f"{d.number}: the roster or price book it was priced from cannot be read ({exc})")
                continue
            if roster_bytes is None or book_bytes is None:
                problems.append(f"{d.number}: the ledger lost the roster or price book it was priced from")
                continue
            try:
                book = pricebook.parse(book_bytes, source="ledger:" + d.pricebook_sha256[:12])
                # a roster without invoice_prefix was priced with its run's default prefix (a drop folder's is
                # made from the folder's name), which is the prefix the document was numbered in
                book = dataclasses.replace(book, default_prefix=d.prefix)
                priced = price_roster_bytes(roster_bytes, "ledger:" + d.input_sha256[:12], book, d.period)
            except InvoicerError as exc:
                problems.append(f"{d.number}: the recorded roster or price book can no longer be priced ({exc})")
                continue
            cache[key] = {x["customer"]["customer_id"]: x for x in priced.invoices}
        if cache[key] is None:
            continue
        again = cache[key].get(d.customer_id)
        if again is None:
            problems.append(f"{d.number}: recomputing {d.period} from the recorded roster bills nothing for "
                            f"{d.customer_id}")
        elif docs_mod.content_hash(again) != d.content_sha256:
            problems.append(f"{d.number}: recomputing from the recorded roster and price book gives "
                            f"{plain_yuan(again['total_fen'])}, the invoice says {plain_yuan(d.content['total_fen'])}")
    return problems


def _kept_bytes(ledger: LedgerReader, pairs: list[tuple[sqlite3.Row, Issued]], chain) -> tuple[list[str], int]:
    """Each document's kept PDF bytes are there and hash to its file hash. A missing blob is a problem for
    every chained document (they are kept since before chaining) and for an older document whose run kept
    the others' bytes; an unreadable one is reported and the audit goes on."""
    problems, kept = [], 0
    have: dict[int, bool] = {}
    runs_keeping: set[int] = set()
    for r, d in pairs:
        try:
            data = ledger.blob(d.file_sha256)
        except sqlite3.Error as exc:
            problems.append(f"{d.file_name}: the PDF bytes the ledger kept for {d.number or d.kind} cannot be "
                            f"read ({exc})")
            continue
        have[r["id"]] = data is not None
        if data is None:
            continue
        runs_keeping.add(d.run_id)
        kept += 1
        if sha256(data) != d.file_sha256:
            problems.append(f"{d.file_name}: the PDF bytes the ledger kept for {d.number or d.kind} are damaged")
    for r, d in pairs:
        if have.get(r["id"], True):
            continue
        if chain.covers("documents", r["id"]) or d.run_id in runs_keeping:
            problems.append(f"{d.file_name}: the PDF bytes the ledger kept for {d.number or d.kind} are missing "
                            f"(deleted from the ledger)")
    return problems, kept


def _gapless(ledger: LedgerReader) -> list[str]:
    seqs = defaultdict(list)
    for row in ledger.db.execute("SELECT prefix, year, seq FROM documents WHERE seq IS NOT NULL"):
        seqs[(row[0], row[1])].append(row[2])
    problems = []
    for (prefix, year), s in seqs.items():
        if sorted(s) != list(range(1, len(s) + 1)):
            problems.append(f"numbers {prefix}-{year}: not gapless ({len(s)} documents, highest {max(s)})")
    return problems
