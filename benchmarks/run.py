"""End-to-end benchmark of ``invoicer run`` (issue #13): per stage, wall, CPU and peak RSS of the process tree.

    .venv/bin/python benchmarks/run.py [--sizes 1000,10000,100000] [--render-sample 40] [--full-render]
                                       [--dask] [--verify] [--json results.json]

For each size a synthetic roster is written (benchmarks/roster_gen.py: about half the customers billed),
then, each in a fresh process against a fresh output folder:
  1. the first run (issues everything), 2. a no-op re-run of the same file, 3. a --dry-run.
Stages timed inside the run: read, validate, price, build (documents), ledger (plan, numbering, recording,
commit), render, summary, publish (files and manifest, without the summary). --verify also times
``invoicer verify`` of each size's folder after the three runs (wall and peak RSS, in a fresh process).

Rendering: by default the runs render with a stub (a few bytes per document, in the run's process), so the
rest of the pipeline is measured at full scale, and WeasyPrint's cost is measured separately on a sample of
real documents (--render-sample, this machine's worker pool) and extrapolated; --full-render renders every
document for real (10k documents take several minutes on 2 cores). --dask also measures a Dask LocalCluster
of 2 worker processes against the local pool on the same sample (in the order local, Dask, Dask, local; wall
time and CPU seconds per document). Figures are ratios within one run of this script: the machine is shared,
so absolute seconds move from run to run.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

STAGES = ["read", "validate", "price", "build", "ledger", "render", "summary", "publish"]


# -- inside the measured process -------------------------------------------------------------------------
def _instrument(times: dict[str, float], stub_render: bool) -> None:
    """Wrap the pipeline's stage functions with timers (and, optionally, stub the PDF renderer)."""
    from invoicer import documents, ledger, pipeline
    from invoicer.render import executor, summary

    def timed(owner, name, stage, exclude=()):
        real = getattr(owner, name)

        def wrapper(*a, **kw):
            t = time.perf_counter()
            inner = {s: times.get(s, 0.0) for s in exclude}
            try:
                return real(*a, **kw)
            finally:
                spent = time.perf_counter() - t - sum(times.get(s, 0.0) - v for s, v in inner.items())
                times[stage] = times.get(stage, 0.0) + spent
        setattr(owner, name, wrapper)

    timed(pipeline, "read_roster", "read")
    timed(pipeline, "validate", "validate")
    timed(pipeline, "price_period", "price")
    timed(documents, "build_invoices", "build")
    timed(documents, "build_notices", "build")
    for name in ("begin_read", "begin", "commit", "load", "series_mark", "prefix_owner", "customer_notice_hashes"):
        timed(ledger.Ledger, name, "ledger")
    # the plan reads the invoices in force by a cursor as it builds the invoices: its time less the build's
    timed(pipeline, "plan_against", "ledger", exclude=("build", "ledger"))
    timed(pipeline, "_record", "ledger")
    timed(ledger.Ledger, "__init__", "ledger")  # opening (not the class itself: open_readonly must stay)
    timed(ledger.Ledger, "open_readonly", "ledger")
    timed(summary, "write_summary", "summary")  # publish_period imports it when it runs
    timed(pipeline, "publish_period", "publish", exclude=("summary", "ledger"))
    real_iter = executor.LocalExecutor.render_iter

    def render_iter(self, docs, progress=None):
        times["_documents"] = times.get("_documents", 0) + len(docs)
        it = real_iter(self, docs, progress)
        while True:
            t = time.perf_counter()
            try:
                data = next(it)
            except StopIteration:
                times["render"] = times.get("render", 0.0) + time.perf_counter() - t
                return
            times["render"] = times.get("render", 0.0) + time.perf_counter() - t
            yield data
    executor.LocalExecutor.render_iter = render_iter
    if stub_render:
        from invoicer.render import pdf

        pdf.Renderer.__init__ = lambda self, templates_dir=None, time_limit=None: None
        pdf.Renderer.render = lambda self, doc: b"%PDF-stub " + (doc.get("number") or pdf.doc_key(doc)).encode()


class TreeRss:
    """Peak resident memory of this process and all its descendants, sampled every 50 ms."""

    def __init__(self):
        import psutil

        self.proc, self.peak, self._stop = psutil.Process(), 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        import psutil

        while not self._stop.is_set():
            total = 0
            for p in [self.proc, *self.proc.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(0.05)

    def stop(self) -> int:
        self._stop.set()
        self.thread.join()
        return self.peak


def measure_child(args) -> None:
    import resource

    times: dict[str, float] = {}
    _instrument(times, stub_render=not args.full_render)
    from invoicer.pipeline import RunOptions, run

    rss = TreeRss()
    cpu0 = os.times()
    t = time.perf_counter()
    report = run(RunOptions(roster=Path(args.roster), period="2026-10", out=Path(args.out), progress=False,
                            dry_run=args.dry_run, workers=None if args.full_render else 1))
    wall = time.perf_counter() - t
    cpu1 = os.times()
    peak = rss.stop()
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system) + (cpu1.children_user - cpu0.children_user) + \
        (cpu1.children_system - cpu0.children_system)
    documents = int(times.pop("_documents", 0))
    print(json.dumps({"wall": wall, "cpu": cpu, "documents": documents, "peak_rss_mb": peak / 2**20,
                      "maxrss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "stages": times, "issued": len(report.issued),
                      "unchanged": len(report.plan.unchanged), "new": len(report.plan.new)}))


