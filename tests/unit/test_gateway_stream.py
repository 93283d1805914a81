"""Who gets which record on the sockets: routing, the hold for a command not yet read, the
fan-out's queues and the resume positions. No Kafka: records are handed in by hand."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from engine.core.codec import encode
from engine.gateway.errors import BadCommandError
from engine.gateway.routing import (
    ActedFor,
    Holdback,
    addressed,
    addressees,
    public_deal,
    sender,
)
from engine.gateway.stream import (
    DEALS,
    EXECUTIONS,
    MARKET_DATA,
    FanOut,
    Subscription,
    frame,
    parse_resume,
)
from schemas.commands import PlaceOrder
from schemas.common import CancelReason, OrderType, RejectReason, Side
from schemas.events import CommandRejected, Deal, OrderAccepted, OrderCancelled

TS = 1_700_000_000_000


def _accepted(participant_id: str, source_offset: int, seq: int = 1) -> bytes:
    return encode(
        OrderAccepted(
            technology_id="T1",
            seq=seq,
            timestamp_ms=TS,
            source_offset=source_offset,
            order_id="T1:o1",
            participant_id=participant_id,
            client_order_id="c-1",
            side=Side.BID,
            order_type=OrderType.LIMIT,
            quantity=1,
            price=100,
        )
    )


def _deal(buyer: str, seller: str, source_offset: int) -> bytes:
    return encode(
        Deal(
            technology_id="T1",
            seq=3,
            timestamp_ms=TS,
            source_offset=source_offset,
            deal_id="T1:d1",
            deal_number=1,
            price=100,
            quantity=1,
            buyer_id=buyer,
            seller_id=seller,
            bid_order_id="T1:o2",
            offer_order_id="T1:o1",
            bid_client_order_id="b",
            offer_client_order_id="s",
            aggressor_side=Side.BID,
        )
    )


def _order(participant_id: str, submitted_by: str | None) -> bytes:
    return encode(
        PlaceOrder(
            technology_id="T1",
            participant_id=participant_id,
            client_order_id="c-1",
            side="bid",
            quantity=1,
            price=100,
            submitted_by=submitted_by,
        )
    )


def _messages(subscription: Subscription) -> list[dict[str, object]]:
    """What the socket would be sent now (without waiting)."""
    frames = list(subscription._frames)
    subscription._frames.clear()
    return [msgspec.json.decode(f) for f in frames]


def test_an_event_is_for_everyone_it_names_and_whoever_sent_its_command() -> None:
    """participant, buyer, seller, winner and member fields, plus the sender if another."""
    deal = addressed(_deal("buyer-05", "seller-08", 9))
    assert deal is not None
    assert addressees(deal, None) == {"buyer-05", "seller-08"}
    assert addressees(deal, "broker-1") == {"buyer-05", "seller-08", "broker-1"}
    accepted = addressed(_accepted("buyer-05", 4))
    assert accepted is not None
    assert accepted.source_offset == 4
    assert addressees(accepted, None) == {"buyer-05"}
    assert addressed(b"not json") is None
    assert addressed(b"[1, 2]") is None


def test_the_sender_of_a_command_is_known_only_when_it_acts_for_another() -> None:
    """submitted_by other than participant_id names a sender; itself or none names nobody."""
    assert sender(_order("buyer-05", "broker-1")) == "broker-1"
    assert sender(_order("buyer-05", "buyer-05")) is None
    assert sender(_order("buyer-05", None)) is None
    assert sender(b'{"submitted_by":"x","participant_id":') is None, "broken: dead-lettered"


def test_acted_for_commands_are_remembered_per_partition_within_a_window() -> None:
    """The oldest go first once the window is full."""
    acted_for = ActedFor(window=2)
    acted_for.note(0, 10, "a")
    acted_for.note(1, 10, "b")
    acted_for.note(0, 11, "c")
    acted_for.note(0, 12, "d")
    assert acted_for.sender(0, 10) is None
    assert (acted_for.sender(0, 11), acted_for.sender(0, 12)) == ("c", "d")
    assert acted_for.sender(1, 10) == "b"
    assert acted_for.sender(2, 10) is None


def test_an_event_whose_command_is_unread_waits_and_keeps_its_order() -> None:
    """Events of a command the gateway has not read are held, with every later event of the
    same output partition; reading the command releases them in order."""
    holdback = Holdback()
    holdback.commands_read_to(0, 10)
    assert holdback.admit(EXECUTIONS, 0, 100, 9, b"a")
    assert not holdback.admit(EXECUTIONS, 0, 101, 10, b"b")
    assert not holdback.admit(EXECUTIONS, 0, 102, 9, b"c"), "behind a held one: waits too"
    assert holdback.admit(DEALS, 0, 50, 9, b"d"), "another output partition is not held back"
    assert holdback.admit(EXECUTIONS, 1, 7, 99, b"e"), "an unknown command partition: no wait"
    assert holdback.commands_read_to(0, 10) == []
    assert holdback.commands_read_to(0, 11) == [
        (EXECUTIONS, 0, 101, b"b"),
        (EXECUTIONS, 0, 102, b"c"),
    ]
    assert holdback.held() == 0


def test_everything_held_can_be_let_go_at_once() -> None:
    """The safety valve for a command that never comes."""
    holdback = Holdback()
    holdback.commands_read_to(0, 0)
    holdback.admit(EXECUTIONS, 0, 1, 5, b"a")
    holdback.admit(DEALS, 0, 2, 6, b"b")
    assert sorted(holdback.release_all()) == [(DEALS, 0, 2, b"b"), (EXECUTIONS, 0, 1, b"a")]
    assert holdback.held() == 0


def _fanout(commands_read_to: int = 1000) -> FanOut:
    """A fan-out that has read the command partitions up to ``commands_read_to``."""
    fanout = FanOut()
    for partition in range(2):
        fanout.commands_read_to(partition, commands_read_to)
    return fanout


def test_the_fan_out_gives_each_socket_its_own_events_only() -> None:
    """buyer-05's socket gets its acceptance and the deal; seller-08's only the deal; a
    market socket no events."""
    fanout = _fanout(commands_read_to=0)
    buyer = Subscription("buyer-05", (EXECUTIONS, DEALS), 100)
    seller = Subscription("seller-08", (EXECUTIONS, DEALS), 100)
    market = Subscription(None, (MARKET_DATA,), 100)
    for subscription in (buyer, seller, market):
        fanout.subscribe(subscription)
    fanout.command(0, 0, _order("buyer-05", None))
    fanout.commands_read_to(0, 1)
    fanout.output(EXECUTIONS, 0, 40, _accepted("buyer-05", 0))
    fanout.output(DEALS, 0, 7, _deal("buyer-05", "seller-08", 0))
    got = _messages(buyer)
    assert [(m["topic"], m["offset"]) for m in got] == [(EXECUTIONS, 40), (DEALS, 7)]
    assert got[0]["event"] == msgspec.json.decode(_accepted("buyer-05", 0))
    assert [m["topic"] for m in _messages(seller)] == [DEALS]
    assert _messages(market) == []
    assert fanout.positions == {(EXECUTIONS, 0): 41, (DEALS, 0): 8}


def test_a_refusal_of_an_impersonation_reaches_whoever_sent_it() -> None:
    """mallory's order in buyer-05's name is refused to buyer-05 (participant_id), and the
    gateway routes it to mallory, who sent it."""
    fanout = _fanout(commands_read_to=5)
    mallory = Subscription("mallory", (EXECUTIONS, DEALS), 100)
    fanout.subscribe(mallory)
    fanout.command(1, 5, _order("buyer-05", "mallory"))
    fanout.commands_read_to(1, 6)
    rejected = encode(
        CommandRejected(
            technology_id="T1",
            seq=2,
            timestamp_ms=TS,
            source_offset=5,
            command="place_order",
            participant_id="buyer-05",
            client_order_id="c-1",
            reason=RejectReason.NOT_ACTING_FOR,
            detail="mallory may not act for buyer-05",
        )
    )
    fanout.output(EXECUTIONS, 1, 3, rejected)
    (message,) = _messages(mallory)
    assert message["event"]["reason"] == "not_acting_for"  # type: ignore[index]


def test_an_event_before_its_command_is_delivered_once_the_command_is_read() -> None:
    """A broker's outcome fetched ahead of its command still reaches the broker."""
    fanout = _fanout(commands_read_to=0)
    broker = Subscription("broker-1", (EXECUTIONS,), 100)
    fanout.subscribe(broker)
    fanout.output(EXECUTIONS, 0, 12, _accepted("buyer-05", 3))
    assert _messages(broker) == []
    assert fanout.positions.get((EXECUTIONS, 0)) is None, "not delivered, so not passed"
    fanout.command(0, 3, _order("buyer-05", "broker-1"))
    fanout.commands_read_to(0, 4)
    assert [m["offset"] for m in _messages(broker)] == [12]
    assert fanout.positions[(EXECUTIONS, 0)] == 13


