"""The only module that writes output files. Every write is atomic: a temporary file in the same folder,
flushed to disk, then renamed over the target, so a reader (or a crash) never sees half a file."""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import tempfile
from pathlib import Path

import ijson

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class UnsafePath(ValueError):
    pass


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def safe_path(root: Path, *parts: str) -> Path:
    """root/parts..., refusing any part that could leave root (customer ids name files)."""
    for part in parts:
        if not SAFE_NAME.match(part) or part in (".", ".."):
            raise UnsafePath(f"refusing unsafe file name {part!r}")
    root = root.resolve()
    path = root.joinpath(*parts).resolve()
    if not path.is_relative_to(root):
        raise UnsafePath(f"refusing a path outside {root}: {path}")
    return path


def atomic_write(path: Path, data: bytes) -> None:
    """Write data to path so that a reader or a crash sees the old file or the new one, never half of one.
    On any failure (a full disk: OSError ENOSPC) the temporary file is removed and the error raised."""
    atomic_write_blocks(path, [data])


def atomic_write_blocks(path: Path, blocks) -> None:
    """``atomic_write`` of the concatenation of ``blocks`` (bytes, written as they come, so the whole file is
    never in memory)."""

    def fill(f) -> bool:
        for block in blocks:
            f.write(block)
        return True

    _replace_atomically(path, fill)


def _replace_atomically(path: Path, fill) -> bool:
    """The one way a file is replaced: ``fill(f)`` writes a temporary file beside ``path`` (f is opened for
    reading and writing); when it returns True the file is flushed to disk and renamed over ``path``, else
    it is dropped. On any failure (a full disk: OSError ENOSPC) the temporary file is removed and the error
    raised. Returns whether ``path`` was replaced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w+b") as f:
            keep = fill(f)
            if keep:
                f.flush()
                os.fsync(f.fileno())
        if not keep:
            os.unlink(tmp)
            return False
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)
    return True


def holds_blocks(path: Path, blocks) -> bool:
    """Does the file hold exactly the concatenation of ``blocks``? Compared as they come; nothing is
    written (so an unchanged file costs no space, even on a full disk)."""
    try:
        with open(path, "rb") as f:
            for block in blocks:
                if f.read(len(block)) != block:
                    return False
            return f.read(1) == b""
    except OSError:
        return False


def durable_rename(src: Path, dest: Path) -> None:
    """Move a file within one file system, atomically, and make the move survive a power cut."""
    os.rename(src, dest)
    fsync_dir(src.parent)
    fsync_dir(dest.parent)


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename or a new file is durable only once its folder is)."""
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def sweep_stale_temporaries(folder: Path, older_than_s: float = 3600.0, recursive: bool = False) -> list[Path]:
    """Remove our hidden temporary files (``.<name>.XXXX.tmp``) that a killed process left behind. By default
    only old ones: a run writing into the same folder right now has its temporary file for milliseconds.
    A caller that knows no other writer is there (a run holding the ledger's write lock: every run of a
    ledger writes its folder only while holding it) passes ``older_than_s=0`` to remove them all."""
    import time

    removed = []
    if not folder.is_dir():
        return removed
    limit = time.time() - older_than_s
    for tmp in (folder.rglob if recursive else folder.glob)(".*.tmp"):
        try:
            if tmp.is_file() and tmp.stat().st_mtime < limit:
                tmp.unlink()
                removed.append(tmp)
        except FileNotFoundError:
            pass
    return removed


def holds_regular(path: Path) -> bool:
    """Is there a regular file at ``path`` itself? A link (even to an identical file, even inside the folder)
    is not one: whoever controls its target could change the document later, so publishing replaces the link
    with the file (a rename replaces the link, never its target)."""
    return not path.is_symlink() and path.is_file()


def write_if_different(path: Path, data: bytes) -> bool:
    """Write unless the file already holds exactly these bytes (issued files are not rewritten)."""
    if holds_regular(path) and sha256(path.read_bytes()) == sha256(data):
        return False
    atomic_write(path, data)
    return True


def write_made_if_different(path: Path, make) -> tuple[bool, str]:
    """``write_if_different`` for a file too big to hold: ``make(f)`` writes the content into a temporary
    file beside ``path`` (a seekable binary file), which replaces ``path`` atomically only if the bytes
    differ (both compared by SHA-256, a block at a time). Returns (written, the content's SHA-256)."""
    digest = ""

    def fill(f) -> bool:
        nonlocal digest
        make(f)
        f.flush()
        f.seek(0)
        digest = _stream_sha256(f)
        return not (holds_regular(path) and file_sha256(path) == digest)

    return _replace_atomically(path, fill), digest


