"""Invoices, credit notes and notices -> PDF bytes (Jinja2 templates + WeasyPrint).

Speed (see benchmarks/render.py): the stylesheet is parsed once and one FontConfiguration is kept per
process (a new one per document leaks memory); documents are rendered by a pool of worker processes,
each set up once and kept for as long as its owner lives (RenderPool); the template's tables use the
fixed layout algorithm, which skips WeasyPrint's min/max-content pass (a quarter of a document's time).
Safety: Jinja2 autoescapes every value, so a customer named ``<img src=...>`` prints as text; the URL
fetcher (a WeasyPrint ``URLFetcher``) serves only files inside the template folder, such as a reseller's
logo, and refuses every other URL (file: elsewhere, http:, data: ...), so rendering never reads the rest
of the disk or the network.
Determinism: no clock is read; the PDF identifier derives from the document number, so the same
document renders to the same bytes.
"""
from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import signal
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
# a refused URL is reported once by our fetcher (below), not once per document by WeasyPrint
logging.getLogger("weasyprint").addFilter(lambda record: "FetchRefused" not in record.getMessage())
logging.getLogger("fontTools").setLevel(logging.ERROR)


# An invoice's printed rules come from its price book (documents.rules_note) and are kept in its snapshot.
# Snapshots recorded before that print the text the template then had, so they re-render byte-identical.
RULES_BEFORE_SNAPSHOT = {
    "zh": "开通与续费按账户工号数所在套餐计年费; 加工号按月费计至账户到期日, 不足整月的天数超过15天按一个月计, 否则不计, "
          "每工号不超过一年年费.",
    "en": "Opening and renewal: seats × the annual price of the tier of the account's seat count. Added seats: "
          "seats × monthly rate × whole months to the paid-through date (over 15 leftover days rounds up), never "
          "more than a year per seat.",
    "completion_working_days": 3, "grace_zh": "一个月", "grace_en": "one month",
}


class FetchRefused(Exception):
    pass


_log = logging.getLogger("invoicer.render")
_refused: set[str] = set()


def make_url_fetcher(root: Path):
    """A WeasyPrint URL fetcher that serves files inside ``root`` (a template's logo, fonts, CSS imports)
    and refuses every other URL: file: outside the folder, http:, https:, data:, ftp: ..."""
    from weasyprint.urls import URLFetcher, URLFetcherResponse

    root = root.resolve()

    class TemplateFolderFetcher(URLFetcher):
        def fetch(self, url, headers=None):
            parsed = urlparse(url)
            if parsed.scheme == "file" and not parsed.netloc:
                path = Path(unquote(parsed.path)).resolve()  # resolves "..", and symlinks out of the folder
                if path.is_relative_to(root) and path.is_file():
                    return URLFetcherResponse(path.as_uri(), path.read_bytes(), status=200)
            shown = url if len(url) <= 120 else url[:117] + "..."
            if shown not in _refused:  # once per process, so a template's remote logo is one line, not one per PDF
                _refused.add(shown)
                _log.warning("note: the template asks for %s; left out of the PDFs (documents may only use "
                             "files of the template folder %s)", shown, root)
            raise FetchRefused(f"refused to fetch {url!r}: documents may only use files of the template folder")

    # fail_on_errors=False: a refused or missing resource is left out of the document rather than failing
    # the invoice (the template's author sees the note above); nothing outside the folder is ever read.
    return TemplateFolderFetcher(allowed_protocols=("file",), fail_on_errors=False)


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
        if "rules" not in doc:
            doc = {**doc, "rules": RULES_BEFORE_SNAPSHOT}
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
_WARM_UP = {"kind": "warm-up"}  # a task that only sets the worker up


def _init(templates_dir: str) -> None:
    global _worker
    # Ctrl-C and SIGTERM are for the owner, which finishes its current work and then closes the pool;
    # a worker killed by them would break the batch being rendered.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _worker = Renderer(templates_dir)


def _render_one(doc: dict) -> bytes:
    assert _worker is not None
    if doc["kind"] == _WARM_UP["kind"]:
        # loads the font files and Pango's caches, so the first real document is not the slow one
        from weasyprint import HTML

        return HTML(string="<p>企业QQ 发票 Invoice 0123456789</p>", url_fetcher=_worker.fetcher).write_pdf(
            stylesheets=[_worker.css], font_config=_worker.fonts)
    return _worker.render(doc)


class RenderPool:
    """Worker processes that render documents; each sets up its Renderer once.

    The workers start (import WeasyPrint, about 1 s, then parse the CSS and load the fonts) as soon as the
    pool is made, so a long-lived owner (the drop-folder watcher) pays that once for many runs. (Making it
    at the start of ``invoicer run`` was measured and not kept: a re-run with nothing to render then waits
    for the start-up.) With one worker, documents are rendered in this process instead.
    """

    def __init__(self, templates_dir: str | Path | None = None, workers: int | None = None):
        self.templates_dir = str(Path(templates_dir or DEFAULT_TEMPLATES).resolve())
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._local: Renderer | None = None
        self._pool: ProcessPoolExecutor | None = None
        if self.workers > 1:
            # spawn, not fork: the owner may have threads (the watcher's observer, numpy's BLAS pool, a
            # progress bar) and forking a threaded process can copy a held lock into the child
            self._pool = ProcessPoolExecutor(max_workers=self.workers, initializer=_init,
                                             initargs=(self.templates_dir,),
                                             mp_context=multiprocessing.get_context("spawn"))
            for _ in range(self.workers):  # one task each makes the pool start every worker now
                self._pool.submit(_render_one, _WARM_UP)

    def render(self, docs: list[dict], progress: bool | None = None) -> list[bytes]:
        """Render documents, in order."""
        show = sys.stderr.isatty() if progress is None else progress
        if not docs:
            return []
        if self._pool is None:
            if self._local is None:
                self._local = Renderer(self.templates_dir)
            return [self._local.render(d) for d in _progress(docs, show)]
        # one document per task: a task is ~80 ms against well under 1 ms of hand-over, and bigger chunks
        # left one worker idle at the end of a batch (measured: 5% slower with 16 per task)
        return list(_progress(self._pool.map(_render_one, docs, chunksize=1), show, total=len(docs)))

    def render_iter(self, docs: list[dict], progress: bool | None = None):
        """Render documents, yielding each one's bytes in order as soon as it is done (a caller streaming
        them to disk never holds the batch in memory)."""
        show = sys.stderr.isatty() if progress is None else progress
        if not docs:
            return
        if self._pool is None:
            if self._local is None:
                self._local = Renderer(self.templates_dir)
            for d in _progress(docs, show):
                yield self._local.render(d)
            return
        yield from _progress(self._pool.map(_render_one, docs, chunksize=1), show, total=len(docs))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> "RenderPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def render_many(docs: list[dict], templates_dir: str | Path | None = None, workers: int | None = None,
                progress: bool | None = None) -> list[bytes]:
    """Render documents in order: in this process when there are only a few, else in a fresh pool."""
    if len(docs) < 4:
        workers = 1
    with RenderPool(templates_dir, workers) as pool:
        return pool.render(docs, progress)


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
