"""A roster staged on disk, by customer: the run reads, validates and prices one partition of customers at a
time, so a month of any size is worked through in a partition's worth of memory.

The reader streams each sheet's data rows in here (``RosterStage.add``): a ``spill.Scratch``, SQLite's own
unnamed temporary database (deleted when it is closed or the process ends; its page cache is 1 MB).
Every row keeps its cells as the reader gave them and a *customer key*: its customer_id as validate reads it
(trimmed, NFKC), compared ignoring case. Every rule that looks across rows (a duplicate id, a change of an
unknown or rejected customer, the replay of a customer's changes) compares rows of one key only, so a
partition holding whole keys is validated and priced exactly as the whole roster would be (tests compare
both, partition by partition, down to one customer each). A row whose id is blank or unreadable is a key of
its own (validate rejects it before comparing it with anything).

Partitions follow the order of the id on each key's first customers row (the only row of a key validate
can accept: every later one is a duplicate), so the customers a run bills come out of the partitions in
customer id order, as the documents, the summary and the numbering take them.

The priced result of each partition (``put_part``) and the e-fapiao buyer columns of its valid customers
(``put_buyers``) are kept here too, for the run's later passes.

Values are kept pickled: the file is SQLite's unnamed temporary, unlinked as soon as it is opened, so no
other process can open it by name and what is read back is what this process wrote (never a reseller's
bytes: those are only the cells inside, which pickle stores as data).
"""
from __future__ import annotations

import contextlib
import pickle
import sqlite3
from collections.abc import Iterable, Iterator

import pandas as pd

from .errors import InvoicerError
from .spill import Scratch

# customers rows per partition (whole keys: a key is never split, so a partition may hold more)
PARTITION_ROWS = 2000
CUSTOMERS, CHANGES = 0, 1
_BATCH = 1000
ROW = "_row"


def _utf8(text: str) -> bytes:
    """Keys and ids are compared as UTF-8 bytes (SQLite's BLOB order): the order of their code points, as
    Python compares the strings; surrogates a reader let through are kept, never an error."""
    return text.encode("utf-8", "surrogatepass")


class StageFailed(InvoicerError):
    """The stage's temporary file failed (a full or read-only temporary folder): exit 2, one line. Before
    the ledger commits nothing was issued; after, publishing says so (exit 5)."""


