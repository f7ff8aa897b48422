"""PDF documents: text an auditor can read back, determinism, and untrusted names printed as text."""
from __future__ import annotations

import datetime as dt
import subprocess

import pytest

from invoicer.render.pdf import Renderer, RenderPool, make_url_fetcher

from .conftest import change, cust

D = dt.date
SELLER = {"name": "深圳市腾云信息技术有限公司", "tax_id": "91440300MA5EXAMPLE", "address": "深圳市南山区",
          "phone": "0755-88886666", "bank": "招商银行", "invoice_prefix": "SZTY"}


@pytest.fixture(scope="module")
def renderer():
    return Renderer()


def text_of(pdf: bytes, tmp_path) -> str:
    f = tmp_path / "x.pdf"
    f.write_bytes(pdf)
    return subprocess.run(["pdftotext", "-layout", str(f), "-"], capture_output=True, text=True, check=True).stdout


def numbered(doc, n="SZTY-2026-000007"):
    return {**doc, "number": n}


def test_invoice_text_shows_every_calculation(priced, renderer, tmp_path):
    p = priced([cust("A", D(2026, 5, 1), 5, name="杭州西湖电子商务有限公司", qq_number="4006881234"),
                cust("B", D(2025, 9, 30), 3)],
               [change("A", D(2026, 10, 10), "add", 2, reference="HT-1"), change("B", D(2026, 9, 30), "renew")],
               reseller=SELLER, period="2026-10")
    doc = numbered(p.invoices[0])
    text = text_of(renderer.render(doc), tmp_path)
    for needed in ("杭州西湖电子商务有限公司", "深圳市腾云信息技术有限公司", "SZTY-2026-000007", "2026-10-31", "4006881234",
                   "账单", "BILL", "1,400.00", "壹仟肆佰元整", "2 × 100.00 × 7 月 = 1,400.00",
                   "6 months 21 days -> 7 months (over 15 days rounds up)", "套餐 tier 3-10", "标准价 list 2,100.00",
                   "优惠 discount 700.00", "HT-1"):
        assert needed in " ".join(text.split()) or needed in text, needed


def test_renewal_line_prints_term_and_completion_date(priced, renderer, tmp_path):
    p = priced([cust("B", D(2025, 10, 10), 3)], [change("B", D(2026, 9, 30), "renew")], reseller=SELLER,
               period="2026-09")
    text = " ".join(text_of(renderer.render(numbered(p.invoices[0])), tmp_path).split())
    assert "续费 Renewal 2026-10-10 – 2027-10-09" in text
    assert "续约完成 completes 2026-10-10" in text  # 3 working days across the National Day holiday
    assert "叁仟元整" in text


def test_same_document_renders_byte_identical(priced, renderer):
    p = priced([cust("A", D(2026, 10, 3), 5)], reseller=SELLER)
    doc = numbered(p.invoices[0])
    assert renderer.render(doc) == Renderer().render(doc)


def test_worker_pool_renders_the_same_bytes_in_order_and_can_be_reused(priced, renderer):
    p = priced([cust(f"A{i}", D(2026, 10, 3 + i), 5 + i) for i in range(5)], reseller=SELLER)
    docs = [numbered(d, f"SZTY-2026-{i + 1:06d}") for i, d in enumerate(p.invoices)]
    with RenderPool(workers=2) as pool:
        first = pool.render(docs, progress=False)
        again = pool.render(docs[::-1], progress=False)  # the same workers, a second batch
    assert first == [renderer.render(d) for d in docs]
    assert again == first[::-1]


def test_untrusted_names_print_as_text_and_fetch_nothing(priced, renderer, tmp_path):
    evil = '<img src="file:///etc/passwd"><a href="http://example.com/x">点我</a>'
    p = priced([cust("A", D(2026, 10, 3), 5, name=evil, address='<link rel="stylesheet" href="http://x/y.css">')],
               reseller={**SELLER, "name": "<script>alert(1)</script>"})
    doc = numbered(p.invoices[0])
    html = renderer.html(doc)
    assert "<img" not in html and "&lt;img src=&#34;file:///etc/passwd&#34;&gt;" in html and "<script" not in html
    text = " ".join(text_of(renderer.render(doc), tmp_path).split())
    assert '<img src="file:///etc/passwd">' in text and "<script>alert(1)</script>" in text


@pytest.mark.parametrize("url", ["file:///etc/passwd", "http://example.com/a.png", "https://x/y.css",
                                 "data:text/plain,hi"])
def test_the_url_fetcher_refuses_everything_outside_the_templates(url, renderer):
    fetch = make_url_fetcher(renderer.root)
    with pytest.raises(Exception, match="refused"):
        fetch(url)


