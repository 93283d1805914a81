"""Code run in a fresh interpreter, as the engine would start: whether the compiled core and
the Rust decoder load is decided once at import, so it cannot be switched within one."""

from __future__ import annotations

import os
import subprocess
import sys

from engine import native


def run_core(code: str, pure: bool) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter, whose core modules are compiled or forced pure."""
    env = dict(os.environ, **{native.PURE_PYTHON_ENV: "1" if pure else ""})
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=native.ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
