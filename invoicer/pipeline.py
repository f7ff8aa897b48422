"""The only place that sequences the stages:

    read -> validate -> price -> document -> ledger plan (read, no lock: compare, predict numbers)
         -> render (streamed to a staging folder) -> ledger record (write lock: check, insert, commit)
         -> publish (move staged files into place, restore missing ones, summary, manifest)

Each stage returns values (frames, documents, Reject records); only ``publish`` (publish.py) writes the
output files and only the ledger stage writes the database. See README.md for the output layout.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pandas as pd

from . import documents as docs_mod
from . import pricebook as pricebook_mod
from .errors import (
    EXIT_CONFLICT,
    EXIT_OK,
    EXIT_REJECTS,
    InvoicerError,
    LedgerBusy,
    PublishIncomplete,
    Reject,
)
from .ledger import OPERATOR, Issued, IssuedRef, Ledger, PrefixTaken  # noqa: F401 (PrefixTaken: re-export)
from .money import plain_yuan
from .pricing.engine import price_period
from .publish import (  # noqa: F401  (file_name_for, tool_version, LEDGER_NAME: their old home re-exports them)
    LEDGER_NAME,
    StagedFile,
    Staging,
    claim_folder,
    file_name_for,
    publish_period,
    sha256,
    tool_version,
)
from .roster import read_roster
from .spill import Indexed
from .validate import validate

if TYPE_CHECKING:
    from .render.pdf import RenderPool

class Conflict(InvoicerError):
    """The input changes invoices already issued for the period; --amend is needed."""

    exit_code = EXIT_CONFLICT


@dataclass
class RunOptions:
    roster: Path
    period: str
    out: Path
    pricebook: Path | None = None
    ledger: Path | None = None
    templates: Path | None = None
    amend: bool = False
    dry_run: bool = False
    workers: int | None = None
    progress: bool | None = None
    wait_s: float = 30.0
    executor: str | None = None  # None or "local": this machine's processes; "dask:tcp://HOST:PORT": a cluster
    # -- drop folder ----------------------------------------------------------------------------------
    # who is billing: the watcher passes the reseller folder's name; None is the clerk's own run (OPERATOR).
    # Ledger.claim_prefix says who may number in which prefix.
    owner: str | None = None
    # the bytes the watcher read from the claimed file's own descriptor (priced and hashed instead of
    # reading ``roster`` again), and the name to show for them
    roster_bytes: bytes | None = None
    roster_name: str | None = None
    # the invoice prefix for a roster whose reseller sheet names none (the watcher derives it from the
    # folder's name); None: the price book's default_prefix
    default_prefix: str | None = None


class NewInvoice(NamedTuple):
    """An invoice a run would issue for the first time: whose and how much (the document itself is built
    again from the priced frames when it is numbered, rendered and recorded: ``IssueList``)."""

    customer_id: str
    total_fen: int


@dataclass
class Plan:
    """What a run would do, per customer: new, unchanged, changed (needs --amend) or withdrawn. Holds no
    new document (a month of 100,000 is planned in a chunk's worth of memory), and the new and unchanged
    invoices' entries are on disk (``spill.SpilledList``: sequences read back in customer order, with
    ``len``); a changed invoice's new version and a withdrawn one's record are kept (they are few, and their
    differences are listed)."""

    new: Sequence[NewInvoice] = field(default_factory=list)
    unchanged: Sequence[IssuedRef] = field(default_factory=list)
    changed: list[tuple[dict, Issued]] = field(default_factory=list)
    withdrawn: list[Issued] = field(default_factory=list)
    held: dict[str, str] = field(default_factory=dict)  # folded customer id -> why its invoice is held (_held)
    _scratch: object = field(default=None, repr=False, compare=False)  # holds ``new`` and ``unchanged``

    def differences(self) -> list[str]:
        out = []
        for new, old in self.changed:
            out.append(f"{old.customer_id}: invoice {old.number} " + "; ".join(describe_change(old.content, new)))
        for old in self.withdrawn:
            why = self.held.get(old.customer_id.casefold())
            out.append(f"{old.customer_id}: invoice {old.number} would no longer be issued "
                       + (f"({why}: fix that row, or amend to cancel it)" if why else "(no billable line now)"))
        return out


def describe_change(old: dict, new: dict) -> list[str]:
    diffs = []
    if old["total_fen"] != new["total_fen"]:
        diffs.append(f"total {plain_yuan(old['total_fen'])} -> {plain_yuan(new['total_fen'])}")
    old_lines = {x["explanation"] for x in old["lines"]}
    new_lines = {x["explanation"] for x in new["lines"]}
    diffs += [f"line removed: {x}" for x in sorted(old_lines - new_lines)]
    diffs += [f"line added: {x}" for x in sorted(new_lines - old_lines)]
    for key in ("customer", "seller"):
        for k in sorted(set(old[key]) | set(new[key])):
            if old[key].get(k) != new[key].get(k):
                diffs.append(f"{key} {k}: {old[key].get(k)!r} -> {new[key].get(k)!r}")
    return diffs or ["content differs"]


@dataclass
class RunReport:
    period: str
    out: Path
    prefix: str
    plan: Plan
    rejects: list[Reject]
    warnings: list[str]
    issued: list[str]
    written: list[str]
    dry_run: bool
    totals_fen: int = 0
    accounts: int = 0  # accounts billable this period (customers with no rejected row)

    @property
    def exit_code(self) -> int:
        return EXIT_REJECTS if self.rejects else EXIT_OK


@dataclass
class PricedRoster:
    """What a run keeps of its validated roster as a whole: the reseller block, the warnings (the e-fapiao
    export adds its own), and the e-fapiao columns of its valid customers (``buyers``: looked up one
    customer at a time in the stage)."""

    reseller: dict[str, str]
    warnings: list[str]
    buyers: object
    raw: object  # the RawRoster (its stage) and the price book, for ``customers``/``changes``
    book: object

    def _typed(self, sheet: str) -> pd.DataFrame:
        frames = [getattr(validate(part, self.book), sheet) for part in self.raw.partitions()]
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    @property
    def customers(self) -> pd.DataFrame:
        """validate's typed customers frame, whole: every partition validated again (for tests and small
        rosters; a run never reads it)."""
        return self._typed("customers")

    @property
    def changes(self) -> pd.DataFrame:
        return self._typed("changes")


@dataclass
class Priced:
    """Everything computed from one roster for one period, before the ledger is involved. The roster was
    validated and priced a partition of customers at a time (stage.py); the documents and accounts are read
    back from the partitions kept on disk whenever they are passed over."""

    roster: PricedRoster
    invoices: docs_mod.InvoiceSet  # built a chunk at a time whenever read (a sequence of invoice dicts)
    notices: docs_mod.NoticeSet
    accounts: docs_mod.AccountSet
    rejects: list[Reject]
    prefix: str
    input_sha256: str
    input_bytes: bytes
    input_name: str
    issue_date: str = ""  # the period's issue date (ISO): the last day of the month
    held: dict[str, str] = field(default_factory=dict)  # folded customer id -> "held: SHEET row N rejected (COLUMN)"
    stage: object = None  # the roster's stage (closed by ``close``)

    def close(self) -> None:
        """Delete the stage (its temporary file): nothing of the roster is read after this."""
        if self.stage is not None:
            self.stage.close()


def price_roster_bytes(data: bytes, name: str, book: pricebook_mod.PriceBook, period: str) -> Priced:
    from .roster import read_roster_bytes

    return _price(read_roster_bytes(data, name), book, period)


def price_roster(path: Path, book: pricebook_mod.PriceBook, period: str) -> Priced:
    return _price(read_roster(path), book, period)


def _reject_order(sheets: tuple[str, str]):
    return lambda r: (r.sheet != sheets[0], r.sheet, r.row)


def _price(raw, book, period, partition_rows: int | None = None) -> Priced:
    """Validate and price the roster a partition of customers at a time (stage.py: every rule compares rows
    of one customer only, so the result is the whole roster's), keeping each partition's priced frames in
    the stage for the later passes."""
    from .publish_fapiao import BUYER_COLUMNS, StagedBuyers

    try:
        sheets = (raw.sheet_titles["customers"], raw.sheet_titles["changes"])
        order = _reject_order(sheets)
        rejects: list[Reject] = []
        counts = []
        roster = issue_date = None
        for p, part in enumerate(raw.partitions(partition_rows)):
            roster = validate(part, book)
            result = price_period(roster.customers, roster.changes, book, period, sheets)
            issue_date = result.period_end
            part_rejects = sorted(roster.rejects + result.rejects, key=order)
            rejects += part_rejects
            blocked = roster.blocked | {r.customer_id for r in result.rejects if r.customer_id}
            lines = result.lines
            lines = lines.loc[~lines["customer_id"].isin(blocked)].sort_values("customer_id", kind="stable")
            by_id = docs_mod.first_valid_rows(roster.customers, (*docs_mod.SNAPSHOT_KEYS[1:], *BUYER_COLUMNS))
            accounts = result.accounts.copy()
            names = roster.customers.drop_duplicates("customer_id").set_index("customer_id")["name"]
            accounts["customer_name"] = accounts["customer_id"].map(names)
            held = _held(part_rejects)
            accounts["invoice_held"] = [held.get(c.casefold(), "") for c in accounts["customer_id"]]
            priced_part = docs_mod.PricedPart(lines.reset_index(drop=True), by_id, accounts, blocked)
            raw.stage.put_part(p, priced_part)
            raw.stage.put_buyers(zip(by_id.index.tolist(), zip(*(by_id[k].tolist() for k in BUYER_COLUMNS))))
            counts.append(docs_mod.part_counts(priced_part))
        rejects.sort(key=order)
        stage = raw.stage
        parts = docs_mod.Parts(stage.part, counts)
        args = (roster.reseller, book, period, issue_date)
        priced = Priced(PricedRoster(roster.reseller, raw.warnings + roster.warnings, StagedBuyers(stage), raw, book),
                      docs_mod.InvoiceSet(parts, *args), docs_mod.NoticeSet(parts, *args), docs_mod.AccountSet(parts),
                      rejects, roster.reseller["invoice_prefix"], raw.sha256, raw.data, Path(raw.path).name,
                      issue_date.isoformat(), _held(rejects), stage)
        raw.data = b""  # the run keeps the bytes as priced.input_bytes, let go once recorded
        return priced
    except BaseException:
        raw.stage.close()
        raise


def _held(rejects: list[Reject]) -> dict[str, str]:
    """Customer id, folded (ids are compared ignoring case: validate's blocked ids) -> why its invoice is held:
    the first rejected row of the id or of an id differing only in case (``rejects`` in sheet and row order).
    Folded, so the first row of a duplicated id (A1, then a1) says why it gets no invoice too."""
    return {r.customer_id.casefold(): f"held: {r.sheet} row {r.row} rejected ({r.column})" for r in reversed(rejects)
            if r.customer_id}


def plan_against(ledger: Ledger, prefix: str, period: str, invoices) -> Plan:
    """Compare the new invoices with the ones in force, set-based: the issued invoices' content hashes come
    from one indexed query (no snapshot parsed); only a changed or withdrawn invoice's snapshot is read, for
    its credit note and its difference listing. ``invoices`` is read once, in customer id order (an
    InvoiceSet builds them a chunk at a time), and merged with the invoices in force read by a cursor in the
    same order, so neither side is held: what is new or unchanged goes to the plan's scratch table."""
    from .spill import Scratch, SpilledList

    scratch = Scratch()
    plan = Plan(new=SpilledList(scratch, NewInvoice), unchanged=SpilledList(scratch, IssuedRef), _scratch=scratch)
    changed, withdrawn = [], []
    active = ledger.active_invoice_ref_stream(prefix, period)
    pending = next(active, None)  # the cursor's next row

    def in_force(cid: str | None) -> IssuedRef | None:
        """Advance the cursor to customer ``cid`` (None: to its end); the customers passed hold invoices no
        longer issued (withdrawn); returns ``cid``'s invoice in force (the newest), if any."""
        nonlocal pending
        while pending is not None and (cid is None or pending.customer_id <= cid):
            old = pending
            pending = next(active, None)
            while pending is not None and pending.customer_id == old.customer_id:
                old, pending = pending, next(active, None)
            if old.customer_id == cid:
                return old
            withdrawn.append(old)
        return None

    last = None
    for doc in invoices:
        cid = doc["customer"]["customer_id"]
        if last is not None and cid <= last:
            raise InvoicerError(f"internal error: the invoices came out of customer id order ({last!r}, then "
                                f"{cid!r}); nothing was issued")
        last = cid
        old = in_force(cid)
        if old is None:
            plan.new.append(NewInvoice(cid, doc["total_fen"]))
        elif old.content_sha256 == docs_mod.content_hash(doc):
            plan.unchanged.append(old)
        else:
            changed.append((doc, old))
    in_force(None)
    full = ledger.load([old for _, old in changed] + withdrawn)
    plan.changed = [(doc, old) for (doc, _), old in zip(changed, full)]
    plan.withdrawn = full[len(changed):]
    return plan


class IssueList:
    """What a run numbers and issues, in issue order: customer by customer (customer id order), a new
    invoice, or a credit note and its replacement, or a credit note alone, each numbered gaplessly
    (ledger.number_stream) from the series' next numbers read in the plan's read transaction; then the
    notices that are new or changed. Iterating yields ``(document, year, seq)`` (year and seq None for a
    notice), building the new invoices again from the priced frames on every pass (picked by a merge with
    the plan's new invoices, both in customer order) and the notices from ``priced.notices`` (one flag per
    notice says which), so a run renders and records a month of any size holding a chunk of documents, not
    the month."""

    def __init__(self, ledger: Ledger, priced: Priced, plan: Plan, period: str, digits: int):
        from .ledger import issue_year

        self.prefix, self.digits, self._priced = priced.prefix, digits, priced
        self._new = plan.new
        groups = []
        for new, old in plan.changed:
            credit = docs_mod.credit_note_for({**old.content, "number": old.number},
                                              dt.date.fromisoformat(new["issue_date"]))
            groups.append((old.customer_id, [credit, {**new, "replaces": old.number}]))
        for old in plan.withdrawn:
            issue = old.content["issue_date"]
            groups.append((old.customer_id, [docs_mod.credit_note_for({**old.content, "number": old.number},
                                                                      dt.date.fromisoformat(issue))]))
        self._amended = sorted(groups, key=lambda g: g[0])
        years = {issue_year(d) for _, g in self._amended for d in g}
        if self._new:
            years.add(int(priced.issue_date[:4]))
        self._starts = ledger.next_seqs(priced.prefix, years)
        self._notice_flags = _changed_notices(ledger, priced, period)  # one byte per notice: 1 = issue it
        self.notices = sum(self._notice_flags)  # how many notices are issued
        self.numbered = len(self._new) + sum(len(g) for _, g in self._amended)

    def __len__(self) -> int:
        return self.numbered + self.notices

    def _new_groups(self):
        if not self._new:
            return  # a re-run that issues nothing new builds no invoice again
        wanted = iter(self._new)
        want = next(wanted, None)
        for doc in self._priced.invoices:
            if want is None:
                return
            cid = doc["customer"]["customer_id"]
            if cid == want.customer_id:
                yield cid, [doc]
                want = next(wanted, None)
        if want is not None:
            raise InvoicerError(f"internal error: the new invoice of {want.customer_id!r} was not built again; "
                                f"nothing was issued")

    def __iter__(self):
        import heapq

        from .ledger import number_stream

        groups = heapq.merge(self._new_groups(), self._amended, key=lambda g: g[0])
        for doc in number_stream(self.prefix, groups, self.digits, self._starts):
            yield _clean(doc), doc["_year"], doc["_seq"]
        if self.notices:
            for flag, notice in zip(self._notice_flags, self._priced.notices):
                if flag:
                    yield _clean(notice), None, None


# A run renders without holding the ledger; if another run numbered in the same series meanwhile, the plan
# is made again and whatever changed is rendered again, this many times at most (then exit 4: busy).
MAX_ATTEMPTS = 5


def run(opts: RunOptions, pool: RenderPool | None = None) -> RunReport:
    """One run of the main job: price the roster, plan against the ledger, render what is new, record it,
    publish the period's folder. Returns the report (exit code 0, or 1 when rows were rejected).

    ``pool``: worker processes kept by a long-lived caller (the watcher); without one, a run renders with
    ``opts.executor`` (this machine's processes by default, or a Dask cluster).

    Optimistic numbering: the plan and the next numbers are read in a read transaction (no lock), every new
    document is rendered with its predicted number and streamed to a private staging folder (nothing held in
    memory, nothing locked: other runs and ``verify`` go on), and only then the write lock is taken to check
    that the series is as it was read (else plan and render again), record the documents and their PDF bytes,
    and commit; the staged files are then moved into place. A crash before the commit leaves only staging
    files (swept by the next run); after it, the next run restores missing files from the kept bytes.
    Raises Conflict (exit 3) when the input changes issued invoices without ``opts.amend``, PrefixTaken
    (exit 2) for another reseller folder's prefix, LedgerBusy (exit 4) when the ledger stays busy."""
    from .render.executor import parse_executor

    parse_executor(opts.executor)  # a malformed --executor is refused before any work
    from .render.pdf import (
        check_templates,  # templates are checked before anything is numbered
    )

    check_templates(opts.templates)
    book = pricebook_mod.load(opts.pricebook)
    # -- drop folder: the claimed bytes and the folder's default prefix --------------------------
    if opts.default_prefix:
        book = dataclasses.replace(book, default_prefix=opts.default_prefix)
    if opts.roster_bytes is not None:
        priced = price_roster_bytes(opts.roster_bytes, opts.roster_name or Path(opts.roster).name, book,
                                    opts.period)
    else:
        priced = price_roster(opts.roster, book, opts.period)
    try:
        return _run_priced(opts, pool, priced, book)
    finally:
        priced.close()


def _run_priced(opts: RunOptions, pool, priced: Priced, book) -> RunReport:
    owner = OPERATOR if opts.owner is None else opts.owner
    # -- end drop folder --
    out = Path(opts.out)
    _usable_out(out)
    ledger_path = Path(opts.ledger) if opts.ledger else out / LEDGER_NAME
    if not opts.ledger and ledger_path.is_symlink():  # never followed: it would write the ledger elsewhere
        raise InvoicerError(f"{ledger_path} is a link, not the folder's own ledger: nothing done; give the "
                            f"ledger's real path with --ledger, or put the file itself there")
    if opts.dry_run and not ledger_path.exists():
        from .spill import Scratch, SpilledList

        scratch = Scratch()  # nothing built; the plan's entries on disk, as plan_against keeps them
        plan = Plan(new=SpilledList(scratch, NewInvoice, (NewInvoice(c, t) for c, t in priced.invoices.totals())),
                    _scratch=scratch)
        return _report(opts, priced, plan, [], [])
    with _folder_lock(out, opts.wait_s, opts.dry_run):
        # checked holding the folder: a run of another month into it is either done (this one sees its
        # manifest) or waits for this one to finish (then it sees this one's)
        claimed = _one_series_per_folder(out, priced.prefix, opts.period)
        return _issue(opts, pool, priced, book, owner, out, ledger_path, claimed)


def _issue(opts: RunOptions, pool, priced: Priced, book, owner: str, out: Path, ledger_path: Path,
           claimed: bool) -> RunReport:
    """``run`` from the plan on, holding the output folder (see ``run``); ``claimed``: the folder's manifest
    names this prefix and period already (as read by the check, which nothing can change while the run holds
    the folder)."""
    from .render.executor import LocalExecutor, make_executor
    from .render.pdf import progress_bar
    from .spill import KeyedFiles, Scratch

    executor = LocalExecutor(opts.templates, opts.workers, pool) if pool is not None else None
    # a dry run only reads: strictly read-only (no schema script, no lock), so it leaves an archive untouched
    ledger = Ledger.open_readonly(ledger_path) if opts.dry_run else Ledger(ledger_path, opts.wait_s)
    staging: Staging | None = None
    scratch = Scratch()  # the run's per-document lookups, on disk (spill.py)
    try:
        rendered = KeyedFiles(scratch)  # document content (with its number) -> StagedFile: kept across attempts
        for _ in range(MAX_ATTEMPTS):
            ledger.begin_read()
            ledger.check_prefix(priced.prefix, owner)  # refused before reading its series
            owner_then = ledger.prefix_owner(priced.prefix)
            plan = plan_against(ledger, priced.prefix, opts.period, priced.invoices)
            plan.held = priced.held
            if opts.dry_run:
                ledger.rollback()
                ledger.close()  # a long-lived caller (the watcher, tests) keeps no handle on the ledger
                scratch.close()
                return _report(opts, priced, plan, [], [])
            if (plan.changed or plan.withdrawn) and not opts.amend:
                ledger.rollback()
                raise Conflict(
                    f"{opts.roster}: the input changes {len(plan.changed) + len(plan.withdrawn)} invoice(s) "
                    f"already issued for {opts.period}; nothing was issued. Re-run with --amend to cancel them "
                    f"with credit notes and issue replacements.\n  " + "\n  ".join(plan.differences()))
            issue = IssueList(ledger, priced, plan, opts.period, book.number_digits)
            mark = ledger.series_mark(priced.prefix)
            ledger.rollback()  # rendering holds neither the lock nor a snapshot
            # one pass over what is issued, a batch at a time: render what this run has not rendered yet
            # (an earlier attempt's PDFs are kept by content and number) and stream it to the staging folder
            todo_total = 0  # documents rendered in this pass (the bar counts the month's documents)
            with progress_bar(len(issue), opts.progress) as advance:
                for batch in _batches(issue, RENDER_BATCH):
                    keyed = [(_render_key(d), d) for d, _, _ in batch]
                    todo = [(key, d) for key, d in keyed if key not in rendered]
                    advance(len(batch) - len(todo))
                    if not todo:
                        continue
                    todo_total += len(todo)
                    if staging is None:
                        staging = Staging(out)
                    if executor is None:
                        executor = make_executor(opts.executor, opts.templates, opts.workers)
                    for (key, _), data in zip(todo, executor.render_iter([d for _, d in todo], False)):
                        rendered[key] = staging.stage(data)
                        advance(1)
            if executor is not None and pool is None:
                executor.close()  # its worker processes are not kept through recording and publishing
                executor = None
            if staging is not None and todo_total:
                staging.make_durable()
            ledger.begin()
            if ledger.series_mark(priced.prefix) != mark or ledger.prefix_owner(priced.prefix) != owner_then:
                ledger.rollback()  # someone numbered in this series (or took the prefix) meanwhile
                continue
            if len(issue):  # a prefix is bound when the run records documents in it (kept only if this run commits)
                ledger.claim_prefix(priced.prefix, owner)
            fresh, numbers = _record(ledger, priced, book, opts, issue, rendered, KeyedFiles(scratch))
            if not claimed:
                claim_folder(out, priced.prefix, opts.period, opts)
            _fault_point("before_commit")
            ledger.commit()
            _fault_point("after_commit")
            rendered.clear()  # only a retry reads it; publish takes each staged file from ``fresh``
            # kept in the ledger now: publishing reads the period's bills from there, not from the frames
            priced.input_bytes = b""
            priced.invoices.release()
            issue = batch = keyed = todo = None  # the render pass's last batch of documents too
            break
        else:
            raise LedgerBusy(f"the ledger {ledger_path}: other runs kept numbering in the series "
                             f"{priced.prefix!r} while this one rendered ({MAX_ATTEMPTS} attempts); try again")
    except BaseException:
        ledger.rollback()
        ledger.close()
        if staging is not None:
            staging.close()
        if executor is not None:
            executor.close()
        scratch.close()
        raise
    # After COMMIT, files are written holding the ledger's write lock again (no other run of this
    # ledger writes the folder meanwhile, so publish sweeps every leftover temporary file); any failure now
    # says the month was issued and a re-run publishes the rest (exit 5), never a traceback
    # re-rendering in publish is only for files lost from ledgers that predate keeping PDF bytes
    executor = LocalExecutor(opts.templates, opts.workers, pool)
    try:
        ledger.begin()
        written = publish_period(ledger, out, priced, book, opts, fresh, executor)
    except Exception as exc:
        raise PublishIncomplete(unpublished_message(opts.period, len(numbers), ledger_path, out, exc)) from None
    finally:
        ledger.rollback()
        ledger.close()
        if staging is not None:
            staging.close()
        executor.close()
        scratch.close()
    return _report(opts, priced, plan, numbers, written)


# documents handed to the executor at a time: enough to keep every worker busy, few enough that a batch of
# documents and PDFs is small beside the month
RENDER_BATCH = 2000


def _batches(items, size: int):
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@contextlib.contextmanager
def _folder_lock(out: Path, wait_s: float, dry_run: bool):
    """Hold the output folder for a run, from the check of what it holds until its files are published: an
    exclusive lock on the folder itself (flock on its descriptor: no file is added to the folder), so two
    runs started at once into one --out, of any ledgers, take turns. Waits ``wait_s`` seconds for another
    run, then LedgerBusy (exit 4). A dry run writes nothing and takes nothing."""
    import fcntl
    import time

    if dry_run:
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        deadline = time.monotonic() + max(wait_s, 0.0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if not isinstance(exc, BlockingIOError):  # a file system without locks (ENOLCK)
                    raise InvoicerError(f"{out}: the folder cannot be locked ({exc.strerror}); runs into one "
                                        f"--out must take turns: use a local folder") from None
                if time.monotonic() >= deadline:
                    raise LedgerBusy(f"{out}: another run is writing this folder (waited {wait_s:g} s); try "
                                     f"again when it has finished") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _one_series_per_folder(out: Path, prefix: str, period: str) -> bool:
    """An output folder holds one prefix and one period (its summary, manifest and fapiao export describe
    them): billing another into it would drop the first from those files. Refused before anything is
    numbered, naming what the folder holds; a folder without a readable manifest is taken as new. True when
    the folder's manifest names this prefix and period (it is claimed already: publish.claim_folder)."""
    from .publish import PreviousManifest

    previous = PreviousManifest(out)  # read as a stream, its file lists dropped (12 MB at 100,000 customers)
    try:
        held = (previous.top["invoice_prefix"], previous.top["period"])
    except KeyError:
        return False
    if held != (prefix, period):
        unfinished = ("; that month's publishing did not finish: re-run it to publish the rest"
                      if previous.get("incomplete") else "")
        raise InvoicerError(f"{out} holds {held[0]} {held[1]} (its manifest.json{unfinished}); this run bills "
                            f"{prefix} {period}: give each prefix and month its own --out (they can share one "
                            f"--ledger)")
    return True


def _usable_out(out: Path) -> None:
    """--out must be a folder, or a path whose nearest existing ancestor is one (refused before anything is
    issued, not after COMMIT)."""
    for path in (out, *out.parents):
        if path.exists():
            if not path.is_dir():
                raise InvoicerError(f"{out}: --out {'is' if path == out else 'lies under'} a file ({path}); it "
                                    f"must be a folder (or a path that does not exist yet)")
            return


def unpublished_message(period: str, issued: int, ledger_path: Path, out: Path, exc: BaseException) -> str:
    """What a failure after COMMIT means for the clerk: issued, and how to finish (exit 5)."""
    import errno

    if isinstance(exc, OSError):
        reason = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        reason += f" ({exc.filename})" if exc.filename else ""
    else:
        reason = str(exc)
    return (f"{period} was issued ({issued} numbered document(s) committed to the ledger {ledger_path}), but "
            f"writing its files into {out} failed: {reason}. Nothing issued is lost: fix that and re-run the "
            f"same command to publish the rest (it issues nothing twice)")

def _record(ledger: Ledger, priced: Priced, book, opts: RunOptions, issue: IssueList, rendered,
            fresh) -> tuple[dict[str, StagedFile], list[str]]:
    """Insert the run, its inputs' bytes and every document with its PDF's bytes (read back from the staging
    folder one at a time), inside the caller's write transaction, in one more pass over ``issue``. Fills
    ``fresh`` (an empty mapping) with the staged file of each document by its file name (what publish moves
    into place) and returns it with the numbers issued. ``rendered``: render key -> StagedFile."""
    run_id = ledger.add_run(priced.prefix, opts.period, priced.input_sha256, book.sha256, book.version,
                            tool_version(), opts.amend, issue.numbered)
    ledger.put_blob(priced.input_sha256, "roster", priced.input_name, priced.input_bytes)
    ledger.put_blob(book.sha256, "pricebook", Path(book.source).name, book.raw)
    numbers = IssuedNumbers()
    for doc, year, seq in issue:
        file = rendered[_render_key(doc)]
        name = file_name_for(doc)
        ledger.put_blob(file.sha256, "pdf", name, file.read())  # the bytes as issued
        ledger.add_document(run_id, doc, priced.prefix, year, seq, docs_mod.content_hash(doc), name, file.sha256,
                            priced.input_sha256, book.sha256)
        fresh[name] = file
        if year is not None:
            numbers.append(issue.prefix, year, seq, issue.digits)
    return fresh, numbers


def _render_key(doc: dict) -> bytes:
    import hashlib

    return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=False).encode()).digest()


class IssuedNumbers(Indexed):
    """The numbers a run issued, in issue order (``RunReport.issued``), kept as runs of consecutive numbers
    of one series (a run numbers each year's series gaplessly, so a month is one or two runs, not one string
    per document). Compares equal to the list of the numbers."""

    def __init__(self):
        self._runs: list[list] = []  # [prefix, year, first seq, count, digits]
        self._len = 0

    def append(self, prefix: str, year: int, seq: int, digits: int) -> None:
        last = self._runs[-1] if self._runs else None
        if last is not None and last[:2] == [prefix, year] and last[4] == digits and last[2] + last[3] == seq:
            last[3] += 1
        else:
            self._runs.append([prefix, year, seq, 1, digits])
        self._len += 1

    def __len__(self) -> int:
        return self._len

    def __iter__(self):
        from .ledger import format_number

        for prefix, year, first, count, digits in self._runs:
            for seq in range(first, first + count):
                yield format_number(prefix, year, seq, digits)

    def _item(self, i: int):
        from .ledger import format_number

        for prefix, year, first, count, digits in self._runs:
            if i < count:
                return format_number(prefix, year, first + i, digits)
            i -= count
        raise IndexError(i)

    def __repr__(self) -> str:
        return repr(list(self)) if self._len <= 10 else f"<{self._len} numbers>"


def _fault_point(name: str) -> None:
    """Crash-safety tests kill the process at named points (INVOICER_TEST_CRASH_AT); a no-op otherwise."""
    import os

    if os.environ.get("INVOICER_TEST_CRASH_AT") == name:
        os._exit(70)


def _clean(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if not k.startswith("_")}


def _changed_notices(ledger: Ledger, priced: Priced, period: str) -> bytearray:
    """One byte per notice of ``priced.notices`` (in its order): 1 if it is new or differs from the newest
    notice of its file name in the ledger. The ledger is asked per customer (by its index; the notices are
    in customer order, so each customer once), never for the period's notices at once."""
    flags = bytearray()
    cid, latest = None, {}
    for doc in priced.notices:
        if doc["customer"]["customer_id"] != cid:
            cid = doc["customer"]["customer_id"]
            latest = ledger.customer_notice_hashes(priced.prefix, period, cid)
        old = latest.get(file_name_for(doc))
        flags.append(old is None or old != docs_mod.content_hash(doc))
    return flags


def _report(opts, priced: Priced, plan: Plan, issued: list[str], written: list[str]) -> RunReport:
    total = priced.invoices.total_fen
    return RunReport(opts.period, Path(opts.out), priced.prefix, plan, priced.rejects, priced.roster.warnings,
                     issued, written, opts.dry_run, total, len(priced.accounts))
