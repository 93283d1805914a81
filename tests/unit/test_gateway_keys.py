"""API keys: their format, the salted hash, and the gateway's check with its caches."""

from __future__ import annotations

import asyncio

import pytest

from engine.gateway.errors import RateLimitedError, UnauthorizedError
from engine.gateway.keys import (
    FAILURE_BURST,
    Authenticator,
    HashedSecret,
    StoredKey,
    format_key,
    hash_secret,
    new_key_id,
    new_secret,
    parse_key,
    secret_matches,
)

#: scrypt's cost parameter for tests: the real one (2^14) costs ~50 ms a check.
CHEAP_N = 2**4


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Keys:
    """A key table in a dict, counting lookups; and a verifier counting scrypt runs."""

    def __init__(self) -> None:
        self.rows: dict[str, StoredKey] = {}
        self.lookups = 0
        self.verifications = 0

    def add(self, participant_id: str) -> str:
        key_id, secret = new_key_id(), new_secret()
        self.rows[key_id] = StoredKey(
            key_id, participant_id, hash_secret(secret, n=CHEAP_N), revoked=False
        )
        return format_key(key_id, secret)

    def rotate(self, key: str) -> str:
        key_id = key.split("_")[1]
        secret = new_secret()
        old = self.rows[key_id]
        self.rows[key_id] = StoredKey(
            key_id, old.participant_id, hash_secret(secret, n=CHEAP_N), old.revoked
        )
        return format_key(key_id, secret)

    def revoke(self, key: str) -> None:
        key_id = key.split("_")[1]
        old = self.rows[key_id]
        self.rows[key_id] = StoredKey(key_id, old.participant_id, old.hashed, revoked=True)

    async def lookup(self, key_id: str) -> StoredKey | None:
        self.lookups += 1
        await asyncio.sleep(0)
        return self.rows.get(key_id)

    async def verify(self, secret: str, hashed: HashedSecret) -> bool:
        self.verifications += 1
        await asyncio.sleep(0)
        return secret_matches(secret, hashed)


def _authenticator(keys: Keys, clock: Clock, cache_s: float = 5.0) -> Authenticator:
    return Authenticator(keys.lookup, cache_s, clock, keys.verify)


def test_a_key_is_techx_id_secret_and_parses_back() -> None:
    """format_key and parse_key agree; the secret may itself hold underscores."""
    key_id, secret = new_key_id(), "a_b-" + "c" * 39
    key = format_key(key_id, secret)
    parsed = parse_key(key)
    assert parsed is not None
    assert (parsed.key_id, parsed.secret) == (key_id, secret)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "techx",
        "techx__",
        "other_0123456789abcdef_" + "a" * 43,
        "techx_0123456789ABCDEF_" + "a" * 43,  # key ids are lowercase hex
        "techx_0123456789abcde_" + "a" * 43,
        "techx_0123456789abcdef_" + "a" * 42,
        "techx_0123456789abcdef_" + "a" * 42 + "!",
        "techx_0123456789abcdef_" + "a" * 43 + "\n",
    ],
)
def test_malformed_keys_do_not_parse(text: str) -> None:
    """Anything but techx_<16 hex>_<43 url-safe characters> is no key at all."""
    assert parse_key(text) is None


def test_the_hash_is_salted_and_only_the_secret_matches_it() -> None:
    """Two hashes of one secret differ (salt); the secret matches, a neighbour does not."""
    secret = new_secret()
    first, second = hash_secret(secret, n=CHEAP_N), hash_secret(secret, n=CHEAP_N)
    assert first.salt != second.salt
    assert first.digest != second.digest
    assert first.scheme == "scrypt:n=16,r=8,p=1"
    assert secret_matches(secret, first)
    assert secret_matches(secret, second)
    assert not secret_matches(secret[:-1] + ("A" if secret[-1] != "A" else "B"), first)


def test_new_keys_use_the_interactive_scrypt_cost() -> None:
    """Keys made by `techx keys` cost scrypt n=2^14 (what a stolen table costs to attack)."""
    assert hash_secret("x" * 43).scheme == "scrypt:n=16384,r=8,p=1"


def test_an_unknown_hash_scheme_matches_nothing() -> None:
    """A row written by a future version with another scheme is refused, not misread."""
    hashed = hash_secret("s", n=CHEAP_N)
    assert not secret_matches("s", HashedSecret("argon2id:m=1", hashed.salt, hashed.digest))


async def test_a_good_key_gives_its_participant_and_scrypt_runs_once() -> None:
    """The first request runs scrypt; later ones compare a SHA-256 memo, and lookups are cached
    until cache_s passes."""
    keys, clock = Keys(), Clock()
    key = keys.add("buyer-05")
    authenticator = _authenticator(keys, clock)
    for _ in range(5):
        identity = await authenticator.authenticate(key)
        assert identity.participant_id == "buyer-05"
        assert identity.key_id == key.split("_")[1]
    assert (keys.lookups, keys.verifications) == (1, 1)
    clock.now += 5.0
    await authenticator.authenticate(key)
    assert (keys.lookups, keys.verifications) == (2, 1), "same row: the memo still holds"


