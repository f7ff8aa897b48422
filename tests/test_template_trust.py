"""A reseller's template folder is hostile code: the sandbox, the time limit, the folder's walls, and
PDF workers that never outlive their owner (issue 10)."""
from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import jinja2
import pytest

from invoicer.errors import InvoicerError
from invoicer.render import pdf
from invoicer.render.pdf import (
    DEFAULT_TEMPLATES,
    Renderer,
    RenderPool,
    TemplateFileError,
    check_templates,
    make_url_fetcher,
    read_in_folder,
)

from .conftest import INVOICER, ROOT, cust, run_cli, write_roster

D = dt.date
SELLER = {"name": "深圳市腾云信息技术有限公司", "tax_id": "91440300MA5EXAMPLE", "invoice_prefix": "SZTY"}
SECRET = "TOPSECRET-7f3a"


@pytest.fixture(scope="module")
def docs(tmp_path_factory, book):
    from invoicer.pipeline import price_roster

    path = write_roster(tmp_path_factory.mktemp("r") / "r.xlsx",
                        [cust("A", D(2026, 10, 3), 5), cust("R", D(2025, 11, 10), 12)], reseller=SELLER)
    p = price_roster(path, book, "2026-10")
    return {"invoice": {**p.invoices[0], "number": "SZTY-2026-000001"}, "notice": p.notices[0]}


@pytest.fixture
def tpl(tmp_path):
    """A copy of the shipped templates, and a secret file next to it (outside the folder)."""
    folder = tmp_path / "tpl"
    shutil.copytree(DEFAULT_TEMPLATES, folder)
    (tmp_path / "secret.j2").write_text(SECRET, encoding="utf-8")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "part.j2").write_text(SECRET, encoding="utf-8")
    return folder


def with_body(folder: Path, snippet: str, page: str = "invoice.html.j2") -> Path:
    text = (folder / page).read_text(encoding="utf-8")
    (folder / page).write_text(text.replace("<body", snippet + "<body", 1), encoding="utf-8")
    return folder


def refused(folder: Path, doc: dict, within: float = 60, **kw) -> str:
    """The one-line message of the InvoicerError (exit 2) that rendering doc's HTML raises, in less than
    ``within`` seconds (the Renderer's start-up not counted)."""
    renderer = Renderer(folder, **kw)
    t0 = time.monotonic()
    with pytest.raises(InvoicerError) as err:
        renderer.html(doc)
    assert time.monotonic() - t0 < within
    message = str(err.value)
    assert err.value.exit_code == 2 and "\n" not in message
    return message


# --- 1. the sandbox -----------------------------------------------------------------------------------

@pytest.mark.parametrize("snippet, reason", [
    ("{{ cycler.__init__.__globals__.os.popen('touch CANARY').read() }}", "'cycler' is undefined"),
    ("{{ lipsum.__globals__['os'].system('touch CANARY') }}", "'lipsum' is undefined"),
    ("{{ joiner() }}{{ namespace() }}", "'joiner' is undefined"),
    ("{{ dict(a=1) }}", "'dict' is undefined"),
    ("{{ config.items() }}", "'config' is undefined"),
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "access to attribute '__class__' of 'str' object is unsafe"),
    ("{{ doc.__class__ }}", "access to attribute '__class__' of 'dict' object is unsafe"),
    ("{{ doc.get.__self__ }}", "'__self__'"),
    ("{{ self._TemplateReference__context }}", "'_TemplateReference__context'"),
    ("{{ range.__init__.__globals__ }}", "'__init__'"),
    ("{{ '{0.__class__.__init__.__globals__}'.format(doc) }}", "'__class__'"),
    ("{{ doc|attr('__class__') }}", "No filter named 'attr'"),
    ("{{ doc.customer.update({'name': 'X'}) }}", "'update' of 'dict' object is unsafe"),
    ("{{ doc.lines.append(1) }}", "'append' of 'list' object is unsafe"),
    ("{{ doc.no_such_field }}", "'dict object' has no attribute 'no_such_field'"),
])
def test_a_template_cannot_reach_python_or_change_the_document(tpl, docs, tmp_path, monkeypatch, snippet, reason):
    """Every escape the issue reproduced (and its cousins) fails the render with one line naming the
    template, the line and the reason; no code runs (the canary file is never made) and doc is unchanged."""
    monkeypatch.chdir(tmp_path)
    doc = docs["invoice"]
    before = repr(doc)
    message = refused(with_body(tpl, snippet), doc)
    assert message.startswith(f"template invoice.html.j2 in {tpl} (line ")
    assert "cannot render SZTY-2026-000001: " in message and reason in message, message
    assert not (tmp_path / "CANARY").exists() and repr(doc) == before


