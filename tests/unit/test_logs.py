"""Library log floods are cut to their first line and a count."""

from __future__ import annotations

import logging

from engine.logs import RepeatFilter


def _record(message: str, *args: object, name: str = "aiokafka") -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, message, args, None)


def test_a_repeated_library_line_passes_once_per_window_with_a_count() -> None:
    """A thousand identical-template errors in a window make one line; the next says how many."""
    now = [0.0]
    repeats = RepeatFilter(window_s=30, clock=lambda: now[0])
    passed = [repeats.filter(_record("Unable connect to node %s: %s", 1, "refused"))]
    for i in range(1_000):
        now[0] = i * 0.02
        passed.append(repeats.filter(_record("Unable connect to node %s: %s", 1, "refused")))
    assert passed.count(True) == 1
    now[0] = 31.0
    later = _record("Unable connect to node %s: %s", 1, "refused")
    assert repeats.filter(later)
    assert "1000 more like it since the last one shown" in str(later.msg)


def test_different_lines_are_not_held_back() -> None:
    """Other templates, levels or loggers pass on their own."""
    repeats = RepeatFilter(window_s=30, clock=lambda: 0.0)
    assert repeats.filter(_record("one %s", 1))
    assert repeats.filter(_record("two %s", 1))
    assert repeats.filter(_record("one %s", 1, name="asyncpg"))
    assert not repeats.filter(_record("one %s", 2))
