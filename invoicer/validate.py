"""Raw roster cells -> typed frames plus Reject records, through a table of named checks.

A check is a function over one sheet's parsed cells (``CustomerCells`` or ``ChangeCells``) returning
``Finding``s: a column, a row mask and a plain reason. ``CUSTOMER_CHECKS`` and ``CHANGE_CHECKS`` list
them in the order they run; a row gets the reason of the first check that finds it (one reject per row),
and its row is dropped from the typed frame. Each check has a docstring and can be run alone:
``check_seats_in_range(customer_cells(frame, book))``. Nothing here stops the batch: ``validate``
always returns what could be used and everything that could not.

Before any check, text cells are normalised: surrounding white space (also non-breaking and ideographic
spaces) is trimmed, and the columns that hold ids, numbers, dates and type words are NFKC-normalised, so
full-width ``１２`` and ``２０２６－１０－０５`` read as 12 and 2026-10-05. Names, addresses, e-mail and
references keep their characters as typed (they are printed).

State-dependent checks (seat limits after a change, the renewal window, expired accounts) need the
account's history and live in ``pricing.engine``.
"""
from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable

import numpy as np
import pandas as pd

from .errors import Reject
from .money import MoneyError, yuan_to_fen
from .pricebook import PriceBook
from .pricing.dates import term_index_of_end
from .pricing.rules import opened_before_cutoff
from .roster import CONTROL_RE, ROW, CellProblem, RawRoster, escape_controls, is_blank

ID_CHARS_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
QQ_RE = re.compile(r"^(400|800)\d{7}$", re.ASCII)  # ASCII digits: what the platform and QQ take
PREFIX_RE = re.compile(r"^[A-Za-z0-9]{1,12}$")
TYPE_WORDS = {
    "add": "add", "加工号": "add", "加": "add",
    "remove": "remove", "减工号": "remove", "减": "remove",
    "renew": "renew", "续费": "renew", "续约": "renew",
}
DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y年%m月%d日")
NOT_A_DATE = "not a date (use an Excel date or 2026-10-05, 2026/10/05, 2026年10月5日)"
# 05/01/2026, as a spreadsheet in an English locale exports dates: never guessed (1 May or 5 January?)
YEAR_LAST = re.compile(r"^\s*(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})\s*$")
# Dates outside these bounds are typing slips, and the date arithmetic of later years would overflow.
FIRST_DATE, LAST_DATE = dt.date(1980, 1, 1), dt.date(2099, 12, 31)
MAX_TEXT = {"name": 200, "address": 300, "email": 200, "tax_id": 40, "reference": 100,
            "phone": 100, "bank": 200, "bank_account": 100}
MAX_LEGACY_YUAN = 100_000  # per seat per year: far above any price the sheet ever had
# Columns whose text is NFKC-normalised (full-width digits, letters and punctuation become ASCII).
NFKC_COLUMNS = {"customer_id", "opened_on", "seats", "paid_through", "legacy_rate", "qq_number", "tax_id",
                "date", "type"}


def not_a_date(value: object, _row: int = 0) -> str:
    """Why a date cell was refused: NOT_A_DATE, or for a year-last date (05/01/2026) how to write it
    year first: it is never read as one, since the order of day and month cannot be told from the text."""
    m = YEAR_LAST.match(value) if isinstance(value, str) else None
    if m is None:
        return NOT_A_DATE
    a, b, year = (int(x) for x in m.groups())
    readings = set()
    for month, day in ((a, b), (b, a)):
        try:
            readings.add(dt.date(year, month, day).isoformat())
        except ValueError:
            pass
    if not readings:
        return NOT_A_DATE
    if len(readings) == 1:
        return f"not a date: write the year first ({readings.pop()}) or use an Excel date"
    return (f"not a date: day and month order unknown ({' or '.join(sorted(readings))}?); write the year "
            f"first or use an Excel date")


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
    """A cell as shown in a reject: numbers without '.0', dates ISO, control characters escaped."""
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e16:
        return str(int(v))
    if isinstance(v, (dt.datetime, dt.date)):
        return v.isoformat()
    return escape_controls(str(v))