def test_the_same_snippet_would_run_code_without_the_sandbox(tmp_path, monkeypatch):
    """The attack in the first case above is real: Jinja without the sandbox runs it (so that test can fail)."""
    monkeypatch.chdir(tmp_path)
    jinja2.Environment().from_string("{{ cycler.__init__.__globals__.os.popen('touch CANARY').read() }}").render()
    assert (tmp_path / "CANARY").exists()


def test_the_shipped_templates_render_exactly_as_without_the_sandbox(docs):
    """Same HTML as the unsandboxed environment the templates were written for, and the same PDF bytes as
    the renderer had before (HTML + CSS(filename=style.css))."""
    from weasyprint import CSS, HTML

    plain = jinja2.Environment(loader=jinja2.FileSystemLoader(str(DEFAULT_TEMPLATES)), autoescape=True,
                               undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    plain.filters.update(yuan=pdf.fmt_yuan, capital=pdf.chinese_capital)
    r = Renderer()
    for doc in (docs["invoice"], docs["notice"]):
        assert r.html(doc) == plain.get_template(pdf.TEMPLATE_FOR[doc["kind"]]).render(
            doc={**doc, "rules": doc.get("rules", pdf.RULES_BEFORE_SNAPSHOT)})
    doc = docs["invoice"]
    ident = pdf.hashlib.sha256(doc["number"].encode()).digest()[:16]
    old = HTML(string=r.html(doc), base_url=str(r.root) + "/", url_fetcher=r.fetcher).write_pdf(
        stylesheets=[CSS(filename=str(r.root / "style.css"), font_config=r.fonts, url_fetcher=r.fetcher)],
        font_config=r.fonts, pdf_identifier=ident, uncompressed_pdf=False)
    assert r.render(doc) == old


def test_a_template_may_still_use_its_filters_loops_and_macros(tpl, docs):
    with_body(tpl, "{% macro m(x) %}[{{ x|upper }}]{% endmacro %}"
                   "<!--{{ m('ok') }} {{ doc.total_fen|yuan }} {{ doc.total_fen|capital }} "
                   "{% for i in range(3) %}{{ i }}{% endfor %} {{ doc.customer.nope|default('-') }} "
                   "{{ doc.lines|length }} {{ '%d|%5.1f' % (123456789, 2.25) }} {{ '{:>12,}'.format(123456789) }} "
                   "{{ ', '.join(['a', 'b']) }} {{ 'a-b'.replace('-', '+').center(5, '*') }}-->")
    html = Renderer(tpl).html(docs["invoice"])
    assert "<!--[OK] 5,000.00 伍仟元整 012 - 1 123456789|  2.2  123,456,789 a, b *a+b*-->" in html


# --- 2. time and memory ------------------------------------------------------------------------------

NESTED = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"


def test_a_huge_range_is_refused_at_once(tpl, docs):
    message = refused(with_body(tpl, "{% for i in range(10**12) %}{{ i }}{% endfor %}"), docs["invoice"], within=15)
    assert "Range too big" in message


def test_an_endless_loop_stops_at_the_time_limit(tpl, docs):
    message = refused(with_body(tpl, NESTED), docs["invoice"], within=15, time_limit=0.5)
    assert message == (f"template invoice.html.j2 in {tpl} took longer than 0.5 s to render SZTY-2026-000001 "
                       f"(a loop too long, or a page too large?)")


SLOW_LAYOUT = "{% for i in range(30000) %}<table><tr><td>{{ i }}</td><td>x</td></tr></table>{% endfor %}"


# The limit's interruption is repeated until the render ends; one that lands in a garbage-collector callback
# (hypothesis installs one in this process) is reported by Python as "ignored", which is the case it covers.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("snippet", [NESTED, SLOW_LAYOUT], ids=["template loop", "slow layout"])
def test_the_time_limit_holds_in_a_thread_for_the_template_and_for_weasyprint(tpl, docs, snippet):
    """A Dask worker thread cannot use SIGALRM: the sandbox's hooks stop a template's loop, and the
    render's timer interrupts WeasyPrint laying out a page that takes long (this one: well over 20 s)."""
    r = Renderer(with_body(tpl, snippet), time_limit=1.5)  # the template alone takes ~0.1 s: 15 times less
    if snippet == SLOW_LAYOUT:
        assert len(r.html(docs["invoice"])) > 1_400_000  # the template itself is done in time
    caught = []

    def go():
        try:
            r.render(docs["invoice"])
        except InvoicerError as exc:
            caught.append((str(exc), time.monotonic() - t0))

    t0 = time.monotonic()
    t = threading.Thread(target=go)
    t.start()
    t.join(60)
    assert not t.is_alive() and len(caught) == 1
    assert "took longer than 1.5 s to render SZTY-2026-000001" in caught[0][0] and caught[0][1] < 20, caught
    assert r.render(docs["notice"])[:5] == b"%PDF-"  # the renderer is still usable


@pytest.mark.parametrize("snippet, reason", [
    ("{{ 'x' * 10**9 }}", "str * 1000000000 is too large"),
    ("{{ [0] * 10**8 }}", "list * 100000000 is too large"),
    ("{% set s = 'x' * 900000 %}{% set s = s ~ s %}{{ s }}", "a str of 1,800,000 is too large"),
    ("{% set s = 'x' * 900000 %}{{ s + s }}", "a str of 1,800,000 is too large"),
    ("{{ 'x'.ljust(10**9) }}", "ljust() of a width over 1,000,000"),
    ("{{ '%0999999999d' % 1 }}", "a % width is too large"),
    ("{{ '{:>999999999}'.format(1) }}", "a format() width is too large"),
    ("{{ 'ab'.replace('', 'x' * 900000) }}", "the result of replace() is too large"),
    ("{{ ('x' * 900000).join(['a', 'b', 'c']) }}", "the result of join() is too large"),
    ("{{ 9 ** (9 ** 9) }}", "9 ** 387420489 is too large a number"),
    ("{{ '{:{}}'.format(1, 10**9) }}", "a format() width is too large"),
    ("{{ '%*d' % (10**9, 1) }}", "a % width is too large"),
    ("{{ ('a' * 999999).translate({97: 'bb'}) }}", "the result of translate() is too large"),
    ("{{ (1).to_bytes(10**9, 'big') }}", "to_bytes() of a length over 1,000,000"),
    ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "maximum recursion depth exceeded"),
    ("{% for i in range(100000) %}{{ 'x' * 999 }}{% endfor %}", "the page is longer than 16,000,000 characters"),
])
def test_a_template_cannot_build_huge_texts_or_numbers(tpl, docs, snippet, reason):
    message = refused(with_body(tpl, snippet), docs["invoice"], within=30)  # never allocated
    assert reason in message, message


