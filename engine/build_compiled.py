"""Compile the pure core with mypyc, in place: ``python -m engine.build_compiled``.

Optional and safe to fail: ``deploy/local/bootstrap.sh`` runs it after installing the
environment, and when it cannot build (no C compiler, no Python headers) the engine runs
its pure-Python modules, which are the reference either way (:mod:`engine.native`).
Skipped when the last build is still current; ``--clean`` removes what it built.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from engine import native

#: The shared library all compiled modules use, inside the package (not top-level).
_GROUP = "engine.compiled_core"
_BUILD_DIR = native.ROOT / "build" / "mypyc"


def built_files() -> list[Path]:
    """Every extension module the build leaves in the checkout."""
    engine_dir = native.ROOT / "engine"
    return sorted(p for p in engine_dir.rglob("*.so") if p.is_file())


def clean() -> None:
    native.MANIFEST.unlink(missing_ok=True)
    for path in built_files():
        path.unlink()
    shutil.rmtree(_BUILD_DIR, ignore_errors=True)


def build() -> None:
    from mypyc.build import mypycify  # noqa: PLC0415 - a dev tool, only needed to build
    from setuptools import Distribution  # noqa: PLC0415

    clean()
    os.chdir(native.ROOT)  # mypyc names modules by their paths relative to the root
    paths = [str(native.source_path(m).relative_to(native.ROOT)) for m in native.COMPILED_MODULES]
    hashes = native.source_hashes()
    extensions = mypycify(paths, opt_level="3", group_name=_GROUP, target_dir=str(_BUILD_DIR))
    distribution = Distribution(
        {
            "name": "techx-compiled-core",
            "ext_modules": extensions,
            "script_name": "engine.build_compiled",
            "script_args": ["-q", "build_ext", "--inplace", "--build-temp", str(_BUILD_DIR)],
        }
    )
    distribution.parse_command_line()
    distribution.run_commands()
    native.MANIFEST.write_text(json.dumps(hashes, indent=1, sort_keys=True) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clean", action="store_true", help="remove the compiled modules")
    parser.add_argument("--force", action="store_true", help="build even if current")
    args = parser.parse_args()
    if args.clean:
        clean()
        return 0
    if native.build_is_current() and not args.force:
        print("build_compiled: the compiled core is current")
        return 0
    started = time.perf_counter()
    try:
        build()
    except (Exception, SystemExit) as e:  # any failure means: run pure Python
        clean()
        reason = f"{type(e).__name__}: {e}"[:300]
        print(f"build_compiled: not built ({reason}); the engine runs pure Python", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - started
    print(f"build_compiled: {len(native.COMPILED_MODULES)} modules compiled in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
