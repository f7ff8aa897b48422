"""The drop folder's month from a file name: a month more than one ahead of today is refused (a typo such as
2099-12 would number a bill dated years ahead, in a series of its own); the current and next month are not."""
from __future__ import annotations

import datetime as dt

import pytest

from invoicer.watch.names import too_far_ahead

TODAY = dt.date(2026, 11, 28)


@pytest.mark.parametrize("period", ["2020-01", "2026-10", "2026-11", "2026-12"])
def test_past_current_and_next_month_may_be_billed(period):
    assert too_far_ahead(period, TODAY) is None


@pytest.mark.parametrize("period, months", [("2027-01", 2), ("2099-12", 877)])
def test_months_further_ahead_are_refused_with_a_reason(period, months):
    why = too_far_ahead(period, TODAY)
    assert why is not None and period in why and f"{months} months" in why and "rename" in why


def test_the_watcher_sets_such_a_file_aside_and_bills_the_others(tmp_path):
    """In-process watcher, one pass: the far-ahead file goes to failed/ with the reason, nothing numbered for
    it; the good file beside it is billed."""
    import io
    import json
    from datetime import date as D

    from invoicer.watch.service import Watcher, WatchOptions

    from .conftest import cust, write_roster

    folder = tmp_path / "inbox" / "sz-ty"
    folder.mkdir(parents=True)
    write_roster(folder / "roster-2099-12.xlsx", [cust("A", D(2026, 10, 3), 5)])
    write_roster(folder / "roster-2026-10.xlsx", [cust("A", D(2026, 10, 3), 5)])
    log = io.StringIO()
    Watcher(WatchOptions(inbox=tmp_path / "inbox", out=tmp_path / "out", once=True, settle_s=0.05, workers=1),
            log_to=log).serve()
    events = [e for e in map(json.loads, log.getvalue().splitlines()) if e.get("event") == "file"]
    by_name = {e.get("file") or e.get("name"): e for e in events}
    assert (tmp_path / "failed" / "sz-ty" / "roster-2099-12.xlsx").exists(), events
    reason = (tmp_path / "failed" / "sz-ty" / "roster-2099-12.xlsx.error.txt").read_text(encoding="utf-8")
    assert "2099-12" in reason and "rename" in reason
    assert not (tmp_path / "out" / "sz-ty" / "2099-12").exists()
    assert (tmp_path / "out" / "sz-ty" / "2026-10" / "summary.xlsx").exists(), by_name
