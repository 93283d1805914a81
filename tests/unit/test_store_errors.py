"""Which PostgreSQL failures the engine retries and which stop it."""

from __future__ import annotations

import asyncpg

from engine.store.settlement import _store_error


def test_a_connection_caught_mid_operation_is_retried() -> None:
    """asyncpg's InternalClientError (a connection the server dropped mid-operation, seen
    after a PostgreSQL restart) is transient: the engine retries instead of stopping."""
    error = _store_error(asyncpg.InternalClientError("cannot switch to state 12"), "marking")
    assert error.retriable


def test_a_lock_wait_bound_is_retried_and_a_refusal_is_not() -> None:
    """A lock timeout (55P03) is retried; a unique violation (23505) stops the engine."""
    assert _store_error(asyncpg.LockNotAvailableError("lock"), "claiming").retriable
    assert not _store_error(asyncpg.UniqueViolationError("dup"), "settling").retriable
