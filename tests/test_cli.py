"""The in-process CLI runner (tests/conftest.py run_cli) behaves as a fresh `invoicer` process would."""
from __future__ import annotations

import os
import shutil

from invoicer.render.pdf import DEFAULT_TEMPLATES

from .conftest import cust, run_cli, write_roster


def test_bad_options_exit_2_with_usage_and_help_exits_0(tmp_path):
    r = run_cli("run", tmp_path / "x.xlsx", "--period", "2026-13", "--out", tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == "error: period must look like 2026-10 (year-month), not '2026-13'\n"  # one line (#14)
    r = run_cli("run", tmp_path / "x.xlsx", "--bogus", "--out", tmp_path)
    assert r.returncode == 2 and "usage: invoicer" in r.stderr and "unrecognized arguments: --bogus" in r.stderr
    r = run_cli("template", "--help")
    assert r.returncode == 0 and "Example: invoicer template roster.xlsx --lang zh" in r.stdout


def test_each_call_starts_fresh_cwd_and_once_per_process_notes(tmp_path):
    tpl = tmp_path / "tpl"
    shutil.copytree(DEFAULT_TEMPLATES, tpl)
    page = (tpl / "invoice.html.j2").read_text(encoding="utf-8")
    (tpl / "invoice.html.j2").write_text(
        page.replace('<table class="head">', '<img src="https://example.com/logo.png"><table class="head">', 1),
        encoding="utf-8")
    roster = write_roster(tmp_path / "r.xlsx", [cust("A", "2026-10-03", 5)])
    before = os.getcwd()
    for run in ("one", "two"):  # the note is per process: the second call must print it again
        r = run_cli("run", roster, "--period", "2026-10", "--out", tmp_path / run, "--templates", tpl,
                    "--workers", "1", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        notes = [line for line in r.stderr.splitlines() if "https://example.com/logo.png" in line]
        assert len(notes) == 1 and "left out of the PDFs" in notes[0]
        assert r.stdout.startswith("2026-10: 1 new, 0 unchanged")
        assert os.getcwd() == before
