"""The drop folder: resellers drop roster workbooks into INBOX/<reseller>/; each is billed exactly once.

Life of a dropped file (all folders are siblings of the inbox, so every move is an atomic rename):

    inbox/<reseller>/<name>.xlsx                      dropped; taken once its size and time settle
    processing/<reseller>/<period>/<name>.xlsx        claimed (the period is fixed at the claim)
    processed/<reseller>/<period>/<name>.xlsx         billed (+ <name>.rejects.txt when rows were rejected)
    failed/<reseller>/<name>.xlsx + .error.txt        not billed, and why, in plain words

Exactly once: a file is claimed by one rename into processing/ before anything is billed. A watcher that
is killed finds its claim there when it starts again and runs it again; the ledger makes that re-run
idempotent (a run killed before its COMMIT left nothing; one killed after it issues nothing new and
re-publishes the files). One watcher per inbox: a lock file in processing/ refuses a second one.

The run is the same pipeline as ``invoicer run`` (``pipeline.run``), with the output folder
OUTDIR/<reseller>/<period>/ and one ledger OUTDIR/ledger.sqlite shared by every reseller and period.
A file whose content changes invoices already issued is not amended automatically: it fails with the
differences listed, for the finance clerk to decide (``invoicer run --amend``).

Logging: one JSON line per file on stdout (when it started, the result, counts, duration, where the file
went), plus a line when the watcher starts and stops. SIGTERM or Ctrl-C: the current file is finished,
then the watcher exits 0.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from .errors import (
    EXIT_BUSY,
    EXIT_OK,
    EXIT_REJECTS,
    InputError,
    InvoicerError,
    LedgerBusy,
    Reject,
)
from .ledger import runs_of_input
from .money import plain_yuan
from .publish import SAFE_NAME, atomic_write, durable_rename, sweep_stale_temporaries

ROSTER_SUFFIXES = (".xlsx", ".xlsm")
MAX_ATTEMPTS = 3  # a claim interrupted this many times is set aside in failed/
POOL_IDLE_S = 600.0  # PDF workers are closed after this long without a file (and made again when needed)
# office lock files, editors' swap files, browsers' partial downloads, our own temporary files
_IGNORED_PREFIXES = ("~$", ".", "~")
_IGNORED_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".download", ".swp", "~")
# 2026-10 or 202610, not inside a longer run of digits (20261031 is a date, not a period)
_PERIOD_IN_NAME = re.compile(r"(?<!\d)(20\d\d)-?(0[1-9]|1[0-2])(?!\d)")


def ignored(name: str) -> bool:
    """Names that are never rosters: left alone in the inbox, not even reported."""
    low = name.lower()
    return low.startswith(_IGNORED_PREFIXES) or low.endswith(_IGNORED_SUFFIXES)


def period_from_name(name: str) -> str | None:
    """The billing period a file name holds (``roster-2026-10.xlsx``, ``202610.xlsx``), or None.
    Two different periods in one name are refused."""
    found = {f"{y}-{m}" for y, m in _PERIOD_IN_NAME.findall(Path(name).stem)}
    if len(found) > 1:
        raise InputError(f"the file name holds more than one billing month ({', '.join(sorted(found))}); "
                         f"rename it so it holds one, e.g. roster-2026-10.xlsx")
    return found.pop() if found else None


def resolve_default_period(rule: str, now: dt.date) -> str:
    """``previous`` (the month before the file was taken), ``current``, or a fixed YYYY-MM."""
    if rule == "previous":
        last = now.replace(day=1) - dt.timedelta(days=1)
        return f"{last.year:04d}-{last.month:02d}"
    if rule == "current":
        return f"{now.year:04d}-{now.month:02d}"
    return rule


@dataclass
class WatchOptions:
    inbox: Path
    out: Path
    once: bool = False
    poll: bool = False
    settle_s: float = 2.0  # a file is taken when its size and time have not changed for this long
    rescan_s: float = 30.0  # full rescan even without file-system events (missed events, network shares)
    default_period: str = "previous"
    pricebook: Path | None = None
    templates: Path | None = None
    workers: int | None = None
    wait_s: float = 30.0
    once_timeout_s: float = 120.0  # --once leaves files that are still being written after this long
    processing: Path | None = None
    processed: Path | None = None
    failed: Path | None = None

    def __post_init__(self):
        self.inbox = Path(self.inbox).resolve()
        self.out = Path(self.out).resolve()
        base = self.inbox.parent
        self.processing = Path(self.processing or base / "processing").resolve()
        self.processed = Path(self.processed or base / "processed").resolve()
        self.failed = Path(self.failed or base / "failed").resolve()


@dataclass
class Claim:
    path: Path  # processing/<reseller>/<period>/<name>
    reseller: str
    period: str
    period_source: str

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    since: float


@dataclass
class Watcher:
    opts: WatchOptions
    log_to: object = field(default=sys.stdout)

    def __post_init__(self):
        self.stopping = False
        self.wake = threading.Event()
        self.seen: dict[Path, _Seen] = {}
        self.reported: set[tuple[Path, str]] = set()
        self.pool = None
        self.pool_used = 0.0
        self.failures = 0
        self.mode = "scan"  # or "events" (inotify through watchdog) or "polling"

    # -- entry point --------------------------------------------------------------------------------
    def serve(self) -> int:
        o = self.opts
        if not o.inbox.is_dir():
            raise InputError(f"{o.inbox}: the inbox folder does not exist")
        for d in (o.processing, o.processed, o.failed, o.out):
            d.mkdir(parents=True, exist_ok=True)
        if os.stat(o.inbox).st_dev != os.stat(o.processing).st_dev:
            raise InputError(f"{o.processing} must be on the same file system as {o.inbox} (files are claimed "
                             f"by an atomic rename)")
        lock = open(o.processing / ".watch.lock", "a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._log(event="refused", reason=f"another watcher holds {o.processing / '.watch.lock'}")
            return EXIT_BUSY
        self._sweep_temporary_files()
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        observer = None if o.once else self._start_observer()
        self._log(event="watching", inbox=str(o.inbox), out=str(o.out), mode=self.mode, once=o.once)
        try:
            self._loop()
        finally:
            if observer is not None:
                observer.stop()
                observer.join(timeout=5)
            if self.pool is not None:
                self.pool.close()
            for s, h in old.items():
                signal.signal(s, h)
            self._log(event="stopped", failed_files=self.failures)
            lock.close()
        return EXIT_REJECTS if (o.once and self.failures) else EXIT_OK

    def _sweep_temporary_files(self) -> None:
        """A watcher killed inside an atomic write leaves its hidden temporary file; these folders are only
        ever written by the watcher that holds the lock, so what is left there now is litter."""
        for folder in (self.opts.processing, self.opts.processed, self.opts.failed):
            sweep_stale_temporaries(folder, older_than_s=0, recursive=True)

    def _on_signal(self, signum, frame) -> None:
        self.stopping = True
        self.wake.set()

    def _start_observer(self):
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers.polling import PollingObserver

        wake = self.wake

        class Wake(FileSystemEventHandler):
            def on_any_event(self, event):
                wake.set()

        observer = None
        if not self.opts.poll:
            try:
                from watchdog.observers import Observer

                observer = Observer()
                observer.schedule(Wake(), str(self.opts.inbox), recursive=True)
                observer.start()
                self.mode = "events"
                return observer
            except OSError as exc:  # e.g. the inotify watch limit: fall back to polling
                self._log(event="notice", message=f"file-system events unavailable ({exc}); polling instead")
        observer = PollingObserver(timeout=max(0.5, self.opts.settle_s / 2))
        observer.schedule(Wake(), str(self.opts.inbox), recursive=True)
        observer.start()
        self.mode = "polling"
        return observer

    # -- the loop -----------------------------------------------------------------------------------
    def _loop(self) -> None:
        o = self.opts
        deadline = time.monotonic() + o.once_timeout_s
        while not self.stopping:
            self.wake.clear()
            try:
                busy, waiting = self._pass()
            except Exception as exc:  # a folder vanished, a permission changed, a disk filled: log, go on
                print(traceback.format_exc(), file=sys.stderr, flush=True)
                self._log(event="error", message=f"{type(exc).__name__}: {exc}; retrying in {o.rescan_s:g} s")
                if o.once:
                    self.failures += 1
                    return
                self.wake.wait(o.rescan_s)
                continue
            if self.pool is not None and time.monotonic() - self.pool_used > POOL_IDLE_S:
                self.pool.close()  # an idle service should not hold a worker per core
                self.pool = None
            if o.once and not busy and (not waiting or time.monotonic() > deadline):
                if waiting:
                    self._log(event="notice", message="files still being written were left in the inbox")
                return
            self.wake.wait(o.settle_s if (waiting or busy) else o.rescan_s)

    def _pass(self) -> tuple[bool, bool]:
        """One look at the folders: finish old claims, then take every settled file. -> (busy, waiting)"""
        if self._resume_claims():
            return True, False
        waiting = False
        for path, reseller in self._candidates():
            if self.stopping:
                break
            state = self._settled(path)
            if state == "gone":
                continue
            if state == "changing":
                waiting = True
                continue
            claim = self._claim(path, reseller)
            if claim is not None and self._process(claim) == "busy":
                return True, waiting
        return False, waiting

    def _resume_claims(self) -> bool:
        """Claims left by a watcher that stopped part-way (killed, power cut): run them again first."""
        for path in sorted(self.opts.processing.glob("*/*/*")):
            if self.stopping:
                return False
            if not path.is_file() or ignored(path.name):
                continue
            reseller, period = path.parent.parent.name, path.parent.name
            if self._process(Claim(path, reseller, period, "claimed before a restart")) == "busy":
                return True
        return False

    def _candidates(self):
        """Files in the inbox, oldest first; misplaced files are failed (with a reason), never ignored."""
        inbox = self.opts.inbox
        found = []
        for entry in inbox.iterdir():
            if ignored(entry.name):
                continue
            if entry.is_file():
                found.append((entry, ""))
            elif entry.is_dir():
                try:
                    inside = list(entry.iterdir())
                except OSError:  # removed or made unreadable while we looked: next pass
                    continue
                for f in inside:
                    if f.is_file() and not ignored(f.name):
                        found.append((f, entry.name))
                    elif f.is_dir() and not ignored(f.name):
                        self._report_once(f, "ignored", "sub-folders of a reseller folder are not read")
        stamped = []
        for f, reseller in found:
            try:
                stamped.append((f.stat().st_mtime_ns, str(f), f, reseller))
            except FileNotFoundError:
                continue
        return [(f, reseller) for _, _, f, reseller in sorted(stamped)]

    def _settled(self, path: Path) -> str:
        """'ready' once size and modification time have stayed the same for settle_s; else 'changing'."""
        try:
            st = path.stat()
        except FileNotFoundError:
            self.seen.pop(path, None)
            return "gone"
        now = time.monotonic()
        prev = self.seen.get(path)
        if prev is None or (prev.size, prev.mtime_ns) != (st.st_size, st.st_mtime_ns):
            self.seen[path] = _Seen(st.st_size, st.st_mtime_ns, now)
            return "changing"
        return "ready" if now - prev.since >= self.opts.settle_s else "changing"

    def _claim(self, path: Path, reseller: str) -> Claim | None:
        """Move the file into processing/<reseller>/<period>/ (one atomic rename), or fail it."""
        self.seen.pop(path, None)
        started = time.monotonic()
        reason = None
        if not reseller:
            reason = (f"rosters go in a folder named after the reseller: {self.opts.inbox}/<reseller>/{path.name}; "
                      f"this file was dropped in the inbox itself")
            reseller = "_inbox"
        elif not SAFE_NAME.match(reseller):
            reason = (f"the reseller folder name {reseller!r} can only use letters, digits, '.', '_' and '-' "
                      f"(it names the output folder)")
            reseller = "_unsafe"
        elif not path.name.lower().endswith(ROSTER_SUFFIXES):
            reason = "only Excel workbooks (.xlsx) are billed; save the roster as .xlsx and drop it again"
        period, source = None, "file name"
        if reason is None:
            try:
                period = period_from_name(path.name)
            except InputError as exc:
                reason = str(exc)
            if period is None and reason is None:
                period, source = resolve_default_period(self.opts.default_period, dt.date.today()), \
                    f"default ({self.opts.default_period})"
        if reason is not None:
            self._fail_unclaimed(path, reseller, reason, started)
            return None
        target = self.opts.processing / reseller / period / path.name
        if target.exists():
            self._report_once(path, "waiting", f"{target} is still being processed")
            return None
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            durable_rename(path, target)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._report_once(path, "error", f"cannot take the file: {exc}")
            return None
        _fault_point("claimed")
        return Claim(target, reseller, period, source)

    # -- one file -----------------------------------------------------------------------------------
    def _process(self, claim: Claim) -> str:
        from .pipeline import Conflict, RunOptions, run

        o = self.opts
        started_at = dt.datetime.now().astimezone().isoformat(timespec="seconds")
        t0 = time.monotonic()
        record = {"event": "file", "started": started_at, "reseller": claim.reseller, "file": claim.name,
                  "period": claim.period, "period_from": claim.period_source}
        try:
            data = claim.path.read_bytes()
        except OSError as exc:
            return self._finish_failed(claim, record, t0, f"the file cannot be read: {exc}", [])
        record["sha256"] = hashlib.sha256(data).hexdigest()
        attempt = _count_attempt(claim)
        if attempt > MAX_ATTEMPTS:
            return self._finish_failed(claim, record, t0, (
                f"billing this file was interrupted {attempt - 1} times (the watcher crashed or was killed "
                f"while it was in hand), so it was set aside to let the other files be billed. The log "
                f"(stderr) says what happened. If the interruptions were only restarts, drop it again: "
                f"anything already issued for it is recognised and not issued twice."), [])
        out_dir = o.out / claim.reseller / claim.period
        ledger_path = o.out / "ledger.sqlite"
        earlier = runs_of_input(ledger_path, record["sha256"], claim.period)
        if self.pool is None:
            from .render.pdf import RenderPool

            self.pool = RenderPool(o.templates, o.workers)
        opts = RunOptions(roster=claim.path, period=claim.period, out=out_dir, pricebook=o.pricebook,
                          ledger=ledger_path, templates=o.templates, workers=o.workers, progress=False,
                          wait_s=o.wait_s, owner=claim.reseller)
        self.pool_used = time.monotonic()
        try:
            report = run(opts, self.pool)
        except LedgerBusy as exc:
            record.update(result="busy", message=str(exc), duration_s=round(time.monotonic() - t0, 3))
            self._log(**record)
            return "busy"
        except Conflict as exc:
            return self._finish_failed(claim, record, t0, str(exc).split(": ", 1)[-1] + (
                "\n\nA roster may change invoices already issued only through the finance clerk: "
                "`invoicer run ROSTER --period P --out DIR --ledger LEDGER --amend` cancels them with credit "
                "notes and issues replacements."), [],
                "If the change is intended, ask the finance clerk to amend; if not, correct the roster and drop "
                "it again.")
        except InvoicerError as exc:
            return self._finish_failed(claim, record, t0, str(exc), [])
        except Exception as exc:  # a bug must not stop the watcher; the file and the traceback are kept
            print(traceback.format_exc(), file=sys.stderr, flush=True)
            return self._finish_failed(claim, record, t0, f"internal error ({type(exc).__name__}: {exc}); "
                                       f"the file was not billed. Please report this to the invoicer's "
                                       f"maintainers with the file.", [])
        record.update(invoices_new=len(report.plan.new), invoices_unchanged=len(report.plan.unchanged),
                      documents_issued=len(report.issued), rejected_rows=len(report.rejects),
                      total=plain_yuan(report.totals_fen), out=str(out_dir))
        if report.rejects and report.accounts == 0:
            return self._finish_failed(claim, record, t0, "every customer row was rejected, so nothing could "
                                       "be billed", report.rejects)
        if earlier and not report.issued:
            record["result"] = "duplicate"
            record["same_as_run"] = earlier[0]
        else:
            record["result"] = "rejects" if report.rejects else "billed"
        dest = _free_name(o.processed / claim.reseller / claim.period, claim.name)
        if report.rejects:
            atomic_write(dest.with_name(dest.name + ".rejects.txt"),
                         _rejects_text(claim, report.rejects).encode())
        _fault_point("before_move")
        durable_rename(claim.path, dest)
        _attempts_file(claim).unlink(missing_ok=True)
        record.update(moved_to=str(dest), duration_s=round(time.monotonic() - t0, 3))
        self._log(**record)
        return record["result"]

    def _finish_failed(self, claim: Claim, record: dict, t0: float, reason: str, rejects: list[Reject],
                       advice: str = "Fix the workbook and drop it in the inbox again.") -> str:
        reason = reason.replace(str(claim.path), claim.name)  # the reseller knows the name, not our folders
        dest = _free_name(self.opts.failed / claim.reseller, claim.name)
        atomic_write(dest.with_name(dest.name + ".error.txt"), _error_text(claim, reason, rejects, advice).encode())
        durable_rename(claim.path, dest)
        _attempts_file(claim).unlink(missing_ok=True)
        self.failures += 1
        record.update(result="failed", reason=reason.splitlines()[0], rejected_rows=len(rejects),
                      moved_to=str(dest), duration_s=round(time.monotonic() - t0, 3))
        self._log(**record)
        return "failed"

    def _fail_unclaimed(self, path: Path, reseller: str, reason: str, started: float) -> None:
        claim = Claim(path, reseller, "", "")
        record = {"event": "file", "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                  "reseller": reseller, "file": path.name, "period": None}
        try:
            self._finish_failed(claim, record, started, reason, [], "Drop it again as described above.")
        except FileNotFoundError:
            pass

    # -- logging ------------------------------------------------------------------------------------
    def _log(self, **fields) -> None:
        fields = {"ts": dt.datetime.now().astimezone().isoformat(timespec="milliseconds"), **fields}
        print(json.dumps(fields, ensure_ascii=False), file=self.log_to, flush=True)

    def _report_once(self, path: Path, event: str, message: str) -> None:
        if (path, event) not in self.reported:
            self.reported.add((path, event))
            self._log(event=event, file=str(path), message=message)


def _attempts_file(claim: Claim) -> Path:
    return claim.path.with_name(f".{claim.name}.attempts")  # hidden: never taken for a roster


def _count_attempt(claim: Claim) -> int:
    """How many times billing this claim has started, this time included: a file that keeps killing the
    watcher (a crash in a library, memory) is set aside after MAX_ATTEMPTS instead of blocking the inbox."""
    marker = _attempts_file(claim)
    try:
        n = int(marker.read_text().strip() or 0) + 1
    except (FileNotFoundError, ValueError):
        n = 1
    atomic_write(marker, f"{n}\n".encode())
    return n


def _free_name(folder: Path, name: str) -> Path:
    """folder/name, or folder/stem.2.xlsx, .3 ... when an earlier file of that name is already there."""
    folder.mkdir(parents=True, exist_ok=True)
    path, n = folder / name, 1
    while path.exists():
        n += 1
        path = folder / f"{Path(name).stem}.{n}{Path(name).suffix}"
    return path


def _fault_point(name: str) -> None:
    from .pipeline import _fault_point as fault

    fault(name)


def _reject_lines(rejects: list[Reject]) -> list[str]:
    return [f"  - sheet '{r.sheet}', row {r.row}, column {r.column}, value {r.value!r}: {r.reason}" for r in rejects]


def _error_text(claim: Claim, reason: str, rejects: list[Reject], advice: str) -> str:
    lines = [f"{claim.name} was NOT billed.", "", "Why:", *("  " + x for x in reason.splitlines())]
    if rejects:
        lines += ["", f"Rejected rows ({len(rejects)}):", *_reject_lines(rejects)]
    folder = claim.reseller if SAFE_NAME.match(claim.reseller) else "-"
    lines += ["", advice,
              f"(reseller folder: {folder}; billing month: {claim.period or '-'}"
              f"{' from the ' + claim.period_source if claim.period else ''})", ""]
    return "\n".join(lines)


def _rejects_text(claim: Claim, rejects: list[Reject]) -> str:
    lines = [f"{claim.name} was billed for {claim.period}, except the customers of these {len(rejects)} "
             f"rejected row(s), which were left out:", *_reject_lines(rejects), "",
             "Correct them and drop the whole roster again: customers already invoiced are recognised and "
             "not invoiced twice.", ""]
    return "\n".join(lines)
