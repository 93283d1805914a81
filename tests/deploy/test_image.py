"""The image's build, run outside a container: no container runtime runs here (and no
registry serves the base images), so this runs the very script the Dockerfile runs
(deploy/build-venv.sh) on a copy of what the Dockerfile copies, into fresh environments.

It proves what a broken image would show first: the locks install with --require-hashes and
--no-deps and are complete (`pip check`, imports), the wheel builds from the locked backend,
the compiled core builds and is the one imported, and `techx` starts. About a minute;
TECHX_SKIP_IMAGE_SMOKE=1 skips it (no network to PyPI, say).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: What deploy/Dockerfile copies into the builder's /src.
_CONTEXT = ("pyproject.toml", "README.md", ".gitignore", "engine", "schemas", "deploy")

pytestmark = pytest.mark.skipif(
    os.environ.get("TECHX_SKIP_IMAGE_SMOKE") == "1", reason="TECHX_SKIP_IMAGE_SMOKE=1"
)


def _copy_context(target: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "compiled-manifest.json", "build")
    for name in _CONTEXT:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=ignore)
        else:
            shutil.copy2(source, target / name)


def _run(*command: str | Path, env: dict[str, str] | None = None, cwd: Path) -> str:
    done = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=cwd,
        check=False,
    )
    assert done.returncode == 0, f"{command}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_image_build_steps_install_the_locks_and_the_engine_runs(tmp_path: Path) -> None:
    src, venv, tools = tmp_path / "src", tmp_path / "venv", tmp_path / "tools"
    src.mkdir()
    _copy_context(src)
    compiled = shutil.which("cc") is not None  # the builder image has one; a bare host may not
    env = {**os.environ, "PYTHON": sys.executable, "TECHX_COMPILED": "1" if compiled else "0"}
    for variable in ("PYTHONPATH", "VIRTUAL_ENV", "TECHX_PURE_PYTHON"):
        env.pop(variable, None)
    script = src / "deploy" / "build-venv.sh"
    _run("sh", script, "deps", src, venv, tools, env=env, cwd=tmp_path)
    _run("sh", script, "app", src, venv, tools, env=env, cwd=tmp_path)

    # From elsewhere than a checkout: what runs is the installed wheel.
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    assert _run(venv / "bin" / "techx", "--version", env=env, cwd=elsewhere).startswith(
        "techx 0.1.0"
    )
    where = _run(
        venv / "bin" / "python",
        "-c",
        "import engine.commands.cli, engine.commands.gateway, engine.core.market as m; "
        "print(m.__file__)",
        env=env,
        cwd=elsewhere,
    ).strip()
    assert where.startswith(str(venv)), where
    assert where.endswith(".so") == compiled, where
    # The image gets no Rust decoder: its builder has no cargo (the Dockerfile installs nothing
    # outside the locks) and the context leaves native/ out, so commands decode in pure Python.
    decoder = _run(
        venv / "bin" / "python",
        "-c",
        "from engine import native_codec; print(native_codec.STATUS)",
        env=env,
        cwd=elsewhere,
    )
    assert decoder.startswith("python (no current build"), decoder
    # No build tool leaked in (venv itself brings pip, and setuptools before Python 3.12).
    installed = _run(venv / "bin" / "pip", "list", "--format=freeze", env=env, cwd=elsewhere)
    names = {line.split("==")[0].lower() for line in installed.split()}
    assert "techx-engine" in names
    assert not names & {"mypy", "hatchling", "uv"}, names