class RosterStage:
    def __init__(self, columns: dict[int, list[str]]):
        self.columns = columns
        self._partitioned: int | None = None
        with self._failing():
            self._scratch = Scratch()  # an anonymous SQLite database; one thread at a time uses it
            self.db = self._scratch.db
            for table in ("rows (id INTEGER PRIMARY KEY, sheet INTEGER, key BLOB, sortv BLOB, cells BLOB)",
                          "parts (p INTEGER PRIMARY KEY, data BLOB)",
                          "buyers (customer_id BLOB PRIMARY KEY, data BLOB)"):
                self.db.execute(f"CREATE TABLE {table}")

    @staticmethod
    @contextlib.contextmanager
    def _failing():
        try:
            yield
        except sqlite3.Error as exc:
            raise StageFailed(f"the run's temporary copy of the roster failed ({exc}): it needs free space about "
                              f"the size of the roster's cells in the temporary folder (SQLITE_TMPDIR or TMPDIR, "
                              f"else /var/tmp)") from None

    def _run(self, sql: str, args=()) -> list:
        with self._failing():
            return self.db.execute(sql, args).fetchall()

    def close(self) -> None:
        self._scratch.close()

    # -- the reader's rows ------------------------------------------------------------------------------
    def add(self, sheet: int, records: Iterable[tuple[int, tuple]]) -> None:
        """Stage one sheet's data rows: (spreadsheet row number, cells in ``columns[sheet]`` order)."""
        from .validate import customer_key

        at = self.columns[sheet].index("customer_id")
        batch = []
        for row, cells in records:
            key = customer_key(cells[at])
            batch.append(((sheet << 32) | row, sheet,
                          _utf8(key[0]) if key else f"\x00{sheet}:{row}".encode(),  # blank: a key of its own
                          _utf8(key[1]) if key else None,
                          pickle.dumps(cells, protocol=pickle.HIGHEST_PROTOCOL)))
            if len(batch) == _BATCH:
                self._insert(batch)
                batch = []
        self._insert(batch)

    def _insert(self, batch: list) -> None:
        if batch:
            with self._failing():
                self.db.executemany("INSERT INTO rows VALUES (?, ?, ?, ?, ?)", batch)

    def frame(self, sheet: int, where: str = "WHERE", args: tuple = ()) -> pd.DataFrame:
        """A sheet's staged rows (all of them, or those of one partition) as the raw frame validate reads:
        the cells as the reader gave them, and ``_row``."""
        rows, cells = [], []
        with self._failing():
            for rid, data in self.db.execute(f"SELECT r.id, r.cells FROM rows r {where} r.sheet = ? ORDER BY r.id",
                                             (*args, sheet)):
                rows.append(rid & 0xFFFFFFFF)
                cells.append(pickle.loads(data))
        frame = pd.DataFrame.from_records(cells, columns=self.columns[sheet], coerce_float=False)
        frame = frame.astype(object)
        frame[ROW] = pd.Series(rows, dtype="int64")
        return frame

    # -- partitions ---------------------------------------------------------------------------------------
    def _partition(self, size: int) -> None:
        if self._partitioned == size:
            return
        with self._failing():
            self.db.execute("DROP TABLE IF EXISTS part")
            self.db.execute("CREATE INDEX IF NOT EXISTS rows_key ON rows (key)")
            # each key's partition: keys in the order of their first customers row's id, a running count of
            # their customers rows cut every ``size``; keys only the changes sheet names come after them all
            self.db.execute("""
                CREATE TABLE part AS
                SELECT c.key AS key, (SUM(c.n) OVER w - c.n) / :size AS p
                FROM (SELECT key, MIN(id) AS first, COUNT(*) AS n FROM rows WHERE sheet = 0 GROUP BY key) c
                JOIN rows r ON r.id = c.first
                WINDOW w AS (ORDER BY r.sortv, c.key ROWS UNBOUNDED PRECEDING)""", {"size": size})
            last = self.db.execute("SELECT COALESCE(MAX(p), -1) FROM part").fetchone()[0]
            self.db.execute("""
                INSERT INTO part
                SELECT key, :after + 1 + (SUM(n) OVER w - n) / :size
                FROM (SELECT key, COUNT(*) AS n FROM rows WHERE sheet = 1 AND key NOT IN (SELECT key FROM part)
                      GROUP BY key)
                WINDOW w AS (ORDER BY key ROWS UNBOUNDED PRECEDING)""", {"size": size, "after": last})
            self.db.execute("CREATE INDEX part_p ON part (p, key)")
        self._partitioned = size

    def partitions(self, size: int | None = None) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
        """(customers, changes) raw frames of each partition, in order; one pair of empty frames for a roster
        without data rows (validate and pricing still run once)."""
        self._partition(size or PARTITION_ROWS)
        numbers = [p for (p,) in self._run("SELECT DISTINCT p FROM part ORDER BY p")]
        if not numbers:
            yield self.frame(CUSTOMERS, "WHERE 0 AND"), self.frame(CHANGES, "WHERE 0 AND")
        where = "JOIN part ON part.key = r.key WHERE part.p = ? AND"
        for p in numbers:
            yield self.frame(CUSTOMERS, where, (p,)), self.frame(CHANGES, where, (p,))

    # -- what pricing keeps per partition -----------------------------------------------------------------
    def put_part(self, i: int, value: object) -> None:
        self._run("INSERT INTO parts VALUES (?, ?)", (i, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)))

    def part(self, i: int) -> object:
        return pickle.loads(self._run("SELECT data FROM parts WHERE p = ?", (i,))[0][0])

    def put_buyers(self, rows: Iterable[tuple[str, tuple]]) -> None:
        with self._failing():
            self.db.executemany("INSERT OR IGNORE INTO buyers VALUES (?, ?)",
                                ((_utf8(cid), pickle.dumps(v, protocol=pickle.HIGHEST_PROTOCOL)) for cid, v in rows))

    def buyer(self, customer_id: str):
        """The kept buyer columns of a valid customer, or None."""
        found = self._run("SELECT data FROM buyers WHERE customer_id = ?", (_utf8(customer_id),))
        return pickle.loads(found[0][0]) if found else None
