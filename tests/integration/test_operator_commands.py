"""Operator commands on the real broker and server: dead letters and their re-drive, deal
exports, a technology's book, and consumer group lag."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import sys
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from engine.commands.book import show_book
from engine.commands.dlq import dlq_list, dlq_redrive, dlq_show
from engine.commands.export import export_deals, parse_utc
from engine.commands.lag import group_lags, show_lag
from engine.core.codec import TICK_RECORD
from engine.core.partitioning import partition_for
from engine.errors import OperatorCommandError
from engine.producers.client import TradingClient
from engine.settings import Settings
from engine.store.connection import connected
from tests.chaos.verify import wait_transactions_closed
from tests.integration.harness import fetch_all, running_engine, wait_until_settled
from tests.polling import eventually

pytestmark = pytest.mark.integration

_ROOT = Path(__file__).resolve().parents[2]
_BAD_BID = (
    b'{"type":"place_order","technology_id":"OPS-R","participant_id":"buyer",'
    b'"client_order_id":"b1","side":"bid","quantity":"two","price":1000}'
)
_CORRECTED_BID = _BAD_BID.replace(b'"two"', b"2")


async def _techx(settings: Settings, *args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    """Run the ``techx`` console entry of this checkout's environment on ``settings``."""
    env = {
        **os.environ,
        "PYTHONPATH": str(_ROOT),  # this checkout's engine, whatever the venv was installed from
        "TECHX_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "TECHX_DATABASE_URL": settings.database_url,
        "TECHX_TOPIC_PREFIX": settings.topics.prefix,
        "TECHX_GROUP_ID": settings.group_id,
        "TECHX_PARTITIONS": str(settings.partitions),
        "TECHX_LOG_FORMAT": "json",
    }
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "techx"),
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate(stdin)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_a_dead_letter_is_listed_shown_and_redriven_once(settings: Settings) -> None:
    """A bad bid shows in `dlq list` and `dlq show`; its corrected re-drive trades; a second
    re-drive is refused without --force, and a correction that would not decode is refused
    before anything is published."""
    async with running_engine(settings):
        async with TradingClient(settings) as client:
            await client.list_technology("OPS-R", "seller", "Redrive test", 1, 1)
            await client.place("OPS-R", "seller", "s1", "offer", 3, 1_000)
            bad_offset = await client.send_raw("OPS-R", _BAD_BID)
            binary_offset = await client.send_raw("OPS-R", b"\xff\xfe{garbage")
        await wait_until_settled(settings)
        partition = partition_for("OPS-R", settings.partitions)
        bad_id, binary_id = f"{partition}:{bad_offset}", f"{partition}:{binary_offset}"

        listed = io.StringIO()
        assert await dlq_list(settings, as_json=True, out=listed) == 0
        rows = [json.loads(line) for line in listed.getvalue().splitlines()]
        assert {row["id"]: row["reason"] for row in rows} == {
            bad_id: "schema_violation",
            binary_id: "invalid_utf8",
        }
        # PostgreSQL settles before the dead letters' Kafka transaction commits.
        assert await wait_transactions_closed(settings, timeout_s=30) is None
        on_topic = io.StringIO()
        await dlq_list(settings, source="topic", as_json=True, out=on_topic)
        assert {
            (row["id"], row["reason"], row["detail"], row["value"]["bytes"])
            for row in map(json.loads, on_topic.getvalue().splitlines())
        } == {(row["id"], row["reason"], row["detail"], row["value"]["bytes"]) for row in rows}
        only = io.StringIO()
        await dlq_list(settings, reason="invalid_utf8", as_json=True, out=only)
        assert [json.loads(line)["id"] for line in only.getvalue().splitlines()] == [binary_id]
        table = io.StringIO()
        await dlq_list(settings, partition=partition, out=table)
        assert bad_id in table.getvalue()
        assert "2 dead letter(s)" in table.getvalue()

        shown = io.StringIO()
        await dlq_show(settings, binary_id, as_json=True, out=shown)
        binary = json.loads(shown.getvalue())
        assert binary["value"] == {
            "base64": "//57Z2FyYmFnZQ==",
            "hex": b"\xff\xfe{garbage".hex(),
            "bytes": 10,
        }
        from_topic = io.StringIO()
        await dlq_show(settings, binary_id, source="topic", as_json=True, out=from_topic)
        assert json.loads(from_topic.getvalue())["value"] == binary["value"]
        text = io.StringIO()
        await dlq_show(settings, bad_id, out=text)
        assert "schema_violation" in text.getvalue()
        assert '"quantity":"two"' in text.getvalue()
        assert "redriven no" in text.getvalue()

        with pytest.raises(OperatorCommandError, match="dead-lettered again"):
            await dlq_redrive(settings, bad_id, _BAD_BID, operator="ops-1", out=io.StringIO())
        redriven = io.StringIO()
        await dlq_redrive(
            settings, bad_id, _CORRECTED_BID, operator="ops-1", as_json=True, out=redriven
        )
        result = json.loads(redriven.getvalue())
        assert (result["attempt"], result["by"], result["partition"]) == (1, "ops-1", partition)
        assert (result["verdict"], result["reasons"]) == ("accepted", [])  # waited for it
        assert result["offset"] > binary_offset
        with pytest.raises(OperatorCommandError, match="re-driven already"):
            await dlq_redrive(settings, bad_id, _CORRECTED_BID, operator="ops-2")
        await wait_until_settled(settings)

        deals = await fetch_all(
            settings, "SELECT price, quantity, buyer_id, source_offset FROM deals"
        )
        assert [tuple(r) for r in deals] == [(1_000, 2, "buyer", result["offset"])]
        again = io.StringIO()
        await dlq_show(settings, bad_id, as_json=True, out=again)
        (redrive,) = json.loads(again.getvalue())["redrives"]
        assert (redrive["by"], redrive["offset"]) == ("ops-1", result["offset"])

        # Through the console entry: the exit codes a script sees.
        code, out, _ = await _techx(settings, "dlq", "redrive", bad_id, "--edit-from-stdin",
                                    stdin=_CORRECTED_BID)  # fmt: skip
        assert code == 1, "a second re-drive without --force is refused"
        code, out, _ = await _techx(
            settings, "dlq", "redrive", bad_id, "--edit-from-stdin", "--force", "--json",
            "--operator", "ops-2", stdin=_CORRECTED_BID.replace(b"1000", b"900"),
        )  # fmt: skip
        forced = json.loads(out)
        assert forced["attempt"] == 2
        # The same client order id again: the engine refuses it, and the exit says so.
        assert (code, forced["verdict"]) == (3, "rejected"), forced
        code, out, _ = await _techx(
            settings, "dlq", "redrive", bad_id, "--edit-from-stdin", "--force", "--json",
            stdin=_CORRECTED_BID.replace(b"OPS-R", b"OPS-NOWHERE"),
        )  # fmt: skip
        refused = json.loads(out)
        assert code == 3, "the engine refused the correction: exit 3, as techx order"
        assert refused["verdict"] == "rejected"
        assert refused["reasons"][0].startswith("unknown_technology")
        code, out, _ = await _techx(settings, "dlq", "list", "--json", "--since", "1h")
        assert code == 0
        assert len(out.splitlines()) == 2
        assert (await _techx(settings, "dlq", "show", "99:0"))[0] == 1
        assert (await _techx(settings, "dlq", "show", "not-an-id"))[0] == 2  # bad usage
        await wait_until_settled(settings)  # neither forced one traded
    deals = await fetch_all(settings, "SELECT count(*) FROM deals")
    assert deals[0][0] == 1


