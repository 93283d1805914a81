"""Prometheus metrics and health probes of engine and gateway processes (the I/O layer only:
the pure core is never instrumented)."""
