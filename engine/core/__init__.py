"""The pure core: command bytes in, events and settlement rows out.

Nothing under ``engine.core`` touches Kafka, PostgreSQL, a clock or randomness: time and
positions come in with each record, so the live engine, recovery and ``techx replay`` run the
same code over the same log and get byte-identical outputs. It imports only ``schemas``,
``engine.errors`` and ``engine.orderbook``.
"""
