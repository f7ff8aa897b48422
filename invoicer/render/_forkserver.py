"""Imported once by the PDF pool's forkserver (RenderPool._start) before it forks any worker: WeasyPrint and
the renderer are loaded there once, so every worker is a fork that starts in milliseconds.

The server also ignores SIGTERM, as the workers do: a SIGTERM sent to the owner's whole process group (a
shell's ``kill %1``, ``timeout``, supervisord's stopasgroup) is for the owner, which finishes its current
work (the watcher: the file in hand) and then closes the pool; a server killed by it would take every worker
with it. The server still ends with its owner (multiprocessing closes it when the owner's end of its pipe
closes, whatever way the owner ends)."""
import signal

signal.signal(signal.SIGTERM, signal.SIG_IGN)

import weasyprint  # noqa: E402,F401  (preloaded for the workers)

from invoicer.render import pdf  # noqa: E402,F401