def test_pool_workers_keep_the_limit_and_a_stuck_worker_is_killed_with_its_pool(tpl, docs, monkeypatch):
    with_body(tpl, NESTED)
    with RenderPool(tpl, workers=2, time_limit=1) as pool:
        with pytest.raises(InvoicerError, match=r"took longer than 1 s to render SZTY-2026-000001"):
            pool.render([docs["invoice"]], progress=False)  # the worker stopped its own render
        workers = list(pool._pool._processes.values())
        assert all(p.is_alive() for p in workers)
        # a worker that does not answer in time (here: the owner waits less than the worker's own limit)
        monkeypatch.setattr(pdf, "POOL_GRACE_S", -0.7)
        t0 = time.monotonic()
        with pytest.raises(InvoicerError, match=r"took longer than 0.3 s .* its worker process was stopped"):
            pool.render([docs["invoice"]], progress=False)
        # dead or a zombie, read from /proc (_alive): Process.is_alive() says "alive" for a worker another thread
        # of the pool reaped first (its waitpid then fails with ECHILD), seen about once in five runs
        assert time.monotonic() - t0 < 10 and not any(_alive(p.pid) for p in workers)
        monkeypatch.setattr(pdf, "POOL_GRACE_S", 15.0)
        pool.time_limit = 60  # a first page on a loaded machine may take more than a second
        assert pool.render([docs["notice"]], progress=False)[0][:5] == b"%PDF-"  # a new pool


# --- 3. the folder's walls -----------------------------------------------------------------------------

