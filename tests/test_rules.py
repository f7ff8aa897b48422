"""Every rule of the price sheet, with amounts written out by hand (in fen)."""
from __future__ import annotations

import datetime as dt
import re
import subprocess

import numpy as np
import pytest

from invoicer import pricebook
from invoicer.errors import InputError
from invoicer.money import chinese_capital
from invoicer.pricing.dates import add_months, term_end
from invoicer.pricing.rules import prorate_months
from invoicer.pricing.workdays import add_working_days

from .conftest import change, cust, lines_of

D = dt.date


# -- the price sheet's worked examples ---------------------------------------------------------------
@pytest.mark.parametrize("added, months", [(D(2026, 10, 1), 7), (D(2026, 10, 10), 7), (D(2026, 10, 16), 6)])
def test_price_sheet_proration_examples(priced, added, months):
    """5月1日开通, 10月1日加工号 -> 7个月; 10月10日 -> 7个月; 10月16日 -> 6个月."""
    p = priced([cust("A", D(2026, 5, 1), 5)], [change("A", added, "add", 1)])
    (line,) = lines_of(p)
    assert (line["kind"], line["months"], line["unit_fen"], line["amount_fen"]) == ("addition", months, 10000,
                                                                                    months * 10000)
    assert line["term_end"] == "2027-04-30"  # 统一至第二年4月30日到期


def test_price_sheet_renewal_three_seats(priced):
    """如果您的工号数为3, 则续费价格为3000 (3x1000)."""
    p = priced([cust("A", D(2025, 11, 1), 3)], [change("A", D(2026, 10, 10), "renew")])
    (line,) = lines_of(p)
    assert (line["kind"], line["seats"], line["unit_fen"], line["amount_fen"]) == ("renewal", 3, 100000, 300000)
    assert (line["term_start"], line["term_end"]) == ("2026-11-01", "2027-10-31")


def test_price_sheet_renewal_five_plus_six(priced):
    """开通时是5个工号, 后来增加了6个达到11个, 则续费价格为10450 (950x11)."""
    p = priced([cust("A", D(2025, 11, 1), 5)],
               [change("A", D(2026, 3, 1), "add", 6), change("A", D(2026, 10, 20), "renew")])
    (line,) = lines_of(p)
    assert (line["seats"], line["unit_fen"], line["amount_fen"]) == (11, 95000, 1045000)
    assert p.invoices[0]["total_fen"] == 1045000
    assert p.invoices[0]["total_words"] == "壹万零肆佰伍拾元整"


# -- tiers, opening, cap ---------------------------------------------------------------------------
@pytest.mark.parametrize("seats, unit", [(3, 100000), (10, 100000), (11, 95000), (20, 95000), (21, 90000),
                                         (50, 90000)])
def test_opening_tiers_at_their_edges(priced, seats, unit):
    p = priced([cust("A", D(2026, 10, 5), seats)])
    (line,) = lines_of(p)
    assert (line["kind"], line["amount_fen"], line["list_fen"]) == ("opening", seats * unit, seats * 150000)


def test_addition_crossing_into_the_next_tier_prices_at_the_account_total(priced):
    # 9 + 3 = 12 seats -> tier 11-20 at 95/month; Oct 5 -> May 1 is 6 months 26 days -> 7 months
    p = priced([cust("A", D(2026, 5, 1), 9)], [change("A", D(2026, 10, 5), "add", 3)])
    (line,) = lines_of(p)
    assert (line["unit_fen"], line["months"], line["amount_fen"], line["tier"]) == (9500, 7, 3 * 9500 * 7, "11-20")


def test_tier_basis_added_seats_is_a_price_book_switch(priced, book):
    raw = book.raw.replace(b'tier_basis = "account_total"', b'tier_basis = "added_seats"')
    other = pricebook.parse(raw, "test")
    p = priced([cust("A", D(2026, 5, 1), 9)], [change("A", D(2026, 10, 5), "add", 3)], pb=other)
    (line,) = lines_of(p)
    assert (line["unit_fen"], line["amount_fen"]) == (10000, 3 * 10000 * 7)


def test_prorated_seat_is_capped_at_the_annual_price(priced):
    # opened Sep 20, added Oct 1: 11 months 19 days -> 12 months x 100 = 1200 > 1000 -> capped at 1000
    p = priced([cust("A", D(2026, 9, 20), 5)], [change("A", D(2026, 10, 1), "add", 2)])
    (line,) = lines_of(p)
    assert (line["months"], line["capped"], line["amount_fen"]) == (12, True, 200000)


