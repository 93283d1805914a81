"""Hostile command records, from a seed: valid commands, mutations of them, and noise.

Everything here is deterministic in its ``random.Random``: the same seed, partition and
partition count give the same records, so any record the harness reports can be made again.

Three families, mixed in every thousand records:

* ``valid/...``: well-formed commands of every type (limits and market orders, cancels,
  listings, plus well-formed commands the market refuses), keyed by their technology and,
  when the partition count is known, only for technologies whose murmur2 home is this
  partition, so they are listed, rest and trade.
* ``mut/<operator>/<variant>``: a valid command broken one way (sometimes two): deep
  nesting, odd numbers, duplicate keys, encodings, sizes around the limit, unknown fields,
  wrong types, missing fields, empty strings, whitespace, trailing garbage, truncation,
  tombstones, bad keys, wrong partition, bad type tags, broken syntax, random byte edits.
* ``random/...``: random bytes, random JSON-like token soup, random JSON values.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from engine.core.batch import LogRecord
from engine.core.partitioning import partition_for
from schemas.common import INT64_MAX, INT64_MIN, MAX_NOTIONAL, MAX_PRICE, MAX_QUANTITY

#: The command size limit the engine enforces (engine.core.codec.MAX_COMMAND_BYTES); records are
#: built around it on purpose, so it is spelled out rather than read from the code under test.
LIMIT = 16 * 1024
FIRST_TIMESTAMP_MS = 1_700_000_000_000

_ID_FIRST = string.ascii_letters + string.digits
_ID_REST = _ID_FIRST + "._:-"
_PARTICIPANTS = tuple(f"p{i:02d}" for i in range(1, 13))
_NAMES = (
    "Coating",
    "Solar film",
    "Pin máy bay",
    "技術 A",
    "Quantum-dot ink",
    "Graphene (grade 2)",
    "x",
    "Ω-sensor ✓",
)
_TAGS = ("place_order", "cancel_order", "list_technology")
_FIELD_NAMES = (
    "type",
    "technology_id",
    "participant_id",
    "client_order_id",
    "side",
    "quantity",
    "order_type",
    "price",
    "name",
    "tick_size",
    "lot_size",
    "mechanism",
    "reserve_price",
)
_NUMERIC_FIELDS = ("quantity", "price", "tick_size", "lot_size", "reserve_price")
_STRING_FIELDS = (
    "type",
    "technology_id",
    "participant_id",
    "client_order_id",
    "side",
    "order_type",
    "name",
    "mechanism",
)
_SPLICE = "@@SPLICE@@"
_SPLICE_BYTES = _SPLICE.encode()

Fields = list[tuple[str, str]]
"""A JSON object as (raw key token, raw value token) pairs, in order: room for duplicates."""


#: The fuzzer's records are the engine's in-memory command records.
FuzzRecord = LogRecord


@dataclass(frozen=True, slots=True)
class Generated:
    """One generated record before it gets an offset: what it is, its key and its value."""

    kind: str
    key: bytes | None
    value: bytes | None


def category(kind: str) -> str:
    """The family and operator of a kind (``mut/nest/array/before_type`` -> ``mut/nest``)."""
    return "/".join(kind.split("/", 2)[:2])


def jstr(text: str, ascii_only: bool = True) -> str:
    """A JSON string token."""
    return json.dumps(text, ensure_ascii=ascii_only)


def render(fields: Fields, item_sep: str = ",", key_sep: str = ":", pad: str = "") -> str:
    """The object text of ``fields``; ``pad`` goes just inside both braces."""
    body = item_sep.join(f"{k}{key_sep}{v}" for k, v in fields)
    return "{" + pad + body + pad + "}"


def to_bytes(text: str) -> bytes:
    """UTF-8, letting lone surrogates through as the (invalid) bytes a careless producer sends."""
    return text.encode("utf-8", "surrogatepass")


def _static_numbers() -> dict[str, str]:
    return {
        "zero": "0",
        "neg_zero": "-0",
        "neg_zero_float": "-0.0",
        "one_float": "1.0",
        "exp": "1e3",
        "exp_upper_plus": "1E+3",
        "exp_neg": "1e-3",
        "half": "0.5",
        "leading_zero": "01",
        "leading_zeros": "007",
        "neg_leading_zero": "-01",
        "plus": "+1",
        "dot_first": ".5",
        "dot_last": "5.",
        "dot_exp": "1.e3",
        "hex": "0x10",
        "underscore": "1_000",
        "nan": "NaN",
        "neg_nan": "-NaN",
        "infinity": "Infinity",
        "neg_infinity": "-Infinity",
        "inf_lower": "inf",
        "nan_lower": "nan",
        "exp_400": "1e400",
        "neg_exp_400": "-1e400",
        "exp_minus_400": "1e-400",
        "denormal": "4.9e-324",
        "max_double": "1.7976931348623157e308",
        "over_double": "1.7976931348623157e309",
        "exp_huge": "1e" + "9" * 30,
        "exp_zero_padded": "1e0000000000000000000001",
        "ten_pow_30": "1" + "0" * 30,
        "neg_ten_pow_30": "-1" + "0" * 30,
        "int64_max": str(INT64_MAX),
        "int64_max_plus_1": str(INT64_MAX + 1),
        "int64_min": str(INT64_MIN),
        "int64_min_minus_1": str(INT64_MIN - 1),
        "uint64_max": str(2**64 - 1),
        "uint64_max_plus_1": str(2**64),
        "two_pow_53": str(2**53),
        "two_pow_53_plus_1": str(2**53 + 1),
        "max_price": str(MAX_PRICE),
        "max_price_plus_1": str(MAX_PRICE + 1),
        "max_quantity": str(MAX_QUANTITY),
        "max_quantity_plus_1": str(MAX_QUANTITY + 1),
        "max_notional": str(MAX_NOTIONAL),
        "max_notional_plus_1": str(MAX_NOTIONAL + 1),
        "neg_one": "-1",
        "minus_only": "-",
        "float_exact_int": "1000000000000000.0",
        "exp_int": "1e15",
        "arabic_digit": "\u0661",
        "fullwidth_digit": "\uff11",
        "digits_19": "9" * 19,
        "digits_20": "9" * 20,
        "digits_21": "1" + "0" * 20,
    }


_NUMBERS = _static_numbers()

#: Bytes that are not UTF-8 (or are, but are not characters), spliced into strings or tokens.
_BAD_UTF8: dict[str, bytes] = {
    "ff": b"\xff",
    "fe": b"\xfe",
    "lone_continuation": b"\x80",
    "continuation_bf": b"\xbf",
    "overlong_nul": b"\xc0\x80",
    "overlong_slash_2": b"\xc0\xaf",
    "overlong_c1": b"\xc1\xbf",
    "overlong_slash_3": b"\xe0\x80\xaf",
    "overlong_slash_4": b"\xf0\x80\x80\xaf",
    "surrogate_d800": b"\xed\xa0\x80",
    "surrogate_dfff": b"\xed\xbf\xbf",
    "cesu_pair": b"\xed\xa0\xbd\xed\xb8\x80",
    "above_10ffff": b"\xf4\x90\x80\x80",
    "five_byte": b"\xf8\x88\x80\x80\x80",
    "six_byte": b"\xfc\x84\x80\x80\x80\x80",
    "truncated_3": b"\xe2\x82",
    "truncated_2": b"\xc3",
    "bad_second": b"\xc3\x28",
    "latin1_e_acute": b"\xe9",
    "noncharacter_fffe": "\ufffe".encode(),
}

#: JSON escapes spliced into strings (as written on the wire).
_ESCAPES: dict[str, str] = {
    "lone_high": "\\ud800",
    "lone_low": "\\udc00",
    "two_high": "\\ud800\\ud800",
    "reversed_pair": "\\udc00\\ud800",
    "upper_hex_high": "\\uD800",
    "high_then_char": "\\ud800x",
    "high_then_escape": "\\ud800\\u0041",
    "valid_pair": "\\ud83d\\ude00",
    "max_pair": "\\udbff\\udfff",
    "nul": "\\u0000",
    "esc": "\\u001b",
    "del": "\\u007f",
    "c1_nel": "\\u0085",
    "c1_csi": "\\u009b",
    "newline": "\\n",
    "tab": "\\t",
    "bad_escape_x": "\\x41",
    "short_u": "\\u12",
    "bad_u_hex": "\\uZZZZ",
    "rlo": "\\u202e",
    "lri": "\\u2066",
    "pdi": "\\u2069",
    "rlm": "\\u200f",
    "alm": "\\u061c",
    "zwsp": "\\u200b",
    "bom": "\\ufeff",
    "line_sep": "\\u2028",
    "nonchar_ffff": "\\uffff",
    "replacement": "\\ufffd",
    "solidus": "\\/",
    "escaped_letter": "\\u0041",
}

#: Characters written raw (UTF-8) into strings.
_RAW_TEXT: dict[str, str] = {
    "rlo": "\u202e",
    "lri": "\u2066",
    "rlm": "\u200f",
    "alm": "\u061c",
    "zwsp": "\u200b",
    "bom": "\ufeff",
    "line_sep": "\u2028",
    "del": "\x7f",
    "c1_nel": "\x85",
    "emoji": "\U0001f600",
    "cjk": "技術",
    "combining": "e\u0301",
    "fullwidth_t": "\uff34",
    "kelvin": "\u212a",
    "arabic_digit": "\u0661",
    "nbsp": "\u00a0",
    "lone_surrogate": "\ud800",
}

#: Raw control bytes, which JSON forbids inside strings.
_RAW_CONTROLS: dict[str, bytes] = {
    "nul": b"\x00",
    "soh": b"\x01",
    "esc": b"\x1b",
    "us": b"\x1f",
    "tab": b"\t",
    "newline": b"\n",
    "cr": b"\r",
}

_NEST_DEPTHS = (1, 2, 3, 10, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 255, 256, 257)
_NEST_DEPTHS_DEEP = (500, 511, 512, 513, 999, 1000, 1001, 1023, 1024, 1025, 2000, 4096, 5000)


class CommandFuzzer:
    """Hostile records for one partition, from a ``random.Random``; call :meth:`next`."""

    def __init__(
        self, rng: random.Random, partition: int = 0, partition_count: int | None = None
    ) -> None:
        self.rng = rng
        self.partition = partition
        self.partition_count = partition_count
        self._home: list[str] = [self._home_id() for _ in range(6)]
        self._foreign: list[str] = []
        if partition_count is not None and partition_count > 1:
            while len(self._foreign) < 6:
                candidate = self._random_id()
                if partition_for(candidate, partition_count) != partition:
                    self._foreign.append(candidate)
        #: Technologies this stream listed validly: (tick, lot, mid price in ticks).
        self._listed: dict[str, list[int]] = {}
        self._to_list: list[str] = list(self._home)
        #: Recent orders that may still rest: (technology, participant, client order id).
        self._live: list[tuple[str, str, str]] = []
        self._next_order = 0
        self._mutations: list[tuple[Callable[[], Generated], float]] = [
            (self._nest, 9),
            (self._number, 8),
            (self._duplicate_key, 6),
            (self._encoding, 12),
            (self._size, 3),
            (self._unknown_field, 5),
            (self._wrong_type, 7),
            (self._missing_field, 5),
            (self._empty_string, 3),
            (self._whitespace, 5),
            (self._trailing_garbage, 5),
            (self._truncate, 7),
            (self._tombstone, 2),
            (self._key, 7),
            (self._wrong_partition, 3),
            (self._type_tag, 5),
            (self._syntax, 4),
            (self._byte_edits, 5),
            (self._scanner, 0.3),
        ]
        self._mutation_ops = [op for op, _ in self._mutations]
        self._mutation_weights = [weight for _, weight in self._mutations]

    # ---------------------------------------------------------------- the mix

    def next(self) -> Generated:
        """The next record: about 38% valid, 54% mutated, 8% random."""
        if self._to_list:
            return self._valid_listing(self._to_list.pop(0))
        roll = self.rng.random()
        if roll < 0.38:
            return self._valid()
        if roll < 0.92:
            op = self.rng.choices(self._mutation_ops, self._mutation_weights)[0]
            return op()
        return self._random()

    # ---------------------------------------------------------------- ids and values

    def _random_id(self, length: int | None = None) -> str:
        rng = self.rng
        if length is None:
            length = rng.choice((1, 2, 3, 5, 8, 12, 20, 63, 64)) if rng.random() < 0.3 else 0
            length = length or rng.randint(2, 16)
        return rng.choice(_ID_FIRST) + "".join(rng.choices(_ID_REST, k=length - 1))

    def _home_id(self) -> str:
        """A technology id whose murmur2 partition is this one (any id when unknown)."""
        while True:
            rng = self.rng
            shape = rng.random()
            if shape < 0.4:
                candidate = f"T-{rng.randint(1, 99999)}"
            elif shape < 0.6:
                candidate = f"tech.{rng.choice(('alpha', 'beta', 'gamma'))}:{rng.randint(1, 999)}"
            else:
                candidate = self._random_id()
            if self.partition_count is None or (
                partition_for(candidate, self.partition_count) == self.partition
            ):
                return candidate

    def _client_order_id(self) -> str:
        self._next_order += 1
        if self.rng.random() < 0.1:
            return self._random_id()
        return f"c{self._next_order}"

    def _name(self) -> str:
        rng = self.rng
        if rng.random() < 0.8:
            return rng.choice(_NAMES)
        printable = string.ascii_letters + string.digits + " .,-()&'"
        return rng.choice(string.ascii_letters) + "".join(
            rng.choices(printable, k=rng.randint(0, 199))
        )

    # ---------------------------------------------------------------- valid commands

    def _valid_listing(self, technology_id: str) -> Generated:
        rng = self.rng
        tick = rng.choice((1, 5, 10, 100, 1000))
        lot = rng.choice((1, 1, 10, 100))
        self._listed[technology_id] = [tick, lot, rng.randint(100, 1000)]
        command: dict[str, object] = {
            "type": "list_technology",
            "technology_id": technology_id,
            "participant_id": "admin",
            "name": self._name(),
            "tick_size": tick,
            "lot_size": lot,
        }
        if rng.random() < 0.3:
            command["mechanism"] = "continuous"
        if rng.random() < 0.3:
            command["reserve_price"] = tick * rng.randint(1, 100)
        return self._emit("valid/list_technology", technology_id, command)

    def _command(self, sent: bool = False) -> tuple[str, str, dict[str, object]]:
        """A well-formed command: (variant, technology, fields with ``type`` first).

        ``sent``: it goes out as it is, so a new listing is remembered for later orders.
        """
        rng = self.rng
        roll = rng.random()
        if not self._listed or roll < 0.04:
            technology_id = self._home_id()
            tick, lot = rng.choice((1, 5, 10, 100, 1000)), rng.choice((1, 10, 100))
            if sent and technology_id not in self._listed:
                self._listed[technology_id] = [tick, lot, rng.randint(100, 1000)]
            return "list_new", technology_id, self._listing_fields(technology_id, tick, lot)
        technology_id = rng.choice(list(self._listed))
        tick, lot, mid = self._listed[technology_id]
        if rng.random() < 0.05:  # the price wanders, so books build on both sides
            self._listed[technology_id][2] = max(1, mid + rng.randint(-3, 3))
        participant = rng.choice(_PARTICIPANTS)
        if roll < 0.62:
            client_order_id = self._client_order_id()
            self._live.append((technology_id, participant, client_order_id))
            del self._live[:-300]
            limit: dict[str, object] = {
                "type": "place_order",
                "technology_id": technology_id,
                "participant_id": participant,
                "client_order_id": client_order_id,
                "side": rng.choice(("bid", "offer")),
                "quantity": lot * rng.randint(1, 20),
                "order_type": "limit",
                "price": tick * max(1, mid + rng.randint(-4, 4)),
            }
            if rng.random() < 0.03:  # acting for another: a broker, an operator or an impostor
                limit["submitted_by"] = rng.choice(_PARTICIPANTS)
            return "place_limit", technology_id, limit
        if roll < 0.72:
            command: dict[str, object] = {
                "type": "place_order",
                "technology_id": technology_id,
                "participant_id": participant,
                "client_order_id": self._client_order_id(),
                "side": rng.choice(("bid", "offer")),
                "quantity": lot * rng.randint(1, 30),
                "order_type": "market",
            }
            return "place_market", technology_id, command
        if roll < 0.88 and self._live:
            technology_id, owner, client_order_id = rng.choice(self._live)
            return (
                "cancel_order",
                technology_id,
                {
                    "type": "cancel_order",
                    "technology_id": technology_id,
                    "participant_id": owner if rng.random() < 0.85 else participant,
                    "client_order_id": client_order_id,
                },
            )
        if roll >= 0.985:
            return self._membership(participant)
        return self._refused(technology_id, tick, lot, mid, participant)

    def _membership(self, participant: str) -> tuple[str, str, dict[str, object]]:
        """An operator's (or an impostor's) register command; mostly leaves access open so
        later orders still trade."""
        rng = self.rng
        sender = "exchange-ops" if rng.random() < 0.8 else participant
        member = rng.choice(_PARTICIPANTS)
        roll = rng.random()
        if roll < 0.5:
            roles = rng.sample(("seller", "buyer", "broker", "operator", "king"), rng.randint(1, 3))
            command: dict[str, object] = {
                "type": "register_participant",
                "participant_id": sender,
                "member_id": member,
                "roles": roles,
            }
            if "broker" in roles or rng.random() < 0.1:
                command["acts_for"] = rng.sample(_PARTICIPANTS, rng.randint(0, 3))
            return "register_participant", member, command
        if roll < 0.8:
            kind = rng.choice(("suspend_participant", "reinstate_participant"))
            status: dict[str, object] = {
                "type": kind,
                "participant_id": sender,
                "member_id": member,
            }
            return kind, member, status
        mode = rng.choices(("open", "members_only", "closed"), (6, 3, 1))[0]
        return (
            "set_access_mode",
            member,
            {
                "type": "set_access_mode",
                "participant_id": sender,
                "mode": mode,
            },
        )

    def _listing_fields(self, technology_id: str, tick: int, lot: int) -> dict[str, object]:
        rng = self.rng
        fields: dict[str, object] = {
            "type": "list_technology",
            "technology_id": technology_id,
            "participant_id": rng.choice(("admin", *_PARTICIPANTS)),
            "name": self._name(),
            "tick_size": tick,
            "lot_size": lot,
        }
        if rng.random() < 0.2:
            fields["mechanism"] = "continuous"
        if rng.random() < 0.2:
            fields["reserve_price"] = None
        return fields

    def _refused(
        self, technology_id: str, tick: int, lot: int, mid: int, participant: str
    ) -> tuple[str, str, dict[str, object]]:
        """Well-formed commands the market must answer with a rejection."""
        rng = self.rng
        order: dict[str, object] = {
            "type": "place_order",
            "technology_id": technology_id,
            "participant_id": participant,
            "client_order_id": self._client_order_id(),
            "side": rng.choice(("bid", "offer")),
            "quantity": lot * rng.randint(1, 5),
            "price": tick * mid,
        }
        variant = rng.choice(
            (
                "price_off_tick",
                "price_zero",
                "price_negative",
                "price_too_high",
                "quantity_off_lot",
                "quantity_zero",
                "quantity_negative",
                "quantity_too_large",
                "notional_too_large",
                "unknown_side",
                "unknown_order_type",
                "market_with_price",
                "limit_without_price",
                "unknown_technology",
                "unknown_order",
                "duplicate_client_order_id",
                "relist",
                "bad_tick",
                "bad_lot",
                "bad_reserve",
                "bad_mechanism",
            )
        )
        match variant:
            case "price_off_tick":
                order["price"] = tick * mid + 1 if tick > 1 else 0
            case "price_zero":
                order["price"] = 0
            case "price_negative":
                order["price"] = -tick
            case "price_too_high":
                order["price"] = (MAX_PRICE // tick + 1) * tick
            case "quantity_off_lot":
                order["quantity"] = lot + 1 if lot > 1 else 0
            case "quantity_zero":
                order["quantity"] = 0
            case "quantity_negative":
                order["quantity"] = -lot
            case "quantity_too_large":
                order["quantity"] = (MAX_QUANTITY // lot + 1) * lot
            case "notional_too_large":
                order["quantity"] = (MAX_QUANTITY // lot) * lot
                order["price"] = (MAX_PRICE // tick) * tick
            case "unknown_side":
                order["side"] = rng.choice(("buy", "sell", "BID", ""))
            case "unknown_order_type":
                order["order_type"] = rng.choice(("stop", "LIMIT", "ioc"))
            case "market_with_price":
                order["order_type"] = "market"
            case "limit_without_price":
                order["order_type"] = "limit"
                del order["price"]
            case "unknown_technology":
                technology_id = self._home_id()
                order["technology_id"] = technology_id
            case "unknown_order":
                order = {
                    "type": "cancel_order",
                    "technology_id": technology_id,
                    "participant_id": participant,
                    "client_order_id": self._random_id(),
                }
            case "duplicate_client_order_id":
                if self._live:
                    same_technology, owner, client_order_id = rng.choice(self._live)
                    order["technology_id"] = technology_id = same_technology
                    order["participant_id"] = owner
                    order["client_order_id"] = client_order_id
            case "relist":
                order = self._listing_fields(technology_id, tick, lot)
            case _:  # listings with a broken grid or mechanism, for a new technology
                technology_id = self._home_id()
                order = self._listing_fields(technology_id, 10, 1)
                if variant == "bad_tick":
                    order["tick_size"] = rng.choice((0, -1, MAX_PRICE + 1))
                elif variant == "bad_lot":
                    order["lot_size"] = rng.choice((0, -10, MAX_QUANTITY + 1))
                elif variant == "bad_reserve":
                    order["reserve_price"] = rng.choice((0, -1, MAX_PRICE + 1, 7))
                    order["tick_size"] = 5
                else:
                    order["mechanism"] = rng.choice(("auction", "call", "", "CONTINUOUS"))
        return f"refused/{variant}", technology_id, order

    def _valid(self) -> Generated:
        variant, technology_id, command = self._command(sent=True)
        return self._emit(f"valid/{variant}", technology_id, command)

    def _emit(self, kind: str, technology_id: str, command: dict[str, object]) -> Generated:
        """A valid command, rendered one of the ways JSON allows."""
        rng = self.rng
        fields = _tokens(command, ascii_only=rng.random() < 0.5)
        if rng.random() < 0.1:
            rng.shuffle(fields)  # the tag need not come first
        if rng.random() < 0.8:
            text = render(fields)
        else:
            text = render(fields, ", ", ": ", rng.choice(("", " ", "\n")))
        return Generated(kind, technology_id.encode(), to_bytes(text))

    def _base(self) -> tuple[str, Fields]:
        """A valid command to break: (technology, fields)."""
        _, technology_id, command = self._command()
        return technology_id, _tokens(command)

    def _out(self, kind: str, technology_id: str, value: bytes | str | None) -> Generated:
        if isinstance(value, str):
            value = to_bytes(value)
        return Generated(kind, technology_id.encode(), value)

    # ---------------------------------------------------------------- mutations

    def _depth(self) -> int:
        rng = self.rng
        roll = rng.random()
        if roll < 0.35:
            return rng.choice(_NEST_DEPTHS)
        if roll < 0.6:
            return rng.choice(_NEST_DEPTHS_DEEP)
        if roll < 0.8:
            return int(2 ** rng.uniform(0, 12.3))  # log-uniform, 1..5000
        return rng.randint(1, 5000)

    def _nested(self, depth: int, shape: str) -> str:
        rng = self.rng
        match shape:
            case "array":
                inner = rng.choice(("", "1", '"a"', "{}", "null", "[]"))
                return "[" * depth + inner + "]" * depth
            case "object":
                return '{"a":' * depth + "1" + "}" * depth
            case "mixed":
                opens = [rng.random() < 0.5 for _ in range(depth)]
                head = "".join("[" if o else '{"k":' for o in opens)
                return head + "0" + "".join("]" if o else "}" for o in reversed(opens))
            case "array_with_items":
                return "[1," * depth + "1" + "]" * depth
            case "unclosed":
                return "[" * depth
            case "overclosed":
                return "[" * depth + "]" * (depth + 1)
            case _:  # "brackets_in_strings": deep-looking but flat
                return '"' + "[" * depth + "{" * depth + '"'
        raise AssertionError(shape)  # pragma: no cover

    def _nest(self) -> Generated:
        rng = self.rng
        technology_id, fields = self._base()
        depth = self._depth()
        shape = rng.choice(
            (
                "array",
                "array",
                "object",
                "mixed",
                "array_with_items",
                "unclosed",
                "overclosed",
                "brackets_in_strings",
            )
        )
        nested = self._nested(depth, shape)
        where = rng.choice(
            ("unknown_field", "before_type", "known_field", "whole", "wrapping", "second_value")
        )
        match where:
            case "unknown_field":
                fields.insert(
                    rng.randint(1, len(fields)), (jstr(rng.choice(("x", "meta"))), nested)
                )
                text = render(fields)
            case "before_type":
                fields.insert(0, ('"x"', nested))
                text = render(fields)
            case "known_field":
                i = rng.randrange(len(fields))
                fields[i] = (fields[i][0], nested)
                text = render(fields)
            case "whole":
                text = nested
            case "wrapping":
                text = "[" * depth + render(fields) + "]" * depth
            case _:  # a nested value as the first of a duplicated key
                i = rng.randrange(len(fields))
                fields.insert(i, (fields[i][0], nested))
                text = render(fields)
        return self._out(f"mut/nest/{shape}/{where}", technology_id, text)

    def _number_token(self) -> tuple[str, str]:
        rng = self.rng
        roll = rng.random()
        if roll < 0.75:
            name = rng.choice(list(_NUMBERS))
            return name, _NUMBERS[name]
        digits = rng.choice((5000, 5000, 4300, 4301, 1000, 400))
        body = rng.choice("123456789") + "".join(rng.choices(string.digits, k=digits - 1))
        form = rng.choice(("int", "negative", "float", "exp"))
        if form == "negative":
            body = "-" + body
        elif form == "float":
            body = body + ".5"
        elif form == "exp":
            body = "1e" + body
        return f"digits_{digits}_{form}", body

    def _number(self) -> Generated:
        rng = self.rng
        technology_id, fields = self._base()
        name, token = self._number_token()
        numeric = [i for i, (k, _) in enumerate(fields) if json.loads(k) in _NUMERIC_FIELDS]
        roll = rng.random()
        if numeric and roll < 0.7:
            i = rng.choice(numeric)
            fields[i] = (fields[i][0], token)
            where = json.loads(fields[i][0])
        elif roll < 0.85:
            i = rng.randrange(len(fields))
            fields[i] = (fields[i][0], token)
            where = "string_field" if json.loads(fields[i][0]) in _STRING_FIELDS else "field"
        else:
            fields.append(('"n"', token))
            where = "unknown_field"
        return self._out(f"mut/number/{name}/{where}", technology_id, render(fields))

    def _escaped_key(self, key: str) -> str:
        """The same key with one character written as a \\u escape."""
        rng = self.rng
        i = rng.randrange(len(key))
        code = f"{ord(key[i]):04x}"
        if rng.random() < 0.5:
            code = code.upper()
        return '"' + key[:i] + "\\u" + code + key[i + 1 :] + '"'

    def _duplicate_key(self) -> Generated:
        rng = self.rng
        technology_id, fields = self._base()
        i = rng.randrange(len(fields))
        key, value = fields[i]
        name = json.loads(key)
        variant = rng.choice(
            ("same", "different", "escaped", "escaped_only", "type_twice", "many", "nested_dup")
        )
        match variant:
            case "same":
                fields.insert(rng.randint(0, len(fields)), (key, value))
            case "different":
                other = str(int(value) + 1) if value.lstrip("-").isdigit() else jstr("x" + name)
                fields.insert(rng.randint(0, len(fields)), (key, other))
            case "escaped":
                fields.insert(rng.randint(0, len(fields)), (self._escaped_key(name), value))
            case "escaped_only":
                fields[i] = (self._escaped_key(name), value)
            case "type_twice":
                other_tag = jstr(rng.choice(_TAGS))
                fields.insert(rng.choice((0, len(fields))), ('"type"', other_tag))
            case "many":
                fields.extend([(key, value)] * rng.choice((2, 3, 10, 100, 1000)))
            case _:  # a repeat inside a nested object only: legal at the top level
                fields.append(('"x"', "{" + f"{key}:1,{key}:2" + "}"))
        return self._out(f"mut/duplicate_key/{variant}", technology_id, render(fields))

    def _string_field(self, fields: Fields) -> int:
        strings = [i for i, (_, v) in enumerate(fields) if v.startswith('"')]
        return self.rng.choice(strings) if strings else 0

    def _splice(self, fields: Fields, in_key: bool = False) -> tuple[str, str]:
        """Mark a place inside a string (a value, or a key) for bytes to go in."""
        rng = self.rng
        i = self._string_field(fields)
        key, value = fields[i]
        target = key if in_key else value
        inside = target[1:-1] if target.startswith('"') else target
        at = rng.randint(0, len(inside))
        marked = '"' + inside[:at] + _SPLICE + inside[at:] + '"'
        fields[i] = (marked, value) if in_key else (key, marked)
        return render(fields), json.loads(key)

    def _encoding(self) -> Generated:
        rng = self.rng
        technology_id, fields = self._base()
        family = rng.choice(
            ("whole", "bad_utf8", "escape", "raw_text", "raw_control", "bad_utf8_outside")
        )
        if family == "whole":
            text = render(fields)
            variant = rng.choice(
                (
                    "bom",
                    "bom_twice",
                    "utf-16",
                    "utf-16-le",
                    "utf-16-be",
                    "utf-32",
                    "utf-32-le",
                    "utf-32-be",
                    "utf16_bom_utf8_body",
                    "latin-1",
                    "nul_prefix",
                    "nul_suffix",
                    "nul_between_tokens",
                )
            )
            match variant:
                case "bom":
                    value = b"\xef\xbb\xbf" + to_bytes(text)
                case "bom_twice":
                    value = b"\xef\xbb\xbf\xef\xbb\xbf" + to_bytes(text)
                case "utf16_bom_utf8_body":
                    value = b"\xff\xfe" + to_bytes(text)
                case "latin-1":
                    fields.append(('"name"', jstr("Pin máy bay", ascii_only=False)))
                    value = render(fields).encode("latin-1", "replace")
                case "nul_prefix":
                    value = b"\x00" + to_bytes(text)
                case "nul_suffix":
                    value = to_bytes(text) + b"\x00"
                case "nul_between_tokens":
                    value = to_bytes(text.replace(",", ",\x00", 1))
                case _:
                    value = text.encode(variant, "surrogatepass")
            return self._out(f"mut/encoding/whole/{variant}", technology_id, value)
        if family == "bad_utf8_outside":
            name = rng.choice(list(_BAD_UTF8))
            raw = to_bytes(render(fields))
            at = rng.randint(0, len(raw))
            return self._out(
                f"mut/encoding/{family}/{name}",
                technology_id,
                raw[:at] + _BAD_UTF8[name] + raw[at:],
            )
        in_key = rng.random() < 0.15
        text, field = self._splice(fields, in_key)
        if family == "bad_utf8":
            name = rng.choice(list(_BAD_UTF8))
            payload = _BAD_UTF8[name]
        elif family == "escape":
            name = rng.choice(list(_ESCAPES))
            payload = _ESCAPES[name].encode()
        elif family == "raw_text":
            name = rng.choice(list(_RAW_TEXT))
            payload = to_bytes(_RAW_TEXT[name])
        else:
            name = rng.choice(list(_RAW_CONTROLS))
            payload = _RAW_CONTROLS[name]
        where = "key" if in_key else field
        value = to_bytes(text).replace(_SPLICE_BYTES, payload, 1)
        return self._out(f"mut/encoding/{family}/{name}/{where}", technology_id, value)

    def _size(self) -> Generated:
        rng = self.rng
        technology_id, fields = self._base()
        target = rng.choice(
            (
                LIMIT - 1,
                LIMIT,
                LIMIT + 1,
                LIMIT - 1,
                LIMIT,
                LIMIT + 1,
                LIMIT + rng.randint(-64, 64),
                rng.randint(1000, 20000),
                rng.choice((1_000_000, 1_048_576)) if rng.random() < 0.1 else LIMIT,
            )
        )
        method = rng.choice(("whitespace", "string", "escapes", "array", "keys", "duplicates"))
        unit = b" "
        match method:
            case "whitespace":
                text = (
                    render(fields, pad=_SPLICE) if rng.random() < 0.5 else _SPLICE + render(fields)
                )
            case "string":
                fields.append(('"name"', '"' + _SPLICE + '"'))
                text = render(fields)
                unit = b"A"
            case "escapes":
                fields.append(('"name"', '"' + _SPLICE + '"'))
                text = render(fields)
                unit = b"\\u0041"
            case "array":
                fields.append(('"pad"', "[" + _SPLICE + "0]"))
                text = render(fields)
                unit = b"1,"
            case "keys":
                text = "{" + _SPLICE + render(fields)[1:]
                unit = b'"k0000000":1,'
            case _:
                last_key, last_value = fields[-1]
                text = "{" + _SPLICE + render(fields)[1:]
                unit = f"{last_key}:{last_value},".encode()
        raw = to_bytes(text)
        need = max(0, target - (len(raw) - len(_SPLICE_BYTES)))
        pad = unit * (need // len(unit))
        pad += (b" " if method in ("whitespace", "array", "keys", "duplicates") else b"A") * (
            need - len(pad)
        )
        value = raw.replace(_SPLICE_BYTES, pad, 1)
        size = {LIMIT - 1: "limit-1", LIMIT: "limit", LIMIT + 1: "limit+1"}.get(len(value), "other")
        return self._out(f"mut/size/{method}/{size}", technology_id, value)

    def _random_json(self, depth: int = 0) -> object:
        """A random JSON value (NaN and infinities included), shallow."""
        rng = self.rng
        roll = rng.random()
        if depth >= 4 or roll < 0.5:
            return rng.choice(
                (
                    None,
                    True,
                    False,
                    0,
                    -1,
                    rng.randint(-(2**70), 2**70),
                    rng.random(),
                    float("nan"),
                    float("inf"),
                    "",
                    self._random_id(),
                    rng.choice(_TAGS),
                    "\x00\u202e\ud800",
                )
            )
        if roll < 0.75:
            return [self._random_json(depth + 1) for _ in range(rng.randint(0, 4))]
        keys = rng.choices((*_FIELD_NAMES, "x", "", "Type"), k=rng.randint(0, 5))
        return {key: self._random_json(depth + 1) for key in keys}

    def _unknown_field(self) -> Generated:
        rng = self.rng
        technology_id, fields = self._base()
        variant = rng.choice(
            (
                "plain",
                "case",
                "camel",
                "space",
                "empty",
                "nul",
                "proto",
                "dollar",
                "long",
                "unicode",
                "null_value",
            )
        )
        name = {
            "plain": "comment",
            "case": "Type",
            "camel": "technologyId",
            "space": "price ",
            "empty": "",
            "nul": "participant_id\x00",
            "proto": "__proto__",
            "dollar": "$type",
            "long": "k" * 5000,
            "unicode": "giá",
            "null_value": "note",
        }[variant]
        value = "null" if variant == "null_value" else json.dumps(self._random_json())
        fields.insert(rng.randint(0, len(fields)), (jstr(name), value))
        return self._out(f"mut/unknown_field/{variant}", technology_id, render(fields))

    def _wrong_type(self) -> Generated:
        rng = self.rng
        technology_id, fields = self._base()
        i = rng.randrange(len(fields))
        variant, token = rng.choice(
            (
                ("string_number", '"10"'),
                ("int", "10"),
                ("float", "10.5"),
                ("null", "null"),
                ("true", "true"),
                ("false", "false"),
                ("empty_array", "[]"),
                ("empty_object", "{}"),
                ("array_of_value", "[" + fields[i][1] + "]"),
                ("object", '{"a":1}'),
                ("side_string", '"bid"'),
                ("negative", "-1"),
            )
        )
        fields[i] = (fields[i][0], token)
        return self._out(
            f"mut/wrong_type/{json.loads(fields[i][0])}/{variant}", technology_id, render(fields)
        )

    def _missing_field(self) -> Generated:
        rng = self.rng
        technology_id, fields = self._base()
        roll = rng.random()
        if roll < 0.1:
            return self._out("mut/missing_field/all", technology_id, "{}")
        if roll < 0.3:
            fields = [f for f in fields if f[0] != '"type"']
            variant = "type"
        else:
            for _ in range(rng.choice((1, 1, 1, 2, 3))):
                if fields:
                    fields.pop(rng.randrange(len(fields)))
            variant = "some"
        return self._out(f"mut/missing_field/{variant}", technology_id, render(fields))

    def _empty_string(self) -> Generated:
        rng = self.rng
        technology_id, fields = self._base()
        i = self._string_field(fields)
        fields[i] = (fields[i][0], '""')
        field = json.loads(fields[i][0])
        if field == "technology_id" and rng.random() < 0.5:
            return Generated(f"mut/empty_string/{field}/empty_key", b"", to_bytes(render(fields)))
        return self._out(f"mut/empty_string/{field}", technology_id, render(fields))

    def _whitespace(self) -> Generated:
        rng = self.rng
        technology_id, fields = self._base()
        variant = rng.choice(
            (
                "json_mix",
                "leading_trailing",
                "crlf",
                "vertical_tab",
                "form_feed",
                "nbsp",
                "ideographic",
                "line_separator",
                "bom_inside",
                "value_padded",
                "only_whitespace",
            )
        )
        spaces = {
            "vertical_tab": "\x0b",
            "form_feed": "\x0c",
            "nbsp": "\u00a0",
            "ideographic": "\u3000",
            "line_separator": "\u2028",
            "bom_inside": "\ufeff",
        }

        def gap() -> str:
            return "".join(rng.choices((" ", "\t", "\n", "\r"), k=rng.randint(0, 3)))

        match variant:
            case "json_mix":
                text = render(fields, gap() + "," + gap(), gap() + ":" + gap(), gap())
            case "leading_trailing":
                text = gap() + render(fields) + gap()
            case "crlf":
                text = render(fields, ",\r\n  ", ": ", "\r\n")
            case "value_padded":
                i = self._string_field(fields)
                inner = json.loads(fields[i][1])
                padded = rng.choice((" " + inner, inner + " ", "\t" + inner, inner + "\n"))
                fields[i] = (fields[i][0], jstr(padded))
                text = render(fields)
            case "only_whitespace":
                text = gap() or " "
            case _:
                text = render(fields, "," + spaces[variant], ":")
        return self._out(f"mut/whitespace/{variant}", technology_id, text)

    def _trailing_garbage(self) -> Generated:
        rng = self.rng
        technology_id, fields = self._base()
        text = render(fields)
        variant, tail = rng.choice(
            (
                ("letter", b"x"),
                ("brace", b"}"),
                ("bracket", b"]"),
                ("comma", b","),
                ("empty_object", b"{}"),
                ("second_document", to_bytes(text)),
                ("ndjson", b"\n" + to_bytes(text)),
                ("nul", b"\x00"),
                ("newline_nul", b"\n\x00"),
                ("line_comment", b" // c"),
                ("block_comment", b"/*c*/"),
                ("random_bytes", rng.randbytes(rng.randint(1, 16))),
                ("whitespace_only", b" \r\n\t"),
                ("leading_garbage", b""),
                ("hijack_prefix", b""),
            )
        )
        raw = to_bytes(text)
        if variant == "leading_garbage":
            value = b"x" + raw
        elif variant == "hijack_prefix":
            value = b")]}'\n" + raw
        else:
            value = raw + tail
        return self._out(f"mut/trailing_garbage/{variant}", technology_id, value)

    def _truncate(self) -> Generated:
        rng = self.rng
        technology_id, fields = self._base()
        if rng.random() < 0.3:  # cut through a multi-byte character too
            fields.append(('"name"', jstr("Pin máy bay 技術", ascii_only=False)))
        raw = to_bytes(render(fields))
        at = rng.randrange(len(raw))
        return self._out("mut/truncate/prefix", technology_id, raw[:at])

    def _tombstone(self) -> Generated:
        technology_id, _ = self._base()
        if self.rng.random() < 0.2:
            return Generated("mut/tombstone/no_key", None, None)
        return Generated("mut/tombstone/keyed", technology_id.encode(), None)

    def _key(self) -> Generated:
        rng = self.rng
        technology_id, fields = self._base()
        raw = technology_id.encode()
        variant = rng.choice(
            (
                "none",
                "empty",
                "long_300",
                "huge_100k",
                "invalid_utf8",
                "truncated_utf8",
                "nul_suffix",
                "swapped_case",
                "space_suffix",
                "other_technology",
                "utf16",
                "replacement_char",
                "bom",
                "json_quoted",
            )
        )
        key: bytes | None
        match variant:
            case "none":
                key = None
            case "empty":
                key = b""
            case "long_300":
                key = raw + b"x" * 300
            case "huge_100k":
                key = b"K" * 100_000
            case "invalid_utf8":
                key = b"\xff" + raw
            case "truncated_utf8":
                key = raw + b"\xc3"
            case "nul_suffix":
                key = raw + b"\x00"
            case "swapped_case":
                key = raw.swapcase() if raw.swapcase() != raw else raw + b"x"
            case "space_suffix":
                key = raw + b" "
            case "other_technology":
                key = rng.choice([t for t in self._home if t != technology_id] or ["zz"]).encode()
            case "utf16":
                key = technology_id.encode("utf-16")
            case "replacement_char":
                key = raw[:-1] + "\ufffd".encode()
            case "bom":
                key = b"\xef\xbb\xbf" + raw
            case _:
                key = b'"' + raw + b'"'
        return Generated(f"mut/key/{variant}", key, to_bytes(render(fields)))

    def _wrong_partition(self) -> Generated:
        if not self._foreign:
            return self._key()
        rng = self.rng
        technology_id = rng.choice(self._foreign)
        _, _, command = self._command()
        command["technology_id"] = technology_id
        return self._out("mut/wrong_partition/foreign", technology_id, render(_tokens(command)))

    def _type_tag(self) -> Generated:
        rng = self.rng
        technology_id, fields = self._base()
        tag_at = next(i for i, (k, _) in enumerate(fields) if k == '"type"')
        tag = json.loads(fields[tag_at][1])
        variant, token = rng.choice(
            (
                ("unknown", '"place"'),
                ("camel", '"PlaceOrder"'),
                ("upper", jstr(tag.upper())),
                ("trailing_space", jstr(tag + " ")),
                ("nul_suffix", jstr(tag + "\x00")),
                ("empty", '""'),
                ("null", "null"),
                ("number", "1"),
                ("true", "true"),
                ("array", jstr(tag).join("[]")),
                ("object", '{"type":' + jstr(tag) + "}"),
                ("escaped", '"' + tag.replace("_", "\\u005f") + '"'),
                ("other_tag", jstr(rng.choice([t for t in _TAGS if t != tag]))),
                ("last", ""),
                ("middle", ""),
            )
        )
        if variant == "last":
            fields.append(fields.pop(tag_at))
        elif variant == "middle":
            fields.insert(len(fields) // 2, fields.pop(tag_at))
        else:
            fields[tag_at] = ('"type"', token)
        return self._out(f"mut/type_tag/{variant}", technology_id, render(fields))

    def _syntax(self) -> Generated:
        rng = self.rng
        technology_id, fields = self._base()
        text = render(fields)
        variant = rng.choice(
            (
                "single_quotes",
                "unquoted_keys",
                "trailing_comma",
                "missing_comma",
                "missing_colon",
                "double_comma",
                "leading_comma",
                "comment",
                "top_array",
                "top_scalar",
                "open_only",
                "close_only",
                "empty",
                "nested_document",
                "python_repr",
                "number_key",
                "missing_value",
                "bare_word",
                "unterminated_string",
                "unterminated_escape",
            )
        )
        match variant:
            case "single_quotes":
                text = text.replace('"', "'")
            case "unquoted_keys":
                text = render([(json.loads(k), v) for k, v in fields])
            case "trailing_comma":
                text = text[:-1] + ",}"
            case "missing_comma":
                text = text.replace(",", " ", 1)
            case "missing_colon":
                text = text.replace(":", " ", 1)
            case "double_comma":
                text = text.replace(",", ",,", 1)
            case "leading_comma":
                text = "{," + text[1:]
            case "comment":
                text = text.replace(",", ",/* c */", 1)
            case "top_array":
                text = "[" + text + "]"
            case "top_scalar":
                text = rng.choice(("null", "true", "1", '"place_order"', "[]", '""', "-0"))
            case "open_only":
                text = "{"
            case "close_only":
                text = "}"
            case "empty":
                text = ""
            case "nested_document":
                text = '{"command":' + text + "}"
            case "python_repr":
                text = repr({json.loads(k): json.loads(v) for k, v in fields})
            case "number_key":
                text = "{1:2," + text[1:]
            case "missing_value":
                text = text.replace(":", ":,", 1)
            case "bare_word":
                text = render([(k, v.strip('"')) for k, v in fields])
            case "unterminated_string":
                text = text[: text.rfind('"')]
            case _:
                text = text[: text.rfind('"')] + "\\"
        return self._out(f"mut/syntax/{variant}", technology_id, text)

    def _byte_edits(self) -> Generated:
        rng = self.rng
        technology_id, fields = self._base()
        raw = bytearray(to_bytes(render(fields)))
        for _ in range(rng.choice((1, 1, 2, 3, 8))):
            if not raw:
                break
            at = rng.randrange(len(raw))
            edit = rng.randrange(6)
            if edit == 0:
                raw[at] ^= 1 << rng.randrange(8)
            elif edit == 1:
                raw[at] = rng.randrange(256)
            elif edit == 2:
                raw.insert(at, rng.randrange(256))
            elif edit == 3:
                del raw[at]
            elif edit == 4:
                end = min(len(raw), at + rng.randint(1, 16))
                raw[at:at] = raw[at:end]
            else:
                other = rng.randrange(len(raw))
                raw[at], raw[other] = raw[other], raw[at]
        return self._out("mut/byte_edits/random", technology_id, bytes(raw))

    def _scanner(self) -> Generated:
        """Aimed at pre-scanners (bracket counting, string skipping by regex): quotes and
        backslashes that never close a string, behind or inside brackets. Kept rare and mostly
        below 8 KB: a scanner that is quadratic on them takes seconds per record."""
        rng = self.rng
        technology_id, fields = self._base()
        unit_name, unit = rng.choice(
            (
                ("escaped_quote", '\\"'),
                ("quote_backslash", '"\\'),
                ("quote_letter", '"a'),
                ("backslashes", "\\\\"),
                ("quote_bracket", '"['),
                ("bracket_quote", '["'),
                ("key_quote", '":"'),
                ("escape_u", "\\u"),
            )
        )
        depth = rng.choice((0, 1, 31, 32, 33, 40, 100, 1000))
        size = LIMIT if rng.random() < 0.02 else int(2 ** rng.uniform(9, 13))
        where = rng.choice(("whole", "unknown_field", "after_record"))
        if where == "whole":
            head = "[" * depth + '"'
        elif where == "unknown_field":
            head = render(fields)[:-1] + ',"x":' + "[" * depth + '"'
        else:
            head = render(fields) + "[" * depth
        body = unit * max(0, (size - len(head)) // len(unit))
        return self._out(f"mut/scanner/{unit_name}/{where}", technology_id, head + body)

    # ---------------------------------------------------------------- noise

    def _random(self) -> Generated:
        rng = self.rng
        key = rng.choice((None, b"", rng.choice(self._home).encode(), rng.randbytes(8)))
        variant = rng.choice(("bytes", "bytes", "token_soup", "json"))
        if variant == "bytes":
            length = rng.choice(
                (
                    rng.randint(0, 16),
                    rng.randint(0, 256),
                    rng.randint(0, 4096),
                    rng.choice((LIMIT - 1, LIMIT, LIMIT + 1)),
                )
            )
            return Generated("random/bytes", key, rng.randbytes(length))
        if variant == "token_soup":
            tokens = (
                "{",
                "}",
                "[",
                "]",
                ",",
                ":",
                '"type"',
                '"place_order"',
                '"cancel_order"',
                '"technology_id"',
                '"quantity"',
                '"T-1"',
                "1",
                "-0",
                "1e400",
                "null",
                "true",
                '"\\ud800"',
                '"\\u0000"',
                "\\",
                '"',
                " ",
                "\n",
            )
            soup = "".join(rng.choices(tokens, k=rng.randint(1, 400)))
            return Generated("random/token_soup", key, to_bytes(soup))
        document = self._random_json()
        if isinstance(document, dict) and rng.random() < 0.5:
            document["type"] = rng.choice(_TAGS)
        return Generated("random/json", key, to_bytes(json.dumps(document)))


def _tokens(command: dict[str, object], ascii_only: bool = True) -> Fields:
    return [(jstr(k), json.dumps(v, ensure_ascii=ascii_only)) for k, v in command.items()]


def stream(
    seed: int, partition: int = 0, partition_count: int | None = None
) -> Iterator[tuple[FuzzRecord, str]]:
    """Endless (record, kind) pairs for one partition: offsets increase (with the odd gap, as
    compaction and transaction markers leave) and timestamps strictly increase."""
    rng = random.Random(f"techx-fuzz/{seed}/{partition}/{partition_count}")
    fuzzer = CommandFuzzer(rng, partition, partition_count)
    offset = 0
    timestamp = FIRST_TIMESTAMP_MS
    while True:
        generated = fuzzer.next()
        yield FuzzRecord(offset, timestamp, generated.key, generated.value), generated.kind
        offset += 1 if rng.random() < 0.98 else rng.randint(2, 4)
        timestamp += rng.randint(1, 5)
