"""What the watcher tells a reseller (the .error.txt and .rejects.txt beside a file) and the clerk (reasons
in the log), in plain words. Names are shown through ``names.shown``: a name that is not UTF-8 is written as
the repr of its bytes, never as text that cannot be encoded."""
from __future__ import annotations

from ..errors import Reject
from ..publish import SAFE_NAME
from .names import shown

REFILE = "Fix the workbook and drop it in the inbox again."
DROP_AGAIN = "Drop it again as described above."

NOT_IN_A_FOLDER = ("rosters go in a folder named after the reseller: {inbox}/<reseller>/{name}; this was "
                   "dropped in the inbox itself")
FOLDER_IS_LINK = ("the reseller folder {name} is a symbolic link; a reseller folder must be a real folder, and "
                  "links are never followed")
UNSAFE_FOLDER = ("the reseller folder name {name} can only use letters, digits, '.', '_' and '-' (it names the "
                 "output folder)")
NOT_A_WORKBOOK = ("only rosters are billed: a workbook (.xlsx, .xlsm, .xls, .ods) or a .zip holding customers.csv "
                  "and changes.csv; save the roster as one of those and drop it again")
INTERRUPTED = ("billing this file was interrupted {times} times (the watcher crashed or was killed while it was "
               "in hand), so it was set aside to let the other files be billed. The log (stderr) says what "
               "happened. If the interruptions were only restarts, drop it again: anything already issued for "
               "it is recognised and not issued twice.")
CONFLICT_ADVICE = ("\n\nA roster may change invoices already issued only through the finance clerk: "
                   "`invoicer run ROSTER --period P --out DIR --ledger LEDGER --amend` cancels them with credit "
                   "notes and issues replacements.")
CONFLICT_NEXT = ("If the change is intended, ask the finance clerk to amend; if not, correct the roster and drop "
                 "it again.")
ALL_REJECTED = "every customer row was rejected, so nothing could be billed"
INTERNAL = ("internal error ({error}); the file was not billed. Please report this to the invoicer's maintainers "
            "with the file.")


def reject_lines(rejects: list[Reject]) -> list[str]:
    return [f"  - sheet '{r.sheet}', row {r.row}, column {r.column}, value {r.value!r}: {r.reason}" for r in rejects]


def error_text(name: str, reseller: str, period: str, period_source: str, reason: str, rejects: list[Reject],
               advice: str) -> str:
    """The .error.txt beside a file in failed/: what was not billed, why, the rejected rows, what to do."""
    lines = [f"{shown(name)} was NOT billed.", "", "Why:", *("  " + x for x in reason.splitlines())]
    if rejects:
        lines += ["", f"Rejected rows ({len(rejects)}):", *reject_lines(rejects)]
    folder = reseller if SAFE_NAME.match(reseller) else "-"
    lines += ["", advice,
              f"(reseller folder: {folder}; billing month: {period or '-'}"
              f"{' from the ' + period_source if period else ''})", ""]
    return "\n".join(lines)


def rejects_text(name: str, period: str, rejects: list[Reject]) -> str:
    """The .rejects.txt beside a billed file in processed/: the rows left out, and how to bill them."""
    lines = [f"{shown(name)} was billed for {period}, except the customers of these {len(rejects)} "
             f"rejected row(s), which were left out:", *reject_lines(rejects), "",
             "Correct them and drop the whole roster again: customers already invoiced are recognised and "
             "not invoiced twice.", ""]
    return "\n".join(lines)
