"""The summary's data rows are serialised by summary._SheetRows and spliced into the sheets openpyxl writes
(a cell object per value, three million for 100,000 customers, was most of the summary's cost). The file
must stay byte for byte what openpyxl makes cell by cell: these tests write the same summaries both ways
(summary.RAW_ROWS) and compare the bytes, over hostile text and every kind of value a cell can be given;
and read the file back: text stays text (never a formula), money and dates keep their number formats.
No timing here (benchmarks/run.py, stage "summary")."""
from __future__ import annotations

import copy
import datetime as dt
import gc
import io
import zipfile
from datetime import date as D
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook

from invoicer.errors import Reject
from invoicer.render import summary

from .conftest import change, cust

WHEN = dt.datetime(2026, 10, 31)
HOSTILE = ["=1+2", "=", "+8613800000000", "-5", "@SUM(A1)", "#N/A", "#DIV/0!", "#REF!", " padded ", "\tlead",
           "trail\n", "   ", "", "a&b<c>d\"e'", "]]>", "&amp;", "line\nbreak\r\n", "emoji 😀 公司", "\ud800 lone",
           "=HYPERLINK(\"http://x\",\"y\")", "\u00a0nbsp\u00a0", "x" * 40000, " " + "y" * 32800 + " ", "TRUE", "0012"]
ODD = [None, 0, -1, 2 ** 53 - 1, 2 ** 53, -(2 ** 70), 1.5, -0.0, 1e308, 1e-300, float("nan"), float("inf"),
       True, False, Decimal("NaN"), Decimal("Infinity"), Decimal("1E+30"), Decimal("-0.00"), Decimal("0.1"),
       D(1900, 1, 1), D(1900, 2, 28), D(1900, 3, 1), D(9999, 12, 31), dt.datetime(2026, 10, 5, 13, 30),
       dt.time(12, 0), dt.timedelta(days=1, seconds=1)]


def _both(documents, accounts, rejects, monkeypatch) -> bytes:
    """The summary written cell by cell by openpyxl and with the rows spliced in: the same bytes (or the same
    refusal); the spliced one, after checking every sheet's rows went through _SheetRows."""
    monkeypatch.setattr(summary, "RAW_ROWS", False)
    try:
        reference = summary.render_summary(copy.deepcopy(documents), list(accounts), list(rejects), WHEN)
    except Exception:  # openpyxl refuses some values (control characters): so must the rows written here
        # (refused, not necessarily for the same one: a row holding Decimal('sNaN') and '\x08' is refused by
        # one way for the first, by the other for the second; no roster can make such a row)
        monkeypatch.setattr(summary, "RAW_ROWS", True)
        with pytest.raises(Exception):
            summary.render_summary(copy.deepcopy(documents), list(accounts), list(rejects), WHEN)
        gc.collect()  # openpyxl's abandoned sheet writers complain as they go: here, not in a later test
        return b""
    sheets = []
    real = summary._SheetRows.write
    monkeypatch.setattr(summary._SheetRows, "write", lambda self, rows: sheets.append(self.ws.title) or real(self, rows))
    monkeypatch.setattr(summary, "RAW_ROWS", True)
    spliced = summary.render_summary(copy.deepcopy(documents), list(accounts), list(rejects), WHEN)
    assert sheets == ["invoices", "lines", "accounts", "rejected", "totals"]
    assert spliced == reference
    return spliced


@pytest.fixture
def hostile_bills(priced):
    """Issued bills (openings, additions, renewals) whose texts are hostile: customer names, references,
    explanations, VAT rates, a bill before VAT (no split: empty money cells)."""
    customers = [cust(f"C{i:03d}", D(2026, 10, 1 + i), 3 + i) if i % 3 == 0 else
                 cust(f"C{i:03d}", D(2026, 3, 1 + i), 5) if i % 3 == 1 else cust(f"C{i:03d}", D(2025, 11, 1 + i), 4)
                 for i in range(9)]
    changes = [change(f"C{i:03d}", D(2026, 10, 2 + i), "add", 2, reference=f"ref {i}") for i in range(1, 9, 3)]
    changes += [change(f"C{i:03d}", D(2026, 10, 20 + i), "add", 1) for i in range(0, 9, 3)]  # bills of two lines
    docs = []
    for i, d in enumerate(priced(customers, changes).invoices):
        d = {**d, "number": f"=T-2026-{i:06d}" if i == 0 else f"T-2026-{i:06d}", "status": "issued"}
        d["customer"] = {**d["customer"], "name": HOSTILE[i % len(HOSTILE)]}
        d["lines"] = [{**x, "reference": HOSTILE[(i + 3 + k) % len(HOSTILE)],
                       "explanation": HOSTILE[(i + 7 + k) % len(HOSTILE)] + x["explanation"]}
                      for k, x in enumerate(d["lines"])]
        if i == 1:  # issued before VAT: no split, no rate
            d.pop("vat", None)
            d.pop("net_total_fen", None)
            d.pop("tax_total_fen", None)
            d["lines"] = [{k: v for k, v in x.items() if k not in ("net_fen", "tax_fen")} for x in d["lines"]]
        docs.append(d)
    assert len(docs) >= 6 and any(len(d["lines"]) > 1 for d in docs)
    return docs


