"""The Dask executor's pieces that need no cluster: how documents are shared out into tasks, and the check
a render task makes on its own worker (a worker that joined after the run's start was never fingerprinted
by the driver, so the task itself refuses to render with other fonts or libraries)."""
from __future__ import annotations

import hashlib

import pytest

from invoicer import pipeline
from invoicer.render import executor as ex

from .conftest import SAMPLE


@pytest.mark.parametrize("n, threads", [(1, 1), (9, 2), (60, 2), (10_000, 2), (10_000, 64), (37, 8)])
def test_batch_sizes_cover_every_document_once_big_first_single_at_the_end(n, threads):
    sizes = list(ex.batch_sizes(n, threads))
    assert sum(sizes) == n and all(1 <= s <= ex.MAX_BATCH for s in sizes)
    assert sizes == sorted(sizes, reverse=True)  # guided: never a bigger batch after a smaller one
    assert sizes[-1] == 1
    if n >= 4 * threads * ex.MAX_BATCH * 2:
        assert sizes[0] == ex.MAX_BATCH  # a long run is mostly full batches


def test_batch_sizes_for_a_60_document_sample_on_two_threads():
    assert list(ex.batch_sizes(60, 2)) == [15, 12, 9, 6, 5, 4, 3, 2, 1, 1, 1, 1]


@pytest.fixture(scope="module")
def probe_and_bundle(book):
    p = pipeline.price_roster(SAMPLE, book, "2026-10")
    docs = [{**d, "number": f"QQ-2026-{i:06d}"} for i, d in enumerate(p.invoices[:2], 1)]
    from invoicer.render.pdf import DEFAULT_TEMPLATES

    return docs, ex.pack_templates(DEFAULT_TEMPLATES)


def test_a_task_on_a_worker_that_would_render_differently_refuses(probe_and_bundle):
    docs, bundle = probe_and_bundle
    driver = ex.fingerprint(bundle, docs[0])
    other = {**driver, "font sans-serif": "0" * 64 + " Other.ttf"}  # the driver's fonts differ from this one's
    with pytest.raises(ex.FingerprintMismatch, match=r"would render different PDFs .*font sans-serif"):
        ex.render_batch(docs, bundle, other, docs[0])


def test_a_task_on_a_matching_worker_renders_the_drivers_bytes(probe_and_bundle):
    from invoicer.render.pdf import Renderer

    docs, bundle = probe_and_bundle
    driver = ex.fingerprint(bundle, docs[0])
    got = ex.render_batch(docs, bundle, driver, docs[0])
    local = [Renderer().render(d) for d in docs]
    assert [(k, hashlib.sha256(b).hexdigest(), h) for k, b, h in got] == \
        [(d["number"], hashlib.sha256(x).hexdigest(), hashlib.sha256(x).hexdigest()) for d, x in zip(docs, local)]


class _PC:  # a tornado PeriodicCallback's part the tuning uses
    def __init__(self, ms):
        self.callback_time, self.running = ms, True

    def stop(self):
        self.running = False

    def start(self):
        self.running = True

    def is_running(self):
        return self.running


class _Server:
    def __init__(self, **pcs):
        self.periodic_callbacks = {name: _PC(ms) for name, ms in pcs.items()}


def test_quieting_a_server_stops_its_clock_watchers_and_slows_its_monitors_never_speeds_them_up():
    worker = _Server(tick=20, ticks=1000, profile=10, **{"profile-cycle": 1000}, monitor=500, memory_monitor=100,
                     heartbeat=500)
    ex._quiet(worker, "worker")
    pcs = worker.periodic_callbacks
    assert [n for n, pc in pcs.items() if not pc.running] == ["tick", "ticks", "profile", "profile-cycle"]
    assert (pcs["monitor"].callback_time, pcs["memory_monitor"].callback_time) == (2000, 500)
    assert pcs["heartbeat"].running and pcs["heartbeat"].callback_time == 500  # liveness: untouched
    slow = _Server(memory_monitor=3000, tick=20, monitor=500)  # an operator's slower memory check is kept
    ex._quiet(slow, "nanny")
    assert slow.periodic_callbacks["memory_monitor"].callback_time == 3000
    assert not slow.periodic_callbacks["tick"].running and not slow.periodic_callbacks["monitor"].running


def test_the_scheduler_keeps_its_system_monitor_and_a_server_is_told_apart_by_its_type():
    class Scheduler(_Server):
        pass

    class Nanny(_Server):
        pass

    sched, nanny = Scheduler(tick=20, ticks=1000, monitor=500), Nanny(tick=20, monitor=500, memory_monitor=100)
    ex._quiet_server(dask_worker=sched, dask_scheduler=sched)  # Dask passes a server as both
    ex._quiet_server(dask_worker=nanny, dask_scheduler=nanny)
    assert sched.periodic_callbacks["monitor"].running and not sched.periodic_callbacks["tick"].running
    assert not nanny.periodic_callbacks["monitor"].running
    assert nanny.periodic_callbacks["memory_monitor"].callback_time == 500
    other = _Server(tick=20)  # a worker reached by mistake is left to _tune_worker
    ex._quiet_server(dask_worker=other)
    assert other.periodic_callbacks["tick"].running


def test_the_last_run_to_end_puts_a_servers_monitoring_back_as_it_was():
    class Scheduler(_Server):
        pass

    sched = Scheduler(tick=20, ticks=1000, monitor=500)
    sched.periodic_callbacks["ticks"].stop()  # an operator had stopped this one
    ex._quiet_server(dask_scheduler=sched)
    ex._quiet_server(dask_scheduler=sched)  # a second run on the same cluster
    ex._loud_server(dask_scheduler=sched)  # the first run ends: the second still renders
    assert not sched.periodic_callbacks["tick"].running
    ex._loud_server(dask_scheduler=sched)  # the last one ends
    pcs = sched.periodic_callbacks
    assert (pcs["tick"].running, pcs["ticks"].running, pcs["monitor"].running) == (True, False, True)
    assert [pc.callback_time for pc in pcs.values()] == [20, 1000, 500]
    ex._loud_server(dask_scheduler=sched)  # a run that never quieted it (or a killed driver's leftover): no-op
    assert pcs["tick"].running


def test_a_render_task_takes_the_templates_as_bytes_or_by_reference_to_a_worker_copy(probe_and_bundle, monkeypatch):
    docs, bundle = probe_and_bundle
    digest = hashlib.sha256(bundle).hexdigest()
    assert ex._bundle_here(bundle) == bundle
    monkeypatch.setitem(ex._bundles, digest, bundle)  # this worker fetched it for an earlier batch
    ref = ex.BundleRef(digest, "invoicer-templates-x")
    assert ex._bundle_here(ref) is bundle
    assert [k for k, _, _ in ex.render_batch(docs[:1], ref)] == [docs[0]["number"]]
