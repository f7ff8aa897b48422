"""Command line: parse options, call the pipeline, print a short report, map errors to exit codes.

Exit codes (README "Exit codes"): 0 done, nothing rejected; 1 done, some rows rejected (or verify found
mismatches); 2 unusable input or options, nothing billed; 3 the input changes an issued invoice (use
--amend); 4 another run holds the ledger; 5 the month was issued but not every file was written (a re-run
publishes the rest).
"""
from __future__ import annotations

import argparse
import datetime as dt
import errno
import re
import sqlite3
import sys
from pathlib import Path

from . import limits
from .errors import EXIT_INPUT, EXIT_OK, EXIT_REJECTS, InputError, InvoicerError, Reject
from .limits import check_period
from .money import fmt_yuan


def default_period(today: dt.date | None = None) -> str:
    """The previous calendar month: the clerk bills October in the first days of November."""
    from .watch.names import (
        previous_month,  # the one "previous month" rule, shared with the watcher
    )

    return previous_month(today or dt.date.today())


def _period(text: str | None) -> str | None:
    """--period, checked after argparse so that a bad month is one line and exit 2, not a usage block."""
    if text is None:
        return None
    try:
        return check_period(text)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _print_rejects(rejects: list[Reject], out=None) -> None:
    out = out or sys.stderr  # looked up per call: a default bound at import keeps a stream since replaced
    for r in rejects:
        print(f"rejected: sheet '{r.sheet}' row {r.row} column {r.column} value {r.value!r}: {r.reason}", file=out)


def cmd_run(args) -> int:
    """Bill one month: invoices, notices, summary.xlsx and manifest.json under --out.

    Example: invoicer run samples/roster.xlsx --period 2026-10 --out out/2026-10
    """
    from .pipeline import RunOptions, run

    opts = RunOptions(roster=Path(args.roster), period=_period(args.period) or default_period(), out=Path(args.out),
                      pricebook=args.pricebook, ledger=args.ledger, templates=args.templates, amend=args.amend,
                      dry_run=args.dry_run, workers=args.workers, wait_s=args.wait, executor=args.executor)
    report = run(opts)
    for w in report.warnings:
        print(f"note: {w}", file=sys.stderr)
    _print_rejects(report.rejects)
    plan = report.plan
    if report.dry_run:
        print(f"dry run for {report.period} ({report.prefix}): nothing numbered or written")
        for new in plan.new:
            print(f"  new        {new.customer_id}: {fmt_yuan(new.total_fen)}")
        for old in plan.unchanged:
            print(f"  unchanged  {old.customer_id}: {old.number}")
        for line in plan.differences():
            print(f"  changed    {line}")
    else:
        print(f"{report.period}: {len(plan.new)} new, {len(plan.unchanged)} unchanged, "
              f"{len(plan.changed)} amended, {len(plan.withdrawn)} cancelled invoice(s); "
              f"issued {len(report.issued)} numbered document(s); {len(report.rejects)} row(s) rejected; "
              f"total {fmt_yuan(report.totals_fen)} CNY")
        print(f"outputs in {report.out}: summary.xlsx, manifest.json, invoices/, notices/, fapiao/")
    return report.exit_code


def cmd_check(args) -> int:
    """Validate a roster only: print every rejected row; exit 1 if there are any, 0 if none.

    Example: invoicer check samples/roster.xlsx
    """
    from . import pricebook
    from .pipeline import price_roster

    book = pricebook.load(args.pricebook)
    period = _period(args.period) or "9999-12"
    priced = price_roster(Path(args.roster), book, period)
    priced.close()  # what is printed is in memory: the warnings and the rejects
    for w in priced.roster.warnings:
        print(f"note: {w}", file=sys.stderr)
    _print_rejects(priced.rejects, sys.stdout)
    print(f"{len(priced.rejects)} row(s) rejected" if priced.rejects else "no rejected rows")
    return EXIT_REJECTS if priced.rejects else EXIT_OK


def cmd_template(args) -> int:
    """Write a blank roster workbook to fill in (headers, drop-downs, date formats, instructions).
    The seats checks and the legacy cutoff come from --pricebook (default: the shipped price book).

    An existing file is never replaced (it may be this month's filled-in roster) unless --force is given.

    Example: invoicer template roster.xlsx --lang zh
    """
    from . import pricebook
    from .publish import atomic_write
    from .template import blank_roster

    path = Path(args.out)
    if (path.exists() or path.is_symlink()) and not args.force:
        raise InvoicerError(f"{path} exists (it may be a filled-in roster): nothing written; give another name, "
                            f"or --force to replace it")
    atomic_write(path, blank_roster(args.lang, pricebook.load(args.pricebook)))
    print(f"wrote {args.out}")
    return EXIT_OK


