"""The benchmarks' scenarios play to the end on a fake clock: every emergency measured, each
step posted exactly once and by whom it should be. Their timings are the scripts' business."""

from __future__ import annotations

from dataclasses import fields

import pytest

from automation import service
from automation.clock import FakeClock
from benchmarks import serve_latency


def test_serve_latency_measures_every_emergency_and_posts_each_step_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A fake clock moves only when the scenario or the worker moves it, which serve's loop
    # cannot hear: it looks again every 10 ms instead of after up to 30 s.
    monkeypatch.setattr(service, "MAX_WAIT_SECONDS", 0.01)

    report = serve_latency.measure(3, FakeClock, FakeClock, run_wait_seconds=0.01)

    trials = {f.name: getattr(report, f.name) for f in fields(report)}
    assert {name: len(t.samples) for name, t in trials.items()} == dict.fromkeys(trials, 3)
    assert {name: len(t.comments) for name, t in trials.items()} == dict.fromkeys(trials, 3)
    assert serve_latency.check(report) == []
    for name in ("serve_page_ack", "run_page_ack"):
        authors = [c[0]["author_id"] for c in trials[name].comments.values()]
        assert authors == [trials[name].engineer_id] * 3
    assert len(serve_latency.table(report)) == 6  # a heading and five rows


def test_serve_latency_percentiles_interpolate_between_ranks() -> None:
    values = [float(v) for v in range(1, 101)]

    assert serve_latency.p50_p95(values) == (50.5, pytest.approx(95.05))
    assert serve_latency.percentile([3.0], 95) == 3.0
    assert serve_latency.percentile([2.0, 1.0], 50) == 1.5
