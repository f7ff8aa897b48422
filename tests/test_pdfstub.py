"""The tests' PDF stub (tests/pdfstub.py) is faithful where the tests that use it rely on it: the same document
gives the same bytes, in this process and in a real one; whatever would change a real PDF (a printed field,
the number, the template, the stylesheet) changes the stub's bytes; a template's failure is the real one."""
from __future__ import annotations

import datetime as dt
import shutil

import pytest

from invoicer.errors import InvoicerError
from invoicer.render.pdf import DEFAULT_TEMPLATES, Renderer

from . import pdfstub, realproc
from .conftest import ROOT, cust, run_cli, write_roster

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


def test_a_real_process_started_meanwhile_gives_the_same_bytes(tmp_path, stub_render):
    roster = write_roster(tmp_path / "r.xlsx", [cust("A", D(2026, 10, 3), 5)])
    child = realproc.run(["run", roster, "--period", "2026-10", "--out", tmp_path / "child", "--workers", "1"],
                         cwd=ROOT)
    assert child.returncode == 0, child.stderr
    assert run_cli("run", roster, "--period", "2026-10", "--out", tmp_path / "here").returncode == 0
    name = "invoices/QQ-2026-000001.pdf"
    mine = (tmp_path / "here" / name).read_bytes()
    assert pdfstub.is_stub(mine) and (tmp_path / "child" / name).read_bytes() == mine
