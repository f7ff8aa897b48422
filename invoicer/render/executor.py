"""Where PDFs are rendered: this machine's worker processes (``local``, the default) or an existing Dask
distributed cluster (``dask:tcp://HOST:PORT``). Either way the caller gets the documents' bytes back one at
a time, in order, so a run can stream them to disk instead of holding a month of PDFs in memory.

Numbering and the ledger never leave the driver: a task takes one already-numbered document and returns
``(key, bytes, sha256)``. Rendering is deterministic (no clock; the PDF identifier derives from the number),
so a task that Dask retries after a worker died gives the same bytes.

Different fonts or library versions give different PDFs, so before the first task every Dask worker's
fingerprint (WeasyPrint, Pango, HarfBuzz and fontconfig versions, the SHA-256 of the font files the
templates resolve to, and the hash of the batch's first document rendered with the run's templates) is compared with
the driver's; a mismatch stops the run (exit 2) with one line naming the worker and what differs.

Templates reach workers as bytes, never as a path: the driver reads the template folder (only regular files
inside it, as the URL fetcher would serve them), the bundle is sent once per run (as a task's result, which
Dask computes again if the worker holding it dies, published on the scheduler so each worker fetches it once
and render tasks do not depend on it: see render_iter), and each worker unpacks it into a private temporary folder
after checking every name (no absolute path, no "..", no link), so a reseller's template folder cannot name a
file on a worker, and a worker needs no shared disk.
"""
from __future__ import annotations

import hashlib
import io
import re
import subprocess
import tarfile
import tempfile
import uuid
from collections import deque
from pathlib import Path
from typing import Iterator, NamedTuple

from ..errors import InputError, InvoicerError

DASK_PREFIX = "dask:"


def parse_executor(text: str | None) -> str | None:
    """``local`` (or nothing) -> None; ``dask:tcp://host:8786`` -> the scheduler address. Refuses others."""
    if text in (None, "", "local"):
        return None
    if text.startswith(DASK_PREFIX) and re.match(r"^[a-z][a-z0-9+]*://\S+$", text[len(DASK_PREFIX):]):
        return text[len(DASK_PREFIX):]
    raise InputError(f"--executor must be 'local' or 'dask:tcp://HOST:PORT' (a Dask scheduler), not {text!r}")


def doc_file_key(doc: dict) -> str:
    """A task's name for a document: its number, or for a notice its customer and kind."""
    from .pdf import doc_key

    return doc.get("number") or doc_key(doc)


class LocalExecutor:
    """Today's RenderPool: worker processes on this machine (borrowed from a long-lived owner, or made for
    one batch and closed after it)."""

    def __init__(self, templates_dir=None, workers: int | None = None, pool=None):
        self.templates_dir, self.workers, self.pool = templates_dir, workers, pool
        self._own = None  # the pool made for this executor's batches, kept until close()

    def render_iter(self, docs: list[dict], progress: bool | None = None) -> Iterator[bytes]:
        """The documents' PDF bytes, in order, each yielded as soon as it (and those before it) are done.
        Called once per batch of a run: the worker processes started for the first batch serve the next."""
        if not docs:
            return
        if self.pool is not None:
            yield from self.pool.render_iter(docs, progress)
            return
        if self._own is None:
            from .pdf import RenderPool

            self._own = RenderPool(self.templates_dir, 1 if len(docs) < 4 else self.workers)
        yield from self._own.render_iter(docs, progress)

    def close(self) -> None:
        """Stop the worker processes this executor started (a borrowed pool is its owner's to close)."""
        if self._own is not None:
            self._own.close()
            self._own = None


# -- templates as bytes --------------------------------------------------------------------------------
def pack_templates(root: Path) -> bytes:
    """The template folder as a deterministic tar: regular files inside ``root`` only (a link leading out
    of the folder is left out, as the URL fetcher would refuse it)."""
    root = Path(root).resolve()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(root.rglob("*")):
            real = path.resolve()
            if not real.is_file() or not real.is_relative_to(root):
                continue
            data = real.read_bytes()
            info = tarfile.TarInfo(path.relative_to(root).as_posix())
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


_unpacked: dict[str, str] = {}


