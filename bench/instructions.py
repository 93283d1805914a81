"""Instructions per command, by callgrind: ``python -m bench.instructions [market|pipeline]``.

Wall-clock rates on a shared 2-core VM move by 10-45% between runs; instruction counts do
not (about ±150 a command, from string-hash randomisation; PYTHONHASHSEED=0 removes that).
Each measurement is two callgrind runs of the same process, one that only builds the input
and one that also does the work: the difference, over the command count, is the work's cost.
Needs valgrind (Debian's package). Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.matching import _commands, _process, _records
from engine.commands.run import tune_garbage_collector
from engine.core.market import Market

COMMANDS = 20_000
SEED = 7
_SUMMARY = re.compile(r"^summary: (\d+)", re.MULTILINE)


def work(what: str, measured: bool) -> None:
    """Build the input; with ``measured``, also apply it (the part callgrind is asked about)."""
    commands = _commands(SEED, COMMANDS)
    tune_garbage_collector()  # as `techx run` and bench.matching do
    if what == "pipeline":
        records = _records([(c, i) for i, c in enumerate(commands)])
        if measured:
            _process(records)
        return
    market = Market()
    if measured:
        views = market.views_out
        for offset, command in enumerate(commands):
            market.apply(command, 0, offset)
            if not offset % 5000:
                views.clear()


def _instructions(what: str, measured: bool, out: Path) -> int:
    code = f"from bench.instructions import work; work({what!r}, {measured})"
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-c", code],
        env=dict(os.environ, PYTHONHASHSEED="0"),
        capture_output=True,
        check=True,
    )
    found = _SUMMARY.search(out.read_text())
    assert found is not None, f"no summary line in {out}"
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="*", choices=["market", "pipeline"], default=[])
    for what in parser.parse_args().what or ["market", "pipeline"]:
        with tempfile.TemporaryDirectory() as scratch:
            setup = _instructions(what, False, Path(scratch, "setup.out"))
            total = _instructions(what, True, Path(scratch, "total.out"))
        print(f"{what:<10} {(total - setup) / COMMANDS:>10,.0f} instructions a command")


if __name__ == "__main__":
    main()