def _accounts(values):
    dates = ["2026-10-31", "", "1900-03-01", "9999-12-31"]
    return [{"customer_id": v, "customer_name": values[(i + 1) % len(values)], "seats": values[(i + 2) % len(values)],
             "paid_through": dates[i % 4], "status": values[(i + 3) % len(values)], "next_action_on": dates[(i + 1) % 4],
             "window_opens_on": dates[(i + 2) % 4], "reclaim_on": dates[(i + 3) % 4], "quote_fen": i * 12345 - 500,
             "invoice_held": values[(i + 4) % len(values)]} for i, v in enumerate(values)]


def test_rows_spliced_in_are_the_bytes_openpyxl_writes_cell_by_cell(hostile_bills, monkeypatch):
    values = HOSTILE + ODD
    rejects = [Reject(sheet=v, row=values[(i + 1) % len(values)], column=values[(i + 2) % len(values)],
                      value=values[(i + 3) % len(values)], reason=values[(i + 4) % len(values)],
                      customer_id=values[(i + 5) % len(values)]) for i, v in enumerate(values)]
    assert _both(hostile_bills, _accounts(values), rejects, monkeypatch)
    # nothing but the header rows; and one sheet's rows only (the styles are registered as they are first used)
    assert _both([], [], [], monkeypatch)
    assert _both([], _accounts(["x", None]), [], monkeypatch)
    assert _both([], [], rejects[:3], monkeypatch)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # openpyxl's, after a refusal
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.one_of(st.none(), st.text(), st.sampled_from(HOSTILE + ODD), st.booleans(),
                                   st.integers(), st.floats(), st.decimals(), st.dates(), st.datetimes()),
                         min_size=6, max_size=6), max_size=6))
def test_any_values_in_any_order_give_the_same_bytes(monkeypatch, rows):
    """Rejected rows carry whatever the roster held (control characters too: refused alike)."""
    _both([], _accounts([r[0] for r in rows] or ["x"]), [Reject(*r) for r in rows], monkeypatch)


def test_text_stays_text_and_money_and_dates_keep_their_formats(hostile_bills, monkeypatch):
    readable = [v for v in HOSTILE if "\ud800" not in v]  # written as &#55296;, which no XML reader accepts
    for d in hostile_bills:
        d["customer"]["name"] = d["customer"]["name"].replace("\ud800", "?")
        for x in d["lines"]:
            x["reference"], x["explanation"] = x["reference"].replace("\ud800", "?"), x["explanation"].replace("\ud800", "?")
    data = _both(hostile_bills, _accounts(readable), [Reject("customers", 3, "name", v, v, v) for v in readable],
                 monkeypatch)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        sheets = [n for n in z.namelist() if n.startswith("xl/worksheets/")]
        assert len(sheets) == 5 and not any(b"<f>" in z.read(n) or b"<f " in z.read(n) for n in sheets)
    wb = load_workbook(io.BytesIO(data))
    money = {"total", "net_total", "tax_total", "unit_price", "amount", "list_amount", "discount", "net", "tax",
             "renewal_quote"}
    dates = {"issue_date", "date", "term_start", "term_end", "completes_on", "paid_through", "next_action_on",
             "window_opens_on", "reclaim_on"}
    seen = {"money": 0, "date": 0, "empty styled": 0, "hostile text": 0}
    for ws in wb.worksheets:
        rows = list(ws.iter_rows())
        header = [c.value for c in rows[0]]
        assert all(c.font.b for c in rows[0])
        for row in rows[1:]:
            for name, c in zip(header, row):
                if name in money and c.value is not None:
                    assert c.number_format == summary.MONEY_FORMAT and isinstance(c.value, (int, float)), (ws.title, c)
                    seen["money"] += 1
                elif name in dates and c.value is not None:
                    assert c.number_format == summary.DATE_FORMAT and c.is_date, (ws.title, c)
                    seen["date"] += 1
                elif name in money | dates:
                    assert c.number_format in (summary.MONEY_FORMAT, summary.DATE_FORMAT)  # blank, still styled
                    seen["empty styled"] += 1
                elif isinstance(c.value, str):
                    assert c.data_type == "s", (ws.title, c)
                    seen["hostile text"] += c.value[:1] in "=+-@#"
                else:
                    assert c.number_format == "General", (ws.title, c)
    assert all(seen.values()), seen
    invoices = {r[0].value: r for r in wb["invoices"].iter_rows(min_row=2)}
    first = invoices["=T-2026-000000"]
    assert first[2].value == "=1+2" and first[2].data_type == "s"
    assert wb["rejected"]["D2"].value == "=1+2" and wb["rejected"]["D6"].value == "@SUM(A1)"
    assert wb["rejected"]["D7"].value == "#N/A" and wb["rejected"]["D7"].data_type == "s"  # not an error cell
