"""The watcher: the event loop, the life of one claimed file, and the PDF workers' lifetime.

Life of a dropped file (all folders are siblings of the inbox, so every move is an atomic rename):

    inbox/<reseller>/<name>.xlsx                      dropped; taken once its size and time settle
    processing/<reseller>/<period>/<name>.xlsx        claimed (the period is fixed at the claim)
    processed/<reseller>/<period>/<name>.xlsx         billed (+ <name>.rejects.txt when rows were rejected)
    failed/<reseller>/<name>.xlsx + .error.txt        not billed, and why, in plain words

Exactly once: a file is claimed by one rename into processing/ before anything is billed (claim.py says how
the inbox is looked at without trusting it). A watcher that is killed finds its claim there when it starts
again and runs it again; the ledger makes that re-run idempotent (a run killed before its COMMIT left
nothing; one killed after it issues nothing new, re-publishes the files and is logged ``billed`` with
``resumed``). A claim always ends in processed/ or failed/: every step after the claim rename is guarded,
and attempt counts live in processing/.state/ under hash names (a file's own name may be too long to extend).
One watcher per inbox: a lock file in processing/ refuses a second one.

The run is the same pipeline as ``invoicer run`` (``pipeline.run``) on the bytes read at the claim, with the
output folder OUTDIR/<reseller>/<period>/, one ledger OUTDIR/ledger.sqlite shared by every reseller and
period, and the reseller folder as the owner of the invoice prefixes it numbers in.

Logging: one JSON line per file on stdout, plus a line when the watcher starts and stops.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import signal
import stat
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import (
    EXIT_BUSY,
    EXIT_OK,
    EXIT_REJECTS,
    InputError,
    InvoicerError,
    LedgerBusy,
    PublishIncomplete,
    Reject,
)
from ..ledger import runs_of_input
from ..limits import Limits
from ..money import plain_yuan
from ..publish import SAFE_NAME, atomic_write, durable_rename, sweep_stale_temporaries
from . import texts
from .claim import Refused, entries, move, open_folder, read_claimed, refusal
from .names import (
    NAME_MAX,
    ROSTER_SUFFIXES,
    fit,
    ignored,
    period_from_name,
    prefix_from_folder,
    resolve_default_period,
    shown,
    too_far_ahead,
)

MAX_ATTEMPTS = 3  # a claim interrupted this many times is set aside in failed/
POOL_IDLE_S = 600.0  # PDF workers are closed after this long without a file (and made again when needed)
DEFAULT_MAX_MIB = Limits.file_mb  # the reader's file limit: a larger roster is refused from its size, unread
_PERIOD_FOLDER = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")  # as --default-period allows


@dataclass
class WatchOptions:
    """The watcher's folders and settings (``invoicer watch`` options; README "The drop folder")."""

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
    max_bytes: int = DEFAULT_MAX_MIB * 1024 * 1024

    def __post_init__(self):
        self.inbox = Path(self.inbox).resolve()
        self.out = Path(self.out).resolve()
        base = self.inbox.parent
        self.processing = Path(self.processing or base / "processing").resolve()
        self.processed = Path(self.processed or base / "processed").resolve()
        self.failed = Path(self.failed or base / "failed").resolve()


@dataclass
class Claim:
    """A file taken from the inbox: where it is now, whose it is and the billing month fixed at the claim."""

    path: Path  # processing/<reseller>/<period>/<name>
    reseller: str
    period: str
    period_source: str
    resumed: bool = False  # found in processing/ when the watcher started: a restart finishes it

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    since: float


class _Workers:
    """The PDF worker pool: made when the first file needs it, kept while files keep coming (its start-up
    is paid once), closed after POOL_IDLE_S idle and when the watcher stops."""

    def __init__(self, templates: Path | None, workers: int | None):
        self.templates, self.workers = templates, workers
        self.pool = None
        self.used = 0.0

    def get(self):
        if self.pool is None:
            from ..render.pdf import RenderPool

            self.pool = RenderPool(self.templates, self.workers)
        self.used = time.monotonic()
        return self.pool

    def close_if_idle(self) -> None:
        if self.pool is not None and time.monotonic() - self.used > POOL_IDLE_S:
            self.close()  # an idle service should not hold a worker per core

    def close(self) -> None:
        if self.pool is not None:
            pool, self.pool = self.pool, None
            pool.close()


