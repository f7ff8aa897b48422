"""The tests' PDF stub (tests/pdfstub.py) is faithful where the tests that use it rely on it: the same document
gives the same bytes (in a real process too: test_ledger, whose worker has tests/realproc.py's helper process
already); whatever would change a real PDF (a printed field, the number, the template, the stylesheet) changes
the stub's bytes; a template's failure is the real one."""
from __future__ import annotations

import datetime as dt
import shutil

import pytest

from invoicer.errors import InvoicerError
from invoicer.render.pdf import DEFAULT_TEMPLATES, Renderer

from . import pdfstub
from .conftest import cust

D = dt.date


@pytest.fixture
def doc(priced):
    return {**priced([cust("A", D(2026, 10, 3), 5)]).invoices[0], "number": "QQ-2026-000001"}


def test_the_same_document_gives_the_same_bytes_and_any_printed_change_other_bytes(doc, tmp_path, stub_render):
    one = Renderer().render(doc)
    assert pdfstub.is_stub(one) and one.startswith(b"%PDF-") and one.endswith(b"%%EOF\n")
    assert Renderer().render(doc) == one
    renamed = {**doc, "customer": {**doc["customer"], "name": "另一家公司"}}
    assert Renderer().render(renamed) != one
    assert Renderer().render({**doc, "number": "QQ-2026-000002"}) != one
    tpl = tmp_path / "tpl"
    shutil.copytree(DEFAULT_TEMPLATES, tpl)
    with open(tpl / "style.css", "a", encoding="utf-8") as css:
        css.write("\n.seller-name { color: #7a1f5c; }\n")
    restyled = Renderer(tpl).render(doc)
    assert restyled != one
    page = (tpl / "invoice.html.j2").read_text(encoding="utf-8")
    (tpl / "invoice.html.j2").write_text(page.replace('<table class="head">', '<p>新</p><table class="head">', 1),
                                         encoding="utf-8")
    assert Renderer(tpl).render(doc) not in (one, restyled)
    (tpl / "invoice.html.j2").write_text(page.replace("{{ doc.customer.name }}", "{{ doc.customer.nope }}"),
                                         encoding="utf-8")
    with pytest.raises(InvoicerError, match="cannot render QQ-2026-000001"):
        Renderer(tpl).render(doc)

