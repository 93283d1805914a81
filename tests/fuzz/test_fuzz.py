"""The fuzzing harness, short form: hostile records are answered, never raised.

The seeded run below is the few-seconds version of ``python -m tests.fuzz``; the focused tests
pin the records that once killed the engine, whatever the generator happens to draw.
"""

from __future__ import annotations

from itertools import islice

import pytest

import engine.core.codec
from engine.core.batch import PartitionProcessor, SettlementBatch
from engine.core.codec import decode_command
from engine.errors import DecodeError
from schemas.commands import Command
from schemas.common import DeadLetterReason
from schemas.events import Event
from tests.fuzz import harness
from tests.fuzz.generators import LIMIT, FuzzRecord, category, stream
from tests.fuzz.harness import Faults, FuzzReport, run

SEED = 20261126
RECORDS = 24_000
PARTITIONS = 4

#: Every family and operator of the generator: the short run must draw each of them.
CATEGORIES = {
    "valid/list_technology",
    "valid/list_new",
    "valid/place_limit",
    "valid/place_market",
    "valid/cancel_order",
    "valid/register_participant",
    "valid/suspend_participant",
    "valid/reinstate_participant",
    "valid/set_access_mode",
    "valid/refused",
    "mut/nest",
    "mut/number",
    "mut/duplicate_key",
    "mut/encoding",
    "mut/size",
    "mut/unknown_field",
    "mut/wrong_type",
    "mut/missing_field",
    "mut/empty_string",
    "mut/whitespace",
    "mut/trailing_garbage",
    "mut/truncate",
    "mut/tombstone",
    "mut/key",
    "mut/wrong_partition",
    "mut/type_tag",
    "mut/syntax",
    "mut/byte_edits",
    "mut/scanner",
    "random/bytes",
    "random/token_soup",
    "random/json",
}

VALID_ORDER = (
    b'{"type":"place_order","technology_id":"T1","participant_id":"p1",'
    b'"client_order_id":"c1","side":"bid","quantity":10,"order_type":"limit","price":100}'
)


@pytest.fixture(scope="module")
def report() -> FuzzReport:
    # Decode times are printed by the long form (python -m tests.fuzz), not judged here: a
    # timed assertion in the suite would measure the CI machine, not the code.
    return run(
        SEED, RECORDS, PARTITIONS, batch_size=500, determinism_records=16_000, slow_ms=float("inf")
    )


def test_no_failures(report: FuzzReport) -> None:
    """No record escapes decode_command or process or breaks an invariant."""
    assert report.ok, report.table()


def test_every_record_is_answered(report: FuzzReport) -> None:
    """Every record becomes exactly one command outcome or one dead letter."""
    assert report.records == RECORDS
    assert report.outcomes + report.dead_letters == RECORDS, report.table()
    assert report.decoded + report.decode_errors == RECORDS, report.table()


def test_reaches_every_dead_letter_reason(report: FuzzReport) -> None:
    """The generator reaches every dead-letter code, and nothing needs the catch-all one."""
    expected = {reason.value for reason in DeadLetterReason} - {DeadLetterReason.UNDECODABLE}
    assert set(report.dead_letter_reasons) == expected, report.table()


def test_reaches_the_matching_path(report: FuzzReport) -> None:
    """Valid orders in the mix are accepted and trade, so the run exercises the market too."""
    assert report.outcomes > RECORDS // 4, report.table()
    assert report.deals > 1_000, report.table()


def test_is_deterministic(report: FuzzReport) -> None:
    """The sampled records give identical batches and markets through fresh processors."""
    assert report.determinism_records == 16_000
    assert not any(failure.stage == "determinism" for failure in report.failures), report.table()


def test_generator_draws_every_operator(report: FuzzReport) -> None:
    """The short run draws every family and operator of the generator."""
    assert set(report.kinds) == CATEGORIES, sorted(set(report.kinds) ^ CATEGORIES)


def test_generator_is_reproducible() -> None:
    """The same seed and partition give the same records, so any failure can be made again."""

    def records(seed: int) -> list[FuzzRecord]:
        return [record for record, _ in islice(stream(seed, 1, PARTITIONS), 2_000)]

    assert records(SEED) == records(SEED)
    assert records(SEED) != records(SEED + 1)


def _answer(value: bytes | None, key: bytes | None = b"T1") -> SettlementBatch:
    """One record through a fresh processor: it must come back as one dead letter."""
    batch = PartitionProcessor(0).process([FuzzRecord(7, 1_700_000_000_000, key, value)])
    assert batch.outcomes == []
    assert len(batch.dead_letters) == len(batch.dead_letters_out) == 1
    return batch


