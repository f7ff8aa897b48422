"""Invoices, credit notes and notices -> PDF bytes (Jinja2 templates + WeasyPrint).

Speed (see benchmarks/render.py): the stylesheet is parsed once and one FontConfiguration is kept per
process (a new one per document leaks memory); documents are rendered by a pool of worker processes,
each set up once and kept for as long as its owner lives (RenderPool); the template's tables use the
fixed layout algorithm, which skips WeasyPrint's min/max-content pass (a quarter of a document's time).

Trust: a template folder (``--templates``) comes from a reseller and is treated as hostile code.
- Templates run in Jinja2's ImmutableSandboxedEnvironment: they see ``doc`` (plain data), the filters
  ``yuan`` and ``capital`` and a few harmless built-in ones (SAFE_BUILTIN_FILTERS), and a bounded
  ``range``; no other globals. Python internals (``__class__``, ``__globals__``, ``_private``) are out of
  reach and ``doc`` cannot be changed. Such an access fails the render: exit 2 and one line naming the
  template and line (StrictUndefined: nothing is silently printed as blank).
- Time: each document (template + WeasyPrint) has a time limit (``time_limit``, DEFAULT_TIME_LIMIT_S). It
  is checked in the sandbox's hooks (every call, attribute, item, ``range`` step, operator and output
  chunk), and a timer interrupts the rendering thread (WeasyPrint included) in any thread; a pool
  worker that still overruns is killed with its pool (RenderPool), and the pool is made again on next use.
- Memory: ``range`` is capped (100,000 items), texts and lists built by a template are capped
  (MAX_TEXT_CHARS per value: ``*``, ``+``, ``~``, ``%``, padding and joining methods are checked), a page's
  HTML is capped (MAX_HTML_CHARS), and numbers cannot grow past MAX_INT_BITS.
- Files: every template, ``style.css`` and every file a page uses (a logo) is read through
  ``read_in_folder``: a regular file under the folder, each path component opened with O_NOFOLLOW. A
  symbolic link inside the folder is refused even when it points inside (one rule, no resolving races),
  as are "..", FIFOs and devices. The URL fetcher (a WeasyPrint ``URLFetcher``) serves only such files
  and refuses every other URL (file: elsewhere, http:, data: ...), so rendering never reads the rest of
  the disk or the network. Jinja2 autoescapes every value, so a customer named ``<img src=...>`` prints
  as text. ``check_templates`` finds a missing or unsafe page or stylesheet before anything is numbered.
Workers: a pool worker exits when its owner dies, even by ``kill -9`` (PR_SET_PDEATHSIG plus a
parent-pid watchdog), so no worker or multiprocessing resource tracker outlives ``invoicer run``.
Determinism: no clock goes into a document (the time limit only reads a monotonic timer); the PDF
identifier derives from the document number, so the same document renders to the same bytes.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import multiprocessing
import os
import re
import signal
import stat
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from urllib.parse import unquote, urlparse

import jinja2
from jinja2.compiler import CodeGenerator
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment, safe_range

from ..errors import InputError, InvoicerError
from ..model import Document
from ..money import chinese_capital, fmt_yuan

# templates/ sits at the repository root; a built wheel carries it inside the package (pyproject.toml)
_HERE = Path(__file__).resolve()
DEFAULT_TEMPLATES = next((p for p in (_HERE.parents[1] / "templates", _HERE.parents[2] / "templates")
                          if (p / "style.css").is_file()), _HERE.parents[2] / "templates")
TEMPLATE_FOR = {"invoice": "invoice.html.j2", "credit_note": "invoice.html.j2", "notice": "notice.html.j2"}
REQUIRED_FILES = ("invoice.html.j2", "notice.html.j2", "style.css")

DEFAULT_TIME_LIMIT_S = 60.0  # per document; today's documents take ~0.1 s, a 30-line invoice ~0.3 s
MAX_TEMPLATE_BYTES = 4 << 20  # one template file or style.css
MAX_RESOURCE_BYTES = 32 << 20  # one file a page uses (a logo, a font)
MAX_TEXT_CHARS = 1_000_000  # one text or list a template builds
MAX_HTML_CHARS = 16_000_000  # one document's HTML (a 30-line invoice is ~40,000)
MAX_INT_BITS = 100_000  # about 30,000 digits
# built-in filters that cannot run code or grow memory beyond their input (no width or count argument)
SAFE_BUILTIN_FILTERS = ("default", "d", "length", "count", "upper", "lower", "trim", "first", "last",
                        "e", "escape")
POOL_START_LIMIT_S = 180.0  # starting a worker (import WeasyPrint, fonts) on a loaded machine
POOL_GRACE_S = 15.0  # on top of a document's limit before its worker is presumed stuck and killed

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


class TemplateFileError(InputError):
    """A template file is missing, or is not a regular file inside the template folder (exit 2)."""


class RenderTimeout(BaseException):
    """Raised inside a render whose time is up. A BaseException, so that neither a template nor
    WeasyPrint's ``except Exception`` (around image loading, say) can swallow it."""


