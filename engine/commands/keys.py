"""``techx keys …``: API keys of the gateway, created, rotated, revoked and listed.

A secret is printed once, on the last line of ``create`` and ``rotate`` (``| tail -n 1`` in a
script); only its salted hash is stored. Every change is seen by running gateways at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import asyncpg
import msgspec

from engine.errors import ApiKeyError, SchemaMissingError, StoreRefusedError
from engine.gateway.keys import format_key, hash_secret, new_key_id, new_secret
from engine.settings import Settings
from engine.store import api_keys
from engine.store.api_keys import ApiKeyRow
from engine.store.connection import connected
from schemas.common import Identifier


@asynccontextmanager
async def _keys_table(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    async with connected(settings.database_url) as connection:
        try:
            yield connection
        except asyncpg.UndefinedTableError as e:
            raise SchemaMissingError("table api_keys is missing: run `techx setup` first") from e
        except asyncpg.PostgresError as e:
            raise StoreRefusedError(f"PostgreSQL refused the key change: {e!r}") from e


async def create_api_key(settings: Settings, participant_id: str) -> tuple[ApiKeyRow, str]:
    """A new key for ``participant_id``: its row and the key itself (the only copy)."""
    try:
        msgspec.convert(participant_id, Identifier)
    except msgspec.ValidationError as e:
        raise ApiKeyError(
            f"{participant_id[:80]!r} is not a participant id: 1-64 letters, digits and . _ : -,"
            " starting with a letter or digit"
        ) from e
    key_id, secret = new_key_id(), new_secret()
    hashed = hash_secret(secret)
    async with _keys_table(settings) as connection:
        row = await api_keys.insert_key(
            connection,
            settings.topics.commands,
            key_id,
            participant_id,
            hashed.scheme,
            hashed.salt,
            hashed.digest,
        )
    return row, format_key(key_id, secret)


async def rotate_api_key(settings: Settings, key_id: str) -> tuple[ApiKeyRow, str]:
    """A new secret for a live key, same id and participant; the old secret stops working."""
    secret = new_secret()
    hashed = hash_secret(secret)
    async with _keys_table(settings) as connection:
        row = await api_keys.replace_secret(
            connection, settings.topics.commands, key_id, hashed.scheme, hashed.salt, hashed.digest
        )
    if row is None:
        raise ApiKeyError(f"no live API key {key_id[:80]!r} (unknown or revoked)")
    return row, format_key(key_id, secret)


async def revoke_api_key(settings: Settings, key_id: str) -> ApiKeyRow:
    async with _keys_table(settings) as connection:
        row = await api_keys.revoke_key(connection, settings.topics.commands, key_id)
    if row is None:
        raise ApiKeyError(f"no API key {key_id[:80]!r}")
    return row


async def keys_command(settings: Settings, action: str, argument: str | None) -> int:
    """The ``techx keys`` subcommands: print, exit 0; refusals raise ApiKeyError (exit 1)."""
    if action == "create":
        assert argument is not None
        row, key = await create_api_key(settings, argument)
        print(f"created API key {row.key_id} for {row.participant_id}; shown once, keep it secret:")
        print(key)
    elif action == "rotate":
        assert argument is not None
        row, key = await rotate_api_key(settings, argument)
        print(f"rotated API key {row.key_id} of {row.participant_id}; the old secret is void:")
        print(key)
    elif action == "revoke":
        assert argument is not None
        row = await revoke_api_key(settings, argument)
        print(f"revoked API key {row.key_id} of {row.participant_id} at {row.revoked_at}")
    else:
        async with _keys_table(settings) as connection:
            rows = await api_keys.list_keys(connection, settings.topics.commands, argument)
        print(
            f"{'key id':<16}  {'participant':<24}  {'created (UTC)':<19}  {'rotated':<19}  revoked"
        )
        for row in rows:
            print(
                f"{row.key_id:<16}  {row.participant_id:<24}  {_when(row.created_at):<19}  "
                f"{_when(row.rotated_at):<19}  {_when(row.revoked_at)}"
            )
    return 0


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S}"
