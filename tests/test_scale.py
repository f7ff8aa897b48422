"""Scale (issue #13): frame-built documents equal the row-by-row ones, cheap no-op re-runs, optimistic
numbering with rendering outside the write lock, staging, and rendering on a Dask cluster."""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import random
import shutil
import sqlite3
from pathlib import Path

import pytest

from invoicer import documents as docs_mod
from invoicer import pipeline, publish
from invoicer.ledger import Ledger
from invoicer.pricing.engine import price_period
from invoicer.roster import read_roster
from invoicer.validate import validate

from .conftest import SAMPLE, change, cust, run_cli, write_roster
from .reference_documents import old_build_invoices, old_build_notices

D = dt.date


def _builders_both_ways(path: Path, book, period="2026-10"):
    raw = read_roster(path)
    roster = validate(raw, book)
    res = price_period(roster.customers, roster.changes, book, period,
                       (raw.sheet_titles["customers"], raw.sheet_titles["changes"]))
    args = (roster.customers, roster.blocked, roster.reseller, book, period, res.period_end)
    return ((docs_mod.build_invoices(res.lines, *args), old_build_invoices(res.lines, *args)),
            (docs_mod.build_notices(res.accounts, *args), old_build_notices(res.accounts, *args)))


def _same(new: list[dict], old: list[dict]) -> None:
    # repr tells 1 from True and int from numpy.int64; the hashes are what the ledger compares
    assert repr(new) == repr(old)
    assert [docs_mod.content_hash(d) for d in new] == [docs_mod.content_hash(d) for d in old]


def test_frame_builders_equal_the_row_by_row_ones_on_the_sample(book):
    (inv_new, inv_old), (not_new, not_old) = _builders_both_ways(SAMPLE, book)
    assert len(inv_new) == 20 and len(not_new) == 2
    assert sum(d["total_fen"] for d in inv_new) == 10_794_500
    _same(inv_new, inv_old)
    _same(not_new, not_old)


def test_frame_builders_equal_the_row_by_row_ones_on_a_random_roster(tmp_path, book):
    rng = random.Random(13)
    customers, changes = [], []
    for i in range(120):
        cid = f"R{i:03d}"
        opened = D(2026, 10, 1) - dt.timedelta(days=rng.randrange(-25, 800))
        extra = {"legacy_rate": "yes"} if opened < D(2025, 1, 1) and rng.random() < 0.3 else {}
        customers.append(cust(cid, opened, rng.randrange(3, 60), email=rng.choice(["", f"x{i}@a.cn"]),
                              tax_id=rng.choice(["", "91440300MA5FQ2XY7Q"]), **extra))
        for _ in range(rng.randrange(0, 3)):
            changes.append(change(cid, D(2026, 10, rng.randrange(1, 32)), rng.choice(["add", "renew", "remove"]),
                                  rng.randrange(1, 4), reference=rng.choice(["", f"HT-{i}"])))
    path = write_roster(tmp_path / "random.xlsx", customers, changes)
    (inv_new, inv_old), (not_new, not_old) = _builders_both_ways(path, book)
    assert len(inv_new) > 20 and len(not_new) > 0  # the roster exercises both builders
    _same(inv_new, inv_old)
    _same(not_new, not_old)


@pytest.fixture
def small_roster(tmp_path):
    def make(n=3, path="r.xlsx", add=2):
        cs = [cust(f"C{i}", D(2026, 5, 1), 5) for i in range(n)]
        return write_roster(tmp_path / path, cs, [change(f"C{i}", D(2026, 10, 1), "add", add) for i in range(n)])
    return make


def _opts(roster, out, **kw):
    return pipeline.RunOptions(roster=roster, period=kw.pop("period", "2026-10"), out=out, workers=1,
                               progress=False, **kw)


def _pdfs(out: Path) -> dict[str, str]:
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in out.rglob("*.pdf") if not p.relative_to(out).as_posix().startswith(".")}


