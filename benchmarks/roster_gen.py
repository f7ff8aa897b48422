"""A large synthetic roster workbook, written fast (openpyxl write-only), for benchmarks/run.py.

About half the customers are billed in the period (an opening or an addition in it); the rest are quiet,
and some of those are due for renewal (a notice). Deterministic for a given size and seed.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
from openpyxl import Workbook

from invoicer.taxid import uscc_check_char

CUSTOMER_HEADERS = ["customer_id", "name", "opened_on", "seats", "paid_through", "legacy_rate", "qq_number",
                    "email", "address", "tax_id"]
CHANGE_HEADERS = ["customer_id", "date", "type", "seats", "reference"]
RESELLER = {"name": "深圳市腾云信息技术有限公司", "tax_id": "91440300MA5EXAMPLE",
            "address": "深圳市南山区科技园科苑路15号", "phone": "0755-8888 6666", "invoice_prefix": "BENCH"}


def tax_id(i: int) -> str:
    """A valid 统一社会信用代码 for most customers (so the e-fapiao export is measured at full size); one
    customer in 50 has none (its bill is listed as a problem, as a real month has a few)."""
    if i % 50 == 49:
        return ""
    first17 = f"91440300{i:09d}"
    return first17 + uscc_check_char(first17)


def write_roster(path: Path, customers: int, period: str = "2026-10", seed: int = 7) -> Path:
    rng = np.random.default_rng(seed)
    year, month = map(int, period.split("-"))
    first = dt.date(year, month, 1)
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("customers")
    ws.append(CUSTOMER_HEADERS)
    cs = wb.create_sheet("changes")
    cs.append(CHANGE_HEADERS)
    seats = rng.integers(3, 45, customers)
    day = rng.integers(0, 28, customers)
    age = rng.integers(40, 5 * 365, customers)
    for i in range(customers):
        cid = f"C{i:07d}"
        kind = i % 4  # 0: opened in the period, 1: adds seats in it, 2-3: quiet
        if kind == 0:
            opened = first + dt.timedelta(days=int(day[i]))
        elif kind == 1:  # inside its first year, so seats may be added
            opened = first - dt.timedelta(days=40 + int(age[i]) % 260)
        else:
            opened = first - dt.timedelta(days=int(age[i]))
        ws.append([cid, f"测试公司{i}有限公司", opened, int(seats[i]), None, None, f"400{i % 10_000_000:07d}",
                   f"ap{i}@example.cn", f"深圳市南山区科技园{i}号", tax_id(i)])
        if kind == 1:
            cs.append([cid, first + dt.timedelta(days=int(day[i])), "add", 1 + i % 3, f"HT-{i}"])
    rs = wb.create_sheet("reseller")
    for k, v in RESELLER.items():
        rs.append([k, v])
    wb.save(path)
    return path


if __name__ == "__main__":
    import sys

    n = int(sys.argv[1])
    print(write_roster(Path(sys.argv[2]), n))
