"""Exact money: integer fen inside, Decimal yuan at the edges, one rounding rule.

Every amount in the pipeline is an ``int`` (or ``int64`` column) of fen. ``Decimal`` appears only where
money enters (price book, roster's legacy_rate) or leaves (workbook cells, printed documents).
"""
from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

FEN = Decimal("0.01")
# digits, or thousands groups led by 1-999 (so "0,990", a decimal comma, is no 990), then decimals
AMOUNT_TEXT = re.compile(r"^\s*[+-]?(?:(?:\d+|[1-9]\d{0,2}(?:,\d{3})+)(?:\.\d*)?|\.\d+)\s*$", re.ASCII)


class MoneyError(ValueError):
    """An amount that cannot be held exactly in fen (the caller turns it into a rejected cell)."""


def yuan_to_fen(value: str | int | Decimal) -> int:
    """Parse a yuan amount with at most two decimals into fen, refusing anything inexact.

    In: text, an int or a Decimal ("1,234.5" is fine). Out: int fen. Refuses (``MoneyError``): a float
    (it may already be inexact), text that is not a number, infinities and NaN, more than two decimals.

    >>> yuan_to_fen("1,234.5"), yuan_to_fen(900), yuan_to_fen(" 0.01 ")
    (123450, 90000, 1)
    >>> yuan_to_fen("12.345")
    Traceback (most recent call last):
    ...
    invoicer.money.MoneyError: amount must have at most two decimals: '12.345'
    >>> yuan_to_fen("9,99")  # a decimal comma is not read as 999 yuan
    Traceback (most recent call last):
    ...
    invoicer.money.MoneyError: not an amount: '9,99'
    """
    if isinstance(value, float):  # a float never holds money; the caller must pass text
        raise MoneyError(f"money must not be a float: {value!r}")
    if isinstance(value, str):
        # commas only as thousands separators: "9,99" (a decimal comma) or "1.000,00" would otherwise be
        # read as 999 or 1 yuan; no "1_000", exponents or other scripts' digits
        if not AMOUNT_TEXT.match(value):
            raise MoneyError(f"not an amount: {value!r}")
        value = value.strip().replace(",", "")
    try:
        d = Decimal(str(value))
    except InvalidOperation as exc:
        raise MoneyError(f"not an amount: {value!r}") from exc
    if not d.is_finite() or d != d.quantize(FEN):
        raise MoneyError(f"amount must have at most two decimals: {value!r}")
    return int(d * 100)


def fen_to_decimal(fen: int) -> Decimal:
    """Fen -> Decimal yuan with exactly two decimals (for workbook cells and printing).

    >>> fen_to_decimal(123450)
    Decimal('1234.50')
    """
    return (Decimal(int(fen)) / 100).quantize(FEN)


def fmt_yuan(fen: int) -> str:
    """Fen -> yuan text with thousands separators, for documents.

    >>> fmt_yuan(1234500), fmt_yuan(-5)
    ('12,345.00', '-0.05')
    """
    return f"{fen_to_decimal(fen):,.2f}"


def plain_yuan(fen: int) -> str:
    """Fen -> yuan text without separators, for explanations an auditor re-types into a calculator.

    >>> plain_yuan(1234500)
    '12345.00'
    """
    return f"{fen_to_decimal(fen):.2f}"


def div_round_half_up(numerator: int, denominator: int) -> int:
    """The one rounding rule: numerator / denominator rounded half-up (away from zero at .5), exactly.

    >>> div_round_half_up(123456, 10), div_round_half_up(5, 10), div_round_half_up(-5, 10), div_round_half_up(4, 10)
    (12346, 1, -1, 0)
    """
    q = Decimal(numerator) / Decimal(denominator)
    return int(q.quantize(Decimal(1), rounding=ROUND_HALF_UP))


_DIGITS = "零壹贰叁肆伍陆柒捌玖"
_SMALL_UNITS = ["", "拾", "佰", "仟"]
_BIG_UNITS = ["", "万", "亿", "兆"]


def chinese_capital(fen: int) -> str:
    """Amount in Chinese capital numerals as printed on invoices (大写).

    >>> chinese_capital(140000)
    '壹仟肆佰元整'
    >>> chinese_capital(1045000)
    '壹万零肆佰伍拾元整'
    >>> chinese_capital(100005)
    '壹仟元零伍分'
    """
    if fen < 0:
        return "负" + chinese_capital(-fen)
    yuan, cents = divmod(int(fen), 100)
    jiao, fen_ = divmod(cents, 10)
    out = _integer_capital(yuan) + "元" if yuan else ""
    if jiao == 0 and fen_ == 0:
        return (out or "零元") + "整"
    if jiao:
        out += _DIGITS[jiao] + "角"
    elif yuan:
        out += "零"
    if fen_:
        out += _DIGITS[fen_] + "分"
    return out


def _integer_capital(n: int) -> str:
    groups = []
    while n:
        n, g = divmod(n, 10000)
        groups.append(g)
    out = ""
    zero_pending = False
    for idx in range(len(groups) - 1, -1, -1):
        g = groups[idx]
        if g == 0:
            zero_pending = bool(out)
            continue
        if out and (zero_pending or g < 1000):
            out += "零"
        out += _group_capital(g) + _BIG_UNITS[idx]
        zero_pending = False
    return out


def _group_capital(g: int) -> str:
    digits = [g // 1000, g // 100 % 10, g // 10 % 10, g % 10]
    out = ""
    zero = False
    started = False
    for pos, d in enumerate(digits):
        unit = _SMALL_UNITS[3 - pos]
        if d == 0:
            zero = started
            continue
        if zero:
            out += "零"
            zero = False
        out += _DIGITS[d] + unit
        started = True
    return out
