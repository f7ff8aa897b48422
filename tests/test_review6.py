"""What an attacker's review of the Dask and memory changes found (each failed before its fix): a no-op re-run on a
full disk writes nothing; closing after the scheduler died is quick. (A failure inside a Dask render task is one
line and exit 2: tests/test_scale.py, beside the other tests on its cluster.)"""
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
