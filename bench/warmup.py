"""Whether the local stack's broker is too young to measure latency on.

Right after ``devstack up`` the broker's JVM still compiles its request paths: five-second
probes of the I/O-only pipeline at 5k/s, repeated from the broker's start, gave p99 2,660,
53, 40, 44, 20, 23, 28, 24, 16 ms. So ``bench.end_to_end`` first runs both pipelines
briefly, numbers discarded, when the local broker is younger than ``YOUNG_S``.

That takes out the first minute's tail of seconds, not all of a young stack's spread. In
`make bench` on a broker started a minute before, the engine's p99 was 52-63 ms with no
warm-up or after I/O-only probes alone (three runs), 20 and 58 ms after this warm-up run,
and 17-18 ms in runs that followed another engine run; warm stacks give 13-25 ms. Latency
worth comparing is measured on a stack that has run ten minutes, as the warm-up says.
"""

from __future__ import annotations

from devstack import kafka
from devstack.settings import StackSettings

#: A broker that has run this long has had its warm-up, or a bench run gave it one.
YOUNG_S = 600.0


def young_broker_age_s() -> float | None:
    """The local broker's age when it is below YOUNG_S; None when it is older, or the user's
    own broker (its age unknown here), or not running."""
    age = kafka.age_s(StackSettings.from_env())
    return age if age is not None and age < YOUNG_S else None
