"""What a fresh transactional producer still has to commit after a failed attempt."""

from __future__ import annotations

import pytest

from engine.core.batch import SettlementBatch
from engine.errors import PublishFailedError
from engine.producers.transactions import _above


def _batches(*bounds: tuple[int, int]) -> list[SettlementBatch]:
    return [SettlementBatch(0, first, after) for first, after in bounds]


def test_nothing_committed_keeps_every_batch() -> None:
    batches = _batches((0, 3), (3, 5))
    assert _above(batches, None, 0) == batches


def test_a_position_on_a_boundary_drops_exactly_the_batches_below_it() -> None:
    batches = _batches((0, 3), (3, 5), (7, 9))  # a gap: event-less batches are left out
    assert _above(batches, 3, 0) == batches[1:]
    assert _above(batches, 5, 0) == batches[2:]
    assert _above(batches, 6, 0) == batches[2:]  # inside the gap: nothing of ours straddles
    assert _above(batches, 0, 0) == batches


def test_a_position_past_the_last_batch_leaves_nothing_to_send() -> None:
    assert _above(_batches((0, 3), (3, 5)), 5, 0) == []
    assert _above(_batches((0, 3), (3, 5)), 9, 0) == []


def test_a_position_inside_a_batch_stops_instead_of_guessing() -> None:
    with pytest.raises(PublishFailedError, match=r"inside a batch of offsets 3\.\.4"):
        _above(_batches((0, 3), (3, 5)), 4, 0)