@pytest.mark.parametrize("presented", [None, "", "Bearer", "techx_nothing"])
async def test_no_key_or_a_malformed_one_is_401_without_a_lookup(presented: str | None) -> None:
    """A missing or malformed key is refused before PostgreSQL is asked anything."""
    keys = Keys()
    with pytest.raises(UnauthorizedError):
        await _authenticator(keys, Clock()).authenticate(presented)
    assert keys.lookups == 0


async def test_an_unknown_key_id_is_401_and_remembered_as_unknown() -> None:
    """An unknown id is refused; asking again within cache_s does not ask PostgreSQL again."""
    keys = Keys()
    unknown = format_key("0" * 16, new_secret())
    authenticator = _authenticator(keys, Clock())
    for _ in range(3):
        with pytest.raises(UnauthorizedError, match="unknown or revoked"):
            await authenticator.authenticate(unknown)
    assert keys.lookups == 1


async def test_a_rotated_away_secret_is_401_once_the_change_is_known() -> None:
    """After a rotation (told by forget, as the notification does) the old secret fails and
    the new one works, even though the old one was memoised."""
    keys, clock = Keys(), Clock()
    key = keys.add("buyer-05")
    authenticator = _authenticator(keys, clock, cache_s=3600)
    await authenticator.authenticate(key)
    rotated = keys.rotate(key)
    authenticator.forget(key.split("_")[1])
    with pytest.raises(UnauthorizedError, match="wrong secret"):
        await authenticator.authenticate(key)
    assert (await authenticator.authenticate(rotated)).participant_id == "buyer-05"


async def test_a_revoked_key_is_401_within_cache_s_even_without_a_notification() -> None:
    """A lost notification delays a revocation by at most the cache's lifetime."""
    keys, clock = Keys(), Clock()
    key = keys.add("buyer-05")
    authenticator = _authenticator(keys, clock, cache_s=2.0)
    await authenticator.authenticate(key)
    keys.revoke(key)
    await authenticator.authenticate(key)  # still cached: no notification came
    clock.now += 2.0
    with pytest.raises(UnauthorizedError, match="unknown or revoked"):
        await authenticator.authenticate(key)


async def test_forget_all_drops_every_cached_row() -> None:
    """After a reconnection of the listener, every key is read again."""
    keys, clock = Keys(), Clock()
    key = keys.add("buyer-05")
    authenticator = _authenticator(keys, clock, cache_s=3600)
    await authenticator.authenticate(key)
    keys.revoke(key)
    authenticator.forget_all()
    with pytest.raises(UnauthorizedError):
        await authenticator.authenticate(key)


async def test_a_change_during_a_lookup_is_not_hidden_by_caching_the_old_row() -> None:
    """A forget that arrives while a lookup is under way keeps that (older) row out of the
    cache, so the next request reads the change."""
    keys, clock = Keys(), Clock()
    key = keys.add("buyer-05")
    gate, reading = asyncio.Event(), asyncio.Event()

    async def slow_lookup(key_id: str) -> StoredKey | None:
        row = keys.rows.get(key_id)  # what a query begun before the change reads
        reading.set()
        await gate.wait()
        return row

    authenticator = Authenticator(slow_lookup, 3600, clock, keys.verify)
    first = asyncio.create_task(authenticator.authenticate(key))
    await reading.wait()
    keys.revoke(key)
    authenticator.forget(key.split("_")[1])
    gate.set()
    assert (await first).participant_id == "buyer-05", "answered with what it read"
    with pytest.raises(UnauthorizedError, match="unknown or revoked"):
        await authenticator.authenticate(key)


async def test_concurrent_requests_share_one_lookup_and_one_scrypt_run() -> None:
    """Fifty requests of a cold key cost one lookup and one verification, not fifty."""
    keys = Keys()
    key = keys.add("buyer-05")
    authenticator = _authenticator(keys, Clock())
    identities = await asyncio.gather(*(authenticator.authenticate(key) for _ in range(50)))
    assert {i.participant_id for i in identities} == {"buyer-05"}
    assert (keys.lookups, keys.verifications) == (1, 1)


async def test_guessing_secrets_is_slowed_to_a_few_scrypt_runs_then_429() -> None:
    """Wrong secrets for one key id run scrypt up to the failure burst, then get 429 without
    running it; the right secret, already memoised, still works meanwhile."""
    keys, clock = Keys(), Clock()
    key = keys.add("buyer-05")
    authenticator = _authenticator(keys, clock)
    await authenticator.authenticate(key)
    guesses = [format_key(key.split("_")[1], new_secret()) for _ in range(int(FAILURE_BURST) + 5)]
    outcomes = []
    for guess in guesses:
        with pytest.raises((UnauthorizedError, RateLimitedError)) as refused:
            await authenticator.authenticate(guess)
        outcomes.append(type(refused.value))
    assert outcomes.count(UnauthorizedError) == FAILURE_BURST
    assert outcomes[-1] is RateLimitedError
    assert keys.verifications == 1 + FAILURE_BURST
    assert (await authenticator.authenticate(key)).participant_id == "buyer-05"
