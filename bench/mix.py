"""The "exchange as it is" command mix: every mechanism and time in force, with access checks.

Issue 11 wants the benchmark mix to hold everything the engine does, not just a continuous
book of GTC limits: a members_only register (so every command passes the access checks, some
through a broker acting for its client), one listing of each mechanism (continuous, call,
English, sealed first and second price, Dutch) relisted as auctions end, GTC/IOC/FOK/GTD
and post-only orders, market orders, amends, cancels, listing actions and ticks, with log
time moving so deadlines fire (uncrosses, Dutch steps, closes, GTD expiries).
"""

from __future__ import annotations

import random

from schemas.commands import (
    AmendOrder,
    CancelOrder,
    Command,
    ListTechnology,
    ManageListing,
    PlaceOrder,
    RegisterParticipant,
    SetAccessMode,
    Tick,
)

START_MS = 1_700_000_000_000
OPERATOR = "exchange-ops"
SELLER = "seller"
BROKER = "broker"
TRADERS = [f"t{i}" for i in range(8)]


def _register() -> list[Command]:
    """Sellers that also buy, a broker acting for the first half, then members only."""
    commands: list[Command] = [
        RegisterParticipant(OPERATOR, SELLER, ["seller", "buyer"]),
        RegisterParticipant(OPERATOR, BROKER, ["broker"], acts_for=TRADERS[:4]),
    ]
    commands += [RegisterParticipant(OPERATOR, t, ["buyer", "seller"]) for t in TRADERS]
    commands.append(SetAccessMode(OPERATOR, "members_only"))
    return commands


def _listings(round_: int, now: int) -> list[ListTechnology]:
    """One technology of each mechanism; ``round_`` makes fresh ids for relistings."""
    return [
        ListTechnology(f"C{round_}", SELLER, "Continuous licence", 10, 1, "continuous"),
        ListTechnology(
            f"K{round_}", SELLER, "Call licence", 10, 1, "call",
            first_uncross_at_ms=now + 2_000, call_interval_ms=3_000,
        ),
        ListTechnology(
            f"E{round_}", SELLER, "English lot", 10, 1, "english", 500,
            starting_price=100, min_increment=10, ends_at_ms=now + 9_000,
            soft_close_window_ms=1_000, soft_close_extension_ms=1_500, buy_now_price=2_000,
        ),
        ListTechnology(
            f"S{round_}", SELLER, "Sealed first", 10, 1, "sealed_first", 300,
            ends_at_ms=now + 7_000,
        ),
        ListTechnology(
            f"V{round_}", SELLER, "Sealed second", 10, 1, "sealed_second", 300,
            ends_at_ms=now + 8_000,
        ),
        ListTechnology(
            f"D{round_}", SELLER, "Dutch clock", 10, 1, "dutch", 200,
            starting_price=1_000, price_step=50, step_interval_ms=400, offered_quantity=3,
        ),
    ]  # fmt: skip


def exchange_mix(seed: int, count: int) -> list[tuple[Command, int]]:  # noqa: PLR0915 - one roll, one branch
    """(command, log time) pairs, reproducible; continuous books take most of the flow,
    as on a real exchange, and every other mechanism keeps running beside them."""
    rng = random.Random(seed)
    now = START_MS
    out: list[tuple[Command, int]] = [(c, now) for c in _register()]
    listings = _listings(0, now)
    out += [(listing, now) for listing in listings]
    ids = [listing.technology_id for listing in listings]
    round_ = 0
    sequence = 0
    placed: list[tuple[str, str, str]] = [("", "", "")]  # (technology, participant, client id)
    while len(out) < count:
        now += rng.choice([0, 0, 1, 1, 5, 20, 100])
        roll = rng.random()
        technology = ids[0] if rng.random() < 0.6 else rng.choice(ids)  # the continuous one
        who = rng.choice(TRADERS)
        via = BROKER if who in TRADERS[:4] and rng.random() < 0.3 else None
        recent = placed[rng.randrange(max(0, len(placed) - 200), len(placed))]
        if roll < 0.02:
            out.append((Tick(), now))
        elif roll < 0.022:
            # The previous round's call and continuous listings close as their seller moves on:
            # a call listing left open uncrosses and publishes a view every interval forever,
            # so without this the mix measured ever more idle auctions, not the flow.
            out += [(ManageListing(old, SELLER, "close"), now) for old in ids if old[0] in "CK"]
            round_ += 1
            fresh = _listings(round_, now)
            ids = [listing.technology_id for listing in fresh]
            out += [(listing, now) for listing in fresh]
        elif roll < 0.0225:
            action = rng.choice(["halt", "resume", "resume"])
            out.append((ManageListing(technology, SELLER, action), now))
        elif roll < 0.20:
            target, owner, client = recent
            out.append((CancelOrder(target or technology, owner or who, client or "none"), now))
        elif roll < 0.25:
            target, owner, client = recent
            quantity = rng.choice([None, rng.randint(1, 8)])
            new_price = rng.choice([None, 10 * rng.randint(90, 110)])
            amend = AmendOrder(
                target or technology, owner or who, client or "none", quantity, new_price
            )
            out.append((amend, now))
        else:
            sequence += 1
            auction = technology[0] in "ESVD"
            side = "bid" if auction or rng.random() < 0.5 else "offer"
            price: int | None
            price = 10 * (
                rng.randint(20, 150) if auction else rng.randint(95, 103 if side == "bid" else 105)
            )
            if side == "offer":
                price = max(10, (price or 0) - 20)
            order_type = "limit"
            if rng.random() < 0.08:
                order_type, price = "market", None
            tif = rng.choice(["gtc"] * 7 + ["ioc", "fok", "gtd"])
            expires = now + rng.randint(1, 3_000) if tif == "gtd" else None
            quantity = 1 if technology[0] in "ESV" else rng.randint(1, 8)
            order = PlaceOrder(
                technology, who, f"{who}-{sequence}", side, quantity, order_type, price,
                tif, expires, rng.random() < 0.03, via,
            )  # fmt: skip
            out.append((order, now))
            placed.append((technology, who, order.client_order_id))
    return out[:count]