def test_a_slow_socket_overflows_instead_of_growing() -> None:
    """Past its limit a subscription drops everything and says so: the socket is closed and
    the client resumes."""
    fanout = _fanout()
    slow = Subscription("buyer-05", (EXECUTIONS,), 3)
    fanout.subscribe(slow)
    for offset in range(5):
        fanout.output(EXECUTIONS, 0, offset, _accepted("buyer-05", 0, seq=offset + 1))
    assert slow.overflowed
    assert asyncio.run(slow.take()) == []


def test_market_views_go_to_market_sockets_and_positions_move_for_everyone() -> None:
    """A market view reaches market subscribers; positions messages follow when they moved."""
    fanout = _fanout()
    market = Subscription(None, (MARKET_DATA,), 100)
    own = Subscription("buyer-05", (EXECUTIONS, DEALS), 100)
    fanout.subscribe(market)
    fanout.subscribe(own)
    view = b'{"type":"market_view","technology_id":"T1","timestamp_ms":1,"source_offset":2}'
    fanout.view(1, 30, view)
    fanout.view(1, 31, b"not a view")
    (message,) = _messages(market)
    assert (message["type"], message["offset"], message["view"]) == (
        "view",
        30,
        msgspec.json.decode(view),
    )
    fanout.announce_positions()
    assert _messages(market)[0] == {"type": "positions", "positions": {"market_data": {"1": 32}}}
    assert _messages(own) == [{"type": "positions", "positions": {}}]
    fanout.announce_positions()
    assert _messages(market) == [], "nothing moved: nothing said"


