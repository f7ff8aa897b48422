from __future__ import annotations

import contextlib
import datetime as dt
import io
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from openpyxl import Workbook

from invoicer import pricebook
from invoicer.pipeline import price_roster

from . import pdfstub

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "roster.xlsx"
# a fresh interpreter: only where its start is the point (what a package imports) or its resources are read from
# outside; crashes, kills, runs at once and the watcher use tests/realproc.py (real processes, imports paid once)
INVOICER = [sys.executable, "-m", "invoicer.cli"]

CUSTOMER_HEADERS = ["customer_id", "name", "opened_on", "seats", "paid_through", "legacy_rate", "qq_number",
                    "email", "address", "tax_id"]
CHANGE_HEADERS = ["customer_id", "date", "type", "seats", "reference"]


# Modules whose tests take longest (real processes, the corpus, the Dask cluster), longest first: with xdist
# (``--dist loadfile``, pyproject.toml) each worker takes the next module of the queue when it has two tests
# left, so a long module that starts last decides when the suite ends. Measured with ``make test`` on 2 busy
# cores: watch ~40 s, scale and ledger ~35-40 s, template_trust ~30 s, corpus and watch_hostile ~25-30 s,
# review_findings with golden ~20 s, pdf ~17 s, review_session5 ~10-15 s, properties ~10 s; the streaming modules (fapiao, partitions,
# xlsx, csv, perdoc) ~10-15 s each.
SLOW_FIRST = ("test_watch.py", "test_scale.py", "test_ledger.py", "test_template_trust.py", "test_corpus.py",
              "test_watch_hostile.py", "test_review_findings.py", "test_review7.py", "test_review8.py", "test_review9.py",
              "test_golden.py", "test_pdf.py", "test_review_session5.py", "test_properties.py",
              "test_fapiao_stream.py", "test_partitions.py", "test_xlsx_stream.py", "test_csv_stream.py",
              "test_perdoc.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each module keeps its order


# Modules that share a session fixture run in one worker, so it is made once: the sample run (sample_run).
SAME_WORKER = {"test_review_findings.py": "sample", "test_golden.py": "sample"}


def pytest_xdist_make_scheduler(config, log):
    """--dist loadfile (a module is one unit of work), with the modules of SAME_WORKER as one unit. (xdist's own
    loadgroup marks would do this, but xdist 3.8 cannot tag pytest 9's node ids and silently ignores them.)"""
    from xdist.scheduler import LoadFileScheduling

    class Scheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return SAME_WORKER.get(scope.rsplit("/", 1)[-1], scope)

    return Scheduling(config, log)


def write_roster(path: Path, customers: list[dict], changes: list[dict] = (), reseller: dict | None = None,
                 customer_headers=None, change_headers=None, sheet_names=("customers", "changes")) -> Path:
    """A roster workbook from dicts; dates may be date objects (Excel dates) or text."""
    wb = Workbook()
    ws = wb.active
    ws.title = sheet_names[0]
    ch_h = customer_headers or CUSTOMER_HEADERS
    ws.append(ch_h)
    for c in customers:
        ws.append([c.get(h) for h in (customer_headers and CUSTOMER_HEADERS[: len(ch_h)] or CUSTOMER_HEADERS)])
    cs = wb.create_sheet(sheet_names[1])
    cs.append(change_headers or CHANGE_HEADERS)
    for c in changes:
        cs.append([c.get(h) for h in CHANGE_HEADERS])
    for sheet in (ws, cs):
        for row in sheet.iter_rows():
            for cell in row:
                if isinstance(cell.value, dt.date):
                    cell.number_format = "yyyy-mm-dd"
                if isinstance(cell.value, str) and cell.value[:1] == "=":
                    cell.data_type = "s"
    if reseller:
        rs = wb.create_sheet("reseller")
        for k, v in reseller.items():
            rs.append([k, v])
    wb.save(path)
    return path


def cust(cid, opened, seats, **kw) -> dict:
    return {"customer_id": cid, "name": kw.pop("name", f"测试公司{cid}"), "opened_on": opened, "seats": seats, **kw}


def change(cid, date, kind, seats=None, **kw) -> dict:
    return {"customer_id": cid, "date": date, "type": kind, "seats": seats, **kw}


@pytest.fixture(scope="session")
def book():
    return pricebook.load_default()


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory):
    """The bundled sample billed once per test process, as ``(out folder, CliResult)``: tests read it, and copy
    it (shutil.copytree) to change it. No pool: test_pdf covers the pool's bytes. Real PDFs, never the stub:
    this is the suite's whole run of the shipped product through the CLI."""
    out = tmp_path_factory.mktemp("sample")
    r = run_cli("run", SAMPLE, "--period", "2026-10", "--out", out, "--workers", "1")
    assert r.returncode == 1, r.stderr  # the sample has deliberately bad rows
    assert not pdfstub.is_stub((out / "invoices" / "SZTY-2026-000001.pdf").read_bytes())
    return out, r


