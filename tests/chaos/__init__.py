"""A seeded fault campaign against real engine processes: ``python -m tests.chaos``.

Engines run as separate OS processes on a private Kafka + PostgreSQL stack; a seeded
schedule kills them (also right between a PostgreSQL commit and the publish), freezes them
past their session timeout, grows and shrinks their group and restarts both servers, while
a seeded order flow keeps coming. At the end everything is checked against a pure replay of
the command log. ``tests/chaos/test_chaos_campaign.py`` runs the short form in ``make test``.
"""

from __future__ import annotations


class ChaosError(Exception):
    """The harness itself could not do its job (as opposed to the engine failing a check)."""


class ChaosTimeoutError(ChaosError):
    """Something the campaign waits for did not happen in time; the message says what."""


class ChaosStackError(ChaosError):
    """The private stack could not be prepared (no free port, no cached Kafka jars)."""
