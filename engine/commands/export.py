"""``techx export deals``: settled deals of a date range as CSV or Parquet, for statisticians.

Dates and times are UTC; the range is [--from, --to): the end is exclusive, so November is
``--from 2026-11-01 --to 2026-12-01``. A deal's time is ``traded_at_ms``, the broker's time
of the command that made it. Prices and quantities stay integers (đồng, units) in both
formats: CSV writes their digits, Parquet stores int64 columns.

The file is written under a temporary name and renamed at the end, so a reader never sees a
half export. Parquet needs pyarrow (``pip install 'techx-engine[export]'``).
"""

from __future__ import annotations

import csv
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TextIO

import msgspec
import structlog

from engine.errors import CommandLineError, OperatorCommandError
from engine.settings import Settings
from engine.store.deal_export import DEAL_COLUMNS, INTEGER_COLUMNS, DealRow, stream_deals

log = structlog.get_logger()

FORMATS = ("csv", "parquet")
_PROGRESS_INTERVAL_S = 2.0
#: Rows per Parquet row group: readers skip and parallelise by row group, and tiny ones
#: (one per fetched chunk) cost them; ~128k rows of a deal are a few MB in Arrow.
_ROW_GROUP_ROWS = 131_072


def parse_utc(text: str, option: str) -> int:
    """``2026-11-01`` (midnight UTC) or ``2026-11-01T08:30`` (UTC unless an offset is given),
    as milliseconds."""
    try:
        if len(text) == 10:
            moment = datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        else:
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
    except ValueError as e:
        raise CommandLineError(
            f'{option} takes a UTC date or time (2026-11-01, 2026-11-01T08:30), not "{text[:40]}"'
        ) from e
    return int(moment.timestamp() * 1000)


class _CsvWriter:
    def __init__(self, path: Path) -> None:
        self._file = path.open("w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        self._writer.writerow(DEAL_COLUMNS)

    def write(self, rows: list[DealRow]) -> None:
        self._writer.writerows(rows)

    def close(self) -> None:
        self._file.close()


class _ParquetWriter:
    def __init__(self, path: Path) -> None:
        try:
            import pyarrow as pa  # type: ignore[import-untyped]  # noqa: PLC0415 - optional
            import pyarrow.parquet as pq  # type: ignore[import-untyped]  # noqa: PLC0415
        except ModuleNotFoundError as e:
            raise OperatorCommandError(
                "Parquet export needs pyarrow: pip install 'techx-engine[export]' "
                "(or use --format csv)"
            ) from e
        self._pa = pa
        self._schema = pa.schema(
            [
                (name, pa.int64() if name in INTEGER_COLUMNS else pa.string())
                for name in DEAL_COLUMNS
            ]
        )
        self._writer = pq.ParquetWriter(str(path), self._schema, compression="zstd")
        self._pending: list[Any] = []
        self._pending_rows = 0

    def write(self, rows: list[DealRow]) -> None:
        columns = list(zip(*rows, strict=True))
        self._pending.append(
            self._pa.RecordBatch.from_arrays(
                [
                    self._pa.array(values, type=field.type)
                    for values, field in zip(columns, self._schema, strict=True)
                ],
                schema=self._schema,
            )
        )
        self._pending_rows += len(rows)
        if self._pending_rows >= _ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        """One row group from the chunks held (as Arrow arrays: a tenth of Python rows)."""
        if self._pending:
            self._writer.write_table(
                self._pa.Table.from_batches(self._pending), row_group_size=_ROW_GROUP_ROWS * 2
            )
        self._pending, self._pending_rows = [], 0

    def close(self) -> None:
        self._flush()
        self._writer.close()


_WRITERS: dict[str, Callable[[Path], _CsvWriter | _ParquetWriter]] = {
    "csv": _CsvWriter,
    "parquet": _ParquetWriter,
}


async def export_deals(
    settings: Settings,
    *,
    from_ms: int,
    to_ms: int,
    out: Path,
    file_format: str = "csv",
    as_json: bool = False,
    chunk: int = 10_000,
    stdout: TextIO = sys.stdout,
) -> int:
    """Write the deals traded in [from_ms, to_ms) to ``out``; prints how many."""
    if to_ms <= from_ms:
        raise CommandLineError("--to must be after --from (the end is exclusive)")
    if file_format not in _WRITERS:
        raise CommandLineError(f"--format is one of {', '.join(FORMATS)}")
    partial = out.with_name(out.name + ".partial")
    try:
        writer = _WRITERS[file_format](partial)
    except OSError as e:
        raise OperatorCommandError(f"cannot write {out}: {e.strerror}") from e
    rows_written = 0
    started = last_report = time.monotonic()
    try:
        async for rows in stream_deals(
            settings.database_url, settings.topics.commands, from_ms, to_ms, chunk
        ):
            writer.write(rows)
            rows_written += len(rows)
            now = time.monotonic()
            if now - last_report >= _PROGRESS_INTERVAL_S:
                last_report = now
                log.info("deals_exporting", rows=rows_written, seconds=round(now - started, 1))
        writer.close()
        os.replace(partial, out)
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    seconds = time.monotonic() - started
    log.info("deals_exported", rows=rows_written, path=str(out), seconds=round(seconds, 2))
    summary: dict[str, Any] = {
        "rows": rows_written,
        "path": str(out),
        "format": file_format,
        "from_ms": from_ms,
        "to_ms": to_ms,
        "seconds": round(seconds, 3),
    }
    if as_json:
        stdout.write(msgspec.json.encode(summary).decode() + "\n")
    else:
        stdout.write(
            f"exported {rows_written} deal(s) traded in [{_iso(from_ms)}, {_iso(to_ms)}) "
            f"to {out} ({file_format}, {seconds:.1f} s)\n"
        )
    return 0


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")