@dataclass
class Watcher:
    """The drop-folder service: ``Watcher(WatchOptions(inbox, out)).serve()``."""

    opts: WatchOptions
    log_to: object = field(default_factory=lambda: sys.stdout)  # the stdout of when it is made

    def __post_init__(self):
        self.stopping = False
        self.wake = threading.Event()
        self.seen: dict[tuple[str, str], _Seen] = {}
        self.reported: set[tuple[str, str, str]] = set()
        self.stuck: set[Path] = set()  # claims that could be moved neither on nor aside: skipped until restart
        self.workers = _Workers(self.opts.templates, self.opts.workers)
        self.failures = 0
        self.mode = "scan"  # or "events" (inotify through watchdog) or "polling"

    # -- entry point --------------------------------------------------------------------------------
    def serve(self) -> int:
        """Watch the inbox until SIGTERM/SIGINT (or, with ``once``, until what is there has been handled).

        In: the options' folders (made if missing, except the inbox). Out: the exit code: 0; with ``once``
        1 when a file failed; 4 (EXIT_BUSY) when another watcher holds processing/.watch.lock. Refused with
        InputError: no inbox, or processing/ on another file system than the inbox (claims are renames).
        One JSON line per file goes to ``log_to``; tracebacks of unexpected errors go to stderr, and the file
        in hand then goes to failed/ instead of stopping the watcher."""
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
            self.workers.close()
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
        from watchdog.observers.polling import PollingObserverVFS

        wake = self.wake

        class Wake(FileSystemEventHandler):
            def on_any_event(self, event):
                wake.set()

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
        # lstat, not stat: the default poller follows links, so a link to / or a loop in a reseller folder
        # would have it walk the whole file system (or forever) before the loop could set the link aside
        observer = PollingObserverVFS(os.lstat, os.scandir, polling_interval=max(0.5, self.opts.settle_s / 2))
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
            self.workers.close_if_idle()
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
        candidates = self._candidates()
        present = {(reseller, name) for reseller, name, _ in candidates}
        self.seen = {key: seen for key, seen in self.seen.items() if key in present}  # forget what went away
        for reseller, name, st in candidates:
            if self.stopping:
                break
            state = self._settled(reseller, name, st)
            if state == "changing":
                waiting = True
                continue
            claim = self._claim(reseller, name)
            if claim is not None and self._process(claim) == "busy":
                return True, waiting
        return False, waiting

    def _resume_claims(self) -> bool:
        """Claims left by a watcher that stopped part-way (killed, power cut): run them again first.
        -> True when the ledger was busy (the rest waits for the next pass)."""
        root = self.opts.processing
        for reseller in sorted(os.listdir(root)):
            if not SAFE_NAME.match(reseller) or not (root / reseller).is_dir() or (root / reseller).is_symlink():
                continue  # .watch.lock, .state/ and our temporary files
            for period in sorted(os.listdir(root / reseller)):
                folder = root / reseller / period
                if not _PERIOD_FOLDER.match(period) or folder.is_symlink() or not folder.is_dir():
                    continue
                for name in sorted(os.listdir(folder)):
                    path = folder / name
                    if self.stopping:
                        return False
                    if ignored(name) or path in self.stuck:
                        continue
                    claim = Claim(path, reseller, period, "claimed before a restart", resumed=True)
                    if self._process(claim) == "busy":
                        return True
        return False

    def _candidates(self) -> list[tuple[str, str, os.stat_result]]:
        """Regular files waiting in the inbox, oldest first, as (reseller folder or "", name, lstat).
        Everything else is moved aside to failed/ at once with a reason (links, hard links, FIFOs, sockets,
        devices, sub-folders, a reseller folder that is a link) and never opened or followed."""
        found = []
        inbox_fd = open_folder(self.opts.inbox)
        try:
            for name, st in entries(inbox_fd):
                if ignored(name):
                    continue
                if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
                    found.append((st.st_mtime_ns, "", name, st))
                elif not stat.S_ISDIR(st.st_mode):
                    why = refusal(st, name, inbox_fd)
                    if stat.S_ISLNK(st.st_mode) and os.path.isdir(self.opts.inbox / name):
                        why = texts.FOLDER_IS_LINK.format(name=shown(name))
                    self._set_aside(inbox_fd, name, "_inbox", why)
                elif not SAFE_NAME.match(name):
                    self._empty_unsafe_folder(inbox_fd, name)
                else:
                    found += self._folder_candidates(inbox_fd, name)
        finally:
            os.close(inbox_fd)
        return [(reseller, name, st) for _, reseller, name, st in sorted(found, key=lambda x: x[:3])]

    def _folder_candidates(self, inbox_fd: int, reseller: str) -> list:
        try:
            folder_fd = open_folder(reseller, inbox_fd)
        except OSError:  # removed, made unreadable or swapped for a link while we looked: next pass
            return []
        found = []
        try:
            for name, st in entries(folder_fd):
                if ignored(name):
                    continue
                why = refusal(st, name, folder_fd)
                if why is None:
                    found.append((st.st_mtime_ns, reseller, name, st))
                else:
                    self._set_aside(folder_fd, name, reseller, why)
        except OSError as exc:
            self._report_once(reseller, "", "error", f"the reseller folder cannot be read: {exc.strerror}")
        finally:
            os.close(folder_fd)
        return found

    def _empty_unsafe_folder(self, inbox_fd: int, folder: str) -> None:
        """A reseller folder whose name cannot name an output folder: its entries are failed, with why."""
        try:
            folder_fd = open_folder(folder, inbox_fd)
        except OSError:
            return
        try:
            for name, _ in entries(folder_fd):
                if not ignored(name):
                    self._set_aside(folder_fd, name, "_unsafe", texts.UNSAFE_FOLDER.format(name=repr(shown(folder))))
        finally:
            os.close(folder_fd)

    def _settled(self, reseller: str, name: str, st: os.stat_result) -> str:
        """'ready' once size and modification time have stayed the same for settle_s; else 'changing'."""
        now = time.monotonic()
        key = (reseller, name)
        prev = self.seen.get(key)
        if prev is None or (prev.size, prev.mtime_ns) != (st.st_size, st.st_mtime_ns):
            self.seen[key] = _Seen(st.st_size, st.st_mtime_ns, now)
            return "changing"
        return "ready" if now - prev.since >= self.opts.settle_s else "changing"

    def _claim(self, reseller: str, name: str) -> Claim | None:
        """Move the file into processing/<reseller>/<period>/ (one atomic rename of the entry in the reseller
        folder itself), or move it aside to failed/ with a reason."""
        self.seen.pop((reseller, name), None)
        reason = None
        if not reseller:
            reason = texts.NOT_IN_A_FOLDER.format(inbox=self.opts.inbox, name=shown(name))
        elif reseller.casefold().startswith("ledger.sqlite"):  # OUT/<reseller>/ would be the shared ledger
            reason = (f"the reseller folder name {shown(reseller)} is reserved (the shared ledger's file in the "
                      f"output folder has it); rename the folder")
        elif not name.lower().endswith(ROSTER_SUFFIXES):
            reason = texts.NOT_A_WORKBOOK
        period, source = None, "file name"
        if reason is None:
            try:
                period = period_from_name(name)
            except InputError as exc:
                reason = str(exc)
            if period is not None and reason is None:
                reason = too_far_ahead(period, dt.date.today())
            if period is None and reason is None:
                period, source = resolve_default_period(self.opts.default_period, dt.date.today()), \
                    f"default ({self.opts.default_period})"
        inbox_fd = open_folder(self.opts.inbox)
        try:
            try:
                folder_fd = open_folder(reseller, inbox_fd) if reseller else os.dup(inbox_fd)
            except OSError:  # the folder was removed or swapped for a link: the next pass sees what it is now
                return None
            try:
                if reason is not None:
                    self._set_aside(folder_fd, name, reseller or "_inbox", reason, texts.DROP_AGAIN)
                    return None
                target = self.opts.processing / reseller / period / name
                if os.path.lexists(target):
                    self._report_once(reseller, name, "waiting", f"{shown(str(target))} is still being processed")
                    return None
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    move(folder_fd, name, target)
                except FileNotFoundError:
                    return None
                except OSError as exc:
                    self._report_once(reseller, name, "error", f"cannot take the file: {exc.strerror}")
                    return None
            finally:
                os.close(folder_fd)
        finally:
            os.close(inbox_fd)
        _fault_point("claimed")
        return Claim(target, reseller, period, source)

    # -- one file -----------------------------------------------------------------------------------
    def _process(self, claim: Claim) -> str:
        """Bill one claim; it always ends in processed/ or failed/ (or, if even that move fails, is skipped
        until a restart), whatever goes wrong. -> the result logged, or "busy"."""
        t0 = time.monotonic()
        record = {"event": "file", "started": _now(), "reseller": claim.reseller, "file": shown(claim.name),
                  "period": claim.period, "period_from": claim.period_source}
        if claim.resumed:
            record["resumed"] = True
        try:
            return self._bill(claim, record, t0)
        except Refused as exc:
            return self._finish_failed(claim, record, t0, str(exc), [])
        except Exception as exc:  # a bug must not stop the watcher; the file and the traceback are kept
            print(traceback.format_exc(), file=sys.stderr, flush=True)
            return self._finish_failed(claim, record, t0, texts.INTERNAL.format(error=f"{type(exc).__name__}: "
                                                                                      f"{exc}"), [])

    def _bill(self, claim: Claim, record: dict, t0: float) -> str:
        from ..pipeline import Conflict, RunOptions, run

        o = self.opts
        data = read_claimed(claim.path, o.max_bytes)
        digest = hashlib.sha256(data).hexdigest()
        record["sha256"] = digest
        out_dir = o.out / claim.reseller / claim.period
        ledger_path = o.out / "ledger.sqlite"
        state = self._load_state(claim)
        if state.get("sha256") != digest:  # runs of this input that were there before this claim was first tried
            state = {"sha256": digest, "attempts": state.get("attempts", 0),
                     "runs_before": runs_of_input(ledger_path, digest, claim.period)}
        attempt = state["attempts"] + 1
        if attempt > MAX_ATTEMPTS:
            return self._finish_failed(claim, record, t0, texts.INTERRUPTED.format(times=attempt - 1), [])
        self._save_state(claim, {**state, "attempts": attempt})
        runs_now = runs_of_input(ledger_path, digest, claim.period)
        opts = RunOptions(roster=claim.path, period=claim.period, out=out_dir, pricebook=o.pricebook,
                          ledger=ledger_path, templates=o.templates, workers=o.workers, progress=False,
                          wait_s=o.wait_s, owner=claim.reseller, roster_bytes=data, roster_name=shown(claim.name),
                          default_prefix=prefix_from_folder(claim.reseller))
        try:
            report = run(opts, self.workers.get())
        except LedgerBusy as exc:  # another run holds the ledger: not an interrupted attempt
            self._save_state(claim, state)
            record.update(result="busy", message=str(exc), duration_s=round(time.monotonic() - t0, 3))
            self._log(**record)
            return "busy"
        except PublishIncomplete as exc:  # issued, but a file could not be written (a full disk): not the
            # file's fault, so not an attempt; the claim stays and the next pass publishes the rest
            self._save_state(claim, state)
            self.failures += 1
            record.update(result="unpublished", message=str(exc), duration_s=round(time.monotonic() - t0, 3))
            self._log(**record)
            return "unpublished"
        except Conflict as exc:
            differences = str(exc).replace(f"{claim.path}: ", "", 1)
            return self._finish_failed(claim, record, t0, differences + texts.CONFLICT_ADVICE, [], texts.CONFLICT_NEXT)
        except InvoicerError as exc:
            return self._finish_failed(claim, record, t0, str(exc), [])
        # -- the ledger has committed (or had nothing to do): nothing below may fail the file ---------------
        record.update(invoices_new=len(report.plan.new), invoices_unchanged=len(report.plan.unchanged),
                      documents_issued=len(report.issued), rejected_rows=len(report.rejects),
                      total=plain_yuan(report.totals_fen), out=str(out_dir))
        if report.rejects and report.accounts == 0:
            return self._finish_failed(claim, record, t0, texts.ALL_REJECTED, report.rejects)
        before = set(state["runs_before"])
        by_earlier_attempt = [r for r in runs_now if r not in before]
        if report.issued:
            record["result"] = "rejects" if report.rejects else "billed"
        elif by_earlier_attempt:  # a watcher killed after COMMIT: this file was billed then
            record.update(result="rejects" if report.rejects else "billed", resumed=True,
                          billed_by_run=by_earlier_attempt[0])
        elif before:
            record.update(result="duplicate", same_as_run=min(before))
        else:
            record["result"] = "rejects" if report.rejects else "billed"
        return self._finish(claim, record, t0, o.processed / claim.reseller / claim.period,
                            texts.rejects_text(claim.name, claim.period, report.rejects) if report.rejects else None,
                            ".rejects.txt")

    def _finish_failed(self, claim: Claim, record: dict, t0: float, reason: str, rejects: list[Reject],
                       advice: str = texts.REFILE) -> str:
        reason = reason.replace(str(claim.path), shown(claim.name))  # the reseller knows the name, not our folders
        self.failures += 1
        record.update(result="failed", reason=reason.splitlines()[0], rejected_rows=len(rejects))
        text = texts.error_text(claim.name, claim.reseller, claim.period, claim.period_source, reason, rejects,
                                advice)
        return self._finish(claim, record, t0, self.opts.failed / claim.reseller, text, ".error.txt")

    def _finish(self, claim: Claim, record: dict, t0: float, folder: Path, text: str | None, suffix: str) -> str:
        """Move the claim to ``folder`` with its text beside it, and log the record. Never raises: a text that
        cannot be written is logged; a claim that cannot be moved is logged and skipped until a restart."""
        try:
            dest = _free_name(folder, claim.name)
            if text is not None:
                try:
                    atomic_write(folder / fit(dest.name, suffix), text.encode("utf-8", "backslashreplace"))
                except OSError as exc:
                    self._log(event="error", file=shown(claim.name), message=f"cannot write its {suffix}: {exc}")
            _fault_point("before_move")
            durable_rename(claim.path, dest)
        except OSError as exc:
            self.stuck.add(claim.path)
            record.update(result="error", message=f"cannot move it out of processing/ ({exc}); it stays there "
                                                  f"and is tried again when the watcher restarts")
            self.failures += 1
        else:
            self._drop_state(claim)
            record["moved_to"] = shown(str(dest))
        record["duration_s"] = round(time.monotonic() - t0, 3)
        self._log(**record)
        return record["result"]

    def _set_aside(self, folder_fd: int, name: str, reseller: str, reason: str,
                   advice: str = "Upload the workbook itself, as a plain file, in your reseller folder.") -> None:
        """Move an entry that is not billed from the inbox to failed/<reseller>/ with its .error.txt; the entry
        itself moves (a link stays a link; nothing it points to is touched)."""
        t0 = time.monotonic()
        record = {"event": "file", "started": _now(), "reseller": shown(reseller), "file": shown(name),
                  "period": None}
        folder = self.opts.failed / reseller
        try:
            dest = _free_name(folder, name)
            move(folder_fd, name, dest)
        except FileNotFoundError:
            return
        except OSError as exc:
            self._report_once(reseller, name, "error", f"cannot move it aside: {exc.strerror}")
            return
        self.failures += 1
        text = texts.error_text(name, reseller, "", "", reason, [], advice)
        try:
            atomic_write(folder / fit(dest.name, ".error.txt"), text.encode("utf-8", "backslashreplace"))
        except OSError as exc:
            self._log(event="error", file=shown(name), message=f"cannot write its .error.txt: {exc}")
        record.update(result="failed", reason=reason.splitlines()[0], rejected_rows=0, moved_to=shown(str(dest)),
                      duration_s=round(time.monotonic() - t0, 3))
        self._log(**record)

    # -- attempt state: processing/.state/<sha256 of the claim's place>.json ---------------------------
    def _state_path(self, claim: Claim) -> Path:
        where = os.fsencode(f"{claim.reseller}/{claim.period}/{claim.name}")
        return self.opts.processing / ".state" / f"{hashlib.sha256(where).hexdigest()}.json"

    def _load_state(self, claim: Claim) -> dict:
        try:
            state = json.loads(self._state_path(claim).read_text())
            return state if isinstance(state, dict) and isinstance(state.get("attempts"), int) else {}
        except (OSError, ValueError):
            return {}

    def _save_state(self, claim: Claim, state: dict) -> None:
        atomic_write(self._state_path(claim), json.dumps({**state, "file": shown(claim.name)}).encode())

    def _drop_state(self, claim: Claim) -> None:
        try:
            self._state_path(claim).unlink(missing_ok=True)
        except OSError:
            pass

    # -- logging ------------------------------------------------------------------------------------
    def _log(self, **fields) -> None:
        fields = {"ts": dt.datetime.now().astimezone().isoformat(timespec="milliseconds"), **fields}
        line = json.dumps(fields, ensure_ascii=False).encode("utf-8", "backslashreplace").decode("utf-8")
        print(line, file=self.log_to, flush=True)

    def _report_once(self, reseller: str, name: str, event: str, message: str) -> None:
        if (reseller, name, event) not in self.reported:
            self.reported.add((reseller, name, event))
            self._log(event=event, file=shown(f"{reseller}/{name}" if reseller else name), message=message)


def _now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _free_name(folder: Path, name: str) -> Path:
    """folder/name, or folder/stem.2.xlsx, .3 ... when an entry of that name (even a link) is already there;
    names too long to extend are shortened (names.fit)."""
    folder.mkdir(parents=True, exist_ok=True)
    path, n = folder / fit(name, "", NAME_MAX), 1
    stem, ext = os.path.splitext(name)
    while os.path.lexists(path):
        n += 1
        path = folder / fit(f"{stem}.{n}{ext}", "", NAME_MAX)
    return path


def _fault_point(name: str) -> None:
    from ..pipeline import _fault_point as fault

    fault(name)