_log = logging.getLogger("invoicer.render")
_refused: set[str] = set()


# --- files of the template folder -------------------------------------------------------------------

def _parts(name: str) -> list[str]:
    """'a/./b' -> ['a', 'b'] (as Jinja's FileSystemLoader reads names); '..' is refused, not resolved."""
    if "\\" in name or "\0" in name:
        raise TemplateFileError(f"{name!r}: not a plain file name of the template folder")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise TemplateFileError(f"{name!r}: not a file inside the template folder")
    return parts


def read_in_folder(root: Path, name: str, limit: int = MAX_TEMPLATE_BYTES) -> bytes:
    """The bytes of the regular file ``name`` ('invoice.html.j2', 'img/logo.png') inside the folder
    ``root``. Every component is opened relative to its parent with O_NOFOLLOW, so no symbolic link is
    followed, whether it points out of the folder or not; '..', FIFOs, devices, sockets and files over
    ``limit`` bytes are refused. Raises TemplateFileError (exit 2) naming the file; for a missing file its
    ``missing`` attribute is true."""
    parts = _parts(name)
    shown = f"{'/'.join(parts)} in the template folder {root}"
    dir_flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd, part = -1, ""
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the folder itself: the operator's choice
        for part in parts[:-1]:
            sub = os.open(part, dir_flags, dir_fd=fd)
            os.close(fd)
            fd = sub
        part = parts[-1]
        # O_NONBLOCK: opening a FIFO must not wait for a writer
        f = os.open(part, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd)
    except FileNotFoundError:
        err = TemplateFileError(f"{shown} does not exist")
        err.missing = True
        raise err from None
    except OSError as exc:
        link = exc.errno == errno.ELOOP
        if exc.errno == errno.ENOTDIR and fd >= 0:  # a link to a folder, or a file used as a folder
            with contextlib.suppress(OSError):
                link = stat.S_ISLNK(os.lstat(part, dir_fd=fd).st_mode)
        if link:
            why = "is, or is reached through, a symbolic link (links are not followed in a template folder)"
        else:
            why = f"cannot be opened: {exc.strerror}"
        raise TemplateFileError(f"{shown} {why}") from None
    finally:
        if fd >= 0:
            os.close(fd)
    with os.fdopen(f, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise TemplateFileError(f"{shown} is not a regular file")
        if st.st_size > limit:
            raise TemplateFileError(f"{shown} is larger than {limit:,} bytes")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise TemplateFileError(f"{shown} is larger than {limit:,} bytes")
    return data


class FolderLoader(jinja2.BaseLoader):
    """Jinja loader for the pages and the files they include, import or extend: read_in_folder only."""

    def __init__(self, root: Path):
        self.root = root

    def get_source(self, environment, template):
        try:
            data = read_in_folder(self.root, template)
        except TemplateFileError as exc:
            if getattr(exc, "missing", False):
                raise jinja2.TemplateNotFound(template) from None
            raise
        # the path is only a label for error messages; the code is never read from it again
        return data.decode("utf-8"), str(self.root / "/".join(_parts(template))), lambda: True


def make_url_fetcher(root: Path):
    """A WeasyPrint URL fetcher that serves files inside ``root`` (a template's logo, fonts, CSS imports),
    read with read_in_folder (no symbolic links), and refuses every other URL: file: outside the folder,
    http:, https:, data:, ftp: ..."""
    from weasyprint.urls import URLFetcher, URLFetcherResponse

    root = root.resolve()

    class TemplateFolderFetcher(URLFetcher):
        def fetch(self, url, headers=None):
            parsed = urlparse(url)
            if parsed.scheme == "file" and not parsed.netloc:
                path = os.path.normpath(unquote(parsed.path))  # "a/../b" -> "b"; links are not resolved
                if path.startswith(str(root) + os.sep):
                    with contextlib.suppress(TemplateFileError):
                        data = read_in_folder(root, os.path.relpath(path, root), MAX_RESOURCE_BYTES)
                        return URLFetcherResponse(Path(path).as_uri(), data, status=200)
            shown = url if len(url) <= 120 else url[:117] + "..."
            if shown not in _refused:  # once per process, so a template's remote logo is one line, not one per PDF
                _refused.add(shown)
                _log.warning("note: the template asks for %s; left out of the PDFs (documents may only use "
                             "files of the template folder %s)", shown, root)
            raise FetchRefused(f"refused to fetch {url!r}: documents may only use files of the template folder")

    # fail_on_errors=False: a refused or missing resource is left out of the document rather than failing
    # the invoice (the template's author sees the note above); nothing outside the folder is ever read.
    return TemplateFolderFetcher(allowed_protocols=("file",), fail_on_errors=False)


# --- the sandbox ------------------------------------------------------------------------------------

_render_state = threading.local()  # .clock: the _Clock of the render running in this thread, if any


class _Clock:
    """The time limit of one render in one thread. Past the deadline a sandbox hook raises RenderTimeout,
    and a timer thread raises it asynchronously in the rendering thread (CPython's
    PyThreadState_SetAsyncExc), so WeasyPrint's own Python code is interrupted too, in any thread (SIGALRM
    only reaches a main thread, and would take the process's one alarm from anything else using it, such
    as a test runner's timeout). An asynchronous exception that lands in a garbage-collector callback or a
    ``__del__`` is lost, so the timer sends it again every REPEAT_S until the render ends. A C call that
    never returns is not interrupted; in a pool worker, RenderPool's kill covers that."""

    REPEAT_S = 2.0

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds
        self.thread = threading.get_ident()
        self.lock = threading.Lock()
        self.closed = self.sent = False
        self.timer = self._arm(seconds)

    def _arm(self, seconds: float) -> threading.Timer:
        timer = threading.Timer(seconds, self._interrupt)
        timer.daemon = True
        timer.start()
        return timer

    def check(self) -> None:
        if not self.closed and time.monotonic() > self.deadline:
            raise RenderTimeout()

    def _interrupt(self) -> None:  # in the timer's thread
        with self.lock:
            if self.closed:
                return
            self.sent = True
            _async_raise(self.thread, RenderTimeout)
            self.timer = self._arm(self.REPEAT_S)

    def close(self) -> None:
        """End the limit; an interruption sent but not yet delivered is withdrawn. (One delivered while
        this runs propagates from it; the caller treats it as the timeout it is.)"""
        with self.lock:
            self.closed = True
            self.timer.cancel()
            if self.sent:
                self.sent = False
                _async_raise(self.thread, None)


def _async_raise(thread_id: int, exc) -> None:
    import ctypes

    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id),
                                               ctypes.py_object(exc) if exc is not None else None)


