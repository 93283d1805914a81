"""The compiled core (mypyc, engine.build_compiled) against its pure-Python reference.

Each side runs in its own process (``TECHX_PURE_PYTHON=1`` for the reference) over the same
seeded streams: the fuzzer's records for every mechanism, valid or not, and the simulated
order flow; the digest covers every byte the pipeline settles and publishes, and snapshots.
"""

from __future__ import annotations

import hashlib
import itertools

import msgspec
import pytest

from engine import native
from engine.core.batch import LogRecord, PartitionProcessor, SettlementBatch
from engine.core.codec import encode
from engine.producers.simulation import OrderFlow, generated_listings
from tests.fuzz.generators import stream
from tests.unit.fresh_interpreter import run_core

_encoder = msgspec.msgpack.Encoder()


def _batch_bytes(batch: SettlementBatch) -> bytes:
    return _encoder.encode(
        [
            batch.partition,
            batch.first_offset,
            batch.next_offset,
            batch.commands,
            batch.deals,
            batch.outcomes,
            batch.dead_letters,
            batch.deals_out,
            batch.executions_out,
            batch.dead_letters_out,
            batch.market_data_out,
            batch.snapshot,
        ]
    )


def outputs_digest() -> str:
    """sha256 over everything the pipeline produced from the seeded streams."""
    digest = hashlib.sha256()
    for seed in (1, 2):
        processor = PartitionProcessor(0)
        records = [record for record, _ in itertools.islice(stream(seed), 6000)]
        for start in range(0, len(records), 500):
            digest.update(_batch_bytes(processor.process(records[start : start + 500])))
            digest.update(processor.market.snapshot())
    flow = OrderFlow(3, generated_listings(4), invalid_ratio=0.02)
    commands = flow.listing_commands() + flow.next_commands(20_000)
    flow_records = [
        LogRecord(i, i, c.technology_id.encode(), encode(c)) for i, c in enumerate(commands)
    ]
    processor = PartitionProcessor(0)
    for start in range(0, len(flow_records), 1000):
        digest.update(_batch_bytes(processor.process(flow_records[start : start + 1000])))
    digest.update(processor.market.snapshot())
    return digest.hexdigest()


def _digest_in_process(pure: bool) -> tuple[bool, str]:
    code = (
        "from engine import native; from tests.unit.test_compiled_core import outputs_digest; "
        "print(native.COMPILED, outputs_digest())"
    )
    result = run_core(code, pure)
    assert result.returncode == 0, result.stderr
    compiled, digest = result.stdout.split()
    return compiled == "True", digest


def test_compiled_and_pure_core_give_byte_identical_outputs() -> None:
    """Same streams, same bytes: the pure Python is the reference, the compiled core only faster."""
    if not native.build_is_current():
        pytest.skip("no current compiled core (python -m engine.build_compiled)")
    compiled, compiled_digest = _digest_in_process(pure=False)
    pure, pure_digest = _digest_in_process(pure=True)
    assert (compiled, pure) == (True, False)
    assert compiled_digest == pure_digest


def test_pure_python_can_be_forced() -> None:
    """TECHX_PURE_PYTHON=1 imports every core module from its source."""
    code = (
        "import sys, engine.core.batch; from engine import native; "
        "print(all(sys.modules[m].__file__.endswith('.py') for m in native.COMPILED_MODULES))"
    )
    result = run_core(code, pure=True)
    assert result.stdout.split() == ["True"], result.stderr
