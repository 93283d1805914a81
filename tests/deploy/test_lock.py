"""The image's locks cannot drift from pyproject.toml unnoticed: every runtime dependency is
pinned there, exactly, with hashes (pip's --require-hashes refuses anything else).

After adding a dependency to pyproject.toml, `make lock` updates deploy/requirements.lock.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_LOCK = ROOT / "deploy" / "requirements.lock"
BUILD_LOCK = ROOT / "deploy" / "build-requirements.lock"
BUILD_INPUT = ROOT / "deploy" / "build-requirements.in"

#: ``name==version`` at the start of a requirement line (markers may follow).
_PINNED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
#: A requirement's name at the start of a pyproject/requirements entry.
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _normalised(name: str) -> str:
    """PEP 503: names compare case-insensitively, with runs of -_. as one hyphen."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(path: Path) -> list[list[str]]:
    """The lock's requirements, each as its lines joined across backslash continuations."""
    entries: list[list[str]] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if raw[0].isspace() and entries:
            entries[-1].append(line)
        else:
            entries.append([line])
    return entries


def _pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for entry in _requirements(path):
        match = _PINNED.match(entry[0])
        assert match, f"{path.name}: not pinned with ==: {entry[0]}"
        pins[_normalised(match.group(1))] = match.group(2)
    return pins


def _names(requirements: list[str]) -> set[str]:
    names = set()
    for requirement in requirements:
        match = _NAME.match(requirement)
        assert match, requirement
        names.add(_normalised(match.group(1)))
    return names


def _pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("lock", [RUNTIME_LOCK, BUILD_LOCK], ids=lambda p: p.name)
def test_every_locked_requirement_is_pinned_and_hashed(lock: Path) -> None:
    entries = _requirements(lock)
    assert len(entries) >= 5
    for entry in entries:
        assert _PINNED.match(entry[0]), f"{lock.name}: not pinned with ==: {entry[0]}"
        hashes = [part for line in entry[1:] for part in line.split() if part.startswith("--hash")]
        assert hashes, f"{lock.name}: {entry[0]} has no --hash (run `make lock`)"
        assert all(re.fullmatch(r"--hash=sha256:[0-9a-f]{64}", h) for h in hashes), entry[0]


def test_the_runtime_lock_covers_every_runtime_dependency() -> None:
    """A dependency added to pyproject but not locked would be missing from the image."""
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    wanted = _names(project["dependencies"])
    locked = set(_pins(RUNTIME_LOCK))
    missing = wanted - locked
    assert not missing, f"not in deploy/requirements.lock: {sorted(missing)}; run `make lock`"


def test_the_build_lock_covers_the_build_backend_and_the_compiler() -> None:
    build_system = _pyproject()["build-system"]
    assert isinstance(build_system, dict)
    inputs = [
        line for line in BUILD_INPUT.read_text(encoding="utf-8").splitlines() if line[:1].isalnum()
    ]
    wanted = _names(build_system["requires"]) | _names(inputs)
    assert {"hatchling", "mypy", "setuptools"} <= wanted
    missing = wanted - set(_pins(BUILD_LOCK))
    assert not missing, f"not in deploy/build-requirements.lock: {sorted(missing)}; make lock"


def test_both_locks_agree_where_they_overlap() -> None:
    """The builder installs both into one environment: one version of each package."""
    runtime, build = _pins(RUNTIME_LOCK), _pins(BUILD_LOCK)
    differing = {name: (runtime[name], build[name]) for name in runtime.keys() & build.keys()}
    assert {name: pair for name, pair in differing.items() if pair[0] != pair[1]} == {}
