"""Render the wire contract as JSON Schema files: ``python -m schemas.generate [--check]``.

Front-ends are written in any language, but they all publish the same commands and read
the same events. The msgspec structs in :mod:`schemas.commands` and :mod:`schemas.events`
are the one source of truth; this module turns them into ``schemas/json/*.schema.json`` so
a TypeScript, Go or Java front-end can validate and generate code against the same
contract the engine decodes with, instead of a hand-copied description that drifts.

Two things are added to what msgspec renders: the portable keywords a type publishes
instead of its Python-only checks (:data:`schemas.common.PUBLISHED`), and rules across
fields that msgspec cannot express (``_RULES``, e.g. a limit order needs a price). Every
``pattern`` is portable: no lookaround, so RE2 (Go), Rust and ECMA-262 engines compile it.

The output is deterministic (sorted keys, fixed indentation, docstrings normalised), so
the committed files change only when the contract does. ``--check`` writes nothing and
exits 1 naming the files that are stale, for CI; a unit test does the same comparison.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from schemas.commands import Command, PlaceOrder
from schemas.common import PUBLISHED, OrderType
from schemas.events import Event, MarketView

#: Where the committed schema files live (shipped in the wheel, see pyproject.toml).
SCHEMA_DIR = Path(__file__).resolve().parent / "json"

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

#: file name -> (root type, $id, title, description)
_FAMILIES: dict[str, tuple[object, str, str, str]] = {
    "commands.schema.json": (
        Command,
        "urn:techx:schema:commands.v1",
        "TechX commands (techx.commands.v1)",
        "Commands a front-end publishes to techx.commands.v1 as JSON, keyed by "
        "technology_id; a tagged union on `type`.",
    ),
    "events.schema.json": (
        Event,
        "urn:techx:schema:events.v1",
        "TechX events (techx.deals.v1, techx.executions.v1)",
        "Events the engine publishes: deals to techx.deals.v1, everything else to "
        "techx.executions.v1; a tagged union on `type`, ordered per technology by `seq`.",
    ),
    "marketdata.schema.json": (
        MarketView,
        "urn:techx:schema:marketdata.v1",
        "TechX market data (techx.marketdata.v1)",
        "Public views of each technology, keyed by technology_id on a compacted topic.",
    ),
}


def _publish(node: Any) -> Any:
    """Put the keywords under each ``PUBLISHED`` key in place of those msgspec rendered.

    msgspec writes a Meta's own constraints over its ``extra_json_schema``, so a type whose
    Python check is not portable (a ``\\Z`` anchor, int64 bounds under a business range)
    keeps the portable keywords there; see :data:`schemas.common.PUBLISHED`.
    """
    if isinstance(node, dict):
        merged = {**node, **node.get(PUBLISHED, {})}
        return {key: _publish(value) for key, value in merged.items() if key != PUBLISHED}
    if isinstance(node, list):
        return [_publish(item) for item in node]
    return node


def _price_follows_order_type(schema: dict[str, Any]) -> None:
    """A limit order (the default type) needs an integer price; a market order has none.

    msgspec cannot make one field depend on another's value, and the engine leaves this rule
    to the market (``price_required``, ``price_not_allowed``) so that a front-end gets a
    specific rejection. The schema still states it, for validators in other languages.
    """
    place_order = schema["$defs"][PlaceOrder.__name__]
    if place_order["properties"]["order_type"].get("default") != OrderType.LIMIT:
        raise ValueError("PlaceOrder.order_type no longer defaults to limit; revise this rule")
    if "allOf" in place_order:
        raise ValueError("PlaceOrder already has allOf; merge the price rule into it")
    place_order["allOf"] = [
        {
            "description": "A limit order (order_type limit, or absent) has an integer price.",
            "if": {"properties": {"order_type": {"const": OrderType.LIMIT.value}}},
            "then": {"properties": {"price": {"type": "integer"}}, "required": ["price"]},
        },
        {
            "description": "A market order has no price: absent or null.",
            "if": {
                "properties": {"order_type": {"const": OrderType.MARKET.value}},
                "required": ["order_type"],
            },
            "then": {"properties": {"price": {"type": "null"}}},
        },
    ]


#: file name -> the rules msgspec cannot express, added to the rendered schema in this order.
_RULES: dict[str, tuple[Callable[[dict[str, Any]], None], ...]] = {
    "commands.schema.json": (_price_follows_order_type,),
}


def _normalise_descriptions(node: object) -> object:
    """Dedent every ``description`` the way Python 3.13+ already does for docstrings.

    msgspec copies class docstrings verbatim, and whether their continuation lines keep
    their indentation depends on the Python version that compiled them; cleaning them
    here keeps the rendered files identical on every supported Python.
    """
    if isinstance(node, dict):
        return {
            key: inspect.cleandoc(value)
            if key == "description" and isinstance(value, str)
            else _normalise_descriptions(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_normalise_descriptions(item) for item in node]
    return node


def _render(name: str, root: object, schema_id: str, title: str, description: str) -> str:
    schema: dict[str, Any] = _publish(msgspec.json.schema(root))
    for rule in _RULES.get(name, ()):
        rule(schema)
    document: dict[str, object] = {
        **schema,
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": schema_id,
        "title": title,
        "description": description,
    }
    normalised = _normalise_descriptions(document)
    return dump_json(normalised)


def dump_json(document: object) -> str:
    """Sorted, two-space JSON that keeps readable text (Vietnamese names) as it is, but writes
    every invisible character (controls, bidi marks, line separators, odd spaces) as a
    ``\\uXXXX`` escape: parsers read the same pattern, and no editor or code review tool can
    silently drop or reorder what it cannot show."""
    text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False)
    return "".join(_visible(character) for character in text) + "\n"


def _visible(character: str) -> str:
    if character == "\n" or character.isprintable():  # newlines here are layout, not data
        return character
    return f"\\u{ord(character):04x}"


def render_schemas() -> dict[str, str]:
    """The text of every schema file, by file name: what ``schemas/json/`` must contain."""
    return {
        name: _render(name, root, schema_id, title, description)
        for name, (root, schema_id, title, description) in _FAMILIES.items()
    }


def stale_files(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of the schema files in ``directory`` that are missing or differ from the render."""
    stale = []
    for name, text in render_schemas().items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale


def write_schemas(directory: Path = SCHEMA_DIR) -> list[str]:
    """Write every schema file into ``directory``; returns the names that changed."""
    directory.mkdir(parents=True, exist_ok=True)
    changed = stale_files(directory)
    for name, text in render_schemas().items():
        if name in changed:
            (directory / name).write_text(text, encoding="utf-8", newline="\n")
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m schemas.generate",
        description="Write the JSON Schema files of the TechX wire contract.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 and name the stale files if any file is out of date",
    )
    parser.add_argument(
        "--directory",
        type=Path,
        default=SCHEMA_DIR,
        help=f"where the schema files live (default: {SCHEMA_DIR})",
    )
    args = parser.parse_args(argv)
    directory: Path = args.directory
    if args.check:
        stale = stale_files(directory)
        if stale:
            for name in stale:
                print(f"stale: {directory / name}", file=sys.stderr)
            print("run `python -m schemas.generate` and commit the result", file=sys.stderr)
            return 1
        print(f"schemas in {directory} are up to date")
        return 0
    changed = write_schemas(directory)
    for name in render_schemas():
        state = "written" if name in changed else "unchanged"
        print(f"{state}: {directory / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
