"""Writes a period's e-fapiao files (render/fapiao.py makes the bytes) into OUT/fapiao/, through publish's
atomic writes, and lists them in the manifest. Called once from publish_period, after the summary."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from .publish import _Places, sha256, sweep_stale_temporaries, write_if_different

FOLDER = "fapiao"


def fapiao_file_names(prefix: str, period: str) -> tuple[str, str]:
    """('fapiao/SZTY-2026-10.xlsx', 'fapiao/SZTY-2026-10-red.xlsx')."""
    return f"{FOLDER}/{prefix}-{period}.xlsx", f"{FOLDER}/{prefix}-{period}-red.xlsx"


def part_name(prefix: str, period: str, n: int) -> str:
    """'fapiao/SZTY-2026-10-part2.xlsx': the n-th import file of a period too big for one."""
    return f"{FOLDER}/{prefix}-{period}-part{n}.xlsx"


def expected_exports(prefix: str, period: str, listed: list[dict], book, roster,
                     created: dt.datetime) -> tuple[dict[str, bytes], list[str]]:
    """The period's export files by name (the import file, its -partN files, the red-letter list when the
    period has credit notes) and the problems listed in them, from the period's bills (``listed``, as for
    the summary), the price book's [vat] and the roster's buyer columns. Pure. Every file at once: publish
    and ``verify`` take them one at a time from ``stream_expected_exports``, which gives the same bytes."""
    problems: list[str] = []
    files = dict(stream_expected_exports(prefix, period, listed, book, roster, created, problems))
    order = sorted(files, key=lambda name: _export_rank(prefix, period, name))
    return {name: files[name] for name in order}, problems


def stream_expected_exports(prefix: str, period: str, listed, book, roster, created: dt.datetime,
                            problems: list[str]):
    """``expected_exports`` one file at a time: yields (name, bytes), the -partN files as they fill, then
    the import file, then the red-letter list (render.fapiao.stream_exports), each let go by the caller
    before the next is made; ``problems`` receives the problems once the last file is yielded. Pure:
    ``verify`` rebuilds them from the ledger's records to prove an export was not altered."""
    from .render.fapiao import RED, stream_exports

    main_name, red_name = fapiao_file_names(prefix, period)
    for n, data in stream_exports(listed, book.vat.snapshot(), buyers_of(roster), created, problems):
        yield (red_name if n == RED else main_name if n == 1 else part_name(prefix, period, n)), data


def _export_rank(prefix: str, period: str, name: str) -> tuple[int, int]:
    """Sort key of a period's export names as they were always listed: the import file, -part2, -part3 ...,
    the red-letter list."""
    main_name, red_name = fapiao_file_names(prefix, period)
    if name == main_name:
        return 0, 0
    if name == red_name:
        return 2, 0
    return 1, int(name[len(part_name(prefix, period, 0)) - len("0.xlsx"):-len(".xlsx")])


BUYER_COLUMNS = ("fapiao_kind", "phone", "bank", "bank_account")


class BuyerColumns:
    """customer_id -> the roster's fapiao columns of a valid customer (``get`` gives a dict, or the default),
    as ``render.fapiao.bill_rows`` reads them. Looked up on demand in the columns through the frame's own
    index: a month of 100,000 customers is copied into neither a dict per customer (once the export's peak
    of memory) nor one dict of positions."""

    def __init__(self, customers):
        import pandas as pd

        self.index = pd.Index([])
        self.columns: dict[str, object] = {}
        if "fapiao_kind" in customers:
            from .documents import first_valid_rows

            valid = first_valid_rows(customers, BUYER_COLUMNS)
            self.index = valid.index
            self.columns = {k: valid[k].to_numpy() for k in BUYER_COLUMNS}

    def get(self, customer_id: str, default=None):
        try:
            i = self.index.get_loc(customer_id)
        except KeyError:
            return default
        return {k: column[i] for k, column in self.columns.items()}


class StagedBuyers:
    """customer_id -> the fapiao columns of a valid customer, as ``BuyerColumns`` gives them, looked up in
    the roster's stage (stage.py: kept there by pricing, partition by partition)."""

    def __init__(self, stage):
        self.stage = stage

    def get(self, customer_id: str, default=None):
        values = self.stage.buyer(customer_id)
        return default if values is None else dict(zip(BUYER_COLUMNS, values))


def buyers_of(roster):
    """A priced run's staged buyers, or the columns of a validated roster's customers frame."""
    buyers = getattr(roster, "buyers", None)
    return buyers if buyers is not None else BuyerColumns(roster.customers)


def write_fapiao_exports(out: Path, prefix: str, period: str, listed: list[dict], book, roster,
                         created: dt.datetime, files: dict[str, str]) -> list[str]:
    """Build and write fapiao/<prefix>-<period>.xlsx (always; -part2, -part3 ... when the period has more detail
    rows than one import takes) and fapiao/<prefix>-<period>-red.xlsx (when the period has credit notes).
    ``listed``: the period's bills and credit notes with their status, as for the
    summary; ``roster``: the validated roster (its customers' fapiao columns; its warnings receive one line
    per problem, for the console and the manifest). Records each file's SHA-256 in ``files`` and returns the
    names written (the import file, the parts, the red-letter list). Each file is written as soon as it is
    made and let go (stream_expected_exports): a month's exports are never all in memory. Runs after the
    ledger committed, so it never raises: a failure is one warning line."""
    try:
        sweep_stale_temporaries(out / FOLDER)
        place = _Places(out)  # a link at an export's place is replaced, never followed
        names, written, problems = set(), [], []
        for name, data in stream_expected_exports(prefix, period, listed, book, roster, created, problems):
            if write_if_different(place(name), data):
                written.append(name)
            files[name] = sha256(data)
            names.add(name)
            del data
        # files a bigger earlier run wrote are removed, so the folder never offers a bill to import twice
        for stale in sorted((out / FOLDER).glob(f"{prefix}-{period}-part*.xlsx")):
            if f"{FOLDER}/{stale.name}" not in names:
                stale.unlink()
        roster.warnings.extend(problems)
        return sorted(written, key=lambda name: _export_rank(prefix, period, name))
    except Exception as exc:  # the bills are issued; the export can be made again by re-running
        roster.warnings.append(f"fapiao export not written ({type(exc).__name__}: {exc}); re-run the period "
                               f"to make it")
        return []