class SortedItems:
    """A JSON object too big to hold, for ``write_json``: ``items()`` gives its (key, value) pairs already in
    key order (a new iterator on every call: the file is encoded twice when it changed); truthy when it has
    any."""

    def __init__(self, items, nonempty):
        self.items, self._nonempty = items, nonempty

    def __bool__(self) -> bool:
        return bool(self._nonempty())


_JSON = json.JSONEncoder(indent=2, ensure_ascii=False, sort_keys=True)


def _json_text(value, indent: str) -> str:
    """``value`` as ``json.dumps(indent=2, ensure_ascii=False, sort_keys=True)`` writes it nested at this
    indentation (a JSON text holds no raw newline but its own, so re-indenting it is exact); a list of ints
    (a file's inode state) and a string (a hash) without the encoder's generic walk."""
    if type(value) is str:
        return _JSON.encode(value)
    if type(value) is list and value and all(type(x) is int for x in value):
        inner = ",\n  " + indent
        return "[\n  " + indent + inner.join(map(int.__repr__, value)) + "\n" + indent + "]"
    return _JSON.encode(value).replace("\n", "\n" + indent)


def _encode_json(obj):
    """The text of ``json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True)`` in pieces, where a value
    of the top-level object may be a ``SortedItems`` (encoded as the object it lists, a pair at a time)."""
    if not (isinstance(obj, dict) and any(isinstance(v, SortedItems) for v in obj.values())):
        yield from _JSON.iterencode(obj)
        return
    if not obj:
        yield "{}"
        return
    sep = "{"
    for key, value in sorted(obj.items()):
        yield sep + "\n  " + _JSON.encode(key) + ": "
        sep = ","
        if not isinstance(value, SortedItems):
            yield _json_text(value, "  ")
            continue
        inner = "{"
        for k, v in value.items():
            yield inner + "\n    " + _JSON.encode(k) + ": " + _json_text(v, "    ")
            inner = ","
        yield "{}" if inner == "{" else "\n  }"
    yield "\n}"


def write_json(path: Path, obj) -> bool:
    """Write obj as sorted, indented JSON (the bytes of ``json.dumps(obj, indent=2, ensure_ascii=False,
    sort_keys=True)`` and a newline), atomically and only if the bytes differ; True if written. Encoded a
    block at a time, never whole: a month's manifest lists every file (12 MB for 100,000 customers), and its
    ``files`` and ``file_stats`` come as ``SortedItems`` streamed from a table, never a dict. The file on
    disk is compared first, block by block, and only a changed file is encoded again into a temporary
    file."""

    def blocks():
        buf: list[str] = []
        for chunk in _encode_json(obj):
            buf.append(chunk)
            if len(buf) == 8192:
                yield "".join(buf).encode()
                buf.clear()
        buf.append("\n")
        yield "".join(buf).encode()

    if holds_regular(path) and holds_blocks(path, blocks()):
        return False
    atomic_write_blocks(path, blocks())
    return True


