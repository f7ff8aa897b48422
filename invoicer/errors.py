"""Errors a user can cause, each with its documented exit code (see README, "Exit codes")."""
from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_REJECTS = 1  # the run finished, but some rows were rejected (or verify found mismatches)
EXIT_INPUT = 2  # unusable input file or options: nothing was billed
EXIT_CONFLICT = 3  # the input changes an invoice already issued; re-run with --amend
EXIT_BUSY = 4  # another run holds the ledger
EXIT_UNPUBLISHED = 5  # the month was issued (committed), but not every file was written; a re-run publishes


class InvoicerError(Exception):
    exit_code = EXIT_INPUT


class InputError(InvoicerError):
    """The file or an option cannot be used at all (not a workbook, missing sheet or column...)."""


class LedgerBusy(InvoicerError):
    exit_code = EXIT_BUSY


class PublishIncomplete(InvoicerError):
    """The ledger committed the month, then writing its files failed (a full disk, a read-only folder):
    what was issued stays issued, and re-running the same command publishes the rest."""

    exit_code = EXIT_UNPUBLISHED


@dataclass(frozen=True)
class Reject:
    """One rejected row: where it is, what was there, and why, in plain words."""

    sheet: str
    row: int
    column: str
    value: str
    reason: str
    customer_id: str = ""
