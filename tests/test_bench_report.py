"""The benchmark's arithmetic (bench/report.py); the benchmark itself is not run here."""

import pytest

from bench.report import TARGET_RATIOS, percentile, ratios, summarise, targets


def test_percentile_interpolates_between_ranks():
    values = [4.0, 1.0, 3.0, 2.0]  # any order
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 2.5
    assert percentile(values, 100) == 4.0
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)


def test_percentile_of_nothing_is_an_error():
    with pytest.raises(ValueError):
        percentile([], 50)


def test_summarise_makes_rates_percentiles_and_the_backlog_ratio():
    row = summarise(
        {
            "drain": {"rate": 1000.0},
            "backlog": {"rate": 900.0},
            "latency": {"latencies_ms": [1.0, 2.0, 3.0]},
            "enqueue_bulk": "error",
        }
    )
    assert row["drain"] == 1000.0
    assert row["backlog_ratio"] == pytest.approx(0.9)
    assert row["p50"] == 2.0
    assert row["enqueue_bulk"] == "error"


def test_ratios_judge_only_the_targets_given_for_that_peer():
    ours = {"enqueue_single": 2000.0, "enqueue_bulk": 30000.0, "drain": 5000.0}
    huey = {"enqueue_single": 1000.0, "drain": 3000.0}
    line = ratios(ours, huey, "huey", TARGET_RATIOS["Redis"]["huey"])
    assert line == (
        "vs huey: enqueue_single 2.00x (target >= 1.0x: met); drain 1.67x (target >= 2.0x: NOT met)"
    )
    pgqueuer = {"enqueue_single": 4000.0, "enqueue_bulk": 20000.0}
    line = ratios(ours, pgqueuer, "pgqueuer", TARGET_RATIOS["Redis"]["pgqueuer"])
    assert line == ("vs pgqueuer: enqueue_single 0.50x; enqueue_bulk 1.50x (target >= 1.5x: met)")
    assert ratios(ours, {}, "x", {}) == "vs x: nothing to compare"


def test_latency_targets_depend_on_the_backend():
    row = {"p50": 1.5, "p99": 4.0}
    assert targets(row, "PostgreSQL") == (
        "p50 1.50 ms (target <= 2.0 ms: met); p99 4.00 ms (target <= 10.0 ms: met)"
    )
    assert targets(row, "Redis") == (
        "p50 1.50 ms (target <= 1.0 ms: NOT met); p99 4.00 ms (target <= 5.0 ms: met)"
    )
    assert targets(row, "SQLite") == ""
