"""The long form: ``python -m tests.fuzz --records 1000000 --seed 1``.

Prints progress every 5%, then a table of what the engine answered; exits 1 if any record
escaped, went unanswered, broke an invariant, was answered differently twice or stalled the
decoder. ``--show PARTITION:OFFSET`` prints one record of a run whole, and what the engine
does with it.
"""

from __future__ import annotations

import argparse
import sys

from engine.core.batch import PartitionProcessor
from engine.core.codec import decode_command
from tests.fuzz.harness import regenerate, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fuzz",
        description="Feed seeded hostile command records to the engine; every one must be "
        "answered (a command outcome or a dead letter), none may raise.",
    )
    parser.add_argument("--records", type=int, default=1_000_000, help="records in all")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=500, help="records per process()")
    parser.add_argument(
        "--determinism-records",
        type=int,
        default=20_000,
        help="records processed a second time with fresh processors and compared",
    )
    parser.add_argument(
        "--slow-ms", type=float, default=50.0, help="a decode slower than this is a failure"
    )
    parser.add_argument("--max-failures", type=int, default=200, help="failures kept in full")
    parser.add_argument("--shown", type=int, default=20, help="failures printed at the end")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument(
        "--show",
        metavar="PARTITION:OFFSET",
        help="print that record of the run (same --seed and --partitions) and exit",
    )
    args = parser.parse_args(argv)
    if args.show:
        return _show(args.seed, args.partitions, args.show)
    report = run(
        args.seed,
        args.records,
        args.partitions,
        args.batch_size,
        progress=not args.quiet,
        determinism_records=args.determinism_records,
        max_failures=args.max_failures,
        slow_ms=args.slow_ms,
    )
    print(report.table(args.shown))
    print("OK: every record answered" if report.ok else f"FAILED: {report.failure_count} failures")
    return 0 if report.ok else 1


def _show(seed: int, partitions: int, where: str) -> int:
    partition, _, offset = where.partition(":")
    record, kind = regenerate(seed, int(partition), partitions, int(offset))
    print(f"kind {kind}\noffset {record.offset} timestamp {record.timestamp}")
    print(f"key {record.key!r}\nvalue {record.value!r}")
    try:
        command = decode_command(record.value)
        print(f"decode_command: {command!r}")
    except Exception as e:
        print(f"decode_command raised {type(e).__name__}: {e}")
    try:
        batch = PartitionProcessor(int(partition), partitions).process([record])
        print(f"process (fresh market): outcomes {batch.outcomes!r:.2000}")
        print(f"process (fresh market): dead letters {batch.dead_letters_out!r:.2000}")
    except Exception as e:
        print(f"process raised {type(e).__name__}: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
