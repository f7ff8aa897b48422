"""The only module that writes output files. Every write is atomic: a temporary file in the same folder,
flushed to disk, then renamed over the target, so a reader (or a crash) never sees half a file."""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


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


def write_if_different(path: Path, data: bytes) -> bool:
    """Write unless the file already holds exactly these bytes (issued files are not rewritten)."""
    if path.is_file() and sha256(path.read_bytes()) == sha256(data):
        return False
    atomic_write(path, data)
    return True


def write_json(path: Path, obj) -> bytes:
    """Write obj as sorted, indented JSON (atomically, and only if the bytes differ); returns the bytes."""
    data = (json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode()
    write_if_different(path, data)
    return data