def _refused(value: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_command(value)


def test_nested_arrays_from_the_bug_report_are_a_dead_letter() -> None:
    """The 2 KB record of nested arrays that raised RecursionError is a dead letter."""
    value = b'{"x":' + b"[" * 1000 + b"]" * 1000 + b"}"
    _answer(value)
    _refused(value)


def test_nesting_before_the_type_tag_is_a_dead_letter() -> None:
    """Nesting placed before the "type" tag (which msgspec skips while looking for the tag) is
    a dead letter."""
    value = b'{"x":' + b"[" * 1000 + b"]" * 1000 + b"," + VALID_ORDER[1:]
    _answer(value)
    _refused(value)


def test_nesting_100k_deep_is_a_dead_letter() -> None:
    """Arrays nested 100,000 deep are a dead letter."""
    value = b"[" * 100_000 + b"]" * 100_000
    _answer(value)
    _refused(value)


def test_deepest_nesting_within_the_size_limit_is_a_dead_letter() -> None:
    """Arrays nested as deep as 16 KiB allows (8,115 levels), before the tag, are a dead letter."""
    head, tail = b'{"x":', b"," + VALID_ORDER[1:]
    depth, spaces = divmod(LIMIT - len(head) - len(tail), 2)
    value = head + b"[" * depth + b"]" * depth + b" " * spaces + tail
    assert len(value) == LIMIT
    _answer(value)
    _refused(value)


def test_5000_digit_quantity_is_a_dead_letter() -> None:
    """A quantity of 5,000 digits is a dead letter, not a number for the market."""
    value = VALID_ORDER.replace(b'"quantity":10', b'"quantity":' + b"9" * 5000)
    _answer(value)
    _refused(value)


def test_every_truncation_of_a_valid_record_is_a_dead_letter() -> None:
    """A valid record cut at any byte is a dead letter; only the whole record is a command."""
    for end in range(len(VALID_ORDER)):
        _answer(VALID_ORDER[:end])
    batch = PartitionProcessor(0).process([FuzzRecord(7, 1_700_000_000_000, b"T1", VALID_ORDER)])
    assert len(batch.outcomes) == 1


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"[" * 33 + b'"' + b'\\"' * ((LIMIT - 34) // 2), id="escaped_quotes"),
        pytest.param(b"[" * 33 + b'"' + b'"\\' * ((LIMIT - 34) // 2), id="quote_backslash"),
    ],
)
def test_unterminated_strings_behind_brackets_are_too_deep(value: bytes) -> None:
    """A 16 KiB record of quotes and backslashes that never close a string, behind deep
    brackets, is refused as too deep (it once took the depth scan 2 s: the long form's
    slowest-decode figure watches for that)."""
    with pytest.raises(DecodeError) as caught:
        decode_command(value)
    assert caught.value.reason is DeadLetterReason.TOO_DEEP


def test_category_names_the_operator() -> None:
    """Kinds group by family and operator in reports."""
    assert category("mut/nest/array/before_type") == "mut/nest"
    assert category("random/bytes") == "random/bytes"


def test_harness_reports_records_that_raise_in_the_market(monkeypatch: pytest.MonkeyPatch) -> None:
    """A record that raises after the market changed is reported, rolled back, and the run goes
    on: every other record is still answered, and determinism still holds."""

    def after_apply(command: Command, events: list[Event]) -> None:
        if getattr(command, "client_order_id", "").endswith("7"):
            raise ZeroDivisionError("planted")

    monkeypatch.setattr(harness, "CHECKPOINT_RECORDS", 300)  # restores from snapshots too
    faults = Faults(after_apply=after_apply)
    report = run(
        SEED,
        4_000,
        2,
        batch_size=250,
        determinism_records=2_000,
        max_failures=10_000,
        faults=faults,
    )
    assert set(report.failure_groups) == {"process: ZeroDivisionError"}, report.table()
    assert report.outcomes + report.dead_letters + report.failure_count == 4_000
    values = _values(4_000, 2)
    assert all(b'7"' in values[f.partition, f.offset] for f in report.failures)


def test_harness_reports_records_that_raise_in_the_decoder() -> None:
    """A record decode_command raises anything but DecodeError for is reported at both stages,
    with its bytes, and the rest of its batch is still answered."""
    original = engine.core.codec.decode_command

    def decode(raw: bytes | None) -> Command:
        if raw is not None and b"[[[" in raw:
            raise RecursionError("planted")
        return original(raw)

    faults = Faults(decode=decode)
    report = run(
        SEED,
        4_000,
        2,
        batch_size=250,
        determinism_records=2_000,
        max_failures=10_000,
        faults=faults,
    )
    stages = {"decode_command: RecursionError", "process: RecursionError"}
    assert set(report.failure_groups) == stages, report.table()
    assert report.failure_groups["decode_command: RecursionError"] == report.failure_count // 2
    values = _values(4_000, 2)
    assert all(b"[[[" in values[f.partition, f.offset] for f in report.failures)
    assert report.outcomes + report.dead_letters + report.failure_count // 2 == 4_000


def _values(records: int, partitions: int) -> dict[tuple[int, int], bytes]:
    """The whole value of each record of a run, by (partition, offset)."""
    return {
        (partition, record.offset): record.value or b""
        for partition in range(partitions)
        for record, _ in islice(stream(SEED, partition, partitions), records // partitions)
    }
