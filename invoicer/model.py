"""The documents the invoicer issues, field by field: every key is documented here, once.

At run time a document is a plain JSON-able dict (``documents.py`` builds it, the ledger stores it whole,
templates, the summary and verify read it); these ``TypedDict`` types only describe it, so the snapshots
of old ledgers stay readable without a migration. Money is integer fen; dates are ISO text (``YYYY-MM-DD``)
or "" where a line has none.

The content hash (``documents.content_hash``) covers only ``HASHED_KEYS``: what a document says. Display
and derived fields (``total_words``, ``list_total_fen``, ``rules``, ``pricebook_version``, the number ...)
are left out, so adding one never turns an issued invoice into a "changed" one. A field added to a
document or a line must be declared here; ``tests/test_model.py`` fails on a key the types do not declare.

Layout (beancount's ``core/data.py`` idea: the data's shape in one place)::

    Invoice / CreditNote      Notice
      customer: Customer        customer: Customer
      seller: Seller            seller: Seller
      lines: [Line, ...]        notice: NoticeFacts
      rules: Rules              rules: Rules
"""
# no "from __future__ import annotations": Python 3.11 reads NotRequired only from real annotations
from typing import Literal, NotRequired, TypedDict, Union

# the document keys documents.content_hash reads (when present); equal hashes mean an unchanged document
HASHED_KEYS = ("kind", "customer", "seller", "lines", "total_fen", "period", "issue_date", "currency", "notice")


class Customer(TypedDict):
    """The customer as the roster gave it when the document was issued (a snapshot; later roster edits do
    not change an issued document). Every value is text, "" when the roster left it blank.

    Attributes:
      customer_id: the roster's id (letters, digits, ``-``, ``_``); it names notice files.
      name: the customer's name as printed.
      qq_number: the Enterprise QQ number (10 digits starting 400 or 800).
      email, address, tax_id: printed on the document.
    """
    customer_id: str
    name: str
    qq_number: str
    email: str
    address: str
    tax_id: str


class Seller(TypedDict, total=False):
    """The reseller (the roster's ``reseller`` sheet), copied onto the document. All text; a roster without
    a reseller sheet gives "" for each, and a document built outside a run may have none of them.

    Attributes:
      name, tax_id, address, phone, bank: printed in the document's header.
      invoice_prefix: the number series (``SZTY`` in SZTY-2026-000001); the price book's default if unset.
    """
    name: str
    tax_id: str
    address: str
    phone: str
    bank: str
    invoice_prefix: str


class Rules(TypedDict):
    """The printed rules paragraph, written from the price book that priced the document
    (``documents.rules_note``). Not hashed: it describes the rules; the lines apply them.

    Attributes:
      zh, en: the rules paragraph in Chinese and English.
      completion_working_days: a renewal completes within this many working days of signing.
      grace_zh, grace_en: the grace period in words (一个月 / one month).
    """
    zh: str
    en: str
    completion_working_days: int
    grace_zh: str
    grace_en: str


class Line(TypedDict):
    """One priced line (``documents.line_dicts``): an opening, a seat addition or a renewal, with its
    calculation written out. On a credit note the money fields are negated and the explanation says
    which invoice it cancels.

    Attributes:
      kind: "opening", "addition" or "renewal".
      date: the day of the change (opened, seats added, renewal signed).
      seats: the seats billed; account_seats: the account's seats after the change.
      months: months billed (12 for openings and renewals); whole_months, extra_days: the proration
        before rounding (``pricing.rules.prorate_months``).
      unit_fen: the price per seat (per year; per month for an addition); annual_fen: the annual price
        per seat (the cap of an addition).
      amount_fen: what the line costs; list_fen: the same seats at the list price; discount_fen:
        list_fen - amount_fen (derived).
      tier: the tier label ("3-10") or "legacy"; legacy: priced at the account's legacy_rate;
        capped: an addition capped at a year per seat.
      term_start, term_end: the term the line pays for.
      completes_on, completes_exact: a renewal's completion date, and False when only weekends could
        be skipped (no holiday data); "" and True on other lines.
      reference: the roster's reference (备注) text.
      row: the roster row the line comes from (customers sheet for openings, changes sheet otherwise).
      months_rule: an addition's rounding in words ("" on other lines); explanation: the whole
        calculation in words, so an auditor can re-derive the amount from the page.
    """
    kind: Literal["opening", "addition", "renewal"]
    date: str
    seats: int
    account_seats: int
    months: int
    whole_months: int
    extra_days: int
    unit_fen: int
    annual_fen: int
    amount_fen: int
    list_fen: int
    tier: str
    legacy: bool
    capped: bool
    term_start: str
    term_end: str
    completes_on: str
    completes_exact: bool
    reference: str
    row: int
    discount_fen: int
    months_rule: str
    explanation: str
    # Not hashed (documents.DERIVED_LINE_KEYS); absent on documents issued before they were recorded:
    net_fen: NotRequired[int]  # amount_fen without VAT (vat.split_gross); net_fen + tax_fen == amount_fen
    tax_fen: NotRequired[int]  # the VAT inside amount_fen
    kind_label: NotRequired[str]  # printed kind ("加工号 Added seats")
    unit_label: NotRequired[str]  # " /月" or " /年"
    basis_label: NotRequired[str]  # an addition's tier basis in words, from the price book's tier_basis


