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
inside it, as the URL fetcher would serve them), the bundle is sent once per run, and each worker unpacks it
into a private temporary folder after checking every name (no absolute path, no "..", no link), so a
reseller's template folder cannot name a file on a worker, and a worker needs no shared disk.
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
from typing import Iterator

from ..errors import InputError

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
    """One Dask task: a numbered document -> (key, PDF bytes, their SHA-256)."""
    data = _renderer(bundle).render(doc)
    return doc_file_key(doc), data, hashlib.sha256(data).hexdigest()


def _fingerprint_task(bundle: bytes, probe: dict | None) -> dict[str, str]:
    return fingerprint(bundle, probe)


class FingerprintMismatch(InputError):
    """A Dask worker would render different bytes than this machine: refuse to render there."""


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


class DaskExecutor:
    """Render on an existing Dask distributed cluster; the driver keeps numbering, the ledger and the files."""

    def __init__(self, address: str, templates_dir=None, client=None, window: int | None = None,
                 connect_timeout_s: float = 20.0):
        from .pdf import DEFAULT_TEMPLATES

        self.bundle = pack_templates(Path(templates_dir or DEFAULT_TEMPLATES))
        self._own = client is None
        if client is None:
            from distributed import Client

            try:
                client = Client(address, timeout=connect_timeout_s, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise InputError(f"--executor dask:{address}: cannot reach the Dask scheduler ({exc})") from None
        self.client = client
        self.window = window
        self._checked = False
        self._bundle_future = None

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

    def render_iter(self, docs: list[dict], progress: bool | None = None) -> Iterator[bytes]:
        """The documents' PDF bytes, in order. At most ``window`` tasks are in flight, so neither the cluster
        nor this process holds more than that many PDFs at once."""
        if not docs:
            return
        self.check_workers(docs[0])
        if self._bundle_future is None:
            self._bundle_future = self.client.scatter(self.bundle, broadcast=True, hash=True)
        threads = sum(self.client.nthreads().values()) or 1
        window = self.window or max(16, 4 * threads)
        pending: deque = deque()
        todo = iter(enumerate(docs))
        batch = uuid.uuid4().hex

        def submit_next() -> bool:
            for i, doc in todo:
                # retries: a task whose worker died is run again elsewhere and gives the same bytes
                pending.append((doc_file_key(doc), self.client.submit(
                    render_task, doc, self._bundle_future, key=f"invoicer-render-{batch}-{i}",
                    retries=2)))
                return True
            return False

        while len(pending) < window and submit_next():
            pass
        while pending:
            key, fut = pending.popleft()
            got_key, data, digest = fut.result()
            fut.release()
            if got_key != key or hashlib.sha256(data).hexdigest() != digest:
                raise RuntimeError(f"a Dask worker returned the wrong document for {key}")
            submit_next()
            yield data

    def close(self) -> None:
        if self._own:
            self.client.close()


def make_executor(spec: str | None, templates_dir=None, workers: int | None = None, pool=None):
    """The executor named by ``--executor`` (None or 'local': this machine's processes)."""
    address = parse_executor(spec)
    if address is None:
        return LocalExecutor(templates_dir, workers, pool)
    return DaskExecutor(address, templates_dir)
