"""The folders keep their promises: the pure core loads no I/O, and nothing shipped needs the
local development stack."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: What a module of the pure core may import: the standard library parts it uses, the wire
#: contract, msgspec, and the engine's pure neighbours.
_CORE_MAY_IMPORT = (
    "__future__",
    "array",
    "bisect",
    "collections",
    "dataclasses",
    "enum",
    "hashlib",
    "heapq",
    "itertools",
    "re",
    "typing",
    "msgspec",
    "schemas",
    "engine.core",
    "engine.errors",
    "engine.orderbook",
    # The Rust decoder or none, chosen once at import: the same bytes decode the same either way.
    "engine.native_codec",
)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.add(node.module)
    return names


def _allowed(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def test_the_pure_core_imports_no_kafka_postgres_clock_or_randomness() -> None:
    """engine/core and engine/orderbook.py import only the contract and pure modules."""
    sources = [*sorted((ROOT / "engine" / "core").rglob("*.py")), ROOT / "engine" / "orderbook.py"]
    assert len(sources) > 5
    offending = {
        f"{path.relative_to(ROOT)}: {module}"
        for path in sources
        for module in _imports(path)
        if not _allowed(module, _CORE_MAY_IMPORT)
    }
    assert not offending, sorted(offending)


def test_nothing_shipped_imports_the_development_stack_at_module_level() -> None:
    """engine/ and schemas/ load without devstack: an installed wheel has none."""
    offending = [
        str(path.relative_to(ROOT))
        for package in ("engine", "schemas")
        for path in sorted((ROOT / package).rglob("*.py"))
        if any(_allowed(module, ("devstack",)) for module in _top_level_imports(path))
    ]
    assert not offending


def _top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.add(node.module)
    return names


def test_importing_the_core_loads_no_kafka_or_postgres_client() -> None:
    """In a fresh interpreter, the whole batch path imports without aiokafka or asyncpg."""
    probe = (
        "import sys, engine.core.batch, engine.core.market; "
        "print(sorted(m for m in ('aiokafka', 'asyncpg', 'structlog') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"
