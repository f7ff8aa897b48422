"""Raw roster cells -> typed frames plus Reject records.

Each check is a named function over a whole column; a bad cell becomes a ``Reject`` carrying sheet, row,
column, value and a plain reason, and its row is dropped from the typed frame. Nothing here stops the
batch: ``validate`` always returns what could be used and everything that could not.
State-dependent checks (seat limits after a change, the renewal window, expired accounts) need the
account's history and live in ``pricing.engine``.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .errors import Reject
from .money import MoneyError, yuan_to_fen
from .pricebook import PriceBook
from .pricing.dates import term_index_of_end
from .roster import ROW, RawRoster, is_blank

ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
QQ_RE = re.compile(r"^(400|800)\d{7}$")
PREFIX_RE = re.compile(r"^[A-Za-z0-9]{1,12}$")
TYPE_WORDS = {
    "add": "add", "加工号": "add", "加": "add",
    "remove": "remove", "减工号": "remove", "减": "remove",
    "renew": "renew", "续费": "renew", "续约": "renew",
}
DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y年%m月%d日")
MAX_TEXT = {"name": 200, "address": 300, "email": 200, "tax_id": 40, "reference": 100,
            "phone": 100, "bank": 200, "bank_account": 100}  # the last three: h-fapiao


@dataclass
class Roster:
    """The typed roster: one frame per sheet, money in fen, dates as datetime64, plus the rejects."""

    customers: pd.DataFrame
    changes: pd.DataFrame
    reseller: dict[str, str]
    rejects: list[Reject] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    blocked: set[str] = field(default_factory=set)  # customer ids with a rejected row: no invoice


def display(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (dt.datetime, dt.date)):
        return v.isoformat()
    return str(v)


def as_text(v: object) -> str:
    """A cell as text: numbers typed into text columns (ids, QQ numbers) lose their '.0'."""
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()


def parse_date(v: object) -> dt.date | None:
    """An Excel date cell, or text in one of 2026-10-05, 2026/10/05, 2026年10月5日. None if neither."""
    if isinstance(v, dt.datetime):
        return v.date()
    if isinstance(v, dt.date):
        return v
    if isinstance(v, str):
        s = v.strip()
        for f in DATE_FORMATS:
            try:
                return dt.datetime.strptime(s, f).date()
            except ValueError:
                pass
    return None


def parse_whole(v: object) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return int(v) if v.is_integer() else None
    if isinstance(v, str) and re.fullmatch(r"\s*\d+(\.0+)?\s*", v):
        return int(float(v))
    return None


class _Collector:
    def __init__(self, sheet: str, frame: pd.DataFrame):
        self.sheet, self.frame = sheet, frame
        self.rejects: list[Reject] = []
        self.bad = np.zeros(len(frame), dtype=bool)

    def reject(self, mask, column: str, reason, ids=None) -> None:
        """Reject the rows where mask is True; reason is a string or a function of the cell value."""
        mask = np.asarray(mask, dtype=bool) & ~self.bad  # one reason per row: the first found
        for i in np.flatnonzero(mask):
            value = self.frame[column].iat[i] if column in self.frame else None
            text = reason(value, i) if callable(reason) else reason
            cid = as_text(self.frame["customer_id"].iat[i]) if "customer_id" in self.frame else ""
            self.rejects.append(Reject(self.sheet, int(self.frame[ROW].iat[i]), column, display(value), text, cid))
        self.bad |= mask


def _blank_mask(s: pd.Series) -> np.ndarray:
    return np.array([is_blank(v) for v in s], dtype=bool)


def validate(raw: RawRoster, book: PriceBook) -> Roster:
    customers, c_rejects = _customers(raw, book)
    changes, ch_rejects = _changes(raw, customers)
    reseller, warnings = _reseller(raw.reseller, book)
    rejects = c_rejects + ch_rejects
    blocked = {r.customer_id for r in rejects if r.customer_id}
    return Roster(customers, changes, reseller, rejects, raw.warnings + warnings, blocked)


def _customers(raw: RawRoster, book: PriceBook) -> tuple[pd.DataFrame, list[Reject]]:
    f = raw.customers
    sheet = raw.sheet_titles["customers"]
    col = _Collector(sheet, f)
    n = len(f)
    ids = np.array([as_text(v) for v in f["customer_id"]], dtype=object)
    for c in ("customer_id", "name", "opened_on", "seats"):
        col.reject(_blank_mask(f[c]), c, "required value is blank")
    col.reject(np.array([not ID_RE.match(x) for x in ids], dtype=bool), "customer_id",
               "customer_id may only hold letters, digits, '-' and '_' (at most 64): it names files")
    # duplicates compare case-insensitively, because ids name files on case-insensitive disks too
    folded = pd.Series([x.casefold() for x in ids])
    first_row = dict(zip(folded[~folded.duplicated()], f[ROW][~folded.duplicated().to_numpy()]))
    dup = folded.duplicated().to_numpy()
    col.reject(dup, "customer_id", lambda v, i: f"duplicate customer_id: already on row {first_row[folded[i]]}")
    names = [as_text(v) for v in f["name"]]
    opened = [parse_date(v) for v in f["opened_on"]]
    col.reject(np.array([d is None for d in opened]), "opened_on",
               "not a date (use an Excel date or 2026-10-05, 2026/10/05, 2026年10月5日)")
    seats = [parse_whole(v) for v in f["seats"]]
    col.reject(np.array([s is None for s in seats]), "seats", "seats must be a whole number")
    col.reject(np.array([s is not None and not book.min_seats <= s <= book.max_seats for s in seats]), "seats",
               f"an account has {book.min_seats} to {book.max_seats} seats")
    paid = [None if is_blank(v) else parse_date(v) for v in f["paid_through"]]
    col.reject(np.array([not is_blank(v) and p is None for v, p in zip(f["paid_through"], paid)]),
               "paid_through", "not a date (use an Excel date or 2026-10-05, 2026/10/05, 2026年10月5日)")
    opened_arr = np.array([d or dt.date(1970, 1, 1) for d in opened], dtype="datetime64[D]")
    paid_arr = np.array([p or dt.date(1970, 1, 1) for p in paid], dtype="datetime64[D]")
    k, ok = term_index_of_end(opened_arr, paid_arr)
    has_paid = np.array([p is not None for p in paid], dtype=bool)
    col.reject(has_paid & ~ok, "paid_through",
               lambda v, i: f"paid_through must be the last day of a term (a term ends the day before an "
                            f"anniversary of opened_on {opened[i]}), e.g. {_first_end(opened[i])}")
    legacy_fen = np.zeros(n, dtype=np.int64)
    legacy_bad = np.zeros(n, dtype=bool)
    legacy_given = ~_blank_mask(f["legacy_rate"])
    for i in np.flatnonzero(legacy_given):
        v = f["legacy_rate"].iat[i]
        try:
            legacy_fen[i] = yuan_to_fen(v if not isinstance(v, float) else repr(v))
            legacy_bad[i] = legacy_fen[i] <= 0
        except MoneyError:
            legacy_bad[i] = True
    col.reject(legacy_bad, "legacy_rate", "legacy_rate must be a positive amount in yuan with at most two decimals")
    cutoff = np.datetime64(book.legacy_cutoff, "D")
    col.reject(legacy_given & (opened_arr >= cutoff), "legacy_rate",
               f"legacy_rate applies only to accounts opened before {book.legacy_cutoff}")
    qq = [as_text(v) for v in f["qq_number"]]
    col.reject(np.array([bool(q) and not QQ_RE.match(q) for q in qq]), "qq_number",
               "enterprise QQ number must be 10 digits starting with 400 or 800")
    # --- h-fapiao: the buyer's tax id and the e-fapiao columns
    fapiao_kinds = _check_fapiao_columns(f, col)
    # --- end h-fapiao
    for c, limit in MAX_TEXT.items():
        if c in f:
            col.reject(np.array([len(as_text(v)) > limit for v in f[c]]), c, f"longer than {limit} characters")
    first_end = np.array(
        [np.datetime64(_first_end(d), "D") if d else np.datetime64("1970-01-01") for d in opened],
        dtype="datetime64[D]",
    )
    out = pd.DataFrame({
        "customer_id": ids,
        "name": names,
        "opened_on": opened_arr,
        "seats": np.array([s or 0 for s in seats], dtype=np.int64),
        "paid_through": np.where(has_paid, paid_arr, first_end),
        "term0": np.where(has_paid, np.maximum(k, 0), 0).astype(np.int64),
        "legacy_fen": legacy_fen,
        "qq_number": qq,
        "email": [as_text(v) for v in f["email"]],
        "address": [as_text(v) for v in f["address"]],
        "tax_id": [as_text(v) for v in f["tax_id"]],
        "fapiao_kind": fapiao_kinds,  # h-fapiao
        "phone": [as_text(v) for v in f["phone"]],  # h-fapiao
        "bank": [as_text(v) for v in f["bank"]],  # h-fapiao
        "bank_account": [as_text(v) for v in f["bank_account"]],  # h-fapiao
        "row": f[ROW].to_numpy(dtype=np.int64),
    })
    # a rejected customer row keeps its id in the frame only to hold its changes back (see _changes)
    out["valid"] = ~col.bad
    return out, col.rejects


# --- h-fapiao
FAPIAO_KIND_WORDS = {"普通发票": "普通发票", "普票": "普通发票", "电子普通发票": "普通发票", "normal": "普通发票",
                     "增值税专用发票": "增值税专用发票", "专用发票": "增值税专用发票", "专票": "增值税专用发票",
                     "special": "增值税专用发票"}


def _check_fapiao_columns(f: pd.DataFrame, col: _Collector) -> list[str]:
    """The buyer's tax id (taxid.tax_id_problem) and the fapiao kind (blank: the price book's default).
    Returns the canonical fapiao kind per row ('' for blank)."""
    from .taxid import tax_id_problem

    problems = [tax_id_problem(as_text(v)) for v in f["tax_id"]]
    col.reject(np.array([p is not None for p in problems]), "tax_id", lambda v, i: problems[i])
    kinds = [FAPIAO_KIND_WORDS.get(as_text(v).casefold(), None) if not is_blank(v) else "" for v in f["fapiao_kind"]]
    col.reject(np.array([k is None for k in kinds]), "fapiao_kind",
               "fapiao_kind (发票类型) must be 普通发票 (普票) or 增值税专用发票 (专票), or blank for the price book's")
    # Excel keeps 15 significant digits: an account number typed as a number has already lost its tail
    col.reject(np.array([isinstance(v, (int, float)) and not isinstance(v, bool) and len(display(v)) > 15
                         for v in f["bank_account"]]), "bank_account",
               "a bank account typed as a number loses digits in Excel (it keeps 15); type it as text")
    return [k or "" for k in kinds]
# --- end h-fapiao


def _first_end(opened: dt.date) -> dt.date:
    from .pricing.dates import term_end, to_date

    return to_date(term_end(np.datetime64(opened, "D"), 0))


def _changes(raw: RawRoster, customers: pd.DataFrame) -> tuple[pd.DataFrame, list[Reject]]:
    f = raw.changes
    sheet = raw.sheet_titles["changes"]
    cust_sheet = raw.sheet_titles["customers"]
    col = _Collector(sheet, f)
    ids = np.array([as_text(v) for v in f["customer_id"]], dtype=object)
    for c in ("customer_id", "date", "type"):
        col.reject(_blank_mask(f[c]), c, "required value is blank")
    known = set(customers["customer_id"])
    col.reject(np.array([x not in known for x in ids]), "customer_id", f"no such customer in sheet '{cust_sheet}'")
    invalid = customers.loc[~customers["valid"]].drop_duplicates("customer_id")
    held = dict(zip(invalid["customer_id"], invalid["row"]))
    col.reject(np.array([x in held for x in ids]), "customer_id",
               lambda v, i: f"held back: this customer's row {held[ids[i]]} in '{cust_sheet}' was rejected")
    dates = [parse_date(v) for v in f["date"]]
    col.reject(np.array([d is None for d in dates]), "date",
               "not a date (use an Excel date or 2026-10-05, 2026/10/05, 2026年10月5日)")
    types = [TYPE_WORDS.get(as_text(v).casefold()) for v in f["type"]]
    col.reject(np.array([t is None for t in types]), "type",
               "type must be add (加工号), remove (减工号) or renew (续费)")
    seats = [parse_whole(v) for v in f["seats"]]
    needs_seats = np.array([t in ("add", "remove") for t in types], dtype=bool)
    blank_seats = _blank_mask(f["seats"])
    col.reject(needs_seats & blank_seats, "seats", "add and remove rows need the number of seats")
    col.reject(needs_seats & ~blank_seats & np.array([s is None or s <= 0 for s in seats], dtype=bool), "seats",
               "seats must be a positive whole number")
    col.reject(np.array([len(as_text(v)) > MAX_TEXT["reference"] for v in f["reference"]]), "reference",
               f"longer than {MAX_TEXT['reference']} characters")
    out = pd.DataFrame({
        "customer_id": ids,
        "date": np.array([d or dt.date(1970, 1, 1) for d in dates], dtype="datetime64[D]"),
        "type": [t or "" for t in types],
        "seats": np.array([(s or 0) if t in ("add", "remove") else 0 for s, t in zip(seats, types)], dtype=np.int64),
        "reference": [as_text(v) for v in f["reference"]],
        "row": f[ROW].to_numpy(dtype=np.int64),
    })
    out = out.loc[~col.bad].reset_index(drop=True)
    # Rejections that only hold rows back must not also block a customer id they do not belong to
    return out, col.rejects


def _reseller(values: dict[str, str], book: PriceBook) -> tuple[dict[str, str], list[str]]:
    out = {k: values.get(k, "") for k in ("name", "tax_id", "address", "phone", "bank")}
    prefix = values.get("invoice_prefix", "") or book.default_prefix
    warnings = []
    if not PREFIX_RE.match(prefix):
        warnings.append(f"invoice_prefix '{prefix}' is not 1-12 letters or digits; using '{book.default_prefix}'")
        prefix = book.default_prefix
    out["invoice_prefix"] = prefix
    return out, warnings
