"""Whether command records decode through the Rust fast path, decided once at import.

``native/techx_codec`` (PyO3) decodes the common, canonical, valid records (orders, cancels,
amends, listings, membership changes but registrations) in one pass, and answers ``None``
for anything else; :func:`engine.core.codec.decode_command` then runs the pure path, which
stays the reference and alone decides every dead letter. :mod:`engine.build_compiled` builds
the crate into ``engine/_native_codec*.so`` and records the hash of what it built from.

The fast path is used only when that build is current (the crate and the schemas it mirrors
are what it was built from), its field tables match the Structs, and ``TECHX_PURE_PYTHON``
is not set; otherwise every record takes the pure path. :data:`STATUS` says which, and why:
the engine puts it in its ``engine_started`` log line.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from engine import native
from schemas.commands import COMMAND_TYPES, Command

#: The crate, and the schema modules whose constraints its scanner mirrors: a change to any
#: of them makes the build stale until ``python -m engine.build_compiled`` runs again.
CRATE = native.ROOT / "native" / "techx_codec"
SOURCES = (
    CRATE / "Cargo.toml",
    CRATE / "Cargo.lock",
    CRATE / "src" / "lib.rs",
    native.ROOT / "schemas" / "commands.py",
    native.ROOT / "schemas" / "common.py",
)
#: Written by the build (not in git): {"sources": sha256 of SOURCES}.
MANIFEST = native.ROOT / "engine" / "native-codec-manifest.json"

FastDecode = Callable[[bytes], Command | None]
DuplicateKey = Callable[[bytes], str | None]


def sources_hash() -> str | None:
    """sha256 over :data:`SOURCES`; ``None`` where the crate is not there (an installed
    package carries only the built module and its manifest)."""
    digest = hashlib.sha256()
    for path in SOURCES:
        try:
            digest.update(path.read_bytes())
        except OSError:
            return None
        digest.update(b"\0")
    return digest.hexdigest()


def build_is_current(manifest: Path = MANIFEST) -> bool:
    """Whether ``manifest`` names the sources now in the checkout."""
    try:
        built = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return False
    current = sources_hash()
    return isinstance(built, dict) and (current is None or built.get("sources") == current)


def _load() -> tuple[FastDecode | None, DuplicateKey | None, str]:
    if os.environ.get(native.PURE_PYTHON_ENV, "") not in ("", "0"):
        return None, None, f"python ({native.PURE_PYTHON_ENV} is set)"
    if not build_is_current():
        return None, None, "python (no current build: python -m engine.build_compiled)"
    try:
        from engine import _native_codec  # noqa: PLC0415 - optional, built per machine
    except ImportError as e:
        return None, None, f"python (import failed: {e})"
    structs = {t.__struct_config__.tag: t for t in COMMAND_TYPES}
    covered = _native_codec.fields()
    for tag, fields in covered:
        struct = structs.get(tag)
        if struct is None or tuple(fields) != struct.__struct_fields__:
            return None, None, f"python (the decoder's fields of {tag} differ from the schema)"
    decoder = _native_codec.CommandDecoder({tag: structs[tag] for tag, _ in covered})
    return decoder.decode, _native_codec.duplicate_key, "native"


#: The fast decoder (the Struct, or ``None`` for "take the pure path"), and
#: ``engine.core.codec._duplicate_key`` in Rust: both used, or neither.
fast_decode, duplicate_key, STATUS = _load()
