"""Loads the versioned price-book file (TOML) into typed, validated settings.

The shipped default is ``invoicer/data/pricebook.toml``; a reseller passes its own with ``--pricebook``.
The file's SHA-256 goes into the manifest and the ledger so every document names the rules that priced it.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .errors import InputError
from .money import MoneyError, yuan_to_fen


@dataclass(frozen=True)
class Tier:
    """One price tier (套餐): accounts of min_seats..max_seats seats pay annual_fen per seat a year, and an
    added seat monthly_fen a month (pricing.rules.tier_index picks the tier of a seat count)."""
    name: str
    min_seats: int
    max_seats: int
    annual_fen: int
    monthly_fen: int

    @property
    def label(self) -> str:
        return f"{self.min_seats}-{self.max_seats}"


@dataclass(frozen=True)
class YearSchedule:
    """One year's official holiday schedule, for a year the chinesecalendar package does not cover (yet)."""
    year: int
    holidays: frozenset[dt.date]
    workdays: frozenset[dt.date]  # make-up working days (调休): weekend days that are worked

    def is_workday(self, day: dt.date) -> bool:
        return day in self.workdays or (day.weekday() < 5 and day not in self.holidays)


FAPIAO_KINDS = ("普通发票", "增值税专用发票")


@dataclass(frozen=True)
class VatSettings:
    """[vat]: how a tax-inclusive bill splits into net and tax, and what the e-fapiao export says.

    rate is the text of a decimal ("0.06"), one of vat.ALLOWED_RATES; tax_code is the 19-digit leaf code of
    the 商品和服务税收分类编码; item_name, unit and fapiao_kind go into the platform's import file."""
    rate: str = "0.06"
    item_name: str = "企业QQ软件服务费"
    tax_code: str = "3040201990000000000"
    unit: str = "工号"
    fapiao_kind: str = "普通发票"

    def snapshot(self) -> dict:
        """What a document records of these settings (kept out of its content hash)."""
        return {"rate": self.rate, "item_name": self.item_name, "tax_code": self.tax_code, "unit": self.unit,
                "fapiao_kind": self.fapiao_kind}


@dataclass(frozen=True)
class PriceBook:
    """Every number and policy switch of the price sheet, as parsed and checked from one TOML file (see
    the comments of invoicer/data/pricebook.toml for each). ``sha256`` and ``raw`` are the file's, so a
    run records exactly which rules priced it."""
    version: str
    currency: str
    list_price_fen: int
    min_seats: int
    max_seats: int
    tiers: tuple[Tier, ...]
    monthly_divisor: int
    round_up_after_days: int
    cap_at_annual: bool
    tier_basis: str
    window_months: int
    grace_months: int
    completion_working_days: int
    calendar: tuple[YearSchedule, ...]
    legacy_cutoff: dt.date
    default_prefix: str
    number_digits: int
    sha256: str
    source: str
    raw: bytes
    vat: VatSettings = VatSettings()  # a price book written before [vat] existed gets the defaults


DEFAULT_PATH = "data/pricebook.toml"


def load_default() -> PriceBook:
    """The price book shipped with the package (invoicer/data/pricebook.toml)."""
    raw = resources.files("invoicer").joinpath(DEFAULT_PATH).read_bytes()
    return parse(raw, source="invoicer/" + DEFAULT_PATH)


def load(path: str | Path | None) -> PriceBook:
    """The price book at ``path`` (a reseller's --pricebook), or the shipped one when ``path`` is None.

    Refuses (``InputError``, exit code 2): a file that cannot be read, and everything ``parse`` refuses.
    """
    if path is None:
        return load_default()
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read price book {p}: {exc.strerror}") from None
    return parse(raw, source=str(p))


def parse(raw: bytes, source: str) -> PriceBook:
    """A price book from the bytes of its TOML file; ``source`` names it in messages and the manifest.

    Refuses (``InputError``, one line naming ``source``): text that is not UTF-8 TOML, a missing or
    mistyped key, money with more than two decimals or as a float, tiers that leave a gap or overlap
    between min_seats and max_seats or have no positive price, an unknown tier_basis, a non-positive
    monthly_divisor, negative window or grace months, and calendar years with misplaced dates.
    """
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"price book {source} is not valid TOML: {exc}") from None
    try:
        tiers = tuple(
            Tier(
                name=str(t.get("name", f"{t['min_seats']}-{t['max_seats']}")),
                min_seats=int(t["min_seats"]),
                max_seats=int(t["max_seats"]),
                annual_fen=yuan_to_fen(t["annual"]),
                monthly_fen=yuan_to_fen(t["monthly"]),
            )
            for t in doc["tiers"]
        )
        add, ren, leg, inv = doc["additions"], doc["renewal"], doc["legacy"], doc.get("invoicing", {})
        book = PriceBook(
            version=str(doc["version"]),
            currency=str(doc.get("currency", "CNY")),
            list_price_fen=yuan_to_fen(doc["list_price"]),
            min_seats=int(doc["min_seats"]),
            max_seats=int(doc["max_seats"]),
            tiers=tiers,
            monthly_divisor=int(add["monthly_divisor"]),
            round_up_after_days=int(add["round_up_after_days"]),
            cap_at_annual=bool(add["cap_at_annual"]),
            tier_basis=str(add["tier_basis"]),
            window_months=int(ren["window_months"]),
            grace_months=int(ren["grace_months"]),
            completion_working_days=int(ren["completion_working_days"]),
            calendar=_calendar(doc.get("calendar", {})),
            legacy_cutoff=dt.date.fromisoformat(str(leg["cutoff"])),
            default_prefix=str(inv.get("default_prefix", "QQ")),
            number_digits=int(inv.get("number_digits", 6)),
            sha256=hashlib.sha256(raw).hexdigest(),
            source=source,
            raw=raw,
            vat=_vat(doc.get("vat", {})),
        )
    except (KeyError, TypeError, ValueError, MoneyError) as exc:
        raise InputError(f"price book {source} is incomplete or wrong: {exc!r}") from None
    _check(book)
    return book


