"""A run's per-document bookkeeping stays on disk, not in the heap (issue #13): the plan's new and unchanged
invoices, the staged files by content and by name, the previous manifest and the manifest's file lists are
tables of an anonymous SQLite scratch database (invoicer/spill.py), the issued numbers are runs of a series.
Each stand-in must read back exactly what the list, dict or parsed JSON it replaced held."""
from __future__ import annotations

import json
import os
import random
from datetime import date as D

import pytest

from invoicer import pipeline, publish
from invoicer.ledger import IssuedRef
from invoicer.pipeline import IssuedNumbers, NewInvoice, RunOptions, run
from invoicer.spill import KeyedFiles, Scratch, SpilledList

from .conftest import cust, write_roster


def _manifest(n: int, rnd: random.Random) -> dict:
    files = {f"invoices/QQ-2026-{i:06d}.pdf": f"{rnd.getrandbits(256):064x}" for i in range(n)}
    files["summary.xlsx"] = "0" * 64
    stats = {name: [rnd.randrange(10**6), rnd.getrandbits(62), rnd.getrandbits(62), rnd.randrange(10**9)]
             for name in files}
    stats["notices/gone.pdf"] = None
    return {"tool": "qq-invoicer", "period": "2026-10", "counts": {"invoices": n, "notices": 0},
            "files": files, "file_stats": stats, "warnings": ["fapiao: 中文 \"quoted\"", "x\ny"], "total_fen": -5,
            "ratio": 1.5, "flag": True, "empty": {}, "none": None, "nested": {"b": [1, [2, {}]], "a": []}}