def _check_deadline() -> None:
    clock = getattr(_render_state, "clock", None)
    if clock is not None:
        clock.check()


def _too_big(what: str) -> SecurityError:
    return SecurityError(f"{what} is too large for a document (at most {MAX_TEXT_CHARS:,} characters or items)")


def _sized(value):
    if isinstance(value, (str, list, tuple)) and len(value) > MAX_TEXT_CHARS:
        raise _too_big(f"a {type(value).__name__} of {len(value):,}")
    return value


class _BoundedRange:
    """``range`` for templates: at most 100,000 items (Jinja's safe_range), and the render's deadline is
    checked while a loop walks it, so nested loops cannot run past the time limit."""

    def __init__(self, *args):
        self._r = safe_range(*args)

    def __iter__(self):
        for n, i in enumerate(self._r):
            if n % 512 == 0:
                _check_deadline()
            yield i

    def __len__(self):
        return len(self._r)

    def __getitem__(self, i):
        return self._r[i]

    def __contains__(self, x):
        return x in self._r


_FORMAT_WIDTH = re.compile(r"\d{7,}|\*")  # a width or precision of a million or more, or one taken from args
_PADDING_METHODS = {"center", "ljust", "rjust", "zfill", "expandtabs"}


def _check_format(fmt: str, style: str) -> None:
    """Refuse a format string ('{:>9999999}', '%0999999999d', '{:{}}', '%*d') whose widths could make
    a huge text; its values may be any size ('%d' % 123456789 is fine)."""
    specs = re.findall(r"\{[^{}]*(?:\{[^{}]*\}[^{}]*)*\}", fmt) if style == "{" else re.findall(r"%[^a-zA-Z%]*", fmt)
    if any(_FORMAT_WIDTH.search(spec) or spec.count("{") > 1 for spec in specs):
        raise _too_big(f"a {'format()' if style == '{' else '%'} width")