def unpack_templates(bundle: bytes) -> str:
    """On a worker: the bundle unpacked (once per process) into a private folder; returns its path.
    Refuses any member that is not a plain file with a relative name inside the folder."""
    digest = hashlib.sha256(bundle).hexdigest()
    if digest in _unpacked:
        return _unpacked[digest]
    dest = Path(tempfile.mkdtemp(prefix=f"invoicer-templates-{digest[:12]}-"))
    with tarfile.open(fileobj=io.BytesIO(bundle), mode="r") as tar:
        for member in tar.getmembers():
            name = Path(member.name)
            if (not member.isfile() or name.is_absolute() or ".." in name.parts
                    or not (dest / name).resolve().is_relative_to(dest.resolve())):
                raise ValueError(f"refusing template member {member.name!r}")
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())
    _unpacked[digest] = str(dest)
    return str(dest)


# -- fingerprint -------------------------------------------------------------------------------------------
def _lib_version(name: str, symbol: str) -> str:
    import ctypes
    import ctypes.util

    found = ctypes.util.find_library(name)
    if not found:
        return "missing"
    fn = getattr(ctypes.CDLL(found), symbol)
    if symbol == "FcGetVersion":
        return str(fn())
    fn.restype = ctypes.c_char_p
    return fn().decode()


