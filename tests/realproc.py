"""Real `invoicer` processes for the tests, without paying the imports in each one.

The tests that need a real process (a crash point, a kill, runs at once, the watcher's signals) would start
``python -m invoicer.cli``, and each such process spends most of its CPU importing pandas, WeasyPrint and
openpyxl before it does anything. Here one helper process per pytest process (the "zygote", started on first
use) imports them once and forks a child for each command. The child is a real, separate process: its own
pid, its own exit code, killed and signalled for real, its standard streams in files, in the working folder
and with the environment the test gives; it then runs the module exactly as ``python -m invoicer.cli ARGS``
would (``runpy`` as ``__main__``; ``sys.exit`` ends the interpreter normally: atexit handlers, flushed
streams). What differs from a fresh interpreter: the modules were imported before the fork (the same state
an import leaves), the process's parent is the zygote, and its hash seed is the zygote's.

What stays a plain ``subprocess`` (``conftest.INVOICER``): a test about the interpreter's start (which modules
a package imports), one about a killed run's PDF workers and resource tracker (test_template_trust), and the
corpus child, whose peak memory is also read from outside (``RUSAGE_CHILDREN``).

Under ``conftest.stubbed_render`` (``STUB_RENDER``) the child renders with tests/pdfstub.py, as the test's
own process does meanwhile, so a test never mixes stub and real PDFs.

``REALPROC_CPU_LOG=FILE``: the zygote appends each child's CPU seconds and the test that started it (to see
where the suite's time goes; the children are not the test process's, so its own accounting misses them).

``popen(args, ...)`` and ``run(args, ...)`` take the CLI arguments (without ``python -m invoicer.cli``) and
answer like ``subprocess.Popen`` and ``subprocess.run`` for what the tests use: ``pid``, ``poll``, ``wait``,
``send_signal``, ``kill``, ``returncode`` (negative: killed by that signal), ``stdout``/``stderr``.
"""
from __future__ import annotations

import atexit
import io
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# on (conftest.stubbed_render): the commands started meanwhile render with tests/pdfstub.py
STUB_RENDER = False
PIPE, DEVNULL = subprocess.PIPE, subprocess.DEVNULL
# what a command may import; importing them here is what the children no longer pay
# (not invoicer.cli itself: ``-m`` runs it as __main__, and it imports nothing heavy)
PRELOAD = ("invoicer.pipeline", "invoicer.render.pdf", "weasyprint", "invoicer.render.executor",
           "invoicer.render.summary", "invoicer.render.fapiao", "invoicer.publish", "invoicer.publish_fapiao",
           "invoicer.verify", "invoicer.watch.service", "watchdog.observers", "watchdog.observers.polling",
           "openpyxl", "tests.pdfstub")


