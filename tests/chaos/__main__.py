"""The fault campaign from the shell: ``python -m tests.chaos --seed 1 --kills 200``.

Starts a private Kafka + PostgreSQL (free ports, state in the run's folder), runs engines as
processes under a supervisor, prints the seeded schedule, a line per fault as it recovers,
and the final table. Exit status: 0 every check passed, 1 a check failed, 2 the harness
itself could not run (a server did not start, a wait timed out before the checks).

Short form (what ``make test`` runs, 80-100 s on 2 cores): ``--kills 10``.
Long form (about 17-20 minutes on 2 cores): ``--kills 200``. ``--plan`` prints the schedule.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TextIO

import structlog

from devstack import DevStackError
from engine.errors import TechXError
from tests.chaos import ChaosError
from tests.chaos.campaign import CampaignConfig, FaultCounts, plan, render, run_campaign

EXIT_FAILED_CHECK = 1
EXIT_HARNESS_ERROR = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos",
        description="A seeded fault campaign against engine processes on a private stack; "
        "everything is checked against a pure replay of the command log at the end.",
    )
    parser.add_argument("--seed", type=int, default=1, help="decides schedule and order flow")
    parser.add_argument("--kills", type=int, default=10, help="kills in all (incl. after commit)")
    parser.add_argument("--after-commit", type=int, help="of the kills, between commit/publish")
    parser.add_argument("--zombies", type=int, help="engines frozen past the session timeout")
    parser.add_argument("--grow-shrink", type=int, help="1 -> 3 -> 1 engine cycles")
    parser.add_argument("--broker-restarts", type=int)
    parser.add_argument("--postgres-restarts", type=int)
    parser.add_argument("--engines", type=int, default=2, help="engines kept running")
    parser.add_argument("--session-ms", type=int, default=2000, help="TECHX_SESSION_TIMEOUT_MS")
    parser.add_argument("--rate", type=int, default=500, help="commands per second")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--snapshot-every", type=int, default=2000, help="TECHX_SNAPSHOT_EVERY")
    parser.add_argument("--recovery-timeout", type=float, default=120.0, help="seconds per fault")
    parser.add_argument(
        "--output-guarantee",
        choices=("exactly_once", "at_least_once"),
        help="TECHX_OUTPUT_GUARANTEE for the engines (default: unset, the engine's default)",
    )
    parser.add_argument("--run-dir", type=Path, help="logs go here (default: a temp folder)")
    parser.add_argument("--kafka-port", type=int, help="private broker port (default: free)")
    parser.add_argument("--postgres-port", type=int, help="private PostgreSQL port")
    parser.add_argument("--plan", action="store_true", help="print the schedule and exit")
    return parser


def config_from(args: argparse.Namespace) -> CampaignConfig:
    counts = FaultCounts.for_kills(args.kills)
    after_commit = (
        counts.kills_after_commit
        if args.after_commit is None
        else min(args.after_commit, args.kills)
    )
    counts = replace(
        counts,
        kills=args.kills - after_commit,
        kills_after_commit=after_commit,
        zombies=_given(args.zombies, counts.zombies),
        grow_shrinks=_given(args.grow_shrink, counts.grow_shrinks),
        broker_restarts=_given(args.broker_restarts, counts.broker_restarts),
        postgres_restarts=_given(args.postgres_restarts, counts.postgres_restarts),
    )
    return CampaignConfig(
        seed=args.seed,
        counts=counts,
        engines=args.engines,
        session_ms=args.session_ms,
        rate=args.rate,
        partitions=args.partitions,
        snapshot_every=args.snapshot_every,
        recovery_timeout_s=args.recovery_timeout,
        output_guarantee=args.output_guarantee,
        run_dir=args.run_dir,
        kafka_port=args.kafka_port,
        postgres_port=args.postgres_port,
    )


def _given(value: int | None, default: int) -> int:
    return default if value is None else value


def _log_to(stream: TextIO) -> None:
    """The harness's own library and devstack logs go to a file, not between the progress
    lines (the engines log to their own files)."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(file=stream),
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)


def _say(text: str) -> None:
    print(text, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = config_from(args)
    if args.plan:
        for fault in plan(config.seed, config.counts, config.session_ms):
            print(fault.describe())
        return 0
    run_dir = config.run_dir or Path(tempfile.mkdtemp(prefix=f"techx-chaos-s{config.seed}-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        with (run_dir / "harness.log").open("a", encoding="utf-8") as stream:
            _log_to(stream)
            result = asyncio.run(run_campaign(replace(config, run_dir=run_dir), _say))
    except (ChaosError, DevStackError, TechXError) as e:
        print(f"chaos: the harness could not finish: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_HARNESS_ERROR
    except KeyboardInterrupt:
        return 130
    print(render(result), flush=True)
    return 0 if result.passed else EXIT_FAILED_CHECK


if __name__ == "__main__":
    sys.exit(main())