async def _insert_deal(settings: Settings, number: int, price: int, traded_at_ms: int) -> None:
    async with connected(settings.database_url) as connection:
        await connection.execute(
            "INSERT INTO deals (topic, deal_id, technology_id, deal_number, seq, price, quantity,"
            " buyer_id, seller_id, bid_order_id, offer_order_id, aggressor_side, traded_at_ms,"
            " source_partition, source_offset)"
            " VALUES ($1, $2, 'EXP-1', $3, $3, $4, 7, 'b', 's', 'bo', 'so', 'bid', $5, 0, $3)",
            settings.topics.commands,
            f"EXP-1:d{number}",
            number,
            price,
            traded_at_ms,
        )


async def test_export_writes_the_range_with_exact_integer_prices(
    settings: Settings, tmp_path: Path
) -> None:
    """Deals at the start of the range and just before its end are exported, those just
    before the start and at the end are not; prices above 2**53 come back exact in CSV and
    Parquet (no float on the way)."""
    import pyarrow.parquet as pq  # type: ignore[import-untyped]  # noqa: PLC0415 - [export]

    start, end = parse_utc("2026-11-01", "--from"), parse_utc("2026-12-01", "--to")
    huge = 2**53 + 1  # a float64 would round it
    for number, (price, at) in enumerate(
        [(100, start - 1), (huge, start), (250, start + 5), (300, end - 1), (400, end)], 1
    ):
        await _insert_deal(settings, number, price, at)

    csv_path = tmp_path / "november.csv"
    summary = io.StringIO()
    await export_deals(
        settings, from_ms=start, to_ms=end, out=csv_path, as_json=True, chunk=2, stdout=summary
    )
    assert json.loads(summary.getvalue())["rows"] == 3
    with csv_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["price"]), int(r["traded_at_ms"])) for r in rows] == [
        (huge, start),
        (250, start + 5),
        (300, end - 1),
    ]
    assert rows[0]["price"] == str(huge)

    parquet_path = tmp_path / "november.parquet"
    await export_deals(
        settings,
        from_ms=start,
        to_ms=end,
        out=parquet_path,
        file_format="parquet",
        chunk=2,
        stdout=io.StringIO(),
    )
    table = pq.read_table(parquet_path)
    assert table.num_rows == 3
    assert str(table.schema.field("price").type) == "int64"
    assert table.column("price").to_pylist() == [huge, 250, 300]
    assert sorted(os.listdir(tmp_path)) == ["november.csv", "november.parquet"], "no .partial"

    code, _, _ = await _techx(
        settings, "export", "deals", "--from", "2026-11-02", "--to", "2026-11-01",
        "--out", str(tmp_path / "x.csv"),
    )  # fmt: skip
    assert code == 2, "an empty range is refused as bad usage"
    assert not (tmp_path / "x.csv").exists()


