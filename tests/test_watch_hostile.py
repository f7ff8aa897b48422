"""The drop folder is hostile: links, special files, unusable names, huge files, a busy ledger and other
folders' invoice prefixes, each tried against a real `invoicer watch` process."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
from pathlib import Path

import pytest

from invoicer.ledger import OPERATOR, Ledger, PrefixTaken
from invoicer.watch.names import fit, prefix_from_folder, shown

from . import realproc
from .conftest import INVOICER, ROOT, cust, run_cli, write_roster
from .test_watch import (
    FAST,
    drop,
    file_events,
    files_under,
    ledger_numbers,
    log_events,
    roster_bytes,
    wait_for,
)

D = dt.date
# no assertion here reads what a PDF shows: PDFs without layout, in the watcher processes too (tests/pdfstub.py)
pytestmark = pytest.mark.usefixtures("stub_render")


def watch_once(root: Path, log: Path, *extra) -> subprocess.CompletedProcess:
    return realproc.run(["watch", root / "inbox", "--out", root / "out", *FAST, "--settle", "0.2", "--once", *extra],
                        stdout=log, cwd=ROOT, timeout=240)


def by_file(log: Path) -> dict[tuple[str, str], dict]:
    return {(e["reseller"], e["file"]): e for e in file_events(log)}


def owners(out: Path) -> dict[str, str]:
    db = sqlite3.connect(out / "ledger.sqlite")
    try:
        return dict(db.execute("SELECT prefix, owner FROM prefix_owners"))
    finally:
        db.close()


# -- pure rules -------------------------------------------------------------------------------------------
def test_names_are_shortened_with_a_hash_and_shown_safely():
    long = "a" * 235 + "-2026-10.xlsx"
    assert len(long.encode()) == 248
    tag = hashlib.sha256(long.encode()).hexdigest()[:8]
    assert fit(long, ".error.txt") == "a" * 176 + "~" + tag + ".xlsx.error.txt"  # 176 + 9 + 15 = 200 bytes
    assert len(fit(long, ".error.txt").encode()) == 200
    assert fit("roster.xlsx", ".error.txt") == "roster.xlsx.error.txt"
    gbk = os.fsdecode("深圳-2026-10.xlsx".encode("gbk"))
    assert shown(gbk) == r"b'\xc9\xee\xdb\xda-2026-10.xlsx'"
    assert shown("深圳.xlsx") == "深圳.xlsx"
    assert prefix_from_folder("sz-tengyun.2") == "SZTENGYUN2"
    assert prefix_from_folder("a-very-long-folder-name") == "AVERYLONGFOL"


def test_claim_prefix_rules_in_one_ledger(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    try:
        ledger.begin()
        ledger.claim_prefix("SZ", "sz", bind=False)  # a check binds nothing
        assert ledger.prefix_owner("SZ") is None
        ledger.claim_prefix("SZ", "sz")
        ledger.claim_prefix("SZ", "sz")  # its own again: fine
        ledger.claim_prefix("SZ", OPERATOR)  # the operator may number in it; the owner stays
        assert ledger.prefix_owner("SZ") == "sz"
        with pytest.raises(PrefixTaken, match="belongs to the reseller folder 'sz'"):
            ledger.claim_prefix("SZ", "bj")
        with pytest.raises(PrefixTaken, match="differs only by case from 'SZ'.*use 'SZ'"):
            ledger.claim_prefix("Sz", OPERATOR)
        ledger.claim_prefix("CLERK", OPERATOR)
        with pytest.raises(PrefixTaken, match="belongs to the operator's own runs"):
            ledger.claim_prefix("CLERK", "clerk")
        # an old ledger may hold two cases already: both series keep working, a third case is refused
        ledger.db.execute("INSERT INTO prefix_owners (prefix, owner) VALUES ('sz', 'old')")
        ledger.claim_prefix("sz", "old")
        ledger.claim_prefix("SZ", "sz")
        with pytest.raises(PrefixTaken, match="differs only by case"):
            ledger.claim_prefix("sZ", "x")
        ledger.commit()
    finally:
        ledger.close()


# -- links, hard links, special files ------------------------------------------------------------------
def test_links_and_special_files_are_set_aside_and_nothing_the_product_owns_moves(tmp_path):
    root = tmp_path / "drop"
    inbox, out = root / "inbox", root / "out"
    inbox.mkdir(parents=True)
    log = tmp_path / "watch.jsonl"
    drop(inbox, "good", "roster-2026-10.xlsx", roster_bytes(tmp_path, "GOOD", 2))
    assert watch_once(root, log).returncode == 0
    ledger = out / "ledger.sqlite"
    ledger_inode = ledger.stat().st_ino
    good_out = sorted(files_under(out / "good"))

    other = drop(inbox, "other", "roster-2026-10.xlsx", roster_bytes(tmp_path, "OTHER", 1))
    os.utime(other, (1, 1))  # oldest: billed before anything could take it
    evil = inbox / "evil"
    evil.mkdir()
    (evil / "steal-2026-10.xlsx").symlink_to("../other/roster-2026-10.xlsx")
    (evil / "billed-2026-10.xlsx").symlink_to(root / "processed" / "good" / "2026-10" / "roster-2026-10.xlsx")
    (evil / "ledger-2026-10.xlsx").symlink_to(ledger)
    (evil / "passwd-2026-10.xlsx").symlink_to("/etc/passwd")
    (evil / "dangling-2026-10.xlsx").symlink_to("/nonexistent/roster.xlsx")
    os.link(ledger, evil / "hard-2026-10.xlsx")
    os.mkfifo(evil / "fifo-2026-10.xlsx")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(evil / "sock-2026-10.xlsx"))
    (evil / "sub").mkdir()
    (evil / "sub" / "roster-2026-10.xlsx").write_bytes(roster_bytes(tmp_path, "EVIL", 1))
    (inbox / "outlink").symlink_to(out)  # a reseller folder that is a link to OUT
    (inbox / "looped").symlink_to(inbox / "good")

    first = watch_once(root, log)
    sock.close()
    assert first.returncode == 1, first.stderr  # --once: files failed
    again = watch_once(root, log)  # nothing is left to bill, nothing is billed twice
    assert again.returncode == 0, again.stderr

    # nothing the product owns moved, and nothing was billed from a link
    assert ledger.stat().st_ino == ledger_inode and ledger.stat().st_nlink == 2  # the hard link, in failed/
    assert sorted(files_under(out / "good")) == good_out
    assert ledger_numbers(out, "GOOD") == ["GOOD-2026-000001", "GOOD-2026-000002"]
    assert ledger_numbers(out, "OTHER") == ["OTHER-2026-000001"]
    assert ledger_numbers(out, "EVIL") == []
    assert (root / "processed" / "good" / "2026-10" / "roster-2026-10.xlsx").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["good", "ledger.sqlite", "other"]
    assert files_under(inbox) == [] and sorted(os.listdir(inbox)) == ["evil", "good", "other"]
    assert files_under(root / "processing") == [".watch.lock"]

    results = by_file(log)
    assert results[("other", "roster-2026-10.xlsx")]["result"] == "billed"
    failed = root / "failed"
    expected = {
        "steal-2026-10.xlsx": "is a symbolic link, not a file; links are never followed",
        "billed-2026-10.xlsx": "is a symbolic link, not a file",
        "ledger-2026-10.xlsx": "is a symbolic link, not a file",
        "passwd-2026-10.xlsx": "is a symbolic link, not a file",
        "dangling-2026-10.xlsx": "is a symbolic link (it points to nothing that exists)",
        "hard-2026-10.xlsx": "has 2 hard links (names); only a file with one name is billed",
        "fifo-2026-10.xlsx": "is a named pipe (FIFO), not a file; it was not opened",
        "sock-2026-10.xlsx": "is a socket, not a file",
        "sub": "is a folder; rosters go directly in the reseller folder",
    }
    for name, why in expected.items():
        assert results[("evil", name)]["result"] == "failed", name
        assert why in (failed / "evil" / f"{name}.error.txt").read_text(), name
    assert sorted(os.listdir(failed / "evil")) == sorted([*expected, *(f"{n}.error.txt" for n in expected)])
    assert (failed / "evil" / "ledger-2026-10.xlsx").is_symlink()  # moved as a link: the ledger stayed put
    assert os.readlink(failed / "evil" / "passwd-2026-10.xlsx") == "/etc/passwd"
    assert (failed / "evil" / "sub" / "roster-2026-10.xlsx").is_file()
    for name in ("outlink", "looped"):
        assert (failed / "_inbox" / name).is_symlink()
        assert "is a symbolic link; a reseller folder must be a real folder" in (
            failed / "_inbox" / f"{name}.error.txt").read_text()
    assert len(file_events(log)) == 1 + 1 + len(expected) + 2  # each entry handled once, across both runs


# -- one file never blocks the inbox ----------------------------------------------------------------------
def test_long_non_utf8_and_huge_files_each_end_somewhere_and_the_others_are_billed(tmp_path):
    root = tmp_path / "drop"
    inbox, out = root / "inbox", root / "out"
    inbox.mkdir(parents=True)
    log = tmp_path / "watch.jsonl"
    long_name = "a" * 235 + "-2026-10.xlsx"  # 248 bytes: "<name>.error.txt" or ".<name>.attempts" is too long
    drop(inbox, "long", long_name, roster_bytes(tmp_path, "LONG", 1, bad_rows=1))
    drop(inbox, "longbad", "b" * 235 + "-2026-10.xlsx", b"PK\x03\x04 not a workbook")
    gbk_name = "深圳-2026-10.xlsx".encode("gbk")
    (inbox / "gbk").mkdir()
    with open(os.path.join(os.fsencode(inbox / "gbk"), gbk_name), "wb") as f:
        f.write(roster_bytes(tmp_path, "GBK", 2))
    (inbox / "huge").mkdir()
    with open(inbox / "huge" / "huge-2026-10.xlsx", "wb") as f:
        f.truncate(64 * 1024 ** 3)  # sparse: takes no room, and must never be read
    drop(inbox, "ok", "roster-2026-10.xlsx", roster_bytes(tmp_path, "OK", 1))

    done = watch_once(root, log)
    assert done.returncode == 1, done.stderr  # the broken and the huge file failed
    assert files_under(root / "processing") == [".watch.lock"] and files_under(inbox) == []

    results = by_file(log)
    assert results[("ok", "roster-2026-10.xlsx")]["result"] == "billed"
    assert ledger_numbers(out, "OK") == ["OK-2026-000001"]
    # the long name: billed for the good row; the rejects text got a shortened name
    assert results[("long", long_name)]["result"] == "rejects"
    assert ledger_numbers(out, "LONG") == ["LONG-2026-000001"]
    assert sorted(os.listdir(root / "processed" / "long" / "2026-10")) == [long_name, fit(long_name, ".rejects.txt")]
    assert "row 3, column opened_on" in (root / "processed" / "long" / "2026-10" /
                                         fit(long_name, ".rejects.txt")).read_text()
    bad = "b" * 235 + "-2026-10.xlsx"
    assert results[("longbad", bad)]["result"] == "failed"
    assert sorted(os.listdir(root / "failed" / "longbad")) == [bad, fit(bad, ".error.txt")]
    # the GBK name: billed, kept under its own bytes, logged as the repr of its bytes
    shown_name = r"b'\xc9\xee\xdb\xda-2026-10.xlsx'"
    assert results[("gbk", shown_name)]["result"] == "billed"
    assert ledger_numbers(out, "GBK") == ["GBK-2026-000001", "GBK-2026-000002"]
    assert os.listdir(os.fsencode(root / "processed" / "gbk" / "2026-10")) == [gbk_name]
    manifest = json.loads((out / "gbk" / "2026-10" / "manifest.json").read_text())
    assert manifest["input"]["name"] == shown_name
    # the sparse 64 GiB file: refused from its size, never read
    assert results[("huge", "huge-2026-10.xlsx")]["result"] == "failed"
    assert "the file is 64.0 GiB, more than the 100.0 MiB a roster may have" in (
        root / "failed" / "huge" / "huge-2026-10.xlsx.error.txt").read_text()
    assert results[("huge", "huge-2026-10.xlsx")]["duration_s"] < 5
    assert len(file_events(log)) == 5


def test_the_size_limit_is_an_option(tmp_path):
    root = tmp_path / "drop"
    (root / "inbox").mkdir(parents=True)
    log = tmp_path / "watch.jsonl"
    data = roster_bytes(tmp_path, "SZ", 1)
    drop(root / "inbox", "sz", "roster-2026-10.xlsx", data)
    assert watch_once(root, log, "--max-size", "0.001").returncode == 1  # 1,048 bytes
    assert f"the file is {len(data) / 1024:,.1f} KiB, more than the 1.0 KiB a roster may have" in (
        root / "failed" / "sz" / "roster-2026-10.xlsx.error.txt").read_text()
    assert not (root / "out" / "ledger.sqlite").exists()  # refused before anything was priced
    bad = run_cli("watch", root / "inbox", "--out", root / "out", "--max-size", "0")
    assert bad.returncode == 2 and "use a size in MiB greater than 0, not '0'" in bad.stderr


# -- busy is not a failure --------------------------------------------------------------------------------
def test_a_busy_ledger_is_waited_for_and_never_counts_as_an_interrupted_attempt(tmp_path):
    root = tmp_path / "drop"
    (root / "inbox").mkdir(parents=True)
    log = tmp_path / "watch.jsonl"
    Ledger(root / "out" / "ledger.sqlite").close()
    drop(root / "inbox", "sz", "roster-2026-10.xlsx", roster_bytes(tmp_path, "SZ", 1))
    holder = sqlite3.connect(root / "out" / "ledger.sqlite", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the clerk's run holds the write lock
    proc = realproc.popen(["watch", root / "inbox", "--out", root / "out", *FAST, "--settle", "0.2", "--wait", "0.2",
                           "--once"], stdout=log, stderr=realproc.PIPE, cwd=ROOT)
    try:
        wait_for(lambda: sum(e.get("result") == "busy" for e in file_events(log)) >= 5, what="five busy retries")
    finally:
        holder.execute("COMMIT")
        holder.close()
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    assert [e["result"] for e in file_events(log) if e["result"] != "busy"] == ["billed"]
    assert "in use by another run" in next(e for e in file_events(log) if e["result"] == "busy")["message"]
    assert files_under(root / "failed") == []
    assert files_under(root / "processed") == ["sz/2026-10/roster-2026-10.xlsx"]
    assert ledger_numbers(root / "out", "SZ") == ["SZ-2026-000001"]
    assert files_under(root / "processing") == [".watch.lock"]  # the attempt state is gone too


# -- invoice prefixes ---------------------------------------------------------------------------------
def test_prefix_rules_operator_binding_only_on_issue_folder_default_and_one_case(tmp_path):
    root = tmp_path / "drop"
    inbox, out = root / "inbox", root / "out"
    inbox.mkdir(parents=True)
    ledger = out / "ledger.sqlite"
    log = tmp_path / "watch.jsonl"
    clerk = write_roster(tmp_path / "clerk.xlsx", [cust("C1", D(2026, 10, 2), 4)], [], {"invoice_prefix": "CLERK"})
    r = run_cli("run", clerk, "--period", "2026-10", "--out", out / "clerk", "--ledger", ledger)
    assert r.returncode == 0, r.stderr
    # an existing ledger whose numbers predate binding: documents in OLD, no owner recorded
    legacy = write_roster(tmp_path / "old.xlsx", [cust("O1", D(2026, 9, 2), 4)], [], {"invoice_prefix": "OLD"})
    assert run_cli("run", legacy, "--period", "2026-09", "--out", out / "old", "--ledger", ledger).returncode == 0
    # made as an older version left it: no owner for OLD, and no hash chain yet (the next write starts one)
    db = sqlite3.connect(ledger, isolation_level=None)
    for (trigger,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN "
                                 "('prefix_owners', 'chain', 'series', 'meta')").fetchall():
        db.execute(f"DROP TRIGGER {trigger}")
    db.execute("DELETE FROM prefix_owners WHERE prefix = 'OLD'")
    db.execute("DELETE FROM chain")
    db.execute("DELETE FROM series")
    db.execute("DELETE FROM meta WHERE key = 'chain_genesis'")
    db.close()
    assert owners(out) == {"CLERK": OPERATOR}
    # the clerk cannot open a second series that differs only by case
    lower = write_roster(tmp_path / "lower.xlsx", [cust("C2", D(2026, 10, 2), 4)], [], {"invoice_prefix": "clerk"})
    r = run_cli("run", lower, "--period", "2026-10", "--out", out / "lower", "--ledger", ledger)
    assert r.returncode == 2 and "differs only by case from 'CLERK'" in r.stderr and "use 'CLERK'" in r.stderr

    def dropped(folder, name, data, age):
        path = drop(inbox, folder, name, data)
        os.utime(path, (age, age))  # billed oldest first: this sets the order

    dropped("takeover", "roster-2026-10.xlsx", write_roster(tmp_path / "t.xlsx", [cust("T1", D(2026, 10, 3), 5)], [],
                                                            {"invoice_prefix": "CLERK"}).read_bytes(), 100)
    dropped("legacy", "roster-2026-10.xlsx", write_roster(tmp_path / "l.xlsx", [cust("L1", D(2026, 10, 3), 5)], [],
                                                          {"invoice_prefix": "OLD"}).read_bytes(), 200)
    dropped("empty", "roster-2026-10.xlsx", roster_bytes(tmp_path, "SHARED", 0), 300)  # issues nothing
    dropped("second", "roster-2026-10.xlsx", roster_bytes(tmp_path, "SHARED", 1), 400)
    no_prefix = [cust("N1", D(2026, 10, 4), 6)]
    other = [cust("N2", D(2026, 10, 4), 6)]
    dropped("sz-ty", "roster-2026-10.xlsx", write_roster(tmp_path / "n1.xlsx", no_prefix, [], {"name": "深圳"}).read_bytes(),
            500)
    dropped("szty", "roster-2026-10.xlsx", write_roster(tmp_path / "n2.xlsx", other, [], {"name": "乙"}).read_bytes(), 600)
    dropped("casey", "roster-2026-10.xlsx", roster_bytes(tmp_path, "Shared", 1, tag="c"), 700)
    done = watch_once(root, log)
    assert done.returncode == 1, done.stderr

    results = {folder: e for (folder, _), e in by_file(log).items()}
    assert results["takeover"]["result"] == "failed"
    assert "belongs to the operator's own runs (invoicer run)" in (
        root / "failed" / "takeover" / "roster-2026-10.xlsx.error.txt").read_text()
    assert results["legacy"]["result"] == "failed"  # the clerk's old numbers are the operator's
    assert results["empty"]["result"] == "billed" and results["empty"]["documents_issued"] == 0
    assert results["second"]["result"] == "billed"
    assert ledger_numbers(out, "SHARED") == ["SHARED-2026-000001"]
    assert ledger_numbers(out, "SZTY") == ["SZTY-2026-000001"]  # the folder's own default prefix
    assert results["szty"]["result"] == "failed"
    szty_error = (root / "failed" / "szty" / "roster-2026-10.xlsx.error.txt").read_text()
    assert "belongs to the reseller folder 'sz-ty'" in szty_error
    assert results["casey"]["result"] == "failed"
    assert "use 'SHARED'" in (root / "failed" / "casey" / "roster-2026-10.xlsx.error.txt").read_text()
    assert ledger_numbers(out, "CLERK") == ["CLERK-2026-000001"]
    assert ledger_numbers(out, "QQ") == []
    assert owners(out) == {"CLERK": OPERATOR, "SHARED": "second", "SZTY": "sz-ty"}
    v = run_cli("verify", out / "sz-ty" / "2026-10", "--ledger", ledger)  # recomputed with the folder's prefix
    assert v.returncode == 0, v.stdout

    # the operator may still number in any prefix (amending a reseller's invoices); a re-run that issues
    # nothing binds nothing, and the old series stays the operator's without a recorded owner
    r = run_cli("run", legacy, "--period", "2026-09", "--out", out / "old", "--ledger", ledger)
    assert r.returncode == 0 and "0 new, 1 unchanged" in r.stdout, r.stdout + r.stderr
    reseller_roster = write_roster(tmp_path / "op.xlsx", [cust("N1", D(2026, 10, 4), 7)], [],
                                   {"name": "深圳", "invoice_prefix": "SZTY"})
    r = run_cli("run", reseller_roster, "--period", "2026-10", "--out", out / "op", "--ledger", ledger, "--amend")
    assert r.returncode == 0, r.stderr
    assert ledger_numbers(out, "SZTY") == ["SZTY-2026-000001", "SZTY-2026-000003"]  # 000002: the credit note
    assert owners(out) == {"CLERK": OPERATOR, "SHARED": "second", "SZTY": "sz-ty"}
    book = Ledger(ledger)
    try:
        assert book.prefix_owner("OLD") == OPERATOR and book.prefix_owner("NEW") is None
    finally:
        book.close()


def test_the_watch_package_imports_without_pandas():
    code = ("import sys; from invoicer.watch import Watcher, WatchOptions; "
            "assert 'pandas' not in sys.modules, 'pandas was imported'")
    subprocess.run([INVOICER[0], "-c", code], cwd=ROOT, check=True, timeout=60)


def test_a_polling_watcher_is_not_led_around_by_link_loops(tmp_path):
    root = tmp_path / "drop"
    inbox = root / "inbox"
    (inbox / "evil").mkdir(parents=True)
    (inbox / "evil" / "loop").symlink_to("..")  # followed, this folder never ends
    (inbox / "evil" / "root").symlink_to("/")
    log = tmp_path / "watch.jsonl"
    proc = realproc.popen(["watch", inbox, "--out", root / "out", *FAST, "--poll"], stdout=log, stderr=realproc.PIPE,
                          cwd=ROOT)
    try:
        wait_for(lambda: len(file_events(log)) >= 2, what="the links to be set aside")
        drop(inbox, "sz", "roster-2026-10.xlsx", roster_bytes(tmp_path, "SZ", 1))
        wait_for(lambda: len(file_events(log)) >= 3, what="the roster to be billed")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()  # lost in a walk that does not end: do not leave it behind
            proc.wait()
            raise
    assert rc == 0, proc.stderr.read()
    assert [e["mode"] for e in log_events(log) if e["event"] == "watching"] == ["polling"]
    assert sorted((e["file"], e["result"]) for e in file_events(log)) == [
        ("loop", "failed"), ("root", "failed"), ("roster-2026-10.xlsx", "billed")]
    assert ledger_numbers(root / "out", "SZ") == ["SZ-2026-000001"]


def test_a_roster_issued_but_not_published_stays_claimed_until_a_pass_publishes_it(tmp_path, monkeypatch):
    """A full disk after COMMIT (exit 5 for `run`): the file was billed, so it must not go to failed/ ("not
    billed") nor count as an interrupted attempt; the claim stays and the next pass publishes the rest."""
    import errno
    import io

    from invoicer import publish
    from invoicer.watch import Watcher, WatchOptions

    root = tmp_path / "drop"
    (root / "inbox" / "sz").mkdir(parents=True)
    write_roster(root / "inbox" / "sz" / "roster-2026-10.xlsx", [cust("A1", D(2026, 10, 3), 5)], [],
                 {"invoice_prefix": "SZ"})
    real_write_json = publish.write_json

    def disk_full(path, obj):  # the disk fills after the commit: the claim written before it went through
        if not obj.get("files"):
            return real_write_json(path, obj)
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    def serve() -> tuple[int, list[dict]]:
        log = io.StringIO()
        opts = WatchOptions(inbox=root / "inbox", out=root / "out", once=True, settle_s=0.05, workers=1)
        code = Watcher(opts, log_to=log).serve()
        return code, [json.loads(x) for x in log.getvalue().splitlines()]

    monkeypatch.setattr(publish, "write_json", disk_full)
    code, events = serve()
    files = [e for e in events if e.get("event") == "file"]
    assert code == 1 and [e["result"] for e in files] == ["unpublished"]
    assert "2026-10 was issued (1 numbered document(s)" in files[0]["message"] and "disk is full" in files[0]["message"]
    assert (root / "processing" / "sz" / "2026-10" / "roster-2026-10.xlsx").is_file()
    assert not (root / "failed").exists() or not any((root / "failed").rglob("*.xlsx"))
    assert ledger_numbers(root / "out", "SZ") == ["SZ-2026-000001"]

    monkeypatch.setattr(publish, "write_json", real_write_json)
    code, events = serve()
    files = [e for e in events if e.get("event") == "file"]
    assert code == 0 and len(files) == 1
    assert files[0]["result"] == "billed" and files[0]["resumed"] is True and files[0]["documents_issued"] == 0
    assert (root / "processed" / "sz" / "2026-10" / "roster-2026-10.xlsx").is_file()
    assert ledger_numbers(root / "out", "SZ") == ["SZ-2026-000001"]  # nothing issued twice
    v = run_cli("verify", root / "out" / "sz" / "2026-10", "--ledger", root / "out" / "ledger.sqlite")
    assert v.returncode == 0, v.stdout
