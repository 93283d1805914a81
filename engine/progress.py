"""Progress of a long operator step, with a total and an ETA when the total is known.

On a terminal it is a tqdm bar on stderr; otherwise (a pipe, CI, a log file) one plain line
every few seconds, since carriage returns make a log unreadable. Output on stdout (a
summary, ``--json``) is never touched.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Never, TextIO

from tqdm import tqdm

#: Between two plain progress lines when stderr is not a terminal.
PLAIN_INTERVAL_S = 5.0


def eta_text(done: int, total: int, elapsed_s: float) -> str:
    """The estimated time left, from the rate so far ("?" before anything is done)."""
    if done <= 0 or elapsed_s <= 0:
        return "?"
    remaining_s = max(total - done, 0) * elapsed_s / done
    return f"{remaining_s:.0f} s"


def plain_line(what: str, done: int, total: int | None, unit: str, elapsed_s: float) -> str:
    """One progress line for a log: counts, percentage, elapsed time and ETA (counts and
    elapsed time only when the total is not known in advance)."""
    if total is None:
        return f"{what}: {done:,} {unit}, {elapsed_s:.0f} s elapsed"
    percent = 100.0 * done / total if total else 100.0
    return (
        f"{what}: {done:,}/{total:,} {unit} ({percent:.0f}%), {elapsed_s:.0f} s elapsed, "
        f"ETA {eta_text(done, total, elapsed_s)}"
    )


def _terminal_size(stream: TextIO) -> tuple[int, int]:
    """The terminal's columns and rows; a pseudo-terminal that reports 0 x 0 (script, some CI)
    gets 80 x 24: given a width of 0 tqdm draws an empty bar, given 0 rows no bar at all."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError):
        return 80, 24
    return size.columns or 80, size.lines or 24


class Progress:
    """Counts work done towards a known total; ``update`` is cheap, call it per chunk."""

    def __init__(
        self,
        what: str,
        total: int | None,
        unit: str,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        enabled: bool = True,
    ) -> None:
        self._what, self._total, self._unit = what, total, unit
        self._stream = sys.stderr if stream is None else stream
        self._clock = clock
        self._done = 0
        self._started = self._last_line = clock()
        self._enabled = enabled
        self._bar: tqdm[Never] | None = None
        if enabled and self._stream.isatty():
            columns, rows = _terminal_size(self._stream)
            self._bar = tqdm(
                total=total,
                desc=what,
                unit=f" {unit}",
                unit_scale=True,
                file=self._stream,
                ncols=columns,
                nrows=rows,
            )

    def update(self, count: int) -> None:
        self._done += count
        if self._bar is not None:
            self._bar.update(count)
            return
        now = self._clock()
        if self._enabled and now - self._last_line >= PLAIN_INTERVAL_S:
            self._last_line = now
            self._write(now)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._enabled and self._clock() - self._started >= PLAIN_INTERVAL_S:
            self._write(self._clock())  # a final line only when earlier lines were shown

    def _write(self, now: float) -> None:
        line = plain_line(self._what, self._done, self._total, self._unit, now - self._started)
        print(line, file=self._stream, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