class PreviousManifest:
    """The manifest the last run wrote, read as a stream: its ``files`` and ``file_stats`` (an entry per file:
    12 MB of JSON for 100,000 customers, several times that as Python objects) go into tables of a
    ``spill.Scratch``, the rest (a few keys) into ``top``. Only a hint: a missing, unreadable or malformed
    manifest reads as empty (as ``json.loads`` failing did), and a value of an unexpected type is kept as
    such, so every use checks it as it did on the parsed dict.

    Parsed by ijson (its C backend, yajl2_c; the pure-Python one if that is missing), in one pass of events.
    Where ijson's C backend reads differently from ``json.loads``, the bytes are checked as they are read
    (``_Watched``): a control character (yajl takes a form feed for a space) makes the manifest malformed,
    and an escaped surrogate (``\\ud800``: yajl turns a lone one into "?" or into a wrong character) has the
    file read again by the pure-Python backend, which decodes strings with json's own scanner."""

    CHUNK = 1 << 18  # bytes read at a time
    LOOKAHEAD = 1000  # entries parsed ahead of their insert (one executemany)

    def __init__(self, out: Path, scratch=None):
        """``scratch`` None: only ``top`` is wanted (the file lists are parsed and dropped)."""
        self._scratch = scratch  # closed when nothing holds it
        self._db = scratch.db if scratch is not None else None
        self._files = scratch.table("name TEXT PRIMARY KEY, sha TEXT", True) if scratch else "files"  # NULL: no str
        self._stats = scratch.table("name TEXT PRIMARY KEY, stat TEXT", True) if scratch else "file_stats"  # JSON
        self._same = (f"SELECT 1 FROM {self._files} f JOIN {self._stats} s ON s.name = f.name WHERE f.name = ? AND "
                      f"f.sha = ? AND s.stat = ?")
        self.top: dict = {}
        try:
            with open(out / "manifest.json", "rb") as f:
                try:
                    self._parse(f, _ijson)
                except _Surrogate:
                    self._clear()
                    f.seek(0)
                    self._parse(f, _PY_IJSON)
        except (OSError, ValueError, RecursionError, StopIteration, ijson.JSONError):
            self._clear()

    def _clear(self) -> None:
        self.top = {}
        if self._db is not None:
            self._db.execute(f"DELETE FROM {self._files}")
            self._db.execute(f"DELETE FROM {self._stats}")

    # -- the streamed parse: ijson's events ---------------------------------------------------------------
    def _parse(self, f, backend) -> None:
        watched = _Watched(f, backend is not _PY_IJSON)
        events = backend.basic_parse(watched, buf_size=self.CHUNK)
        try:
            self._read(events)
        except (ValueError, RecursionError, StopIteration, ijson.JSONError):
            if watched.problem is None:
                raise
        finally:
            if hasattr(events, "close"):  # the pure-Python backend's generator: its coroutines closed now, quietly
                events.close()
        if watched.problem is not None:
            raise watched.problem

    def _read(self, events) -> None:
        if next(events)[0] != "start_map":
            raise ValueError("manifest: not an object")
        for event, key in events:
            if event == "end_map":
                break
            table = {"files": self._files, "file_stats": self._stats}.get(key)
            if table is not None and self._db is not None:
                self._db.execute(f"DELETE FROM {table}")  # a repeated key: the last one counts
            event, value = next(events)
            if table is not None and event == "start_map":
                self._entries(events, table)
                self.top[key] = _LISTED
            else:
                self.top[key] = _value(events, event, value)
        for _ in events:  # ijson raises on anything but white space after the object
            raise ValueError("manifest: extra data")

    def _entries(self, events, table: str) -> None:
        """The entries of ``files`` (a hash; None: not a string) or ``file_stats`` (its compact JSON text,
        as ``json.dumps`` writes the value ``json.loads`` gives) into ``table``. The loops are the read's
        hot path (half a million events at 100,000 customers): an entry as this tool writes it takes no call."""
        rows, batch = [], self.LOOKAHEAD
        append = rows.append
        if table == self._files:
            for event, name in events:
                if event == "end_map":
                    break
                event, value = next(events)
                if event != "string":
                    _value(events, event, value)  # read past it
                    value = None
                append((name, value))
                if len(rows) >= batch:
                    self._put(table, rows)
        else:
            for event, name in events:
                if event == "end_map":
                    break
                event, value = next(events)
                if event == "start_array":  # a stat as this tool writes it: integers
                    items = []
                    for event, value in events:
                        if type(value) is not int:  # (a key, a bool, a Decimal or an end: not a number)
                            break
                        items.append(value)
                    if event == "end_array":
                        value = "[" + ",".join(map(str, items)) + "]"
                    else:  # something else in it: the rest as json.loads gives it, never trusted
                        items.append(_value(events, event, value))
                        items += _value(events, "start_array", None)
                        value = json.dumps(items, separators=(",", ":"))
                else:
                    value = json.dumps(_value(events, event, value), separators=(",", ":"))
                append((name, value))
                if len(rows) >= batch:
                    self._put(table, rows)
        self._put(table, rows)

    def _put(self, table: str, rows: list) -> None:
        if self._db is not None:
            try:
                self._db.executemany(f"INSERT OR REPLACE INTO {table} VALUES (?, ?)", rows)
            except UnicodeEncodeError:  # a name no file can have (a lone surrogate): no entry, it matches nothing
                for row in rows:
                    try:
                        self._db.execute(f"INSERT OR REPLACE INTO {table} VALUES (?, ?)", row)
                    except UnicodeEncodeError:
                        continue
        rows.clear()

    # -- what publishing asks -----------------------------------------------------------------------
    def get(self, key: str, default=None):
        """A top-level value (``files`` and ``file_stats`` read as True when they were objects)."""
        value = self.top.get(key, default)
        return True if value is _LISTED else value

    def lists_files(self) -> bool:
        return self.top.get("files") is _LISTED

    def file(self, name: str) -> str | None:
        """The hash ``files`` gives ``name`` (None: none, or not a string)."""
        if not self.lists_files():
            return None
        row = self._db.execute(f"SELECT sha FROM {self._files} WHERE name = ?", (name,)).fetchone()
        return None if row is None else row[0]

    def files_under(self, folder: str) -> dict:
        """{name: hash (None: not a string)} of the listed files whose names start with ``folder``."""
        if not self.lists_files():
            return {}
        return {n: h for n, h in self._db.execute(f"SELECT name, sha FROM {self._files} WHERE substr(name, 1, ?) "
                                                  f"= ?", (len(folder), folder))}

    def unchanged(self, name: str, expected_sha: str, stat) -> bool:
        """Did the last run list ``name`` with this hash and this inode state (``stat_key``)? One query."""
        if stat is None or self.top.get("file_stats") is not _LISTED or not self.lists_files():
            return False
        text = "[" + ",".join(map(str, stat)) + "]"  # stat_key's integers, as json.dumps writes them compactly
        return self._db.execute(self._same, (name, expected_sha, text)).fetchone() is not None