def _font_files(css: str) -> dict[str, str]:
    """SHA-256 of the font file fontconfig picks for each family the stylesheet names (and the generics)."""
    families = {"sans-serif", "serif", "monospace"}
    for decl in re.findall(r"font-family\s*:\s*([^;}]+)", css):
        families |= {f.strip().strip("'\"") for f in decl.split(",") if f.strip()}
    out = {}
    for family in sorted(families):
        try:
            path = subprocess.run(["fc-match", "-f", "%{file}", family], capture_output=True, text=True,
                                  timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            path = ""
        out[family] = (hashlib.sha256(Path(path).read_bytes()).hexdigest() + " " + Path(path).name
                       if path and Path(path).is_file() else "missing")
    return out


def fingerprint(bundle: bytes, probe: dict | None = None) -> dict[str, str]:
    """What decides a PDF's bytes on this process's machine: library versions, font files, and the SHA-256
    of a probe document (the batch's first) rendered with the run's templates (it catches whatever the rest
    misses)."""
    import weasyprint

    root = unpack_templates(bundle)
    css = (Path(root) / "style.css").read_text(encoding="utf-8", errors="replace") \
        if (Path(root) / "style.css").is_file() else ""
    fp = {"weasyprint": weasyprint.__version__, "pango": _lib_version("pango-1.0", "pango_version_string"),
          "harfbuzz": _lib_version("harfbuzz", "hb_version_string"),
          "fontconfig": _lib_version("fontconfig", "FcGetVersion")}
    fp.update({f"font {k}": v for k, v in _font_files(css).items()})
    if probe is not None:
        try:
            fp["probe pdf"] = hashlib.sha256(_renderer(bundle).render(probe)).hexdigest()
        except Exception as exc:  # compared like the rest: every machine must fail alike
            fp["probe pdf"] = f"not rendered: {type(exc).__name__}: {exc}"
    return fp


_renderers: dict[str, object] = {}


def _renderer(bundle: bytes):
    from .pdf import Renderer

    digest = hashlib.sha256(bundle).hexdigest()
    if digest not in _renderers:
        _renderers[digest] = Renderer(unpack_templates(bundle))
    return _renderers[digest]


def render_task(doc: dict, bundle: bytes) -> tuple[str, bytes, str]:
    """A numbered document -> (key, PDF bytes, their SHA-256)."""
    data = _renderer(bundle).render(doc)
    return doc_file_key(doc), data, hashlib.sha256(data).hexdigest()


class BundleRef(NamedTuple):
    """How a render task names the run's templates: the bundle's SHA-256 and the name under which the
    driver published the task whose result the bundle is (see DaskExecutor.render_iter)."""
    digest: str
    name: str


_bundles: dict[str, bytes] = {}  # this worker's copy of each bundle it was sent, by SHA-256


def _bundle_here(bundle: bytes | BundleRef) -> bytes:
    """The template bundle's bytes in this worker: its own copy, or, the first time, the result of the
    driver's template task, fetched through the scheduler (computed again there if the worker that held it
    died). The fetch leaves the worker's thread pool while it waits (``worker_client``), so the template task
    can run on this worker's thread if it has to be computed again."""
    if isinstance(bundle, (bytes, bytearray)):
        return bytes(bundle)
    data = _bundles.get(bundle.digest)
    if data is None:
        from distributed import worker_client

        with worker_client() as client:
            try:
                data = client.get_dataset(bundle.name).result()
            except KeyError:
                raise ClusterRenderFailed(f"the run's templates are no longer published on the Dask scheduler "
                                          f"({bundle.name}: another client of the cluster removed them)") from None
        if hashlib.sha256(data).hexdigest() != bundle.digest:
            raise ClusterRenderFailed(f"the Dask scheduler holds other templates under {bundle.name} than this run "
                                      f"published (another client of the cluster replaced them): nothing rendered")
        _bundles[bundle.digest] = data
    return data


def render_batch(docs: list[dict], bundle: bytes | BundleRef, expected: dict | None = None,
                 probe: dict | None = None) -> list[tuple[str, bytes, str]]:
    """One Dask task: a few consecutive numbered documents -> one (key, PDF bytes, SHA-256) each, in order.
    A retried batch renders every one of them again, with the same bytes. With ``expected`` (the driver's
    fingerprint, made with ``probe``), the worker first checks that it would render alike (once per
    process): a worker that joined the cluster after the run's start was never checked, and one with other
    fonts refuses (FingerprintMismatch) instead of rendering different bytes."""
    _tune_worker()
    bundle = _bundle_here(bundle)
    if expected is not None:
        _check_here(bundle, probe, expected)
    return [render_task(doc, bundle) for doc in docs]


_fingerprints_here: dict[str, dict[str, str]] = {}  # this process's fingerprint per (bundle, probe)


def _fingerprint_here(bundle: bytes, probe: dict | None) -> dict[str, str]:
    import json

    key = hashlib.sha256(bundle).hexdigest() + hashlib.sha256(
        json.dumps(probe, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    if key not in _fingerprints_here:
        _fingerprints_here[key] = fingerprint(bundle, probe)
    return _fingerprints_here[key]


def _check_here(bundle: bytes, probe: dict | None, expected: dict[str, str]) -> None:
    import contextlib

    where = "a worker"
    with contextlib.suppress(Exception):  # not inside a Dask worker (a test calling the task directly)
        from distributed import get_worker

        where = get_worker().address
    compare_fingerprints(expected, {where: _fingerprint_here(bundle, probe)})


# -- the worker's own costs ----------------------------------------------------------------------------------
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
_tuned = False


def _tune_worker() -> None:
    """Once per worker process, before its first document: switch off Dask defaults that made a document
    cost about 25% more CPU on a Dask worker's rendering thread than in a local pool process (measured, see
    docs/decisions.md "Scale"). They change speed only, never bytes.

    - The nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536`` (``distributed.nanny.pre-spawn-environ``),
      which also freezes glibc's mmap threshold at 128 KiB: WeasyPrint's, Pango's and cairo's allocations
      then go back to the kernel and are fetched again page by page. The thresholds are set to glibc's own
      dynamic ceiling (32 MiB mmap, trim at twice that), so a worker keeps at most that much freed memory.
    - The worker's statistical profiler (``distributed.worker.profile``) walks the rendering thread's deep
      stack every 10 ms, holding the GIL, and the event loop's health check (``tick``) takes the GIL 50 times
      a second; both are stopped (a render worker's dashboard has no profile then, and a slow event loop is
      not logged).
    - What the worker's event loop does by the clock costs CPU for every second a document takes, and more
      so on a loaded machine: its system monitor (CPU, memory, disk and network counters for the heartbeat
      and the dashboard) runs every 2 s instead of every 500 ms, its memory check (spill, pause) every
      500 ms instead of 100 ms. Heartbeats and everything else keep running (see _QUIET).
    - Dask's own objects are frozen out of the garbage collector's walks (``_freeze_runtime``)."""
    global _tuned
    if _tuned:
        return
    _tuned = True
    import contextlib
    import ctypes
    import sys

    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):  # not glibc (musl): nothing to tune
            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(M_MMAP_THRESHOLD, 32 * 2**20)
            libc.mallopt(M_TRIM_THRESHOLD, 64 * 2**20)
    with contextlib.suppress(Exception):  # not inside a Dask worker (a test calling the task directly)
        from distributed import get_worker

        worker = get_worker()
        _freeze_runtime()  # a worker that joined after the driver's check: its first task is its first contact
        worker.loop.add_callback(_quiet, worker, "worker")


_frozen = False


def _freeze_runtime() -> None:
    """Once per Dask worker process, at its first contact with a run (before it imports WeasyPrint and the
    renderer): move the objects alive then (Dask's own: distributed, tornado, the worker's state; about
    35,000 more than a local pool worker has) out of the garbage collector's reach (``gc.freeze``). A full
    collection walks every tracked object, WeasyPrint's layout triggers one every ten documents or so, and
    on a Dask worker those walks cost about 2-3 ms of CPU per document more than in a local pool process,
    only for Dask's heap (measured, docs/decisions.md "Scale"). What is frozen is never collected: objects
    of that moment that later become cyclic garbage stay (a one-off, bounded by the heap of that moment).
    Called only in a Dask worker (never in the driver, or in a test calling a task directly)."""
    global _frozen
    if _frozen:
        return
    _frozen = True
    import gc

    gc.collect()
    gc.freeze()


# A Dask server's periodic callbacks that only measure or display something (stopped), and the memory checks
# that may run less often (at least this many ms apart), per kind of server: see _tune_worker, _quiet_server.
_QUIET = {
    "worker": (("profile", "profile-cycle", "tick", "ticks"), {"monitor": 2000, "memory_monitor": 500}),
    "nanny": (("tick", "ticks", "monitor"), {"memory_monitor": 500}),
    "scheduler": (("tick", "ticks"), {}),
}


def _quiet(server, kind: str) -> None:
    """In ``server``'s event loop: stop and slow down its periodic callbacks as _QUIET says for ``kind`` (a
    callback set slower than that by the operator is left as it is)."""
    stop, slower = _QUIET[kind]
    for name in stop:
        pc = server.periodic_callbacks.get(name)
        if pc is not None:
            pc.stop()
    for name, ms in slower.items():
        pc = server.periodic_callbacks.get(name)
        if pc is not None:
            pc.callback_time = max(pc.callback_time, ms)


def _quiet_server(dask_worker=None, dask_scheduler=None) -> None:
    """Run once per executor on the scheduler and on each nanny (in their event loop; a nanny comes as
    ``dask_worker``): the scheduler's and nannies' share of what _tune_worker does on workers (the numbers
    are in docs/decisions.md "Scale"). Their event-loop health check (``tick``, every 20 ms, and ``ticks``,
    which averages it) only measures the loop's latency for a log line and a metric, and was half of the
    CPU an idle scheduler and its nannies spend; a nanny's system monitor (its own CPU, memory, disk and
    network counters, twice a second) is read by nothing. The scheduler keeps its system monitor (the
    dashboard's system page). A nanny checks its worker's memory against the limit every 500 ms instead of
    every 100 ms, so a worker past 95% of its limit is restarted up to 0.4 s later."""
    server = dask_scheduler if dask_scheduler is not None else dask_worker  # a server gets itself as both
    kind = type(server).__name__.lower()
    if kind not in ("scheduler", "nanny"):
        return
    # counted: the first run to quiet a server records how its callbacks were, the last to end puts them back
    # (_loud_server), so a shared cluster's monitoring is only changed while runs render on it (a driver that
    # is killed never ends: its quieting lasts until the server restarts)
    state = getattr(server, "_invoicer_quiet", None)
    if state is None:
        stop, slower = _QUIET[kind]
        saved = {}
        for name in (*stop, *slower):
            pc = server.periodic_callbacks.get(name)
            if pc is not None:
                saved[name] = (pc.is_running(), pc.callback_time)
        state = server._invoicer_quiet = [0, saved]
        _quiet(server, kind)
    state[0] += 1


def _loud_server(dask_worker=None, dask_scheduler=None) -> None:
    """At the end of a run that quieted this scheduler or nanny (_quiet_server): the last such run puts its
    callbacks back as they were (running or not, and how often)."""
    server = dask_scheduler if dask_scheduler is not None else dask_worker
    state = getattr(server, "_invoicer_quiet", None)
    if state is None:
        return
    state[0] -= 1
    if state[0] > 0:
        return
    del server._invoicer_quiet
    for name, (running, ms) in state[1].items():
        pc = server.periodic_callbacks.get(name)
        if pc is not None:
            pc.callback_time = ms
            if running and not pc.is_running():
                pc.start()


def _template_bundle(bundle: bytes) -> bytes:
    """The task whose result the render tasks take the templates from (recomputed if its worker dies)."""
    return bundle


def _fingerprint_task(bundle: bytes, probe: dict | None, dask_worker=None) -> dict[str, str]:
    """Run on every worker by the driver's check (``Client.run`` passes the worker as ``dask_worker``)."""
    if dask_worker is not None:  # the driver's check is a worker's first contact with a run
        _freeze_runtime()  # before WeasyPrint loads
    return _fingerprint_here(bundle, probe)  # kept: this worker's render tasks need not compute it again


class FingerprintMismatch(InputError):
    """A Dask worker would render different bytes than this machine: refuse to render there."""


class ClusterRenderFailed(InputError):
    """Rendering on the Dask cluster failed (a task that failed on every try, templates the workers cannot
    fetch): one line, exit 2, before anything is recorded."""


def compare_fingerprints(driver: dict[str, str], workers: dict[str, dict[str, str]]) -> None:
    """Raise FingerprintMismatch (one line) for the first worker whose fingerprint differs."""
    for addr, fp in sorted(workers.items()):
        diff = sorted(k for k in set(driver) | set(fp) if driver.get(k) != fp.get(k))
        if diff:
            k = diff[0]
            raise FingerprintMismatch(
                f"Dask worker {addr} would render different PDFs than this machine ({k}: {fp.get(k, 'missing')!r} "
                f"there, {driver.get(k, 'missing')!r} here{f'; {len(diff) - 1} more difference(s)' if len(diff) > 1 else ''}); "
                f"run the set-up script on every worker so WeasyPrint, Pango, HarfBuzz and the fonts match")


MAX_BATCH = 16  # documents per task at most (see batch_sizes)


def batch_sizes(n: int, threads: int, max_batch: int = MAX_BATCH) -> Iterator[int]:
    """How many consecutive documents each task renders: the remaining documents shared out over two
    tasks per worker thread, rounded up, at most ``max_batch`` ("guided" scheduling). Big batches while
    there is much left (a task costs the cluster about 6 ms of CPU, whatever its size: scheduler, client
    and worker event loop), smaller ones towards the end and single documents for the last two per worker
    thread, so no worker sits idle long while another finishes its last batch."""
    left = n
    while left > 0:
        size = min(max_batch, -(-left // (2 * max(1, threads))))
        yield size
        left -= size


class DaskExecutor:
    """Render on an existing Dask distributed cluster; the driver keeps numbering, the ledger and the files."""

    def __init__(self, address: str, templates_dir=None, client=None, window: int | None = None,
                 connect_timeout_s: float = 20.0, batch: int | None = None):
        from .pdf import DEFAULT_TEMPLATES

        self.bundle = pack_templates(Path(templates_dir or DEFAULT_TEMPLATES))
        self._own = client is None
        if client is None:
            from distributed import Client

            try:
                client = Client(address, timeout=connect_timeout_s, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise InputError(f"--executor dask:{address}: cannot reach the Dask scheduler ({exc})") from None
        self.client, self.address = client, address
        self.window, self.batch = window, batch
        self._checked = False
        self._expected: dict | None = None
        self._probe: dict | None = None
        self._bundle_future = None
        self._bundle_ref: BundleRef | None = None

    def check_workers(self, probe: dict | None = None) -> None:
        """Compare every worker's fingerprint with this machine's (once per executor); raises
        FingerprintMismatch (exit 2) naming the first worker that differs."""
        if self._checked:
            return
        driver = fingerprint(self.bundle, probe)
        workers = self.client.run(_fingerprint_task, self.bundle, probe)
        if not workers:
            raise InputError("the Dask cluster has no workers to render on")
        compare_fingerprints(driver, workers)
        self._checked = True
        import contextlib

        # speed only: a scheduler or nanny that refuses (or a worker without a nanny) renders the same bytes
        with contextlib.suppress(Exception):
            self.client.run_on_scheduler(_quiet_server)
        with contextlib.suppress(Exception):
            self.client.run(_quiet_server, nanny=True, on_error="ignore")
        self._expected, self._probe = driver, probe  # every task checks a worker that joined since

    def render_iter(self, docs: list[dict], progress: bool | None = None) -> Iterator[bytes]:
        """The documents' PDF bytes, in order. Documents go out in batches (``batch_sizes``) and at most
        ``window`` documents are in flight, so neither the cluster nor this process holds more than that
        many PDFs at once."""
        if not docs:
            return
        self.check_workers(docs[0])
        if self._bundle_future is None:
            # a task, not scattered data: Dask's memory manager keeps one copy of scattered data, and a
            # worker that dies with it loses it for good (every render task then fails as "forgotten");
            # a task's result is computed again from the task, which holds the bytes.
            # Published under its key rather than passed to the render tasks as a dependency: Dask places a
            # task on a worker that holds its dependencies, so every batch went to the one worker holding the
            # templates and the others only got what work stealing moved later (measured: one worker
            # rendered twice as many documents as the other, which sat idle). A worker fetches the bundle once
            # (_bundle_here) and keeps it; the tasks, without dependencies, go to whichever worker is free.
            name = f"invoicer-templates-{uuid.uuid4().hex}"
            self._bundle_future = self.client.submit(_template_bundle, self.bundle, key=name)
            self.client.publish_dataset(**{name: self._bundle_future})
            self._bundle_ref = BundleRef(hashlib.sha256(self.bundle).hexdigest(), name)
        threads = sum(self.client.nthreads().values()) or 1
        max_batch = self.batch or MAX_BATCH
        # two batches per worker thread: one rendering, the next already there when it ends
        window = self.window or 2 * max_batch * threads
        pending: deque = deque()
        sizes = batch_sizes(len(docs), threads, max_batch)
        start, in_flight = 0, 0
        batch = uuid.uuid4().hex

        def submit_next() -> bool:
            nonlocal start, in_flight
            size = next(sizes, 0)
            if not size:
                return False
            part = docs[start:start + size]
            # retries: a task whose worker died is run again elsewhere and gives the same bytes.
            # priority: in order of the documents. Dask's own order among tasks submitted one by one is not
            # theirs (measured: a worker ran the run's first, 12-document batch after every later one, and
            # the other worker sat idle meanwhile); in order, the guided sizes keep the workers even, and
            # the batch this loop waits for next is the one that ends first.
            pending.append(([doc_file_key(d) for d in part], self.client.submit(
                render_batch, part, self._bundle_ref, self._expected, self._probe,
                key=f"invoicer-render-{batch}-{start}", retries=2, priority=-start)))
            start, in_flight = start + size, in_flight + size
            return True

        try:
            while (not pending or in_flight + min(max_batch, len(docs) - start) <= window) and submit_next():
                pass
            while pending:
                keys, fut = pending.popleft()
                try:
                    results = fut.result()
                except InvoicerError:
                    raise  # a worker's refusal (FingerprintMismatch) or a template's error, as it was raised
                except Exception as exc:  # noqa: BLE001 - KilledWorker, a lost scheduler...: one line, no traceback
                    raise ClusterRenderFailed(
                        f"rendering on the Dask cluster {self.address} failed for {keys[0]}"
                        f"{'..' + keys[-1] if len(keys) > 1 else ''} ({type(exc).__name__}: "
                        f"{' '.join(str(exc).split())[:200]}); nothing was issued") from None
                fut.release()
                in_flight -= len(keys)
                if [r[0] for r in results] != keys or any(hashlib.sha256(data).hexdigest() != digest
                                                          for _, data, digest in results):
                    raise RuntimeError(f"a Dask worker returned the wrong documents for {keys[0]}..{keys[-1]}")
                while (not pending or in_flight + min(max_batch, len(docs) - start) <= window) and submit_next():
                    pass
                for _, data, _ in results:
                    yield data
                del results
        finally:  # a caller that stops early (an error, Ctrl-C) leaves no work queued on the cluster
            for _, fut in pending:
                fut.cancel()

    def close(self) -> None:
        import contextlib

        if self._bundle_future is not None:
            # a cluster already gone keeps nothing; and a client whose scheduler died would wait out its whole
            # connect timeout (20 s) before failing, delaying the run's one line
            if self.client.status == "running":
                with contextlib.suppress(Exception):
                    self.client.unpublish_dataset(self._bundle_ref.name)
        if self._checked and self.client.status == "running":  # the scheduler's and nannies' monitoring back
            with contextlib.suppress(Exception):
                self.client.run_on_scheduler(_loud_server)
            with contextlib.suppress(Exception):
                self.client.run(_loud_server, nanny=True, on_error="ignore")
            self._bundle_future = None
        if self._own:
            self.client.close()


def make_executor(spec: str | None, templates_dir=None, workers: int | None = None, pool=None):
    """The executor named by ``--executor`` (None or 'local': this machine's processes)."""
    address = parse_executor(spec)
    if address is None:
        return LocalExecutor(templates_dir, workers, pool)
    return DaskExecutor(address, templates_dir)