def measure_verify_child(args) -> None:
    from invoicer.verify import verify

    rss = TreeRss()
    t = time.perf_counter()
    audit = verify(Path(args.out))
    wall = time.perf_counter() - t
    print(json.dumps({"wall": wall, "peak_rss_mb": rss.stop() / 2**20, "checked": audit.checked,
                      "problems": len(audit.problems)}))


# -- the driver --------------------------------------------------------------------------------------------
def run_child(roster: Path, out: Path, dry_run: bool, full_render: bool, verify: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--child", "--roster", str(roster), "--out", str(out)]
    cmd += ["--dry-run"] if dry_run else []
    cmd += ["--full-render"] if full_render else []
    cmd += ["--verify"] if verify else []
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        raise SystemExit(f"measured run failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def sample_docs(roster: Path, n: int) -> list[dict]:
    from invoicer import pricebook
    from invoicer.pipeline import price_roster

    p = price_roster(roster, pricebook.load_default(), "2026-10")
    docs = [{**d, "number": f"BENCH-2026-{i:06d}"} for i, d in enumerate(p.invoices[:n], 1)]
    return docs + p.notices[: max(0, n - len(docs))]


def _tree_cpu() -> dict[int, float]:
    """CPU seconds (user + system) so far of this process and each of its descendants, by pid."""
    import psutil

    out = {}
    for p in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
        except psutil.Error:
            pass
    return out


def _timed(render) -> tuple[float, float]:
    """Wall seconds of ``render()`` and the CPU seconds the process tree spent meanwhile (the pool's or the
    cluster's processes, and this one, which runs the Dask scheduler, nannies and client)."""
    before = _tree_cpu()
    t = time.perf_counter()
    render()
    wall = time.perf_counter() - t
    after = _tree_cpu()
    return wall, sum(v - before.get(pid, 0.0) for pid, v in after.items())


def _local_pass(docs: list[dict]) -> tuple[float, float]:
    from invoicer.render.pdf import RenderPool

    with RenderPool(None, 2) as pool:
        list(pool.render_iter(docs[:4]))
        return _timed(lambda: list(pool.render_iter(docs)))


def _dask_pass(docs: list[dict]) -> tuple[float, float]:
    from distributed import LocalCluster

    from invoicer.render.executor import DaskExecutor

    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0",
                      silence_logs=50) as cluster:
        ex = DaskExecutor(cluster.scheduler_address)
        try:
            list(ex.render_iter(docs[:4]))  # fingerprints, templates, first documents: start-up, not throughput
            return _timed(lambda: list(ex.render_iter(docs)))
        finally:
            ex.close()


def render_throughput(docs: list[dict], dask: bool) -> dict:
    """Documents per second of the local pool (2 processes) and, with dask, of a LocalCluster of 2 workers
    (one thread each) on the same documents; each warmed up first (start-up is not throughput), and only
    one of them alive at a time. With dask the two are measured in the order local, Dask, Dask, local
    (each pass with a fresh pool or cluster) and each side's figures are the sums of its two passes, so a
    load that rises or falls steadily on this shared machine during the measurement favours neither side.

    Both wall time and CPU time are reported. On a machine shared with other work, wall time favours the
    side with more busy processes and threads (the OS shares the cores between all of them, so Dask's
    extra scheduler and event-loop threads win it a larger share); CPU seconds per document, counted over
    the whole process tree (workers, and this process with the Dask scheduler, nannies and client), is what
    decides throughput on otherwise idle cores, and is what the Dask-to-local ratio ``dask_vs_local_cpu``
    compares."""
    if not dask:
        wall, cpu = _local_pass(docs)
        return {"local_docs_per_s": len(docs) / wall, "local_cpu_s_per_doc": cpu / len(docs)}
    spent = {"local": [], "dask": []}
    for side in ("local", "dask", "dask", "local"):
        spent[side].append((_local_pass if side == "local" else _dask_pass)(docs))
    out = {}
    for side, passes in spent.items():
        out[f"{side}_docs_per_s"] = 2 * len(docs) / sum(w for w, _ in passes)
        out[f"{side}_cpu_s_per_doc"] = sum(c for _, c in passes) / (2 * len(docs))
    out["passes"] = {side: [{"wall_s": w, "cpu_s": c} for w, c in passes] for side, passes in spent.items()}
    out["dask_vs_local"] = out["dask_docs_per_s"] / out["local_docs_per_s"]
    out["dask_vs_local_cpu"] = out["local_cpu_s_per_doc"] / out["dask_cpu_s_per_doc"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--render-sample", type=int, default=40)
    ap.add_argument("--full-render", action="store_true")
    ap.add_argument("--dask", action="store_true")
    ap.add_argument("--verify", action="store_true", help="also time `invoicer verify` of each folder")
    ap.add_argument("--json")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--roster", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--dry-run", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.render_sample < 1:
        ap.error("--render-sample must be at least 1: WeasyPrint's share is extrapolated from it")
    if args.child:
        (measure_verify_child if args.verify else measure_child)(args)
        return
    from roster_gen import write_roster

    results = {"sizes": {}}
    with tempfile.TemporaryDirectory(prefix="invoicer-bench-") as tmp:
        tmp = Path(tmp)
        for n in [int(x) for x in args.sizes.split(",")]:
            roster = write_roster(tmp / f"roster-{n}.xlsx", n)
            out = tmp / f"out-{n}"
            first = run_child(roster, out, False, args.full_render)
            again = run_child(roster, out, False, args.full_render)
            dry = run_child(roster, out, True, args.full_render)
            results["sizes"][n] = {"first": first, "noop": again, "dry_run": dry}
            print(f"{n} customers: first {first['wall']:.1f} s ({first['issued']} numbered), no-op "
                  f"{again['wall']:.2f} s, dry run {dry['wall']:.2f} s, peak RSS {first['peak_rss_mb']:.0f} MB",
                  file=sys.stderr)
            if args.verify:
                results["sizes"][n]["verify"] = checked = run_child(roster, out, False, False, verify=True)
                print(f"{n} customers: verify {checked['wall']:.1f} s, peak RSS {checked['peak_rss_mb']:.0f} MB "
                      f"({checked['checked']} checks, {checked['problems']} problems)", file=sys.stderr)
        biggest = tmp / f"roster-{max(int(x) for x in args.sizes.split(','))}.xlsx"
        docs = sample_docs(biggest, args.render_sample)
        results["render"] = render_throughput(docs, args.dask)
    report(results, args.full_render)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def report(results: dict, full_render: bool) -> None:
    per_s = results["render"]["local_docs_per_s"]
    print("| customers | documents | first run (s) | " + " | ".join(STAGES) + " | render (extrapolated, s) | "
          "outside WeasyPrint | no-op (s) | no-op / first | dry run (s) | CPU (s) | peak RSS tree (MB) |")
    print("|" + "---|" * (len(STAGES) + 11))
    for n, r in results["sizes"].items():
        first, noop, dry = r["first"], r["noop"], r["dry_run"]
        docs = first["documents"]
        st = first["stages"]
        render = st.get("render", 0.0) if full_render else docs / per_s
        outside = first["wall"] - st.get("render", 0.0)
        total = outside + render
        print(f"| {n:,} | {docs:,} | {first['wall']:.1f} | " + " | ".join(f"{st.get(s, 0.0):.2f}" for s in STAGES)
              + f" | {render:.0f} | {outside / total:.1%} | {noop['wall']:.2f} | {noop['wall'] / total:.2%} | "
              f"{dry['wall']:.2f} | {first['cpu']:.1f} | {first['peak_rss_mb']:.0f} |")
    verified = [(n, r["verify"]) for n, r in results["sizes"].items() if "verify" in r]
    print("\n" if verified else "", end="")
    for n, v in verified:
        print(f"verify of {n:,} customers: {v['wall']:.1f} s, peak RSS {v['peak_rss_mb']:.0f} MB "
              f"({v['checked']:,} checks, {v['problems']} problems)")
    rr = results["render"]
    print(f"\nrender throughput, local pool of 2 processes: {per_s:.1f} documents/s, "
          f"{rr['local_cpu_s_per_doc'] * 1000:.0f} ms CPU per document")
    if "dask_docs_per_s" in rr:
        walls = [p["wall_s"] for p in (rr["passes"]["local"][0], *rr["passes"]["dask"], rr["passes"]["local"][1])]
        print(f"Dask LocalCluster of 2 workers: {rr['dask_docs_per_s']:.1f} documents/s "
              f"({rr['dask_vs_local']:.0%} of the local pool's wall-clock throughput; passes local, Dask, Dask, "
              f"local: {', '.join(f'{t:.1f}' for t in walls)} s), {rr['dask_cpu_s_per_doc'] * 1000:.0f} ms CPU "
              f"per document ({rr['dask_vs_local_cpu']:.0%} of the local pool's throughput per CPU second)")


if __name__ == "__main__":
    main()