def as_text(v: object) -> str:
    """A cell as text: numbers typed into text columns (ids, QQ numbers) lose their '.0'."""
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e16:
        return str(int(v))
    return str(v).strip()


def normalise(v: object, column: str) -> object:
    """A raw cell made comparable: text trimmed of any white space (NBSP, U+3000 too), and NFKC-normalised
    in the id, number, date and type columns. Other cells are returned as they are."""
    if isinstance(v, str):
        v = v.strip()
        if column in NFKC_COLUMNS:
            v = unicodedata.normalize("NFKC", v).strip()
        return v
    return v


def customer_key(v: object) -> tuple[str, str] | None:
    """(key, id) of a raw customer_id cell: the id as the checks read it, and the key it is compared by
    (ignoring case: check_duplicate_ids, blocked ids); None for a blank or unreadable cell. The roster is
    staged and partitioned by this key (stage.py), so it must stay the checks' own reading of an id."""
    if isinstance(v, CellProblem):
        return None
    text = as_text(normalise(v, "customer_id"))
    return (text.casefold(), text) if text else None


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
    """A whole number from a number cell or digits typed as text (any size: range checks come later)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return int(v) if v.is_integer() else None
    if isinstance(v, str) and re.fullmatch(r"\s*[0-9]+(\.0+)?\s*", v):  # not other scripts' digits (٣)
        return int(v.strip().split(".")[0])
    return None


def _in_date_range(d: dt.date | None) -> bool:
    return d is not None and FIRST_DATE <= d <= LAST_DATE


def _huge(v: object) -> bool:
    """A number too large to be a price (1e308, thirty digits), as opposed to text that is no number."""
    try:
        return abs(Decimal(str(v).strip().replace(",", ""))) > MAX_LEGACY_YUAN
    except (ArithmeticError, ValueError):
        return False


def _small(n: int | None) -> int:
    """n as a value int64 can hold (0 for None or a number far out of range; its row is rejected)."""
    return n if n is not None and -(2 ** 62) < n < 2 ** 62 else 0


Reason = str | Callable[[object, int], str]


@dataclass(frozen=True)
class Finding:
    """Rows (mask) of one column that a check rejects, and why (text, or a function of value and row)."""

    column: str
    mask: np.ndarray
    reason: Reason


class _Collector:
    def __init__(self, sheet: str, frame: pd.DataFrame):
        self.sheet, self.frame = sheet, frame
        self.rejects: list[Reject] = []
        self.bad = np.zeros(len(frame), dtype=bool)

    def reject(self, mask, column: str, reason: Reason) -> None:
        """Reject the rows where mask is True; reason is a string or a function of the cell value."""
        mask = np.asarray(mask, dtype=bool) & ~self.bad  # one reason per row: the first found
        for i in np.flatnonzero(mask):
            value = self.frame[column].iat[i] if column in self.frame else None
            if isinstance(value, CellProblem):
                value = value.value
            text = reason(value, i) if callable(reason) else reason
            cid = as_text(self.frame["customer_id"].iat[i]) if "customer_id" in self.frame else ""
            self.rejects.append(Reject(self.sheet, int(self.frame[ROW].iat[i]), column, display(value), text,
                                       escape_controls(cid)))
        self.bad |= mask


def _blank_mask(values) -> np.ndarray:
    return np.array([is_blank(v) for v in values], dtype=bool)


def _mask(values) -> np.ndarray:
    return np.array(list(values), dtype=bool)


def validate(raw: RawRoster, book: PriceBook) -> Roster:
    """Turn raw roster cells into typed frames, rejecting every bad cell with a reason.

    In: the ``RawRoster`` from ``roster.read_roster`` and the price book (seat limits, legacy cutoff,
    default prefix). Out: a ``Roster`` with ``customers`` (every row, a ``valid`` column saying which may be
    billed) and ``changes`` (valid rows only), the reseller block, the rejects (one per bad row: the first
    check in ``CUSTOMER_CHECKS``/``CHANGE_CHECKS`` that finds it) and ``blocked``: the ids that get no
    invoice, compared ignoring case (an id differing only in case from a rejected row is held too).
    Never raises for a cell's content.
    """
    customers, c_rejects = _customers(raw, book)
    changes, ch_rejects = _changes(raw, customers, book)
    reseller, warnings = _reseller(raw.reseller, book)
    rejects = c_rejects + ch_rejects
    held_folded = {r.customer_id.casefold() for r in rejects if r.customer_id}
    blocked = {r.customer_id for r in rejects if r.customer_id}
    blocked |= {cid for cid in customers["customer_id"] if cid and cid.casefold() in held_folded}
    return Roster(customers, changes, reseller, rejects, raw.warnings + warnings, blocked)


# ---------------------------------------------------------------- customers


@dataclass
class CustomerCells:
    """The customers sheet, normalised and parsed once, for the checks to read."""

    frame: pd.DataFrame  # raw cells (for the reject's value)
    book: PriceBook
    cells: dict[str, list]  # normalised cells per column
    ids: np.ndarray
    opened: list
    seats: list
    paid: list
    legacy_fen: np.ndarray
    legacy_error: np.ndarray  # 0 ok or blank, 1 not an amount, 2 too large
    opened_arr: np.ndarray
    paid_arr: np.ndarray
    term_k: np.ndarray
    term_ok: np.ndarray


def customer_cells(frame: pd.DataFrame, book: PriceBook) -> CustomerCells:
    """Parse the raw customers frame (roster columns plus ``_row``) for the checks."""
    cells = {c: [None if isinstance(v, CellProblem) else normalise(v, c) for v in frame[c]]
             for c in frame.columns if c != ROW}
    ids = np.array([as_text(v) for v in cells["customer_id"]], dtype=object)
    opened = [parse_date(v) for v in cells["opened_on"]]
    opened = [d if _in_date_range(d) else None for d in opened]
    paid = [None if is_blank(v) else parse_date(v) for v in cells["paid_through"]]
    paid = [d if _in_date_range(d) else None for d in paid]
    n = len(frame)
    legacy_fen = np.zeros(n, dtype=np.int64)
    legacy_error = np.zeros(n, dtype=np.int8)
    for i, v in enumerate(cells["legacy_rate"]):
        if is_blank(v):
            continue
        try:
            fen = yuan_to_fen(v if not isinstance(v, float) else repr(v))
        except (MoneyError, ArithmeticError, ValueError):
            legacy_error[i] = 2 if _huge(v) else 1
            continue
        if fen <= 0:
            legacy_error[i] = 1
        elif fen > MAX_LEGACY_YUAN * 100:
            legacy_error[i] = 2
        else:
            legacy_fen[i] = fen
    opened_arr = np.array([d or dt.date(1970, 1, 1) for d in opened], dtype="datetime64[D]")
    paid_arr = np.array([p or dt.date(1970, 1, 1) for p in paid], dtype="datetime64[D]")
    k, ok = term_index_of_end(opened_arr, paid_arr)
    return CustomerCells(frame, book, cells, ids, opened, [parse_whole(v) for v in cells["seats"]], paid,
                         legacy_fen, legacy_error, opened_arr, paid_arr, k, ok)


def check_cell_problems(c) -> list[Finding]:
    """A cell the reader could not take as it is: an error cell (#N/A, #REF!...), a formula without a
    saved value, a text over the length limit. Runs first, on either sheet."""
    return [Finding(col, _mask(isinstance(v, CellProblem) for v in c.frame[col]),
                    lambda v, i, col=col: _problem_reason(c.frame[col].iat[i]))
            for col in c.frame.columns if col != ROW]


def _problem_reason(v: object) -> str:
    return v.reason if isinstance(v, CellProblem) else ""


def check_customer_required(c: CustomerCells) -> list[Finding]:
    """customer_id, name, opened_on and seats must not be blank."""
    return [Finding(col, _blank_mask(c.cells[col]), "required value is blank")
            for col in ("customer_id", "name", "opened_on", "seats")]


def check_customer_id_format(c: CustomerCells) -> list[Finding]:
    """An id names files: letters, digits, '-' and '_' only, at most 64, starting with a letter or digit."""
    return [
        Finding("customer_id", _mask(not ID_CHARS_RE.match(x) for x in c.ids),
                "customer_id may only hold letters, digits, '-' and '_' (at most 64): it names files"),
        Finding("customer_id", _mask(not ID_RE.match(x) for x in c.ids),
                "customer_id must start with a letter or digit: it names files"),
    ]


def check_duplicate_ids(c: CustomerCells) -> list[Finding]:
    """A second row with the same id, compared ignoring case (ids name files on case-insensitive disks)."""
    folded = pd.Series([x.casefold() for x in c.ids], dtype=object)
    dup = folded.duplicated().to_numpy()
    first_row = dict(zip(folded[~dup], c.frame[ROW].to_numpy()[~dup]))
    return [Finding("customer_id", dup, lambda v, i: f"duplicate customer_id: already on row {first_row[folded[i]]}")]


def _control_findings(cells: dict[str, list], columns) -> list[Finding]:
    return [Finding(col, _mask(isinstance(v, str) and CONTROL_RE.search(v) is not None for v in cells[col]),
                    lambda v, i, col=col: "contains a control character "
                                          f"({escape_controls(CONTROL_RE.search(str(v)).group())}); remove it")
            for col in columns if col in cells]


def check_customer_control_characters(c: CustomerCells) -> list[Finding]:
    """No control characters (vertical tab, ESC...) in text: they are invisible, and break the summary
    workbook and file names. Tab, line feed and carriage return are allowed."""
    return _control_findings(c.cells, ("name", "email", "address", "tax_id", "qq_number"))


def check_opened_on(c: CustomerCells) -> list[Finding]:
    """opened_on is a date (an Excel date or text in one of three layouts) from 1980 to 2099."""
    return [Finding("opened_on", _mask(d is None for d in c.opened), not_a_date)]


def check_seats_whole(c: CustomerCells) -> list[Finding]:
    """seats is a whole number."""
    return [Finding("seats", _mask(s is None for s in c.seats), "seats must be a whole number")]


def check_seats_in_range(c: CustomerCells) -> list[Finding]:
    """seats is within the price book's seat limits (3 to 50 by default)."""
    lo, hi = c.book.min_seats, c.book.max_seats
    return [Finding("seats", _mask(s is not None and not lo <= s <= hi for s in c.seats),
                    f"an account has {lo} to {hi} seats")]


def check_paid_through_date(c: CustomerCells) -> list[Finding]:
    """paid_through, when given, is a date from 1980 to 2099."""
    return [Finding("paid_through", _mask(not is_blank(v) and p is None
                                          for v, p in zip(c.cells["paid_through"], c.paid)), not_a_date)]


def check_paid_through_term_end(c: CustomerCells) -> list[Finding]:
    """paid_through, when given, is the last day of a term of the account."""
    has_paid = _mask(p is not None for p in c.paid)
    return [Finding("paid_through", has_paid & ~c.term_ok,
                    lambda v, i: f"paid_through must be the last day of a term (a term ends the day before an "
                                 f"anniversary of opened_on {c.opened[i]}), e.g. {_first_end(c.opened[i])}")]


def check_legacy_rate_amount(c: CustomerCells) -> list[Finding]:
    """legacy_rate, when given, is a positive amount in yuan with at most two decimals, and a plausible
    price (at most 100,000 yuan per seat per year)."""
    return [
        Finding("legacy_rate", c.legacy_error == 1,
                "legacy_rate must be a positive amount in yuan with at most two decimals"),
        Finding("legacy_rate", c.legacy_error == 2,
                f"legacy_rate must be at most {MAX_LEGACY_YUAN} yuan per seat per year"),
    ]


def check_legacy_rate_cutoff(c: CustomerCells) -> list[Finding]:
    """legacy_rate only for accounts opened before the price book's legacy cutoff (2010-03-01)."""
    given = ~_blank_mask(c.cells["legacy_rate"])
    return [Finding("legacy_rate", given & ~opened_before_cutoff(c.opened_arr, c.book),
                    f"legacy_rate applies only to accounts opened before {c.book.legacy_cutoff}")]


def check_qq_number(c: CustomerCells) -> list[Finding]:
    """qq_number, when given, is 10 digits starting with 400 or 800."""
    return [Finding("qq_number", _mask(bool(q) and not QQ_RE.match(q) for q in map(as_text, c.cells["qq_number"])),
                    "enterprise QQ number must be 10 digits starting with 400 or 800")]


def check_customer_text_length(c: CustomerCells) -> list[Finding]:
    """Printed texts fit their box: name 200, address 300, email 200, tax_id 40 characters."""
    return [Finding(col, _mask(len(as_text(v)) > limit for v in c.cells[col]), f"longer than {limit} characters")
            for col, limit in MAX_TEXT.items() if col in c.cells]


def check_tax_id(c: CustomerCells) -> list[Finding]:
    """tax_id, when given, is a buyer tax id the e-fapiao platform accepts (taxid.tax_id_problem: an 18-character
    统一社会信用代码 with its GB 32100-2015 check character, or an older form)."""
    from .taxid import tax_id_problem

    problems = [tax_id_problem(as_text(v)) for v in c.cells["tax_id"]]
    return [Finding("tax_id", _mask(p is not None for p in problems), lambda v, i: problems[i])]


def fapiao_kinds(cells: dict[str, list]) -> list[str | None]:
    """The canonical fapiao kind per row: '' for blank (the price book's default), None when unknown."""
    return [FAPIAO_KIND_WORDS.get(as_text(v).casefold(), None) if not is_blank(v) else "" for v in cells["fapiao_kind"]]


def check_fapiao_kind(c: CustomerCells) -> list[Finding]:
    """fapiao_kind (发票类型), when given, is 普通发票 or 增值税专用发票 (or one of their short names)."""
    return [Finding("fapiao_kind", _mask(k is None for k in fapiao_kinds(c.cells)),
                    "fapiao_kind (发票类型) must be 普通发票 (普票) or 增值税专用发票 (专票), or blank for the price book's")]


def check_bank_account(c: CustomerCells) -> list[Finding]:
    """A bank account typed as a number: Excel keeps 15 significant digits, so its tail is already lost."""
    return [Finding("bank_account", _mask(isinstance(v, (int, float)) and not isinstance(v, bool) and len(display(v)) > 15
                                          for v in c.frame["bank_account"]),
                    "a bank account typed as a number loses digits in Excel (it keeps 15); type it as text")]


# The customers checks, in the order they run (a row gets the first reason found).
CUSTOMER_CHECKS: tuple[Callable[[CustomerCells], list[Finding]], ...] = (
    check_cell_problems,
    check_customer_required,
    check_customer_id_format,
    check_duplicate_ids,
    check_customer_control_characters,
    check_opened_on,
    check_seats_whole,
    check_seats_in_range,
    check_paid_through_date,
    check_paid_through_term_end,
    check_legacy_rate_amount,
    check_legacy_rate_cutoff,
    check_qq_number,
    check_tax_id,
    check_fapiao_kind,
    check_bank_account,
    check_customer_text_length,
)


def run_checks(checks, cells, sheet: str) -> _Collector:
    """Run each check in order over one sheet's cells; the collector holds the rejects and the bad rows."""
    col = _Collector(sheet, cells.frame)
    for check in checks:
        for f in check(cells):
            col.reject(f.mask, f.column, f.reason)
    return col


def _customers(raw: RawRoster, book: PriceBook) -> tuple[pd.DataFrame, list[Reject]]:
    c = customer_cells(raw.customers, book)
    col = run_checks(CUSTOMER_CHECKS, c, raw.sheet_titles["customers"])
    has_paid = _mask(p is not None for p in c.paid)
    first_end = np.array(
        [np.datetime64(_first_end(d), "D") if d else np.datetime64("1970-01-01") for d in c.opened],
        dtype="datetime64[D]",
    )
    out = pd.DataFrame({
        "customer_id": c.ids,
        "name": [as_text(v) for v in c.cells["name"]],
        "opened_on": c.opened_arr,
        "seats": np.array([_small(s) for s in c.seats], dtype=np.int64),
        "paid_through": np.where(has_paid, c.paid_arr, first_end),
        "term0": np.where(has_paid, np.maximum(c.term_k, 0), 0).astype(np.int64),
        "legacy_fen": c.legacy_fen,
        "qq_number": [as_text(v) for v in c.cells["qq_number"]],
        "email": [as_text(v) for v in c.cells["email"]],
        "address": [as_text(v) for v in c.cells["address"]],
        "tax_id": [as_text(v) for v in c.cells["tax_id"]],
        "fapiao_kind": [k or "" for k in fapiao_kinds(c.cells)],
        "phone": [as_text(v) for v in c.cells["phone"]],
        "bank": [as_text(v) for v in c.cells["bank"]],
        "bank_account": [as_text(v) for v in c.cells["bank_account"]],
        "row": raw.customers[ROW].to_numpy(dtype=np.int64),
    })
    # a rejected customer row keeps its id in the frame only to hold its changes back (see _changes)
    out["valid"] = ~col.bad
    return out, col.rejects


# fapiao_kind words (the e-fapiao platform's two kinds, and what a clerk types for them)
FAPIAO_KIND_WORDS = {"普通发票": "普通发票", "普票": "普通发票", "电子普通发票": "普通发票", "normal": "普通发票",
                     "增值税专用发票": "增值税专用发票", "专用发票": "增值税专用发票", "专票": "增值税专用发票",
                     "special": "增值税专用发票"}


def _first_end(opened: dt.date) -> dt.date:
    from .pricing.dates import term_end, to_date

    return to_date(term_end(np.datetime64(opened, "D"), 0))


# ---------------------------------------------------------------- changes


@dataclass
class ChangeCells:
    """The changes sheet, normalised and parsed once, for the checks to read."""

    frame: pd.DataFrame
    customers: pd.DataFrame  # validate's typed customers (every row, with ``valid``)
    customers_sheet: str
    cells: dict[str, list]
    ids: np.ndarray
    dates: list
    types: list
    seats: list
    book: PriceBook | None = None


def change_cells(frame: pd.DataFrame, customers: pd.DataFrame, customers_sheet: str = "customers",
                 book: PriceBook | None = None) -> ChangeCells:
    """Parse the raw changes frame for the checks, against the typed customers."""
    cells = {c: [None if isinstance(v, CellProblem) else normalise(v, c) for v in frame[c]]
             for c in frame.columns if c != ROW}
    dates = [parse_date(v) for v in cells["date"]]
    return ChangeCells(
        frame, customers, customers_sheet, cells,
        np.array([as_text(v) for v in cells["customer_id"]], dtype=object),
        [d if _in_date_range(d) else None for d in dates],
        [TYPE_WORDS.get(as_text(v).casefold()) for v in cells["type"]],
        [parse_whole(v) for v in cells["seats"]],
        book,
    )


def check_change_required(c: ChangeCells) -> list[Finding]:
    """customer_id, date and type must not be blank."""
    return [Finding(col, _blank_mask(c.cells[col]), "required value is blank") for col in ("customer_id", "date", "type")]


def check_change_customer_known(c: ChangeCells) -> list[Finding]:
    """The row's customer_id is a row of the customers sheet."""
    known = set(c.customers["customer_id"])
    return [Finding("customer_id", _mask(x not in known for x in c.ids),
                    f"no such customer in sheet '{c.customers_sheet}'")]


def check_change_customer_held(c: ChangeCells) -> list[Finding]:
    """A change of a customer whose own row was rejected is held back (no partial invoice)."""
    invalid = c.customers.loc[~c.customers["valid"]].drop_duplicates("customer_id")
    held = dict(zip(invalid["customer_id"], invalid["row"]))
    return [Finding("customer_id", _mask(x in held for x in c.ids),
                    lambda v, i: f"held back: this customer's row {held[c.ids[i]]} in '{c.customers_sheet}' "
                                 f"was rejected")]


def check_change_control_characters(c: ChangeCells) -> list[Finding]:
    """No control characters in the type or reference (see the customers' check)."""
    return _control_findings(c.cells, ("type", "reference"))


def check_change_date(c: ChangeCells) -> list[Finding]:
    """date is a date (an Excel date or text in one of three layouts) from 1980 to 2099."""
    return [Finding("date", _mask(d is None for d in c.dates), not_a_date)]


def check_change_type(c: ChangeCells) -> list[Finding]:
    """type is add, remove or renew (or 加工号, 减工号, 续费/续约)."""
    return [Finding("type", _mask(t is None for t in c.types), "type must be add (加工号), remove (减工号) or renew (续费)")]


def check_change_seats(c: ChangeCells) -> list[Finding]:
    """add and remove rows carry a positive whole number of seats, at most an account's maximum."""
    needs = _mask(t in ("add", "remove") for t in c.types)
    blank = _blank_mask(c.cells["seats"])
    most = c.book.max_seats if c.book else 50
    return [
        Finding("seats", needs & blank, "add and remove rows need the number of seats"),
        Finding("seats", needs & ~blank & _mask(s is None or s <= 0 for s in c.seats),
                "seats must be a positive whole number"),
        Finding("seats", needs & _mask(s is not None and s > most for s in c.seats),
                f"an account has at most {most} seats: a change cannot add or remove more"),
    ]


def check_reference_length(c: ChangeCells) -> list[Finding]:
    """reference fits its box: at most 100 characters."""
    limit = MAX_TEXT["reference"]
    return [Finding("reference", _mask(len(as_text(v)) > limit for v in c.cells["reference"]),
                    f"longer than {limit} characters")]


# The changes checks, in the order they run (a row gets the first reason found).
CHANGE_CHECKS: tuple[Callable[[ChangeCells], list[Finding]], ...] = (
    check_cell_problems,
    check_change_required,
    check_change_customer_known,
    check_change_customer_held,
    check_change_control_characters,
    check_change_date,
    check_change_type,
    check_change_seats,
    check_reference_length,
)


def _changes(raw: RawRoster, customers: pd.DataFrame, book: PriceBook | None = None
             ) -> tuple[pd.DataFrame, list[Reject]]:
    c = change_cells(raw.changes, customers, raw.sheet_titles["customers"], book)
    col = run_checks(CHANGE_CHECKS, c, raw.sheet_titles["changes"])
    out = pd.DataFrame({
        "customer_id": c.ids,
        "date": np.array([d or dt.date(1970, 1, 1) for d in c.dates], dtype="datetime64[D]"),
        "type": [t or "" for t in c.types],
        "seats": np.array([_small(s) if t in ("add", "remove") else 0 for s, t in zip(c.seats, c.types)],
                          dtype=np.int64),
        "reference": [as_text(v) for v in c.cells["reference"]],
        "row": raw.changes[ROW].to_numpy(dtype=np.int64),
    })
    out = out.loc[~col.bad].reset_index(drop=True)
    return out, col.rejects


def _reseller(values: dict[str, str], book: PriceBook) -> tuple[dict[str, str], list[str]]:
    """The seller block. The reseller sheet has no rows to reject, so control characters are removed
    (with a note) rather than refused."""
    warnings = []
    clean = {}
    for k, v in values.items():
        if CONTROL_RE.search(v):
            warnings.append(f"reseller {k}: control characters removed from '{escape_controls(v)}'")
            v = CONTROL_RE.sub("", v)
        clean[k] = v
    out = {k: clean.get(k, "") for k in ("name", "tax_id", "address", "phone", "bank")}
    prefix = clean.get("invoice_prefix", "") or book.default_prefix
    if not PREFIX_RE.match(prefix):
        warnings.append(f"invoice_prefix '{escape_controls(prefix)}' is not 1-12 letters or digits; "
                        f"using '{book.default_prefix}'")
        prefix = book.default_prefix
    out["invoice_prefix"] = prefix
    return out, warnings