@contextlib.contextmanager
def stubbed_render():
    """Within it, PDFs are made by tests/pdfstub.py (the page's HTML from the real template, no layout), in
    this process and in the real processes tests/realproc.py starts; for fixtures of any scope."""
    from invoicer.render import pdf

    from . import realproc

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pdf.Renderer, "render", pdfstub.render)
        mp.setattr(realproc, "STUB_RENDER", True)
        yield


@pytest.fixture
def stub_render():
    """PDFs without layout for this test (tests/pdfstub.py), for tests whose assertions never read what a PDF
    shows: numbering, re-runs, crashes, tampering, the watcher's claims. Rendering stays real in a worker pool
    (``--workers`` over 1 with 4 documents or more) and on Dask, which the stub does not reach."""
    with stubbed_render():
        yield


@pytest.fixture
def priced(tmp_path, book):
    """priced(customers, changes, period) -> Priced (read, validated and priced through the real pipeline)."""
    counter = iter(range(10_000))

    def go(customers, changes=(), period="2026-10", reseller=None, pb=None):
        path = write_roster(tmp_path / f"r{next(counter)}.xlsx", customers, changes, reseller)
        return price_roster(path, pb or book, period)

    return go


@dataclass
class CliResult:
    """What ``run_cli`` returns: the fields of ``subprocess.CompletedProcess`` the tests read."""
    args: list[str]
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args, cwd=None) -> CliResult:
    """Run ``invoicer ARGS...`` in this process through ``invoicer.cli.main`` and capture what it prints.

    A fresh process costs ~1 s of importing pandas and WeasyPrint; tests that need a real one (a crash point,
    two runs at once, the watcher) use tests/realproc.py instead (forked from a process that imported them). Nothing leaks between calls:
    the working directory is restored, the render module's once-per-process notes are forgotten, and
    log records (the refused-URL note) go to the captured stderr as they would in a fresh process.
    argparse's SystemExit (bad options, --help) becomes the return code. Any other exception propagates,
    so a crash fails the test with its traceback instead of hiding in a string.
    """
    from invoicer import cli
    from invoicer.render import pdf

    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    pdf._refused.clear()  # "once per process" notes: each call is a new process to the CLI
    handler = logging.StreamHandler(err)  # what Python's last-resort handler does in a real process
    handler.setLevel(logging.WARNING)
    logger = logging.getLogger("invoicer")
    saved = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with contextlib.chdir(cwd or ROOT), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(argv)
            except SystemExit as exc:
                if isinstance(exc.code, str):  # sys.exit("message") prints it and exits 1
                    print(exc.code, file=sys.stderr)
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        logger.removeHandler(handler)
        logger.propagate = saved
        pdf._refused.clear()
    return CliResult(argv, code, out.getvalue(), err.getvalue())


def lines_of(p, cid=None) -> list[dict]:
    out = []
    for inv in p.invoices:
        if cid is None or inv["customer"]["customer_id"] == cid:
            out += inv["lines"]
    return out


def issued_month(base: Path, customers, changes=(), period: str = "2026-10"):
    """A month issued into ``base/out`` from a roster of these rows (PDFs without layout), as the review
    tests' module-scoped folders are made: (base, out, roster)."""
    from types import SimpleNamespace

    roster = write_roster(base / "r.xlsx", customers, changes)
    out = base / "out"
    with stubbed_render():  # module-scoped callers: made before a test's own stub_render
        r = run_cli("run", roster, "--period", period, "--out", out, "--workers", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    return SimpleNamespace(base=base, out=out, roster=roster)


def copy_of(folder: Path, tmp_path: Path) -> Path:
    """A test's own copy of a module's issued folder (to tamper with)."""
    import shutil

    copy = tmp_path / "out"
    shutil.copytree(folder, copy)
    return copy
