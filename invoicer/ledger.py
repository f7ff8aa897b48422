"""The append-only SQLite ledger of issued documents: numbering, idempotent re-runs, credit notes.

Rules (after pretix's invoicing): a number is unique per prefix, gapless per prefix and calendar year,
and never reused; an issued document is never edited or deleted (triggers refuse it); a cancellation is
a new document (a credit note with negated lines) that names the invoice it cancels. The ledger also
keeps the exact bytes of every roster and price book it priced, so ``invoicer verify`` can recompute
every invoice years later, and the exact bytes of every PDF it issued (content-addressed blobs, about 30 KB
each), so a lost file is restored as issued even after the templates, fonts or WeasyPrint changed.

Concurrency and crashes (optimistic numbering, see pipeline.run): a run reads its plan and the next numbers
in a read transaction, renders without any lock, then takes SQLite's write lock (BEGIN IMMEDIATE) only to
check that its series is unchanged (``series_mark``: documents are append-only, so the newest id of the
prefix says whether anyone numbered since) and to insert; if the series moved it plans again. Two runs never
interleave numbers; a writer waits up to the busy timeout and then fails with a clear message. Everything a
run issues is committed in one transaction: a run killed before COMMIT leaves no trace in the ledger, and
one killed after it is completed by re-running.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import sqlite3
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError, InvoicerError, LedgerBusy
from .model import Document

SCHEMA_VERSION = "1"

# the owner recorded for prefixes the clerk's ``invoicer run`` numbers in; brackets cannot occur in a reseller
# folder's name (publish.SAFE_NAME), so no folder can pose as the operator
OPERATOR = "(operator)"


class PrefixTaken(InvoicerError):
    """A roster names an invoice prefix it may not number in (another owner's, or another case of one)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blobs (
    sha256 TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, prefix TEXT NOT NULL, period TEXT NOT NULL, input_sha256 TEXT NOT NULL,
    pricebook_sha256 TEXT NOT NULL, pricebook_version TEXT NOT NULL, tool_version TEXT NOT NULL,
    amend INTEGER NOT NULL, issued INTEGER NOT NULL, recorded_at TEXT NOT NULL DEFAULT (datetime('now')));
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    kind TEXT NOT NULL CHECK (kind IN ('invoice', 'credit_note', 'notice')),
    prefix TEXT NOT NULL,
    year INTEGER,
    seq INTEGER,
    number TEXT UNIQUE,
    customer_id TEXT NOT NULL,
    period TEXT NOT NULL,
    issue_date TEXT NOT NULL,
    total_fen INTEGER NOT NULL,
    content_sha256 TEXT NOT NULL,
    content_json TEXT NOT NULL,
    file_name TEXT NOT NULL,
    file_sha256 TEXT NOT NULL,
    cancels TEXT REFERENCES documents(number),
    input_sha256 TEXT NOT NULL,
    pricebook_sha256 TEXT NOT NULL,
    UNIQUE (prefix, year, seq),
    CHECK ((kind = 'notice') = (number IS NULL))
);
CREATE INDEX IF NOT EXISTS documents_period ON documents (prefix, period, customer_id);
CREATE TABLE IF NOT EXISTS prefix_owners (
    prefix TEXT PRIMARY KEY, owner TEXT NOT NULL, recorded_at TEXT NOT NULL DEFAULT (datetime('now')));
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id), prefix TEXT NOT NULL,
    year INTEGER NOT NULL, issued INTEGER NOT NULL, count_after INTEGER NOT NULL, highest INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS chain (
    seq INTEGER PRIMARY KEY, table_name TEXT NOT NULL, row_id INTEGER NOT NULL, record_sha256 TEXT NOT NULL,
    prev_sha256 TEXT NOT NULL, head_sha256 TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS meta_identity_fixed BEFORE UPDATE ON meta WHEN OLD.key IN ('ledger_id', 'chain_genesis')
BEGIN SELECT RAISE(ABORT, 'a ledger keeps its identity'); END;
CREATE TRIGGER IF NOT EXISTS meta_identity_kept BEFORE DELETE ON meta WHEN OLD.key IN ('ledger_id', 'chain_genesis')
BEGIN SELECT RAISE(ABORT, 'a ledger keeps its identity'); END;
"""


def _append_only(table: str, on_update: str, on_delete: str) -> str:
    """Triggers that refuse UPDATE and DELETE on a table: its rows are records, never edited or removed."""
    return (f"CREATE TRIGGER IF NOT EXISTS {table}_immutable BEFORE UPDATE ON {table}\n"
            f"BEGIN SELECT RAISE(ABORT, '{on_update}'); END;\n"
            f"CREATE TRIGGER IF NOT EXISTS {table}_undeletable BEFORE DELETE ON {table}\n"
            f"BEGIN SELECT RAISE(ABORT, '{on_delete}'); END;\n")


APPEND_ONLY = (
    ("documents", "issued documents are immutable: issue a credit note instead", "issued documents are never deleted"),
    ("prefix_owners", "an invoice prefix keeps its owner", "an invoice prefix keeps its owner"),
    ("blobs", "stored bytes are immutable", "stored bytes are never deleted"),
    ("runs", "the run log is append-only", "the run log is append-only"),
    ("series", "the run log is append-only", "the run log is append-only"),
    ("chain", "the hash chain is append-only", "the hash chain is append-only"),
)
SCHEMA += "".join(_append_only(*t) for t in APPEND_ONLY)

# -- the hash chain ---------------------------------------------------------------------------------------
# Every record a printout or ``verify FILE.pdf`` relies on is chained: each new row of these tables gets a
# link whose head is sha256(previous head || sha256(canonical record)), written by the Ledger's own write
# methods in the run's transaction. Deleting, inserting or editing any chained row (with the triggers
# dropped) breaks a link; truncating the chain's tail is caught against a head kept elsewhere (every
# manifest records the head it was published with). Blobs are not chained: they are content-addressed and
# verify re-hashes them. The columns are listed, not read from the table, so a column added later does
# not change the records already chained.
CHAINED = {
    "runs": ("id", "prefix", "period", "input_sha256", "pricebook_sha256", "pricebook_version", "tool_version",
             "amend", "issued", "recorded_at"),
    "documents": ("id", "run_id", "kind", "prefix", "year", "seq", "number", "customer_id", "period",
                  "issue_date", "total_fen", "content_sha256", "content_json", "file_name", "file_sha256",
                  "cancels", "input_sha256", "pricebook_sha256"),
    "prefix_owners": ("prefix", "owner", "recorded_at"),
    "series": ("id", "run_id", "prefix", "year", "issued", "count_after", "highest"),
}


def canonical_record(table: str, rowid: int, row) -> bytes:
    """The bytes a chain link hashes for one row: table, rowid and every chained column, as sorted JSON."""
    return json.dumps({"table": table, "rowid": rowid, "row": {c: row[c] for c in CHAINED[table]}},
                      sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def chain_origin(ledger_id: str) -> str:
    """The 'previous head' of the first link: the chain is bound to the ledger's identity."""
    return _sha(f"qq-invoicer ledger {ledger_id}".encode())


def link_head(prev_sha256: str, record_sha256: str) -> str:
    return _sha(bytes.fromhex(prev_sha256) + bytes.fromhex(record_sha256))


def _legacy_digest(db: sqlite3.Connection, table: str, max_rowid: int) -> tuple[int, str]:
    """(rows, sha256) over the rows written before the chain began, so its first link seals them."""
    h, n = hashlib.sha256(), 0
    for row in db.execute(f"SELECT rowid AS _rowid, * FROM {table} WHERE rowid <= ? ORDER BY rowid", (max_rowid,)):
        h.update(canonical_record(table, row["_rowid"], row) + b"\n")
        n += 1
    return n, h.hexdigest()
# Plans and no-op re-runs: "is this invoice cancelled?" is a lookup by `cancels`, and a series'
# newest document (the optimistic-numbering check) a lookup by (prefix, id), not scans of the whole table.
SCHEMA += """
CREATE INDEX IF NOT EXISTS documents_cancels ON documents (cancels);
CREATE INDEX IF NOT EXISTS documents_prefix_id ON documents (prefix, id);
"""


@dataclass(frozen=True, slots=True)
class IssuedRef:
    """An issued document without its snapshot (nothing parsed): enough to compare, number and publish.
    Slotted: a 100,000-customer month holds one per document."""

    id: int
    kind: str
    number: str | None
    customer_id: str
    content_sha256: str
    file_name: str
    file_sha256: str
    cancels: str | None
    total_fen: int


@dataclass
class Issued:
    prefix: str
    kind: str
    number: str | None
    customer_id: str
    period: str
    content_sha256: str
    file_name: str
    file_sha256: str
    cancels: str | None
    content: Document  # the snapshot as issued (invoicer/model.py)
    input_sha256: str
    pricebook_sha256: str
    run_id: int


@dataclass
class ChainCheck:
    """What ``LedgerReader.check_chain`` found: problems (tampering), notes (facts an auditor should know),
    the head, the number of links and, per chained table, the rowids the chain covers."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    head: str | None = None
    links: int = 0
    chained: dict[str, set[int]] = field(default_factory=dict)
    heads: set[str] = field(default_factory=set)

    def covers(self, table: str, rowid: int) -> bool:
        return rowid in self.chained.get(table, ())


def format_number(prefix: str, year: int, seq: int, digits: int) -> str:
    """SZTY-2026-000123: prefix, calendar year of the issue date, gapless sequence."""
    return f"{prefix}-{year}-{seq:0{digits}d}"


def issue_year(doc: dict) -> int:
    """The year of a document's issue date: its number's series (SZTY-2026-...)."""
    return int(doc["issue_date"][:4])


def number_stream(prefix: str, groups, digits: int, starts: dict[int, int]):
    """The numbering rule, pure: ``groups`` (customer id, documents in issue order), already in customer id
    order and possibly a generator, numbered from ``starts`` (the next number of each issue year's series,
    ``Ledger.next_seqs``): each document is yielded as a copy carrying ``number``, ``_year`` and ``_seq``,
    consecutively, with no gap. The same groups and starts always give the same numbers."""
    next_by_year = dict(starts)
    for _, group in groups:
        for doc in group:
            year = issue_year(doc)
            seq = next_by_year[year]
            next_by_year[year] += 1
            yield {**doc, "number": format_number(prefix, year, seq, digits), "_year": year, "_seq": seq}


class NotALedger(InvoicerError):
    """The file is not a readable invoicer ledger (missing, a folder, not SQLite, truncated, no tables)."""


def _sqlite_problem(path: Path, exc: sqlite3.Error) -> InvoicerError:
    """One plain line for an SQLite failure on a ledger file (never a traceback)."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return LedgerBusy(f"the ledger {path} is in use by another run; try again when it has finished")
    if "readonly" in text or "read-only" in text:
        return InputError(f"{path}: the ledger is read-only, so nothing can be issued (a run records what it "
                          f"issues); to audit a write-protected archive use `invoicer verify`")
    if "full" in text:
        return InputError(f"{path}: the disk is full ({text}); nothing was issued. Free some space and run again")
    if "not a database" in text or "malformed" in text:
        return InputError(f"{path}: not an invoicer ledger (not an SQLite database, or truncated or damaged: "
                          f"{text}); restore it from a backup or pass another --ledger")
    if "unable to open" in text:
        if path.exists():
            return InputError(f"{path}: cannot open the ledger for writing ({text}): is the file or its folder "
                              f"write-protected? Nothing was issued; to audit it use `invoicer verify`")
        return InputError(f"{path}: cannot open the ledger ({text}): --ledger must name a file in a folder "
                          f"that exists")
    return InputError(f"{path}: the ledger failed ({text})")


class LedgerReader:
    """A ledger opened strictly read-only, for audits and dry runs: ``mode=ro`` URI, no schema script, no
    write lock, no WAL checkpoint. It audits a write-protected archive and never waits for a running job.

    When no ``-wal`` file is beside the database (nobody has it open, and it is fully checkpointed) it is
    opened ``immutable=1`` too, so SQLite creates no ``-wal``/``-shm`` files next to an archive; otherwise
    it reads through the writer's WAL. Raises NotALedger (exit 2) for a missing file or a folder, and for a
    file that is not an invoicer ledger (empty, truncated, not SQLite, a database without our tables)."""

    REQUIRED = ("documents", "runs", "blobs", "meta")

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.is_dir():
            raise NotALedger(f"{self.path}: is a folder, not a ledger file")
        if not self.path.is_file():
            raise NotALedger(f"{self.path}: no ledger there (pass --ledger)")
        uri = self.path.resolve().as_uri() + "?mode=ro"
        if not Path(str(self.path) + "-wal").exists():
            uri += "&immutable=1"
        try:
            self.db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            self.db.row_factory = sqlite3.Row
            self.tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.Error as exc:
            raise NotALedger(f"{self.path}: not an invoicer ledger (not an SQLite database, or truncated or "
                             f"damaged: {exc})") from None
        missing = [t for t in self.REQUIRED if t not in self.tables]
        if missing:
            self.db.close()
            raise NotALedger(f"{self.path}: not an invoicer ledger (an SQLite file without the table(s) "
                             f"{', '.join(missing)}): an empty or foreign database")

    def close(self) -> None:
        self.db.close()

    def rollback(self) -> None:
        """End a read transaction (a no-op outside one)."""
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- reads --------------------------------------------------------------------------------------
    def _issued(self, row: sqlite3.Row) -> Issued:
        return Issued(row["prefix"], row["kind"], row["number"], row["customer_id"], row["period"], row["content_sha256"],
                      row["file_name"], row["file_sha256"], row["cancels"], json.loads(row["content_json"]),
                      row["input_sha256"], row["pricebook_sha256"], row["run_id"])

    def documents(self, prefix: str | None = None, period: str | None = None) -> list[Issued]:
        """Issued documents (invoices, credit notes, notices) in issue order, optionally of one prefix/period."""
        sql, args = "SELECT * FROM documents WHERE 1=1", []
        if prefix is not None:
            sql += " AND prefix = ?"
            args.append(prefix)
        if period is not None:
            sql += " AND period = ?"
            args.append(period)
        return [self._issued(r) for r in self.db.execute(sql + " ORDER BY id", args)]

    def active_invoices(self, prefix: str, period: str) -> dict[str, Issued]:
        """The invoice in force per customer for a period: issued and not cancelled by a credit note."""
        rows = self.db.execute(
            "SELECT * FROM documents d WHERE kind = 'invoice' AND prefix = ? AND period = ? AND NOT EXISTS "
            "(SELECT 1 FROM documents c WHERE c.kind = 'credit_note' AND c.cancels = d.number) ORDER BY id",
            (prefix, period))
        return {r["customer_id"]: self._issued(r) for r in rows}

    def begin_read(self) -> None:
        """Start a read transaction (no lock): every read until commit/rollback sees one snapshot, and
        neither blocks a writer nor is blocked by one (WAL)."""
        self.db.execute("BEGIN")
        self.db.execute("SELECT 1 FROM meta LIMIT 1").fetchall()  # the snapshot starts at the first read

    _REF = "id, kind, number, customer_id, content_sha256, file_name, file_sha256, cancels, total_fen"

    def active_invoice_refs(self, prefix: str, period: str) -> dict[str, IssuedRef]:
        """The invoice in force per customer for a period (issued, not cancelled), in one indexed query and
        without parsing any snapshot: the plan compares content hashes."""
        rows = self.db.execute(
            f"SELECT {self._REF} FROM documents d WHERE kind = 'invoice' AND prefix = ? AND period = ? AND NOT "
            "EXISTS (SELECT 1 FROM documents c WHERE c.cancels = d.number AND c.kind = 'credit_note') ORDER BY id",
            (prefix, period))
        return {r[3]: IssuedRef(*r) for r in rows}

    # -- streamed reads: a cursor, one row at a time, so a month of documents is never held -----------------
    def active_invoice_ref_stream(self, prefix: str, period: str):
        """``active_invoice_refs`` as a stream in customer id order (then issue order), for a merge with the
        run's invoices (also in customer id order; SQLite's text order is Python's): one query on the
        (prefix, period, customer_id) index. A customer with more than one is yielded more than once; the
        newest (last) is the one in force, as in ``active_invoice_refs``."""
        for r in self.db.execute(
                f"SELECT {self._REF} FROM documents d WHERE kind = 'invoice' AND prefix = ? AND period = ? AND "
                "NOT EXISTS (SELECT 1 FROM documents c WHERE c.cancels = d.number AND c.kind = 'credit_note') "
                "ORDER BY customer_id, id", (prefix, period)):
            yield IssuedRef(*r)

    def customer_notice_hashes(self, prefix: str, period: str, customer_id: str) -> dict[str, str]:
        """The content hash of the newest notice per file name of one customer's notices of a period: by the
        (prefix, period, customer_id) index."""
        return {name: sha for name, sha in self.db.execute(
            "SELECT file_name, content_sha256 FROM documents WHERE prefix = ? AND period = ? AND customer_id = ? "
            "AND kind = 'notice' ORDER BY id", (prefix, period, customer_id))}

    def document_ref_stream(self, prefix: str, period: str):
        """Every document of a period, oldest first, unparsed, as a stream."""
        for r in self.db.execute(f"SELECT {self._REF} FROM documents WHERE prefix = ? AND period = ? ORDER BY id",
                                 (prefix, period)):
            yield IssuedRef(*r)

    def latest_notice_ids(self, prefix: str, period: str):
        """(file name, id) of the newest notice per file name of a period, streamed."""
        yield from self.db.execute("SELECT file_name, MAX(id) FROM documents WHERE kind = 'notice' AND prefix = ? "
                                   "AND period = ? GROUP BY file_name", (prefix, period))

    def cancelled_numbers(self, prefix: str, period: str) -> set:
        """What the period's credit notes cancel (a few: amendments only)."""
        return {r[0] for r in self.db.execute("SELECT cancels FROM documents WHERE kind = 'credit_note' AND "
                                              "prefix = ? AND period = ?", (prefix, period))}

    def bill_stream(self, prefix: str, period: str):
        """(id, kind, number) of the period's invoices and credit notes in number order, streamed."""
        yield from self.db.execute("SELECT id, kind, number FROM documents WHERE prefix = ? AND period = ? AND "
                                   "kind != 'notice' ORDER BY number", (prefix, period))

    def load(self, refs: list[IssuedRef]) -> list[Issued]:
        """The full records (snapshot parsed) of some documents, in the order given."""
        return self.issued_by_id([r.id for r in refs])

    def document_row_chunks(self, chunk: int = 1000):
        """Every document row (``SELECT *``) in id order, as lists of at most ``chunk`` rows: keyset
        pagination on the id, one query per chunk, so an audit holds one chunk of rows (and of parsed
        snapshots) at a time, never the whole table."""
        last = None
        while True:
            if last is None:
                rows = self.db.execute("SELECT * FROM documents ORDER BY id LIMIT ?", (chunk,)).fetchall()
            else:
                rows = self.db.execute("SELECT * FROM documents WHERE id > ? ORDER BY id LIMIT ?",
                                       (last, chunk)).fetchall()
            if not rows:
                return
            yield rows
            last = rows[-1]["id"]

    def issued_by_number(self, numbers) -> dict[str, Issued]:
        """The documents bearing these numbers whose recorded content can be read, by number (a number
        the ledger never issued, or whose content is not readable JSON, is absent); a few hundred numbers
        per query, by the numbers' unique index."""
        numbers = list(numbers)
        out = {}
        for i in range(0, len(numbers), 500):
            part = numbers[i:i + 500]
            for row in self.db.execute(f"SELECT * FROM documents WHERE number IN ({','.join('?' * len(part))}) "
                                       f"ORDER BY id", part):
                try:
                    out[row["number"]] = self._issued(row)
                except (ValueError, TypeError):
                    continue
        return out

    def issued_by_id(self, ids: list[int]) -> list[Issued]:
        """The full records (snapshot parsed) of some documents by id, in the order given."""
        by_id = {}
        for i in range(0, len(ids), 500):  # a few hundred ids per query, not one query per document
            part = ids[i:i + 500]
            for row in self.db.execute(f"SELECT * FROM documents WHERE id IN ({','.join('?' * len(part))})", part):
                by_id[row["id"]] = row
        return [self._issued(by_id[i]) for i in ids]

    def series_mark(self, prefix: str) -> int:
        """The id of the newest document of a series (0 if none). Documents are append-only, so an equal mark
        means nobody numbered in, or issued anything for, this prefix since it was read."""
        row = self.db.execute("SELECT MAX(id) FROM documents WHERE prefix = ?", (prefix,)).fetchone()
        return row[0] or 0

    def next_seqs(self, prefix: str, years) -> dict[int, int]:
        """The next number of each of a prefix's yearly series (``next_seq``), read at once. Reads only: the
        numbers ``number_stream`` gives from them hold while the caller's transaction (or an unchanged
        ``series_mark``) says nobody else numbered meanwhile."""
        return {year: self.next_seq(prefix, year) for year in sorted(set(years))}

    def next_seq(self, prefix: str, year: int) -> int:
        """The next number of a series (prefix, year): one more than the highest issued, 1 for a new series."""
        row = self.db.execute("SELECT MAX(seq) FROM documents WHERE prefix = ? AND year = ?", (prefix, year)).fetchone()
        return (row[0] or 0) + 1

    # -- invoice prefix ownership (the drop folder's rule; README "Trust model") -----------------------
    def prefix_owner(self, prefix: str) -> str | None:
        """Who numbers in this prefix: its recorded owner (OPERATOR or a reseller folder's name); OPERATOR for
        a prefix with documents but no owner (numbers the clerk issued before prefixes were bound); None for
        a prefix this ledger has never used."""
        row = self.db.execute("SELECT owner FROM prefix_owners WHERE prefix = ?", (prefix,)).fetchone()
        if row is not None:
            return row[0]
        used = self.db.execute("SELECT 1 FROM documents WHERE prefix = ? LIMIT 1", (prefix,)).fetchone()
        return OPERATOR if used else None

    def check_prefix(self, prefix: str, owner: str) -> str | None:
        """The rule for who may number in an invoice prefix; returns its current owner (None if unowned).

        ``owner`` is OPERATOR for the clerk's ``invoicer run`` or a reseller folder's name for the watcher.
        Refused (PrefixTaken): a prefix that differs only by case from one the ledger already has (one series,
        never two), and a reseller folder naming a prefix owned by the operator or another folder. The
        operator may number in any prefix (it amends resellers' invoices). Reads only (a dry run checks it on
        a read-only ledger)."""
        current = self.prefix_owner(prefix)
        # a new prefix only: a series that already exists (an old ledger may hold two cases) keeps working
        other = None if current is not None else self.db.execute(
            "SELECT prefix FROM prefix_owners WHERE prefix = ? COLLATE NOCASE AND prefix <> ? UNION "
            "SELECT prefix FROM documents WHERE prefix = ? COLLATE NOCASE AND prefix <> ? LIMIT 1",
            (prefix, prefix, prefix, prefix)).fetchone()
        if other is not None:
            raise PrefixTaken(f"the invoice prefix {prefix!r} differs only by case from {other[0]!r}, which this "
                              f"ledger already numbers in; prefixes are one series whatever their case: use "
                              f"{other[0]!r}")
        if current is not None and current != owner and owner != OPERATOR:
            whose = ("the operator's own runs (invoicer run)" if current == OPERATOR
                     else f"the reseller folder {current!r}")
            raise PrefixTaken(f"the roster's invoice prefix {prefix!r} (sheet reseller, invoice_prefix) belongs to "
                              f"{whose}; a roster from {owner!r} cannot number invoices in that series. Use this "
                              f"reseller's own prefix (without one, the prefix is made from the folder's name)")
        return current

    def blob(self, sha256: str) -> bytes | None:
        """Kept bytes (a roster, a price book, an issued PDF) by their SHA-256, or None if not kept."""
        row = self.db.execute("SELECT data FROM blobs WHERE sha256 = ?", (sha256,)).fetchone()
        return None if row is None else bytes(row[0])

    def has_blob(self, sha256: str) -> bool:
        return self.db.execute("SELECT 1 FROM blobs WHERE sha256 = ?", (sha256,)).fetchone() is not None


    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    @property
    def ledger_id(self) -> str | None:
        """This ledger's identity (a random id given when it was created or upgraded); copies keep it."""
        return self.meta("ledger_id")

    def chain_head(self) -> str | None:
        """The head of the hash chain (the last link's head), or None before anything was chained."""
        if not self._has_table("chain"):
            return None
        row = self.db.execute("SELECT head_sha256 FROM chain ORDER BY seq DESC LIMIT 1").fetchone()
        return None if row is None else row[0]

    def anchor(self, prefix: str, period: str) -> dict:
        """What a manifest records about its ledger: the ledger's identity, and the chain head as of the last
        document of this prefix and period (its link and every link before it cover everything the folder
        holds; a re-run that issues nothing leaves it unchanged, so the manifest's bytes stay the same).
        The head is None for a period with no chained document."""
        link = None
        if self._has_table("chain"):
            link = self.db.execute(
                "SELECT c.seq, c.head_sha256 FROM chain c JOIN documents d ON c.table_name = 'documents' AND "
                "c.row_id = d.id WHERE d.prefix = ? AND d.period = ? ORDER BY c.seq DESC LIMIT 1",
                (prefix, period)).fetchone()
        return {"ledger_id": self.ledger_id, "chain_head": link[1] if link else None,
                "chain_link": link[0] if link else None}

    def _has_table(self, name: str) -> bool:
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                               (name,)).fetchone() is not None

    # -- audit --------------------------------------------------------------------------------------
    def trigger_problems(self) -> list[str]:
        """Every append-only trigger that is missing or no longer refuses (reported, never re-created)."""
        have = {r["name"]: r["sql"] for r in self.db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")}
        problems = []
        for table, on_update, on_delete in APPEND_ONLY:
            if not self._has_table(table):
                continue  # a ledger written before the table existed
            for name, event, message in ((f"{table}_immutable", "UPDATE", on_update),
                                         (f"{table}_undeletable", "DELETE", on_delete)):
                expected = f"CREATE TRIGGER {name} BEFORE {event} ON {table}\nBEGIN SELECT RAISE(ABORT, '{message}'); END"
                if name not in have:
                    problems.append(f"ledger trigger {name} is missing: {table} rows could be "
                                    f"{'edited' if event == 'UPDATE' else 'deleted'} without a trace in SQLite")
                elif have[name] != expected:
                    problems.append(f"ledger trigger {name} was replaced: it no longer refuses {event} on {table}")
        return problems

    def check_chain(self) -> ChainCheck:
        """Walk the hash chain: every link follows the previous one, every chained row still hashes to its
        record, no chained row is missing, and no row of a chained table was written outside the chain. The
        first link seals the rows written before the chain began (a ledger upgraded from an older version)."""
        out = ChainCheck()
        if not self._has_table("chain"):
            out.notes.append("this ledger has no hash chain (written by a version before chaining): its records "
                             "are checked by their contents only")
            return out
        # the links are walked as the query yields them (a 100,000-customer month has as many): not listed
        links = self.db.execute("SELECT * FROM chain ORDER BY seq")
        first = links.fetchone()
        if first is None:
            out.notes.append("no record has been chained in this ledger yet")
            return out
        ledger_id = self.ledger_id
        if ledger_id is None:
            out.problems.append("the ledger's identity (meta ledger_id) is missing")
        legacy_max: dict[str, int] = {}
        prev = chain_origin(ledger_id or "")
        expected_seq = 1
        for link in itertools.chain((first,), links):
            out.links += 1
            seq = link["seq"]
            if seq != expected_seq:
                gone = f"link {expected_seq} is" if seq - 1 == expected_seq else f"links {expected_seq} to {seq - 1} are"
                out.problems.append(f"chain {gone} missing (removed from the chain)")
            expected_seq = seq + 1
            if link["prev_sha256"] != prev:
                what = "the ledger's identity" if seq == 1 else f"link {seq - 1}"
                out.problems.append(f"chain link {seq} does not follow {what}: links were removed, inserted or "
                                    f"rewritten")
            try:
                if link["head_sha256"] != link_head(link["prev_sha256"], link["record_sha256"]):
                    out.problems.append(f"chain link {seq}: its head is not the hash of its record (rewritten)")
            except ValueError:
                out.problems.append(f"chain link {seq}: not a hash (rewritten)")
            prev = link["head_sha256"]
            out.heads.add(prev)
            table, rowid = link["table_name"], link["row_id"]
            if table == "genesis":
                legacy_max = self._check_genesis(link, out)
                continue
            if table not in CHAINED:
                out.problems.append(f"chain link {seq} names an unknown table {table!r}")
                continue
            rows = out.chained.setdefault(table, set())
            if rowid in rows:
                out.problems.append(f"chain link {seq}: {table} row {rowid} is chained twice")
            rows.add(rowid)
            row = self.db.execute(f"SELECT rowid AS _rowid, * FROM {table} WHERE rowid = ?", (rowid,)).fetchone() \
                if self._has_table(table) else None
            if row is None:
                out.problems.append(f"{table} row {rowid} is missing: deleted after it was recorded (chain link {seq})")
            elif _sha(canonical_record(table, rowid, row)) != link["record_sha256"]:
                out.problems.append(f"{table} row {rowid} ({_label(table, row)}) was changed after it was recorded "
                                    f"(chain link {seq})")
        out.head = prev
        for table in CHAINED:
            if not self._has_table(table):
                continue
            floor = legacy_max.get(table, 0)
            covered = out.chained.get(table, set())
            for row in self.db.execute(f"SELECT rowid AS _rowid, * FROM {table} WHERE rowid > ? ORDER BY rowid",
                                       (floor,)):
                if row["_rowid"] not in covered:
                    out.problems.append(f"{table} row {row['_rowid']} ({_label(table, row)}) is not in the hash "
                                        f"chain: written behind the ledger's back")
        return out

    def _check_genesis(self, link, out: ChainCheck) -> dict[str, int]:
        text = self.meta("chain_genesis")
        if link["seq"] != 1:
            out.problems.append(f"chain link {link['seq']} claims to start the chain")
        if text is None or _sha(text.encode()) != link["record_sha256"]:
            out.problems.append("the chain's first link does not match the ledger's recorded start "
                                "(meta chain_genesis missing or changed)")
            return {}
        genesis = json.loads(text)
        legacy_max = {}
        total = 0
        for table, sealed in genesis.get("legacy", {}).items():
            legacy_max[table] = sealed["max_rowid"]
            total += sealed["rows"]
            if table not in CHAINED or not self._has_table(table):
                continue
            rows, digest = _legacy_digest(self.db, table, sealed["max_rowid"])
            if digest != sealed["sha256"]:
                out.problems.append(f"{table}: the {sealed['rows']} record(s) written before the chain began "
                                    f"changed since it began ({rows} now; rows deleted, added or edited)")
        if total:
            out.notes.append(f"{total} record(s) written before this ledger was upgraded to the hash chain are "
                             f"unchained: sealed as a whole by its first link, and checked by their contents")
        return legacy_max

    def series_problems(self) -> list[str]:
        """Each series' numbers as the last run that issued in it left them (count and highest): catches
        the last invoice deleted, and each chained run's count of numbers issued."""
        if not self._has_table("series"):
            return []
        problems = []
        latest = {}
        for r in self.db.execute("SELECT * FROM series ORDER BY id"):
            latest[(r["prefix"], r["year"])] = r
        for (prefix, year), r in sorted(latest.items()):
            n, top = self.db.execute("SELECT COUNT(*), MAX(seq) FROM documents WHERE prefix = ? AND year = ? "
                                     "AND seq IS NOT NULL", (prefix, year)).fetchone()
            if (n, top or 0) != (r["count_after"], r["highest"]):
                problems.append(f"numbers {prefix}-{year}: run {r['run_id']} recorded {r['count_after']} number(s) "
                                f"up to {r['highest']}, the ledger now holds {n} up to {top or 0} "
                                f"(documents deleted or added)")
        per_run = {}
        for r in self.db.execute("SELECT run_id, SUM(issued) FROM series GROUP BY run_id"):
            per_run[r[0]] = r[1]
        for r in self.db.execute("SELECT id, issued FROM runs WHERE id IN (SELECT run_id FROM series)"):
            if per_run.get(r["id"]) != r["issued"]:
                problems.append(f"run {r['id']}: issued {r['issued']} number(s), its series record "
                                f"{per_run.get(r['id'])}")
        return problems


    def latest_run(self, prefix: str, period: str) -> sqlite3.Row | None:
        """The newest run of a prefix and period (what it priced: its input and price book), or None."""
        return self.db.execute("SELECT * FROM runs WHERE prefix = ? AND period = ? ORDER BY id DESC LIMIT 1",
                               (prefix, period)).fetchone()

    def numbered_per_run(self) -> list[tuple[sqlite3.Row, int]]:
        """Each run with the count of numbered documents (invoices, credit notes) the ledger holds of it, in
        one pass over the documents."""
        held = dict(self.db.execute("SELECT run_id, COUNT(*) FROM documents WHERE seq IS NOT NULL "
                                    "GROUP BY run_id").fetchall())
        return [(r, held.get(r["id"], 0)) for r in self.db.execute("SELECT * FROM runs ORDER BY id")]


def _label(table: str, row) -> str:
    if table == "documents":
        return row["number"] or row["file_name"]
    if table == "runs":
        return f"run of {row['prefix']} {row['period']}"
    if table == "series":
        return f"series {row['prefix']}-{row['year']}"
    return f"prefix {row['prefix']}"


class Ledger(LedgerReader):
    """The ledger opened for writing (creating it, and upgrading an older one's schema, if needed).

    Writes happen between ``begin()`` and ``commit()``; every write method also appends the row's link to
    the hash chain in the same transaction, and ``commit()`` records each run's series counts first.
    Raises LedgerBusy (exit 4) when another run holds the write lock past ``busy_timeout_s``, and
    InputError (exit 2) for a ledger that cannot be used: a folder, not SQLite, truncated, read-only, a
    full disk. ``Ledger.open_readonly(path)`` gives a LedgerReader instead (no lock, no schema, no writes)."""

    def __init__(self, path: str | Path, busy_timeout_s: float = 30.0):
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._pending_runs: list[int] = []
        if self.path.is_dir():
            raise InputError(f"{self.path}: is a folder; --ledger names the ledger file (e.g. ledger.sqlite)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"{self.path.parent}: cannot make the output folder ({exc.strerror or exc}); "
                             f"is it a file?") from None
        try:
            self.db = sqlite3.connect(str(self.path), timeout=busy_timeout_s, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as exc:
            raise _sqlite_problem(self.path, exc) from None
        self._write(lambda: self.db.executescript(SCHEMA))
        self._write(lambda: self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                                            (SCHEMA_VERSION,)))
        self._write(lambda: self.db.execute("INSERT OR IGNORE INTO meta VALUES ('ledger_id', ?)", (uuid.uuid4().hex,)))
        self.tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    @staticmethod
    def open_readonly(path: str | Path) -> LedgerReader:
        """A read-only reader of the ledger at path (see LedgerReader); nothing is created or locked."""
        return LedgerReader(path)

    def _write(self, fn):
        try:
            return fn()
        except sqlite3.Error as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise LedgerBusy(self._busy_message()) from None
            if isinstance(exc, sqlite3.IntegrityError):
                raise  # a refused write (a trigger, a unique number) is the caller's to explain
            raise _sqlite_problem(self.path, exc) from None

    def _busy_message(self) -> str:
        return (f"the ledger {self.path} is in use by another run (waited {self.busy_timeout_s:.0f} s); "
                f"try again when it has finished")

    # -- transactions -------------------------------------------------------------------------------
    def begin(self) -> None:
        """Take the write lock now, so numbers read below stay ours until commit."""
        self._pending_runs = []
        self._write(lambda: self.db.execute("BEGIN IMMEDIATE"))

    def commit(self) -> None:
        """Record the series counts of the runs added in this transaction, chain them, and commit.
        A failed commit (a full disk) rolls back: nothing of the run is issued."""
        try:
            self._write(self._seal_series)
            self._write(lambda: self.db.execute("COMMIT"))
        except BaseException:
            self.rollback()
            raise

    def rollback(self) -> None:
        """Drop everything written since begin() (a no-op outside a transaction)."""
        self._pending_runs = []
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    # -- writes (inside begin/commit) ----------------------------------------------------------------
    def put_blob(self, sha256: str, kind: str, name: str, data: bytes) -> None:
        """Keep bytes by their SHA-256 (once: the same bytes are stored once)."""
        self._write(lambda: self.db.execute("INSERT OR IGNORE INTO blobs VALUES (?, ?, ?, ?)",
                                            (sha256, kind, name, data)))

    def bind_prefix(self, prefix: str, owner: str) -> None:
        """Record that ``owner`` (OPERATOR or a reseller folder) numbers in ``prefix`` (refused if already bound);
        chained. Callers go through ``claim_prefix``, which holds the rule."""
        self._ensure_genesis()
        cur = self._write(lambda: self.db.execute("INSERT INTO prefix_owners (prefix, owner) VALUES (?, ?)",
                                                  (prefix, owner)))
        self._chain("prefix_owners", cur.lastrowid)

    def claim_prefix(self, prefix: str, owner: str, bind: bool = True) -> None:
        """The one rule for who may number in an invoice prefix (``check_prefix``), and with ``bind`` the
        binding: an unowned prefix is recorded as the owner's. Callers bind only when the run records
        documents, so a roster that issues nothing takes nothing (kept only if the transaction commits)."""
        current = self.check_prefix(prefix, owner)
        if bind and self.db.execute("SELECT 1 FROM prefix_owners WHERE prefix = ?", (prefix,)).fetchone() is None:
            self.bind_prefix(prefix, current or owner)

    def add_run(self, prefix, period, input_sha256, pricebook_sha256, pricebook_version, tool_version, amend,
                issued) -> int:
        """Record a run (what it priced, with which price book and tool, how many numbers it issued);
        returns its id, which the run's documents name."""
        self._ensure_genesis()
        cur = self._write(lambda: self.db.execute(
            "INSERT INTO runs (prefix, period, input_sha256, pricebook_sha256, pricebook_version, tool_version, "
            "amend, issued) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (prefix, period, input_sha256, pricebook_sha256, pricebook_version, tool_version, int(amend), issued)))
        run_id = int(cur.lastrowid)
        self._chain("runs", run_id)
        self._pending_runs.append(run_id)
        return run_id

    def add_document(self, run_id: int, doc: Document, prefix: str, year: int | None, seq: int | None,
                     content_sha256: str, file_name: str, file_sha256: str, input_sha256: str,
                     pricebook_sha256: str) -> None:
        """Record an issued document (its snapshot, number and file hash); refused if the number exists."""
        self._ensure_genesis()
        cur = self._write(lambda: self.db.execute(
            "INSERT INTO documents (run_id, kind, prefix, year, seq, number, customer_id, period, issue_date, "
            "total_fen, content_sha256, content_json, file_name, file_sha256, cancels, input_sha256, "
            "pricebook_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, doc["kind"], prefix, year, seq, doc.get("number"), doc["customer"]["customer_id"],
             doc["period"], doc["issue_date"], int(doc.get("total_fen", 0)), content_sha256,
             json.dumps(doc, sort_keys=True, ensure_ascii=False), file_name, file_sha256, doc.get("cancels"),
             input_sha256, pricebook_sha256)))
        self._chain("documents", cur.lastrowid)

    # -- the chain (inside begin/commit) ---------------------------------------------------------------
    def _ensure_genesis(self) -> None:
        """Start the chain before the first chained write: its first link is bound to the ledger's identity
        and seals the rows an older version wrote (count, highest rowid and digest per table)."""
        if self.db.execute("SELECT 1 FROM chain LIMIT 1").fetchone() is not None:
            return
        ledger_id = self.meta("ledger_id")
        legacy = {}
        for table in CHAINED:
            top = self.db.execute(f"SELECT MAX(rowid) FROM {table}").fetchone()[0] or 0
            rows, digest = _legacy_digest(self.db, table, top)
            legacy[table] = {"max_rowid": top, "rows": rows, "sha256": digest}
        text = json.dumps({"ledger_id": ledger_id, "legacy": legacy}, sort_keys=True, separators=(",", ":"))
        self._write(lambda: self.db.execute("INSERT INTO meta VALUES ('chain_genesis', ?)", (text,)))
        record = _sha(text.encode())
        prev = chain_origin(ledger_id)
        self._write(lambda: self.db.execute(
            "INSERT INTO chain (seq, table_name, row_id, record_sha256, prev_sha256, head_sha256) "
            "VALUES (1, 'genesis', 0, ?, ?, ?)", (record, prev, link_head(prev, record))))

    def _chain(self, table: str, rowid: int) -> None:
        row = self.db.execute(f"SELECT rowid AS _rowid, * FROM {table} WHERE rowid = ?", (rowid,)).fetchone()
        record = _sha(canonical_record(table, rowid, row))
        prev = self.db.execute("SELECT head_sha256 FROM chain ORDER BY seq DESC LIMIT 1").fetchone()[0]
        self._write(lambda: self.db.execute(
            "INSERT INTO chain (table_name, row_id, record_sha256, prev_sha256, head_sha256) VALUES (?, ?, ?, ?, ?)",
            (table, rowid, record, prev, link_head(prev, record))))

    def _seal_series(self) -> None:
        """Per run of this transaction and series it numbered in: how many it issued, how many the series
        holds after it and the highest number (so a deleted last number is seen)."""
        for run_id in self._pending_runs:
            for prefix, year, issued in self.db.execute(
                    "SELECT prefix, year, COUNT(*) FROM documents WHERE run_id = ? AND seq IS NOT NULL "
                    "GROUP BY prefix, year ORDER BY prefix, year", (run_id,)).fetchall():
                count_after, highest = self.db.execute(
                    "SELECT COUNT(*), MAX(seq) FROM documents WHERE prefix = ? AND year = ? AND seq IS NOT NULL",
                    (prefix, year)).fetchone()
                cur = self.db.execute("INSERT INTO series (run_id, prefix, year, issued, count_after, highest) "
                                      "VALUES (?, ?, ?, ?, ?, ?)", (run_id, prefix, year, issued, count_after, highest))
                self._chain("series", cur.lastrowid)
        self._pending_runs = []


def runs_of_input(path: Path, input_sha256: str, period: str) -> list[int]:
    """Ids of the runs that priced exactly this input for this period. Read-only, and it takes no lock, so a
    caller can ask before its run; a ledger that does not exist yet (or cannot be read) has none."""
    if not Path(path).exists():
        return []
    try:
        reader = LedgerReader(path)
    except InvoicerError:
        return []
    try:
        return [r[0] for r in reader.db.execute("SELECT id FROM runs WHERE input_sha256 = ? AND period = ? "
                                                "ORDER BY id", (input_sha256, period))]
    except sqlite3.Error:
        return []
    finally:
        reader.close()
