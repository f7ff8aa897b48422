"""The drop folder, driven through a real `invoicer watch` process on a temporary folder tree."""
from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from invoicer.errors import InputError
from invoicer.watch import ignored, period_from_name, resolve_default_period

from . import realproc
from .conftest import ROOT, cust, run_cli, write_roster

D = dt.date
# the watcher's claims and exactly-once billing; no assertion reads what a PDF shows: PDFs without layout, in
# the watcher processes too (tests/pdfstub.py)
pytestmark = pytest.mark.usefixtures("stub_render")
# every file a test drops is complete before a watcher sees it (written aside, then renamed: drop()), so a short
# settle changes nothing but the wait; the test of a file still being written sets its own (--settle 1)
FAST = ["--settle", "0.1", "--rescan", "1", "--workers", "1"]


# -- pure rules -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, period", [
    ("roster-2026-10.xlsx", "2026-10"), ("202610.xlsx", "2026-10"), ("深圳 2026-09 名单.xlsx", "2026-09"),
    ("roster_202612_v2.xlsx", "2026-12"), ("2026-10-31 roster.xlsx", "2026-10"),
    ("roster.xlsx", None), ("20261031.xlsx", None), ("roster-2026-13.xlsx", None), ("v3-1202610.xlsx", None),
    # an IME's full-width digits and hyphen are read NFKC-normalised; other scripts' digits are no period
    ("roster-20２６-10.xlsx", "2026-10"), ("２０２６－１０.xlsx", "2026-10"),
    ("roster-٢٠٢٦-10.xlsx", None), ("v3-1２０２６１０.xlsx", None),
])
def test_period_comes_from_the_file_name(name, period):
    assert period_from_name(name) == period


def test_two_periods_in_a_name_are_refused():
    with pytest.raises(InputError, match="more than one billing month"):
        period_from_name("roster-2026-09-to-2026-10.xlsx")


def test_default_period_rules():
    from invoicer.cli import default_period

    assert resolve_default_period("previous", D(2026, 1, 5)) == "2025-12"
    assert default_period(D(2026, 1, 5)) == "2025-12"  # the clerk's run and the watcher share the rule
    assert resolve_default_period("previous", D(2026, 3, 31)) == "2026-02"
    assert resolve_default_period("current", D(2026, 1, 5)) == "2026-01"
    assert resolve_default_period("2026-07", D(2026, 1, 5)) == "2026-07"


@pytest.mark.parametrize("name", ["~$roster.xlsx", ".~lock.roster.xlsx#", ".roster.xlsx.swp", "roster.xlsx.tmp",
                                  "roster.xlsx.part", "roster.xlsx.crdownload", "roster.xlsx~"])
def test_lock_and_temporary_files_are_ignored(name):
    assert ignored(name)
    assert not ignored("roster-2026-10.xlsx")


# -- helpers ----------------------------------------------------------------------------------------------
def roster_bytes(tmp_path: Path, prefix: str, n: int, bad_rows: int = 0, tag: str = "") -> bytes:
    customers = [cust(f"{prefix}{tag}{i:02d}", D(2026, 10, 1 + i), 3 + i, name=f"{prefix}客户{tag}{i}") for i in range(n)]
    customers += [cust(f"X{tag}{i}", "not a date", 5) for i in range(bad_rows)]
    path = write_roster(tmp_path / f"src-{prefix}-{tag}-{n}-{bad_rows}.xlsx", customers, [],
                        reseller={"name": f"{prefix} 经销商", "invoice_prefix": prefix})
    return path.read_bytes()


def drop(inbox: Path, reseller: str, name: str, data: bytes) -> Path:
    """Written under a temporary name, then renamed: how a careful uploader delivers a file."""
    folder = inbox / reseller
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{name}.part"
    tmp.write_bytes(data)
    os.rename(tmp, folder / name)
    return folder / name


