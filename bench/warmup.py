"""A freshly started broker warmed up before latency is measured on it.

Right after ``devstack up`` the broker's JVM still compiles its request paths: five-second
probes of the I/O-only pipeline at 5k/s, repeated from the broker's start, gave p99 2,660,
53, 40, 44, 20, 23, 28, 24, 16 ms, steady from the fifth (53 s after the first began). So
a broker of the local stack younger than ``YOUNG_S`` gets ``PROBES`` of them first, each
printed; an older one, or the user's own broker, is measured as it is.

What this does not settle (`make bench` on a broker started about a minute before): the
I/O-only pipeline's p99 was 57 ms without the probes and 15-18 ms after them, but the
engine's own p99 stayed at 52-60 ms, whether after 6 probes or after 22 (until the broker
was 300 s old), while the next run, at 6 minutes, gave 17 ms, as warm stacks do (13-18).
"""

from __future__ import annotations

import time

from bench.fresh import discarded_afterwards, fresh_settings
from bench.io_only import io_only_latencies
from bench.offered import latency_line
from devstack import kafka
from devstack.settings import StackSettings

#: A broker that has run this long has had its warm-up, or a bench run gave it one.
YOUNG_S = 600.0
#: Five-second probes at 5k/s: one past the point where the probes above turned steady.
PROBES = 6
PROBE_S = 5.0
PROBE_RATE = 5_000


async def warm_up_young_broker(seed: int, technologies: int) -> None:
    """Offer the local broker PROBES short loads when it started less than YOUNG_S ago."""
    age = kafka.age_s(StackSettings.from_env())
    if age is None or age >= YOUNG_S:
        return
    print(
        f"  warm-up      the broker started {age:.0f} s ago: {PROBES} probes of {PROBE_S:.0f} s "
        f"at {PROBE_RATE:,}/s (the engine's p99 may stay high on a broker this young: "
        "see bench/warmup.py)"
    )
    for probe in range(PROBES):
        async with discarded_afterwards() as made:
            settings = await fresh_settings(f"warmup{probe}_{int(time.time())}")
            made.append(settings)
            latencies = await io_only_latencies(settings, PROBE_RATE, PROBE_S, seed, technologies)
        print(f"  warm-up      probe {probe + 1}: {latency_line(latencies)}")