def _one_line(text: str) -> str:
    """A finding as one line of plain text: a file name in it (whatever the folder holds) cannot start a
    line that reads like verify's verdict, nor send the terminal an escape sequence (\x1b[8m hides
    everything after it); control and direction characters are shown escaped."""
    from .roster import escape_controls

    return escape_controls(text).replace("\n", "\\x0a").replace("\r", "\\x0d")


def cmd_verify(args) -> int:
    """Audit an output folder, reading its ledger strictly read-only: the ledger is this folder's and intact
    (hash chain, series counts, triggers); every issued document of the period is in the folder unchanged,
    and every file in the folder and the manifest is a document of this ledger; every invoice is recomputed
    from the roster and price book recorded in the ledger. Exit 0 clean, 1 problems (all listed).
    Given a PDF file instead, say whether it is exactly a document the ledger issued.
    --head HASH: also require the ledger's hash chain to contain a head kept earlier (printed by verify,
    recorded in each manifest).

    Example: invoicer verify out/2026-10
             invoicer verify SZTY-2026-000001.pdf --ledger out/ledger.sqlite
    """
    from .verify import verify, verify_pdf

    target = Path(args.outdir)
    head = args.head.lower() if args.head else None
    if target.is_file():
        if not args.ledger:
            raise InvoicerError(f"{target} is a file: pass --ledger to say which ledger issued it")
        problems, findings = verify_pdf(target, Path(args.ledger), head)
        for line in findings:
            print(_one_line(line))
        for p in problems:
            print(f"MISMATCH: {_one_line(p)}")
        return EXIT_REJECTS if problems else EXIT_OK
    if not target.is_dir():
        raise InvoicerError(f"{target}: no such folder or file")
    audit = verify(target, Path(args.ledger) if args.ledger else None, head)
    for note in audit.notes:
        print(f"note: {_one_line(note)}")
    for p in audit.problems:
        print(f"MISMATCH: {_one_line(p)}")
    if audit.problems:
        print(f"{len(audit.problems)} problem(s) found ({audit.checked} checks)")
        return EXIT_REJECTS
    print(f"clean: {audit.checked} checks passed")
    if audit.head:
        print(f"ledger chain head {audit.head} (keep it apart; `invoicer verify --head` checks it later)")
    return EXIT_OK


def cmd_watch(args) -> int:
    """Watch a drop folder: bill every roster dropped into INBOX/<reseller>/, exactly once.

    Results go to OUT/<reseller>/<period>/ with one ledger OUT/ledger.sqlite; each file then moves to
    processed/<reseller>/<period>/ or failed/<reseller>/ (with a .error.txt) beside the inbox.
    The period comes from the file name (roster-2026-10.xlsx, 202610.xlsx), else --default-period.
    One JSON line per file on stdout. SIGTERM/Ctrl-C finish the current file, then exit 0.
    --once: bill what is there and exit (1 if any file failed), for cron and tests.

    Example: invoicer watch /srv/qq/inbox --out /srv/qq/out
    """
    from .watch import Watcher, WatchOptions

    opts = WatchOptions(inbox=Path(args.inbox), out=Path(args.out), once=args.once, poll=args.poll,
                        settle_s=args.settle, rescan_s=args.rescan, default_period=args.default_period,
                        pricebook=args.pricebook, templates=args.templates, workers=args.workers, wait_s=args.wait,
                        processing=args.processing, processed=args.processed, failed=args.failed,
                        max_bytes=int((args.max_size or limits.current().file_mb) * 1024 * 1024))
    return Watcher(opts).serve()


