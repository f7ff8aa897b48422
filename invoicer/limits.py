"""The documented limits on a roster file, the roster suffixes accepted, and the billing-month rule.

Kept free of pandas (and of anything slow to import) so that the drop-folder watcher can import it to
decide which dropped files to take, before it loads the pipeline.

Every limit has a default that accepts a reseller's month with room to spare (a 200,000-customer roster
is about 10 MB as .xlsx and 15 MB as CSV) and can be raised, for one run or for a watcher, through an
environment variable named in ``ENV`` (README "The roster workbook", "Limits"). A file above a limit is
refused whole with exit code 2 and one line naming the limit and the variable that raises it.
"""
from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass, fields

# Suffixes `invoicer run` and the drop folder accept (lower case, with the dot). A CSV roster is a pair
# (customers.csv + changes.csv [+ reseller.csv]) in one folder, or a .zip of them.
SPREADSHEET_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".ods")
CSV_SUFFIXES = (".csv",)
ZIP_SUFFIXES = (".zip",)
ROSTER_SUFFIXES = SPREADSHEET_SUFFIXES + CSV_SUFFIXES + ZIP_SUFFIXES
# A drop is one file, so a CSV roster is dropped as a .zip of its CSV files; a lone .csv cannot be billed.
DROP_SUFFIXES = SPREADSHEET_SUFFIXES + ZIP_SUFFIXES

MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Upper bounds checked before and while a roster is read (defaults fit 200,000 customers)."""

    file_mb: int = 100  # the file as dropped (for a CSV pair: all its files together)
    unpacked_mb: int = 1024  # every member of an .xlsx/.xlsm/.ods/.zip, uncompressed, together
    ratio: int = 200  # uncompressed / compressed, per member above 1 MB (a zip bomb packs 1000:1)
    members: int = 1000  # files inside the archive
    rows: int = 500_000  # rows of one sheet, up to its last used cell
    columns: int = 200  # columns of one sheet, up to its last used cell
    cells: int = 4_000_000  # rows x columns from A1 to the last used cell (the reader allocates ~70 bytes each)
    text: int = 10_000  # characters in one cell

    def describe(self, name: str) -> str:
        """'rows (500000; raise with INVOICER_MAX_ROWS)' for messages."""
        return f"{getattr(self, name)}; raise with {ENV[name]}"


ENV = {f.name: f"INVOICER_MAX_{f.name.upper()}" for f in fields(Limits)}


def current(environ: os._Environ | dict | None = None) -> Limits:
    """The limits in force: the defaults, each replaced by its environment variable when that is set.

    Refuses (ValueError with one plain line) a variable that is not a positive whole number.
    """
    env = os.environ if environ is None else environ
    values = {}
    for f in fields(Limits):
        text = env.get(ENV[f.name])
        if text is None or not text.strip():
            continue
        if not text.strip().isdigit() or int(text) <= 0:
            raise ValueError(f"{ENV[f.name]} must be a positive whole number, not {text!r}")
        values[f.name] = int(text)
    return Limits(**values)


# Billing months: a period names one calendar month of a year the engine's calendars cover. ASCII digits
# only (re.ASCII: a bare \d takes any script's digits, which the date code cannot read); a period typed with
# a Chinese input method (２０２６-１０, ２０２６－１０) is NFKC-normalised to ASCII first, as roster dates are.
PERIOD_RE = re.compile(r"^(\d{4})-(\d{2})$", re.ASCII)
MIN_YEAR, MAX_YEAR = 2000, 2099


def check_period(text: str) -> str:
    """'2026-10' -> '2026-10' (also typed full-width: '２０２６－１０' -> '2026-10', NFKC). Refuses (ValueError,
    one line) anything but YYYY-MM in 2000-01..2099-12."""
    typed = unicodedata.normalize("NFKC", text).strip() if isinstance(text, str) else None
    m = PERIOD_RE.match(typed) if typed is not None else None
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise ValueError(f"period must look like 2026-10 (year-month), not {text!r}")
    if not MIN_YEAR <= int(m.group(1)) <= MAX_YEAR:
        raise ValueError(f"period {text!r} is out of range: the year must be {MIN_YEAR} to {MAX_YEAR}")
    return typed