def test_a_socket_that_resumed_ahead_of_this_gateway_skips_what_it_had() -> None:
    """Reconnected to a copy that had read less, a socket gets no record twice."""
    fanout = _fanout()
    socket = Subscription("buyer-05", (EXECUTIONS,), 100)
    socket.skip_below[(EXECUTIONS, 0)] = 11
    fanout.subscribe(socket)
    for offset in (10, 11):
        fanout.output(EXECUTIONS, 0, offset, _accepted("buyer-05", 0, seq=offset))
    assert [m["offset"] for m in _messages(socket)] == [11]


async def test_live_frames_wait_behind_a_catch_up_and_the_greeting_comes_first() -> None:
    """While catching up, live frames are kept aside; the greeting, the caught-up frames and
    then the live ones come in that order."""
    subscription = Subscription("buyer-05", (EXECUTIONS,), 10)
    subscription.hold_live()
    subscription.offer(b"live-1")
    subscription.greet(b"hello")
    await subscription.push(b"old-1")
    subscription.go_live()
    subscription.offer(b"live-2")
    assert await subscription.take() == [b"hello", b"old-1", b"live-1", b"live-2"]


async def test_a_catch_up_waits_for_the_socket_instead_of_overflowing() -> None:
    """push blocks while the queue is full and goes on when the writer takes frames."""
    subscription = Subscription("buyer-05", (EXECUTIONS,), 2)
    await subscription.push(b"1")
    await subscription.push(b"2")
    third = asyncio.create_task(subscription.push(b"3"))
    await asyncio.sleep(0)
    assert not third.done()
    assert await subscription.take() == [b"1", b"2"]
    await third
    assert await subscription.take() == [b"3"]


