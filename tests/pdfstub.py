"""A stand-in for WeasyPrint's layout, for tests whose assertions never read what a PDF shows.

Laying out a document costs ~0.1 s of CPU; most runs in the tests (numbering, re-runs, crashes, tamper, the
watcher's claims) only need each PDF's bytes to be a faithful function of the document. ``install()`` makes
``Renderer.render`` return such bytes without laying anything out: the page's HTML is still made by the real
template in the real sandbox under the real time limit (``Renderer.html``), and the bytes are a digest of what
a real PDF's bytes depend on: that HTML (every printed field), the stylesheet the renderer uses and the PDF
identifier (from the document's number). So the same document gives the same bytes in every process, and a
changed document, template or stylesheet gives other bytes, as a real render would.

The bytes look like a PDF (``%PDF-1.7`` ... ``%%EOF``) so tests that edit a file as a forger would still
change it; ``is_stub`` tells them apart from a real PDF.

Used by ``stub_render`` (tests/conftest.py) in this process, and by the processes tests/realproc.py forks
while it is on. Real layout stays proven by the tests that read PDFs (test_pdf, test_fapiao, test_rules,
test_template_trust, test_cli), the bundled sample's run (conftest.sample_run), the worker pool's and the Dask
cluster's renders (test_pdf, test_scale, test_dask_batches), which never use the stub.
"""
from __future__ import annotations

import hashlib

HEAD = b"%PDF-1.7\n% test stub (tests/pdfstub.py): the page's HTML, not laid out\n"


def render(self, doc) -> bytes:
    """``Renderer.render``, without the layout (see the module's docstring)."""
    from invoicer.render import pdf

    html = self.html(doc)  # the template in the sandbox, within the time limit: its errors are the real ones
    css = pdf.read_in_folder(self.root, "style.css")
    ident = hashlib.sha256((doc.get("number") or pdf.doc_key(doc)).encode()).hexdigest()[:32]
    body = (f"% id {ident}\n% css {hashlib.sha256(css).hexdigest()}\n"
            f"% html {hashlib.sha256(html.encode()).hexdigest()}\n")
    return HEAD + body.encode() + b"%%EOF\n"


def install() -> None:
    """Stub this process's rendering for good (a forked real process; tests use conftest.stub_render)."""
    from invoicer.render import pdf

    pdf.Renderer.render = render


def is_stub(data: bytes) -> bool:
    return data.startswith(HEAD)