def test_a_logo_in_the_template_folder_renders_and_files_outside_it_do_not(priced, tmp_path, caplog):
    """A reseller's --templates folder may carry a logo; the same folder's page cannot pull in any other file:
    not by an absolute file: URL, not by "..", not through a symlink that points out of the folder."""
    import shutil

    from PIL import Image

    from invoicer.render.pdf import DEFAULT_TEMPLATES

    outside = tmp_path / "secret.png"
    Image.new("RGB", (8, 8), "red").save(outside)
    tpl = tmp_path / "tpl"
    shutil.copytree(DEFAULT_TEMPLATES, tpl)
    Image.new("RGB", (40, 20), (11, 79, 138)).save(tpl / "logo.png")
    (tpl / "link.png").symlink_to(outside)
    page = (tpl / "invoice.html.j2").read_text(encoding="utf-8")
    page = page.replace('<table class="head">', '<img src="logo.png" style="height:8mm">'
                        f'<img src="{outside.as_uri()}"><img src="../secret.png"><img src="link.png">'
                        '<table class="head">', 1)
    (tpl / "invoice.html.j2").write_text(page, encoding="utf-8")

    p = priced([cust("A", D(2026, 10, 3), 5)], reseller=SELLER)
    f = tmp_path / "logo.pdf"
    f.write_bytes(Renderer(tpl).render(numbered(p.invoices[0])))
    images = subprocess.run(["pdfimages", "-list", str(f)], capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in images.splitlines()[2:]]
    assert [(r[3], r[4]) for r in rows] == [("40", "20")]  # the logo, and only the logo
    # the template's author is told once per URL (".." names the same file as the file: URL)
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 2 and "left out of the PDFs" in notes[0]
    assert {n.split()[5].rstrip(";") for n in notes} == {outside.as_uri(), (tpl / "link.png").as_uri()}


def test_a_long_invoice_breaks_pages_between_lines_never_inside_one(priced, renderer, tmp_path):
    """30 lines over 3 pages: the column headings repeat, and a line's calculation never starts a page."""
    import re

    p = priced([cust("A", D(2026, 5, 1), 3)],
               [change("A", D(2026, 10, 1 + i % 28), "add", 1, reference=f"HT-{i:04d}") for i in range(30)],
               reseller=SELLER)
    f = tmp_path / "long.pdf"
    f.write_bytes(renderer.render(numbered(p.invoices[0])))
    pages = subprocess.run(["pdftotext", "-layout", str(f), "-"], capture_output=True, text=True,
                           check=True).stdout.split("\f")[:-1]
    assert len(pages) >= 2
    for n, page in enumerate(pages[1:], start=2):
        rows = [r for r in page.splitlines() if r.strip()]
        assert "项目 Item" in rows[0], f"page {n}: no column headings"
        assert re.match(r"\s*\d+\s+加工号 Added seats", rows[1]), f"page {n} starts inside a line: {rows[1]!r}"
        assert f"Page {n} of {len(pages)}" in page


def test_notices_say_what_is_due_and_what_reclaim_loses(priced, renderer, tmp_path):
    p = priced([cust("R", D(2025, 11, 10), 12), cust("G", D(2025, 10, 1), 4)], reseller=SELLER, period="2026-10")
    kinds = {n["customer"]["customer_id"]: n for n in p.notices}
    renewal = " ".join(text_of(renderer.render(kinds["R"]), tmp_path).split())
    assert "续费通知" in renewal and "RENEWAL NOTICE" in renewal and "2026-11-09" in renewal
    assert "12 工号 seats × 950.00" in renewal and "11,400.00" in renewal and "壹万壹仟肆佰元整" in renewal
    overdue = " ".join(text_of(renderer.render(kinds["G"]), tmp_path).split())
    assert "逾期通知" in overdue and "停止主动发起会话" in overdue and "2026-11-01" in overdue
    assert "聊天记录" in overdue and "This notice is not an invoice" in overdue


def test_pdf_has_metadata_and_one_embedded_cjk_font(priced, renderer, tmp_path):
    from pypdf import PdfReader

    p = priced([cust("A", D(2026, 10, 3), 5)], reseller=SELLER)
    f = tmp_path / "m.pdf"
    f.write_bytes(renderer.render(numbered(p.invoices[0])))
    meta = PdfReader(f).metadata
    assert "SZTY-2026-000007" in meta.title and meta.author == SELLER["name"]
    fonts = subprocess.run(["pdffonts", str(f)], capture_output=True, text=True).stdout
    rows = [line.split() for line in fonts.splitlines()[2:]]
    assert len(rows) == 1 and "WenQuanYi" in rows[0][0]  # one face: one subsetting pass per PDF
    assert rows[0][-5:-2] == ["yes", "yes", "yes"]  # embedded, subset, with a Unicode map (extractable)
