"""Pricing benchmark: the vectorized engine against the row-by-row reference, in the same process.

    .venv/bin/python benchmarks/pricing.py [--customers 100000] [--changes-per-customer 10] [--period 2026-10]

Generates a roster of typed frames (no workbook I/O: this measures pricing), prices one period with both
implementations, cross-checks every line and rejected row, and prints rows/second and the ratio.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from invoicer import pricebook
from invoicer.pricing import reference
from invoicer.pricing.engine import price_period


def generate(n_customers: int, per_customer: int, seed: int = 7):
    rng = np.random.default_rng(seed)
    opened = np.datetime64("2018-01-01") + rng.integers(0, 5 * 365, n_customers).astype("timedelta64[D]")
    ids = np.array([f"C{i:07d}" for i in range(n_customers)], dtype=object)
    customers = pd.DataFrame({
        "customer_id": ids, "name": ids, "opened_on": opened.astype("datetime64[s]"),
        "seats": rng.integers(5, 30, n_customers), "term0": 0, "legacy_fen": 0,
        "row": np.arange(2, n_customers + 2), "valid": True,
    })
    customers["paid_through"] = customers["opened_on"]
    for k in ("qq_number", "email", "address", "tax_id"):
        customers[k] = ""
    code = np.repeat(np.arange(n_customers), per_customer)
    j = np.tile(np.arange(per_customer), n_customers)
    # per customer and 10 rows: yearly renewals signed inside their window, additions, one removal
    renew_year = {0: 1, 3: 2, 6: 3, 8: 4}
    kind = np.where(np.isin(j % 10, list(renew_year)), "renew", np.where(j % 10 == 9, "remove", "add"))
    year = np.vectorize(lambda x: renew_year.get(x % 10, 0))(j)
    offset_days = np.where(kind == "renew", year * 365 - rng.integers(1, 20, len(j)),
                           rng.integers(0, 4 * 365, len(j)))
    dates = opened[code] + offset_days.astype("timedelta64[D]")
    changes = pd.DataFrame({
        "customer_id": ids[code], "date": dates.astype("datetime64[s]"), "type": kind,
        "seats": np.where(kind == "renew", 0, 1).astype(np.int64), "reference": "",
        "row": np.arange(2, len(j) + 2),
    })
    return customers, changes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--changes-per-customer", type=int, default=10)
    ap.add_argument("--period", default="2026-10")
    ap.add_argument("--hostile", type=int, default=0,
                    help="add one customer with this many rows that each break the seat limit (worst case: "
                         "one rejection per round)")
    args = ap.parse_args()
    book = pricebook.load_default()
    customers, changes = generate(args.customers, args.changes_per_customer)
    if args.hostile:
        changes = pd.concat([changes, pd.DataFrame({
            "customer_id": "C0000000", "date": customers["opened_on"].iat[0] + pd.Timedelta(days=3),
            "type": "add", "seats": 1000, "reference": "",
            "row": np.arange(len(changes) + 2, len(changes) + 2 + args.hostile)})], ignore_index=True)
    rows = len(customers) + len(changes)
    print(f"roster: {len(customers):,} customers, {len(changes):,} change rows, period {args.period}")

    t0 = time.perf_counter()
    result = price_period(customers, changes, book, args.period)
    t_vec = time.perf_counter() - t0

    c_records = [{**r, "opened_on": r["opened_on"].date()} for r in
                 customers[["customer_id", "opened_on", "seats", "term0", "legacy_fen"]].to_dict("records")]
    ch_records = [{**r, "date": r["date"].date()} for r in
                  changes[["customer_id", "date", "type", "seats", "row"]].to_dict("records")]
    t0 = time.perf_counter()
    want, rejected = reference.price_period(c_records, ch_records, book, args.period)
    t_ref = time.perf_counter() - t0

    got = [(r.customer_id, r.kind, r.date.date(), int(r.seats), int(r.months), int(r.unit_fen), int(r.amount_fen))
           for r in result.lines.itertuples()]
    same = got == want and {r.row for r in result.rejects} == rejected
    print(f"lines billed: {len(got):,}; rows rejected: {len(result.rejects):,}; total "
          f"{int(result.lines['amount_fen'].sum()) / 100:,.2f} CNY")
    print(f"vectorized engine : {t_vec:8.2f} s  {rows / t_vec:12,.0f} rows/s")
    print(f"row-by-row ref.   : {t_ref:8.2f} s  {rows / t_ref:12,.0f} rows/s")
    print(f"speed-up          : {t_ref / t_vec:8.1f}x   cross-check: {'identical' if same else 'MISMATCH'}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