def test_a_streamed_manifest_is_byte_for_byte_json_dumps(tmp_path):
    rnd = random.Random(7)
    for n in (0, 1, 3, 2500):
        obj = _manifest(n, rnd)
        want = (json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode()
        streamed = {**obj, "files": publish.SortedItems(lambda o=obj: iter(sorted(o["files"].items())),
                                                        lambda: True),
                    "file_stats": publish.SortedItems(lambda o=obj: iter(sorted(o["file_stats"].items())),
                                                      lambda: True)}
        path = tmp_path / f"m{n}.json"
        assert publish.write_json(path, streamed) is True and path.read_bytes() == want
        assert publish.write_json(path, streamed) is False  # the same bytes: left alone
        empty = {**obj, "files": publish.SortedItems(lambda: iter(()), lambda: False)}
        publish.write_json(path, empty)
        assert path.read_bytes() == (json.dumps({**obj, "files": {}}, indent=2, ensure_ascii=False,
                                                sort_keys=True) + "\n").encode()


@pytest.mark.parametrize("chunk", [7, 1 << 20])
def test_the_previous_manifest_read_as_a_stream_says_what_json_loads_said(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(publish.PreviousManifest, "CHUNK", chunk)  # a window much smaller than an entry
    monkeypatch.setattr(publish.PreviousManifest, "LOOKAHEAD", 3)
    rnd = random.Random(3)
    obj = _manifest(300, rnd)
    obj["files"]["fapiao/QQ-2026-10.xlsx"] = 12  # not a hash: listed, never trusted
    for text in (json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True),
                 json.dumps(obj, separators=(",", ":"), ensure_ascii=True),
                 " \n" + json.dumps(obj, indent=None) + "\n\n"):
        (tmp_path / "manifest.json").write_text(text, encoding="utf-8")
        prev = publish.PreviousManifest(tmp_path, Scratch())
        for key in ("tool", "period", "counts", "warnings", "total_fen", "ratio", "flag", "empty", "none", "nested"):
            assert prev.get(key) == obj[key]
        assert prev.lists_files() and prev.get("missing", 5) == 5
        for name, digest in obj["files"].items():
            assert prev.file(name) == (digest if isinstance(digest, str) else None)
            stat = obj["file_stats"].get(name)
            if stat is not None and isinstance(digest, str):
                assert prev.unchanged(name, digest, stat)
                assert not prev.unchanged(name, digest, [stat[0] + 1, *stat[1:]])
                assert not prev.unchanged(name, "f" * 64, stat)
        assert not prev.unchanged("notices/gone.pdf", "x", None)
        assert prev.file("invoices/none.pdf") is None
        assert prev.files_under("fapiao/") == {"fapiao/QQ-2026-10.xlsx": None}
        assert prev.files_under("summary") == {"summary.xlsx": "0" * 64}


@pytest.mark.parametrize("text", ["", "[]", "{", '{"files": {"a": "b"}', '{"files": {"a": "b"}} x', "\ufeff{}",
                                  '{"files": {"a": 1,}}', '{"a": 1e}', '{1: 2}', '{"files": {"a": "b"}, "files": 3}'])
def test_a_broken_or_odd_previous_manifest_reads_as_json_loads_would(tmp_path, text):
    (tmp_path / "manifest.json").write_text(text, encoding="utf-8")
    prev = publish.PreviousManifest(tmp_path, Scratch())
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = {}
    files = parsed.get("files") if isinstance(parsed, dict) else None
    assert prev.lists_files() == isinstance(files, dict)
    assert prev.file("a") == (files.get("a") if isinstance(files, dict) and isinstance(files.get("a"), str) else None)
    if not isinstance(parsed, dict) or not parsed:
        assert prev.top == {}
    (tmp_path / "manifest.json").write_bytes(b'{"files": {"\xff": "b"}}')  # not UTF-8: unreadable
    assert publish.PreviousManifest(tmp_path, Scratch()).top == {}


# -- the previous manifest as ijson reads it (its C backend, yajl2_c; the pure-Python one where that is missing,
# or where the manifest escapes a surrogate) compared with json.loads, entry by entry --------------------------
_BACKENDS = ["c", "python"]


@pytest.fixture
def backend(request, monkeypatch):
    if request.param == "python":
        monkeypatch.setattr(publish, "_ijson", publish._PY_IJSON)
    return request.param


def _encodable(text) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _reads_as_json_loads(prev, data: bytes) -> None:
    """Everything ``prev`` says is what json.loads says of ``data`` (failing: an empty manifest)."""
    try:
        parsed = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        parsed = {}
    if not isinstance(parsed, dict):
        parsed = {}
    files, stats = parsed.get("files"), parsed.get("file_stats")
    assert {k: True if k in ("files", "file_stats") and isinstance(v, dict) else v for k, v in parsed.items()} \
        == {k: prev.get(k) for k in prev.top} and set(prev.top) == set(parsed)
    assert prev.lists_files() == isinstance(files, dict)
    if isinstance(files, dict):
        want = {n: h if isinstance(h, str) else None for n, h in files.items()
                if _encodable(n) and (not isinstance(h, str) or _encodable(h))}  # else: no entry
        assert prev.files_under("") == want
        for name, digest in want.items():
            assert prev.file(name) == digest
    if isinstance(stats, dict):
        want = {n: json.dumps(v, separators=(",", ":")) for n, v in stats.items() if _encodable(n)}
        assert dict(prev._db.execute(f"SELECT name, stat FROM {prev._stats}")) == want
        for name, stat in stats.items():
            if isinstance(files, dict) and isinstance(files.get(name), str) and isinstance(stat, list) \
                    and all(type(x) is int for x in stat) and _encodable(name):
                assert prev.unchanged(name, files[name], stat)


_ODD = [
    b'{"files": {"a": "1", "b": "2", "a": "3"}, "file_stats": {"a": [1, 2], "a": [3, 4]}}',  # repeated: the last
    b'{"files": {"a": "1"}, "tool": 1, "files": {"b": "2"}, "tool": 2}',
    b'{"files": {"a": "1"}, "files": 3}', b'{"files": 3, "files": {"a": "1"}}',
    b'{"files": {"a": 1, "b": null, "c": [1, {"d": 2}], "d": {}, "e": "x", "f": true, "g": 1.5, "h": ""}}',
    b'{"files": {"a": "h"}, "file_stats": {"a": [1, 2.5, 3], "b": [1.0], "c": [1e400], "d": [-0, 0], '
    b'"e": [123456789012345678901234567890, -9223372036854775809], "f": null, "g": [], "h": [true, 1], '
    b'"i": [1, [2, 3], {"x": -1E2}], "j": "x", "k": {"y": [0.1]}, "l": [[]], "m": 7, "n": 1.5e-400}}',
    b'{"a": 1.5, "b": -0.0, "c": 1E2, "d": 123456789012345678901234567890, "e": [1, {"f": {"g": [2.25]}}], '
    b'"h": "\\u4e2d\\"\\\\\\/\\b\\f\\n\\r\\t\\u0000", "i": false, "j": null, "files": {}, "file_stats": {}}',
    b'{"files": {"\\ud83d\\ude00": "a", "b\\u00e9": "\\u0041"}}',  # escaped, not surrogates alone: read as json
    b'{"files": {"\\ud800": "a", "b": "1", "c\\udc00": "2", "d\\ud800\\u0041": "3", "e\\udc00\\ud800": "4", '
    b'"f": "\\ud800", "\\\\ud800": "5"}, "file_stats": {"\\ud800": [1], "b": [2]}, "w": ["\\ud800x"]}',
    b'{"files": {"a": "b"}}  \n\r\t', b'\n {"files": {"a": "b"}}', b'{}', b'{"files": {}}',
    b'{"files": {"a": "b"}} x', b'{"files": {"a": "b"}}{}', b'{"files": {"a": "b"}}\x00', b'\xef\xbb\xbf{}',
    b'{"files": {"\xff": "b"}}', b'{"files": {"a": "\xed\xa0\x80"}}', b'{"files": {"a": "\xc0\x80"}}',
    b'{"files":\x0c{"a": "b"}}', b'{"files": {"a": "b\x01"}}', b'{"files": {"a": "b\tc"}}', b'{"a": "x\ny"}',
    b'{"files": {"a": "b",}}', b'{"a": [1, 2,]}', b'{"a": 01}', b'{"a": .5}', b'{"a": 5.}', b'{"a": 1e}',
    b'{"a": -}', b'{"a": tru}', b'{"a" 1}', b'{"a": "\\x"}', b'{"a": 1} // c', b'{"a": 1} /* c */', b'',
    b' ', b'[]', b'"files"', b'3', b'null', b'{"files": {"a": "b"}', b'{"files": {"a": "b"', b'{"files": {"a"',
    b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b', "files": {"a": "b"}}',  # json.loads: RecursionError
    b'{"a": ' + b"[" * 50 + b"]" * 50 + b', "files": {"a": "b"}}',
    b'{"files": {"a": "b"}, "file_stats": {"a": ' + b'{"b":' * 3000 + b"1" + b"}" * 3000 + b"}}",
]


@pytest.mark.parametrize("backend", _BACKENDS, indirect=True)
@pytest.mark.parametrize("chunk", [1, 3, 1 << 18])
def test_the_previous_manifest_reads_as_json_loads_would_with_either_ijson_backend(tmp_path, monkeypatch, backend,
                                                                                  chunk):
    monkeypatch.setattr(publish.PreviousManifest, "CHUNK", chunk)  # an escape or an entry across reads
    monkeypatch.setattr(publish.PreviousManifest, "LOOKAHEAD", 2)
    for data in _ODD:
        (tmp_path / "manifest.json").write_bytes(data)
        _reads_as_json_loads(publish.PreviousManifest(tmp_path, Scratch()), data)
        dropped = publish.PreviousManifest(tmp_path)  # the file lists parsed and dropped: the rest the same
        full = publish.PreviousManifest(tmp_path, Scratch())
        assert {k: dropped.get(k) for k in dropped.top} == {k: full.get(k) for k in full.top}


@pytest.mark.parametrize("backend", _BACKENDS, indirect=True)
@pytest.mark.parametrize("data", [b'{"files": {"a": "b"}, "ratio": NaN}', b'{"files": {"a": "b"}, "r": Infinity}',
                                  b'{"files": {"a": "b"}, "file_stats": {"a": [-Infinity]}}'])
def test_nan_and_infinity_which_json_loads_reads_make_the_previous_manifest_malformed(tmp_path, backend, data):
    """JSON has no NaN or Infinity: json.loads reads them, ijson (either backend) refuses them. This tool never
    writes them (its manifest holds integers and strings), so such a manifest is someone else's: only a hint,
    read as empty (nothing in it is trusted: every listed file is hashed again)."""
    assert json.loads(data)["files"] == {"a": "b"}
    (tmp_path / "manifest.json").write_bytes(data)
    prev = publish.PreviousManifest(tmp_path, Scratch())
    assert prev.top == {} and not prev.lists_files() and prev.file("a") is None


@pytest.mark.parametrize("data", [b'{"files": {"a": +1}}', b'{"files":\xc2\xa0{"a": "b"}}',
                                  b'{"files": {"a": "b"}}\xe3\x80\x80'])
def test_what_only_the_pure_python_backend_reads_of_a_malformed_manifest(tmp_path, monkeypatch, data):
    """A number with a "+" and Unicode white space between tokens: json.loads and yajl refuse them, ijson's
    pure-Python backend reads them (used only without the C backend, or for a manifest escaping a surrogate).
    Neither is in a manifest this tool writes; what it reads is what the text plainly says."""
    with pytest.raises(ValueError):
        json.loads(data.decode())
    (tmp_path / "manifest.json").write_bytes(data)
    assert publish.PreviousManifest(tmp_path, Scratch()).top == {}
    monkeypatch.setattr(publish, "_ijson", publish._PY_IJSON)
    assert publish.PreviousManifest(tmp_path, Scratch()).lists_files()


def test_the_previous_manifest_is_parsed_by_ijson_s_c_backend():
    """The lock pins an ijson with yajl2_c built (a wheel): a 100,000-customer manifest reads in ~0.4 s; the
    pure-Python backend would read the same several times slower."""
    import ijson

    assert ijson.backend == "yajl2_c" and publish._ijson.backend_name == "yajl2_c"


def test_spilled_lists_and_keyed_files_read_back_what_was_put(tmp_path):
    scratch = Scratch()
    refs = [IssuedRef(i, "invoice", f"QQ-2026-{i:06d}", f"C{i}", "a" * 64, f"invoices/{i}.pdf", "b" * 64,
                      None if i % 2 else "QQ-1", i * 100) for i in range(2345)]
    spilled = SpilledList(scratch, IssuedRef, refs)
    news = SpilledList(scratch, NewInvoice)
    assert not news and len(news) == 0 and list(news) == []
    news.append(NewInvoice("C1", 5))
    assert list(spilled) == refs and list(spilled) == refs and len(spilled) == 2345 and spilled == refs
    assert spilled[0] == refs[0] and spilled[-1] == refs[-1] and spilled[10:13] == refs[10:13]
    assert list(news) == [NewInvoice("C1", 5)] and news[0].total_fen == 5
    with pytest.raises(IndexError):
        spilled[2345]
    names = SpilledList(scratch, str, ["b", "a"])
    names += (f"n{i}" for i in range(1500))
    names.append("中文")
    assert len(names) == 1503 and names[0] == "b" and names[-1] == "中文" and "n1499" in names and "c" not in names
    assert list(names) == ["b", "a", *(f"n{i}" for i in range(1500)), "中文"] and names[1:3] == ["a", "n0"]
    assert repr(SpilledList(scratch, str, ["x"])) == "['x']"
    staging = publish.Staging(tmp_path)
    try:
        files = KeyedFiles(scratch)
        a, b = staging.stage(b"%PDF-a"), staging.stage(b"%PDF-b")
        files[b"\x00" * 32] = a
        files["invoices/x.pdf"] = b
        files["invoices/x.pdf"] = b  # replaced, counted once
        assert len(files) == 2 and files and "invoices/x.pdf" in files and "nope" not in files
        got = files["invoices/x.pdf"]
        assert (got.path, got.sha256, got.size, got.read()) == (b.path, b.sha256, b.size, b"%PDF-b")
        assert files.get(b"\x00" * 32).read() == b"%PDF-a" and files.get("nope") is None
        with pytest.raises(KeyError):
            files["nope"]
        files.clear()
        assert not files and len(files) == 0
    finally:
        staging.close()
    db = scratch.db
    scratch.close()
    with pytest.raises(Exception):
        db.execute("SELECT 1")


def test_issued_numbers_are_the_list_of_the_numbers():
    numbers = IssuedNumbers()
    want = []
    for prefix, year, seq in [("QQ", 2026, 7), ("QQ", 2026, 8), ("QQ", 2025, 3), ("QQ", 2026, 9), ("QQ", 2026, 10),
                              ("QQ", 2026, 12)]:
        numbers.append(prefix, year, seq, 6)
        want.append(f"{prefix}-{year}-{seq:06d}")
    assert numbers == want and list(numbers) == want and len(numbers) == 6 and numbers[2] == want[2]
    assert numbers[-1] == want[-1] and numbers[1:4] == want[1:4] and len(numbers._runs) == 4
    assert IssuedNumbers() == [] and not IssuedNumbers()


def _roster(tmp_path, name, ids, seats=3):
    return write_roster(tmp_path / name, [cust(c, D(2026, 10, 3), seats + (c == "C05")) for c in ids]
                        + [cust("N1", D(2025, 11, 2), 4)], [])


def test_the_plan_merges_the_invoices_with_the_ones_in_force_by_customer(tmp_path):
    """New, unchanged, changed and withdrawn, found by one pass over each side in customer order (the
    ledger's text order is Python's, "-" and "_" included), the same as the whole-dict comparison."""
    from invoicer import pricebook
    from invoicer.ledger import Ledger

    first = [f"C{i:02d}" for i in range(1, 12)] + ["C1-a", "C1_b", "D"]
    out = tmp_path / "out"
    run(RunOptions(roster=_roster(tmp_path, "a.xlsx", first), period="2026-10", out=out, progress=False, workers=1))
    renamed = {"C03": "C03x", "C1_b": "A0", "D": "E"}  # in place: the others keep their rows (their snapshots)
    second = [renamed.get(c, c) for c in first]
    book = pricebook.load_default()
    priced = pipeline.price_roster(write_roster(tmp_path / "b.xlsx", [
        cust(c, D(2026, 10, 3), 9 if c == "C05" else 3) for c in second]
        + [cust("N1", D(2025, 11, 2), 4)], []), book, "2026-10")
    ledger = Ledger(out / "ledger.sqlite")
    try:
        ledger.begin_read()
        plan = pipeline.plan_against(ledger, priced.prefix, "2026-10", priced.invoices)
        active = ledger.active_invoice_refs(priced.prefix, "2026-10")
    finally:
        ledger.rollback()
        ledger.close()
    assert [n.customer_id for n in plan.new] == ["A0", "C03x", "E"]
    assert [n.total_fen for n in plan.new] == [t for c, t in priced.invoices.totals() if c in ("A0", "C03x", "E")]
    assert [r.customer_id for r in plan.unchanged] == sorted(set(second) - {"A0", "C03x", "E", "C05"})
    assert all(r == active[r.customer_id] for r in plan.unchanged)
    assert [old.customer_id for _, old in plan.changed] == ["C05"]
    assert [old.customer_id for old in plan.withdrawn] == ["C03", "C1_b", "D"]


def test_a_rerun_lists_every_file_and_restores_a_deleted_folder(tmp_path, monkeypatch):
    """The manifest a re-run writes is the first run's (the same bytes), and a deleted invoices/ folder is
    restored from the ledger, file by file, through the on-disk missing list."""
    ids = [f"C{i:02d}" for i in range(1, 9)]
    roster = _roster(tmp_path, "a.xlsx", ids)
    out = tmp_path / "out"
    opts = RunOptions(roster=roster, period="2026-10", out=out, progress=False, workers=1)
    first = run(opts)
    assert len(first.issued) == 8 and first.issued == [f"QQ-2026-{i:06d}" for i in range(1, 9)]
    manifest = (out / "manifest.json").read_bytes()
    parsed = json.loads(manifest)
    assert sorted(parsed["files"]) == list(parsed["files"]) and set(parsed["files"]) == set(parsed["file_stats"])
    assert parsed["counts"]["invoices"] == 8 and parsed["counts"]["notices"] == 1
    again = run(opts)
    assert again.written == ["manifest.json"] and (out / "manifest.json").read_bytes() == manifest
    assert len(again.plan.unchanged) == 8 and not again.plan.new and again.issued == []
    for f in (out / "invoices").iterdir():
        f.unlink()
    os.rmdir(out / "invoices")
    restored = run(opts)
    assert sorted(restored.written) == sorted([f"invoices/QQ-2026-{i:06d}.pdf" for i in range(1, 9)]
                                              + ["manifest.json"])
    assert json.loads((out / "manifest.json").read_bytes())["files"] == parsed["files"]


def test_fapiao_parts_are_written_as_made_with_the_bytes_verify_expects(priced, monkeypatch, tmp_path):
    import datetime as dt
    import types

    import pandas as pd

    from invoicer import pricebook, publish_fapiao
    from invoicer.render import fapiao

    monkeypatch.setattr(fapiao, "ROWS_MAY_FAIL", 1)  # a file per bill
    p = priced([cust(c, D(2026, 10, 3), 5, tax_id="91350100M000100Y43") for c in "ABCD"])
    docs = [{**d, "number": f"FP-2026-00000{n}", "status": "issued"} for n, d in enumerate(p.invoices, 1)]
    roster = types.SimpleNamespace(customers=pd.DataFrame(), warnings=[])
    book, when = pricebook.load_default(), dt.datetime(2026, 10, 31)
    on_disk = []
    real_write = publish_fapiao.write_if_different

    def write(path, data):  # what the folder holds as each file is written
        on_disk.append((path.name, sorted(x.name for x in (tmp_path / "fapiao").glob("*part*"))))
        return real_write(path, data)

    monkeypatch.setattr(publish_fapiao, "write_if_different", write)
    files = {}
    written = publish_fapiao.write_fapiao_exports(tmp_path, "FP", "2026-10", docs, book, roster, when, files)
    parts = [f"FP-2026-10-part{n}.xlsx" for n in (2, 3, 4)]
    assert on_disk == [(parts[0], []), (parts[1], parts[:1]), (parts[2], parts[:2]), ("FP-2026-10.xlsx", parts)]
    expected, problems = publish_fapiao.expected_exports("FP", "2026-10", docs, book, roster, when)
    assert written == list(expected) and files == {n: publish.sha256(b) for n, b in expected.items()}
    assert all((tmp_path / n).read_bytes() == b for n, b in expected.items()) and roster.warnings == problems


def test_invoices_out_of_customer_order_are_refused_not_misplanned(tmp_path):
    """The merge with the ledger's cursor is right only for invoices in customer id order (an InvoiceSet
    gives them so); any other order stops the run before anything is numbered, one line."""
    from invoicer.errors import InvoicerError
    from invoicer.ledger import Ledger

    ledger = Ledger(tmp_path / "ledger.sqlite")
    docs = [{"customer": {"customer_id": c}, "total_fen": 100} for c in ("B", "A")]
    try:
        ledger.begin_read()
        plan = pipeline.plan_against(ledger, "QQ", "2026-10", docs[1:] + docs[:1])
        assert [n.customer_id for n in plan.new] == ["A", "B"] and not plan.unchanged and not plan.withdrawn
        with pytest.raises(InvoicerError, match="out of customer id order"):
            pipeline.plan_against(ledger, "QQ", "2026-10", docs)
    finally:
        ledger.rollback()
        ledger.close()