def test_zero_months_costs_nothing(priced):
    # added 10 days before the anniversary: 0 months 10 days -> 0 months
    p = priced([cust("A", D(2025, 10, 25), 10)], [change("A", D(2026, 10, 15), "add", 1)])
    (line,) = lines_of(p)
    assert (line["months"], line["amount_fen"]) == (0, 0)


# -- dates ---------------------------------------------------------------------------------------------
def test_month_end_clamping():
    assert str(add_months(np.datetime64("2026-01-31"), 1)) == "2026-02-28"
    assert str(add_months(np.datetime64("2028-01-31"), 1)) == "2028-02-29"
    assert str(add_months(np.datetime64("2026-10-31"), 1)) == "2026-11-30"
    # Oct 31 + 1 month = Nov 30 <= Dec 1, + 2 months = Dec 31 > Dec 1: 1 month 1 day -> 1 month
    months, whole, extra = prorate_months(np.datetime64("2026-10-31"), np.datetime64("2026-12-01"), 15)
    assert (int(months), int(whole), int(extra)) == (1, 1, 1)


def test_twenty_ninth_of_february_terms():
    opened = np.datetime64("2024-02-29")
    # opened_on + 1 year clamps to Feb 28, so term 0 ends Feb 27; term 3 (to the next leap year) ends Feb 28
    assert [str(x) for x in term_end(opened, np.arange(4))] == ["2025-02-27", "2026-02-27", "2027-02-27",
                                                                "2028-02-28"]


def test_addition_on_an_account_opened_29_february(priced):
    p = priced([cust("A", D(2024, 2, 29), 4, paid_through=D(2027, 2, 27))], [change("A", D(2026, 10, 12), "add", 1)])
    (line,) = lines_of(p)
    # Oct 12 -> Feb 28: 4 months 16 days -> 5 months
    assert (line["whole_months"], line["extra_days"], line["months"], line["amount_fen"]) == (4, 16, 5, 50000)


# -- boundaries of the renewal window, expiry, grace and reclaim ------------------------------------------
# opened 2025-11-01: expires 2026-10-31; window opens 2026-10-01; grace to 2026-11-30; reclaimed 2026-12-01
@pytest.mark.parametrize("signed, ok", [(D(2026, 9, 30), False), (D(2026, 10, 1), True), (D(2026, 10, 31), True),
                                        (D(2026, 11, 30), True), (D(2026, 12, 1), False)])
def test_renewal_window_boundaries(priced, signed, ok):
    period = f"{signed.year}-{signed.month:02d}"
    p = priced([cust("A", D(2025, 11, 1), 3)], [change("A", signed, "renew")], period=period)
    if ok:
        (line,) = lines_of(p)
        assert (line["amount_fen"], line["term_start"]) == (300000, "2026-11-01")  # always from the old expiry
    else:
        assert not p.invoices
        (r,) = p.rejects
        assert (r.sheet, r.row, r.column, r.value) == ("changes", 2, "date", str(signed))
        assert ("before its window opens on 2026-10-01" in r.reason) if signed.month == 9 else \
            ("reclaimed on 2026-12-01" in r.reason)


@pytest.mark.parametrize("day, ok", [(D(2026, 10, 31), True), (D(2026, 11, 1), False)])
def test_seats_change_until_expiry_but_not_after(priced, day, ok):
    p = priced([cust("A", D(2025, 11, 1), 5)], [change("A", day, "add", 1)], period=day.strftime("%Y-%m"))
    assert bool(p.invoices) == ok
    if not ok:
        assert "expired on 2026-10-31 (in grace)" in p.rejects[0].reason


@pytest.mark.parametrize("period, status, next_on", [
    ("2026-09", "active", "2026-10-01"), ("2026-10", "renewal_due", "2026-11-01"),
    ("2026-11", "grace", "2026-12-01"), ("2026-12", "reclaimed", ""),
])
def test_account_status_at_the_end_of_the_period(priced, period, status, next_on):
    p = priced([cust("A", D(2025, 11, 1), 4)], period=period)
    acc = p.accounts.frame().iloc[0]
    assert acc["status"] == status
    assert ("" if str(acc["next_action_on"]) == "NaT" else str(acc["next_action_on"])[:10]) == next_on
    kinds = [n["notice"]["notice_kind"] for n in p.notices]
    assert kinds == {"renewal_due": ["renewal"], "grace": ["overdue"]}.get(status, [])


