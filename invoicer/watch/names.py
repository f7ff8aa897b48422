"""File-name rules of the drop folder: which names are rosters, the billing month a name holds, a reseller
folder's default invoice prefix, and how a hostile name is shown and shortened safely.

Names come from resellers, so they may be anything a file system allows: 255 bytes long, not UTF-8 (a GBK
name from an SMB or FTP client arrives as lone surrogates through ``surrogateescape``), or full of control
characters. Every name we write or log goes through ``shown`` and every name we make goes through ``fit``.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import unicodedata
from pathlib import Path

from ..errors import InputError
from ..limits import DROP_SUFFIXES as ROSTER_SUFFIXES  # noqa: F401 (the reader's formats; a CSV pair as a .zip)

# office lock files, editors' swap files, browsers' partial downloads, our own temporary files
_IGNORED_PREFIXES = ("~$", ".", "~")
_IGNORED_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".download", ".swp", "~")
# 2026-10 or 202610, not inside a longer run of digits (20261031 is a date, not a period). ASCII digits only:
# the name is NFKC-normalised first (an IME's full-width 20２６-10 is 2026-10), and other scripts' digits,
# which a bare \d would take and the date code cannot read, are no period.
_PERIOD_IN_NAME = re.compile(r"(?<!\d)(20\d\d)-?(0[1-9]|1[0-2])(?!\d)", re.ASCII)
# the longest name we make beside a reseller's file (.error.txt, .rejects.txt): publish.atomic_write adds
# about 15 bytes for its temporary file, and a name may have 255 bytes in all
COMPANION_MAX = 200
NAME_MAX = 255
PREFIX_MAX = 12


def ignored(name: str) -> bool:
    """Names that are never rosters: left alone in the inbox, not even reported."""
    low = name.lower()
    return low.startswith(_IGNORED_PREFIXES) or low.endswith(_IGNORED_SUFFIXES)


def period_from_name(name: str) -> str | None:
    """The billing period a file name holds (``roster-2026-10.xlsx``, ``202610.xlsx``, full-width
    ``roster-２０２６-１０.xlsx``: NFKC), or None. Two different periods in one name are refused (InputError)."""
    stem = unicodedata.normalize("NFKC", Path(name).stem)
    found = {f"{y}-{m}" for y, m in _PERIOD_IN_NAME.findall(stem)}
    if len(found) > 1:
        raise InputError(f"the file name holds more than one billing month ({', '.join(sorted(found))}); "
                         f"rename it so it holds one, e.g. roster-2026-10.xlsx")
    return found.pop() if found else None


def too_far_ahead(period: str, today: dt.date) -> str | None:
    """Why a file name's month cannot be billed yet, or None: a month more than one ahead of today's is a
    typo (2099-12 for 2026-12), and billing it would number a bill dated years ahead in a series of its own.
    (The current month and the next one are allowed: a clerk may bill a month early.)"""
    year, month = map(int, period.split("-"))
    ahead = (year - today.year) * 12 + (month - today.month)
    if ahead > 1:
        return (f"the file name names {period}, {ahead} months after this month ({today:%Y-%m}); a month is "
                f"billed from the month before it at the earliest: rename the file with the month it bills")
    return None


def previous_month(today: dt.date) -> str:
    """YYYY-MM of the month before ``today``: the clerk bills October in the first days of November.
    (The one "previous month" rule: ``invoicer run``'s default period uses it too.)"""
    last = today.replace(day=1) - dt.timedelta(days=1)
    return f"{last.year:04d}-{last.month:02d}"


def resolve_default_period(rule: str, now: dt.date) -> str:
    """``previous`` (the month before the file was taken), ``current``, or a fixed YYYY-MM."""
    if rule == "previous":
        return previous_month(now)
    if rule == "current":
        return f"{now.year:04d}-{now.month:02d}"
    return rule


def prefix_from_folder(folder: str) -> str:
    """The invoice prefix of a reseller folder whose roster names none: its letters and digits, upper-cased,
    at most 12 (``sz-tengyun`` -> ``SZTENGYUN``). Two folders that give the same prefix cannot both use it
    (the ledger binds it to the first); the second sets invoice_prefix in its reseller sheet."""
    return re.sub(r"[^A-Za-z0-9]", "", folder).upper()[:PREFIX_MAX]


def shown(name: str) -> str:
    """A name as it may be printed, logged or written to a file: itself when it is valid UTF-8 text,
    else the repr of its bytes (b'\\xc9\\xee...'), which is ASCII and names the file unambiguously."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return repr(os.fsencode(name))
    return name


def fit(name: str, suffix: str = "", limit: int = COMPANION_MAX) -> str:
    """``name + suffix`` when it has at most ``limit`` bytes, else the name's stem shortened and tagged with
    a hash of the whole name (``very-long~1a2b3c4d.xlsx.error.txt``), so two long names stay apart."""
    whole = name + suffix
    if len(os.fsencode(whole)) <= limit:
        return whole
    stem, ext = os.path.splitext(name)
    if len(os.fsencode(ext)) > 16:  # an "extension" that long is part of the name
        stem, ext = name, ""
    tag = "~" + hashlib.sha256(os.fsencode(name)).hexdigest()[:8]
    keep = limit - len(os.fsencode(tag + ext + suffix))
    while len(os.fsencode(stem)) > keep:
        stem = stem[:-1]
    return stem + tag + ext + suffix
