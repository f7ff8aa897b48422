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

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from .errors import LedgerBusy

SCHEMA_VERSION = "1"

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
"""


def _append_only(table: str, on_update: str, on_delete: str) -> str:
    """Triggers that refuse UPDATE and DELETE on a table: its rows are records, never edited or removed."""
    return (f"CREATE TRIGGER IF NOT EXISTS {table}_immutable BEFORE UPDATE ON {table}\n"
            f"BEGIN SELECT RAISE(ABORT, '{on_update}'); END;\n"
            f"CREATE TRIGGER IF NOT EXISTS {table}_undeletable BEFORE DELETE ON {table}\n"
            f"BEGIN SELECT RAISE(ABORT, '{on_delete}'); END;\n")


SCHEMA += "".join(_append_only(*t) for t in (
    ("documents", "issued documents are immutable: issue a credit note instead", "issued documents are never deleted"),
    ("prefix_owners", "an invoice prefix keeps its owner", "an invoice prefix keeps its owner"),
    ("blobs", "stored bytes are immutable", "stored bytes are never deleted"),
    ("runs", "the run log is append-only", "the run log is append-only"),
))
# Plans and no-op re-runs (h-scale): "is this invoice cancelled?" is a lookup by `cancels`, and a series'
# newest document (the optimistic-numbering check) a lookup by (prefix, id), not scans of the whole table.
SCHEMA += """
CREATE INDEX IF NOT EXISTS documents_cancels ON documents (cancels);
CREATE INDEX IF NOT EXISTS documents_prefix_id ON documents (prefix, id);
"""


@dataclass(frozen=True)
class IssuedRef:
    """An issued document without its snapshot (nothing parsed): enough to compare, number and publish."""

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
    content: dict
    input_sha256: str
    pricebook_sha256: str
    run_id: int


def format_number(prefix: str, year: int, seq: int, digits: int) -> str:
    """SZTY-2026-000123: prefix, calendar year of the issue date, gapless sequence."""
    return f"{prefix}-{year}-{seq:0{digits}d}"


class Ledger:
    def __init__(self, path: str | Path, busy_timeout_s: float = 30.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), timeout=busy_timeout_s, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.busy_timeout_s = busy_timeout_s
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self._write(lambda: self.db.executescript(SCHEMA))
        self._write(lambda: self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                                            (SCHEMA_VERSION,)))

    def _write(self, fn):
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise LedgerBusy(self._busy_message()) from None
            raise

    def _busy_message(self) -> str:
        return (f"the ledger {self.path} is in use by another run (waited {self.busy_timeout_s:.0f} s); "
                f"try again when it has finished")

    def close(self) -> None:
        self.db.close()

    # -- transactions -------------------------------------------------------------------------------
    def begin(self) -> None:
        """Take the write lock now, so numbers read below stay ours until commit."""
        self._write(lambda: self.db.execute("BEGIN IMMEDIATE"))

    def commit(self) -> None:
        self.db.execute("COMMIT")

    def rollback(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    # -- reads --------------------------------------------------------------------------------------
    def _issued(self, row: sqlite3.Row) -> Issued:
        return Issued(row["prefix"], row["kind"], row["number"], row["customer_id"], row["period"], row["content_sha256"],
                      row["file_name"], row["file_sha256"], row["cancels"], json.loads(row["content_json"]),
                      row["input_sha256"], row["pricebook_sha256"], row["run_id"])

    def documents(self, prefix: str | None = None, period: str | None = None) -> list[Issued]:
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

    def latest_notices(self, prefix: str, period: str) -> dict[tuple[str, str], Issued]:
        out = {}
        for r in self.db.execute("SELECT * FROM documents WHERE kind = 'notice' AND prefix = ? AND period = ? "
                                 "ORDER BY id", (prefix, period)):
            doc = self._issued(r)
            out[(doc.customer_id, doc.content["notice"]["notice_kind"])] = doc
        return out

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

    def latest_notice_refs(self, prefix: str, period: str) -> dict[str, IssuedRef]:
        """The newest notice per file name (one per customer and notice kind) of a period, unparsed."""
        out = {}
        for r in self.db.execute(f"SELECT {self._REF} FROM documents WHERE kind = 'notice' AND prefix = ? AND "
                                 "period = ? ORDER BY id", (prefix, period)):
            out[r[5]] = IssuedRef(*r)
        return out

    def document_refs(self, prefix: str, period: str) -> list[IssuedRef]:
        """Every document of a period, oldest first, unparsed."""
        return [IssuedRef(*r) for r in self.db.execute(
            f"SELECT {self._REF} FROM documents WHERE prefix = ? AND period = ? ORDER BY id", (prefix, period))]

    def load(self, refs: list[IssuedRef]) -> list[Issued]:
        """The full records (snapshot parsed) of some documents, in the order given."""
        by_id = {}
        ids = [r.id for r in refs]
        for i in range(0, len(ids), 500):  # a few hundred ids per query, not one query per document
            chunk = ids[i:i + 500]
            for row in self.db.execute(f"SELECT * FROM documents WHERE id IN ({','.join('?' * len(chunk))})", chunk):
                by_id[row["id"]] = row
        return [self._issued(by_id[i]) for i in ids]

    def series_mark(self, prefix: str) -> int:
        """The id of the newest document of a series (0 if none). Documents are append-only, so an equal mark
        means nobody numbered in, or issued anything for, this prefix since it was read."""
        row = self.db.execute("SELECT MAX(id) FROM documents WHERE prefix = ?", (prefix,)).fetchone()
        return row[0] or 0

    def number(self, prefix: str, groups: list[tuple[str, list[dict]]], digits: int) -> list[dict]:
        """Gapless numbering: the documents of ``groups`` (customer id, documents in issue order) get the next
        numbers of their prefix and issue year, customer by customer, each group's documents consecutively
        (a credit note just before its replacement). Returns copies carrying ``number`` and the private
        ``_year``/``_seq`` that ``add_document`` records. Reads only: the numbers hold while the caller's
        transaction (or an unchanged ``series_mark``) says nobody else numbered meanwhile."""
        import datetime as dt

        out = []
        next_by_year: dict[int, int] = {}
        for _, group in sorted(groups, key=lambda w: w[0]):
            for doc in group:
                year = dt.date.fromisoformat(doc["issue_date"]).year
                if year not in next_by_year:
                    next_by_year[year] = self.next_seq(prefix, year)
                seq = next_by_year[year]
                next_by_year[year] += 1
                out.append({**doc, "number": format_number(prefix, year, seq, digits), "_year": year, "_seq": seq})
        return out

    def next_seq(self, prefix: str, year: int) -> int:
        row = self.db.execute("SELECT MAX(seq) FROM documents WHERE prefix = ? AND year = ?", (prefix, year)).fetchone()
        return (row[0] or 0) + 1

    def prefix_owner(self, prefix: str) -> str | None:
        """Who numbers in this prefix (the drop folder's reseller folder that first used it), if bound."""
        row = self.db.execute("SELECT owner FROM prefix_owners WHERE prefix = ?", (prefix,)).fetchone()
        return None if row is None else row[0]

    def blob(self, sha256: str) -> bytes | None:
        row = self.db.execute("SELECT data FROM blobs WHERE sha256 = ?", (sha256,)).fetchone()
        return None if row is None else bytes(row[0])

    def has_blob(self, sha256: str) -> bool:
        return self.db.execute("SELECT 1 FROM blobs WHERE sha256 = ?", (sha256,)).fetchone() is not None

    def runs(self) -> list[sqlite3.Row]:
        return list(self.db.execute("SELECT * FROM runs ORDER BY id"))

    # -- writes (inside begin/commit) ----------------------------------------------------------------
    def put_blob(self, sha256: str, kind: str, name: str, data: bytes) -> None:
        self.db.execute("INSERT OR IGNORE INTO blobs VALUES (?, ?, ?, ?)", (sha256, kind, name, data))

    def bind_prefix(self, prefix: str, owner: str) -> None:
        self.db.execute("INSERT INTO prefix_owners (prefix, owner) VALUES (?, ?)", (prefix, owner))

    def add_run(self, prefix, period, input_sha256, pricebook_sha256, pricebook_version, tool_version, amend,
                issued) -> int:
        cur = self.db.execute(
            "INSERT INTO runs (prefix, period, input_sha256, pricebook_sha256, pricebook_version, tool_version, "
            "amend, issued) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (prefix, period, input_sha256, pricebook_sha256, pricebook_version, tool_version, int(amend), issued))
        return int(cur.lastrowid)

    def add_document(self, run_id: int, doc: dict, prefix: str, year: int | None, seq: int | None,
                     content_sha256: str, file_name: str, file_sha256: str, input_sha256: str,
                     pricebook_sha256: str) -> None:
        self.db.execute(
            "INSERT INTO documents (run_id, kind, prefix, year, seq, number, customer_id, period, issue_date, "
            "total_fen, content_sha256, content_json, file_name, file_sha256, cancels, input_sha256, "
            "pricebook_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, doc["kind"], prefix, year, seq, doc.get("number"), doc["customer"]["customer_id"],
             doc["period"], doc["issue_date"], int(doc.get("total_fen", 0)), content_sha256,
             json.dumps(doc, sort_keys=True, ensure_ascii=False), file_name, file_sha256, doc.get("cancels"),
             input_sha256, pricebook_sha256))


def runs_of_input(path: Path, input_sha256: str, period: str) -> list[int]:
    """Ids of the runs that priced exactly this input for this period. Read-only, and it takes no lock, so a
    caller can ask before its run; a ledger that does not exist yet has none."""
    if not Path(path).exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return [r[0] for r in db.execute("SELECT id FROM runs WHERE input_sha256 = ? AND period = ? ORDER BY id",
                                          (input_sha256, period))]
    except sqlite3.Error:
        return []
    finally:
        db.close()