def test_status_on_the_exact_boundary_days(book):
    from invoicer.pricing.engine import account_state

    def status(on):
        return account_state(["A"], np.array(["2025-11-01"], dtype="datetime64[D]"), np.array([0]), np.array([4]),
                             on, book)["status"][0]

    assert [status(d) for d in ("2026-09-30", "2026-10-01", "2026-10-31", "2026-11-01", "2026-11-30",
                                "2026-12-01")] == ["active", "renewal_due", "renewal_due", "grace", "grace",
                                                   "reclaimed"]


# -- remove, ordering, seat limits ------------------------------------------------------------------------
def test_remove_never_refunds_and_lowers_the_next_renewal(priced):
    p = priced([cust("A", D(2025, 11, 1), 10)],
               [change("A", D(2026, 6, 1), "remove", 4), change("A", D(2026, 10, 5), "renew")])
    (line,) = lines_of(p)
    assert (line["seats"], line["amount_fen"]) == (6, 600000)


def test_same_day_rows_apply_in_sheet_order(priced):
    p = priced([cust("A", D(2025, 10, 25), 10), cust("B", D(2025, 10, 25), 10)],
               [change("A", D(2026, 10, 15), "add", 1), change("A", D(2026, 10, 15), "renew"),
                change("B", D(2026, 10, 15), "renew"), change("B", D(2026, 10, 15), "add", 1)])
    a, b = lines_of(p, "A"), lines_of(p, "B")
    assert [(x["kind"], x["amount_fen"]) for x in a] == [("addition", 0), ("renewal", 11 * 95000)]
    # B renews 10 seats first, then the added seat runs to the new expiry: 12 months, capped at 950
    assert [(x["kind"], x["amount_fen"]) for x in b] == [("renewal", 10 * 100000), ("addition", 95000)]


@pytest.mark.parametrize("rows, reason", [
    ([change("A", D(2026, 10, 5), "add", 3)], "48 + 3 seats would exceed the maximum of 50"),
    ([change("A", D(2026, 10, 5), "remove", 46)], "48 - 46 seats would go below the minimum of 3"),
])
def test_seat_limits_after_a_change(priced, rows, reason):
    p = priced([cust("A", D(2026, 2, 1), 48)], rows)
    assert not p.invoices and reason in p.rejects[0].reason and p.rejects[0].column == "seats"


def test_a_rejected_row_does_not_change_the_state_for_later_rows(priced):
    p = priced([cust("A", D(2026, 2, 1), 48)],
               [change("A", D(2026, 10, 5), "add", 3), change("A", D(2026, 10, 6), "add", 2)])
    assert [r.row for r in p.rejects] == [2]
    assert not p.invoices  # a customer with a rejected row gets no invoice that month


# -- legacy customers -----------------------------------------------------------------------------------
def test_legacy_allowances_are_used_once(priced):
    customers = [cust("L", D(2009, 5, 1), 5, legacy_rate="1100")]
    changes = [change("L", D(2010, 5, 10), "renew"), change("L", D(2010, 12, 1), "add", 2),
               change("L", D(2011, 1, 10), "add", 1), change("L", D(2011, 5, 5), "renew")]
    renew1 = lines_of(priced(customers, changes, "2010-05"))
    add1 = lines_of(priced(customers, changes, "2010-12"))
    add2 = lines_of(priced(customers, changes, "2011-01"))
    renew2 = lines_of(priced(customers, changes, "2011-05"))
    assert [(x["legacy"], x["unit_fen"], x["amount_fen"]) for x in renew1] == [(True, 110000, 550000)]
    # legacy addition: 1100 / 10 = 110 a month; Dec 1 -> May 1 = 5 months
    assert [(x["legacy"], x["unit_fen"], x["months"], x["amount_fen"]) for x in add1] == [(True, 11000, 5, 110000)]
    # second addition at market: 8 seats, 100 a month; Jan 10 -> May 1: 3 months 21 days -> 4 months
    assert [(x["legacy"], x["unit_fen"], x["months"], x["amount_fen"]) for x in add2] == [(False, 10000, 4, 40000)]
    assert [(x["legacy"], x["unit_fen"], x["amount_fen"]) for x in renew2] == [(False, 100000, 800000)]


def test_legacy_rate_on_a_modern_account_is_rejected(priced):
    p = priced([cust("A", D(2026, 10, 1), 5, legacy_rate="900")])
    (r,) = p.rejects
    assert (r.column, r.value) == ("legacy_rate", "900") and "before 2010-03-01" in r.reason
    assert not p.invoices


# -- money and calendar helpers ---------------------------------------------------------------------------
@pytest.mark.parametrize("fen, words", [(140000, "壹仟肆佰元整"), (1045000, "壹万零肆佰伍拾元整"), (300000, "叁仟元整"),
                                        (100005, "壹仟元零伍分"), (0, "零元整"), (10010000, "壹拾万零壹佰元整"),
                                        (1050, "壹拾元伍角")])
