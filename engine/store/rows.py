"""The shapes of the rows the store writes: one place for column lists and their values.

The pure core hands over typed records (:class:`engine.core.batch.SettlementBatch`); this
module turns them into the tuples PostgreSQL's COPY takes, in the column order named beside
them, with the command topic first: the topic is part of every key, so several topic
prefixes (tenants, test runs) can share one database. Small settlements go in one call
(migration 011's ``techx_settle_rows``), which takes the same tuples as arrays of rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from engine.core.batch import SettlementBatch

DEAL_COLUMNS = (
    "topic",
    "deal_id",
    "technology_id",
    "deal_number",
    "seq",
    "price",
    "quantity",
    "buyer_id",
    "seller_id",
    "bid_order_id",
    "offer_order_id",
    "aggressor_side",
    "traded_at_ms",
    "source_partition",
    "source_offset",
)
OUTCOME_COLUMNS = (
    "topic",
    "source_partition",
    "source_offset",
    "technology_id",
    "command_type",
    "participant_id",
    "client_order_id",
    "events",
)
DEAD_LETTER_COLUMNS = (
    "topic",
    "source_partition",
    "source_offset",
    "reason",
    "detail",
    "record_key",
    "record_value",
    "timestamp_ms",
)

Row = tuple[object, ...]


def deal_rows(topic: str, batches: Iterable[SettlementBatch]) -> Iterator[Row]:
    for batch in batches:
        partition = batch.partition
        for deal in batch.deals:
            yield (
                topic,
                deal.deal_id,
                deal.technology_id,
                deal.deal_number,
                deal.seq,
                deal.price,
                deal.quantity,
                deal.buyer_id,
                deal.seller_id,
                deal.bid_order_id,
                deal.offer_order_id,
                deal.aggressor_side.value,
                deal.timestamp_ms,
                partition,
                deal.source_offset,
            )


def outcome_rows(topic: str, batches: Iterable[SettlementBatch]) -> Iterator[Row]:
    for batch in batches:
        partition = batch.partition
        for outcome in batch.outcomes:
            yield (
                topic,
                partition,
                outcome.offset,
                outcome.technology_id,
                outcome.command_type,
                outcome.participant_id,
                outcome.client_order_id,
                outcome.events_json,
            )


def dead_letter_rows(topic: str, batches: Iterable[SettlementBatch]) -> Iterator[Row]:
    for batch in batches:
        partition = batch.partition
        for dead in batch.dead_letters:
            yield (
                topic,
                partition,
                dead.offset,
                dead.reason.value,
                dead.detail,
                dead.key,
                dead.value,
                dead.timestamp_ms,
            )
