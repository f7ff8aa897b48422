"""Attacker review of session 5 (memory streaming, Dask batches, forkserver PDF workers, small fixes).

Each test here failed on the reviewed code (it was written as a strict xfail) and is now a plain test of the
fix; its docstring says what was expected and what happened before (render/_forkserver.py,
pdf._start_forkserver)."""
from __future__ import annotations

import datetime as dt
import multiprocessing.forkserver
import os
import signal
import time

from invoicer.render.pdf import RenderPool

from .conftest import cust, write_roster
from .test_template_trust import SELLER, docs  # noqa: F401 (docs: the module's documents fixture)

D = dt.date


def test_a_group_sigterm_does_not_kill_the_pdf_workers_through_the_forkserver(docs):  # noqa: F811 (the fixture)
    """The watcher's contract (cli.py, watch/service.py): SIGTERM/Ctrl-C finish the current file, then exit 0;
    the PDF workers ignore SIGINT and SIGTERM for that reason (pdf._init: 'Ctrl-C and SIGTERM are for the
    owner, which finishes its current work and then closes the pool'). A shell's ``kill %1`` (job control
    signals the job's whole process group), ``kill -TERM -PGID``, ``timeout`` and supervisord's stopasgroup
    deliver SIGTERM to every process of the group, which now includes the pool's forkserver
    (multiprocessing's server ignores SIGINT only). (The shipped systemd unit, KillMode=mixed, signals the
    watcher alone and is not affected.) Expected: the workers keep rendering the
    current file (as with spawn, where the workers were the owner's own children). Actual: the forkserver
    dies of the SIGTERM, each worker gets its PR_SET_PDEATHSIG SIGKILL (or its parent watch exits it), and
    the pool's next render fails: the watcher's current file fails instead of finishing."""
    with RenderPool(None, workers=2, time_limit=60) as pool:
        assert pool.render([docs["invoice"]], progress=False)[0][:5] == b"%PDF-"
        server = multiprocessing.forkserver._forkserver._forkserver_pid
        assert server is not None
        workers = list(pool._pool._processes.values())
        os.kill(server, signal.SIGTERM)  # what a group-wide SIGTERM does to it (the owner handles its own)
        time.sleep(1.5)  # the workers' parent watch polls every 0.5 s
        assert all(p.is_alive() for p in workers), "the PDF workers died with the forkserver"
        assert pool.render([docs["invoice"], docs["notice"]], progress=False)[0][:5] == b"%PDF-"


def test_a_weasyprint_py_in_the_working_folder_is_never_imported(tmp_path):
    """``invoicer run`` started (as the installed ``invoicer`` command) from a folder that holds a file named
    ``weasyprint.py`` (a clerk's Downloads, a reseller's shared folder). Expected: the file is never run, as
    with spawn workers (multiprocessing's ``prepare`` put the owner's sys.path in place before WeasyPrint was
    imported; the ``invoicer`` script's own sys.path has no working folder). Actual: the pool's forkserver is
    ``python -c 'from multiprocessing.forkserver import main; main(..., preload, main_path, sys_path)'`` with ''
    (its working folder) first on sys.path, and Python 3.11's forkserver ``main`` ignores ``sys_path``: it
    imports the preloaded ``weasyprint`` from the working folder, running that file's code."""
    import subprocess
    import sys
    from pathlib import Path

    here = tmp_path / "cwd"
    here.mkdir()
    (here / "weasyprint.py").write_text(
        "import os\nopen(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'RAN-%d' % os.getpid()), 'w')"
        ".close()\nraise ImportError('not the real one')\n", encoding="utf-8")
    roster = write_roster(tmp_path / "r.xlsx", [cust(f"A{i}", D(2026, 10, 1 + i), 5 + i) for i in range(6)],
                          reseller=SELLER)
    script = Path(sys.executable).parent / "invoicer"
    r = subprocess.run([str(script), "run", str(roster), "--period", "2026-10", "--out", str(tmp_path / "out"),
                        "--workers", "2"], cwd=here, capture_output=True, text=True, timeout=300)
    ran = sorted(p.name for p in here.glob("RAN-*"))
    assert r.returncode == 0, r.stderr
    assert ran == [], f"the working folder's weasyprint.py was run by {ran}"
