"""Priced lines -> invoice and notice documents: plain, JSON-able dicts that hold everything printed.

A document is a snapshot: the customer's and seller's data are copied onto it when it is issued, and the
ledger stores it whole, so a document can be re-rendered byte for byte years later without the roster.
Every line carries its calculation in words (``explanation``), so an auditor can re-derive the amount
from the page alone.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .labels import (  # noqa: F401 (LABELS, render_view: read here by their old name too)
    KIND_LABEL,
    LABELS,
    basis_label,
    labels_for,
    render_view,
    unit_label,
)
from .model import CreditNote, Customer, Document, Invoice, Line, Notice, Rules
from .money import chinese_capital, plain_yuan
from .pricebook import PriceBook
from .pricing.dates import DAY
from .spill import Indexed
from .vat import split_gross

KIND_ZH = {"opening": "开通", "addition": "加工号", "renewal": "续费"}

# Line and document keys that are display or derived values: kept out of content_hash, so documents issued
# before they existed stay "unchanged" on a re-run (see render_view for their defaults when rendering those).
DERIVED_LINE_KEYS = frozenset({"net_fen", "tax_fen", "kind_label", "basis_label", "unit_label"})


def _d(x) -> str:
    return "" if pd.isna(x) else str(np.datetime64(x, "D"))


def months_rule(line: Line, book: PriceBook) -> str:
    """'2026-10-10 -> 2027-05-01: 6 months 21 days -> 7 months (over 15 days rounds up)'."""
    start = line["date"]
    anniversary = str(np.datetime64(line["term_end"], "D") + DAY)
    whole, extra, months = line["whole_months"], line["extra_days"], line["months"]
    limit = book.round_up_after_days
    if extra == 0:
        why = "whole months"
    elif extra > limit:
        why = f"over {limit} days rounds up"
    else:
        why = f"{limit} days or fewer round down"
    return f"{start} -> {anniversary}: {whole} months {extra} days -> {months} months ({why})"


def explain(line: Line, book: PriceBook) -> str:
    """A line's whole calculation in words (seats x price x months = amount, tier, proration, cap, legacy),
    so an auditor can re-derive the amount from the printed page."""
    seats, unit, amount = line["seats"], line["unit_fen"], line["amount_fen"]
    tier = "legacy rate" if line["legacy"] else f"tier {line['tier']}"
    zh = KIND_ZH[line["kind"]]
    if line["kind"] == "addition":
        basis = (f"by account total {line['account_seats']} seats" if book.tier_basis == "account_total"
                 else f"by {seats} added seats")
        text = (f"{zh} addition: {seats} seats x {plain_yuan(unit)}/month x {line['months']} months = "
                f"{plain_yuan(seats * unit * line['months'])}; {tier} {basis}; {months_rule(line, book)}")
        if line["capped"]:
            text += (f"; capped at {seats} x {plain_yuan(line['annual_fen'])} a year = {plain_yuan(amount)} "
                     f"(a prorated seat never costs more than a year)")
        text += f"; paid through {line['term_end']}"
    elif line["kind"] == "renewal":
        done = line["completes_on"] + ("" if line["completes_exact"] else " (weekends only: no holiday data)")
        text = (f"{zh} renewal: {seats} seats x {plain_yuan(unit)} = {plain_yuan(amount)}; {tier} by seats on "
                f"the signing date; new term {line['term_start']} to {line['term_end']}; signed {line['date']}, "
                f"completes {done} ({book.completion_working_days} working days)")
    else:
        text = (f"{zh} opening: {seats} seats x {plain_yuan(unit)} = {plain_yuan(amount)}; {tier}; "
                f"term {line['term_start']} to {line['term_end']}")
    if line["legacy"]:
        text += (f"; legacy allowance (opened before {book.legacy_cutoff}): {plain_yuan(line['annual_fen'])} a year"
                 + (f", {plain_yuan(unit)} a month" if line["kind"] == "addition" else ""))
    return text


def rules_note(book: PriceBook) -> Rules:
    """The invoice's printed rules, in both languages, from the price book that priced it (a reseller's own
    book prints its own rules). Kept out of the content hash: it describes the rules, the lines apply them."""
    n = book.round_up_after_days
    by_added = book.tier_basis == "added_seats"
    zh = (f"开通与续费按账户工号数所在套餐计年费; 加工号按{'新增工号数' if by_added else '加工号后账户工号数'}所在套餐"
          f"的月费计至账户到期日, 不足整月的天数超过{n}天按一个月计, 否则不计")
    en = ("Opening and renewal: seats × the annual price of the tier of the account's seat count. Added seats: "
          f"seats × the monthly rate of the tier of {'the seats added' if by_added else 'the account after the addition'}"
          f" × whole months to the paid-through date (over {n} leftover days rounds up)")
    if book.cap_at_annual:
        zh += ", 每工号不超过一年年费"
        en += ", never more than a year per seat"
    g = book.grace_months
    return {"zh": zh + ".", "en": en + ".", "completion_working_days": book.completion_working_days,
            "grace_zh": "一个月" if g == 1 else f"{g}个月", "grace_en": "one month" if g == 1 else f"{g} months"}


def add_vat(doc: dict, vat: dict) -> dict:
    """The document with its VAT split at ``vat['rate']``: net_fen/tax_fen on every line (vat.split_gross) and
    net_total_fen/tax_total_fen as the sums of its lines. Returns a new dict; the input is not changed."""
    lines = []
    for x in doc["lines"]:
        net, tax = split_gross(x["amount_fen"], vat["rate"])
        lines.append({**x, "net_fen": net, "tax_fen": tax})
    out = {**doc, "lines": lines, "vat": vat}  # ``vat`` is shared, never edited
    out["net_total_fen"] = sum(x["net_fen"] for x in lines)
    out["tax_total_fen"] = sum(x["tax_fen"] for x in lines)
    assert out["net_total_fen"] + out["tax_total_fen"] == out["total_fen"]
    return out


def _dates(col: pd.Series) -> list[str]:
    """A date column as ISO strings, '' for a missing date (the frame form of ``_d``). Equal dates are one
    string object (a month's lines share a few dozen dates: documents stay small in memory)."""
    text = np.datetime_as_string(col.to_numpy().astype("datetime64[D]"))
    return ["" if t == "NaT" else sys.intern(t) for t in text.tolist()]


LINE_INTS = ("seats", "account_seats", "months", "whole_months", "extra_days", "unit_fen", "annual_fen",
             "amount_fen", "list_fen", "row")


def line_dicts(lines: pd.DataFrame, book: PriceBook) -> list[Line]:
    """Priced lines -> the documents' line dicts, in frame order: each column converted once, then one
    dict per line (and its explanation in words)."""
    n = len(lines)
    if n == 0:
        return []
    ints = {k: lines[k].astype("int64").tolist() for k in LINE_INTS}
    dates = {k: _dates(lines[k]) for k in ("date", "term_start", "term_end", "completes_on")}
    bools = {k: lines[k].astype(bool).tolist() for k in ("legacy", "capped", "completes_exact")}
    kinds, tiers = lines["kind"].tolist(), [str(t) for t in lines["tier"].tolist()]
    refs = [str(r or "") for r in lines["reference"].tolist()]
    out = []
    for i in range(n):
        line = {
            "kind": kinds[i], "date": dates["date"][i], "seats": ints["seats"][i],
            "account_seats": ints["account_seats"][i], "months": ints["months"][i],
            "whole_months": ints["whole_months"][i], "extra_days": ints["extra_days"][i],
            "unit_fen": ints["unit_fen"][i], "annual_fen": ints["annual_fen"][i],
            "amount_fen": ints["amount_fen"][i], "list_fen": ints["list_fen"][i], "tier": tiers[i],
            "legacy": bools["legacy"][i], "capped": bools["capped"][i], "term_start": dates["term_start"][i],
            "term_end": dates["term_end"][i], "completes_on": dates["completes_on"][i],
            "completes_exact": bools["completes_exact"][i], "reference": refs[i], "row": ints["row"][i],
        }
        line["discount_fen"] = line["list_fen"] - line["amount_fen"]
        line["months_rule"] = months_rule(line, book) if line["kind"] == "addition" else ""
        line["explanation"] = explain(line, book)
        line["kind_label"] = KIND_LABEL[line["kind"]]
        line["basis_label"] = basis_label(line, book.tier_basis)
        line["unit_label"] = unit_label(line["kind"])
        out.append(line)
    return out


SNAPSHOT_KEYS = ("customer_id", "name", "qq_number", "email", "address", "tax_id")


def first_valid_rows(customers: pd.DataFrame, columns: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Each customer's first valid roster row, indexed by customer id: the row its documents and its e-fapiao
    columns are read from (only ``columns`` of it, when given)."""
    rows = customers.loc[customers["valid"], ["customer_id", *columns] if columns else slice(None)]
    return rows.drop_duplicates("customer_id").set_index("customer_id")


def customer_snapshots(customers: pd.DataFrame, ids: list[str], by_id: pd.DataFrame | None = None) -> list[Customer]:
    """The customer snapshot of each id (its first valid roster row), looked up for all ids at once. ``by_id``:
    ``first_valid_rows(customers)`` when the caller already has it (made once, not once per chunk)."""
    rows = (first_valid_rows(customers) if by_id is None else by_id).reindex(ids)
    cols = [ids] + [rows[k].tolist() if k in rows else [None] * len(ids) for k in SNAPSHOT_KEYS[1:]]
    return [{k: str(v or "") for k, v in zip(SNAPSHOT_KEYS, vals)} for vals in zip(*cols)]


def customer_snapshot(row: dict) -> Customer:
    return {k: str(row.get(k) or "") for k in ("customer_id", "name", "qq_number", "email", "address", "tax_id")}


def content_hash(doc: Document) -> str:
    """Hash of what a document says (not its number or file): equal hashes mean an unchanged invoice.
    Display and derived values (labels, the VAT split: DERIVED_LINE_KEYS and the document keys not listed
    here) are left out, so adding them did not change the hash of any document."""
    keep = {k: doc[k] for k in ("kind", "customer", "seller", "lines", "total_fen", "period", "issue_date",
                                "currency", "notice")
            if k in doc}
    if "lines" in keep:
        keep["lines"] = [{k: v for k, v in x.items() if k not in DERIVED_LINE_KEYS} for x in keep["lines"]]
    return hashlib.sha256(json.dumps(keep, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def customer_bounds(lines: pd.DataFrame) -> list[int]:
    """Row bounds of each customer's lines in a frame sorted by customer id: customer i has rows
    ``bounds[i]:bounds[i + 1]`` (``[0]`` for an empty frame)."""
    cids = lines["customer_id"].to_numpy()
    return np.r_[np.flatnonzero(np.r_[True, cids[1:] != cids[:-1]]) if len(cids) else [], len(cids)] \
        .astype(int).tolist()


def build_invoices(lines: pd.DataFrame, customers: pd.DataFrame, blocked: set[str], seller: dict,
                   book: PriceBook, period: str, issue_date: dt.date, by_id: pd.DataFrame | None = None) -> list[Invoice]:
    """One invoice per customer with billable lines (customers in id order, each one's lines in frame order),
    none for customers with a rejected row. Built from the frames: lines converted column by column, totals
    by one grouped sum, customer snapshots by one lookup (``by_id``: see customer_snapshots)."""
    lines = lines.loc[~lines["customer_id"].isin(blocked)].sort_values("customer_id", kind="stable")
    if lines.empty:
        return []
    items = line_dicts(lines, book)
    ids = lines["customer_id"].drop_duplicates().tolist()
    sums = lines.groupby("customer_id", sort=True)[["amount_fen", "list_fen"]].sum()
    bounds = customer_bounds(lines)
    rules, issued_on, vat = rules_note(book), issue_date.isoformat(), book.vat.snapshot()
    # the parts every invoice of the run has in common are one object each, shared by all of them (documents
    # are never edited in place: a change is a new dict), so a month of invoices costs its own data only
    seller, labels = dict(seller), labels_for("invoice")
    docs = []
    sums = sums.loc[ids]
    totals, list_totals = sums["amount_fen"].tolist(), sums["list_fen"].tolist()
    for i, (cid, snapshot) in enumerate(zip(ids, customer_snapshots(customers, ids, by_id))):
        total, list_total = int(totals[i]), int(list_totals[i])
        doc = {
            "kind": "invoice", "customer": snapshot, "seller": seller, "lines": items[bounds[i]:bounds[i + 1]],
            "total_fen": total, "list_total_fen": list_total, "period": period, "issue_date": issued_on,
            "currency": book.currency, "pricebook_version": book.version, "rules": rules,
            "total_words": chinese_capital(total), "labels": labels,
        }
        docs.append(add_vat(doc, vat))
    return docs


@dataclass
class PricedPart:
    """What pricing keeps of one partition of customers (stage.py) for the run's later passes: its billable
    lines (no blocked customer; sorted by customer id), each customer's first valid roster row
    (``first_valid_rows``: documents' snapshots, e-fapiao columns), its accounts at the period's end (with
    the summary's name and held columns) and its blocked ids."""

    lines: pd.DataFrame
    by_id: pd.DataFrame
    accounts: pd.DataFrame
    blocked: set[str]


@dataclass(frozen=True)
class PartCounts:
    invoices: int
    total_fen: int
    notices: int
    accounts: int


def part_counts(part: PricedPart) -> PartCounts:
    due = part.accounts["status"].isin(["renewal_due", "grace"]) & ~part.accounts["customer_id"].isin(part.blocked)
    return PartCounts(int(part.lines["customer_id"].nunique()), int(part.lines["amount_fen"].sum()), int(due.sum()),
                      len(part.accounts))


class Parts:
    """A run's priced partitions, in customer id order: ``get(i)`` reads one (from the stage), ``counts`` says
    what each holds without reading it."""

    def __init__(self, get, counts: list[PartCounts]):
        self.get, self.counts = get, counts

    def __len__(self) -> int:
        return len(self.counts)


class _PartDocuments(Indexed):
    """Documents built from the priced partitions one partition at a time whenever they are read: never all
    in memory at once (a partition bills at most ``stage.PARTITION_ROWS`` customers: it holds that many
    customers rows, and a customer's further rows are duplicates), so a month of 100,000 customers is
    planned, rendered and recorded in a partition's worth of documents. Each pass (iteration) builds them
    again (deterministic: equal documents every time); ``len`` comes from the partitions' counts without
    building any."""

    def __init__(self, parts: Parts, seller: dict, book: PriceBook, period: str, issue_date: dt.date):
        self._parts = parts
        self._args = (seller, book, period, issue_date)
        self._sizes = self._counts(parts.counts)
        self._len = sum(self._sizes)
        self._cached: tuple[int, list] | None = None  # (partition, its documents)

    def _counts(self, counts: list[PartCounts]) -> list[int]:
        raise NotImplementedError

    def _build(self, part: PricedPart) -> list:
        raise NotImplementedError

    def __len__(self) -> int:
        return self._len

    def release(self) -> None:
        """Let go of the partitions (a run does once its invoices are recorded: publishing reads them from the
        ledger); ``len`` and ``total_fen`` stay, building a document is refused."""
        self._parts = self._cached = None

    def _documents(self, i: int) -> list:
        if self._cached is not None and self._cached[0] == i:
            return self._cached[1]
        if self._parts is None:
            raise RuntimeError("the documents were released (recorded): read them from the ledger")
        docs = self._build(self._parts.get(i))
        self._cached = (i, docs)
        return docs

    def __iter__(self):
        for i, n in enumerate(self._sizes):
            if n:
                docs = self._documents(i)
                self._cached = None  # a pass keeps one partition's documents alive, not the last after it ends
                yield from docs

    def _item(self, i: int):
        for k, n in enumerate(self._sizes):
            if i < n:
                return self._documents(k)[i]
            i -= n
        raise IndexError(i)


class InvoiceSet(_PartDocuments):
    """A run's invoices: the same documents as ``build_invoices`` over the whole roster (customers in id
    order), built from the priced partitions one at a time (see _PartDocuments); ``total_fen`` from the
    partitions' counts."""

    def __init__(self, parts: Parts, seller: dict, book: PriceBook, period: str, issue_date: dt.date):
        super().__init__(parts, seller, book, period, issue_date)
        self.total_fen = sum(c.total_fen for c in parts.counts)

    def _counts(self, counts: list[PartCounts]) -> list[int]:
        return [c.invoices for c in counts]

    def _build(self, part: PricedPart) -> list[Invoice]:
        return build_invoices(part.lines, None, set(), *self._args, by_id=part.by_id)

    def totals(self) -> list[tuple[str, int]]:
        """(customer id, invoice total in fen) of each invoice, in order, from the frames (no document built):
        each equals the built invoice's ``total_fen``."""
        out = []
        for i in range(len(self._parts)):
            sums = self._parts.get(i).lines.groupby("customer_id", sort=True)["amount_fen"].sum()
            out += zip(sums.index.tolist(), (int(v) for v in sums.tolist()))
        return out


class NoticeSet(_PartDocuments):
    """A run's renewal and overdue notices: the same documents as ``build_notices`` over the whole roster (in
    customer id order), built from the priced partitions one at a time (see _PartDocuments)."""

    def _counts(self, counts: list[PartCounts]) -> list[int]:
        return [c.notices for c in counts]

    def _build(self, part: PricedPart) -> list[Notice]:
        return build_notices(part.accounts, None, part.blocked, *self._args, by_id=part.by_id)


class AccountSet:
    """A run's accounts at the period's end, partition by partition (customer id order across them)."""

    def __init__(self, parts: Parts):
        self._parts = parts
        self._len = sum(c.accounts for c in parts.counts)

    def __len__(self) -> int:
        return self._len

    def frames(self):
        for i in range(len(self._parts)):
            yield self._parts.get(i).accounts

    def frame(self) -> pd.DataFrame:
        """Every partition's accounts in one frame (for tests and small rosters)."""
        frames = list(self.frames())
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def credit_note_for(invoice: Invoice, issue_date: dt.date) -> CreditNote:
    """A cancellation is a new document with the original's lines negated (never an edit of the original).

    In: an issued invoice (with its ``number``) and the amending run's issue date. Out: an unnumbered
    ``CreditNote`` naming the invoice in ``cancels``; the invoice itself is not changed.
    """
    lines = []
    for x in invoice["lines"]:
        neg = dict(x)
        for k in ("amount_fen", "list_fen", "discount_fen", "net_fen", "tax_fen"):
            if k in x:  # net/tax: only on invoices issued since bills state VAT
                neg[k] = -x[k]
        neg["explanation"] = f"cancels {invoice['number']}: " + x["explanation"]
        lines.append(neg)
    doc = {k: invoice[k] for k in ("customer", "seller", "period", "currency", "pricebook_version")}
    if "rules" in invoice:  # invoices recorded before the rules were part of the snapshot have none
        doc["rules"] = invoice["rules"]
    if invoice.get("vat"):  # the reversal states the VAT split the original stated, negated
        doc["vat"] = invoice["vat"]
        doc["net_total_fen"] = -invoice["net_total_fen"]
        doc["tax_total_fen"] = -invoice["tax_total_fen"]
    doc.update({
        "kind": "credit_note", "lines": lines, "total_fen": -invoice["total_fen"],
        "list_total_fen": -invoice.get("list_total_fen", 0), "issue_date": issue_date.isoformat(),
        "cancels": invoice["number"], "labels": labels_for("credit_note"),
    })
    doc["total_words"] = chinese_capital(doc["total_fen"])
    return doc


def build_notices(accounts: pd.DataFrame, customers: pd.DataFrame | None, blocked: set[str], seller: dict,
                  book: PriceBook, period: str, issue_date: dt.date, by_id: pd.DataFrame | None = None) -> list[Notice]:
    """A renewal notice for each account due for renewal at the end of the period, an overdue notice for
    each account in grace (not invoices, not numbered as invoices); in customer id order."""
    due = accounts.loc[accounts["status"].isin(["renewal_due", "grace"]) & ~accounts["customer_id"].isin(blocked)]
    due = due.sort_values("customer_id")
    if due.empty:
        return []
    ids = due["customer_id"].tolist()
    expiry = due["paid_through"].to_numpy().astype("datetime64[D]")
    paid, next_day = _dates(pd.Series(expiry)), _dates(pd.Series(expiry + DAY))
    opens, reclaim = _dates(due["window_opens_on"]), _dates(due["reclaim_on"])
    cols = [due[k].tolist() for k in ("status", "seats", "quote_unit_fen", "quote_fen", "quote_tier")]
    rules, issued_on, seller = rules_note(book), issue_date.isoformat(), dict(seller)  # shared, as for invoices
    out = []
    for i, (snapshot, (status, seats, unit, quote, tier)) in enumerate(zip(customer_snapshots(customers, ids, by_id),
                                                                          zip(*cols))):
        notice = {
            "notice_kind": "renewal" if status == "renewal_due" else "overdue", "seats": int(seats),
            "paid_through": paid[i], "window_opens_on": opens[i], "reclaim_on": reclaim[i],
            "grace_from": next_day[i], "quote_unit_fen": int(unit), "quote_fen": int(quote),
            "quote_tier": str(tier), "new_term_start": next_day[i],
        }
        out.append({
            "kind": "notice", "notice": notice, "customer": snapshot, "seller": seller, "period": period,
            "issue_date": issued_on, "currency": book.currency, "pricebook_version": book.version,
            "total_words": chinese_capital(int(quote)), "rules": rules,
        })
    return out