@pytest.mark.parametrize("make, snippet", [
    (lambda t: (t / "inc.j2").symlink_to(t.parent / "secret.j2"), '{% include "inc.j2" %}'),
    (lambda t: (t / "inc.j2").symlink_to(t / "_parties.html.j2"), '{% include "inc.j2" %}'),  # even inside
    (lambda t: (t / "m.j2").symlink_to(t.parent / "secret.j2"), '{% import "m.j2" as m %}'),
    (lambda t: (t / "parts").symlink_to(t.parent / "outside"), '{% include "parts/part.j2" %}'),
    (lambda t: (t / "sub").mkdir() or (t / "sub" / "inc.j2").symlink_to(t.parent / "secret.j2"),
     '{% include "sub/inc.j2" %}'),
])
def test_includes_and_imports_never_follow_a_link(tpl, docs, make, snippet):
    make(tpl)
    message = refused(with_body(tpl, snippet), docs["invoice"])
    assert "symbolic link (links are not followed in a template folder)" in message and SECRET not in message


def test_extends_of_a_link_and_dotdot_are_refused(tpl, docs):
    (tpl / "base.j2").symlink_to(tpl.parent / "secret.j2")
    (tpl / "invoice.html.j2").write_text('{% extends "base.j2" %}', encoding="utf-8")
    assert "base.j2 in the template folder" in refused(tpl, docs["invoice"])
    (tpl / "invoice.html.j2").write_text('{% include "../secret.j2" %}', encoding="utf-8")
    assert "'../secret.j2': not a file inside the template folder" in refused(tpl, docs["invoice"])
    (tpl / "invoice.html.j2").write_text(f'{{% include "{tpl.parent}/secret.j2" %}}', encoding="utf-8")
    assert "is not in the template folder" in refused(tpl, docs["invoice"])  # absolute: read inside the folder


def test_a_subfolder_of_the_template_folder_is_fine(tpl, docs):
    (tpl / "parts").mkdir()
    (tpl / "parts" / "x.j2").write_text("<!--part {{ doc.number }}-->", encoding="utf-8")
    assert "<!--part SZTY-2026-000001-->" in Renderer(with_body(tpl, '{% include "parts/x.j2" %}')).html(docs["invoice"])


@pytest.mark.parametrize("name", ["invoice.html.j2", "notice.html.j2", "style.css"])
def test_a_page_or_stylesheet_that_is_a_link_is_refused_before_rendering(tpl, name):
    (tpl / name).unlink()
    (tpl / name).symlink_to(tpl.parent / "secret.j2")
    with pytest.raises(TemplateFileError) as err:
        check_templates(tpl)
    assert str(err.value) == (f"{name} in the template folder {tpl} is, or is reached through, a symbolic "
                              f"link (links are not followed in a template folder)")
    assert err.value.exit_code == 2


def test_fifos_files_used_as_folders_and_oversized_files_are_refused(tpl):
    with pytest.raises(TemplateFileError, match="style.css/x.j2 in the template folder .* cannot be opened: Not a "
                                                "directory"):
        read_in_folder(tpl, "style.css/x.j2")
    os.mkfifo(tpl / "fifo.j2")
    with pytest.raises(TemplateFileError, match="fifo.j2 in the template folder .* is not a regular file"):
        read_in_folder(tpl, "fifo.j2")  # and does not wait for a writer
    with open(tpl / "big.j2", "wb") as f:
        f.truncate(pdf.MAX_TEMPLATE_BYTES + 1)
    with pytest.raises(TemplateFileError, match="is larger than 4,194,304 bytes"):
        read_in_folder(tpl, "big.j2")


def test_a_syntax_error_is_found_before_anything_is_numbered(tpl):
    (tpl / "notice.html.j2").write_text("line one\n{% for x in %}\n", encoding="utf-8")
    with pytest.raises(InvoicerError) as err:
        check_templates(tpl)
    assert str(err.value).startswith(f"template notice.html.j2 in {tpl} (line 2 of notice.html.j2) cannot be used")


def test_the_url_fetcher_refuses_links_even_inside_the_folder(tpl):
    (tpl / "logo.png").write_bytes(b"PNG")
    (tpl / "img").mkdir()
    (tpl / "img" / "a.png").write_bytes(b"PNG-A")
    (tpl / "link.png").symlink_to(tpl / "logo.png")
    (tpl / "imgs").symlink_to(tpl / "img")
    fetch = make_url_fetcher(tpl)
    assert fetch((tpl / "logo.png").as_uri()).read() == b"PNG"
    assert fetch((tpl / "img" / "a.png").as_uri()).read() == b"PNG-A"
    for url in ((tpl / "link.png").as_uri(), (tpl / "imgs" / "a.png").as_uri(), (tpl / "fifo").as_uri(),
                (tpl / "nothing.png").as_uri(), tpl.as_uri() + "/../secret.j2"):
        with pytest.raises(pdf.FetchRefused):
            fetch(url)


