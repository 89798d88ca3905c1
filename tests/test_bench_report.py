"""The benchmark's arithmetic (bench/report.py); the benchmark itself is not run here."""

import pytest

from bench.report import percentile, summarise


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