# -- the test's side -----------------------------------------------------------------------------------------
class _Zygote:
    def __init__(self):
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None
        self.folder: Path | None = None
        self.count = 0

    def start(self, args: list[str], stdout, stderr, env: dict | None, cwd) -> "Process":
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                self.folder = Path(tempfile.mkdtemp(prefix="invoicer-realproc-"))
                self.proc = subprocess.Popen([sys.executable, "-m", "tests.realproc"], cwd=ROOT,
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                atexit.register(self.stop)
            self.count += 1
            stem = self.folder / str(self.count)
            out = _stream(stdout, stem.with_suffix(".out"))
            err = _stream(stderr, stem.with_suffix(".err"))
            request = {"module": "invoicer.cli", "test": os.environ.get("PYTEST_CURRENT_TEST", ""), "argv": [str(a) for a in args], "cwd": str(cwd or ROOT),
                       "env": dict(os.environ if env is None else env), "stdout": out, "stderr": err,
                       "status": str(stem.with_suffix(".status")), "stub_render": STUB_RENDER}
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
            reply = self.proc.stdout.readline()
            if not reply:
                raise RuntimeError("the zygote process (tests/realproc.py) died; see the test's stderr")
            return Process(["invoicer", *request["argv"]], int(reply), Path(request["status"]),
                           out if stdout is PIPE else None, err if stderr is PIPE else None)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()  # end of input: it kills what is left of its children and exits
            self.proc.wait(30)


def _stream(where, capture: Path) -> str:
    """A path for the child's stream: PIPE -> a file read back; DEVNULL; a path; an open file's name."""
    if where is PIPE:
        return str(capture)
    if where is None or where is DEVNULL:
        return os.devnull
    if isinstance(where, (str, Path)):
        return str(where)
    return where.name  # an open file: the child appends to the same file


_zygote = _Zygote()


class _Captured:
    """Stands in for Popen's ``stderr``/``stdout`` pipe: ``read()`` gives what the process wrote."""

    def __init__(self, path: Path):
        self.path = path

    def read(self) -> str:
        return self.path.read_text(errors="replace") if self.path.exists() else ""


class Process:
    """A started command, answering like ``subprocess.Popen``."""

    def __init__(self, args, pid: int, status: Path, out: str | None, err: str | None):
        self.args, self.pid, self._status, self.returncode = args, pid, status, None
        self.stdout = _Captured(Path(out)) if out else None
        self.stderr = _Captured(Path(err)) if err else None

    def poll(self) -> int | None:
        if self.returncode is None and self._status.exists():
            self.returncode = int(self._status.read_text())
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is not None and time.monotonic() > end:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(0.005)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:  # its exit status is written once it is reaped: until then the pid is its own
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def popen(args, stdout=None, stderr=None, env: dict | None = None, cwd=None) -> Process:
    """``invoicer ARGS`` as a real process (see the module's docstring). stdout/stderr: None or DEVNULL
    (discarded), PIPE (read with ``.stdout.read()``), a path or an open file (appended to)."""
    return _zygote.start(list(args), stdout, stderr, env, cwd)


def run(args, env: dict | None = None, cwd=None, timeout: float = 300, stdout=PIPE,
        stderr=PIPE) -> subprocess.CompletedProcess:
    """``invoicer ARGS`` as a real process, waited for: like ``subprocess.run(..., text=True)``."""
    p = popen(args, stdout=stdout, stderr=stderr, env=env, cwd=cwd)
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise
    return subprocess.CompletedProcess(p.args, p.returncode, p.stdout.read() if p.stdout else None,
                                       p.stderr.read() if p.stderr else None)


# -- the zygote's side -----------------------------------------------------------------------------------------
def _serve() -> None:
    """Read one request per line from stdin, fork a child for it, answer its pid; reap children and write each
    one's exit status (as Popen.returncode has it) to its status file. No try/finally here: the child leaves
    this function by its SystemExit, and nothing of the zygote's may run in it on the way out."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    requests = sys.stdin.buffer
    children: dict[int, tuple[str, str]] = {}
    while True:
        readable, _, _ = select.select([requests], [], [], 0.005)
        _reap(children)
        if not readable:
            continue
        line = requests.readline()
        if not line:
            break
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)  # never returns: it raises SystemExit (or the command's exception) to the top
        children[pid] = request["status"], request.get("test", "")
        sys.stdout.buffer.write(f"{pid}\n".encode())
        sys.stdout.buffer.flush()
    for pid in children:  # the tests are over: nothing they started outlives them
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    while children:
        _reap(children)
        time.sleep(0.01)


def _reap(children: dict[int, tuple[str, str]]) -> None:
    while children:
        try:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        path, test = children.pop(pid, (None, ""))
        if path is not None and os.environ.get("REALPROC_CPU_LOG"):  # measuring the tests: CPU per child
            with open(os.environ["REALPROC_CPU_LOG"], "a") as f:
                f.write(f"{usage.ru_utime + usage.ru_stime:.2f} {test}\n")
        if path is not None:
            tmp = f"{path}.tmp"
            with open(tmp, "w") as f:
                f.write(str(os.waitstatus_to_exitcode(status)))
            os.rename(tmp, path)


def _child(request: dict) -> None:
    import runpy

    try:
        null = os.open(os.devnull, os.O_RDONLY)
        out = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        err = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        for fd, target in ((null, 0), (out, 1), (err, 2)):
            os.dup2(fd, target)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # as Popen's close_fds
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        # the streams a fresh interpreter would make on these file descriptors, with the same settings
        # (encoding, errors, buffering) as this interpreter's own
        streams = []
        for fd, old, mode in ((0, sys.__stdin__, "r"), (1, sys.__stdout__, "w"), (2, sys.__stderr__, "w")):
            raw = io.FileIO(fd, mode, closefd=False)
            buffered = raw if isinstance(old.buffer, io.FileIO) else (  # -u or PYTHONUNBUFFERED
                io.BufferedReader(raw) if mode == "r" else io.BufferedWriter(raw))
            streams.append(io.TextIOWrapper(buffered, encoding=old.encoding, errors=old.errors,
                                            line_buffering=old.line_buffering, write_through=old.write_through))
        sys.stdin, sys.stdout, sys.stderr = streams
        sys.__stdin__, sys.__stdout__, sys.__stderr__ = streams
        sys.argv = ["-m", *request["argv"]]
        if request.get("stub_render"):  # the test runs under conftest.stubbed_render: so does the command
            sys.modules["tests.pdfstub"].install()
    except BaseException:  # noqa: BLE001 - the child could not be set up: say so and end it
        import traceback

        traceback.print_exc()
        os._exit(127)
    if request["module"] in sys.modules:  # as under ``-m``, the module runs once, as __main__ only
        del sys.modules[request["module"]]
    runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    sys.exit(0)  # a module that ends without sys.exit: as the interpreter would


if __name__ == "__main__":
    _serve()