def test_a_frame_is_the_record_in_an_envelope() -> None:
    """Valid JSON carrying the record as it is and where it is, under its kind's key."""
    value = _accepted("buyer-05", 1)
    decoded = msgspec.json.decode(frame("event", EXECUTIONS, 3, 77, value))
    assert decoded == {
        "type": "event",
        "topic": EXECUTIONS,
        "partition": 3,
        "offset": 77,
        "event": msgspec.json.decode(value),
    }
    assert msgspec.json.decode(frame("trade", DEALS, 1, 2, b"{}"))["trade"] == {}
    assert msgspec.json.decode(frame("view", MARKET_DATA, 1, 2, b"{}"))["view"] == {}


def test_resume_positions_parse_and_bad_ones_are_refused() -> None:
    """stream:partition:offset, comma separated; unknown streams and partitions are 400s."""
    assert parse_resume("executions:0:17,deals:3:5", (EXECUTIONS, DEALS), 4) == {
        (EXECUTIONS, 0): 17,
        (DEALS, 3): 5,
    }
    assert parse_resume("", (EXECUTIONS,), 4) == {}
    for bad in ("executions:0", "executions:x:1", "market_data:0:1", "deals:4:0", "deals:-1:0"):
        with pytest.raises(BadCommandError) as refused:
            parse_resume(bad, (EXECUTIONS, DEALS), 4)
        assert refused.value.code == "bad_resume"


def test_an_unrelated_cancel_is_nobody_elses() -> None:
    """An event names its owner only: another participant's socket stays quiet."""
    fanout = _fanout()
    other = Subscription("buyer-06", (EXECUTIONS,), 10)
    fanout.subscribe(other)
    cancelled = encode(
        OrderCancelled(
            technology_id="T1",
            seq=4,
            timestamp_ms=TS,
            source_offset=0,
            order_id="T1:o1",
            participant_id="buyer-05",
            client_order_id="c-1",
            filled_quantity=0,
            cancelled_quantity=1,
            reason=CancelReason.CANCELLED_BY_PARTICIPANT,
        )
    )
    fanout.output(EXECUTIONS, 0, 1, cancelled)
    assert _messages(other) == []
    fanout.unsubscribe(other)
    assert fanout.subscriptions == 0


def test_a_record_that_is_no_event_never_moves_the_position_past_a_held_one() -> None:
    """A client resuming from a positions message never skips an event still held."""
    fanout = _fanout(commands_read_to=0)
    fanout.output(EXECUTIONS, 0, 100, _accepted("buyer-05", 5))
    fanout.output(EXECUTIONS, 0, 101, b"not an event")
    assert (EXECUTIONS, 0) not in fanout.positions
    fanout.output(EXECUTIONS, 1, 7, b"not an event")
    assert fanout.positions[(EXECUTIONS, 1)] == 8


def test_the_public_part_of_a_deal_names_nobody() -> None:
    """A deal's public part is its technology, id, price, quantity and time: no buyer,
    seller or order; a record that is not a deal has none."""
    public = public_deal(_deal("buyer-05", "seller-08", 9))
    assert public is not None
    assert msgspec.json.decode(public) == {
        "type": "deal",
        "technology_id": "T1",
        "deal_id": "T1:d1",
        "price": 100,
        "quantity": 1,
        "timestamp_ms": TS,
    }
    assert b"buyer-05" not in public
    assert b"seller-08" not in public
    assert public_deal(_accepted("buyer-05", 1)) is None
    assert public_deal(b"not json") is None


