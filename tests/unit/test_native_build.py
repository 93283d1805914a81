"""Where the tools are, the fast paths are built: a machine with cargo (or a C compiler) that
silently fell back to pure Python would skip the differential tests and measure the wrong
engine, so it fails here instead, saying why the build is missing."""

from __future__ import annotations

import os

import pytest

from engine import build_compiled, native, native_codec


@pytest.mark.skipif(os.environ.get(native.PURE_PYTHON_ENV) == "1", reason="pure Python asked for")
def test_the_rust_decoder_is_in_use_wherever_cargo_is() -> None:
    if build_compiled.find_cargo() is None:
        pytest.skip("no cargo on this machine: commands decode in pure Python")
    assert native_codec.fast_decode is not None, (
        f"cargo is here but the Rust decoder is not used: {native_codec.STATUS}; "
        "run `python -m engine.build_compiled`"
    )
