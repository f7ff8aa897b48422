"""PDF rendering benchmark: naive WeasyPrint use against the product's path, in the same run.

    .venv/bin/python benchmarks/render.py [-n 60] [--workers 2]

naive   : one process; per document a new Jinja environment, HTML, parsed CSS and FontConfiguration.
product : invoicer.render.pdf.RenderPool: CSS parsed and fonts configured once per worker process, a pool
          of workers (default: all cores), the template's fixed-layout tables (both paths use the template).

Two comparisons, both paths measured in this run:
cold : from nothing to N PDFs: the naive loop including its `import weasyprint` (about 1 s) against a new
       pool including its workers' start-up (what `invoicer run` pays once per run).
warm : N more PDFs once set up: the naive loop with WeasyPrint already imported against the same pool
       rendering a second batch (what the drop-folder watcher pays per roster: it keeps its pool).
Also prints the peak RSS of the worker processes for N and 2N documents: it must stay flat.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_docs(n: int) -> list[dict]:
    from invoicer import pricebook
    from invoicer.pipeline import price_roster
    from tests.conftest import change, cust, write_roster

    customers, changes = [], []
    for i in range(n):
        cid = f"B{i:05d}"
        customers.append(cust(cid, dt.date(2026, 5, 1), 5 + i % 20, name=f"北京第{i}号科技有限公司",
                              address="北京市海淀区中关村大街1号", email=f"ap{i}@example.cn"))
        changes += [change(cid, dt.date(2026, 10, 1 + i % 28), "add", 1 + i % 3, reference=f"HT-{i}"),
                    change(cid, dt.date(2026, 10, 2 + i % 27), "add", 1)]
    with tempfile.TemporaryDirectory() as d:
        path = write_roster(Path(d) / "bench.xlsx", customers, changes,
                            reseller={"name": "深圳市腾云信息技术有限公司", "invoice_prefix": "BENCH"})
        priced = price_roster(path, pricebook.load_default(), "2026-10")
    return [{**doc, "number": f"BENCH-2026-{k + 1:06d}"} for k, doc in enumerate(priced.invoices)]


def naive(docs: list[dict]) -> None:
    import jinja2
    from weasyprint import CSS, HTML
    from weasyprint.text.fonts import FontConfiguration

    from invoicer.money import chinese_capital, fmt_yuan
    from invoicer.render.pdf import DEFAULT_TEMPLATES

    for doc in docs:
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(DEFAULT_TEMPLATES)), autoescape=True)
        env.filters.update(yuan=fmt_yuan, capital=chinese_capital)
        html = env.get_template("invoice.html.j2").render(doc=doc)
        fonts = FontConfiguration()
        css = CSS(filename=str(DEFAULT_TEMPLATES / "style.css"), font_config=fonts)
        HTML(string=html, base_url=str(DEFAULT_TEMPLATES) + "/").write_pdf(stylesheets=[css], font_config=fonts)


def product_child(n: int, workers: int) -> None:
    """Runs in a fresh process, so start-up is cold and RUSAGE_CHILDREN measures only this run's workers."""
    from invoicer.render.pdf import RenderPool

    docs = make_docs(n)
    t0 = time.perf_counter()
    with RenderPool(workers=workers) as pool:
        pool.render(docs, progress=False)
        cold = time.perf_counter() - t0
        t1 = time.perf_counter()
        pool.render([{**d, "number": d["number"] + "W"} for d in docs], progress=False)
        warm = time.perf_counter() - t1
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f"{cold} {warm} {peak_kb}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=60)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        product_child(*args.child)
        return
    docs = make_docs(args.n)
    t0 = time.perf_counter()
    naive(docs)  # the first call imports WeasyPrint: cold
    naive_cold = time.perf_counter() - t0
    t1 = time.perf_counter()
    naive([{**d, "number": d["number"] + "W"} for d in docs])
    naive_warm = time.perf_counter() - t1

    def child(n):
        out = subprocess.run([sys.executable, __file__, "--child", str(n), str(args.workers)], capture_output=True,
                             text=True, check=True).stdout.split()
        return float(out[0]), float(out[1]), int(out[2])

    prod_cold, prod_warm, peak_n = child(args.n)
    _, _, peak_2n = child(args.n * 2)
    n = args.n
    print(f"{n} invoices, {args.workers} worker(s); invoices/s (speed-up over naive in the same run)")
    print("                     naive     product")
    print(f"cold (incl. start-up) {n / naive_cold:6.2f}   {n / prod_cold:6.2f}  ({naive_cold / prod_cold:.1f}x)")
    print(f"warm (set up already) {n / naive_warm:6.2f}   {n / prod_warm:6.2f}  ({naive_warm / prod_warm:.1f}x)")
    print(f"peak worker RSS: {peak_n / 1024:.0f} MB for {n} documents, {peak_2n / 1024:.0f} MB for "
          f"{2 * n} documents")


if __name__ == "__main__":
    main()
