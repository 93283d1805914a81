"""Issue 11's targets per metric, and how a number is printed against its target.

One table shared by the benchmarks (which print ``value (target ...: ratiox)``) and the
report (which stores ratios and plots them), so a target is written down exactly once.
A ratio is always "how far along": ≥ 1 meets the target, whichever way the metric points.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Metric:
    label: str
    unit: str
    target: float | None = None
    #: Memory and latency are better lower; rates and ratios higher.
    higher_is_better: bool = True

    def ratio(self, value: float) -> float | None:
        """value/target for a rate, target/value for a cost; None without a target."""
        if self.target is None or not value:
            return None
        return value / self.target if self.higher_is_better else self.target / value


METRICS: dict[str, Metric] = {
    "book_thin": Metric("book, thin, issue stream", "orders/s", 1_500_000),
    "book_thin_reference": Metric("reference book, thin", "orders/s"),
    "book_thin_vs_reference": Metric("book / reference, thin", "x", 1.0),
    "book_deep": Metric("book, ~1M resting", "orders/s", 1_000_000),
    "book_deep_reference": Metric("reference book, ~1M resting", "orders/s"),
    "book_deep_vs_reference": Metric("book / reference, ~1M resting", "x", 1.0),
    "market": Metric("Market.apply, issue mix", "commands/s", 600_000),
    "pipeline": Metric("pipeline, issue mix", "commands/s", 250_000),
    "mix_market": Metric("Market.apply, exchange mix", "commands/s"),
    "mix_pipeline": Metric("pipeline, exchange mix", "commands/s"),
    "book_bytes_per_order": Metric("memory, bare book, 1M resting", "B/order", 250, False),
    "market_bytes_per_order": Metric("memory, Market, 1M resting", "B/order", 250, False),
    "e2e_engine": Metric("end to end, engine backlog", "commands/s"),
    "e2e_io_only": Metric("I/O-only pipeline backlog", "commands/s"),
    "e2e_vs_io_only": Metric("engine / I/O-only", "x", 0.7),
    "latency_p50_ms": Metric("latency p50 at 5k/s", "ms", 5, False),
    "latency_p99_ms": Metric("latency p99 at 5k/s", "ms", 25, False),
    "io_only_latency_p50_ms": Metric("I/O-only pipeline latency p50 at 5k/s", "ms", None, False),
    "io_only_latency_p99_ms": Metric("I/O-only pipeline latency p99 at 5k/s", "ms", None, False),
    "sustained_rate": Metric("sustained settled rate", "commands/s"),
    "e2e_vs_io_only_cpu": Metric("engine / I/O-only, by CPU per command", "x", 0.7),
    "io_only_cpu_s_per_100k": Metric("I/O-only pipeline CPU", "s/100k", None, False),
    "backlog_cpu_s_per_100k": Metric("engine CPU, backlog", "s/100k", None, False),
    "offered_cpu_s_per_100k": Metric("engine CPU at 5k/s offered", "s/100k", None, False),
}


def human(value: float, unit: str) -> str:
    """1,234,567 orders/s -> '1.23M/s'; ratios as '0.31x'; bytes and ms as integers."""
    if unit == "x":
        return f"{value:.2f}x"
    if unit.endswith("/s"):
        if value >= 1e6:
            return f"{value / 1e6:.2f}M/s"
        if value >= 1e3:
            return f"{value / 1e3:.0f}k/s"
        return f"{value:.0f}/s"
    return f"{value:,.0f} {unit}" if value >= 10 else f"{value:.1f} {unit}"


def against(name: str, value: float) -> str:
    """'78k/s (target 250k/s: 0.31x)', or just the value for a metric without a target."""
    metric = METRICS[name]
    shown = human(value, metric.unit)
    ratio = metric.ratio(value)
    if metric.target is None or ratio is None:
        return shown
    return f"{shown} (target {human(metric.target, metric.unit)}: {ratio:.2f}x)"
