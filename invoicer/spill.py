"""A run's per-document bookkeeping kept on disk rather than in memory: which invoices are new or unchanged,
which PDF each document was staged as, which files the manifest lists. A month of 100,000 customers holds
about 51,000 documents; at a few hundred bytes of Python objects each that grew the heap with the month.

Each ``Scratch`` is an anonymous SQLite database (``sqlite3.connect("")``): SQLite keeps at most its page
cache of it in memory (``CACHE_KIB``) and writes the rest to a temporary file that is unlinked when opened,
so nothing is left behind by a crash, and it is deleted when the database is closed (explicitly, or when
its owner is collected). SQLite puts that file in $SQLITE_TMPDIR, else $TMPDIR, else /var/tmp (then
/usr/tmp, /tmp): a disk on most systems (a TMPDIR on tmpfs would hold it in RAM, outside the process's
RSS; about 100 bytes per document). Never durable and never shared: a lookup table, not a record."""
from __future__ import annotations

import operator
import sqlite3
import weakref
from collections.abc import Sequence

CACHE_KIB = 1024  # SQLite's page cache per scratch database (its default is 2,000 KiB)
_BUFFER = 1000  # rows inserted at a time
_connect = sqlite3.connect  # SQLite's own, whatever a test does to ``sqlite3.connect`` (the ledger's)


class Scratch:
    """One anonymous on-disk SQLite database (see the module's doc). Its tables are made by the views below."""

    def __init__(self):
        self.db = _connect("", check_same_thread=False, isolation_level=None)
        self.db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        self.db.execute("PRAGMA journal_mode = OFF")
        self.db.execute("PRAGMA synchronous = OFF")
        self.db.execute("BEGIN")  # one transaction for its life: never committed, never needed durable
        self._tables = 0
        self._close = weakref.finalize(self, self.db.close)

    def table(self, columns: str, keyed: bool = False) -> str:
        """A new table's name, made with these column definitions; ``keyed``: stored in its primary key's
        order (WITHOUT ROWID: one B-tree, not a table and an index)."""
        self._tables += 1
        name = f"t{self._tables}"
        self.db.execute(f"CREATE TABLE {name} ({columns}){' WITHOUT ROWID' if keyed else ''}")
        return name

    def close(self) -> None:
        self._close()


class Indexed(Sequence):
    """A sequence read by position as a list is: slices (a list), negative positions, IndexError past the end;
    a subclass gives ``_item(i)`` for 0 <= i < len. Equal to any sequence holding the same items (a list
    too), unhashable, as a list is."""

    def _item(self, i: int):
        raise NotImplementedError

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._item(j) for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._item(i)

    def __eq__(self, other) -> bool:
        return list(self) == list(other) if isinstance(other, (list, Sequence)) else NotImplemented

    __hash__ = None


class SpilledList(Indexed):
    """A list of named tuples or dataclasses (``row_type``: NewInvoice, IssuedRef; their fields are its
    columns) or of strings (``row_type`` str), appended in order and read back in that order, any number of
    times, from a table of ``scratch``."""

    def __init__(self, scratch: Scratch, row_type, rows=()):
        import dataclasses

        self._scratch, self._type = scratch, row_type
        if row_type is str:
            fields = ["value"]
            self._type = _first
        else:
            fields = row_type._fields if hasattr(row_type, "_fields") else [f.name for f in dataclasses.fields(row_type)]
        self._fields = tuple(fields)
        self._row = operator.attrgetter(*self._fields) if len(self._fields) > 1 else None
        self._table = scratch.table("seq INTEGER PRIMARY KEY, " + ", ".join(self._fields))
        self._insert = (f"INSERT INTO {self._table} ({', '.join(self._fields)}) "
                        f"VALUES ({', '.join('?' * len(self._fields))})")
        self._pending: list[tuple] = []
        self._len = 0
        for row in rows:
            self.append(row)

    def append(self, row) -> None:
        self._pending.append(self._row(row) if self._row is not None else (row,) if self._type is _first
                             else (getattr(row, self._fields[0]),))
        self._len += 1
        if len(self._pending) >= _BUFFER:
            self._flush()

    def extend(self, rows) -> None:
        for row in rows:
            self.append(row)

    def __iadd__(self, rows):
        self.extend(rows)
        return self

    def _flush(self) -> None:
        if self._pending:
            self._scratch.db.executemany(self._insert, self._pending)
            self._pending.clear()

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def __iter__(self):
        self._flush()
        cur = self._scratch.db.execute(f"SELECT {', '.join(self._fields)} FROM {self._table} ORDER BY seq")
        while rows := cur.fetchmany(_BUFFER):
            for row in rows:
                yield self._type(*row)

    def _item(self, i: int):
        self._flush()
        row = self._scratch.db.execute(f"SELECT {', '.join(self._fields)} FROM {self._table} WHERE seq = ?",
                                       (i + 1,)).fetchone()
        return self._type(*row)

    def __repr__(self) -> str:
        return repr(list(self)) if len(self) <= 10 else f"<{len(self)} entries on disk>"


def _first(value):
    return value


class KeyedFiles:
    """A mapping key -> StagedFile (the PDF a document was staged as), in a table of ``scratch``: what a run
    rendered (by document content) and what it recorded (by file name). Every staged file of a run lives in
    its one staging folder, so a row is the file's number, digest and size."""

    def __init__(self, scratch: Scratch):
        self._scratch = scratch
        self._table = scratch.table("key PRIMARY KEY, n INTEGER NOT NULL, digest BLOB NOT NULL, "
                                    "size INTEGER NOT NULL", True)
        self._root: str | None = None
        self._insert = f"INSERT OR REPLACE INTO {self._table} VALUES (?, ?, ?, ?)"
        self._get = f"SELECT n, digest, size FROM {self._table} WHERE key = ?"

    def __setitem__(self, key, staged) -> None:
        from .publish import StagedFile

        assert isinstance(staged, StagedFile)
        if self._root is None:
            self._root = staged._root
        elif staged._root != self._root:
            raise ValueError("staged files of one run live in one staging folder")
        self._scratch.db.execute(self._insert, (key, staged._n, staged._digest, staged.size))

    def get(self, key, default=None):
        from .publish import StagedFile

        row = self._scratch.db.execute(self._get, (key,)).fetchone()
        return default if row is None else StagedFile(self._root, row[0], row[1], row[2])

    def __getitem__(self, key):
        staged = self.get(key)
        if staged is None:
            raise KeyError(key)
        return staged

    def __contains__(self, key) -> bool:
        return self._scratch.db.execute(self._get, (key,)).fetchone() is not None

    def __len__(self) -> int:
        return self._scratch.db.execute(f"SELECT COUNT(*) FROM {self._table}").fetchone()[0]

    def __bool__(self) -> bool:
        return self._scratch.db.execute(f"SELECT 1 FROM {self._table} LIMIT 1").fetchone() is not None

    def clear(self) -> None:
        self._scratch.db.execute(f"DELETE FROM {self._table}")