def _bounded_method_args(owner, name: str, args: tuple, kwargs: dict) -> tuple:
    """Refuse str and int methods whose result would be far larger than their input, before they allocate
    it; returns the arguments to call with (join's iterable, read once)."""
    values = [*args, *kwargs.values()]
    if isinstance(owner, int):
        if name == "to_bytes" and any(isinstance(v, int) and v > MAX_TEXT_CHARS for v in values):
            raise _too_big("to_bytes() of a length over 1,000,000")
        return args
    if name in _PADDING_METHODS and any(isinstance(v, int) and v > MAX_TEXT_CHARS for v in values):
        raise _too_big(f"{name}() of a width over {MAX_TEXT_CHARS:,}")
    if name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        hits = owner.count(args[0]) if args[0] else len(owner) + 1
        if len(owner) + hits * max(0, len(args[1]) - len(args[0])) > MAX_TEXT_CHARS:
            raise _too_big("the result of replace()")
    if name == "translate" and args and isinstance(args[0], dict):
        longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
        if len(owner) * longest > MAX_TEXT_CHARS:
            raise _too_big("the result of translate()")
    if name == "join" and args:
        items = list(args[0])
        if len(owner) * len(items) + sum(len(x) for x in items if isinstance(x, str)) > MAX_TEXT_CHARS:
            raise _too_big("the result of join()")
        return (items, *args[1:])
    return args


class _BoundedCodeGenerator(CodeGenerator):
    """Jinja's code generator, with every ``~`` concatenation's result size-checked: growth by doubling
    (``{% set s = s ~ s %}`` many times over) stops at MAX_TEXT_CHARS."""

    def visit_Concat(self, node, frame):
        self.write("environment.bounded(")
        super().visit_Concat(node, frame)
        self.write(")")