_LISTED = object()  # PreviousManifest.top's value for an object read into a table
_ijson = ijson.get_backend(ijson.backend)  # the fastest ijson has: yajl2_c (C)
_PY_IJSON = ijson.get_backend("python")
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")  # json.loads allows none, in a string or out
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")  # an escaped surrogate (or text that looks like one)


class _Surrogate(Exception):
    """The manifest escapes a surrogate: the C backend would misread it (read it with the pure-Python one)."""


class _Watched:
    """The manifest's bytes as ijson reads them, checked for what yajl reads differently from json.loads."""

    def __init__(self, f, surrogates: bool):
        self._f, self._surrogates, self._tail = f, surrogates, b""
        self.problem: Exception | None = None  # found: the parse ends here (the file reads as ended), raising it

    def read(self, n: int = -1) -> bytes:
        if self.problem is not None:
            return b""
        data = self._f.read(n)
        if _CONTROL.search(data) is not None:
            self.problem = ValueError("manifest: a control character")
        elif self._surrogates:
            seen = self._tail + data  # an escape can straddle two reads
            if _SURROGATE.search(seen) is not None:
                self.problem = _Surrogate()
            self._tail = seen[-3:]
        return b"" if self.problem is not None else data


def _value(events, event: str, value):
    """The value that starts with this ijson event, as json.loads gives it (a non-integer number: a float; a
    repeated key: the last one counts)."""
    if event == "start_map":
        obj = {}
        for event, key in events:
            if event == "end_map":
                return obj
            event, value = next(events)
            obj[key] = _value(events, event, value)
    elif event == "start_array":
        items = []
        for event, value in events:
            if event == "end_array":
                return items
            items.append(_value(events, event, value))
    elif event == "number" and type(value) is not int:
        return float(value)  # ijson's Decimal: json.loads gives the float nearest the text, as float() does
    return value


# -- staging: rendered PDFs on disk before the ledger commits ------------------------------------------------
STAGING_GLOB = ".staging-*"


class StagedFile:
    """One rendered PDF written to the run's staging folder: where, its SHA-256 and size (hashed as written).
    Compact, since a month of 100,000 documents holds one each until publish: the folder is shared and the
    path made from the file's number when asked, the digest kept as 32 bytes."""

    __slots__ = ("_root", "_n", "_digest", "size")

    def __init__(self, root: str, n: int, digest: bytes, size: int):
        self._root, self._n, self._digest, self.size = root, n, digest, size

    @property
    def path(self) -> str:
        return os.path.join(self._root, f"{self._n:08d}.pdf")

    @property
    def sha256(self) -> str:
        return self._digest.hex()

    def read(self) -> bytes:
        with open(self.path, "rb") as f:
            return f.read()


