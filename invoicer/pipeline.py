"""The only place that sequences the stages:

    read -> validate -> price -> document -> ledger (compare, number, record) -> render -> publish

Each stage returns values (frames, documents, Reject records); only ``publish`` writes files and only the
ledger stage writes the database. See README.md for the output layout.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from importlib.metadata import version as pkg_version
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from . import documents as docs_mod
from . import pricebook as pricebook_mod
from .errors import EXIT_CONFLICT, EXIT_OK, EXIT_REJECTS, InvoicerError, PublishIncomplete, Reject
from .ledger import OPERATOR, Issued, Ledger, PrefixTaken, format_number  # noqa: F401 (PrefixTaken: re-export)
from .money import plain_yuan
from .pricing.engine import price_period
from .publish import (
    safe_path,
    sha256,
    sweep_stale_temporaries,
    write_if_different,
    write_json,
)
from .render.summary import render_summary
from .roster import read_roster
from .validate import Roster, validate

if TYPE_CHECKING:
    from .render.pdf import RenderPool

LEDGER_NAME = "ledger.sqlite"


def tool_version() -> str:
    try:
        return pkg_version("qq-invoicer")
    except Exception:
        return "0+unknown"


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
    # -- drop folder (h-drop) --------------------------------------------------------------------------
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


@dataclass
class Plan:
    """What a run would do, per customer: new, unchanged, changed (needs --amend) or withdrawn."""

    new: list[dict] = field(default_factory=list)
    unchanged: list[tuple[dict, Issued]] = field(default_factory=list)
    changed: list[tuple[dict, Issued]] = field(default_factory=list)
    withdrawn: list[Issued] = field(default_factory=list)

    def differences(self) -> list[str]:
        out = []
        for new, old in self.changed:
            out.append(f"{old.customer_id}: invoice {old.number} " + "; ".join(describe_change(old.content, new)))
        for old in self.withdrawn:
            out.append(f"{old.customer_id}: invoice {old.number} would no longer be issued "
                       f"(no billable line now, or the customer has a rejected row)")
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
class Priced:
    """Everything computed from one roster for one period, before the ledger is involved."""

    roster: Roster
    invoices: list[dict]
    notices: list[dict]
    accounts: pd.DataFrame
    rejects: list[Reject]
    prefix: str
    input_sha256: str
    input_bytes: bytes
    input_name: str


def price_roster_bytes(data: bytes, name: str, book: pricebook_mod.PriceBook, period: str) -> Priced:
    from .roster import read_roster_bytes

    return _price(read_roster_bytes(data, name), book, period)


def price_roster(path: Path, book: pricebook_mod.PriceBook, period: str) -> Priced:
    return _price(read_roster(path), book, period)


def _price(raw, book, period) -> Priced:
    roster = validate(raw, book)
    sheets = (raw.sheet_titles["customers"], raw.sheet_titles["changes"])
    result = price_period(roster.customers, roster.changes, book, period, sheets)
    rejects = sorted(roster.rejects + result.rejects, key=lambda r: (r.sheet != sheets[0], r.sheet, r.row))
    blocked = roster.blocked | {r.customer_id for r in result.rejects if r.customer_id}
    issue_date = result.period_end
    invoices = docs_mod.build_invoices(result.lines, roster.customers, blocked, roster.reseller, book, period,
                                       issue_date)
    notices = docs_mod.build_notices(result.accounts, roster.customers, blocked, roster.reseller, book, period,
                                     issue_date)
    accounts = result.accounts.copy()
    names = roster.customers.drop_duplicates("customer_id").set_index("customer_id")["name"]
    accounts["customer_name"] = accounts["customer_id"].map(names)
    held = {r.customer_id: f"held: {r.sheet} row {r.row} rejected ({r.column})" for r in reversed(rejects)}
    accounts["invoice_held"] = [held.get(c, "") for c in accounts["customer_id"]]
    return Priced(roster, invoices, notices, accounts, rejects, roster.reseller["invoice_prefix"], raw.sha256,
                  raw.data, Path(raw.path).name)


def plan_against(ledger: Ledger, prefix: str, period: str, invoices: list[dict]) -> Plan:
    active = ledger.active_invoices(prefix, period)
    plan = Plan()
    seen = set()
    for doc in invoices:
        cid = doc["customer"]["customer_id"]
        seen.add(cid)
        old = active.get(cid)
        if old is None:
            plan.new.append(doc)
        elif old.content_sha256 == docs_mod.content_hash(doc):
            plan.unchanged.append((doc, old))
        else:
            plan.changed.append((doc, old))
    plan.withdrawn = [old for cid, old in sorted(active.items()) if cid not in seen]
    return plan


def run(opts: RunOptions, pool: RenderPool | None = None) -> RunReport:
    """One run of the main job. ``pool``: worker processes kept by a long-lived caller (the watcher);
    without one, a run makes its own when it has enough documents to render."""
    from .render.pdf import check_templates  # h-render: templates are checked before anything is numbered
    check_templates(opts.templates)
    book = pricebook_mod.load(opts.pricebook)
    # -- drop folder (h-drop): the claimed bytes and the folder's default prefix --------------------------
    if opts.default_prefix:
        book = dataclasses.replace(book, default_prefix=opts.default_prefix)
    if opts.roster_bytes is not None:
        priced = price_roster_bytes(opts.roster_bytes, opts.roster_name or Path(opts.roster).name, book,
                                    opts.period)
    else:
        priced = price_roster(opts.roster, book, opts.period)
    owner = OPERATOR if opts.owner is None else opts.owner
    # -- end drop folder --
    out = Path(opts.out)
    _usable_out(out)  # [h-verify] refused before anything is issued, not after COMMIT
    ledger_path = Path(opts.ledger) if opts.ledger else out / LEDGER_NAME
    if opts.dry_run and not ledger_path.exists():
        plan = Plan(new=list(priced.invoices))
        return _report(opts, priced, plan, [], [])
    ledger = Ledger(ledger_path, opts.wait_s)
    try:
        ledger.begin()
        ledger.claim_prefix(priced.prefix, owner, bind=False)  # (h-drop) refused before reading its series
        plan = plan_against(ledger, priced.prefix, opts.period, priced.invoices)
        if opts.dry_run:
            ledger.rollback()
            return _report(opts, priced, plan, [], [])
        if (plan.changed or plan.withdrawn) and not opts.amend:
            ledger.rollback()
            raise Conflict(
                f"{opts.roster}: the input changes {len(plan.changed) + len(plan.withdrawn)} invoice(s) already "
                f"issued for {opts.period}; nothing was issued. Re-run with --amend to cancel them with credit "
                f"notes and issue replacements.\n  " + "\n  ".join(plan.differences()))
        new_docs = _number(ledger, priced, plan, book)
        notices = _changed_notices(ledger, priced, opts.period)
        if new_docs or notices:  # (h-drop) a prefix is bound when the run records documents in it
            ledger.claim_prefix(priced.prefix, owner)
        rendered = _render([_clean(d) for d in new_docs + notices], opts, pool)
        run_id = ledger.add_run(priced.prefix, opts.period, priced.input_sha256, book.sha256, book.version,
                                tool_version(), opts.amend, len(new_docs))
        ledger.put_blob(priced.input_sha256, "roster", priced.input_name, priced.input_bytes)
        ledger.put_blob(book.sha256, "pricebook", Path(book.source).name, book.raw)
        for doc, data in zip(new_docs + notices, rendered):
            digest, name = sha256(data), file_name_for(doc)
            ledger.put_blob(digest, "pdf", name, data)  # the bytes as issued
            year = seq = None
            if doc["kind"] != "notice":
                year, seq = doc["_year"], doc["_seq"]
            ledger.add_document(run_id, _clean(doc), priced.prefix, year, seq, docs_mod.content_hash(doc),
                                name, digest, priced.input_sha256, book.sha256)
        _fault_point("before_commit")
        ledger.commit()
        _fault_point("after_commit")
    except BaseException:
        ledger.rollback()
        ledger.close()
        raise
    # [h-verify] after COMMIT, files are written holding the ledger's write lock again (no other run of this
    # ledger writes the folder meanwhile, so publish sweeps every leftover temporary file); any failure now
    # says the month was issued and a re-run publishes the rest (exit 5), never a traceback
    try:
        ledger.begin()
        fresh = {file_name_for(d): data for d, data in zip(new_docs + notices, rendered)}
        written = publish_period(ledger, out, priced.prefix, opts.period, priced.accounts, priced.rejects, book,
                                 priced, opts, fresh, pool)
    except Exception as exc:
        raise PublishIncomplete(unpublished_message(opts.period, len(new_docs), ledger_path, out, exc)) from None
    finally:
        ledger.rollback()
        ledger.close()
    # [/h-verify]
    return _report(opts, priced, plan, [d["number"] for d in new_docs], written)


def _usable_out(out: Path) -> None:
    """[h-verify] --out must be a folder, or a path whose nearest existing ancestor is one."""
    for path in (out, *out.parents):
        if path.exists():
            if not path.is_dir():
                raise InvoicerError(f"{out}: --out {'is' if path == out else 'lies under'} a file ({path}); it "
                                    f"must be a folder (or a path that does not exist yet)")
            return


def unpublished_message(period: str, issued: int, ledger_path: Path, out: Path, exc: BaseException) -> str:
    """[h-verify] What a failure after COMMIT means for the clerk: issued, and how to finish."""
    import errno

    if isinstance(exc, OSError):
        reason = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        reason += f" ({exc.filename})" if exc.filename else ""
    else:
        reason = str(exc)
    return (f"{period} was issued ({issued} numbered document(s) committed to the ledger {ledger_path}), but "
            f"writing its files into {out} failed: {reason}. Nothing issued is lost: fix that and re-run the "
            f"same command to publish the rest (it issues nothing twice)")


def _fault_point(name: str) -> None:
    """Crash-safety tests kill the process at named points (INVOICER_TEST_CRASH_AT); a no-op otherwise."""
    import os

    if os.environ.get("INVOICER_TEST_CRASH_AT") == name:
        os._exit(70)


def _clean(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if not k.startswith("_")}


def _number(ledger: Ledger, priced: Priced, plan: Plan, book) -> list[dict]:
    """Assign gapless numbers, customer by customer: a credit note before its replacement invoice."""
    work: list[tuple[str, list[dict]]] = []
    for doc in plan.new:
        work.append((doc["customer"]["customer_id"], [doc]))
    for new, old in plan.changed:
        credit = docs_mod.credit_note_for({**old.content, "number": old.number}, dt.date.fromisoformat(new["issue_date"]))
        work.append((old.customer_id, [credit, {**new, "replaces": old.number}]))
    for old in plan.withdrawn:
        issue = old.content["issue_date"]
        work.append((old.customer_id, [docs_mod.credit_note_for({**old.content, "number": old.number},
                                                                 dt.date.fromisoformat(issue))]))
    out = []
    next_by_year: dict[int, int] = {}
    for _, group in sorted(work, key=lambda w: w[0]):
        for doc in group:
            year = dt.date.fromisoformat(doc["issue_date"]).year
            if year not in next_by_year:
                next_by_year[year] = ledger.next_seq(priced.prefix, year)
            seq = next_by_year[year]
            next_by_year[year] += 1
            doc = {**doc, "number": format_number(priced.prefix, year, seq, book.number_digits),
                   "_year": year, "_seq": seq}
            out.append(doc)
    # a credit note is numbered before its replacement; the replacement names what it replaces
    return out


def _changed_notices(ledger: Ledger, priced: Priced, period: str) -> list[dict]:
    latest = ledger.latest_notices(priced.prefix, period)
    out = []
    for doc in priced.notices:
        key = (doc["customer"]["customer_id"], doc["notice"]["notice_kind"])
        old = latest.get(key)
        if old is None or old.content_sha256 != docs_mod.content_hash(doc):
            out.append(doc)
    return out


def file_name_for(doc: dict) -> str:
    if doc["kind"] == "invoice":
        return f"invoices/{doc['number']}.pdf"
    if doc["kind"] == "credit_note":
        return f"credit_notes/{doc['number']}.pdf"
    return f"notices/{doc['customer']['customer_id']}-{doc['notice']['notice_kind']}.pdf"


def _render(docs: list[dict], opts: RunOptions, pool: RenderPool | None) -> list[bytes]:
    if pool is not None:
        return pool.render(docs, opts.progress)
    from .render.pdf import render_many

    return render_many(docs, opts.templates, opts.workers, opts.progress)


def publish_period(ledger: Ledger, out: Path, prefix: str, period: str, accounts: pd.DataFrame,
                   rejects: list[Reject], book, priced: Priced, opts: RunOptions,
                   fresh: dict[str, bytes], pool: RenderPool | None = None) -> list[str]:
    """Make the output folder match the ledger for this period: every issued document's file (re-rendered
    from its recorded snapshot if missing), the summary and, last, the manifest."""
    for folder in (out, out / "invoices", out / "credit_notes", out / "notices"):
        # left by a run killed inside an atomic write; whatever their age, since this run holds the ledger's
        # write lock and every run of this ledger writes its folder only while holding it
        sweep_stale_temporaries(folder, older_than_s=0)
    issued = ledger.documents(prefix, period)
    cancelled = {d.content.get("cancels") for d in issued if d.kind == "credit_note"}
    latest_notice: dict[str, Issued] = {}
    for d in issued:
        if d.kind == "notice":
            latest_notice[d.file_name] = d
    current_notice_keys = {file_name_for(n) for n in priced.notices}
    files: dict[str, str] = {}
    written: list[str] = []
    missing = []
    for d in issued:
        if d.kind == "notice" and (latest_notice[d.file_name] is not d or d.file_name not in current_notice_keys):
            continue
        path = safe_path(out, *d.file_name.split("/"))
        if d.file_name in fresh:
            data = fresh[d.file_name]
            if write_if_different(path, data):
                written.append(d.file_name)
        elif not (path.is_file() and sha256(path.read_bytes()) == d.file_sha256):
            missing.append(d)
        files[d.file_name] = d.file_sha256
    # a missing file is restored from the bytes the ledger kept at issue; only documents issued before the
    # ledger kept them are rendered again from their snapshot, and must come out byte-identical
    kept = {d.file_name: ledger.blob(d.file_sha256) for d in missing}
    again = iter(_render([d.content for d in missing if kept[d.file_name] is None], opts, pool))
    for d in missing:
        data = kept[d.file_name] or next(again)
        if sha256(data) != d.file_sha256:
            raise InvoicerError(f"re-rendering {d.file_name} from the ledger gave different bytes; the "
                                f"templates or fonts changed since it was issued, and this ledger predates "
                                f"keeping issued PDFs")
        write_if_different(safe_path(out, *d.file_name.split("/")), data)
        written.append(d.file_name)
    listed = []
    for d in issued:
        if d.kind == "notice":
            continue
        status = "cancelled" if d.number in cancelled else ("issued" if d.kind == "invoice" else "credit_note")
        listed.append({**d.content, "status": status})
    listed.sort(key=lambda x: x["number"])
    acc = _account_records(accounts)
    created = dt.datetime.combine(dt.date.fromisoformat(priced.invoices[0]["issue_date"]) if priced.invoices
                                  else _period_end(period), dt.time())
    summary = render_summary(listed, acc, rejects, created)
    if write_if_different(out / "summary.xlsx", summary):
        written.append("summary.xlsx")
    files["summary.xlsx"] = sha256(summary)
    # --- h-fapiao: the e-fapiao import file and the red-letter list (README "The clerk's month")
    from .publish_fapiao import write_fapiao_exports

    written += write_fapiao_exports(out, prefix, period, listed, book, priced.roster, created, files)
    # --- end h-fapiao
    manifest = {
        "tool": "qq-invoicer", "tool_version": tool_version(), "period": period, "invoice_prefix": prefix,
        "pricebook": {"version": book.version, "sha256": book.sha256, "source": Path(book.source).name},
        "input": {"name": priced.input_name, "sha256": priced.input_sha256},
        "ledger": str(Path(opts.ledger).resolve()) if opts.ledger else LEDGER_NAME,
        **ledger.anchor(prefix, period),  # [h-verify] ledger_id, chain_head, chain_link: which ledger, as of when
        "counts": {"invoices": sum(1 for x in listed if x["kind"] == "invoice" and x["status"] == "issued"),
                   "credit_notes": sum(1 for x in listed if x["kind"] == "credit_note"),
                   "notices": len(current_notice_keys), "rejected_rows": len(rejects)},
        "total_fen": sum(x["total_fen"] for x in listed),
        "files": dict(sorted(files.items())),
        "warnings": priced.roster.warnings,
    }
    write_json(out / "manifest.json", manifest)
    written.append("manifest.json")
    return written


def _period_end(period: str) -> dt.date:
    start = np.datetime64(period, "M")
    return ((start + 1).astype("datetime64[D]") - np.timedelta64(1, "D")).astype(dt.date)


def _account_records(accounts: pd.DataFrame) -> list[dict]:
    out = []
    for r in accounts.sort_values("customer_id").to_dict("records"):
        out.append({
            "customer_id": r["customer_id"], "customer_name": r.get("customer_name") or "",
            "seats": int(r["seats"]), "paid_through": docs_mod._d(r["paid_through"]), "status": r["status"],
            "next_action_on": docs_mod._d(r["next_action_on"]), "window_opens_on": docs_mod._d(r["window_opens_on"]),
            "reclaim_on": docs_mod._d(r["reclaim_on"]), "quote_fen": int(r["quote_fen"]),
            "invoice_held": r.get("invoice_held") or "",
        })
    return out


def _report(opts, priced: Priced, plan: Plan, issued: list[str], written: list[str]) -> RunReport:
    total = sum(d["total_fen"] for d in priced.invoices)
    return RunReport(opts.period, Path(opts.out), priced.prefix, plan, priced.rejects, priced.roster.warnings,
                     issued, written, opts.dry_run, total, len(priced.accounts))