@pytest.mark.usefixtures("stub_render")  # files compared by hash: PDFs without layout
def test_a_no_op_rerun_parses_no_snapshot_and_reads_no_pdf(tmp_path, small_roster, monkeypatch):
    out, roster = tmp_path / "out", small_roster()
    first = pipeline.run(_opts(roster, out))
    assert first.issued == ["QQ-2026-000001", "QQ-2026-000002", "QQ-2026-000003"]
    before = _pdfs(out)
    calls = {"load": 0, "hash": 0}
    real_load, real_hash = Ledger.load, publish.file_sha256

    def counting_load(self, refs):
        calls["load"] += len(refs)
        return real_load(self, refs)

    def counting_hash(path):  # a PDF's (the manifest is compared with the one on disk by its hash)
        calls["hash"] += Path(path).suffix == ".pdf"
        return real_hash(path)

    monkeypatch.setattr(Ledger, "load", counting_load)
    monkeypatch.setattr(publish, "file_sha256", counting_hash)
    again = pipeline.run(_opts(roster, out))
    assert (len(again.plan.unchanged), again.issued) == (3, [])
    assert calls == {"load": 0, "hash": 0}
    assert again.written == ["manifest.json"]
    assert _pdfs(out) == before
    dry = pipeline.run(_opts(roster, out, dry_run=True))
    assert len(dry.plan.unchanged) == 3 and calls["load"] == 0


@pytest.mark.usefixtures("stub_render")  # files compared by hash: PDFs without layout
def test_a_file_edited_behind_the_runs_back_is_restored_even_with_its_mtime_put_back(tmp_path, small_roster):
    out = tmp_path / "out"
    pipeline.run(_opts(small_roster(), out))
    before = _pdfs(out)
    pdf = out / "invoices" / "QQ-2026-000002.pdf"
    st = pdf.stat()
    data = bytearray(pdf.read_bytes())
    data[-10] ^= 1  # same size
    pdf.write_bytes(bytes(data))
    os.utime(pdf, ns=(st.st_atime_ns, st.st_mtime_ns))  # the change time cannot be put back
    report = pipeline.run(_opts(small_roster(), out))
    assert "invoices/QQ-2026-000002.pdf" in report.written
    assert _pdfs(out) == before


@pytest.mark.usefixtures("stub_render")  # files compared by hash: PDFs without layout
def test_a_run_that_loses_the_race_renders_again_with_the_right_numbers(tmp_path, monkeypatch):
    from invoicer.render import executor as ex

    ledger = tmp_path / "shared.sqlite"
    mine = write_roster(tmp_path / "mine.xlsx", [cust("A", D(2026, 5, 1), 5), cust("B", D(2026, 10, 8), 3)],
                        [change("A", D(2026, 10, 1), "add", 2)])
    theirs = write_roster(tmp_path / "theirs.xlsx", [cust("Z", D(2026, 11, 3), 4)])
    real = ex.LocalExecutor.render_iter
    batches = []

    def render_iter(self, docs, progress=None):
        batches.append([d["number"] for d in docs])
        if len(batches) == 1:  # another clerk bills another month while this run renders
            other = sqlite3.connect(ledger, timeout=0, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")  # rendering holds no lock: a writer gets it at once
            other.execute("ROLLBACK")
            other.close()
            assert pipeline.run(_opts(theirs, tmp_path / "nov", period="2026-11", ledger=ledger)).issued == \
                ["QQ-2026-000001"]
        yield from real(self, docs, progress)

    monkeypatch.setattr(ex.LocalExecutor, "render_iter", render_iter)
    report = pipeline.run(_opts(mine, tmp_path / "oct", ledger=ledger))
    assert report.issued == ["QQ-2026-000002", "QQ-2026-000003"]
    assert batches == [["QQ-2026-000001", "QQ-2026-000002"], ["QQ-2026-000001"],
                       ["QQ-2026-000002", "QQ-2026-000003"]]
    out = tmp_path / "oct"
    db = sqlite3.connect(ledger)
    recorded = dict(db.execute("SELECT file_name, file_sha256 FROM documents WHERE period = '2026-10'"))
    assert _pdfs(out) == recorded  # the files carry the numbers the ledger gave
    assert not list(out.glob(".staging-*"))
    from invoicer.verify import verify

    assert verify(out, ledger).problems == []


def test_a_dead_runs_staging_folder_is_swept_and_a_live_ones_kept(tmp_path):
    out = tmp_path / "out"
    live = publish.Staging(out)
    live.stage(b"%PDF live")
    dead = out / ".staging-0123"
    dead.mkdir()
    (dead / "lock").write_bytes(b"")
    (dead / "00000001.pdf").write_bytes(b"%PDF dead")
    assert publish.sweep_staging(out) == [dead]
    assert not dead.exists() and live.root.is_dir()
    live.close()
    assert not live.root.exists()


# -- Dask ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0",
                                  silence_logs=50) as c:
        yield c


