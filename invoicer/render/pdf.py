"""Invoices, credit notes and notices -> PDF bytes (Jinja2 templates + WeasyPrint).

Speed (see benchmarks/render.py): the stylesheet is parsed once and one FontConfiguration is kept per
process (a new one per document leaks memory); documents are rendered by a pool of worker processes,
each set up once. Safety: Jinja2 autoescapes every value, so a customer named ``<img src=...>`` prints
as text; the URL fetcher serves only files inside the template folder and refuses every other URL
(file:, http:, data: ...), so a rendered document never reads the disk or the network.
Determinism: no clock is read; the PDF identifier derives from the document number, so the same
document renders to the same bytes.
"""
from __future__ import annotations

import hashlib
import logging
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlparse

import jinja2

from ..money import chinese_capital, fmt_yuan

# templates/ sits at the repository root; a built wheel carries it inside the package (pyproject.toml)
_HERE = Path(__file__).resolve()
DEFAULT_TEMPLATES = next((p for p in (_HERE.parents[1] / "templates", _HERE.parents[2] / "templates")
                          if (p / "style.css").is_file()), _HERE.parents[2] / "templates")
TEMPLATE_FOR = {"invoice": "invoice.html.j2", "credit_note": "invoice.html.j2", "notice": "notice.html.j2"}

logging.getLogger("weasyprint").setLevel(logging.ERROR)
logging.getLogger("fontTools").setLevel(logging.ERROR)


class FetchRefused(Exception):
    pass


def make_url_fetcher(root: Path):
    root = root.resolve()

    def fetch(url: str, *args, **kwargs):
        parsed = urlparse(url)
        if parsed.scheme == "file":
            path = Path(unquote(parsed.path)).resolve()
            if path.is_relative_to(root) and path.is_file():
                from weasyprint.urls import default_url_fetcher

                return default_url_fetcher(url, *args, **kwargs)
        raise FetchRefused(f"refused to fetch {url!r}: documents may only use files of the template folder")

    return fetch


class Renderer:
    """One per process: templates, the parsed stylesheet and the font configuration are built once."""

    def __init__(self, templates_dir: str | Path | None = None):
        from weasyprint import CSS
        from weasyprint.text.fonts import FontConfiguration

        self.root = Path(templates_dir or DEFAULT_TEMPLATES).resolve()
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(self.root)),
            autoescape=True,  # every value is text, never markup
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["yuan"] = fmt_yuan
        self.env.filters["capital"] = chinese_capital
        self.fonts = FontConfiguration()
        self.fetcher = make_url_fetcher(self.root)
        self.css = CSS(filename=str(self.root / "style.css"), font_config=self.fonts, url_fetcher=self.fetcher)

    def html(self, doc: dict) -> str:
        return self.env.get_template(TEMPLATE_FOR[doc["kind"]]).render(doc=doc)

    def render(self, doc: dict) -> bytes:
        from weasyprint import HTML

        ident = hashlib.sha256((doc.get("number") or doc_key(doc)).encode()).digest()[:16]
        return HTML(string=self.html(doc), base_url=str(self.root) + "/", url_fetcher=self.fetcher).write_pdf(
            stylesheets=[self.css], font_config=self.fonts, pdf_identifier=ident, uncompressed_pdf=False)


def doc_key(doc: dict) -> str:
    notice = doc.get("notice") or {}
    return f"{doc['customer']['customer_id']}-{notice.get('notice_kind', doc['kind'])}-{doc['period']}"


_worker: Renderer | None = None


def _init(templates_dir: str) -> None:
    global _worker
    _worker = Renderer(templates_dir)


def _render_one(doc: dict) -> bytes:
    assert _worker is not None
    return _worker.render(doc)


def render_many(docs: list[dict], templates_dir: str | Path | None = None, workers: int | None = None,
                progress: bool | None = None) -> list[bytes]:
    """Render documents in order; in parallel worker processes when there are enough of them."""
    if not docs:
        return []
    workers = workers or os.cpu_count() or 1
    templates_dir = str(Path(templates_dir or DEFAULT_TEMPLATES).resolve())
    show = sys.stderr.isatty() if progress is None else progress
    if workers == 1 or len(docs) < 4:
        r = Renderer(templates_dir)
        return [r.render(d) for d in _progress(docs, show)]
    with ProcessPoolExecutor(max_workers=workers, initializer=_init, initargs=(templates_dir,)) as pool:
        chunk = max(1, min(16, len(docs) // (workers * 4)))
        return list(_progress(pool.map(_render_one, docs, chunksize=chunk), show, total=len(docs)))


def _progress(items, show: bool, total: int | None = None):
    if not show:
        yield from items
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("rendering PDFs", total=total if total is not None else len(items))
        for x in items:
            yield x
            bar.advance(task)
