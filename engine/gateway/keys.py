"""API keys: their format, their salted hash, and the check a gateway runs on each request.

A key is ``techx_<key id>_<secret>``. The key id is not secret (it names the key in logs and
in ``techx keys``): the gateway finds the key's row by it, then checks the secret against a
salted scrypt hash with a constant-time comparison. Only the hash is stored; the secret is
shown once, when the key is created or rotated.

scrypt costs tens of milliseconds on purpose, which would cap a gateway at a few dozen
requests a second; so a secret that matched is remembered (its SHA-256, never the secret)
until the key's row changes or ``cache_s`` passes. A rotation or revocation reaches every
running gateway at once through a PostgreSQL notification (``forget``), and within
``cache_s`` even if that notification was lost.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from engine.gateway.errors import RateLimitedError, UnauthorizedError
from engine.gateway.limits import RateLimits

log = structlog.get_logger()

KEY_PREFIX = "techx"
_KEY_ID = re.compile(r"[0-9a-f]{16}\Z")
#: ``secrets.token_urlsafe(32)``: 43 characters of the URL-safe base64 alphabet.
_SECRET = re.compile(r"[A-Za-z0-9_-]{43}\Z")
#: The scrypt cost of new keys: the interactive-login parameters (16 MiB, ~50 ms).
DEFAULT_SCRYPT_N = 2**14
_SCHEME = re.compile(r"scrypt:n=(\d+),r=(\d+),p=(\d+)\Z")
_DIGEST_BYTES = 32
_SALT_BYTES = 16
#: Wrong secrets one key id may be tried with, per second (and at once), before the gateway
#: stops running scrypt for it: a flood of guesses costs a lookup each, not 50 ms of CPU.
FAILURES_PER_S = 1.0
FAILURE_BURST = 10.0


@dataclass(frozen=True, slots=True)
class PresentedKey:
    key_id: str
    secret: str


@dataclass(frozen=True, slots=True)
class HashedSecret:
    """What is stored of a secret: how it was hashed, with which salt, and the hash."""

    scheme: str
    salt: bytes
    digest: bytes


@dataclass(frozen=True, slots=True)
class StoredKey:
    """A key's row as the gateway needs it."""

    key_id: str
    participant_id: str
    hashed: HashedSecret
    revoked: bool


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request comes from: the participant its key belongs to, and the key."""

    participant_id: str
    key_id: str


def new_key_id() -> str:
    return secrets.token_hex(8)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def format_key(key_id: str, secret: str) -> str:
    return f"{KEY_PREFIX}_{key_id}_{secret}"


def parse_key(text: str) -> PresentedKey | None:
    """The key id and secret of a well-formed key, or None."""
    prefix, _, rest = text.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != KEY_PREFIX or not _KEY_ID.match(key_id) or not _SECRET.match(secret):
        return None
    return PresentedKey(key_id, secret)


def hash_secret(
    secret: str, *, n: int = DEFAULT_SCRYPT_N, salt: bytes | None = None
) -> HashedSecret:
    """A fresh salted scrypt hash of ``secret`` (``n`` is lowered only by tests)."""
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    scheme = f"scrypt:n={n},r=8,p=1"
    return HashedSecret(scheme, salt, _scrypt(secret, salt, n, 8, 1))


def secret_matches(secret: str, hashed: HashedSecret) -> bool:
    """Whether ``secret`` is the one ``hashed`` was made from, compared in constant time."""
    match = _SCHEME.match(hashed.scheme)
    if match is None:
        log.error("api_key_scheme_unknown", scheme=hashed.scheme)
        return False
    n, r, p = (int(group) for group in match.groups())
    return hmac.compare_digest(_scrypt(secret, hashed.salt, n, r, p), hashed.digest)


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        secret.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r, dklen=_DIGEST_BYTES
    )


async def _matches_off_loop(secret: str, hashed: HashedSecret) -> bool:
    """scrypt in a worker thread (it releases the GIL): the event loop keeps serving."""
    return await asyncio.to_thread(secret_matches, secret, hashed)


KeyLookup = Callable[[str], Awaitable[StoredKey | None]]
Verifier = Callable[[str, HashedSecret], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class _Entry:
    stored: StoredKey | None
    expires_at: float


class Authenticator:
    """Turns the key a request presents into the participant it acts as, or refuses it.

    ``lookup`` reads a key's row (PostgreSQL in the gateway, a dict in unit tests); its
    errors (the store unreachable) pass through, so the caller answers 503, not 401.
    """

    def __init__(
        self,
        lookup: KeyLookup,
        cache_s: float,
        clock: Callable[[], float] = time.monotonic,
        verify: Verifier = _matches_off_loop,
        max_entries: int = 100_000,
    ) -> None:
        self._lookup = lookup
        self._cache_s = cache_s
        self._clock = clock
        self._verify = verify
        self._max_entries = max_entries
        self._entries: dict[str, _Entry] = {}
        #: Per key id: (the stored hash, SHA-256 of the secret seen to match it). A rotation
        #: changes the stored hash, which voids the memo by itself.
        self._matched: dict[str, tuple[bytes, bytes]] = {}
        #: Lookups and verifications under way, shared by concurrent requests of one key.
        self._lookups: dict[str, tuple[int, asyncio.Future[StoredKey | None]]] = {}
        #: Moves on at every ``forget``: a lookup begun before a change is not cached after it.
        self._generation = 0
        self._verifying: dict[tuple[str, bytes], asyncio.Future[bool]] = {}
        self._failures = RateLimits(FAILURES_PER_S, FAILURE_BURST, clock)

    async def authenticate(self, presented: str | None) -> Identity:
        if not presented:
            raise UnauthorizedError(
                "no API key: send the header Authorization: Bearer techx_<key id>_<secret>"
            )
        key = parse_key(presented)
        if key is None:
            raise UnauthorizedError("malformed API key: expected techx_<key id>_<secret>")
        stored = await self._stored(key.key_id)
        if stored is None or stored.revoked:
            raise UnauthorizedError(f"API key {key.key_id} is unknown or revoked")
        digest = hashlib.sha256(key.secret.encode()).digest()
        matched = self._matched.get(key.key_id)
        if (
            matched is not None
            and matched[0] == stored.hashed.digest
            and hmac.compare_digest(matched[1], digest)
        ):
            return Identity(stored.participant_id, stored.key_id)
        wait_s = self._failures.exhausted(key.key_id)
        if wait_s > 0:
            raise RateLimitedError(
                f"too many wrong secrets for API key {key.key_id}: try again later", wait_s
            )
        if not await self._verified(key, stored.hashed, digest):
            self._failures.take(key.key_id)
            log.warning("api_key_secret_mismatch", key_id=key.key_id)
            raise UnauthorizedError(
                f"API key {key.key_id}: wrong secret (a rotated key keeps its id, not its secret)"
            )
        if len(self._matched) >= self._max_entries:
            self._matched.clear()
        self._matched[key.key_id] = (stored.hashed.digest, digest)
        return Identity(stored.participant_id, stored.key_id)

    def forget(self, key_id: str) -> None:
        """The key changed (rotated, revoked, created): read it again on next use."""
        self._entries.pop(key_id, None)
        self._generation += 1

    def forget_all(self) -> None:
        """Changes may have been missed (the notification channel was down)."""
        self._entries.clear()
        self._generation += 1

    async def _stored(self, key_id: str) -> StoredKey | None:
        """The key's row, from the cache while it is fresh; one lookup at a time per key."""
        entry = self._entries.get(key_id)
        if entry is not None and self._clock() < entry.expires_at:
            return entry.stored
        generation, pending = self._lookups.get(key_id, (-1, None))
        if pending is None or generation != self._generation:
            generation = self._generation
            pending = asyncio.ensure_future(self._lookup(key_id))
            self._lookups[key_id] = (generation, pending)
            pending.add_done_callback(lambda done: self._lookup_done(key_id, done))
        stored = await asyncio.shield(pending)
        if self._cache_s > 0 and generation == self._generation:
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
            self._entries[key_id] = _Entry(stored, self._clock() + self._cache_s)
        return stored

    def _lookup_done(self, key_id: str, done: asyncio.Future[StoredKey | None]) -> None:
        if self._lookups.get(key_id, (0, None))[1] is done:
            del self._lookups[key_id]
        if not done.cancelled():
            done.exception()  # retrieved here: every waiter may have gone (a closed request)

    async def _verified(self, key: PresentedKey, hashed: HashedSecret, digest: bytes) -> bool:
        """One scrypt run per distinct secret at a time, however many requests bring it."""
        name = (key.key_id, digest)
        pending = self._verifying.get(name)
        if pending is None:
            pending = asyncio.ensure_future(self._verify(key.secret, hashed))
            self._verifying[name] = pending
            pending.add_done_callback(lambda _: self._verifying.pop(name, None))
        return await asyncio.shield(pending)
