"""A seeded fault campaign against real engine processes: ``python -m tests.chaos``.

Engines run as separate OS processes on a private Kafka + PostgreSQL stack; a seeded
schedule kills them (also right between a PostgreSQL commit and the publish), freezes them
past their session timeout, grows and shrinks their group and restarts both servers, while
a seeded order flow keeps coming. At the end everything is checked against a pure replay of
the command log.

Short form, in ``make test`` (``tests/chaos/test_chaos_campaign.py``; 80-100 s on the
2-core machine): 10 kills of which 2 between commit and publish, 1 zombie, one
1 -> 3 -> 1 cycle, one broker and one PostgreSQL restart::

    .venv/bin/python -m tests.chaos --seed 1 --kills 10

Long form (documented, not in ``make test``; about 17-20 minutes, as 47 faults took
216 s): 200 kills of which 40 between commit and publish, 20 zombies, 8 grow/shrink
cycles, 5 broker and 5 PostgreSQL restarts::

    .venv/bin/python -m tests.chaos --seed 1 --kills 200

``--plan`` prints a seed's schedule without running it; ``--help`` lists the knobs (engines,
session timeout, rate, counts per kind). The run prints its folder: ``engines/`` holds one
JSON log per engine process (``engine-NNN-slotS.log``, in start order), ``stack/kafka/logs``
the broker's, ``postgres.log`` and ``harness.log`` the rest. Exit status: 0 every check
passed, 1 a check failed, 2 the harness could not finish.

The checks: PostgreSQL holds exactly the replay's deals, command outcomes and dead letters
(all columns) and every partition is settled to the log end; a ``read_committed`` reader
of every output topic sees exactly the replay's messages, in order, byte for byte
(duplicates and missing counted apart; a ``read_uncommitted`` reader's duplicates are shown
for information); every stored snapshot equals the replay's market at its offset, and a
freshly recovered engine's market at the end equals the replay's final one.
"""

from __future__ import annotations


class ChaosError(Exception):
    """The harness itself could not do its job (as opposed to the engine failing a check)."""


class ChaosTimeoutError(ChaosError):
    """Something the campaign waits for did not happen in time; the message says what."""


class ChaosStackError(ChaosError):
    """The private stack could not be prepared (no free port, no cached Kafka jars)."""
