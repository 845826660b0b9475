"""BENCHMARKS.md's summary: the chart is what bench/summary.py draws from its figures, and
the table in BENCHMARKS.md is the one it prints."""

from __future__ import annotations

from bench import summary


def test_the_chart_and_the_table_are_current() -> None:
    assert summary.SVG.read_text() == summary.svg(), (
        "run `python -m bench.summary` and commit docs/benchmarks-summary.svg"
    )
    benchmarks = (summary.ROOT / "BENCHMARKS.md").read_text()
    assert summary.table() in benchmarks.split("## Every run", 1)[0]
    assert "](docs/benchmarks-summary.svg)" in benchmarks


def test_ratios_read_as_speed() -> None:
    faster = summary.Figure("x", 2, 1, "s", False, "b", "s")  # twice the time: half the speed
    assert faster.ratio == 0.5
    assert summary.Figure("x", 300, 100, "rows/s", True, "b", "s").ratio == 3
