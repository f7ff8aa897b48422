"""The row-by-row document builders as they were before documents were built from frames (issue #13),
kept only as the reference the frame builders are compared with (tests/test_scale.py)."""
from __future__ import annotations

import datetime as dt

import pandas as pd

from invoicer.documents import (
    KIND_LABEL,
    _d,
    add_vat,
    basis_label,
    chinese_capital,
    customer_snapshot,
    explain,
    labels_for,
    months_rule,
    rules_note,
)
from invoicer.pricebook import PriceBook
from invoicer.pricing.dates import to_date


def old_line_dicts(lines: pd.DataFrame, book: PriceBook) -> list[dict]:
    out = []
    for rec in lines.to_dict("records"):
        line = {
            "kind": rec["kind"], "date": _d(rec["date"]), "seats": int(rec["seats"]),
            "account_seats": int(rec["account_seats"]), "months": int(rec["months"]),
            "whole_months": int(rec["whole_months"]), "extra_days": int(rec["extra_days"]),
            "unit_fen": int(rec["unit_fen"]), "annual_fen": int(rec["annual_fen"]),
            "amount_fen": int(rec["amount_fen"]), "list_fen": int(rec["list_fen"]), "tier": str(rec["tier"]),
            "legacy": bool(rec["legacy"]), "capped": bool(rec["capped"]), "term_start": _d(rec["term_start"]),
            "term_end": _d(rec["term_end"]), "completes_on": _d(rec["completes_on"]),
            "completes_exact": bool(rec["completes_exact"]), "reference": str(rec["reference"] or ""),
            "row": int(rec["row"]),
        }
        line["discount_fen"] = line["list_fen"] - line["amount_fen"]
        line["months_rule"] = months_rule(line, book) if line["kind"] == "addition" else ""
        line["explanation"] = explain(line, book)
        line["kind_label"] = KIND_LABEL[line["kind"]]
        line["basis_label"] = basis_label(line, book.tier_basis)
        line["unit_label"] = " /月" if line["kind"] == "addition" else " /年"  # as the old template printed it
        out.append(line)
    return out


def old_build_invoices(lines: pd.DataFrame, customers: pd.DataFrame, blocked: set[str], seller: dict,
                   book: PriceBook, period: str, issue_date: dt.date) -> list[dict]:
    """One invoice per customer with billable lines, none for customers with a rejected row."""
    lines = lines.loc[~lines["customer_id"].isin(blocked)]
    by_id = customers.loc[customers["valid"]].drop_duplicates("customer_id").set_index("customer_id")
    docs = []
    for cid, group in lines.groupby("customer_id", sort=True):
        items = old_line_dicts(group, book)
        doc = {
            "kind": "invoice", "customer": customer_snapshot({"customer_id": cid, **by_id.loc[cid].to_dict()}),
            "seller": dict(seller), "lines": items, "total_fen": sum(x["amount_fen"] for x in items),
            "list_total_fen": sum(x["list_fen"] for x in items), "period": period,
            "issue_date": issue_date.isoformat(), "currency": book.currency,
            "pricebook_version": book.version, "rules": rules_note(book),
        }
        doc["total_words"] = chinese_capital(doc["total_fen"])
        doc["labels"] = labels_for("invoice")
        docs.append(add_vat(doc, book.vat.snapshot()))
    return docs


def old_build_notices(accounts: pd.DataFrame, customers: pd.DataFrame, blocked: set[str], seller: dict,
                  book: PriceBook, period: str, issue_date: dt.date) -> list[dict]:
    """A renewal notice for each account due for renewal at the end of the period, an overdue notice for
    each account in grace (not invoices, not numbered as invoices)."""
    by_id = customers.loc[customers["valid"]].drop_duplicates("customer_id").set_index("customer_id")
    out = []
    due = accounts.loc[accounts["status"].isin(["renewal_due", "grace"]) & ~accounts["customer_id"].isin(blocked)]
    for rec in due.sort_values("customer_id").to_dict("records"):
        kind = "renewal" if rec["status"] == "renewal_due" else "overdue"
        expiry = to_date(rec["paid_through"])
        notice = {
            "notice_kind": kind, "seats": int(rec["seats"]), "paid_through": expiry.isoformat(),
            "window_opens_on": _d(rec["window_opens_on"]), "reclaim_on": _d(rec["reclaim_on"]),
            "grace_from": (expiry + dt.timedelta(days=1)).isoformat(),
            "quote_unit_fen": int(rec["quote_unit_fen"]), "quote_fen": int(rec["quote_fen"]),
            "quote_tier": str(rec["quote_tier"]),
            "new_term_start": (expiry + dt.timedelta(days=1)).isoformat(),
        }
        doc = {
            "kind": "notice", "notice": notice, "customer": customer_snapshot(
                {"customer_id": rec["customer_id"], **by_id.loc[rec["customer_id"]].to_dict()}),
            "seller": dict(seller), "period": period, "issue_date": issue_date.isoformat(),
            "currency": book.currency, "pricebook_version": book.version,
            "total_words": chinese_capital(int(rec["quote_fen"])), "rules": rules_note(book),
        }
        out.append(doc)
    return out

