"""The image's Dockerfile keeps its promises, checked without a container runtime (none runs
here, and no linter binary can be fetched): parsed by dockerfile-parse, then our rules.

What it cannot check, building it does: tests/deploy/test_image.py runs its build steps.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"

#: An exact release tag (3.11.14-slim-bookworm), or any tag pinned by digest.
_PINNED_IMAGE = re.compile(r"^[\w./-]+(:\d+\.\d+\.\d+[\w.-]*)?(@sha256:[0-9a-f]{64})?$")

Instruction = dict[str, str]


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    parser = DockerfileParser(path=str(DOCKERFILE))
    parsed: list[Instruction] = [
        {"instruction": i["instruction"], "value": i["value"]} for i in parser.structure
    ]
    return parsed


def _stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    stages: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction["instruction"] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _of(stage: list[Instruction], kind: str) -> list[str]:
    return [i["value"] for i in stage if i["instruction"] == kind]


def test_two_stages_from_pinned_images(instructions: list[Instruction]) -> None:
    stages = _stages(instructions)
    assert len(stages) >= 2, "multi-stage: the builder's compilers stay out of the image"
    for stage in stages:
        image = stage[0]["value"].split()[0]
        assert "latest" not in image
        assert ":" in image or "@" in image, f"{image}: no tag"
        match = _PINNED_IMAGE.match(image)
        assert match, f"{image}: not an image reference"
        assert match.group(1) or match.group(2), f"{image}: pin a release tag (X.Y.Z) or digest"


def test_the_builder_installs_only_hashed_pins(instructions: list[Instruction]) -> None:
    builder = _stages(instructions)[0]
    runs = " ".join(_of(builder, "RUN"))
    assert "deploy/build-venv.sh deps" in runs
    script = (ROOT / "deploy" / "build-venv.sh").read_text(encoding="utf-8")
    installs = [line for line in script.splitlines() if "pip" in line and " install " in line]
    assert len(installs) >= 4
    for line in installs:
        assert "--no-deps" in line, line
        assert "--require-hashes" in line or "--no-index" in line, line
    # Nothing else in the Dockerfile installs packages behind the locks' back.
    assert not re.search(r"pip\d?\s+install|apt-get install", " ".join(_of(builder, "RUN")))


def test_the_locks_are_copied_before_the_sources(instructions: list[Instruction]) -> None:
    """So the dependency layer is rebuilt only when a lock changes, not on every edit."""
    builder = _stages(instructions)[0]
    copies = [i for i in builder if i["instruction"] in ("COPY", "RUN")]
    position = {
        what: next(n for n, i in enumerate(copies) if what in i["value"])
        for what in ("requirements.lock", "build-venv.sh deps", "engine", "build-venv.sh app")
    }
    assert (
        position["requirements.lock"]
        < position["build-venv.sh deps"]
        < position["engine"]
        < position["build-venv.sh app"]
    )


def test_the_runtime_stage_is_slim_non_root_and_checks_its_health(
    instructions: list[Instruction],
) -> None:
    runtime = _stages(instructions)[-1]
    assert "slim" in runtime[0]["value"]
    users = _of(runtime, "USER")
    assert users, "no USER: the image would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    copied = _of(runtime, "COPY")
    assert copied == ["--from=builder /opt/venv /opt/venv"], "only the finished environment"
    runs = " ".join(_of(runtime, "RUN"))
    assert not re.search(r"gcc|build-essential|pip\d?\s+install|apt-get install", runs)
    (healthcheck,) = _of(runtime, "HEALTHCHECK")
    assert "/healthz" in healthcheck
    assert "TECHX_METRICS_PORT" in healthcheck
    assert "9464" in healthcheck
    env = " ".join(_of(runtime, "ENV"))
    assert "TECHX_METRICS_PORT=9464" in env
    (entrypoint,) = _of(runtime, "ENTRYPOINT")
    assert json.loads(entrypoint) == ["techx"], "exec form: signals reach the engine"


def test_the_context_leaves_out_local_builds_and_tools() -> None:
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for entry in (".venv", ".git", ".tools", "**/*.so"):
        assert entry in ignored