class Vat(TypedDict):
    """The price book's [vat] settings a bill was issued under (``pricebook.VatSettings.snapshot``). Not hashed.

    Attributes:
      rate: the VAT rate as decimal text ("0.06"); item_name, tax_code, unit: what the e-fapiao import file
        says for each line; fapiao_kind: the default 普通发票 or 增值税专用发票.
    """
    rate: str
    item_name: str
    tax_code: str
    unit: str
    fapiao_kind: str


class Labels(TypedDict):
    """The printed title and labels of a bill or credit note (``labels.labels_for``). Not hashed.

    Attributes:
      title_zh, title_en: 账单 / BILL, 贷项通知单 / CREDIT NOTE (never 发票: only the tax platform issues one);
      number, date: the labels of the number and date fields; fapiao_note_zh, fapiao_note_en: the sentence
        that the VAT fapiao is issued separately through the tax platform.
    """
    title_zh: str
    title_en: str
    number: str
    date: str
    fapiao_note_zh: str
    fapiao_note_en: str


class _Bill(TypedDict):
    """What an invoice and a credit note both carry (see Invoice and CreditNote for their own fields).

    Attributes:
      customer, seller: snapshots (above); lines: the priced lines, in print order.
      total_fen: the sum of the lines' amount_fen; list_total_fen: the sum of their list_fen.
      total_words: total_fen in Chinese capital numerals (大写).
      period: the billing month "YYYY-MM"; issue_date: the issuing run's date (the period's last day).
      currency: "CNY"; pricebook_version: the version of the price book that priced it.
      number: the gapless number, given when the ledger issues it (absent on a draft or dry run).
      labels, vat, net_total_fen, tax_total_fen: the printed title and labels, the [vat] settings and the
        VAT split (sums of the lines' net_fen and tax_fen). Not hashed; absent on documents issued before
        the VAT split was printed.
    """
    customer: Customer
    seller: Seller
    lines: list[Line]
    total_fen: int
    list_total_fen: int
    total_words: str
    period: str
    issue_date: str
    currency: str
    pricebook_version: str
    number: NotRequired[str]
    labels: NotRequired[Labels]
    vat: NotRequired[Vat]
    net_total_fen: NotRequired[int]
    tax_total_fen: NotRequired[int]


class Invoice(_Bill):
    """One customer's invoice (bill, 账单) for one month (``documents.build_invoices``).

    Hashed: kind, customer, seller, lines, total_fen, period, issue_date, currency.

    Attributes:
      kind: "invoice"; rules: the printed rules paragraph.
      replaces: on an invoice issued by --amend, the number of the invoice it replaces.
    """
    kind: Literal["invoice"]
    rules: Rules
    replaces: NotRequired[str]


class CreditNote(_Bill):
    """The cancellation of an issued invoice (``documents.credit_note_for``): a new document with the
    invoice's lines negated (totals too), in the same number series, dated by the amending run. Hashed as
    an invoice is.

    Attributes:
      kind: "credit_note"; cancels: the number of the invoice it cancels.
      rules: copied from the invoice; absent when the invoice was recorded before rules were part of it.
    """
    kind: Literal["credit_note"]
    cancels: str
    rules: NotRequired[Rules]


class NoticeFacts(TypedDict):
    """What a renewal or overdue notice states about the account at the end of the month.

    Attributes:
      notice_kind: "renewal" (the window is open) or "overdue" (in grace).
      seats: the account's seats; paid_through: the last day paid.
      window_opens_on: the first day a renewal may be signed; reclaim_on: the day the number is reclaimed.
      grace_from, new_term_start: the day after paid_through.
      quote_unit_fen, quote_fen, quote_tier: the renewal price per seat, in total, and its tier label
        ("legacy" when the legacy renewal is still unused).
    """
    notice_kind: Literal["renewal", "overdue"]
    seats: int
    paid_through: str
    window_opens_on: str
    reclaim_on: str
    grace_from: str
    quote_unit_fen: int
    quote_fen: int
    quote_tier: str
    new_term_start: str


class Notice(TypedDict):
    """A renewal or overdue notice (``documents.build_notices``): not an invoice, never numbered.

    Hashed: kind, notice, customer, seller, period, issue_date, currency.

    Attributes:
      kind: "notice"; notice: the facts above.
      customer, seller, period, issue_date, currency, pricebook_version, rules: as on an invoice.
      total_words: the quoted renewal price in capital numerals.
    """
    kind: Literal["notice"]
    notice: NoticeFacts
    customer: Customer
    seller: Seller
    period: str
    issue_date: str
    currency: str
    pricebook_version: str
    total_words: str
    rules: Rules


Document = Union[Invoice, CreditNote, Notice]