class TemplateSandbox(ImmutableSandboxedEnvironment):
    """The Jinja environment for untrusted templates: Jinja's immutable sandbox, plus the render's
    deadline and size limits checked in its hooks (calls, attributes, items, operators)."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def bounded(self, value):
        _check_deadline()
        return _sized(value)

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 (Jinja's own signature)
        _check_deadline()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, (str, int)):
            args = _bounded_method_args(owner, getattr(__obj, "__name__", ""), args, kwargs)
        elif isinstance(getattr(getattr(__obj, "__wrapped__", None), "__self__", None), str):
            _check_format(__obj.__wrapped__.__self__, "{")  # str.format, which the sandbox wraps
        return _sized(super().call(__context, __obj, *args, **kwargs))

    def getattr(self, obj, attribute):
        _check_deadline()
        if isinstance(obj, jinja2.Undefined):  # "'cycler' is undefined", not "'__init__' ... is unsafe"
            obj._fail_with_undefined_error()
        return super().getattr(obj, attribute)

    def getitem(self, obj, argument):
        _check_deadline()
        if isinstance(obj, jinja2.Undefined):
            obj._fail_with_undefined_error()
        return super().getitem(obj, argument)

    def call_binop(self, context, operator, left, right):
        _check_deadline()
        ints = isinstance(left, int) and isinstance(right, int)
        if operator == "**" and ints and right > 0 and max(1, abs(left).bit_length()) * right > MAX_INT_BITS:
            raise SecurityError(f"{left} ** {right} is too large a number for a document")
        if operator == "*":
            if ints and abs(left).bit_length() + abs(right).bit_length() > MAX_INT_BITS:
                raise SecurityError("the product is too large a number for a document")
            seq, n = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > MAX_TEXT_CHARS:
                raise _too_big(f"{type(seq).__name__} * {n}")
        if operator == "%" and isinstance(left, str):
            _check_format(left, "%")
        return _sized(super().call_binop(context, operator, left, right))


class _CompiledTemplates(jinja2.BytecodeCache):
    """Compiled template code, kept in memory for the life of the process (the most recent 64 templates):
    ``check_templates`` and every run's renderer make a new environment, and each compiled the same pages
    again (about 30 ms a run; the watcher runs one per file). Jinja keys an entry by the template's name and
    file and checks the SHA-1 of its source before using it, so a changed file, or another folder's file of
    the same name, is compiled anew; every environment that uses it is made by ``make_environment`` (the same
    sandbox and code generator), and a template that fails to compile is never kept."""

    SIZE = 64

    def __init__(self):
        from collections import OrderedDict

        self._code: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()  # renderers of several threads share it (an eviction between a lookup
        # and its move to the end would otherwise fail a render)

    def load_bytecode(self, bucket) -> None:
        with self._lock:
            data = self._code.get(bucket.key)
            if data is not None:
                self._code.move_to_end(bucket.key)
        if data is not None:
            bucket.bytecode_from_string(data)  # left empty (compiled again) unless the source's checksum matches

    def dump_bytecode(self, bucket) -> None:
        data = bucket.bytecode_to_string()
        with self._lock:
            self._code[bucket.key] = data
            self._code.move_to_end(bucket.key)
            while len(self._code) > self.SIZE:
                self._code.popitem(last=False)


_COMPILED = _CompiledTemplates()


def make_environment(root: Path) -> TemplateSandbox:
    """The sandboxed Jinja environment for the template folder ``root`` (resolved): only ``doc`` (passed
    at render), the filters ``yuan``, ``capital`` and SAFE_BUILTIN_FILTERS, and a bounded ``range``."""
    env = TemplateSandbox(
        bytecode_cache=_COMPILED,
        loader=FolderLoader(root),
        autoescape=True,  # every value is text, never markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters = {name: env.filters[name] for name in SAFE_BUILTIN_FILTERS}
    env.filters["yuan"] = fmt_yuan
    env.filters["capital"] = chinese_capital
    env.globals.clear()  # cycler, joiner, lipsum, namespace, dict: none of them is needed by a document
    env.globals["range"] = _BoundedRange
    return env


def _template_folder(templates_dir: str | Path | None) -> Path:
    root = Path(templates_dir or DEFAULT_TEMPLATES).resolve()
    if not root.is_dir():
        raise TemplateFileError(f"the template folder {root} does not exist or is not a folder")
    return root


def check_templates(templates_dir: str | Path | None = None) -> Path:
    """Check a template folder before anything is numbered: the pages (invoice.html.j2, notice.html.j2)
    and style.css exist as regular files of the folder (no symbolic links), and the pages compile in the
    sandbox. Returns the folder, resolved. Raises TemplateFileError / InputError (exit 2) with one line
    naming the file; includes are read when a document is rendered."""
    root = _template_folder(templates_dir)
    for name in REQUIRED_FILES:
        read_in_folder(root, name)
    env = make_environment(root)
    for name in sorted(set(TEMPLATE_FOR.values())):
        try:
            env.get_template(name)
        except InvoicerError:
            raise
        except Exception as exc:  # noqa: BLE001 - a template's syntax is the reseller's, reported as one line
            raise InputError(f"template {name} in {root} {_where(exc, root)}cannot be used: {_reason(exc)}") from None
    return root


def _where(exc: BaseException, root: Path) -> str:
    """'line 12 of _parties.html.j2: ' for the innermost template frame of an error, else ''."""
    if isinstance(exc, jinja2.TemplateSyntaxError) and exc.lineno:
        return f"(line {exc.lineno} of {exc.name or exc.filename}) "
    found = ""
    tb = exc.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if name.startswith(str(root) + os.sep):
            found = f"(line {tb.tb_lineno} of {os.path.relpath(name, root)}) "
        tb = tb.tb_next
    return found


def _reason(exc: BaseException) -> str:
    if isinstance(exc, jinja2.TemplateNotFound):
        return f"the file {exc.name!r} is not in the template folder"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# --- rendering --------------------------------------------------------------------------------------

class Renderer:
    """One per process (or shared by threads): templates, the parsed stylesheet and the font
    configuration are built once.

    ``templates_dir``: a template folder (default: the shipped templates); ``time_limit``: seconds a
    document (template and PDF layout) may take, DEFAULT_TIME_LIMIT_S by default. Raises TemplateFileError
    (exit 2) when style.css is missing or unsafe."""

    def __init__(self, templates_dir: str | Path | None = None, time_limit: float = DEFAULT_TIME_LIMIT_S):
        from weasyprint.text.fonts import FontConfiguration

        self.root = _template_folder(templates_dir)
        self.time_limit = float(time_limit)
        self.env = make_environment(self.root)
        self.fonts = FontConfiguration()
        self.fetcher = make_url_fetcher(self.root)
        self._css_text = read_in_folder(self.root, "style.css")  # checked now (a regular file of the folder)
        self._css = None

    @property
    def css(self):
        """The parsed stylesheet, made at the first layout (30 ms: a renderer that only makes HTML, or whose
        documents were all rendered before, never parses it): the bytes and the file's own URL, as
        CSS(filename=...) reads it, with this renderer's fonts and fetcher."""
        from weasyprint import CSS

        if self._css is None:
            self._css = CSS(string=self._css_text, base_url=str(self.root / "style.css"), font_config=self.fonts,
                            url_fetcher=self.fetcher)
        return self._css

    def html(self, doc: Document) -> str:
        """The document's HTML, from its page template (within the time limit)."""
        return self._limited(doc, lambda: self._html(doc))

    def render(self, doc: Document) -> bytes:
        """The document's PDF bytes. Raises InvoicerError (exit 2) with one line naming the template when
        the template fails, breaks the sandbox's rules or takes longer than the time limit."""
        from weasyprint import HTML

        ident = hashlib.sha256((doc.get("number") or doc_key(doc)).encode()).digest()[:16]

        def work() -> bytes:
            html = self._html(doc)
            try:
                return HTML(string=html, base_url=str(self.root) + "/", url_fetcher=self.fetcher).write_pdf(
                    stylesheets=[self.css], font_config=self.fonts, pdf_identifier=ident, uncompressed_pdf=False)
            except Exception as exc:  # noqa: BLE001 - a hostile stylesheet is reported, not a traceback
                raise InvoicerError(f"laying out {_doc_label(doc)} with the templates in {self.root} failed: "
                                    f"{_reason(exc)}") from None

        return self._limited(doc, work)

    def _html(self, doc: dict) -> str:
        if "rules" not in doc:
            doc = {**doc, "rules": RULES_BEFORE_SNAPSHOT}
        # labels and VAT fields of the document; defaults for documents issued before they were recorded
        from ..labels import render_view

        doc = render_view(doc)
        name = TEMPLATE_FOR[doc["kind"]]
        try:
            chunks, size = [], 0
            # streamed, so that the deadline and the size are checked while the page is being written
            for chunk in self.env.get_template(name).generate(doc=doc):
                size += len(chunk)
                if size > MAX_HTML_CHARS:
                    raise SecurityError(f"the page is longer than {MAX_HTML_CHARS:,} characters")
                _check_deadline()
                chunks.append(chunk)
            return "".join(chunks)
        except InvoicerError as exc:
            raise InvoicerError(f"template {name} in {self.root}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - a template is untrusted code; its failure is one line
            raise InvoicerError(f"template {name} in {self.root} {_where(exc, self.root)}cannot render "
                                f"{_doc_label(doc)}: {_reason(exc)}") from None

    def _limited(self, doc: dict, work):
        """``work()`` under this renderer's time limit (a _Clock for this thread); RenderTimeout becomes
        InvoicerError (exit 2), wherever it arrives, even while the limit is being ended."""
        try:
            clock = _render_state.clock = _Clock(self.time_limit)
            try:
                return work()
            finally:
                _render_state.clock = None
                clock.close()
        except RenderTimeout:
            _render_state.clock = None
            while True:  # the timer must be stopped before this returns, whatever arrives meanwhile
                try:
                    clock.close()
                    break
                except RenderTimeout:
                    pass
            name = TEMPLATE_FOR.get(doc.get("kind"), "template")
            raise InvoicerError(
                f"template {name} in {self.root} took longer than {self.time_limit:g} s to render "
                f"{_doc_label(doc)} (a loop too long, or a page too large?)") from None


def _doc_label(doc: dict) -> str:
    if doc.get("number"):
        return str(doc["number"])
    with contextlib.suppress(Exception):
        return doc_key(doc)
    return "a document"


def doc_key(doc: Document) -> str:
    notice = doc.get("notice") or {}
    return f"{doc['customer']['customer_id']}-{notice.get('notice_kind', doc['kind'])}-{doc['period']}"


# --- worker processes -------------------------------------------------------------------------------

_worker: Renderer | None = None
_worker_args: tuple = ()
_WARM_UP = {"kind": "warm-up"}  # a task that only sets the worker up
PR_SET_PDEATHSIG = 1


def _start_forkserver() -> None:
    """Start the forkserver (once per process) so that it imports nothing from the working folder: it is a
    ``python -c`` process, which puts its working folder first on sys.path, and Python 3.11's forkserver does
    not apply the owner's sys.path before importing its preload modules. PYTHONSAFEPATH (Python 3.11+) keeps
    that folder off sys.path; it is set only while the server starts, so nothing else inherits it."""
    from multiprocessing import forkserver

    saved = os.environ.get("PYTHONSAFEPATH")
    os.environ["PYTHONSAFEPATH"] = "1"
    try:
        forkserver.ensure_running()
    finally:
        if saved is None:
            os.environ.pop("PYTHONSAFEPATH", None)
        else:
            os.environ["PYTHONSAFEPATH"] = saved


def _die_with_parent(owner_pid: int, deathsig: bool) -> None:
    """End this worker when its owner dies, however it dies (kill -9 included). A worker's parent is the
    pool's forkserver, which ends when its owner does: the kernel then sends SIGKILL (PR_SET_PDEATHSIG,
    Linux). A watchdog thread also ends the worker when its parent changes or the owner's pid is gone
    (other systems, and an owner that made the pool in a thread that may end first). The resource tracker
    exits by itself once its last user (owner or worker) is gone."""
    if deathsig and sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    parent = os.getppid()

    def gone() -> bool:
        if os.getppid() != parent:
            return True
        try:
            os.kill(owner_pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            pass  # alive, another user's (cannot happen for our own owner, but never a false alarm)
        return False

    if gone():  # the owner died while this worker was starting
        os._exit(0)

    def watch() -> None:
        while not gone():
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _init(templates_dir: str, time_limit: float, parent_pid: int, deathsig: bool) -> None:
    global _worker, _worker_args
    _die_with_parent(parent_pid, deathsig)
    # Ctrl-C and SIGTERM are for the owner, which finishes its current work and then closes the pool;
    # a worker killed by them would break the batch being rendered.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _worker_args = (templates_dir, time_limit)
    # a failure here is reported by the first task (an initializer's exception would break the pool)
    with contextlib.suppress(InvoicerError):
        _worker = Renderer(templates_dir, time_limit)


def _render_one(doc: Document) -> bytes:
    global _worker
    if _worker is None:
        _worker = Renderer(*_worker_args)  # raises the same one-line error as the start did
    if doc["kind"] == _WARM_UP["kind"]:
        # loads the font files and Pango's caches, so the first real document is not the slow one
        from weasyprint import HTML

        return _worker._limited(doc, lambda: HTML(string="<p>企业QQ 发票 Invoice 0123456789</p>",
                                                  url_fetcher=_worker.fetcher).write_pdf(
            stylesheets=[_worker.css], font_config=_worker.fonts))
    return _worker.render(doc)


class RenderPool:
    """Worker processes that render documents; each sets up its Renderer once.

    The workers start (import WeasyPrint, about 1 s, then parse the CSS and load the fonts) as soon as the
    pool is made, so a long-lived owner (the drop-folder watcher) pays that once for many runs. (Making it
    at the start of ``invoicer run`` was measured and not kept: a re-run with nothing to render then waits
    for the start-up.) With one worker, documents are rendered in this process instead.

    ``time_limit``: seconds per document (DEFAULT_TIME_LIMIT_S). Each worker enforces it; a worker that
    does not answer within the limit plus POOL_GRACE_S is killed with the whole pool, the render fails
    with InvoicerError (exit 2), and the next ``render`` starts a new pool. Workers exit when the owner
    process dies.
    """

    def __init__(self, templates_dir: str | Path | None = None, workers: int | None = None,
                 time_limit: float = DEFAULT_TIME_LIMIT_S):
        self.templates_dir = str(Path(templates_dir or DEFAULT_TEMPLATES).resolve())
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.time_limit = float(time_limit)
        self._local: Renderer | None = None
        self._pool: ProcessPoolExecutor | None = None
        self._warming: list = []
        if self.workers > 1:
            self._start()

    def _start(self) -> ProcessPoolExecutor:
        # forkserver, not fork: the owner may have threads (the watcher's observer, numpy's BLAS pool, a
        # progress bar) and forking a threaded process can copy a held lock into the child. The server is
        # a fresh single-threaded interpreter that imports WeasyPrint once; each worker is a fork of it, so
        # a pool starts in milliseconds instead of each worker importing WeasyPrint (~1 s of CPU). The
        # server ends with its owner; workers are tied to the owner by the parent watch (_die_with_parent).
        deathsig = threading.current_thread() is threading.main_thread()
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["invoicer.render._forkserver"])
        _start_forkserver()
        self._pool = ProcessPoolExecutor(max_workers=self.workers, initializer=_init,
                                         initargs=(self.templates_dir, self.time_limit, os.getpid(), deathsig),
                                         mp_context=ctx)
        # one task each makes the pool start every worker now
        self._warming = [self._pool.submit(_render_one, _WARM_UP) for _ in range(self.workers)]
        return self._pool

    def render(self, docs: list[Document], progress: bool | None = None) -> list[bytes]:
        """Render documents, in order. Raises InvoicerError (exit 2) naming the template and document when
        one fails or overruns the time limit; nothing is returned then."""
        return list(self.render_iter(docs, progress))

    def render_iter(self, docs: list[Document], progress: bool | None = None):
        """Render documents, yielding each one's bytes in order as soon as it is done (a caller streaming
        them to disk never holds the batch in memory). Raises as ``render`` does."""
        show = sys.stderr.isatty() if progress is None else progress
        if not docs:
            return
        if self.workers == 1:
            if self._local is None:
                self._local = Renderer(self.templates_dir, self.time_limit)
            for d in _progress(docs, show):
                yield self._local.render(d)
            return
        yield from _progress(self._results(docs), show, total=len(docs))

    def _results(self, docs: list[dict]):
        pool = self._pool or self._start()
        futures = []
        warming, self._warming = self._warming, []
        try:
            for f in warming:
                self._wait(f, POOL_START_LIMIT_S, _WARM_UP)
            # one document per task: a task is ~80 ms against well under 1 ms of hand-over, and bigger
            # chunks left one worker idle at the end of a batch (measured: 5% slower with 16 per task)
            futures = [pool.submit(_render_one, d) for d in docs]
            for f, doc in zip(futures, docs):
                # when this wait starts, every earlier document is done, so this one is running or next in
                # line: its worker had the time limit, plus the grace, to answer
                yield self._wait(f, self.time_limit + POOL_GRACE_S, doc)
        finally:
            for f in futures:
                f.cancel()

    def _wait(self, future, timeout: float, doc: dict):
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            self._kill()
            name = TEMPLATE_FOR.get(doc.get("kind"), "style.css")
            raise InvoicerError(
                f"template {name} in {self.templates_dir} took longer than {timeout:g} s to render "
                f"{_doc_label(doc) if doc is not _WARM_UP else 'a first page'}; its worker process was "
                f"stopped") from None
        except BrokenProcessPool:
            self._kill()
            raise InvoicerError(f"a PDF worker process died while rendering {_doc_label(doc)} with the "
                                f"templates in {self.templates_dir} (out of memory?)") from None

    def _kill(self) -> None:
        """Kill the workers (one may be stuck where no deadline reaches) and drop the pool; the next
        render makes a new one."""
        pool, self._pool, self._warming = self._pool, None, []
        if pool is None:
            return
        procs = list((getattr(pool, "_processes", None) or {}).values())
        for p in procs:
            with contextlib.suppress(Exception):
                p.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            with contextlib.suppress(Exception):
                p.join(5)

    def close(self) -> None:
        self._warming = []
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> "RenderPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class progress_bar:
    """A rich progress bar on stderr (shown on a terminal, or when ``show`` says so) for ``total`` items;
    entering gives ``advance(n)``. The run's render pass and ``_progress`` both use it."""

    def __init__(self, total: int, show: bool | None):
        self.total, self.show = total, (sys.stderr.isatty() if show is None else show) and total > 0
        self._progress = None

    def __enter__(self):
        if not self.show:
            return lambda n: None
        from rich.progress import Progress

        self._progress = Progress(transient=True)
        self._progress.__enter__()
        task = self._progress.add_task("rendering PDFs", total=self.total)
        return lambda n: self._progress.advance(task, n)

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)


def _progress(items, show: bool, total: int | None = None):
    with progress_bar(total if total is not None else len(items) if show else 0, show) as advance:
        for x in items:
            yield x
            advance(1)