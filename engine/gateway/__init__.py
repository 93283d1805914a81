"""``techx gateway``: the way in for front-ends that are not trusted Kafka clients.

HTTP and WebSocket in front of the command topic and the output topics: it authenticates an
API key, validates a command with the engine's own decoder, stamps who sent it, produces it
to its technology's partition, and streams each participant's outcomes and the public market
data back. It keeps no state that another copy would need: run as many as the load asks.

Pure logic (keys, intake, limits, routing) is kept apart from the I/O (app, stream, submit).
"""
