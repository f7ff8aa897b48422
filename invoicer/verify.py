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
   the ledger's; no temporary file of an interrupted write is left. A folder holds one prefix and one
   period: another's document (on a shared ledger) is not its. Every other file, and every link (never
   followed), is a problem; the summary lists each bill once with what its snapshot says, its lines
   sheet's lines of each bill sum to the bill's total, and its totals sheet sums the bills; a missing
   summary, or missing e-fapiao exports of bills that carry the VAT split, are problems.
4. Every invoice is recomputed from the roster and price-book bytes the ledger kept, and must say exactly
   what was issued; every credit note must negate the invoice it cancels; numbers are gapless.
5. What was issued is still there: the roster of the ledger's latest run of the prefix and period (chained)
   bills customers that each have an invoice in force and gives notices the ledger holds, and each chained
   run holds as many numbered documents as it recorded issuing (a chain's tail cut without ``--head``).

What it cannot prove: a ledger rewritten wholesale by someone holding every file (chain recomputed,
manifest rewritten) is consistent. The answer is a head kept apart: ``--head HASH`` checks that the chain
still contains a head noted earlier (each manifest records one, and verify prints the current one).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import sqlite3
import stat
import sys
from array import array
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import SimpleNamespace

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


def _beside(outdir: Path, recorded: Path) -> Path:
    """The ledger a manifest names relative to its folder (``../../ledger.sqlite``): the path as written,
    its ``..`` taken lexically (a run writes it from the paths as given, links in them kept), else the path
    the file system resolves (the folder given by another route than the run's)."""
    lexical = Path(os.path.normpath(os.path.abspath(outdir / recorded)))
    physical = outdir / recorded
    return lexical if lexical.exists() or not physical.exists() else physical


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
        if isinstance(manifest["files"], dict):
            manifest["files"] = files  # one copy of a list as long as the folder
        manifest.pop("file_stats", None)  # never read: verify hashes every file whatever its inode says
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InvoicerError(f"{manifest_path}: cannot read the manifest ({exc})") from None
    # what the audit is of: without a prefix and a period there is nothing to compare the ledger with
    if not isinstance(prefix, str) or not prefix:
        raise InvoicerError(f"{manifest_path}: cannot read the manifest (its invoice_prefix {prefix!r} is not a "
                            f"prefix)")
    if not isinstance(period, str) or not re.fullmatch(r"[0-9]{4}-(0[1-9]|1[0-2])", period):
        raise InvoicerError(f"{manifest_path}: cannot read the manifest (its period {period!r} is not a month "
                            f"like 2026-10)")
    if not all(isinstance(k, str) for k in files):
        raise InvoicerError(f"{manifest_path}: cannot read the manifest (its files are not named by text)")
    if manifest.get("incomplete"):  # the claim a run writes before its commit (publish.claim_folder)
        audit.problems.append(f"manifest.json: publishing of {prefix} {period} did not finish (a run was "
                              f"stopped or failed after issuing): re-run the same command to publish the rest")
    _check_manifest_files(outdir, files, audit)
    audit.problems += _temporary_files(outdir)
    if ledger_path is None:
        recorded = Path(str(manifest.get("ledger") or "ledger.sqlite"))
        ledger_path = recorded if recorded.is_absolute() else _beside(outdir, recorded)
    scan = _scan_folder(outdir, ledger_path)
    audit.problems += scan.problems
    audit.notes += scan.notes
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


CHUNK = 1000  # document rows read and parsed at a time: with the compact state below, what bounds verify's memory
PRICED_KEPT = 2  # rosters other than the folder's kept priced at once (as hashes) while the ledger is walked

_ISSUED, _MANIFEST_HASH, _COMPARED = 1, 2, 4  # flags of a file name of the folder or its manifest
_NO_NUMBER = object()  # a bill whose snapshot has no "number" (the e-fapiao rebuild cannot sort it)


def _audit_ledger(ledger: LedgerReader, outdir: Path, manifest: dict, files: dict[str, str], prefix: str,
                  period: str, head: str | None, audit: Audit) -> None:
    """The ledger against the folder, in one pass over the ledger's documents a chunk of rows at a time
    (``CHUNK``): each document's own checks run as its chunk is read, and what the checks across documents
    need is kept compactly (per file name of the folder a few flags, per bill of the folder's period its
    number, customer, date and total, per notice in force its hash), never the parsed documents. The
    problems are listed in the order of the checks, each check's in id order, as when they ran one by one."""
    ledger.begin_read()  # one snapshot for every read below, however many queries the walk takes
    chain = _identity_and_chain(ledger, manifest, head, audit)
    # the folder's roster: the one the ledger's latest run of the prefix and period priced (the runs table
    # is chained; the manifest is not, and may name an earlier roster of the period), priced again from the
    # ledger's copy. The notices in force are those it gives, so a notice deleted together with its manifest
    # entry is still missed; every customer it bills must have an invoice in force
    run = ledger.latest_run(prefix, period)
    sources = manifest
    if run is not None:
        sources = {"input": {"sha256": run["input_sha256"]}, "pricebook": {"sha256": run["pricebook_sha256"]}}
        said = manifest.get("input") if isinstance(manifest.get("input"), dict) else {}
        if said.get("sha256") != run["input_sha256"]:
            audit.problems.append(f"manifest: input {said.get('sha256')!r:.80}, the ledger's latest run of {prefix} "
                                  f"{period} (run {run['id']}) priced {run['input_sha256']}")
    repriced = _priced_from_manifest(ledger, sources, prefix, period)
    priced = repriced[0]
    current = {file_name_for(n) for n in priced.notices} if priced is not None else set()
    # the folder's own roster was priced just above: its invoices are not priced a second time
    known = {} if priced is None else {
        (sources["input"]["sha256"], sources["pricebook"]["sha256"], period, prefix): _digests(priced.invoices)}
    billed = set(next(iter(known.values()))) if known else set()
    if priced is not None:  # only its roster is read again (the e-fapiao's buyers): its frames are let go
        repriced = (SimpleNamespace(roster=priced.roster), *repriced[1:])
        del priced
    walk = _Walk(ledger, outdir, files, prefix, period, current, chain, known)
    try:
        for rows in ledger.document_row_chunks(CHUNK):
            walk.chunk(rows)
    except sqlite3.Error:  # a damaged page: what was found before it is listed (verify says where it stopped)
        audit.problems += walk.unreadable
        raise
    given = walk.notices_in_force()
    audit.problems += walk.unreadable
    audit.problems += [p for _, p in sorted(walk.to_folder, key=lambda x: x[0])]
    audit.checked += walk.checked
    if run is not None and repriced[0] is not None:
        audit.problems += _run_to_ledger(run, billed, current - given, walk.bills, prefix, period)
        audit.checked += 1
    del billed
    _folder_to_ledger(outdir, walk, files, audit)
    _check_counts(walk.bills, manifest, prefix, period, audit)
    _check_summary(outdir / "summary.xlsx", ledger, walk.bills, prefix, period, audit)
    try:
        _check_fapiao(outdir, ledger, walk.bills, manifest, prefix, period, repriced, audit)  # reads bills again
    finally:  # (even if that read fails, the checks made during the walk are listed)
        audit.problems += walk.columns
        audit.problems += walk.recompute
        audit.problems += walk.kept_problems + walk.kept_missing()
        audit.checked += walk.kept
    audit.problems += _gapless(ledger)
    audit.problems += ledger.series_problems()
    audit.problems += _numbered_as_recorded(ledger, chain)
    audit.problems += ledger.trigger_problems()
    audit.checked += 3


def _run_to_ledger(run, billed: set, not_held: set, bills: _Bills, prefix: str, period: str) -> list[str]:
    """What the ledger's latest run of the folder's prefix and period issued or kept, by its recorded roster
    priced again, is still in the ledger: an invoice in force for every customer it bills, a notice of the
    period for every notice it gives (documents deleted from the ledger, even with the chain's tail cut
    after them and no head kept apart, are missed here)."""
    active = {c for c, k, n in zip(bills.customers, bills.kinds, bills.numbers)
              if k == "invoice" and n not in bills.cancelled}
    what = f"the ledger's latest run of {prefix} {period} (run {run['id']})"
    problems = [f"{cid}: {what} bills {cid} from its recorded roster, but the ledger holds no readable invoice "
                f"in force for {cid} (deleted from the ledger)" for cid in sorted(billed - active)]
    problems += [f"{name}: {what} gives this notice from its recorded roster, but the ledger holds none of "
                 f"{prefix} {period} under that name (deleted from the ledger)" for name in sorted(not_held)]
    return problems


def _numbered_as_recorded(ledger: LedgerReader, chain) -> list[str]:
    """Each chained run's record says how many numbers it issued: the ledger still holds that many of its
    documents (the last documents deleted with the chain's tail and the series records after them leave
    the run's own chained record behind)."""
    return [f"run {r['id']} ({r['prefix']} {r['period']}): issued {r['issued']} number(s), the ledger holds {held} "
            f"of them (documents deleted or added)"
            for r, held in ledger.numbered_per_run() if chain.covers("runs", r["id"]) and held != r["issued"]]


def _shape_problem(c) -> str | None:
    """Why a parsed snapshot is not the shape every document's checks read (None when it is): an object with
    a customer object, an integer total and a list of line objects with integer amounts."""
    if not isinstance(c, dict):
        return f"JSON {type(c).__name__ if c is not None else 'null'}, not an object"
    if not isinstance(c.get("customer", {}), dict):
        return "its customer is not an object"
    if "total_fen" in c and (type(c["total_fen"]) is not int):
        return f"its total_fen is {c['total_fen']!r:.40}, not a whole number of fen"
    lines = c.get("lines", [])
    if not isinstance(lines, list) or not all(isinstance(x, dict) and type(x.get("amount_fen", 0)) is int
                                              for x in lines):
        return "its lines are not a list of lines with whole amounts in fen"
    return None


def _digests(invoices) -> dict[str, tuple[str, int]]:
    """customer id -> (content hash, total) of priced invoices: what recomputing compares and says."""
    return {x["customer"]["customer_id"]: (docs_mod.content_hash(x), x["total_fen"]) for x in invoices}


def _document_file_names(outdir: Path) -> list[str]:
    """The regular files of invoices/, credit_notes/ and notices/ (a temporary file of an interrupted write
    aside: _temporary_files names it), as names relative to the folder, in the order they are audited. A
    link is never followed (_scan_folder names it)."""
    names = []
    for folder in DOCUMENT_FOLDERS:
        for name, kind in _entries(outdir, folder):
            base = PurePosixPath(name).name
            if kind == "file" and not _TEMPORARY.fullmatch(base) and not _not_audited(base):
                names.append(name)
    return names


_TEMPORARY = re.compile(r"\..*\.tmp")  # publish.atomic_write's temporary files (publish sweeps them)
_LEDGER_SUFFIXES = ("", "-wal", "-shm", "-journal")
_DESKTOP_FILES = {".DS_Store", "Thumbs.db", "desktop.ini"}  # written by file browsers into any folder they show


def _not_audited(base: str) -> bool:
    """A file browser's file (a Mac's AppleDouble ``._NAME`` too) or an office program's lock file: noted by
    _scan_folder, never a document."""
    return _browser_file(base) or _lock_file(base)


def _browser_file(base: str) -> bool:
    """A file a file browser writes into any folder it shows (a Mac's AppleDouble ``._NAME`` too)."""
    return base in _DESKTOP_FILES or base.startswith("._")


def _lock_file(base: str) -> bool:
    """An office program's lock file beside a file it has open (Excel/WPS ``~$``, LibreOffice ``.~lock.``)."""
    return base.startswith("~$") or base.startswith(".~lock.")


def _lstat(path: Path):
    """The entry itself (a link is not followed), or None when there is none (or it cannot be looked at:
    a name too long, a folder that cannot be read)."""
    try:
        return os.lstat(path)
    except (OSError, ValueError):
        return None


def _entries(outdir: Path, under: str = "", nested: bool = False):
    """(name relative to the folder, kind) of every entry below ``under`` in sorted order, kind "file",
    "link" or "other" (a FIFO, a socket, a device); folders are entered, links to folders never. With
    ``nested``, a sub-folder outside the document folders that holds its own manifest.json is not entered:
    it is given as kind "output" (another output folder kept inside this one)."""
    try:
        with os.scandir(outdir / under if under else outdir) as it:
            items = sorted(it, key=lambda e: e.name)
    except (OSError, ValueError):
        return
    for e in items:
        name = f"{under}/{e.name}" if under else e.name
        try:
            if e.is_symlink():
                yield name, "link"
            elif e.is_dir(follow_symlinks=False):
                if nested and name.split("/")[0] not in DOCUMENT_FOLDERS + ("fapiao",) and \
                        _lstat(outdir / name / "manifest.json") is not None:
                    yield name, "output"
                else:
                    yield from _entries(outdir, name, nested)
            elif e.is_file(follow_symlinks=False):
                yield name, "file"
            else:
                yield name, "other"
        except OSError:
            yield name, "other"


def _scan_folder(outdir: Path, ledger_path: Path) -> SimpleNamespace:
    """Every entry of the folder that a run does not write there (the document folders' files and fapiao/'s
    are audited against the ledger elsewhere): a forged bill put anywhere else (the top level, Invoices/,
    credit_notes_old/) is named, and so is every link (never followed: its target can change without
    touching the folder, and publish refuses to write through one) and every file that is not a regular
    file. A run's staging folder and a file browser's own files are notes."""
    problems, notes = [], []
    ledger_names = {"ledger.sqlite" + s for s in _LEDGER_SUFFIXES}
    try:  # the ledger this folder names, wherever inside the folder the run kept it (db/ledger.sqlite)
        inside = Path(ledger_path).resolve().relative_to(outdir.resolve()).as_posix()
        ledger_names |= {inside + s for s in _LEDGER_SUFFIXES}
    except (OSError, RuntimeError, ValueError):
        pass
    staging = set()
    for name, kind in _entries(outdir, nested=True):
        parts = PurePosixPath(name).parts
        base = parts[-1]
        if kind == "output":  # e.g. out/ billed one month, then out/2026-11/ with --ledger out/ledger.sqlite
            notes.append(f"{name}/: another output folder (it has its own manifest.json), not part of this one: "
                         f"verify it on its own")
            continue
        if parts[0].startswith(".staging-") and len(parts) > 1:
            if parts[0] not in staging:
                staging.add(parts[0])
                notes.append(f"{parts[0]}/: the staging folder of a run (in progress, or one that died: the next "
                             f"run removes it); its files are not part of the output")
            continue
        if kind == "link":
            try:
                target = os.readlink(outdir / name)
            except OSError:
                target = "?"
            problems.append(f"{name}: a symbolic link (to {target}), not a file: verify never follows links "
                            f"(whoever controls the target can change it without touching the folder)")
            continue
        if kind == "other":
            problems.append(f"{name}: not a regular file")
            continue
        if kind == "file" and _browser_file(base):
            notes.append(f"{name}: a file browser's own file, not part of the output (not audited)")
            continue
        if kind == "file" and _lock_file(base):
            notes.append(f"{name}: an office program's lock file (someone has a file of the folder open), not "
                         f"part of the output (not audited)")
            continue
        if parts[0] in DOCUMENT_FOLDERS and len(parts) > 1:
            continue  # audited against the ledger (a temporary file there: _temporary_files)
        if name in ledger_names or (len(parts) == 1 and (name in ("manifest.json", "summary.xlsx") or
                                                         _TEMPORARY.fullmatch(name))):
            continue
        if len(parts) == 2 and parts[0] == "fapiao":
            if _TEMPORARY.fullmatch(base):
                problems.append(f"{name}: a temporary file left by an interrupted write (the next run of this "
                                f"folder removes it)")
            continue  # rebuilt from the ledger (_check_fapiao)
        problems.append(f"{name}: not a file a run writes in this folder (not a document of the ledger's "
                        f"folders invoices/, credit_notes/, notices/, nor the summary, the e-fapiao exports "
                        f"or the manifest)")
    return SimpleNamespace(problems=problems, notes=notes)


# the invoices sheet's columns besides number, customer, date, total and status (render.summary's inv_rows),
# as _other_values gives them from a snapshot (money in fen); a column an older summary lacks is not compared
SUMMARY_OTHER_COLUMNS = ("customer_name", "document", "cancels", "period", "total_in_words", "net_total",
                         "tax_total", "vat_rate")
_MONEY_COLUMNS = ("net_total", "tax_total")


def _other_values(c: dict) -> tuple:
    customer = c.get("customer") if isinstance(c.get("customer"), dict) else {}
    vat = c.get("vat") if isinstance(c.get("vat"), dict) else {}
    return (customer.get("name"), c.get("kind"), c.get("cancels") or None, c.get("period"), c.get("total_words"),
            c.get("net_total_fen"), c.get("tax_total_fen"), vat.get("rate"))


def _value_hash(value) -> int:
    try:
        return hash((type(value).__name__ if isinstance(value, str) or value is None else "n", value))
    except TypeError:  # an unhashable value in a snapshot: its text stands for it
        return hash(("r", repr(value)))


def _sheet_value(value, column: str):
    """A cell of the invoices sheet in _other_values' terms: blank as None, money in fen."""
    from decimal import Decimal, InvalidOperation

    value = _cell_value(value)
    if column in _MONEY_COLUMNS and isinstance(value, Decimal):
        try:
            fen = value * 100
            if fen == fen.to_integral_value():
                return int(fen)
        except InvalidOperation:
            pass
    return value


class _Bills:
    """The folder's bills (the ledger's invoices and credit notes of its prefix and period whose content is
    readable), in id order, as the counts, the summary and the e-fapiao rebuild read them: one entry per
    bill in a few columns (the number, kind, customer and cancels columns; the snapshot's issue date, total
    and number), not the parsed snapshots."""

    def __init__(self):
        self.ids = array("q")
        self.numbers: list = []
        self.kinds: list = []
        self.customers: list = []
        self.issue_dates: list = []
        self.totals: list = []
        self.sort_keys: list = []  # the snapshot's number (what the e-fapiao rebuild sorts by)
        self.cancelled: set = set()  # the numbers the credit notes cancel
        # the invoices sheet's other columns, as the summary writes them from the snapshot
        self.others = [array("q") for _ in SUMMARY_OTHER_COLUMNS]  # per column, a hash of each bill's value
        self.vat_era = False  # a bill carries the VAT split: issued by a version that writes the e-fapiao exports
        from .render.summary import Totals

        self.sums = Totals()  # the totals sheet's sums, None once a snapshot cannot be summed
        self._same: dict = {}

    def add(self, row_id: int, d: Issued) -> None:
        c = d.content
        self.ids.append(row_id)
        self.numbers.append(d.number)
        self.kinds.append(sys.intern(d.kind) if isinstance(d.kind, str) else d.kind)
        self.customers.append(d.customer_id)
        date = c.get("issue_date")
        self.issue_dates.append(self._same.setdefault(date, date) if isinstance(date, str) else date)
        self.totals.append(c.get("total_fen", 0))
        key = c.get("number", _NO_NUMBER)
        self.sort_keys.append(d.number if key == d.number and type(key) is type(d.number) else key)
        if d.kind == "credit_note":
            self.cancelled.add(d.cancels)
        self.vat_era = self.vat_era or c.get("net_total_fen") is not None
        for k, value in enumerate(_other_values(c)):  # 8 bytes a column, not the values themselves
            self.others[k].append(_value_hash(value))
        if self.sums is not None:
            try:
                self.sums.add(c)
            except (KeyError, TypeError, AttributeError):
                self.sums = None

    def __len__(self) -> int:
        return len(self.ids)


class _Walk:
    """The checks made document by document while the ledger is read a chunk at a time, and the compact
    state the checks across documents read afterwards. Each check's problems are kept apart, in id order."""

    def __init__(self, ledger: LedgerReader, outdir: Path, files: dict[str, str], prefix: str, period: str,
                 current: set[str], chain, known: dict):
        self.ledger, self.outdir, self.files, self.prefix, self.period = ledger, outdir, files, prefix, period
        self.current, self.chain = current, chain
        self.checked = 0
        self.unreadable: list[str] = []  # content that is not JSON
        self.to_folder: list[tuple[int, str]] = []  # (id, problem): the ledger's documents -> the folder
        self.columns: list[str] = []
        self.recompute: list[str] = []
        self.kept_problems: list[str] = []
        self.kept = 0
        self._no_bytes: list[tuple[int, int, str, str]] = []  # (id, run, file, label): no kept PDF bytes
        self._runs_keeping: set[int] = set()
        self.bills = _Bills()
        # the file names of the folder's document folders, then the manifest's: flags, and the hashes of the
        # notices issued under them (only a notice can be left uncompared while its file is in the folder)
        self.on_disk = _document_file_names(outdir)
        self.slot: dict[str, int] = {}
        for name in self.on_disk:
            self.slot.setdefault(name, len(self.slot))
        for name in files:
            if PurePosixPath(name).parts[:1] in [(f,) for f in DOCUMENT_FOLDERS]:
                self.slot.setdefault(name, len(self.slot))
        self.flags = bytearray(len(self.slot))
        self.notice_hashes: dict[int, list[str]] = {}
        self.foreign: dict[int, str] = {}  # slot -> the other prefix and period a document of that name is of
        self._latest_notice: dict[str, tuple[int, str, bool, str]] = {}
        self._priced: dict = dict(known)  # (roster, book, period, prefix) -> customer id -> (hash, total)
        self._evictable: list = []  # keys priced during the walk, oldest first

    def chunk(self, rows: list[sqlite3.Row]) -> None:
        pairs = []
        for r in rows:
            try:
                d = self.ledger._issued(r)
            except (ValueError, TypeError):
                self.unreadable.append(f"{r['number'] or r['file_name']}: its recorded content is not readable JSON")
                continue
            why = _shape_problem(d.content)
            if why is not None:  # edited behind the triggers into JSON of another shape: named, like unreadable
                self.unreadable.append(f"{r['number'] or r['file_name']}: its recorded content is not a document "
                                       f"({why})")
                continue
            pairs.append((r, d))
        self.checked += len(pairs)
        for r, d in pairs:
            self._locate(r["id"], d)
        self.columns += _columns_match_content(pairs)
        self._recompute(pairs)
        self._kept_bytes(pairs)

    # -- the ledger's documents -> the folder ------------------------------------------------------------
    def _locate(self, row_id: int, d: Issued) -> None:
        name = d.file_name
        i = self.slot.get(name)
        # a folder holds one prefix and one period (pipeline._one_series_per_folder): on a ledger shared by
        # several folders (resellers, months), a document of another prefix or period is never this folder's,
        # even under the same name (notices/N-renewal.pdf of two resellers' customers N)
        mine = d.prefix == self.prefix and d.period == self.period
        if i is not None:
            if mine:
                self.flags[i] |= _ISSUED
                if name in self.files and self.files[name] == d.file_sha256:
                    self.flags[i] |= _MANIFEST_HASH
                if d.kind == "notice":
                    self.notice_hashes.setdefault(i, []).append(d.file_sha256)
            else:
                self.foreign.setdefault(i, f"{d.prefix} {d.period} ({d.number or d.kind})")
        if d.kind == "notice":
            if mine:  # only the folder's newest notice under a name can be in force
                self._latest_notice[name] = (row_id, d.file_sha256, mine, d.number or d.kind)
            return
        if mine:
            self.bills.add(row_id, d)
            self._compare(row_id, name, d.file_sha256, mine, d.number or d.kind)

    def notices_in_force(self) -> set[str]:
        """The newest notice of the period under each name is compared when the manifest lists it or the
        folder's roster gives it (after the walk: a later notice may supersede one). Returns the names the
        folder's notices were issued under."""
        held = set(self._latest_notice)
        for name, (row_id, file_sha256, mine, what) in self._latest_notice.items():
            if name not in self.files and not (mine and name in self.current):
                continue
            self._compare(row_id, name, file_sha256, mine, what)
        self._latest_notice = {}
        return held

    def _compare(self, row_id: int, name: str, file_sha256: str, mine: bool, what: str) -> None:
        path = self.outdir / name
        st = _lstat(path)
        if st is None or not stat.S_ISREG(st.st_mode):
            if mine and st is None:  # (a link or a folder in its place is named by _scan_folder)
                self.to_folder.append((row_id, f"{name}: issued ({what}) but missing from {self.outdir}"))
            return
        self.checked += 1
        i = self.slot.get(name)
        if i is not None:
            self.flags[i] |= _COMPARED
        if _hash_file(path) != file_sha256:
            self.to_folder.append((row_id, f"{name}: differs from the file issued as {what} "
                                           f"(SHA-256 differs from the ledger)"))

    # -- every invoice priced again, every credit note against its invoice -------------------------------
    def _recompute(self, pairs: list[tuple[sqlite3.Row, Issued]]) -> None:
        """Every invoice priced again from the roster and price book it was issued from; every credit note
        negates the invoice it cancels (looked up by number, for the chunk's credit notes at once)."""
        problems = self.recompute
        wanted = {c for _, d in pairs if d.kind == "credit_note"
                  for c in [d.content.get("cancels")] if isinstance(c, str) and c}
        by_number = self.ledger.issued_by_number(sorted(wanted)) if wanted else {}
        for _, d in pairs:
            if d.content_sha256 != docs_mod.content_hash(d.content):
                problems.append(f"{d.number or d.file_name}: recorded content does not match its recorded hash")
                continue
            if d.kind == "credit_note":
                cancels = d.content.get("cancels")
                original = by_number.get(cancels) if isinstance(cancels, str) else None
                if original is not None and _shape_problem(original.content) is not None:
                    original = None  # (named where its own row is read)
                if original is None or original.content.get("total_fen", 0) != -d.content.get("total_fen", 0) or \
                        [x.get("amount_fen", 0) for x in original.content.get("lines", [])] != \
                        [-x.get("amount_fen", 0) for x in d.content.get("lines", [])]:
                    problems.append(f"{d.number}: credit note does not negate the invoice it cancels")
                continue
            if d.kind != "invoice":
                continue
            key = (d.input_sha256, d.pricebook_sha256, d.period, d.prefix)
            if key not in self._priced:
                self._price(key, d)
            priced = self._priced[key]
            if priced is None:
                continue
            again = priced.get(d.customer_id)
            if again is None:
                problems.append(f"{d.number}: recomputing {d.period} from the recorded roster bills nothing for "
                                f"{d.customer_id}")
            elif again[0] != d.content_sha256:
                problems.append(f"{d.number}: recomputing from the recorded roster and price book gives "
                                f"{plain_yuan(again[1])}, the invoice says {plain_yuan(d.content['total_fen'])}")

    def _price(self, key: tuple, d: Issued) -> None:
        """Price the roster and price book an invoice was issued from (kept in the ledger), once: its
        invoices' hashes are kept while needed (a failure is said once, for the first invoice it concerns,
        and remembered). At most PRICED_KEPT such rosters are kept at once: a run's documents are
        consecutive, so a roster evicted is seldom needed again (and is priced again if it is)."""
        from .pipeline import price_roster_bytes

        problems = self.recompute
        self._priced[key] = None
        try:
            roster_bytes, book_bytes = self.ledger.blob(d.input_sha256), self.ledger.blob(d.pricebook_sha256)
        except sqlite3.Error as exc:
            problems.append(f"{d.number}: the roster or price book it was priced from cannot be read ({exc})")
            return
        if roster_bytes is None or book_bytes is None:
            problems.append(f"{d.number}: the ledger lost the roster or price book it was priced from")
            return
        try:
            book = pricebook.parse(book_bytes, source="ledger:" + d.pricebook_sha256[:12])
            # a roster without invoice_prefix was priced with its run's default prefix (a drop folder's is
            # made from the folder's name), which is the prefix the document was numbered in
            book = dataclasses.replace(book, default_prefix=d.prefix)
            priced = price_roster_bytes(roster_bytes, "ledger:" + d.input_sha256[:12], book, d.period)
        except InvoicerError as exc:
            problems.append(f"{d.number}: the recorded roster or price book can no longer be priced ({exc})")
            return
        while len(self._evictable) >= PRICED_KEPT:
            del self._priced[self._evictable.pop(0)]
        try:
            self._priced[key] = _digests(priced.invoices)
        finally:
            priced.close()  # its stage: the digests are all the walk keeps
        self._evictable.append(key)

    # -- the PDF bytes the ledger kept ------------------------------------------------------------------
    def _kept_bytes(self, pairs: list[tuple[sqlite3.Row, Issued]]) -> None:
        """Each document's kept PDF bytes are there and hash to its file hash (an unreadable blob is
        reported and the audit goes on); a document without kept bytes is remembered for kept_missing."""
        for r, d in pairs:
            try:
                data = self.ledger.blob(d.file_sha256)
            except sqlite3.Error as exc:
                self.kept_problems.append(f"{d.file_name}: the PDF bytes the ledger kept for {d.number or d.kind} "
                                          f"cannot be read ({exc})")
                continue
            if data is None:
                self._no_bytes.append((r["id"], d.run_id, d.file_name, d.number or d.kind))
                continue
            self._runs_keeping.add(d.run_id)
            self.kept += 1
            if sha256(data) != d.file_sha256:
                self.kept_problems.append(f"{d.file_name}: the PDF bytes the ledger kept for {d.number or d.kind} "
                                          f"are damaged")

    def kept_missing(self) -> list[str]:
        """A missing blob is a problem for every chained document (they are kept since before chaining) and
        for an older document whose run kept the others' bytes."""
        return [f"{name}: the PDF bytes the ledger kept for {what} are missing (deleted from the ledger)"
                for row_id, run_id, name, what in self._no_bytes
                if self.chain.covers("documents", row_id) or run_id in self._runs_keeping]


def _folder_to_ledger(outdir: Path, walk: _Walk, files: dict[str, str], audit: Audit) -> None:
    """Every file of the document folders, and every one the manifest lists there, is a document of this
    ledger with the hash it was issued with."""
    for name in walk.on_disk:
        audit.checked += 1
        flags = walk.flags[walk.slot[name]]
        if not flags & _ISSUED:
            listed = "listed in the manifest" if name in files else "not in the manifest"
            other = walk.foreign.get(walk.slot[name])
            if other is not None:
                audit.problems.append(f"{name}: a document this ledger issued for {other}, not one of this "
                                      f"folder's {walk.prefix} {walk.period} ({listed})")
            else:
                audit.problems.append(f"{name}: not a document this ledger issued ({listed})")
        elif not flags & _COMPARED and \
                _hash_file(outdir / name) not in walk.notice_hashes.get(walk.slot[name], ()):
            audit.problems.append(f"{name}: differs from every document this ledger issued under that name")
    for name, digest in files.items():
        if PurePosixPath(name).parts[:1] not in [(f,) for f in DOCUMENT_FOLDERS]:
            continue
        audit.checked += 1
        flags = walk.flags[walk.slot[name]]
        if not flags & _ISSUED:
            if _lstat(outdir / name) is None:
                audit.problems.append(f"{name}: listed in the manifest, but this ledger never issued it")
        elif not flags & _MANIFEST_HASH:
            audit.problems.append(f"{name}: the manifest's SHA-256 is not the one the ledger issued it with")


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


def _check_manifest_files(outdir: Path, files: dict[str, str], audit: Audit) -> None:
    for name, expected in files.items():
        audit.checked += 1
        parts = PurePosixPath(name).parts
        if PurePosixPath(name).is_absolute() or ".." in parts or not parts:
            audit.problems.append(f"{name}: the manifest lists a path outside the folder")
            continue
        path = outdir / name
        st = _lstat(path)
        if st is None:
            audit.problems.append(f"{name}: listed in the manifest but missing")
        elif not stat.S_ISREG(st.st_mode):
            if stat.S_ISLNK(st.st_mode) or PurePosixPath(name).parts[0] in DOCUMENT_FOLDERS + ("fapiao",):
                continue  # a link, or a folder where a file should be: named by _scan_folder
            audit.problems.append(f"{name}: listed in the manifest but not a file")
        elif _hash_file(path) != expected:
            audit.problems.append(f"{name}: changed since it was written (SHA-256 differs from the manifest)")


def _temporary_files(outdir: Path) -> list[str]:
    problems = []
    for folder in (outdir, *(outdir / f for f in DOCUMENT_FOLDERS)):
        st = _lstat(folder)
        if st is not None and stat.S_ISDIR(st.st_mode):
            for tmp in sorted(folder.glob(".*.tmp")):
                problems.append(f"{tmp.relative_to(outdir).as_posix()}: a temporary file left by an interrupted "
                                f"write (the next run of this folder removes it)")
    return problems


def _check_counts(bills: _Bills, manifest: dict, prefix: str, period: str, audit: Audit) -> None:
    """The manifest's invoice and credit-note counts and total are what the ledger issued for the period
    (``bills``: the ledger's invoices and credit notes of the folder's prefix and period)."""
    cancelled = bills.cancelled
    ledger_counts = {"invoices": sum(1 for k, n in zip(bills.kinds, bills.numbers)
                                     if k == "invoice" and n not in cancelled),
                     "credit_notes": sum(1 for k in bills.kinds if k == "credit_note")}
    counts = manifest.get("counts") or {}
    audit.checked += 1
    if not isinstance(counts, dict):
        audit.problems.append(f"manifest: its counts are not a table of counts ({counts!r:.80})")
        counts = {}
    for key, value in ledger_counts.items():
        if key in counts and counts[key] != value:
            audit.problems.append(f"manifest: {counts[key]} {key.replace('_', ' ')}, the ledger issued {value} "
                                  f"for {prefix} {period}")
    total = sum(bills.totals)
    if "total_fen" in manifest and manifest["total_fen"] != total:
        said = manifest["total_fen"]
        said = plain_yuan(said) if isinstance(said, int) and not isinstance(said, bool) else repr(said)
        audit.problems.append(f"manifest: total {said}, the ledger's documents of {prefix} {period} total "
                              f"{plain_yuan(total)}")


def _cell_value(value):
    """A cell as read back, comparable with what the summary wrote: numbers as Decimal, "" as blank."""
    from decimal import Decimal

    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return Decimal(str(value))
    return None if value == "" else value


# what the summary's cells are shown through: General, the money format (built-in 4) and the date format
_SUMMARY_FORMATS = {"General", "#,##0.00", "yyyy-mm-dd"}
_BUILTIN_FORMATS = {0: "General", 4: "#,##0.00"}
_HIDDEN = re.compile(rb"""\shidden\s*=\s*["'](?:1|true)["']""")


def _summary_display_problems(path: Path) -> list[str]:
    """What would make the summary show other than it holds, the values left alone: a number format the
    tool never writes ('"9,999.00"' shows that whatever the amount), one given by conditional formatting,
    a hidden row or column (a bill no reader sees). The styles part is parsed (small); the sheets are
    scanned a block at a time."""
    import xml.etree.ElementTree as ET
    import zipfile

    ns = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
    problems = []
    try:
        with zipfile.ZipFile(path) as z:
            info = z.getinfo("xl/styles.xml")
            if info.file_size > 4 << 20:
                return ["summary.xlsx: its styles part is far larger than the tool writes"]
            styles = ET.fromstring(z.read(info))
            custom = {int(f.get("numFmtId", -1)): f.get("formatCode", "")
                      for f in styles.iter(f"{ns}numFmt")}
            xfs = styles.find(f"{ns}cellXfs")
            for xf in (xfs if xfs is not None else ()):
                fid = int(xf.get("numFmtId", 0))
                code = custom.get(fid, _BUILTIN_FORMATS.get(fid))
                if code not in _SUMMARY_FORMATS:
                    problems.append(f"summary.xlsx: a cell style shows numbers through the format "
                                    f"{code if code is not None else f'number {fid}'!r}, which the tool never "
                                    f"writes (a cell can then show another amount or date than it holds)")
            dxfs = styles.find(f"{ns}dxfs")
            if dxfs is not None and dxfs.find(f".//{ns}numFmt") is not None:
                problems.append("summary.xlsx: conditional formatting changes how numbers are shown (the tool "
                                "never writes any)")
            for name in z.namelist():
                if not (name.startswith("xl/worksheets/") and name.endswith(".xml")):
                    continue
                with z.open(name) as sheet:
                    tail = b""
                    for block in iter(lambda: sheet.read(1 << 20), b""):
                        if _HIDDEN.search(tail + block):
                            problems.append(f"summary.xlsx: {PurePosixPath(name).name} hides rows or columns "
                                            f"(the tool hides none: a bill there is listed but not shown)")
                            break
                        tail = block[-32:]
    except (KeyError, OSError, ValueError, zipfile.BadZipFile, ET.ParseError) as exc:
        problems.append(f"summary.xlsx: its styles cannot be read ({type(exc).__name__}: {exc})")
    return problems


def _check_summary(path: Path, ledger: LedgerReader, bills: _Bills, prefix: str, period: str,
                   audit: Audit) -> None:
    """The summary's invoices sheet lists exactly the ledger's invoices and credit notes of the period, once
    each, with their customer, issue date, total and status, and what else the sheet says of them (the
    buyer's name, the VAT split, ...); the totals sheet's sums are the bills' (a summary rewritten with its
    manifest hash is caught). Every run writes a summary: a folder without one has lost it. The sheets are
    read a row at a time; what a row should say is made when the row is read."""
    st = _lstat(path)
    if st is None:
        audit.checked += 1
        audit.problems.append(f"summary.xlsx: missing (every run writes it: the ledger's bills of {prefix} "
                              f"{period} are listed nowhere)")
        return
    if not stat.S_ISREG(st.st_mode):
        return  # a link or a folder: named by _scan_folder
    from decimal import Decimal

    from openpyxl import load_workbook

    from .money import fen_to_decimal

    cancelled = bills.cancelled
    at_bill = {number: i for i, number in enumerate(bills.numbers)}

    def want(i: int) -> tuple:
        number = bills.numbers[i]
        return (bills.customers[i], bills.issue_dates[i], fen_to_decimal(bills.totals[i]),
                bill_status(bills.kinds[i], number, cancelled))

    def shown(value, column: str):
        if column in _MONEY_COLUMNS and isinstance(value, int) and not isinstance(value, bool):
            return _say(fen_to_decimal(value))
        return _say(value)

    audit.checked += 1
    seen = bytearray(len(bills))
    problems = _summary_display_problems(path)
    totals_rows = None
    try:
        wb = load_workbook(path, read_only=True, data_only=True)
        try:
            rows = wb["invoices"].iter_rows(values_only=True)
            first = next(rows, None)
            header = list(first) if first is not None else []
            try:
                at = {c: header.index(c) for c in ("invoice_number", "customer_id", "issue_date", "total", "status")}
            except ValueError:
                at = None
            others = [(k, c, header.index(c)) for k, c in enumerate(SUMMARY_OTHER_COLUMNS) if c in header]
            width = len(header)
            for row in rows if at is not None else ():
                row = tuple(row) + (None,) * (width - len(row))
                number = row[at["invoice_number"]]
                i = at_bill.get(number)
                if i is None:
                    problems.append(f"summary.xlsx: lists {number}, which this ledger did not issue for {prefix} "
                                    f"{period}")
                    continue
                if seen[i]:
                    problems.append(f"summary.xlsx: lists {number} more than once (the ledger issued it once)")
                    continue
                seen[i] = 1
                when = row[at["issue_date"]]
                total = row[at["total"]]
                got = (row[at["customer_id"]], str(when)[:10] if when is not None else None,
                       Decimal(str(total)) if isinstance(total, (int, float)) else total, row[at["status"]])
                expected = want(i)
                if got != expected:
                    problems.append(f"summary.xlsx: {number} says customer {got[0]}, {got[1]}, total {got[2]}, "
                                    f"{got[3]}; the ledger: customer {expected[0]}, {expected[1]}, total "
                                    f"{expected[2]}, {expected[3]}")
                differ = [(k, column, _sheet_value(row[j], column)) for k, column, j in others
                          if _value_hash(_sheet_value(row[j], column)) != bills.others[k][i]]
                if differ:  # what the ledger says: that bill's snapshot read again (only for a bill that differs)
                    should = _other_values(ledger.issued_by_id([bills.ids[i]])[0].content)
                    for k, column, said in differ:
                        if said != should[k]:
                            problems.append(f"summary.xlsx: {number} says {column} {shown(said, column)}; the "
                                            f"ledger: {shown(should[k], column)}")
            if "totals" in wb.sheetnames and bills.sums is not None:
                totals_rows = [tuple(_cell_value(v) for v in r) for r in wb["totals"].iter_rows(values_only=True)]
            if at is not None and "lines" in wb.sheetnames:
                problems += _check_summary_lines(wb["lines"], bills, at_bill, prefix, period)
                audit.checked += 1
        finally:
            wb.close()
    except Exception as exc:  # a damaged or foreign file: openpyxl raises many kinds
        audit.problems.append(f"summary.xlsx: cannot be read as the summary ({type(exc).__name__}: {exc})")
        return
    if at is None:
        audit.problems.append("summary.xlsx: the invoices sheet lacks its columns")
        return
    audit.problems += problems
    for number in sorted(n for n, i in at_bill.items() if not seen[i]):
        audit.problems.append(f"summary.xlsx: does not list {number}")
    if totals_rows is not None:
        audit.checked += 1
        made = [tuple(_cell_value(v) for v in r) for r in bills.sums.rows()]
        said = [r for r in totals_rows[1:] if any(v is not None for v in r)]
        if said != made:
            if len(said) == len(made) and all(a[:2] == b[:2] for a, b in zip(said, made)):
                for a, b in zip(said, made):
                    if a != b:
                        audit.problems.append(f"summary.xlsx: the totals sheet's {a[0]} {a[1]} says "
                                              f"{_rows_text([a[2:]])}; the ledger's bills of {prefix} {period}: "
                                              f"{_rows_text([b[2:]])}")
            else:
                audit.problems.append(f"summary.xlsx: the totals sheet says {_rows_text(said)}; the ledger's bills "
                                      f"of {prefix} {period} sum to {_rows_text(made)}")


def _check_summary_lines(ws, bills: _Bills, at_bill: dict, prefix: str, period: str) -> list[str]:
    """The lines sheet, a row at a time: each line belongs to a bill of the period, and each bill's lines
    sum to its total (SPEC 5: the sum of the lines is the invoice total), so an amount forged in the lines
    sheet is caught. (What else a line says is vouched for by the manifest's hash only.)"""
    from .money import fen_to_decimal

    rows = ws.iter_rows(values_only=True)
    first = next(rows, None)
    header = list(first) if first is not None else []
    if "invoice_number" not in header or "amount" not in header:
        return ["summary.xlsx: the lines sheet lacks its columns"]
    at_number, at_amount = header.index("invoice_number"), header.index("amount")
    width = max(at_number, at_amount) + 1
    sums = array("q", bytes(8 * len(bills)))
    unsummed = set()  # bills with an amount that is not a sum of fen
    problems, strangers = [], {}
    for row in rows:
        row = tuple(row) + (None,) * (width - len(row))
        number, amount = row[at_number], _sheet_value(row[at_amount], "net_total")
        if number is None and amount is None:
            continue
        i = at_bill.get(number)
        if i is None:
            strangers.setdefault(number, None)
            continue
        if type(amount) is int and -(1 << 62) < sums[i] + amount < (1 << 62):
            sums[i] += amount
        else:
            unsummed.add(i)
    for number in strangers:
        problems.append(f"summary.xlsx: the lines sheet lists lines of {number}, which this ledger did not issue "
                        f"for {prefix} {period}")
    for i, number in enumerate(bills.numbers):
        if i in unsummed:
            problems.append(f"summary.xlsx: the lines sheet's lines of {number} hold an amount that is not money")
        elif sums[i] != bills.totals[i]:
            problems.append(f"summary.xlsx: the lines sheet's lines of {number} sum to {fen_to_decimal(sums[i])}; "
                            f"the ledger's {number} totals {fen_to_decimal(bills.totals[i])}")
    return problems


def _say(value) -> str:
    return "blank" if value is None else str(value)


def _rows_text(rows: list[tuple]) -> str:
    return "; ".join(" ".join(_say(v) for v in r) for r in rows) or "nothing"


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

class _ListedBills:
    """The folder's bills as the summary and the e-fapiao export list them (each snapshot with its status),
    in the order given (ids), read again from the ledger a batch at a time on each pass."""

    BATCH = 500

    def __init__(self, ledger: LedgerReader, ids: array, cancelled: set):
        self.ledger, self.ids, self.cancelled = ledger, ids, cancelled

    def __iter__(self):
        for i in range(0, len(self.ids), self.BATCH):
            for d in self.ledger.issued_by_id(self.ids[i:i + self.BATCH].tolist()):
                yield {**d.content, "status": bill_status(d.kind, d.number, self.cancelled)}


def _check_fapiao(outdir: Path, ledger: LedgerReader, bills: _Bills, manifest: dict, prefix: str, period: str,
                  repriced, audit: Audit) -> None:
    """The e-fapiao exports (what the clerk uploads to the tax platform) are rebuilt from the ledger: the
    period's bills, the price book and roster the manifest names (their bytes kept in the ledger). A file in
    fapiao/ that is not exactly the rebuilt one, a missing one and an extra one are problems: the manifest
    alone (not chained) cannot vouch for them. The bills are read again from the ledger, in number order,
    a batch at a time as the exports are built."""
    import datetime as dt

    from .pricing.dates import month_bounds, to_date
    from .publish_fapiao import FOLDER, stream_expected_exports

    folder = outdir / FOLDER
    # which folders must hold the exports, decided from the ledger (the manifest is not chained): the
    # exports came with the VAT split (issue #12), so a period whose bills carry it was published by a
    # version that writes them; a folder of bills issued before (no VAT split in any snapshot) need not hold
    # them unless it does, or its manifest lists them (a later run of such a period writes them)
    if not bills.vat_era and _lstat(folder) is None and \
            not any(str(n).startswith(FOLDER + "/") for n in manifest.get("files", {})):
        return  # a folder published before the exports existed
    priced, book, why = repriced
    if priced is None:
        audit.problems.append(f"fapiao/: the e-fapiao exports cannot be checked ({why})")
        return
    on_disk = {name for name, kind in _entries(outdir, FOLDER) if kind == "file" and name.count("/") == 1
               and not _TEMPORARY.fullmatch(PurePosixPath(name).name)
               and not _not_audited(PurePosixPath(name).name)}
    found: dict[str, str | None] = {}  # each rebuilt file's name -> its problem (None: the file is it)
    try:
        if any(k is _NO_NUMBER for k in bills.sort_keys):
            raise KeyError("number")  # a snapshot without its number cannot be listed in number order
        order = sorted(range(len(bills)), key=bills.sort_keys.__getitem__)
        listed = _ListedBills(ledger, array("q", (bills.ids[i] for i in order)), bills.cancelled)
        del order
        created = dt.datetime.combine(to_date(month_bounds(period)[1]), dt.time())
        # one rebuilt file at a time, compared with the folder's and let go
        for name, data in stream_expected_exports(prefix, period, listed, book, priced.roster, created, []):
            if name not in on_disk:
                found[name] = f"{name}: missing (the ledger's bills of {prefix} {period} make it)"
            elif _hash_file(outdir / name) != sha256(data):
                found[name] = (f"{name}: is not the e-fapiao export of the ledger's bills of {prefix} {period} "
                               f"(rebuilt from the ledger, it differs: altered after it was written)")
            else:
                found[name] = None
            del data
    except (InvoicerError, KeyError, TypeError, ValueError) as exc:
        audit.problems.append(f"fapiao/: the e-fapiao exports cannot be rebuilt from the ledger ({exc})")
        return
    for name, problem in sorted(found.items()):
        audit.checked += 1
        if problem is not None:
            audit.problems.append(problem)
    for name in sorted(on_disk - set(found)):
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
            # the same name in another prefix or period is another reseller's (or month's) notice
            newer = ledger.db.execute("SELECT 1 FROM documents WHERE kind = 'notice' AND file_name = ? AND "
                                      "prefix = ? AND period = ? AND id > ? LIMIT 1",
                                      (row["file_name"], row["prefix"], row["period"], row["id"])).fetchone()
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
    why = _shape_problem(doc.content)
    if why is not None:
        problems.append(f"its recorded content is not a document ({why})")
    elif doc.content_sha256 != docs_mod.content_hash(doc.content):
        problems.append("its recorded content does not match its recorded hash")
    if why is None:
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
    """The SHA-256 of a regular file, read without following a link (None for a link or no file)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except (OSError, ValueError):
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb") as f:
            fd = None
            return sha256(f.read())
    except OSError:
        return None
    finally:
        if fd is not None:
            os.close(fd)


def _gapless(ledger: LedgerReader) -> list[str]:
    seqs = defaultdict(list)
    problems = []
    for row in ledger.db.execute("SELECT prefix, year, seq, number, file_name FROM documents WHERE seq IS NOT NULL"):
        if type(row[2]) is not int:  # edited behind the triggers (SQLite keeps text in an INTEGER column)
            problems.append(f"{row[3] or row[4]}: its seq column says {row[2]!r:.40}, not a number (edited behind "
                            f"the ledger's back)")
            continue
        seqs[(row[0], row[1])].append(row[2])
    for (prefix, year), s in seqs.items():
        if sorted(s) != list(range(1, len(s) + 1)):
            problems.append(f"numbers {prefix}-{year}: not gapless ({len(s)} documents, highest {max(s)})")
    return problems