def _calendar(table: dict) -> tuple[YearSchedule, ...]:
    """[calendar.2027] holidays = [...], workdays = [...]: dates of that year, checked."""
    years = []
    for key, entry in sorted(table.items()):
        year = int(key)
        unknown = set(entry) - {"holidays", "workdays"}
        if unknown:
            raise ValueError(f"calendar.{key}: unknown keys {sorted(unknown)} (use holidays and workdays)")
        holidays = frozenset(dt.date.fromisoformat(str(x)) for x in entry.get("holidays", []))
        workdays = frozenset(dt.date.fromisoformat(str(x)) for x in entry.get("workdays", []))
        wrong = sorted(str(d) for d in holidays | workdays if d.year != year)
        if wrong:
            raise ValueError(f"calendar.{key}: dates of another year: {', '.join(wrong)}")
        weekdays = sorted(str(d) for d in workdays if d.weekday() < 5)
        if weekdays:
            raise ValueError(f"calendar.{key}: make-up working days are weekend days; these are weekdays: "
                             f"{', '.join(weekdays)}")
        both = sorted(str(d) for d in holidays & workdays)
        if both:
            raise ValueError(f"calendar.{key}: both a holiday and a working day: {', '.join(both)}")
        years.append(YearSchedule(year, holidays, workdays))
    return tuple(years)


def _vat(table: dict) -> VatSettings:
    """[vat], every key optional (defaults: VatSettings); values checked against what the platform accepts."""
    from .vat import ALLOWED_RATES

    if not isinstance(table, dict):
        raise ValueError("vat must be a table: [vat]")
    unknown = set(table) - {"rate", "item_name", "tax_code", "unit", "fapiao_kind"}
    if unknown:
        raise ValueError(f"vat: unknown keys {sorted(unknown)} (use rate, item_name, tax_code, unit, fapiao_kind)")
    base = VatSettings()
    # a rate written as a TOML number (0.06) is read back by its text, never used as a float
    rate = str(table.get("rate", base.rate)).strip()
    if rate not in ALLOWED_RATES:
        raise ValueError(f"vat.rate must be one of {', '.join(ALLOWED_RATES)} (6% general taxpayer; 3% or 1% "
                         f"small-scale), not {rate!r}")
    code = str(table.get("tax_code", base.tax_code)).strip()
    if not (len(code) == 19 and code.isascii() and code.isdigit()):
        raise ValueError(f"vat.tax_code must be the 19-digit 商品和服务税收分类编码 of a leaf item, not {code!r}")
    kind = str(table.get("fapiao_kind", base.fapiao_kind)).strip()
    if kind not in FAPIAO_KINDS:
        raise ValueError(f"vat.fapiao_kind must be {' or '.join(FAPIAO_KINDS)}, not {kind!r}")
    name = str(table.get("item_name", base.item_name)).strip()
    unit = str(table.get("unit", base.unit)).strip()
    if not 0 < len(name) <= 100 or "*" in name:
        raise ValueError("vat.item_name must be 1-100 characters without '*' (the platform adds the "
                         "*简称* of the tax code itself)")
    if len(unit) > 22:
        raise ValueError("vat.unit must be at most 22 characters")
    return VatSettings(rate=rate, item_name=name, tax_code=code, unit=unit, fapiao_kind=kind)


def _check(book: PriceBook) -> None:
    problems = []
    expected = book.min_seats
    for t in sorted(book.tiers, key=lambda t: t.min_seats):
        if t.min_seats != expected:
            problems.append(f"tiers must cover every seat count from {book.min_seats}; gap or overlap at {expected}")
        expected = t.max_seats + 1
        if t.annual_fen <= 0 or t.monthly_fen <= 0:
            problems.append(f"tier {t.label} must have positive prices")
    if expected != book.max_seats + 1:
        problems.append(f"tiers must end at max_seats {book.max_seats}")
    if book.tier_basis not in ("account_total", "added_seats"):
        problems.append("additions.tier_basis must be 'account_total' or 'added_seats'")
    if book.monthly_divisor <= 0 or book.window_months < 0 or book.grace_months < 0:
        problems.append("monthly_divisor must be positive; window and grace months not negative")
    if problems:
        raise InputError(f"price book {book.source}: " + "; ".join(problems))