@pytest.fixture(scope="module")
def sample_docs(book):
    p = pipeline.price_roster(SAMPLE, book, "2026-10")
    return [{**d, "number": f"QQ-2026-{i:06d}"} for i, d in enumerate(p.invoices[:8], 1)] + p.notices[:1]


def test_dask_renders_the_same_bytes_as_this_machine_even_when_a_worker_dies(cluster, sample_docs):
    import signal

    from invoicer.render.executor import DaskExecutor
    from invoicer.render.pdf import Renderer

    local = [Renderer().render(d) for d in sample_docs]
    ex = DaskExecutor(cluster.scheduler_address, window=4)
    try:
        ex.client.wait_for_workers(2, timeout=120)  # both up (a loaded machine starts them slowly) before one dies
        pids = ex.client.run(os.getpid)
        got = []
        for data in ex.render_iter(sample_docs):
            if not got:  # a worker is killed with tasks in flight; Dask runs them again elsewhere
                victim = sorted(pids.values())[0]
                for nanny in cluster.workers.values():  # its nanny lets it go (a restart would only cost CPU)
                    if nanny.pid == victim:
                        nanny.close_gracefully()
                os.kill(victim, signal.SIGKILL)
            got.append(data)
    finally:
        ex.close()
    assert len(got) == len(local) == 9
    assert [hashlib.sha256(x).hexdigest() for x in got] == [hashlib.sha256(x).hexdigest() for x in local]


def _cli(capsys, *args):
    from invoicer.cli import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_cli_renders_on_a_scheduler_address_byte_identical_to_local(tmp_path, cluster, small_roster, capsys):
    roster = small_roster()
    code, _, err = _cli(capsys, "run", roster, "--period", "2026-10", "--out", tmp_path / "local", "--workers", 1)
    assert code == 0, err
    code, out, err = _cli(capsys, "run", roster, "--period", "2026-10", "--out", tmp_path / "dask",
                          "--executor", f"dask:{cluster.scheduler_address}")
    assert code == 0, err
    assert "3 new" in out
    assert _pdfs(tmp_path / "dask") == _pdfs(tmp_path / "local") and len(_pdfs(tmp_path / "local")) == 3


def test_a_worker_that_would_render_differently_stops_the_run_with_exit_2(tmp_path, cluster, small_roster, capsys,
                                                                         monkeypatch):
    from invoicer.render import executor as ex

    real = ex.fingerprint
    # this machine's fonts differ from the workers' (only the driver is patched; workers run the real one)
    monkeypatch.setattr(ex, "fingerprint", lambda bundle, probe=None: {**real(bundle, probe),
                                                                       "font sans-serif": "0" * 64 + " Other.ttf"})
    out = tmp_path / "out"
    code, _, err = _cli(capsys, "run", small_roster(), "--period", "2026-10", "--out", out,
                        "--executor", f"dask:{cluster.scheduler_address}")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "would render different PDFs than this machine (font sans-serif:" in lines[0]
    assert "Traceback" not in err
    assert not list(out.rglob("*.pdf"))
    db = sqlite3.connect(out / "ledger.sqlite")
    assert db.execute("SELECT COUNT(*) FROM documents").fetchone()[0] == 0


def _templates_gone(real):
    def publish(self, *args, **kwargs):  # another client unpublished the run's templates (or never saw them)
        return None
    return publish


def _templates_replaced(real):
    def publish(self, *args, **kwargs):  # another client on the cluster publishes other bytes under the name
        real(self, *args, **kwargs)
        (name, _), = kwargs.items()
        real(self, **{name: self.submit(lambda: b"other templates", key=name + "-other")}, override=True)
    return publish


@pytest.mark.parametrize("tamper", [_templates_gone, _templates_replaced], ids=["gone", "replaced"])
def test_templates_the_workers_cannot_fetch_stop_the_run_with_one_line(tmp_path, cluster, small_roster,
                                                                       monkeypatch, tamper):
    import distributed

    from invoicer.render.pdf import DEFAULT_TEMPLATES

    monkeypatch.setattr(distributed.Client, "publish_dataset", tamper(distributed.Client.publish_dataset))
    # templates no worker has seen (a worker keeps each bundle it fetched, by SHA-256, and never fetches it again)
    tpl = tmp_path / "tpl"
    shutil.copytree(DEFAULT_TEMPLATES, tpl)
    (tpl / "unseen.txt").write_text(str(tmp_path), encoding="utf-8")
    out = tmp_path / "out"
    r = run_cli("run", small_roster(), "--period", "2026-10", "--out", out, "--templates", tpl,
                "--executor", f"dask:{cluster.scheduler_address}")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error: ")
    assert "Dask" in r.stderr and not list(out.rglob("*.pdf"))


