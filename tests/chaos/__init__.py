"""A seeded fault campaign against real engine processes: ``python -m tests.chaos``.

Engines run as separate OS processes on a private Kafka + PostgreSQL stack; a seeded
schedule kills them (also right between a PostgreSQL commit and the publish), freezes them
past their session timeout, grows and shrinks their group and restarts both servers, while
a seeded order flow keeps coming. At the end everything is checked against a pure replay of
the command log. ``tests/chaos/test_chaos_campaign.py`` runs the short form in ``make test``.
"""
