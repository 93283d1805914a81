"""The README's picture of the Grafana dashboard: ``python -m bench.dashboard_shot``.

No Grafana or Prometheus runs on the development machine, so this is a stand-in, said as
such under the picture: it runs ``techx demo`` in this process on fresh topics and a fresh
database of the local stack (brought up if it is not), with a few malformed records mixed
in so the dead-letter panel has something to show and a gateway taking a few requests,
scrapes the engine's ``/metrics`` every
``--every`` seconds like Prometheus, then evaluates each panel's query of
``deploy/grafana/techx-dashboard.json`` over the scrapes and draws the panels with
matplotlib into ``docs/dashboard.png``. The queries are the dashboard's own; the evaluator
knows only the shapes that dashboard uses (sum/max by, rate, histogram_quantile) and fails
on any other, so the picture cannot silently drift from the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import math
import os
import re
import socket
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bench.fresh import fresh, remove, stack_settings
from engine.commands.demo import run_demo
from engine.commands.gateway import serving_gateway
from engine.commands.keys import create_api_key
from engine.errors import TechXError
from engine.producers.client import TradingClient
from engine.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "techx-dashboard.json"
DEFAULT_OUT = ROOT / "docs" / "dashboard.png"
#: What Grafana's $__rate_interval becomes here: a few scrapes' worth.
RATE_INTERVAL_S = 10.0

Labels = tuple[tuple[str, str], ...]
#: One scrape: (sample name, labels) -> value.
Scrape = dict[tuple[str, Labels], float]
#: A query's answer at one instant: labels -> value.
Vector = dict[Labels, float]


class QueryShapeError(TechXError):
    """A panel's query has a shape this stand-in does not evaluate."""


@dataclass(frozen=True, slots=True)
class Scrapes:
    times: list[float]
    samples: list[Scrape]


#: A label matcher: (label, operator, value).
Matcher = tuple[str, str, str]


def _labels(raw: str | None) -> list[Matcher]:
    return re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', raw or "")


def _matches(labels: Labels, matchers: list[Matcher]) -> bool:
    values = dict(labels)
    for label, op, wanted in matchers:
        value = values.get(label, "")
        regex = op in ("=~", "!~")
        hit = re.fullmatch(wanted, value) is not None if regex else value == wanted
        if hit != (op in ("=", "=~")):
            return False
    return True


def _select(scrape: Scrape, name: str, matchers: list[Matcher]) -> Vector:
    return {
        labels: value
        for (sample, labels), value in scrape.items()
        if sample == name and _matches(labels, matchers)
    }


def evaluate(expr: str, scrapes: Scrapes, at: int) -> Vector:
    """The value of ``expr`` at scrape ``at``, for the query shapes the dashboard uses."""
    expr = expr.strip()
    if m := re.fullmatch(r"histogram_quantile\(([\d.]+),\s*(.+)\)", expr):
        return _quantile(float(m.group(1)), evaluate(m.group(2), scrapes, at))
    if m := re.fullmatch(r"(sum|max)(?: by \(([^)]*)\))? ?\((.+)\)", expr):
        keep = [k.strip() for k in (m.group(2) or "").split(",") if k.strip()]
        groups: dict[Labels, list[float]] = defaultdict(list)
        for labels, value in evaluate(m.group(3), scrapes, at).items():
            groups[tuple((k, v) for k, v in labels if k in keep)].append(value)
        combine = sum if m.group(1) == "sum" else max
        return {labels: float(combine(values)) for labels, values in groups.items()}
    if m := re.fullmatch(r"rate\((\w+)(\{[^}]*\})?\[\$__rate_interval\]\)", expr):
        now = _select(scrapes.samples[at], m.group(1), _labels(m.group(2)))
        start = at
        while start > 0 and scrapes.times[at] - scrapes.times[start - 1] <= RATE_INTERVAL_S:
            start -= 1
        if start == at:
            return {}
        before = _select(scrapes.samples[start], m.group(1), _labels(m.group(2)))
        span = scrapes.times[at] - scrapes.times[start]
        return {k: max(v - before.get(k, 0.0), 0.0) / span for k, v in now.items()}
    if m := re.fullmatch(r"(\w+)(\{[^}]*\})?", expr):
        return _select(scrapes.samples[at], m.group(1), _labels(m.group(2)))
    raise QueryShapeError(f"the stand-in renderer cannot evaluate {expr!r}")


def _quantile(q: float, buckets: Vector) -> Vector:
    """Prometheus's histogram_quantile: linear within the bucket holding the rank."""
    series: dict[Labels, list[tuple[float, float]]] = defaultdict(list)
    for labels, count in buckets.items():
        rest = tuple((k, v) for k, v in labels if k != "le")
        series[rest].append((float(dict(labels)["le"]), count))
    result: Vector = {}
    for labels, points in series.items():
        points.sort()
        total = points[-1][1]
        if total <= 0:
            continue
        rank, lower, below = q * total, 0.0, 0.0
        for upper, count in points:
            if count >= rank:
                if math.isinf(upper):
                    result[labels] = lower
                else:
                    result[labels] = lower + (upper - lower) * (rank - below) / (count - below)
                break
            lower, below = upper, count
    return result


def _legend(template: str, labels: Labels) -> str:
    values = dict(labels)
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values.get(m.group(1), ""), template)