def wait_for(predicate, timeout=90, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def log_events(log: Path) -> list[dict]:
    if not log.exists():
        return []
    return [json.loads(x) for x in log.read_text().splitlines() if x.strip()]


def file_events(log: Path) -> list[dict]:
    return [e for e in log_events(log) if e["event"] == "file"]


def ledger_numbers(out: Path, prefix: str) -> list[str]:
    db = sqlite3.connect(out / "ledger.sqlite")
    try:
        return [r[0] for r in db.execute("SELECT number FROM documents WHERE prefix = ? AND kind = 'invoice' "
                                         "ORDER BY seq", (prefix,))]
    finally:
        db.close()


def start_watcher(drop_root: Path, log: Path, *extra, env=None) -> realproc.Process:
    """A real `invoicer watch` process (tests/realproc.py), its JSON lines appended to ``log``."""
    return realproc.popen(["watch", drop_root / "inbox", "--out", drop_root / "out", *FAST, *extra], stdout=log,
                          stderr=realproc.PIPE, cwd=ROOT, env={**os.environ, **(env or {})})


def watch_once(drop_root: Path, log: Path, env=None) -> subprocess.CompletedProcess:
    return realproc.run(["watch", drop_root / "inbox", "--out", drop_root / "out", *FAST, "--once"], stdout=log,
                        cwd=ROOT, env={**os.environ, **(env or {})}, timeout=300)


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# -- a real watcher ---------------------------------------------------------------------------------------
def test_watcher_bills_good_fails_bad_waits_for_half_written_and_knows_duplicates(tmp_path):
    root = tmp_path / "drop"
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    log = tmp_path / "watch.jsonl"
    good = roster_bytes(tmp_path, "SZ", 3)
    proc = start_watcher(root, log, "--settle", "1")  # the half-written file pauses 0.15 s between writes
    try:
        wait_for(lambda: any(e["event"] == "watching" for e in log_events(log)), what="the watcher to start")
        assert [e["mode"] for e in log_events(log) if e["event"] == "watching"] == ["events"]
        # a second watcher on the same inbox is refused (exit 4)
        second = watch_once(root, tmp_path / "second.jsonl")
        assert second.returncode == 4, second.stderr

        (inbox / "sz").mkdir()
        (inbox / "sz" / "~$roster-2026-10.xlsx").write_bytes(b"office lock file")
        drop(inbox, "sz", "roster-2026-10.xlsx", good)
        drop(inbox, "sz", "broken-2026-10.xlsx", b"PK\x03\x04 this is not a workbook")
        drop(inbox, "bj", "mixed-202610.xlsx", roster_bytes(tmp_path, "BJ", 2, bad_rows=2))
        drop(inbox, "cd", "all-bad-2026-10.xlsx", roster_bytes(tmp_path, "CD", 0, bad_rows=2))
        # many at once: six resellers drop their rosters in the same moment
        many = {f"g{i}": roster_bytes(tmp_path, f"G{i}", 1) for i in range(6)}
        for folder, data in many.items():
            drop(inbox, folder, "roster-202610.xlsx", data)
        # a half-written file: written slowly in place, never still for long enough to be taken
        late = roster_bytes(tmp_path, "SH", 2)
        (inbox / "sh").mkdir()
        target = inbox / "sh" / "late-2026-10.xlsx"
        with open(target, "wb") as f:
            for k in range(0, len(late), len(late) // 8 + 1):
                f.write(late[k:k + len(late) // 8 + 1])
                f.flush()
                time.sleep(0.15)
                assert target.exists(), "the watcher took a file that was still being written"

        expected = 5 + len(many)
        # once SZ's roster is billed (the first file taken): the same roster dropped again (another name) is
        # recognised and nothing is re-issued, and another reseller's folder cannot number in SZ's series
        wait_for(lambda: any((e["reseller"], e["file"]) == ("sz", "roster-2026-10.xlsx") for e in file_events(log)),
                 what="SZ's roster")
        drop(inbox, "sz", "again-2026-10.xlsx", good)
        drop(inbox, "hz", "roster-2026-10.xlsx", roster_bytes(tmp_path, "SZ", 1, tag="h"))
        wait_for(lambda: len(file_events(log)) >= expected + 2, what="every file to be handled")
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    assert rc == 0, proc.stderr.read()

    by_file = {(e["reseller"], e["file"]): e for e in file_events(log)}
    assert len(file_events(log)) == len(by_file) == expected + 2, "a file was handled twice, or not at all"
    assert by_file[("hz", "roster-2026-10.xlsx")]["result"] == "failed"
    by_file.update({name: e for (folder, name), e in by_file.items() if folder in ("sz", "bj", "cd", "sh")})
    assert by_file["roster-2026-10.xlsx"]["result"] == "billed"
    assert by_file["roster-2026-10.xlsx"]["documents_issued"] == 3
    assert by_file["again-2026-10.xlsx"]["result"] == "duplicate"
    assert by_file["again-2026-10.xlsx"]["documents_issued"] == 0
    assert by_file["mixed-202610.xlsx"]["result"] == "rejects"
    assert by_file["mixed-202610.xlsx"]["rejected_rows"] == 2
    assert by_file["late-2026-10.xlsx"]["result"] == "billed"
    assert {by_file[(f, "roster-202610.xlsx")]["result"] for f in many} == {"billed"}
    for name in ("broken-2026-10.xlsx", "all-bad-2026-10.xlsx"):
        assert by_file[name]["result"] == "failed"
    for e in file_events(log):
        assert {"started", "reseller", "period", "result", "duration_s", "moved_to"} <= set(e)
    assert log_events(log)[-1]["event"] == "stopped"

    # the folders: the inbox holds only the lock file; nothing is left half-claimed
    assert files_under(inbox) == ["sz/~$roster-2026-10.xlsx"]
    assert files_under(root / "processing") == [".watch.lock"]
    assert files_under(root / "processed") == sorted([
        "sz/2026-10/roster-2026-10.xlsx", "sz/2026-10/again-2026-10.xlsx", "bj/2026-10/mixed-202610.xlsx",
        "bj/2026-10/mixed-202610.xlsx.rejects.txt", "sh/2026-10/late-2026-10.xlsx",
        *(f"{f}/2026-10/roster-202610.xlsx" for f in many)])
    assert (root / "processed" / "sz" / "2026-10" / "roster-2026-10.xlsx").read_bytes() == good
    assert files_under(root / "failed") == sorted([
        "sz/broken-2026-10.xlsx", "sz/broken-2026-10.xlsx.error.txt",
        "cd/all-bad-2026-10.xlsx", "cd/all-bad-2026-10.xlsx.error.txt",
        "hz/roster-2026-10.xlsx", "hz/roster-2026-10.xlsx.error.txt"])
    assert "belongs to the reseller folder 'sz'" in (root / "failed" / "hz" / "roster-2026-10.xlsx.error.txt").read_text()
    broken = (root / "failed" / "sz" / "broken-2026-10.xlsx.error.txt").read_text()
    assert "was NOT billed" in broken and "not a readable Excel workbook" in broken
    assert str(root) not in broken
    all_bad = (root / "failed" / "cd" / "all-bad-2026-10.xlsx.error.txt").read_text()
    assert "every customer row was rejected" in all_bad and "row 2, column opened_on" in all_bad
    rejects = (root / "processed" / "bj" / "2026-10" / "mixed-202610.xlsx.rejects.txt").read_text()
    assert rejects.count("column opened_on, value 'not a date'") == 2

    # outputs and the one shared ledger
    out = root / "out"
    assert ledger_numbers(out, "SZ") == [f"SZ-2026-{i:06d}" for i in (1, 2, 3)]
    for i in range(len(many)):
        assert ledger_numbers(out, f"G{i}") == [f"G{i}-2026-000001"]
    assert len(ledger_numbers(out, "BJ")) == 2 and len(ledger_numbers(out, "SH")) == 2
    assert ledger_numbers(out, "CD") == []
    assert sorted(p.name for p in (out / "sz" / "2026-10" / "invoices").iterdir()) == [
        f"SZ-2026-{i:06d}.pdf" for i in (1, 2, 3)]
    for folder in ("sz", "bj", "g0", "g5", "sh"):
        assert (out / folder / "2026-10" / "summary.xlsx").is_file()
        v = run_cli("verify", out / folder / "2026-10", "--ledger", out / "ledger.sqlite")
        assert v.returncode == 0, v.stdout


@pytest.mark.parametrize("point", ["claimed", "before_commit", "after_commit", "before_move"])
def test_a_watcher_killed_mid_file_finishes_it_exactly_once_after_restart(tmp_path, point):
    root = tmp_path / "drop"
    (root / "inbox").mkdir(parents=True)
    log = tmp_path / "watch.jsonl"
    drop(root / "inbox", "sz", "roster-2026-10.xlsx", roster_bytes(tmp_path, "SZ", 2))

    crashed = watch_once(root, log, env={"INVOICER_TEST_CRASH_AT": point})
    assert crashed.returncode == 70, crashed.stderr
    assert "sz/2026-10/roster-2026-10.xlsx" in files_under(root / "processing")
    assert files_under(root / "inbox") == []
    # a kill inside an atomic write leaves its temporary file: the restart sweeps it away
    (root / "processing" / "sz" / "2026-10" / ".roster-2026-10.xlsx.attempts.k1ll3d.tmp").write_text("1")

    again = watch_once(root, log)
    assert again.returncode == 0, again.stderr
    assert files_under(root / "processing") == [".watch.lock"]
    assert files_under(root / "processed") == ["sz/2026-10/roster-2026-10.xlsx"]
    out = root / "out"
    assert ledger_numbers(out, "SZ") == ["SZ-2026-000001", "SZ-2026-000002"]
    assert sorted(p.name for p in (out / "sz" / "2026-10" / "invoices").iterdir()) == [
        "SZ-2026-000001.pdf", "SZ-2026-000002.pdf"]
    [event] = file_events(log)
    assert event["period_from"] == "claimed before a restart"
    # a restart after the COMMIT finds the run of the interrupted attempt: billed (resumed), not a duplicate
    assert event["result"] == "billed" and event["resumed"] is True
    assert event["documents_issued"] == (0 if point in ("after_commit", "before_move") else 2)
    assert event.get("billed_by_run") == (1 if point in ("after_commit", "before_move") else None)
    if point == "after_commit":  # the files were re-published from the ledger: the auditor's check agrees
        v = run_cli("verify", out / "sz" / "2026-10", "--ledger", out / "ledger.sqlite")
        assert v.returncode == 0, v.stdout


def test_a_file_that_keeps_killing_the_watcher_is_set_aside_after_three_attempts(tmp_path):
    root = tmp_path / "drop"
    (root / "inbox").mkdir(parents=True)
    log = tmp_path / "watch.jsonl"
    drop(root / "inbox", "sz", "roster-2026-10.xlsx", roster_bytes(tmp_path, "SZ", 1))
    poison = {"INVOICER_TEST_CRASH_AT": "before_commit"}
    for _ in range(3):
        assert watch_once(root, log, env=poison).returncode == 70
    last = watch_once(root, log, env=poison)
    assert last.returncode == 1, last.stderr  # --once: a file failed
    assert files_under(root / "processing") == [".watch.lock"]
    assert files_under(root / "failed") == ["sz/roster-2026-10.xlsx", "sz/roster-2026-10.xlsx.error.txt"]
    assert "interrupted 3 times" in (root / "failed" / "sz" / "roster-2026-10.xlsx.error.txt").read_text()
    assert ledger_numbers(root / "out", "SZ") == []


def test_sigkill_part_way_through_a_batch_then_restart_bills_every_file_once(tmp_path):
    root = tmp_path / "drop"
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    log = tmp_path / "watch.jsonl"
    folders = [f"g{i}" for i in range(5)]  # a roster is a reseller's whole month: one each
    for i, folder in enumerate(folders):
        drop(inbox, folder, "roster-2026-10.xlsx", roster_bytes(tmp_path, f"G{i}", 2))
    proc = start_watcher(root, log, "--poll")  # polling: the fallback for network shares
    wait_for(lambda: len(file_events(log)) >= 1, what="the first file to be billed")
    assert [e["mode"] for e in log_events(log) if e["event"] == "watching"] == ["polling"]
    proc.kill()
    proc.wait(timeout=30)
    assert len(file_events(log)) < len(folders), "the kill came too late to test anything"

    again = watch_once(root, log)
    assert again.returncode == 0, again.stderr
    assert files_under(inbox) == [] and files_under(root / "processing") == [".watch.lock"]
    assert files_under(root / "processed") == [f"{f}/2026-10/roster-2026-10.xlsx" for f in folders]
    for i in range(len(folders)):
        assert ledger_numbers(root / "out", f"G{i}") == [f"G{i}-2026-000001", f"G{i}-2026-000002"]
    assert sorted(e["reseller"] for e in file_events(log)) == folders


def test_sigterm_finishes_the_current_file_then_exits_cleanly(tmp_path):
    root = tmp_path / "drop"
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    log = tmp_path / "watch.jsonl"
    drop(inbox, "sz", "roster-2026-10.xlsx", roster_bytes(tmp_path, "SZ", 12))
    proc = start_watcher(root, log)
    wait_for(lambda: (root / "processing" / "sz" / "2026-10" / "roster-2026-10.xlsx").exists(),
             what="the file to be claimed")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    [event] = file_events(log)
    assert event["result"] == "billed" and event["documents_issued"] == 12
    assert files_under(root / "processed") == ["sz/2026-10/roster-2026-10.xlsx"]
    assert log_events(log)[-1]["event"] == "stopped"


def test_a_roster_that_changes_issued_invoices_fails_with_the_differences_and_issues_nothing(tmp_path):
    root = tmp_path / "drop"
    (root / "inbox").mkdir(parents=True)
    log = tmp_path / "watch.jsonl"
    seller = {"name": "深圳腾云", "invoice_prefix": "SZ"}
    first = write_roster(tmp_path / "a.xlsx", [cust("A1", D(2026, 10, 3), 5)], [], seller).read_bytes()
    changed = write_roster(tmp_path / "b.xlsx", [cust("A1", D(2026, 10, 3), 7)], [], seller).read_bytes()
    drop(root / "inbox", "sz", "roster-2026-10.xlsx", first)
    assert watch_once(root, log).returncode == 0
    drop(root / "inbox", "sz", "roster-2026-10.xlsx", changed)
    assert watch_once(root, log).returncode == 1
    error = (root / "failed" / "sz" / "roster-2026-10.xlsx.error.txt").read_text()
    assert "A1: invoice SZ-2026-000001 total 5000.00 -> 7000.00" in error and "--amend" in error
    assert ledger_numbers(root / "out", "SZ") == ["SZ-2026-000001"]
    assert [e["result"] for e in file_events(log)] == ["billed", "failed"]