def test_a_document_that_kills_every_worker_stops_the_run_with_one_line(tmp_path, cluster, small_roster,
                                                                         monkeypatch):
    """Last of the module's cluster tests: its workers die (their nannies start new ones)."""
    from invoicer.render import executor as ex

    # pickled by value (a lambda): the workers run it instead of the real task
    monkeypatch.setattr(ex, "render_batch", lambda *a, **k: os._exit(1))
    out = tmp_path / "out"
    r = run_cli("run", small_roster(), "--period", "2026-10", "--out", out,
                "--executor", f"dask:{cluster.scheduler_address}")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error: ")
    assert "Dask" in r.stderr and not list(out.rglob("*.pdf"))


@pytest.mark.parametrize("spec", ["dask:", "dask:nowhere", "spark://x:1", "dask:tcp://"])
def test_a_malformed_executor_is_refused_with_exit_2(tmp_path, small_roster, capsys, spec):
    code, _, err = _cli(capsys, "run", small_roster(), "--period", "2026-10", "--out", tmp_path / "o",
                        "--executor", spec)
    assert code == 2 and "--executor must be 'local' or 'dask:tcp://HOST:PORT'" in err


def test_templates_reach_workers_as_checked_bytes(tmp_path):
    import io
    import tarfile

    from invoicer.render.executor import pack_templates, unpack_templates

    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "style.css").write_text("p {}")
    (tmp_path / "secret").write_text("not a template")
    (tmp_path / "t" / "leak.css").symlink_to(tmp_path / "secret")
    bundle = pack_templates(tmp_path / "t")
    with tarfile.open(fileobj=io.BytesIO(bundle)) as tar:
        assert tar.getnames() == ["style.css"]  # a link out of the folder is not sent
    assert Path(unpack_templates(bundle), "style.css").read_text() == "p {}"
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w") as tar:
        info = tarfile.TarInfo("../escape.css")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ValueError, match="refusing template member"):
        unpack_templates(evil.getvalue())


def test_the_summary_is_byte_identical_whatever_the_clock_says(book):
    import time as clock

    from invoicer.publish import account_records
    from invoicer.render.summary import render_summary

    p = pipeline.price_roster(SAMPLE, book, "2026-10")
    docs = [{**d, "number": f"QQ-2026-{i:06d}", "status": "issued"} for i, d in enumerate(p.invoices, 1)]
    made = []
    for _ in range(2):  # openpyxl stamps the saving second as "modified"; the summary writes the period's
        made.append(render_summary(docs, account_records(p.accounts), p.rejects, dt.datetime(2026, 10, 31)))
        clock.sleep(1.1)
    assert made[0] == made[1]


@pytest.mark.usefixtures("stub_render")  # files compared by hash: PDFs without layout
def test_a_run_killed_before_its_commit_leaves_only_a_staging_folder_which_the_next_run_sweeps(tmp_path,
                                                                                               small_roster):
    from . import realproc
    from .conftest import ROOT

    out, roster = tmp_path / "out", small_roster()
    r = realproc.run(["run", roster, "--period", "2026-10", "--out", out, "--workers", "1"],
                     env={**os.environ, "INVOICER_TEST_CRASH_AT": "before_commit"}, cwd=ROOT)
    assert r.returncode == 70
    left = list(out.glob(".staging-*"))
    assert len(left) == 1 and len(list(left[0].glob("*.pdf"))) == 3  # rendered, never published
    assert not list(out.glob("invoices/*.pdf"))
    assert sqlite3.connect(out / "ledger.sqlite").execute("SELECT COUNT(*) FROM documents").fetchone()[0] == 0
    report = pipeline.run(_opts(roster, out))
    assert report.issued == ["QQ-2026-000001", "QQ-2026-000002", "QQ-2026-000003"]
    assert not list(out.glob(".staging-*"))
    assert sorted(_pdfs(out)) == [f"invoices/QQ-2026-00000{i}.pdf" for i in (1, 2, 3)]
