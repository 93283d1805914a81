"""Compile the pure core with mypyc, and the Rust command decoder, in place:
``python -m engine.build_compiled``.

Optional and safe to fail: ``deploy/local/bootstrap.sh`` runs it after installing the
environment, and when it cannot build (no C compiler, no Python headers, no cargo) the engine
runs its pure-Python modules, which are the reference either way (:mod:`engine.native`,
:mod:`engine.native_codec`). Each part is skipped when its last build is still current;
``--clean`` removes what it built.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from engine import native, native_codec

#: The shared library all compiled modules use, inside the package (not top-level).
_GROUP = "engine.compiled_core"
_BUILD_DIR = native.ROOT / "build" / "mypyc"
#: Cargo's target directory: under build/, which git and the image's context leave out.
_CARGO_TARGET = native.ROOT / "build" / "cargo"
#: Where the Rust decoder goes: ``engine._native_codec`` for this interpreter.
NATIVE_CODEC = native.ROOT / "engine" / f"_native_codec{sysconfig.get_config_var('EXT_SUFFIX')}"


def built_files() -> list[Path]:
    """Every extension module the mypyc build leaves in the checkout."""
    engine_dir = native.ROOT / "engine"
    return sorted(
        p
        for p in engine_dir.rglob("*.so")
        if p.is_file() and not p.name.startswith("_native_codec")
    )


def clean() -> None:
    native.MANIFEST.unlink(missing_ok=True)
    for path in built_files():
        path.unlink()
    shutil.rmtree(_BUILD_DIR, ignore_errors=True)


def clean_codec() -> None:
    native_codec.MANIFEST.unlink(missing_ok=True)
    for path in (native.ROOT / "engine").glob("_native_codec*.so"):
        path.unlink()


def find_cargo() -> str | None:
    """cargo on PATH, or where rustup puts it (a login shell adds that to PATH, CI may not)."""
    home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    return shutil.which("cargo") or shutil.which("cargo", path=str(home / "bin"))


def build_codec() -> str:
    """Build the crate (its Cargo.lock pins every crate) and put the module in place; says
    what happened in one line. Never raises for a failed build: the decoder is optional."""
    clean_codec()
    cargo = find_cargo()
    if cargo is None:
        return "no cargo; commands decode in pure Python"
    sources = native_codec.sources_hash()  # before building: an edit meanwhile makes it stale
    if sources is None:
        return f"no crate at {native_codec.CRATE}; commands decode in pure Python"
    started = time.perf_counter()
    env = {
        **os.environ,
        "PYO3_PYTHON": sys.executable,  # the interpreter the module is built for
        "PYO3_BUILD_EXTENSION_MODULE": "1",  # leave libpython to the interpreter
        "CARGO_TARGET_DIR": str(_CARGO_TARGET),
    }
    manifest = native_codec.CRATE / "Cargo.toml"
    command = [cargo, "build", "--release", "--locked", "--quiet", "--manifest-path", str(manifest)]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = " ".join(done.stderr.split()[-40:])
            return f"not built (cargo exited {done.returncode}: {tail}); pure Python decodes"
        shutil.copyfile(_CARGO_TARGET / "release" / "libtechx_codec.so", NATIVE_CODEC)
    except OSError as e:
        return f"not built ({e}); pure Python decodes"
    native_codec.MANIFEST.write_text(json.dumps({"sources": sources}, indent=1) + "\n")
    return f"built {NATIVE_CODEC.name} in {time.perf_counter() - started:.0f} s"


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
        clean_codec()
        return 0
    if native_codec.build_is_current() and not args.force:
        print("build_compiled: the Rust command decoder is current")
    else:
        print(f"build_compiled: Rust command decoder: {build_codec()}")
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