class Staging:
    """A run's private hidden folder inside the output folder (``.staging-<random>``) holding the PDFs it
    rendered before it commits them to the ledger. The run holds an exclusive lock on the folder's lock file
    for as long as it lives, so the next run can tell a dead run's leftovers (lock free: swept) from a live
    run's (lock held: left alone). Same file system as the output, so publishing is a rename."""

    def __init__(self, out: Path):
        import fcntl
        import uuid

        out.mkdir(parents=True, exist_ok=True)
        self.root = out / f".staging-{uuid.uuid4().hex}"
        self.root.mkdir()
        self._root_text = str(self.root)  # one string for every staged file's path
        self._lock = os.open(self.root / "lock", os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self._count = 0

    def stage(self, data: bytes) -> StagedFile:
        self._count += 1
        staged = StagedFile(self._root_text, self._count, hashlib.sha256(data).digest(), len(data))
        with open(staged.path, "wb") as f:
            f.write(data)
        return staged

    def make_durable(self) -> None:
        """Flush every staged file to disk at once (before the ledger commits to them, so a power cut after
        the commit and the renames never leaves a renamed file without its bytes)."""
        os.sync()

    def close(self) -> None:
        import shutil

        shutil.rmtree(self.root, ignore_errors=True)
        os.close(self._lock)

    def __enter__(self) -> "Staging":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def sweep_staging(out: Path) -> list[Path]:
    """Remove staging folders left by runs that died (their lock is free); a live run's folder stays."""
    import fcntl
    import shutil

    removed = []
    if not out.is_dir():
        return removed
    for folder in out.glob(STAGING_GLOB):
        if folder.is_symlink() or not folder.is_dir():
            continue
        try:
            fd = os.open(folder / "lock", os.O_RDWR)
        except OSError:
            shutil.rmtree(folder, ignore_errors=True)  # died before it could take its lock
            removed.append(folder)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a run is alive and staging there
        finally:
            os.close(fd)
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def place_staged(staged: StagedFile, path: Path) -> bool:
    """Move a staged file to its place unless the place already holds these bytes. True if it moved."""
    if holds_regular(path) and path.stat().st_size == staged.size and file_sha256(path) == staged.sha256:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(staged.path, 0o644)
    os.replace(staged.path, path)
    return True


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return _stream_sha256(f)


def _stream_sha256(f) -> str:
    """The SHA-256 of the rest of an open binary file, read a block at a time."""
    h = hashlib.sha256()
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
    return h.hexdigest()


def stat_key(path: Path) -> list[int] | None:
    """What a file's inode says about it: size, modification and change times (ns), inode number. The change
    time cannot be set back by a program, so an edit shows here even if the modification time is restored."""
    try:
        st = path.lstat()  # a link's own state, never its target's
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


# -- publishing a period ----------------------------------------------------------------------------------
LEDGER_NAME = "ledger.sqlite"


def tool_version() -> str:
    from importlib.metadata import version as pkg_version

    try:
        return pkg_version("qq-invoicer")
    except Exception:
        return "0+unknown"


def file_name_for(doc: dict) -> str:
    """Where a document's PDF lives under the output folder (relative, '/'-separated)."""
    if doc["kind"] == "invoice":
        return f"invoices/{doc['number']}.pdf"
    if doc["kind"] == "credit_note":
        return f"credit_notes/{doc['number']}.pdf"
    return f"notices/{doc['customer']['customer_id']}-{doc['notice']['notice_kind']}.pdf"


def _unchanged_since_manifest(path: Path, name: str, expected_sha: str, previous: PreviousManifest) -> bool:
    """Does the file hold the bytes ``expected_sha``? Trusted without reading it when the last manifest
    recorded that hash and exactly this inode state (size, mtime, ctime, inode) for it; else re-hashed.
    (An audit trusts no stat: ``invoicer verify`` re-hashes every file.)"""
    if previous.unchanged(name, expected_sha, stat_key(path)):
        return True
    return holds_regular(path) and file_sha256(path) == expected_sha


def _kept_file(place, name: str, digest, previous: PreviousManifest) -> bool:
    """A file the previous manifest lists is still as that run left it. The manifest is only a hint: an odd
    or unsafe name in it means "not kept" (the file is made again), never a failure."""
    if not isinstance(digest, str):
        return False
    try:
        return _unchanged_since_manifest(place(name), name, digest, previous)
    except (UnsafePath, OSError, ValueError):
        return False


class _Places:
    """``safe_path`` for many files of a few folders: each folder is resolved once (and refused if it leads
    out), each file name checked by the same rule; a file that is a link is not followed: its place is the
    link itself, which publishing replaces with the document (``holds_regular``)."""

    def __init__(self, out: Path):
        self.out, self.dirs = out, {}

    def __call__(self, name: str) -> Path:
        *folder, base = name.split("/")
        key = tuple(folder)
        if key not in self.dirs:
            self.dirs[key] = safe_path(self.out, *folder) if folder else self.out.resolve()
        if not SAFE_NAME.match(base) or base in (".", ".."):
            raise UnsafePath(f"refusing unsafe file name {base!r}")
        path = self.dirs[key] / base
        return path  # a link there is never followed: it is replaced like a damaged file (holds_regular)


def publish_period(ledger, out: Path, priced, book, opts, fresh, executor=None):
    """Make the output folder match the ledger for this period, after the run committed: the PDFs this run
    staged are moved into place; every other issued document's file is checked (by hash, or by the inode
    state the last manifest recorded) and, if missing or damaged, restored from the bytes the ledger kept
    (or, for documents issued before it kept them, re-rendered from the snapshot, which must give the same
    bytes); then the summary (rebuilt only when the period's documents, the input or the price book changed)
    and, last, the manifest. ``fresh``: the staged file of each document this run recorded, by file name (a
    mapping: ``get`` and truth; the run's is on disk, spill.KeyedFiles). Returns the names of the files
    written (a sequence, kept on disk). Refuses (InvoicerError) a re-render that does not reproduce an issued
    file. Holds no per-file list: the period's documents are read by a cursor, the previous manifest and the
    new one's file list are scratch tables (spill.Scratch), the manifest is encoded from them as it is
    written."""
    import datetime as dt

    from .errors import InvoicerError
    from .pricing.dates import month_bounds, to_date
    from .render.summary import write_summary

    prefix, period = priced.prefix, opts.period
    subfolders = [out / sub for sub in ("invoices", "credit_notes", "notices", "fapiao")]
    for folder in subfolders:
        if folder.is_symlink():  # never followed (nor swept): removed, made again, its files restored below
            folder.unlink()
    for folder in (out, *subfolders):
        # left by a run killed inside an atomic write; whatever their age, since this run holds the ledger's
        # write lock and every run of this ledger writes its folder only while holding it
        sweep_stale_temporaries(folder, older_than_s=0)
    sweep_staging(out)
    from .ledger import IssuedRef
    from .spill import Scratch, SpilledList

    scratch = Scratch()  # the per-file lists below are tables on disk, not dicts (spill.py)
    try:
        previous = PreviousManifest(out, scratch)
        cancelled = ledger.cancelled_numbers(prefix, period)
        # the notices listed: the newest of each file name the roster still gives
        db = scratch.db
        current = scratch.table("name TEXT PRIMARY KEY")
        db.executemany(f"INSERT OR IGNORE INTO {current} VALUES (?)", ((file_name_for(n),) for n in priced.notices))
        notice_count = db.execute(f"SELECT COUNT(*) FROM {current}").fetchone()[0]
        latest = scratch.table("id INTEGER PRIMARY KEY, name TEXT NOT NULL")
        db.executemany(f"INSERT INTO {latest} (name, id) VALUES (?, ?)", ledger.latest_notice_ids(prefix, period))
        db.execute(f"DELETE FROM {latest} WHERE name NOT IN (SELECT name FROM {current})")
        files = _ListedFiles(scratch)
        written = SpilledList(Scratch(), str)  # the names of the files written (the run's report keeps it)
        missing = SpilledList(scratch, IssuedRef)
        place = _Places(out)
        count = newest = invoices = credit_notes = total_fen = 0
        staged_any = bool(fresh)
        for r in ledger.document_ref_stream(prefix, period):  # a cursor: one ref at a time
            count, newest = count + 1, max(newest, r.id)
            if r.kind == "notice":
                if db.execute(f"SELECT 1 FROM {latest} WHERE id = ?", (r.id,)).fetchone() is None:
                    continue  # replaced by a newer one, or no longer given by the roster
            else:
                total_fen += r.total_fen
                invoices += r.kind == "invoice" and r.number not in cancelled
                credit_notes += r.kind == "credit_note"
            path = place(r.file_name)
            staged = fresh.get(r.file_name) if staged_any else None
            if staged is not None:
                if place_staged(staged, path):
                    written.append(r.file_name)
            elif not _unchanged_since_manifest(path, r.file_name, r.file_sha256, previous):
                missing.append(r)
            files[r.file_name] = r.file_sha256
        # a missing file is restored from the bytes the ledger kept at issue; only documents issued before
        # the ledger kept them are rendered again from their snapshot, and must come out byte-identical
        unkept = [r for r in missing if not ledger.has_blob(r.file_sha256)]
        again = iter(executor.render_iter([d.content for d in ledger.load(unkept)]) if unkept and executor else ())
        for r in missing:
            data = ledger.blob(r.file_sha256)
            if data is None:
                data = next(again, b"")
            if sha256(data) != r.file_sha256:
                raise InvoicerError(f"re-rendering {r.file_name} from the ledger gave different bytes; the "
                                    f"templates or fonts changed since it was issued, and this ledger predates "
                                    f"keeping issued PDFs")
            write_if_different(place(r.file_name), data)
            written.append(r.file_name)
        if fresh:
            fsync_dir(out)
            for sub in ("invoices", "credit_notes", "notices"):
                if (out / sub).is_dir():
                    fsync_dir(out / sub)
        # the summary is a function of the period's documents (append-only: the newest id says which), the
        # input and the price book; when none changed and the file is the one the last run wrote, keep it
        # (and of which ledger: another ledger's documents can have the same ids and count)
        summary_key = sha256(json.dumps([tool_version(), ledger.ledger_id, prefix, period, priced.input_sha256,
                                         book.sha256, newest, count]).encode())
        summary_path = out / "summary.xlsx"
        old_summary = previous.file("summary.xlsx")
        # the e-fapiao exports (publish_fapiao) are a function of the same things (the roster's buyer columns too)
        old_fapiao = previous.files_under("fapiao/")
        fapiao_kept = bool(old_fapiao) and all(_kept_file(place, n, h, previous) for n, h in old_fapiao.items())
        if previous.get("summary_key") == summary_key and isinstance(old_summary, str) and fapiao_kept \
                and _unchanged_since_manifest(summary_path, "summary.xlsx", old_summary, previous):
            files["summary.xlsx"] = old_summary
            for name, digest in old_fapiao.items():
                files[name] = digest
            # the export's listed problems, as the run that made it said them (console and manifest)
            priced.roster.warnings.extend(w for w in previous.get("warnings") or [] if isinstance(w, str)
                                          and w.startswith("fapiao: ") and w not in priced.roster.warnings)
        else:
            listed = PeriodBills(ledger, prefix, period, cancelled)  # streamed from the ledger, never all in memory
            created = dt.datetime.combine(dt.date.fromisoformat(priced.issue_date) if priced.issue_date
                                          else to_date(month_bounds(period)[1]), dt.time())
            changed, files["summary.xlsx"] = write_made_if_different(summary_path, lambda f: write_summary(
                f, listed, account_records(priced.accounts), priced.rejects, created))
            if changed:
                written.append("summary.xlsx")
            # the e-fapiao import file and the red-letter list (README "The clerk's month")
            from .publish_fapiao import write_fapiao_exports

            written += write_fapiao_exports(out, prefix, period, listed, book, priced.roster, created, files)
        manifest = {
            "tool": "qq-invoicer", "tool_version": tool_version(), "period": period, "invoice_prefix": prefix,
            "pricebook": {"version": book.version, "sha256": book.sha256, "source": Path(book.source).name},
            "input": {"name": priced.input_name, "sha256": priced.input_sha256},
            "ledger": _ledger_entry(opts, out),
            **ledger.anchor(prefix, period),  # ledger_id, chain_head, chain_link: which ledger, as of when
            "counts": {"invoices": invoices, "credit_notes": credit_notes, "notices": notice_count,
                       "rejected_rows": len(priced.rejects)},
            "total_fen": total_fen,
            "files": SortedItems(files.items, files.__bool__),
            # the inode state of each file as this run left it: the next run trusts a file whose state is
            # unchanged instead of re-reading it (verify re-hashes regardless)
            "file_stats": SortedItems(lambda: ((name, stat_key(place(name))) for name, _ in files.items()),
                                      files.__bool__),
            "summary_key": summary_key,
            "warnings": priced.roster.warnings,
        }
        write_json(out / "manifest.json", manifest)
        written.append("manifest.json")
        return written
    finally:
        scratch.close()


class _ListedFiles:
    """The manifest's ``files`` while publishing builds it: name -> SHA-256 in a scratch table, read back
    in name order (SQLite's text order is Python's)."""

    def __init__(self, scratch):
        self._scratch, self._db = scratch, scratch.db
        self._table = scratch.table("name TEXT PRIMARY KEY, sha TEXT NOT NULL", True)
        self._pending: list[tuple[str, str]] = []  # inserted a thousand at a time, in order

    def __setitem__(self, name: str, digest: str) -> None:
        self._pending.append((name, digest))
        if len(self._pending) >= 1000:
            self._flush()

    def _flush(self) -> None:
        self._db.executemany(f"INSERT OR REPLACE INTO {self._table} VALUES (?, ?)", self._pending)
        self._pending.clear()

    def __bool__(self) -> bool:
        self._flush()
        return self._db.execute(f"SELECT 1 FROM {self._table} LIMIT 1").fetchone() is not None

    def items(self):
        self._flush()
        cur = self._db.execute(f"SELECT name, sha FROM {self._table} ORDER BY name")
        while rows := cur.fetchmany(1000):
            yield from rows


def claim_folder(out: Path, prefix: str, period: str, opts) -> None:
    """Before a run commits its first documents for a folder without a (readable) manifest, a manifest that
    names only the prefix and period (and says it is incomplete) claims the folder: a run of another month
    is refused there even if this run's publishing then fails (exit 5) before its full manifest; verify
    reports the folder incomplete until a re-run writes it. Written before the commit, so a full disk stops
    the run before anything is issued. The caller knows the folder has no manifest of its month
    (pipeline._one_series_per_folder, read while it holds the folder)."""
    write_json(out / "manifest.json", {
        "tool": "qq-invoicer", "tool_version": tool_version(), "period": period, "invoice_prefix": prefix,
        "ledger": _ledger_entry(opts, out), "files": {},
        "incomplete": "publishing did not finish: re-run the same command to publish the rest"})


def _ledger_entry(opts, out: Path) -> str:
    """The manifest's ledger: relative to the folder (../../ledger.sqlite for the watcher's folders), so an
    archive copied with its ledger is audited against its own copy, never the live ledger at an absolute
    path; as the paths are written, links in them kept (resolving them would climb the physical tree)."""
    return os.path.relpath(os.path.abspath(opts.ledger), os.path.abspath(out)) if opts.ledger else LEDGER_NAME


class PeriodBills:
    """The period's bills and credit notes as the summary and the e-fapiao export list them: each snapshot
    with its ``status`` (bill_status), in number order. An iterable that reads the ledger a batch at a time
    on every pass (a cursor over the bills' ids in number order), so a month of 100,000 bills is never held
    in memory at once (the readers make one or two passes). ``cancelled``: the numbers that a credit note
    cancels."""

    BATCH = 500

    def __init__(self, ledger, prefix: str, period: str, cancelled: set):
        self.ledger, self.prefix, self.period, self.cancelled = ledger, prefix, period, cancelled

    def __iter__(self):
        stream = self.ledger.bill_stream(self.prefix, self.period)
        while batch := list(itertools.islice(stream, self.BATCH)):
            for (_, kind, number), d in zip(batch, self.ledger.issued_by_id([b[0] for b in batch])):
                yield {**d.content, "status": bill_status(kind, number, self.cancelled)}


def bill_status(kind: str, number: str | None, cancelled: set) -> str:
    """A bill's status in the summary and the exports: "cancelled" when a credit note cancels it, else
    "issued" for an invoice and "credit_note" for a credit note."""
    if number in cancelled:
        return "cancelled"
    return "issued" if kind == "invoice" else "credit_note"


def account_records(accounts, chunk: int = 2000):
    """The priced accounts frame -> the summary's account rows (sorted by customer id), generated as the
    sheet streams out, a chunk of rows at a time (a month's accounts are not copied into Python objects at
    once)."""
    from .documents import AccountSet, _d

    if isinstance(accounts, AccountSet):  # partition by partition: their customer ids follow one another
        for frame in accounts.frames():
            yield from account_records(frame, chunk)
        return
    order = accounts["customer_id"].reset_index(drop=True).sort_values().index.to_numpy()
    columns = ["customer_id", "seats", "paid_through", "status", "next_action_on", "window_opens_on",
               "reclaim_on", "quote_fen"]
    for i in range(0, len(order), chunk):
        a = accounts.iloc[order[i:i + chunk]]
        names = a["customer_name"].tolist() if "customer_name" in a else [""] * len(a)
        held = a["invoice_held"].tolist() if "invoice_held" in a else [""] * len(a)
        cols = [a[c].tolist() for c in columns]
        yield from ({"customer_id": cid, "customer_name": name or "", "seats": int(seats), "paid_through": _d(paid),
                     "status": status, "next_action_on": _d(nxt), "window_opens_on": _d(win), "reclaim_on": _d(rec),
                     "quote_fen": int(quote), "invoice_held": h or ""}
                    for cid, seats, paid, status, nxt, win, rec, quote, name, h in zip(*cols, names, held))