def render(dashboard: dict[str, Any], scrapes: Scrapes, out: Path) -> None:
    import matplotlib  # noqa: PLC0415 - a dev dependency, only for this picture

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 - after choosing the backend

    panels = dashboard["panels"]
    columns = 3
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(18, 3.6 * rows), squeeze=False)
    figure.patch.set_facecolor("#111217")
    start = scrapes.times[0]
    seconds = [t - start for t in scrapes.times]
    for axis, panel in zip((a for row in axes for a in row), panels, strict=False):
        axis.set_facecolor("#181b1f")
        axis.set_title(panel["title"], color="#d8d9da", fontsize=10, loc="left")
        axis.tick_params(colors="#8e8e8e", labelsize=8)
        for spine in axis.spines.values():
            spine.set_color("#2c3235")
        axis.grid(color="#2c3235", linewidth=0.5)
        unit = panel["fieldConfig"]["defaults"]["unit"]
        drawn = 0
        for target in panel["targets"]:
            lines: dict[Labels, list[float]] = defaultdict(lambda: [math.nan] * len(seconds))
            for i in range(len(seconds)):
                for labels, value in evaluate(target["expr"], scrapes, i).items():
                    lines[labels][i] = value
            for labels, values in sorted(lines.items()):
                axis.plot(
                    seconds, values, linewidth=1.4, label=_legend(target["legendFormat"], labels)
                )
                drawn += 1
        if drawn:
            axis.legend(
                fontsize=7,
                facecolor="#181b1f",
                labelcolor="#d8d9da",
                edgecolor="#2c3235",
                loc="upper left",
            )
        else:
            axis.text(
                0.5,
                0.5,
                "no data",
                color="#8e8e8e",
                ha="center",
                va="center",
                transform=axis.transAxes,
            )
        axis.set_xlabel("seconds into the demo", color="#8e8e8e", fontsize=8)
        axis.set_ylabel(unit, color="#8e8e8e", fontsize=8)
    for axis in [a for row in axes for a in row][len(panels) :]:
        axis.set_visible(False)
    figure.suptitle(
        f"{dashboard['title']} — panels of deploy/grafana/techx-dashboard.json evaluated over"
        " /metrics scrapes of `techx demo` (a matplotlib rendering, not Grafana)",
        color="#d8d9da",
        fontsize=12,
    )
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=80, facecolor=figure.get_facecolor())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _scrape(session: aiohttp.ClientSession, url: str) -> Scrape | None:
    try:
        async with session.get(url) as response:
            text = await response.text()
    except aiohttp.ClientError:
        return None
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def _side_flow(settings: Settings, seconds: float, every_s: float) -> None:
    """Beside the demo's flow, now and then: a malformed record straight onto the command
    topic (the gateway would refuse it), and through an in-process gateway a cancel of an
    order nobody placed (202, then rejected) and a request without a key (401)."""
    key = (await create_api_key(settings, "dash-bot"))[1]
    cancel = b'{"type":"cancel_order","technology_id":"DASH-1","client_order_id":"none"}'
    async with (
        TradingClient(settings, client_id="dashboard-shot") as client,
        serving_gateway(settings) as gateway,
        aiohttp.ClientSession() as http,
    ):
        url = f"{gateway.url}/v1/commands"
        json_type = {"Content-Type": "application/json"}
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await client.send_raw("DASH-BAD", b'{"type": "place_order", "price": ')
            for headers in ({**json_type, "Authorization": f"Bearer {key}"}, json_type):
                async with http.post(url, data=cancel, headers=headers) as response:
                    await response.read()
            await asyncio.sleep(every_s)


async def shoot(seconds: float, rate: int, every_s: float) -> Scrapes:
    base = await stack_settings()
    settings = await fresh(base, f"dash{os.getpid()}")
    port = _free_port()
    settings = replace(
        settings,
        metrics_host="127.0.0.1",
        metrics_port=port,
        snapshot_every=2_000,  # so the snapshot panel has something to show in a minute
        gateway=replace(settings.gateway, port=0),
    )
    url = f"http://127.0.0.1:{port}/metrics"
    scrapes = Scrapes([], [])
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the demo prints every deal
            demo = asyncio.create_task(run_demo(settings, seconds, rate, 2026))
            bad = asyncio.create_task(_side_flow(settings, seconds, 1.5))
            async with aiohttp.ClientSession() as session:
                while not demo.done():
                    scrape = await _scrape(session, url)
                    if scrape is not None:
                        scrapes.times.append(time.monotonic())
                        scrapes.samples.append(scrape)
                    await asyncio.wait({demo}, timeout=every_s)
            await demo
            await bad
    finally:
        await remove(base, settings)
    return scrapes


def _save(scrapes: Scrapes, path: Path) -> None:
    rows = [
        [t, [[name, list(labels), value] for (name, labels), value in sample.items()]]
        for t, sample in zip(scrapes.times, scrapes.samples, strict=True)
    ]
    path.write_text(json.dumps(rows))


def _load(path: Path) -> Scrapes:
    rows = json.loads(path.read_text())
    return Scrapes(
        [row[0] for row in rows],
        [
            {(n, tuple((k, v) for k, v in labels)): value for n, labels, value in row[1]}
            for row in rows
        ],
    )


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the demo trades")
    parser.add_argument("--rate", type=int, default=300, help="demo orders per second")
    parser.add_argument("--every", type=float, default=2.0, help="seconds between scrapes")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--save", type=Path, help="also keep the scrapes in this JSON file")
    parser.add_argument("--load", type=Path, help="draw saved scrapes instead of running the demo")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.load is not None:
        scrapes = _load(args.load)
    else:
        scrapes = asyncio.run(shoot(args.seconds, args.rate, args.every))
        if args.save is not None:
            _save(scrapes, args.save)
    render(json.loads(DASHBOARD.read_text()), scrapes, args.out)
    print(f"{len(scrapes.times)} scrapes rendered into {args.out}")


if __name__ == "__main__":
    main()
