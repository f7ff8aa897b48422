"""Checks a buyer's taxpayer identification number (纳税人识别号) before it reaches a bill or a fapiao.

What is accepted (blank is fine: the column is optional):

* 18 characters: the 统一社会信用代码 (unified social credit code, GB 32100-2015), checked with its check
  character; or an 18-digit 居民身份证号码 (an individual business's or a person's number, GB 11643-1999),
  checked with its ISO 7064 MOD 11-2 check digit.
* 15, 17 or 20 characters of digits and capital letters: the taxpayer numbers issued before the unified
  code (2015); they carry no check character we can verify, and the platform still accepts them.

Everything else (other lengths, spaces inside, lower-case letters, I/O/S/V/Z in a unified code, a wrong
check character) is refused with a reason the clerk can act on.
"""
from __future__ import annotations

import re

USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # GB 32100-2015: no I, O, S, V, Z
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"
LEGACY_RE = re.compile(r"^[0-9A-Z]{15}$|^[0-9A-Z]{17}$|^[0-9A-Z]{20}$")


def uscc_check_char(first17: str) -> str:
    """The GB 32100-2015 check character of a unified social credit code's first 17 characters.

    >>> uscc_check_char("91350100M000100Y4")
    '3'
    """
    total = sum(USCC_CHARS.index(c) * w for c, w in zip(first17, USCC_WEIGHTS))
    return USCC_CHARS[(31 - total % 31) % 31]


def is_resident_id(text: str) -> bool:
    """An 18-digit 居民身份证号码 with a valid MOD 11-2 check digit (X for 10).

    >>> is_resident_id("11010519491231002X")
    True
    """
    if not re.fullmatch(r"\d{17}[\dX]", text):
        return False
    return ID_CHECK[sum(int(c) * w for c, w in zip(text, ID_WEIGHTS)) % 11] == text[17]


def tax_id_problem(text: str) -> str | None:
    """None when ``text`` is an acceptable buyer tax id (or blank), else the reason it is refused.

    >>> tax_id_problem("91350100M000100Y43") is None
    True
    >>> tax_id_problem("91350100M000100Y44")
    'not a valid 统一社会信用代码: the check character (the 18th) should be 3, not 4'
    >>> tax_id_problem("110108123456789") is None    # a 15-character number from before 2015
    True
    >>> tax_id_problem("91110108XC0001")
    'a tax id has 18 characters (统一社会信用代码), or 15, 17 or 20 (older numbers); this has 14'
    """
    if not text:
        return None
    if text != text.strip() or " " in text:
        return "a tax id has no spaces"
    if text != text.upper():
        return "a tax id's letters are capitals"
    if len(text) == 18:
        if is_resident_id(text):
            return None
        bad = sorted({c for c in text if c not in USCC_CHARS})
        if bad:
            return (f"not a valid 统一社会信用代码: it may only hold digits and the capitals {USCC_CHARS[10:]} "
                    f"(found {''.join(bad)})")
        want = uscc_check_char(text[:17])
        if want != text[17]:
            return f"not a valid 统一社会信用代码: the check character (the 18th) should be {want}, not {text[17]}"
        return None
    if LEGACY_RE.match(text):
        return None
    if len(text) in (15, 17, 20):
        return "a tax id may only hold digits and capital letters"
    return ("a tax id has 18 characters (统一社会信用代码), or 15, 17 or 20 (older numbers); "
            f"this has {len(text)}")
