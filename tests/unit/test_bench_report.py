"""The pure parts of ``make bench``'s report: history parsing, the previous commit, the table."""

from __future__ import annotations

import inspect
import json
import re

from bench import end_to_end, matching
from bench.report import previous_run, read_history, table
from bench.targets import METRICS, against


def test_history_skips_blank_and_broken_lines() -> None:
    """A line cut short by a killed run is skipped, not fatal; order is kept."""
    lines = [
        json.dumps({"commit": "a1", "metrics": {"pipeline": 1.0}}),
        "",
        '{"commit": "b2", "metr',
        json.dumps({"commit": "c3", "metrics": {"pipeline": 2.0}}),
        json.dumps(["not", "a", "run"]),
    ]
    assert [run["commit"] for run in read_history(lines)] == ["a1", "c3"]


def test_previous_run_is_the_latest_of_another_commit() -> None:
    """Reruns of the same commit (dirty or not) are not what a change is compared with."""
    history = read_history(
        json.dumps({"commit": c, "metrics": {}}) for c in ["a1", "b2", "c3", "c3+dirty"]
    )
    previous = previous_run(history, "c3")
    assert previous is not None
    assert previous["commit"] == "b2"
    assert previous_run(history[:1], "a1") is None


def test_table_shows_value_target_ratio_and_previous() -> None:
    """Rates are higher-better, memory lower-better: both give ratio ≥ 1 when met."""
    previous = {"commit": "b2", "metrics": {"pipeline": 70_000.0}}
    text = table({"pipeline": 78_000.0, "book_bytes_per_order": 500.0}, previous)
    header, rule, pipeline, memory = text.splitlines()
    assert header.split()[:4] == ["metric", "value", "target", "ratio"]
    assert "previous (b2)" in header
    assert set(rule.replace(" ", "")) == {"-"}
    assert pipeline.split()[-4:] == ["78k/s", "250k/s", "0.31", "70k/s"]
    assert memory.split()[-5:] == ["500", "B/order", "250", "B/order", "0.50"]


def test_against_prints_the_target_and_ratio() -> None:
    """What the benchmarks print beside each number."""
    assert against("pipeline", 78_000) == "78k/s (target 250k/s: 0.31x)"
    assert against("mix_pipeline", 50_000) == "50k/s"
    assert METRICS["latency_p99_ms"].ratio(50) == 0.5


def test_every_metric_the_benchmarks_record_has_a_row() -> None:
    """The report looks each recorded metric up in METRICS: one the benchmarks record but the
    table does not know would stop `make bench` after minutes of measuring."""
    source = inspect.getsource(end_to_end) + inspect.getsource(matching)
    recorded = set(re.findall(r'results\["(\w+)"\]', source))
    recorded |= {f"{key}_p50_ms" for key in re.findall(r'results,\s*"(\w+)",', source)}
    recorded |= {f"{key}_p99_ms" for key in re.findall(r'results,\s*"(\w+)",', source)}
    assert {"latency_p99_ms", "io_only_latency_p99_ms", "e2e_io_only"} <= recorded
    assert recorded - set(METRICS) == set()