async def test_book_shows_the_levels_and_follows_updates(settings: Settings) -> None:
    """After a few orders and a tick, `book` prints the technology's levels; --follow prints
    the next view when the book changes."""
    async with running_engine(settings), TradingClient(settings) as client:
        await client.list_technology("OPS-B", "seller", "Book test", 1, 1)
        await client.place("OPS-B", "b1", "o1", "bid", 5, 990)
        await client.place("OPS-B", "b2", "o2", "bid", 2, 990)
        await client.place("OPS-B", "b3", "o3", "bid", 1, 980)
        await client.place("OPS-B", "seller", "o4", "offer", 4, 1_010)
        await client.send_raw("OPS-B", TICK_RECORD)  # views are flushed at each tick
        await wait_until_settled(settings)

        async def shown() -> dict[str, object] | None:
            out = io.StringIO()
            code = await show_book(settings, "OPS-B", as_json=True, out=out)
            return json.loads(out.getvalue()) if code == 0 else None

        view: dict[str, object] | None = None

        async def has_view() -> bool:
            nonlocal view
            view = await shown()
            return view is not None

        await eventually(has_view, 30, "a market view of OPS-B")
        assert view is not None
        assert view["bids"] == [[990, 7, 2], [980, 1, 1]]
        assert view["offers"] == [[1_010, 4, 1]]
        text = io.StringIO()
        await show_book(settings, "OPS-B", depth=1, out=text)
        assert "990" in text.getvalue()
        assert "980" not in text.getvalue(), "--depth 1 shows one level per side"
        missing = io.StringIO()
        assert await show_book(settings, "NOPE", out=missing) == 1

        followed = io.StringIO()
        stop = asyncio.Event()
        follower = asyncio.create_task(
            show_book(settings, "OPS-B", follow=True, as_json=True, out=followed, stop=stop)
        )
        await eventually(lambda: followed.getvalue().count("\n") >= 1, 30, "the first view")
        await client.place("OPS-B", "b4", "o5", "bid", 3, 1_000)
        await client.send_raw("OPS-B", TICK_RECORD)
        await eventually(lambda: followed.getvalue().count("\n") >= 2, 30, "a later view")
        stop.set()
        assert await asyncio.wait_for(follower, 10) == 0
    latest = json.loads(followed.getvalue().splitlines()[-1])
    assert latest["bids"][0] == [1_000, 3, 1]


async def test_lag_compares_committed_offsets_with_the_log_end(settings: Settings) -> None:
    """A group that committed offset 2 of a partition holding 5 commands lags by 3 there; the
    engines' groups, which never ran, lag by everything."""
    async with TradingClient(settings) as client:
        for _ in range(5):
            await client.send_raw("OPS-L", TICK_RECORD)
    partition = partition_for("OPS-L", settings.partitions)
    group = f"{settings.group_id}-known"
    tp = TopicPartition(settings.topics.commands, partition)
    committer = AIOKafkaConsumer(
        **settings.kafka_options(), group_id=group, enable_auto_commit=False
    )
    await committer.start()
    try:
        committer.assign([tp])
        await committer.commit({tp: OffsetAndMetadata(2, "")})
    finally:
        await committer.stop()

    lags = {(lag.group, lag.partition): lag for lag in await group_lags(settings, [group])}
    known = lags[(group, partition)]
    assert (known.committed, known.log_end, known.lag) == (2, 5, 3)
    others = [lag for (_, p), lag in lags.items() if p != partition]
    assert len(others) == settings.partitions - 1
    assert all(lag.committed is None and lag.lag == 0 for lag in others)

    out = io.StringIO()
    await show_lag(settings, as_json=True, out=out)
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert {row["group"] for row in rows} == {settings.group_id, f"{settings.group_id}.outputs"}
    assert sum(row["lag"] for row in rows) == 2 * 5, "nothing committed: all 5 commands, twice"
    code, printed, _ = await _techx(settings, "lag", "--group", group)
    assert code == 0
    assert f"{group}: 3 command(s) behind in total" in printed
    assert "moves only with" not in printed, "the outputs group's note only when it is shown"
    table = io.StringIO()
    await show_lag(settings, out=table)
    assert f"({settings.group_id}.outputs moves only with commands that produced events" in (
        table.getvalue()
    )
