"""The VAT split of a tax-inclusive amount: one rule, used by the bill, the summary and the fapiao export.

Our prices are tax-inclusive (the price sheet's 1000 CNY a seat is what the customer pays). The bill shows,
beside each gross amount, its net (不含税金额) and tax (税额) at the price book's rate, and the e-fapiao
platform, given the same gross amount with 是否含税 = 是, computes the same split line by line, so the
bill and the fapiao agree to the fen.
"""
from __future__ import annotations

from decimal import Decimal

from .money import div_round_half_up

# The rates a reseller of a software service may charge: 6% (general taxpayer, 现代服务/信息技术服务),
# 3% or 1% (small-scale taxpayer, 征收率). The platform refuses any other rate for this item.
ALLOWED_RATES = ("0.06", "0.03", "0.01")


def rate_percent(rate: str | Decimal) -> int:
    """'0.06' -> 6. Refuses a rate that is not a whole percent (every allowed rate is)."""
    pct = Decimal(str(rate)) * 100
    if pct != pct.to_integral_value() or pct < 0:
        raise ValueError(f"VAT rate {rate!r} is not a whole percent")
    return int(pct)


def split_gross(gross_fen: int, rate: str | Decimal) -> tuple[int, int]:
    """A tax-inclusive amount in fen -> (net, tax) in fen, with net + tax == gross exactly.

    net = round-half-up(gross / (1 + rate), to the fen); tax = gross - net. The tax is the remainder, never
    rounded on its own, so the two always add up to what the customer pays. A negative amount (a credit
    note) splits to the exact negation of its positive twin (half-up rounds away from zero).

    >>> split_gross(100000, "0.06")     # 1000.00 / 1.06 = 943.396... -> 943.40 + 56.60
    (94340, 5660)
    >>> split_gross(140000, "0.06")     # 1400.00 / 1.06 = 1320.754... -> 1320.75 + 79.25
    (132075, 7925)
    >>> split_gross(-140000, "0.06")
    (-132075, -7925)
    >>> split_gross(1, "0.06")          # 0.01 / 1.06 = 0.0094 -> 0.01 net, no tax
    (1, 0)
    >>> split_gross(300000, "0.03")     # 3000.00 / 1.03 = 2912.621... -> 2912.62 + 87.38
    (291262, 8738)
    """
    pct = rate_percent(rate)
    net = div_round_half_up(int(gross_fen) * 100, 100 + pct)
    return net, int(gross_fen) - net


def split_lines(gross_by_line: list[int], rate: str | Decimal) -> tuple[list[tuple[int, int]], int, int]:
    """Each line split on its own (as the platform does), and the bill's net and tax as the sums of its
    lines' (never a split of the bill's total, which can differ by a fen).

    >>> split_lines([140000, 70000], "0.06")
    ([(132075, 7925), (66038, 3962)], 198113, 11887)
    """
    parts = [split_gross(g, rate) for g in gross_by_line]
    return parts, sum(p[0] for p in parts), sum(p[1] for p in parts)


def split_problems(doc: dict) -> list[str]:
    """What is wrong with a document's recorded VAT split, recomputed from its amounts and recorded rate
    (for verify and tests); [] when it agrees, or when the document predates VAT on bills (no 'vat').

    >>> split_problems({"vat": {"rate": "0.06"}, "lines": [{"amount_fen": 140000, "net_fen": 132075,
    ...     "tax_fen": 7925}], "net_total_fen": 132075, "tax_total_fen": 7925})
    []
    >>> split_problems({"vat": {"rate": "0.06"}, "lines": [{"amount_fen": 140000, "net_fen": 132076,
    ...     "tax_fen": 7924}], "net_total_fen": 132076, "tax_total_fen": 7924})
    ... # doctest: +NORMALIZE_WHITESPACE
    ['line 1: net/tax 132076/7924 fen, the rule gives 132075/7925',
     'net/tax total 132076/7924 fen, the lines give 132075/7925']
    """
    if not doc.get("vat"):
        return []
    problems = []
    parts = [split_gross(x["amount_fen"], doc["vat"]["rate"]) for x in doc["lines"]]
    for i, (x, (net, tax)) in enumerate(zip(doc["lines"], parts), 1):
        if (x.get("net_fen"), x.get("tax_fen")) != (net, tax):
            problems.append(f"line {i}: net/tax {x.get('net_fen')}/{x.get('tax_fen')} fen, the rule gives {net}/{tax}")
    net, tax = sum(p[0] for p in parts), sum(p[1] for p in parts)
    if (doc.get("net_total_fen"), doc.get("tax_total_fen")) != (net, tax):
        problems.append(f"net/tax total {doc.get('net_total_fen')}/{doc.get('tax_total_fen')} fen, the lines give "
                        f"{net}/{tax}")
    return problems
