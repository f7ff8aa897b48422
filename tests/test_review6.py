"""What an attacker's review of the Dask and memory changes found (each failed before its fix): a no-op re-run on a
full disk writes nothing; a failure inside a Dask render task is one line and exit 2; closing after the scheduler
died is quick."""
from __future__ import annotations

import contextlib
import datetime as dt
import errno
import io
import tempfile
from types import SimpleNamespace

import pytest

from .conftest import change, cust, write_roster

D = dt.date


def cli(*args):
    from invoicer.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


@pytest.fixture
def roster(tmp_path):
    return write_roster(tmp_path / "r.xlsx", [cust("A", D(2026, 5, 1), 5), cust("B", D(2026, 10, 8), 3)],
                        [change("A", D(2026, 10, 1), "add", 2)])


def test_a_no_op_rerun_on_a_full_disk_writes_nothing_and_succeeds(tmp_path, roster, monkeypatch):
    out = tmp_path / "out"
    assert cli("run", roster, "--period", "2026-10", "--out", out, "--workers", 1).returncode == 0

    def outputs():
        return {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and "ledger" not in p.name}

    before = outputs()

    def no_space(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", no_space)  # no new file can be made in the output folder
    r = cli("run", roster, "--period", "2026-10", "--out", out, "--workers", 1)
    assert r.returncode == 0, r.stderr
    assert "0 new, 2 unchanged" in r.stdout
    assert outputs() == before


# -- Dask: a failure inside a render task is one line and an exit code, never a traceback --------------------
@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0",
                                  silence_logs=50) as c:
        yield c


def _templates_gone(client_cls, real):
    def publish(self, *args, **kwargs):  # another client unpublished the run's templates (or never saw them)
        return None
    return publish


def _templates_replaced(client_cls, real):
    def publish(self, *args, **kwargs):  # another client on the cluster publishes other bytes under the name
        real(self, *args, **kwargs)
        (name, _), = kwargs.items()
        real(self, **{name: self.submit(lambda: b"other templates", key=name + "-other")}, override=True)
    return publish


@pytest.mark.parametrize("tamper", [_templates_gone, _templates_replaced], ids=["gone", "replaced"])
def test_templates_the_workers_cannot_fetch_stop_the_run_with_one_line(tmp_path, cluster, roster, monkeypatch,
                                                                       tamper):
    import distributed

    monkeypatch.setattr(distributed.Client, "publish_dataset",
                        tamper(distributed.Client, distributed.Client.publish_dataset))
    out = tmp_path / "out"
    r = cli("run", roster, "--period", "2026-10", "--out", out, "--executor", f"dask:{cluster.scheduler_address}")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error: ")
    assert "Dask" in r.stderr and not list(out.rglob("*.pdf"))


def test_a_document_that_kills_every_worker_stops_the_run_with_one_line(tmp_path, cluster, roster, monkeypatch):
    import os

    from invoicer.render import executor as ex

    # pickled by value (a lambda): the workers run it instead of the real task
    monkeypatch.setattr(ex, "render_batch", lambda *a, **k: os._exit(1))
    out = tmp_path / "out"
    r = cli("run", roster, "--period", "2026-10", "--out", out, "--executor", f"dask:{cluster.scheduler_address}")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error: ")
    assert "Dask" in r.stderr and not list(out.rglob("*.pdf"))


def test_closing_after_the_scheduler_died_is_quick(tmp_path):
    import signal
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    from invoicer.render.executor import BundleRef, DaskExecutor

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dask = Path(sys.executable).with_name("dask")
    sched = subprocess.Popen([str(dask), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                              "--dashboard-address", ":0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                ex = DaskExecutor(f"tcp://127.0.0.1:{port}", connect_timeout_s=8)  # the CLI: 20 s
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        # as render_iter leaves it: the templates' task published under its name
        name = "invoicer-templates-test"
        ex._bundle_future = ex.client.submit(bytes, 1, key=name)
        ex.client.publish_dataset(**{name: ex._bundle_future})
        ex._bundle_ref = BundleRef("0" * 64, name)
        sched.send_signal(signal.SIGKILL)
        sched.wait()
        time.sleep(0.5)
        start = time.monotonic()
        ex.close()
        assert time.monotonic() - start < 3
    finally:
        sched.kill()
        sched.wait()
