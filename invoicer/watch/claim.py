"""The claim protocol: how an entry of a reseller folder is looked at, taken and read, safely.

Everything in the inbox is the resellers' and may be hostile: a symbolic link to another reseller's roster,
to the ledger or to /etc/shadow; a hard link; a FIFO that blocks whoever opens it; a reseller folder that is
itself a link to OUT. The rules, so that nothing the product owns is ever moved or read:

- A folder is opened with ``O_DIRECTORY | O_NOFOLLOW`` and every look (``lstat``) and every move (``rename``
  with ``src_dir_fd``) is relative to that descriptor, so a folder swapped for a link meanwhile cannot
  redirect either; a rename moves the directory entry itself (a link stays a link), never a link's target.
- Only a regular file with one link (``st_nlink == 1``) is billed. Links, hard links, FIFOs, sockets,
  devices and sub-folders are moved aside, never opened.
- The claim is one rename into processing/ (ours: resellers cannot write there). What the rename took is
  looked at again there, opened with ``O_NOFOLLOW | O_NONBLOCK``, checked by ``fstat`` (regular, the same
  inode, one link, not over the size limit) and read once from that descriptor: those bytes are hashed,
  priced and kept in the ledger, whatever happens to the file afterwards.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MIB = 1024 * 1024


class Refused(Exception):
    """An entry that is not billed, with the reason in plain words (for the reseller's .error.txt)."""


def open_folder(name: str | Path, dir_fd: int | None = None) -> int:
    """A descriptor of a folder, never through a symbolic link (OSError, e.g. ELOOP/ENOTDIR, otherwise)."""
    return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)


def entries(dir_fd: int) -> list[tuple[str, os.stat_result]]:
    """(name, lstat) of every entry of an open folder; an entry removed while we look is left out."""
    found = []
    for name in os.listdir(dir_fd):
        try:
            found.append((name, os.stat(name, dir_fd=dir_fd, follow_symlinks=False)))
        except FileNotFoundError:
            continue
    return found


def refusal(st: os.stat_result, name: str, dir_fd: int) -> str | None:
    """Why an entry (by its lstat) cannot be billed, or None for a regular file with one link."""
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        try:
            os.stat(name, dir_fd=dir_fd)
            dangling = ""
        except OSError:
            dangling = " (it points to nothing that exists)"
        return (f"this is a symbolic link{dangling}, not a file; links are never followed. Upload the workbook "
                f"itself")
    if stat.S_ISDIR(mode):
        return "this is a folder; rosters go directly in the reseller folder, and sub-folders are not read"
    if stat.S_ISREG(mode):
        if st.st_nlink != 1:
            return (f"this file has {st.st_nlink} hard links (names); only a file with one name is billed. "
                    f"Upload a copy of the workbook")
        return None
    kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
    return f"this is {kind}, not a file; it was not opened. Upload the workbook itself"


def move(src_fd: int, name: str, dest: Path) -> None:
    """Rename the entry ``name`` of the open folder ``src_fd`` to ``dest`` (a path in a folder of ours), and
    make the move durable. The entry itself moves: a link is not followed, a folder moves whole."""
    dest_fd = open_folder(dest.parent)
    try:
        os.rename(name, dest.name, src_dir_fd=src_fd, dst_dir_fd=dest_fd)
        os.fsync(dest_fd)
    finally:
        os.close(dest_fd)
    os.fsync(src_fd)


def read_claimed(path: Path, max_bytes: int) -> bytes:
    """The bytes of a claimed file in processing/, read from one descriptor; Refused when it is not a regular
    file with one link, or larger than ``max_bytes`` (judged from ``fstat``, before reading anything)."""
    folder = open_folder(path.parent)
    try:
        st = os.stat(path.name, dir_fd=folder, follow_symlinks=False)
        why = refusal(st, path.name, folder)
        if why is not None:
            raise Refused(why)
        _check_size(st.st_size, max_bytes)
        try:
            fd = os.open(path.name, _FILE_FLAGS, dir_fd=folder)
        except OSError as exc:
            raise Refused(f"the file cannot be opened ({exc.strerror})") from None
    finally:
        os.close(folder)
    try:
        fst = os.fstat(fd)
        if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(fst.st_mode) or fst.st_nlink != 1:
            raise Refused("the file changed while it was being taken; upload it again")
        _check_size(fst.st_size, max_bytes)
        chunks, left = [], max_bytes + 1  # a file still growing is not read past the limit
        while left > 0:
            chunk = os.read(fd, min(left, 4 * MIB))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        _check_size(len(data), max_bytes)
        return data
    finally:
        os.close(fd)


def _check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise Refused(f"the file is {_mib(size)}, more than the {_mib(max_bytes)} a roster may have "
                      f"(invoicer watch --max-size); a roster of thousands of customers is a few MiB")


def _mib(n: int) -> str:
    if n < MIB:
        return f"{n / 1024:,.1f} KiB"
    return f"{n / MIB:,.1f} MiB" if n < 1024 * MIB else f"{n / (1024 * MIB):,.1f} GiB"