@pytest.mark.parametrize("damage, named", [
    (lambda t: (t / "notice.html.j2").unlink(), "notice.html.j2 in the template folder {t} does not exist"),
    (lambda t: ((t / "style.css").unlink(), (t / "style.css").symlink_to("/etc/passwd")),
     "style.css in the template folder {t} is, or is reached through, a symbolic link"),
])
def test_run_with_a_broken_template_folder_exits_2_before_numbering(tpl, tmp_path, damage, named):
    damage(tpl)
    roster = write_roster(tmp_path / "r.xlsx", [cust("A", D(2026, 10, 3), 5)], reseller=SELLER)
    out = tmp_path / "out"
    r = run_cli("run", roster, "--period", "2026-10", "--out", out, "--templates", tpl)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(f"error: {named.format(t=tpl)}"), r.stderr
    assert len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (out / "ledger.sqlite").exists()  # nothing was numbered


# --- 4. no orphaned workers ----------------------------------------------------------------------------

def _children(pid: int) -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        ppid = next((line.split()[1] for line in status.splitlines() if line.startswith("PPid:")), "")
        if ppid == str(pid):
            found[int(entry.name)] = cmdline
    return found


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status  # a zombie holds no memory; only its exit status is left


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_no_worker_or_resource_tracker_outlives_a_killed_run(tmp_path, sig):
    roster = write_roster(tmp_path / "r.xlsx", [cust(f"A{i}", D(2026, 10, 1 + i % 28), 5 + i % 20) for i in range(40)],
                          reseller=SELLER)
    proc = subprocess.Popen([*INVOICER, "run", str(roster), "--period", "2026-10", "--out", str(tmp_path / "out"),
                             "--workers", "2"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: dict[int, str] = {}
    deadline = time.monotonic() + 120

    def descendants(pid: int) -> dict[int, str]:
        found, frontier = {}, [pid]
        while frontier:
            for child, cmdline in _children(frontier.pop()).items():
                if child not in found:
                    found[child] = cmdline
                    frontier.append(child)
        return found

    def workers() -> int:  # forks of the pool's forkserver (which carry its command line), the server too
        return sum("forkserver" in c for c in seen.values())

    try:
        while time.monotonic() < deadline and proc.poll() is None:
            seen.update(descendants(proc.pid))
            if workers() >= 3:  # the server and both workers (the resource tracker starts before them)
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before its workers could be seen"
        proc.send_signal(sig)
    finally:
        proc.wait(30)
    assert proc.returncode == -sig  # killed by it, not ended of itself (a test process once passed on SIGTERM ignored)
    assert workers() >= 3, seen
    gone_by = time.monotonic() + 30  # a worker still importing WeasyPrint on a loaded machine checks at its start
    while any(_alive(p) for p in seen) and time.monotonic() < gone_by:
        time.sleep(0.1)
    assert [c for p, c in seen.items() if _alive(p)] == []


def test_compiled_templates_are_reused_only_for_the_same_source(tpl, docs, monkeypatch):
    compiled = []
    real = pdf.TemplateSandbox.compile

    def counting(self, source, name=None, filename=None, *a, **kw):
        compiled.append(name)
        return real(self, source, name, filename, *a, **kw)

    monkeypatch.setattr(pdf.TemplateSandbox, "compile", counting)
    first = Renderer(tpl).html(docs["invoice"])
    check_templates(tpl)
    assert sorted(set(compiled)) == ["_parties.html.j2", "invoice.html.j2", "notice.html.j2"]
    compiled.clear()
    check_templates(tpl)
    assert Renderer(tpl).html(docs["invoice"]) == first and compiled == []  # another run: compiled once
    with_body(tpl, "<p>EDITED-MARK</p>")  # the same file, changed: compiled anew
    assert "EDITED-MARK" in Renderer(tpl).html(docs["invoice"]) and compiled == ["invoice.html.j2"]
    parties = tpl / "_parties.html.j2"
    parties.write_text(parties.read_text(encoding="utf-8") + "PARTIES-MARK", encoding="utf-8")
    assert "PARTIES-MARK" in Renderer(tpl).html(docs["invoice"])  # an included file too
    (tpl / "invoice.html.j2").write_text("{% if %}", encoding="utf-8")
    with pytest.raises(InvoicerError) as err:
        check_templates(tpl)  # a broken version of a file whose good version was kept is still refused
    assert err.value.exit_code == 2