def _sha256_hex(text: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raise argparse.ArgumentTypeError(f"a chain head is 64 hexadecimal digits, not {text!r}")
    return text


def _default_period_rule(text: str) -> str:
    if text in ("previous", "current"):
        return text
    try:
        return check_period(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"use previous, current or a month like 2026-10, not {text!r}") from None


def _positive_mib(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"use a size in MiB greater than 0, not {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="invoicer", description="Enterprise QQ (企业QQ) reseller invoicer.")
    sub = p.add_subparsers(dest="command", required=True)

    def doc(fn):
        return fn.__doc__.strip().replace("\n    ", "\n")

    r = sub.add_parser("run", help="bill one month", description=doc(cmd_run),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("roster")
    r.add_argument("--period", help="billing month YYYY-MM (default: the previous month)")
    r.add_argument("--out", required=True, help="output folder")
    r.add_argument("--pricebook", help="a reseller's own price-book TOML (default: the shipped one)")
    r.add_argument("--ledger", help="ledger file (default: OUT/ledger.sqlite)")
    r.add_argument("--templates", help="folder with a reseller's own invoice templates and style.css")
    r.add_argument("--amend", action="store_true", help="cancel changed invoices with credit notes and reissue")
    r.add_argument("--dry-run", action="store_true", help="show what would be issued; number and write nothing")
    r.add_argument("--workers", type=int, help="PDF worker processes (default: all cores)")
    r.add_argument("--executor", default="local", metavar="local|dask:tcp://HOST:PORT",
                   help="where PDFs are rendered: this machine's processes (default) or an existing Dask "
                        "cluster's workers (README, 'Scale')")
    r.add_argument("--wait", type=float, default=30.0,
                   help="seconds to wait for another run holding the ledger before exit code 4 (default 30)")
    r.set_defaults(fn=cmd_run)

    c = sub.add_parser("check", help="validate a roster only", description=doc(cmd_check),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("roster")
    c.add_argument("--period", help="check state as of the end of this month (default: all rows)")
    c.add_argument("--pricebook")
    c.set_defaults(fn=cmd_check)

    t = sub.add_parser("template", help="write a blank roster", description=doc(cmd_template),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("out")
    t.add_argument("--lang", choices=["zh", "en"], default="zh")
    t.add_argument("--force", action="store_true", help="replace an existing file")
    t.add_argument("--pricebook", help="the price book whose seat limits and legacy cutoff the template uses")
    t.set_defaults(fn=cmd_template)

    v = sub.add_parser("verify", help="audit an output folder, or check one PDF against the ledger",
                       description=doc(cmd_verify), formatter_class=argparse.RawDescriptionHelpFormatter)
    v.add_argument("outdir", metavar="DIR_OR_PDF")
    v.add_argument("--ledger", help="ledger file (default: OUTDIR/ledger.sqlite, or as the manifest says)")
    v.add_argument("--head", type=_sha256_hex, help="a chain head kept earlier: the ledger must still contain it")
    v.set_defaults(fn=cmd_verify)

    w = sub.add_parser("watch", help="bill rosters dropped into a folder", description=doc(cmd_watch),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    w.add_argument("inbox", help="the drop folder; rosters go in INBOX/<reseller>/")
    w.add_argument("--out", required=True, help="output root: OUT/<reseller>/<period>/ and OUT/ledger.sqlite")
    w.add_argument("--once", action="store_true", help="bill what is in the inbox, then exit")
    w.add_argument("--poll", action="store_true", help="poll instead of file-system events (network shares)")
    w.add_argument("--settle", type=float, default=2.0,
                   help="seconds a file's size and time must stay unchanged before it is taken (default 2)")
    w.add_argument("--rescan", type=float, default=30.0, help="full rescan interval in seconds (default 30)")
    w.add_argument("--default-period", type=_default_period_rule, default="previous",
                   help="billing month when the file name holds none: previous (default: the month before "
                        "the file is taken), current, or YYYY-MM")
    w.add_argument("--pricebook")
    w.add_argument("--templates")
    w.add_argument("--workers", type=int, help="PDF worker processes, kept while watching (default: all cores)")
    w.add_argument("--wait", type=float, default=30.0, help="seconds to wait for a busy ledger before retrying")
    w.add_argument("--max-size", type=_positive_mib, metavar="MIB",
                   help="larger files are refused from their size, before they are read (default: the reader's "
                        "file limit, 100 MiB, raised with INVOICER_MAX_FILE_MB)")
    w.add_argument("--processing", help="claimed files (default: INBOX/../processing)")
    w.add_argument("--processed", help="billed files (default: INBOX/../processed)")
    w.add_argument("--failed", help="files not billed (default: INBOX/../failed)")
    w.set_defaults(fn=cmd_watch)

    return p


def main(argv: list[str] | None = None) -> int:
    """The ``invoicer`` command: ``argv`` as after the program name (default: sys.argv[1:]).

    Returns the exit code (README "Exit codes"); an ``InvoicerError`` becomes one "error: ..." line on
    stderr and its code, never a traceback. Bad options: argparse prints usage and exits 2 (SystemExit).
    """
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse exits 2 on bad options, as documented
    try:
        return args.fn(args)
    except InvoicerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except sqlite3.Error as exc:  # a ledger failure no layer named: still one line, nothing issued
        print(f"error: the ledger failed ({exc}); nothing was issued", file=sys.stderr)
        return EXIT_INPUT
    except OSError as exc:  # a file or folder that cannot be used (a full disk, a file where a folder goes)
        reason = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        print(f"error: {exc.filename + ': ' if exc.filename else ''}{reason}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