def test_a_public_socket_that_asked_for_deals_gets_trades_and_participants_their_deal() -> None:
    """The market socket with deals gets each deal's public part as a trade; one without
    gets none; the participants still get the whole deal as their event."""
    fanout = _fanout()
    tape = Subscription(None, (MARKET_DATA, DEALS), 100)
    views_only = Subscription(None, (MARKET_DATA,), 100)
    buyer = Subscription("buyer-05", (EXECUTIONS, DEALS), 100)
    for subscription in (tape, views_only, buyer):
        fanout.subscribe(subscription)
    fanout.output(DEALS, 0, 7, _deal("buyer-05", "seller-08", 0))
    (trade,) = _messages(tape)
    assert (trade["type"], trade["topic"], trade["partition"], trade["offset"]) == (
        "trade",
        DEALS,
        0,
        7,
    )
    assert trade["trade"] == msgspec.json.decode(public_deal(_deal("b", "s", 0)) or b"")
    assert "event" not in trade
    assert _messages(views_only) == []
    (event,) = _messages(buyer)
    assert event["event"]["buyer_id"] == "buyer-05"  # type: ignore[index]
    fanout.announce_positions()
    assert _messages(tape)[0]["positions"] == {"deals": {"0": 8}}
    fanout.unsubscribe(tape)
    fanout.output(DEALS, 0, 8, _deal("buyer-05", "seller-08", 0))
    assert _messages(tape) == []


def test_a_public_socket_catching_up_gets_trades_and_no_one_elses_events() -> None:
    """Catch-up gives a public socket the same frames as the live stream: a deal's public
    part, a view as it is, and no execution event."""
    fanout = _fanout()
    tape = Subscription(None, (MARKET_DATA, DEALS), 100)
    caught = fanout.wants(tape, DEALS, 2, 40, _deal("buyer-05", "seller-08", 0))
    assert caught is not None
    decoded = msgspec.json.decode(caught)
    assert (decoded["type"], decoded["offset"], decoded["trade"]["price"]) == ("trade", 40, 100)
    assert b"buyer-05" not in caught
    assert fanout.wants(tape, EXECUTIONS, 2, 41, _accepted("buyer-05", 0)) is None
    view = b'{"type":"market_view","technology_id":"T1","timestamp_ms":1,"source_offset":2}'
    shown = fanout.wants(tape, MARKET_DATA, 2, 5, view)
    assert shown is not None
    assert msgspec.json.decode(shown)["view"] == msgspec.json.decode(view)
    buyer = Subscription("buyer-05", (EXECUTIONS, DEALS), 100)
    own = fanout.wants(buyer, DEALS, 2, 40, _deal("buyer-05", "seller-08", 0))
    assert own is not None
    assert msgspec.json.decode(own)["event"]["buyer_id"] == "buyer-05"


def test_the_log_time_is_the_newest_seen_and_rides_on_positions() -> None:
    """The broker time of the newest record read never goes back, and positions messages
    carry it once known (screens count down from it)."""
    fanout = _fanout()
    market = Subscription(None, (MARKET_DATA,), 100)
    fanout.subscribe(market)
    assert fanout.clock() == {}
    fanout.saw_time(TS + 500)
    fanout.saw_time(TS)
    assert fanout.clock() == {"log_time_ms": TS + 500}
    fanout.view(0, 3, b'{"type":"market_view","technology_id":"T1","timestamp_ms":1}')
    _messages(market)
    fanout.announce_positions()
    (positions,) = _messages(market)
    assert positions == {
        "type": "positions",
        "log_time_ms": TS + 500,
        "positions": {"market_data": {"0": 4}},
    }
