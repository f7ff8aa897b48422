"""Reads the roster workbook into raw DataFrames, every row keeping its spreadsheet row number.

Nothing is interpreted here beyond finding the sheets and mapping English or Chinese headers to the
canonical column names; validate.py turns the raw cells into typed columns. Reading uses the Rust
``calamine`` reader (several times faster than openpyxl on large rosters).
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import python_calamine

from .errors import InputError

SHEET_ALIASES = {
    "customers": ("customers", "客户"),
    "changes": ("changes", "变更"),
    "reseller": ("reseller", "经销商"),
}
REQUIRED_SHEETS = ("customers", "changes")

# canonical column -> (aliases, required)
COLUMNS: dict[str, dict[str, tuple[tuple[str, ...], bool]]] = {
    "customers": {
        "customer_id": (("客户编号",), True),
        "name": (("客户名称",), True),
        "opened_on": (("开通日期",), True),
        "seats": (("工号数",), True),
        "paid_through": (("已付至",), False),
        "legacy_rate": (("老资费",), False),
        "qq_number": (("企业QQ号码", "企业qq号码"), False),
        "email": (("邮箱",), False),
        "address": (("地址",), False),
        "tax_id": (("税号",), False),
        # --- h-fapiao: buyer details the e-fapiao export needs (optional; see README "The clerk's month")
        "fapiao_kind": (("发票类型",), False),
        "phone": (("电话", "购买方电话"), False),
        "bank": (("开户行", "开户银行", "购买方开户银行"), False),
        "bank_account": (("银行账号", "账号", "购买方银行账号"), False),
        # --- end h-fapiao
    },
    "changes": {
        "customer_id": (("客户编号",), True),
        "date": (("日期",), True),
        "type": (("类型",), True),
        "seats": (("工号数",), False),
        "reference": (("备注",), False),
    },
}

RESELLER_KEYS = {
    "name": ("name", "名称", "经销商名称"),
    "tax_id": ("tax_id", "税号"),
    "address": ("address", "地址"),
    "phone": ("phone", "电话"),
    "bank": ("bank", "开户行", "银行"),
    "invoice_prefix": ("invoice_prefix", "发票前缀"),
}

ROW = "_row"  # the spreadsheet's own row number (1-based, as Excel shows it)


@dataclass
class RawRoster:
    path: str
    sha256: str
    data: bytes
    customers: pd.DataFrame
    changes: pd.DataFrame
    reseller: dict[str, str]
    sheet_titles: dict[str, str]
    warnings: list[str] = field(default_factory=list)


def _norm(header: object) -> str:
    return str(header).strip().casefold().replace(" ", "_") if header is not None else ""


def is_blank(v: object) -> bool:
    """An empty cell: nothing, or only white space."""
    return v is None or (isinstance(v, str) and not v.strip())


def read_roster(path: str | Path) -> RawRoster:
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot be read ({exc.strerror})") from None
    return read_roster_bytes(data, str(p))


def read_roster_bytes(data: bytes, name: str) -> RawRoster:
    try:
        wb = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
    except Exception as exc:  # calamine raises several types for corrupt or non-Excel files
        raise InputError(f"{name}: not a readable Excel workbook (.xlsx): {exc}") from None
    titles = {}
    for canonical, aliases in SHEET_ALIASES.items():
        for title in wb.sheet_names:
            if _norm(title) in {_norm(a) for a in aliases}:
                titles[canonical] = title
                break
    missing = [s for s in REQUIRED_SHEETS if s not in titles]
    if missing:
        found = ", ".join(wb.sheet_names) or "none"
        want = " and ".join(f"'{s}' ({SHEET_ALIASES[s][1]})" for s in missing)
        raise InputError(f"{name}: the workbook has no sheet {want}; sheets found: {found}")
    warnings: list[str] = []
    frames = {}
    for sheet in ("customers", "changes"):
        rows = _sheet_rows(wb, titles[sheet], name)
        frames[sheet] = _to_frame(rows, sheet, titles[sheet], name, warnings)
    reseller = {}
    if "reseller" in titles:
        reseller = _reseller(_sheet_rows(wb, titles["reseller"], name), titles["reseller"], warnings)
    return RawRoster(
        path=name,
        sha256=hashlib.sha256(data).hexdigest(),
        data=data,
        customers=frames["customers"],
        changes=frames["changes"],
        reseller=reseller,
        sheet_titles=titles,
        warnings=warnings,
    )


def _sheet_rows(wb, title: str, name: str) -> list[list]:
    try:
        return wb.get_sheet_by_name(title).to_python(skip_empty_area=False)
    except Exception as exc:
        raise InputError(f"{name}: sheet '{title}' cannot be read: {exc}") from None


def _to_frame(rows: list[list], sheet: str, title: str, name: str, warnings: list[str]) -> pd.DataFrame:
    spec = COLUMNS[sheet]
    header_idx = next((i for i, r in enumerate(rows) if any(not is_blank(v) for v in r)), None)
    if header_idx is None:
        raise InputError(f"{name}: sheet '{title}' is empty (it needs a header row)")
    header = rows[header_idx]
    lookup = {}
    for canonical, (aliases, _req) in spec.items():
        for a in (canonical, *aliases):
            lookup[_norm(a)] = canonical
    positions: dict[str, int] = {}
    extra = []
    for pos, h in enumerate(header):
        if is_blank(h):
            continue
        canonical = lookup.get(_norm(h))
        if canonical is None:
            extra.append(str(h).strip())
        elif canonical in positions:
            raise InputError(f"{name}: sheet '{title}' has the column '{canonical}' twice (row {header_idx + 1})")
        else:
            positions[canonical] = pos
    missing = [c for c, (aliases, req) in spec.items() if req and c not in positions]
    if missing:
        want = ", ".join(f"'{c}' ({spec[c][0][0]})" for c in missing)
        found = ", ".join(str(h).strip() for h in header if not is_blank(h))
        raise InputError(
            f"{name}: sheet '{title}' lacks the required column {want} in its header row "
            f"{header_idx + 1}; columns found: {found}"
        )
    if extra:
        warnings.append(f"sheet '{title}': extra columns ignored: {', '.join(extra)}")
    records = []
    row_numbers = []
    for i in range(header_idx + 1, len(rows)):
        r = rows[i]
        cells = {c: (r[positions[c]] if c in positions and positions[c] < len(r) else None) for c in spec}
        if all(is_blank(v) for v in cells.values()):
            continue  # wholly blank rows are layout, not data
        records.append(cells)
        row_numbers.append(i + 1)
    frame = pd.DataFrame.from_records(records, columns=list(spec), coerce_float=False)
    frame = frame.astype(object)
    frame[ROW] = pd.Series(row_numbers, dtype="int64")
    return frame


def _reseller(rows: list[list], title: str, warnings: list[str]) -> dict[str, str]:
    lookup = {_norm(a): k for k, aliases in RESELLER_KEYS.items() for a in aliases}
    out: dict[str, str] = {}
    for r in rows:
        if len(r) < 2 or is_blank(r[0]):
            continue
        key = lookup.get(_norm(r[0]))
        if key is None:
            if _norm(r[0]) not in ("key", "项目", "field"):
                warnings.append(f"sheet '{title}': unknown key '{str(r[0]).strip()}' ignored")
            continue
        v = r[1]
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        out[key] = "" if v is None else str(v).strip()
    return out
