"""Which core modules run compiled (mypyc) and which from source, decided once at import.

:mod:`engine.build_compiled` compiles :data:`COMPILED_MODULES` in place, next to their
sources, and writes a manifest of the sources' hashes. The compiled modules are used only
when every one of them was built from the sources now in the checkout; otherwise (no
compiler on this machine, a source edited since the build, ``TECHX_PURE_PYTHON=1``) every
one of them is imported from its ``.py``, which stays the reference: the differential test
runs both and compares their outputs byte for byte.

All or nothing, because compiled and interpreted classes do not mix freely (an interpreted
class cannot inherit from a compiled one).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

#: The pure hot path, less what mypyc cannot take as it is:
#: - modules defining msgspec Structs (snapshot, call_state, dutch, english, sealed, records): mypyc
#:   erases the annotations of the classes it compiles (``int | None`` becomes ``type``),
#:   and msgspec decodes by them;
#: - venue: a runtime-checkable Protocol, which compiled is no longer a Protocol.
#: Compiled callers bind calls statically, so nothing here can be monkeypatched: faults are
#: planted through ``PartitionProcessor``'s ``decode`` and ``after_apply``.
COMPILED_MODULES = (
    "engine.orderbook",
    "engine.core.batch",
    "engine.core.codec",
    "engine.core.market",
    "engine.core.membership",
    "engine.core.partitioning",
    "engine.core.rules",
    "engine.core.mechanisms.call",
    "engine.core.mechanisms.continuous",
    "engine.core.mechanisms.events",
)
PURE_PYTHON_ENV = "TECHX_PURE_PYTHON"
ROOT = Path(__file__).resolve().parent.parent
#: Written by the build (not in git): {module: sha256 of the source it was compiled from}.
MANIFEST = ROOT / "engine" / "compiled-manifest.json"


def source_path(module: str) -> Path:
    return ROOT.joinpath(*module.split(".")).with_suffix(".py")


def source_hashes() -> dict[str, str]:
    return {m: hashlib.sha256(source_path(m).read_bytes()).hexdigest() for m in COMPILED_MODULES}


def build_is_current() -> bool:
    """Whether the manifest names exactly the sources in the checkout now."""
    try:
        built = json.loads(MANIFEST.read_text())
    except (OSError, ValueError):
        return False
    return bool(built == source_hashes())


class _SourcesFirst(MetaPathFinder):
    """Finds the compiled modules' ``.py`` files, which the path finder would pass over for
    the extension modules beside them."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in COMPILED_MODULES:
            return None
        leaf = fullname.rpartition(".")[2] + ".py"
        for entry in path or ():
            source = os.path.join(entry, leaf)
            if os.path.isfile(source):
                return importlib.util.spec_from_file_location(fullname, source)
        return None


def _choose() -> bool:
    if os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0") or not build_is_current():
        sys.meta_path.insert(0, _SourcesFirst())
        return False
    return True


#: Whether the core modules run compiled in this process.
COMPILED: bool = _choose()
