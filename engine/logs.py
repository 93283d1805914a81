"""Structured logging: JSON lines in production, a readable console on a terminal.

Library logs (aiokafka, asyncpg) go through the same renderer, so an operator's log
pipeline sees one format.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class RepeatFilter(logging.Filter):
    """Lets the first of a library's repeated log lines through and holds back the same line
    (same logger, level and message template) for ``window_s``; the next one after the window
    says how many were held back. During a broker outage aiokafka repeats itself thousands of
    times: an operator needs the first line and a count, not the flood."""

    def __init__(self, window_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self._window_s = window_s
        self._clock = clock
        #: (logger, level, template) -> (when it last passed, how many held back since)
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        passed_at, held = self._seen.get(key, (float("-inf"), 0))
        if now - passed_at < self._window_s:
            self._seen[key] = (passed_at, held + 1)
            return False
        if held:
            record.msg = f"{record.msg} ({held} more like it since the last one shown)"
        self._seen[key] = (now, 0)
        if len(self._seen) > 10_000:  # templates are few; bound it against odd libraries
            self._seen.clear()
        return True


def configure_logging(log_format: str = "auto", level: str = "info") -> None:
    """Set up structlog once per process; ``auto`` picks JSON unless stderr is a terminal."""
    use_console = log_format == "console" or (log_format == "auto" and sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if not use_console:
        shared.append(structlog.processors.dict_tracebacks)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers = [handler]
    # Libraries speak at WARNING and above: their INFO lines are per-connection chatter.
    root.setLevel(max(logging.WARNING, _LEVELS.get(level, logging.INFO)))
