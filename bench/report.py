"""``make bench``: run the benchmarks, keep their numbers per commit, print a table, plot.

Quick by default (a few minutes: smaller layer runs, a 100k backlog, 10 s of offered load);
``--full`` for issue 11's long forms (1M-command layers, a 1M backlog, 60 s sustained).
Writes ``bench/results/<short sha>.json``, appends one line to ``bench/history.jsonl``
(commit, date, machine, every metric), prints metric / value / target / ratio / previous
commit's value, and plots every metric with a target over commits, normalized to it
(``bench/results/history.png``; 1.0 is the target, higher is better for all).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.targets import METRICS, human

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
HISTORY = HERE / "history.jsonl"

Run = dict[str, Any]


def git_commit() -> str:
    """Short sha of HEAD, with ``+dirty`` when the tree has changes (numbers of no commit)."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return f"{sha}+dirty" if dirty else sha


def machine() -> dict[str, Any]:
    """What a number depends on besides the code: cores and how busy they were at start."""
    return {"cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()]}


def read_history(lines: Iterable[str]) -> list[Run]:
    """Runs from history.jsonl lines, oldest first; blank or broken lines are skipped (a run
    killed while appending must not stop the next report)."""
    runs: list[Run] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            run = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(run, dict) and isinstance(run.get("metrics"), dict):
            runs.append(run)
    return runs


def previous_run(history: list[Run], commit: str) -> Run | None:
    """The latest run of another commit: what this one is compared with."""
    base = commit.removesuffix("+dirty")
    for run in reversed(history):
        if str(run.get("commit", "")).removesuffix("+dirty") != base:
            return run
    return None


def table(metrics: dict[str, float], previous: Run | None) -> str:
    """Metric, value, target, ratio (≥ 1 meets it) and the previous commit's value."""
    before: dict[str, float] = previous["metrics"] if previous else {}
    header = f"previous ({previous['commit']})" if previous else "previous"
    rows = [("metric", "value", "target", "ratio", header)]
    for name, value in metrics.items():
        metric = METRICS[name]
        ratio = metric.ratio(value)
        rows.append(
            (
                metric.label,
                human(value, metric.unit),
                "" if metric.target is None else human(metric.target, metric.unit),
                "" if ratio is None else f"{ratio:.2f}",
                human(before[name], metric.unit) if name in before else "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def plot(history: list[Run], path: Path) -> None:
    """Each metric that has a target, over commits, as its ratio to the target."""
    import matplotlib  # noqa: PLC0415 - a dev-only dependency, needed only here

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    commits = [str(run["commit"]) for run in history]
    figure, axes = plt.subplots(figsize=(10, 5.5))
    for name, metric in METRICS.items():
        if metric.target is None:
            continue
        points = [
            (i, metric.ratio(float(run["metrics"][name])))
            for i, run in enumerate(history)
            if name in run["metrics"]
        ]
        shown = [(i, r) for i, r in points if r is not None]
        if shown:
            axes.plot(*zip(*shown, strict=True), marker="o", label=metric.label)
    axes.axhline(1.0, color="black", linewidth=1, linestyle="--")
    axes.set_xticks(range(len(commits)), commits, rotation=45, ha="right")
    axes.set_ylabel("value / target (≥ 1 meets issue 11's target)")
    axes.set_title("TechX benchmarks over commits")
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def run_benchmarks(full: bool, seed: int, with_e2e: bool) -> dict[str, float]:
    from bench import end_to_end, matching  # noqa: PLC0415 - heavy imports only when measuring

    sizes = matching.Sizes.full() if full else matching.Sizes.quick()
    print("pure matching, one core:")
    metrics = matching.measure(sizes, seed)
    if with_e2e:
        print("end to end on the local stack (I/O-only pipeline first):")
        metrics |= asyncio.run(
            end_to_end.run(
                orders=1_000_000 if full else 100_000,
                rate=5_000,
                seconds=60.0 if full else 10.0,
                technologies=16,
                seed=11,
                guarantee=None,
                with_io_only=True,
                recovery=False,
            )
        )
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="issue 11's long forms")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-e2e", action="store_true", help="pure benchmarks only")
    args = parser.parse_args()
    commit = git_commit()
    started = machine()
    date = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    metrics = run_benchmarks(args.full, args.seed, not args.no_e2e)
    run: Run = {
        "commit": commit,
        "date": date,
        "mode": "full" if args.full else "quick",
        "machine": started,
        "metrics": {name: round(value, 3) for name, value in metrics.items()},
    }
    history = read_history(HISTORY.read_text().splitlines()) if HISTORY.exists() else []
    print()
    print(table(run["metrics"], previous_run(history, commit)))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{commit}.json").write_text(json.dumps(run, indent=2) + "\n")
    with HISTORY.open("a") as out:
        out.write(json.dumps(run) + "\n")
    plot([*history, run], RESULTS / "history.png")
    print(f"\nwrote {RESULTS / f'{commit}.json'}, {HISTORY.name}, {RESULTS / 'history.png'}")


if __name__ == "__main__":
    main()