def test_chinese_capital_numerals(fen, words):
    assert chinese_capital(fen) == words


def test_renewal_completes_three_working_days_later_across_the_national_day_holiday():
    # Oct 1-7 2026 are holidays; Oct 8, Oct 9 and the make-up Saturday Oct 10 are working days
    assert add_working_days(D(2026, 9, 30), 3) == (D(2026, 10, 10), True)
    assert add_working_days(D(2026, 10, 14), 3) == (D(2026, 10, 19), True)  # over an ordinary weekend


# A made-up schedule for a year chinesecalendar 1.11 does not cover: Oct 1-7 off, Sat Oct 9 worked.
SCHEDULE_2027 = b"""
[calendar.2027]
holidays = ["2027-10-01", "2027-10-02", "2027-10-03", "2027-10-04", "2027-10-05", "2027-10-06", "2027-10-07"]
workdays = ["2027-10-09"]
"""


def test_a_year_the_calendar_package_lacks_counts_weekdays_and_says_so_unless_the_price_book_lists_it(book):
    assert add_working_days(D(2027, 9, 30), 3) == (D(2027, 10, 5), False)  # Fri Oct 1, Mon Oct 4, Tue Oct 5
    listed = pricebook.parse(book.raw + SCHEDULE_2027, "test")
    # Thu Sep 30 signed; Oct 1-7 off; Fri Oct 8, the make-up Saturday Oct 9, Mon Oct 11
    assert add_working_days(D(2027, 9, 30), 3, listed.calendar) == (D(2027, 10, 11), True)
    # a year the price book lists wins over the package's data for it
    off = pricebook.parse(book.raw + b'[calendar.2026]\nholidays = ["2026-10-14", "2026-10-15"]\n', "test")
    assert add_working_days(D(2026, 10, 13), 1, off.calendar) == (D(2026, 10, 16), True)


@pytest.mark.parametrize("table, says", [
    (b'[calendar.2027]\nholidays = ["2028-01-01"]\n', "dates of another year: 2028-01-01"),
    (b'[calendar.2027]\nworkdays = ["2027-03-03"]\n', "make-up working days are weekend days"),
    (b'[calendar.2027]\nholiday = ["2027-01-01"]\n', "unknown keys ['holiday']"),
    (b'[calendar.2027]\nholidays = ["2027-02-31"]\n', "day is out of range"),
])
def test_a_wrong_calendar_in_the_price_book_is_refused_with_the_reason(book, table, says):
    with pytest.raises(InputError, match=re.escape(says)):
        pricebook.parse(book.raw + table, "test")


def test_a_price_book_with_its_own_rules_prints_them_on_the_invoice(priced, book, tmp_path):
    from invoicer.render.pdf import Renderer

    raw = (book.raw.replace(b"round_up_after_days = 15", b"round_up_after_days = 10")
           .replace(b"completion_working_days = 3", b"completion_working_days = 5")
           .replace(b"grace_months = 1", b"grace_months = 2") + SCHEDULE_2027)
    other = pricebook.parse(raw, "test")
    p = priced([cust("A", D(2026, 10, 1), 5), cust("R", D(2026, 10, 15), 4)], [change("A", D(2027, 9, 30), "renew")],
               period="2027-09", pb=other)

    def text_of(doc):
        pdf = tmp_path / "own.pdf"
        pdf.write_bytes(Renderer().render(doc))
        return " ".join(subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True,
                                       check=True).stdout.split())

    (doc,) = p.invoices
    text = text_of({**doc, "number": "QQ-2027-000001"})
    assert "超过10天按一个月计" in text and "over 10 leftover days rounds up" in text
    # 5 working days after Thu Sep 30: Oct 8, Sat Oct 9, Oct 11, 12, 13; exact, from the price book's 2027
    assert "completes 2027-10-13 (5个工作日 working days)" in text and "weekends only" not in text
    (notice,) = p.notices
    text = text_of(notice)
    assert "保留2个月使用权" in text and "kept for 2 months" in text and "within 5 working days" in text


def test_renewal_line_prints_its_completion_date(priced):
    p = priced([cust("A", D(2025, 10, 10), 3)], [change("A", D(2026, 9, 30), "renew")], period="2026-09")
    (line,) = lines_of(p)
    assert line["completes_on"] == "2026-10-10"
    assert "completes 2026-10-10 (3 working days)" in line["explanation"]
