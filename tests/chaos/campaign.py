"""The seeded fault campaign: a schedule, a supervisor, a steady order flow, measured recovery.

One seed decides everything the harness chooses: which faults, in which order, how long to
wait before each, which engine it hits, how long a zombie stays frozen or a server stays
down, after how many settlements an armed engine dies, and the order flow itself. What the
machine decides (the exact instant a batch is in flight, broker timestamps, ticks) is left
to it: the checks compare with a pure replay of whatever the log ends up holding, so they
need no prediction.

The engines run as OS processes (``python -m tests.chaos.victim``) under a supervisor that
keeps the wanted number alive, as Kubernetes would: whatever ends an engine (a kill, a
fence, a failure during an outage), a new one starts after a short delay, backing off when
an engine keeps dying young.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

from aiokafka.errors import KafkaError

from engine.commands.setup import setup
from engine.core.codec import TICK_RECORD, encode
from engine.errors import BrokerUnavailableError
from engine.producers.client import TradingClient
from engine.producers.publisher import make_producer
from engine.producers.simulation import OrderFlow, generated_listings
from engine.settings import Settings, Topics
from schemas.commands import PlaceOrder, TechnologyCommand
from tests.chaos import ChaosError, ChaosTimeoutError
from tests.chaos.stack import POLL_S, PrivateStack, Probe, deadline
from tests.chaos.verify import Check, Verification, verify
from tests.chaos.victim import (
    EXIT_STOPPED_ITSELF,
    KILL_AFTER_SETTLES,
    committed_unpublished,
    failure_of,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

Say = Callable[[str], None]

#: An engine that dies sooner than this after its start, on its own, restarts after a
#: doubled delay (up to _MOST_RESTART_DELAY_S): a crash loop during an outage stays cheap.
_YOUNG_S = 10.0
_MOST_RESTART_DELAY_S = 5.0
#: How long a stopping engine may take to drain and exit after SIGTERM.
_STOP_TIMEOUT_S = 60.0
#: Most commands the load hands to the producer at once (after an outage it catches up).
_MOST_PER_SEND = 1000
_SEND_TIMEOUT_S = 60.0
#: How long an armed engine has to get partitions and settle its N batches.
_ARMED_TIMEOUT_S = 60.0
#: Armed engines tried per kill_after_commit fault before it counts as not fired.
_ARMED_ATTEMPTS = 3


# -- the schedule (pure) ----------------------------------------------------------------------


class FaultKind(StrEnum):
    KILL = "kill"
    KILL_AFTER_COMMIT = "kill_after_commit"
    ZOMBIE = "zombie"
    GROW_SHRINK = "grow_shrink"
    BROKER_RESTART = "broker_restart"
    POSTGRES_RESTART = "postgres_restart"


#: The exit cause of an armed engine that fired.
ARMED_DEATH = "killed itself after a commit (armed)"


@dataclass(frozen=True, slots=True)
class FaultCounts:
    """How many faults of each kind a campaign runs."""

    kills: int
    kills_after_commit: int
    zombies: int
    grow_shrinks: int
    broker_restarts: int
    postgres_restarts: int

    @classmethod
    def for_kills(cls, kills: int) -> FaultCounts:
        """The mix for ``kills`` kills in all: a fifth of them (at least 2) between commit
        and publish, and the other kinds in proportion, at least one of each."""
        after_commit = min(kills, max(2, kills // 5))
        return cls(
            kills=kills - after_commit,
            kills_after_commit=after_commit,
            zombies=max(1, kills // 10),
            grow_shrinks=max(1, kills // 25),
            broker_restarts=max(1, kills // 40),
            postgres_restarts=max(1, kills // 40),
        )

    def kinds(self) -> list[FaultKind]:
        return [
            *[FaultKind.KILL] * self.kills,
            *[FaultKind.KILL_AFTER_COMMIT] * self.kills_after_commit,
            *[FaultKind.ZOMBIE] * self.zombies,
            *[FaultKind.GROW_SHRINK] * self.grow_shrinks,
            *[FaultKind.BROKER_RESTART] * self.broker_restarts,
            *[FaultKind.POSTGRES_RESTART] * self.postgres_restarts,
        ]


@dataclass(frozen=True, slots=True)
class Fault:
    number: int
    kind: FaultKind
    #: Quiet time after the previous fault recovered: a random moment in the flow.
    wait_s: float
    #: Which running engine it hits: this number modulo how many run then.
    target: int
    #: zombie: how long it stays frozen; restarts: how long the server stays down.
    hold_s: float
    #: kill_after_commit: the armed engine dies right after this many settlements.
    settles: int

    def describe(self) -> str:
        text = f"#{self.number:<3} {self.kind:<17} after {self.wait_s:4.2f} s"
        if self.kind in (FaultKind.KILL, FaultKind.KILL_AFTER_COMMIT, FaultKind.ZOMBIE):
            text += f", engine pick {self.target}"
        if self.hold_s:
            text += f", held {self.hold_s:4.2f} s"
        if self.settles:
            text += f", dies after settlement {self.settles}"
        return text


def plan(seed: int, counts: FaultCounts, session_ms: int) -> list[Fault]:
    """The seed's schedule. Every fault draws the same four numbers whatever its kind, so
    one kind's formula never shifts the others' draws."""
    rng = random.Random(f"techx-chaos:{seed}:faults")
    kinds = counts.kinds()
    rng.shuffle(kinds)
    session_s = session_ms / 1000
    faults = []
    for number, kind in enumerate(kinds, start=1):
        wait_s = rng.uniform(0.2, 2.0)
        target = rng.randrange(1 << 16)
        hold = rng.random()
        settles = rng.randint(1, 12)
        hold_s = {
            FaultKind.ZOMBIE: session_s * (1.5 + 1.5 * hold),  # well past the session timeout
            FaultKind.BROKER_RESTART: 2.0 + 3.0 * hold,
            FaultKind.POSTGRES_RESTART: 2.0 + 3.0 * hold,
        }.get(kind, 0.0)
        faults.append(
            Fault(
                number,
                kind,
                round(wait_s, 2),
                target,
                round(hold_s, 2),
                settles if kind is FaultKind.KILL_AFTER_COMMIT else 0,
            )
        )
    return faults


# -- engine processes and their supervisor -----------------------------------------------------


def exit_cause(
    returncode: int, sent: signal.Signals | None, armed: bool, failure: str | None
) -> str:
    """Why an engine process ended, from its exit status and what the harness did to it."""
    if returncode == -signal.SIGKILL:
        if sent is signal.SIGKILL:
            return "killed by the harness (SIGKILL)"
        if armed:
            return ARMED_DEATH
        return "killed by someone else (SIGKILL)"
    if returncode == 0:
        return "stopped on SIGTERM (graceful)" if sent is signal.SIGTERM else "exited 0 unasked"
    if returncode == EXIT_STOPPED_ITSELF and failure is not None:
        return f"stopped itself: {failure}"
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"crashed (exit {returncode}, see its log)"


@dataclass(slots=True, eq=False)
class EngineProcess:
    serial: int
    slot: int
    process: asyncio.subprocess.Process
    log_file: Path
    started_at: float
    armed: int | None
    #: The last signal the harness sent (what its exit status is read against).
    sent: signal.Signals | None = None
    frozen: bool = False
    cause: str | None = None
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    exited_at: float = 0.0

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    def signal(self, sig: signal.Signals) -> None:
        if sig is not signal.SIGCONT:
            self.sent = sig
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(sig)

    def name(self) -> str:
        return f"engine #{self.serial} (slot {self.slot}, pid {self.process.pid})"


class Fleet:
    """Keeps ``target`` engine processes alive, one supervising task per slot."""

    def __init__(
        self, env: Mapping[str, str], logs_dir: Path, restart_delay_s: float, name: str = "engine"
    ) -> None:
        self._env = dict(env)
        self._name = name
        self._logs_dir = logs_dir
        self._restart_delay_s = restart_delay_s
        self._wanted: set[int] = set()
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._current: dict[int, EngineProcess] = {}
        self._armed: dict[int, int] = {}
        self._serial = 0
        self.exits: Counter[str] = Counter()
        self.anomalies: list[str] = []
        self.joins_and_leaves = 0

    @property
    def running(self) -> list[EngineProcess]:
        return [e for _, e in sorted(self._current.items()) if e.running]

    def arm(self, slot: int, settles: int) -> None:
        """The slot's next engine dies right after its ``settles``-th settlement."""
        self._armed[slot] = settles

    async def scale(self, target: int) -> None:
        """Start slots up to ``target``; stop the ones above it gracefully (SIGTERM)."""
        for slot in range(target):
            if slot not in self._wanted:
                self._wanted.add(slot)
                self._tasks[slot] = asyncio.create_task(self._supervise(slot))
        leaving = sorted((s for s in self._wanted if s >= target), reverse=True)
        for slot in leaving:
            self._wanted.discard(slot)
            engine = self._current.get(slot)
            if engine is not None and engine.running:
                engine.signal(signal.SIGCONT)
                engine.signal(signal.SIGTERM)
        for slot in leaving:
            await self._join(slot)

    async def next_engine(self, slot: int, after_serial: int, timeout_s: float) -> EngineProcess:
        """The first engine of ``slot`` started after ``after_serial``."""
        async with deadline(timeout_s, f"a new engine in slot {slot}"):
            while True:
                engine = self._current.get(slot)
                if engine is not None and engine.serial > after_serial:
                    return engine
                await asyncio.sleep(POLL_S)

    async def close(self) -> None:
        """Stop every engine: gracefully first, SIGKILL for any that hangs."""
        await self.scale(0)

    async def kill_all(self) -> None:
        """The emergency stop for ``finally``: SIGKILL everything, then reap it."""
        self._wanted.clear()
        for engine in self._current.values():
            if engine.running:
                engine.signal(signal.SIGKILL)
        for slot in list(self._tasks):
            await self._join(slot)

    async def _join(self, slot: int) -> None:
        task = self._tasks.pop(slot)
        try:
            async with asyncio.timeout(_STOP_TIMEOUT_S):
                await asyncio.shield(task)
        except TimeoutError:
            engine = self._current.get(slot)
            if engine is not None:
                self.anomalies.append(
                    f"{engine.name()} did not exit within {_STOP_TIMEOUT_S:.0f} s of "
                    f"{engine.sent.name if engine.sent else 'leaving'}: SIGKILLed "
                    f"(log {engine.log_file})"
                )
                engine.signal(signal.SIGKILL)
            await task

    async def _supervise(self, slot: int) -> None:
        delay = self._restart_delay_s
        while slot in self._wanted:
            engine = await self._start(slot)
            if slot not in self._wanted:  # scaled down while it was starting
                engine.signal(signal.SIGTERM)
            await engine.process.wait()
            self._record_exit(engine)
            if slot not in self._wanted:
                return
            delay = self._next_delay(engine, delay)
            await asyncio.sleep(delay)

    def _next_delay(self, engine: EngineProcess, delay: float) -> float:
        """The usual short delay; doubled while engines keep dying young on their own (a
        broker outage), as Kubernetes backs off a crash loop."""
        young = time.monotonic() - engine.started_at < _YOUNG_S
        on_its_own = engine.sent is None and engine.armed is None
        if young and on_its_own:
            return min(delay * 2, _MOST_RESTART_DELAY_S)
        return self._restart_delay_s

    async def _start(self, slot: int) -> EngineProcess:
        self._serial += 1
        serial = self._serial
        env = dict(self._env)
        armed = self._armed.pop(slot, None)
        if armed is not None:
            env[KILL_AFTER_SETTLES] = str(armed)
        log_file = self._logs_dir / f"{self._name}-{serial:03d}-slot{slot}.log"
        with log_file.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.chaos.victim",
                env=env,
                cwd=REPO_ROOT,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
        engine = EngineProcess(serial, slot, process, log_file, time.monotonic(), armed)
        self._current[slot] = engine
        self.joins_and_leaves += 1
        return engine

    def _record_exit(self, engine: EngineProcess) -> None:
        returncode = engine.process.returncode
        assert returncode is not None
        failure = failure_of(engine.log_file) if returncode == EXIT_STOPPED_ITSELF else None
        engine.cause = exit_cause(returncode, engine.sent, engine.armed is not None, failure)
        engine.exited_at = time.monotonic()
        engine.exited.set()
        self.exits[engine.cause] += 1
        self.joins_and_leaves += 1
        if engine.cause.startswith(("crashed", "exited 0", "killed by someone")):
            self.anomalies.append(f"{engine.name()} {engine.cause}: log {engine.log_file}")


# -- the order flow ------------------------------------------------------------------------


@dataclass(slots=True)
class LoadStats:
    #: Commands the broker acknowledged (each once, however many attempts it took).
    commands: int = 0
    #: Malformed records sent on purpose: they must come out as dead letters.
    junk: int = 0
    #: Commands sent again after an attempt failed: the log may hold them twice.
    resent: int = 0
    failed_attempts: int = 0


class OrderLoad:
    """The seeded front-end: a steady rate of OrderFlow commands plus some junk records,
    kept going through broker restarts (a failed send is retried, and counted)."""

    def __init__(
        self, settings: Settings, seed: int, rate: int, listings: int, junk_ratio: float, say: Say
    ) -> None:
        self._settings = settings
        self._rate = rate
        self._listings = generated_listings(listings)
        self._flow = OrderFlow(seed, self._listings, run_tag=f"c{seed}", invalid_ratio=0.02)
        self._rng = random.Random(f"techx-chaos:{seed}:junk")
        self._junk_ratio = junk_ratio
        self._say = say
        self._generated = 0
        self.stats = LoadStats()
        #: Set once the listings are on the log: orders may follow, engines can catch up.
        self.listed = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        client = await self._connect(stop)
        try:
            client = await self._send(client, self._flow.listing_commands(), stop)
            self.listed.set()
            loop = asyncio.get_running_loop()
            started = loop.time()
            while not stop.is_set():
                due = int((loop.time() - started) * self._rate) - self._generated
                if due <= 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 0.02)
                    continue
                commands = self._flow.next_commands(min(due, _MOST_PER_SEND))
                self._generated += len(commands)
                junk = [self._junk() for _ in commands if self._rng.random() < self._junk_ratio]
                client = await self._send(client, commands, stop)
                for technology_id, value in junk:
                    client = await self._send_junk(client, technology_id, value, stop)
        finally:
            await client.stop()

    async def _connect(self, stop: asyncio.Event) -> TradingClient:
        while True:
            client = TradingClient(self._settings, client_id="chaos-load")
            try:
                await client.start()
            except BrokerUnavailableError:
                await client.stop()
                if stop.is_set():
                    raise
                await asyncio.sleep(0.5)
                continue
            return client

    async def _send(
        self, client: TradingClient, commands: list[TechnologyCommand], stop: asyncio.Event
    ) -> TradingClient:
        """Send until the broker takes them; returns the client to go on with."""
        failures = 0
        while True:
            try:
                async with asyncio.timeout(_SEND_TIMEOUT_S):
                    await client.send_many(commands)
            except (BrokerUnavailableError, TimeoutError) as e:
                failures += 1
                self.stats.failed_attempts += 1
                self.stats.resent += len(commands)
                if failures == 1:
                    self._say(f"    load: a send failed ({type(e).__name__}), retrying")
                if stop.is_set():
                    return client
                await asyncio.sleep(0.5)
                if failures % 3 == 0:  # a producer that keeps failing: start a new one
                    await client.stop()
                    client = await self._connect(stop)
                continue
            self.stats.commands += len(commands)
            return client

    async def _send_junk(
        self, client: TradingClient, technology_id: str, value: bytes, stop: asyncio.Event
    ) -> TradingClient:
        while True:
            try:
                async with asyncio.timeout(_SEND_TIMEOUT_S):
                    await client.send_raw(technology_id, value)
            except (KafkaError, TimeoutError):
                self.stats.failed_attempts += 1
                if stop.is_set():
                    return client
                await asyncio.sleep(0.5)
                continue
            self.stats.junk += 1
            return client

    def _junk(self) -> tuple[str, bytes]:
        """A record that must become a dead letter, in one of the ways front-ends get it wrong."""
        rng = self._rng
        listing = self._listings[rng.randrange(len(self._listings))]
        other = self._listings[rng.randrange(len(self._listings))]
        technology = listing.technology_id
        kind = rng.randrange(4)
        if kind == 0:
            return technology, f'{{"type":"place_order","technology_id":"{technology}",'.encode()
        if kind == 1:
            return technology, f'{{"type":"teleport","technology_id":"{technology}"}}'.encode()
        if kind == 2:
            return technology, f'{{"type":"cancel_order","technology_id":"{technology}"}}'.encode()
        order = PlaceOrder(other.technology_id, "junk", f"j{rng.randrange(10**9)}", "bid", 1)
        return technology + "-x", encode(order)  # key_mismatch (or wrong partition)


# -- the campaign ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CampaignConfig:
    seed: int = 1
    counts: FaultCounts = field(default_factory=lambda: FaultCounts.for_kills(10))
    engines: int = 2
    session_ms: int = 2000
    rate: int = 500
    partitions: int = 4
    listings: int = 24
    snapshot_every: int = 2000
    junk_ratio: float = 0.003
    restart_delay_s: float = 0.5
    recovery_timeout_s: float = 120.0
    #: None: the engine's default (TECHX_OUTPUT_GUARANTEE is not set).
    output_guarantee: str | None = None
    #: Logs of the engines and servers; a fresh temporary folder when None.
    run_dir: Path | None = None
    kafka_port: int | None = None
    postgres_port: int | None = None


@dataclass(frozen=True, slots=True)
class FaultOutcome:
    fault: Fault
    #: From the fault's instant until PostgreSQL settled everything the log held then, and
    #: at least one record more per partition (see Probe.targets); None: not measured.
    recovery_s: float | None
    note: str = ""
    #: A kill that happened (an armed engine may never get to fire).
    killed: bool = False


@dataclass(slots=True)
class CampaignResult:
    config: CampaignConfig
    schedule: list[Fault]
    run_dir: Path
    outcomes: list[FaultOutcome] = field(default_factory=list)
    exits: Counter[str] = field(default_factory=Counter)
    auditor_exits: Counter[str] = field(default_factory=Counter)
    joins_and_leaves: int = 0
    load: LoadStats = field(default_factory=LoadStats)
    anomalies: list[str] = field(default_factory=list)
    verification: Verification | None = None
    stack_start_s: float = 0.0
    faults_s: float = 0.0
    verify_s: float = 0.0
    wall_s: float = 0.0

    @property
    def checks(self) -> list[Check]:
        checks = list(self.verification.checks) if self.verification is not None else []
        unrecovered = [o for o in self.outcomes if o.recovery_s is None]
        checks.append(
            Check(
                "every fault recovered",
                not unrecovered and len(self.outcomes) == len(self.schedule),
                f"{len(self.outcomes) - len(unrecovered)} of {len(self.schedule)} faults "
                f"recovered within {self.config.recovery_timeout_s:.0f} s"
                + "".join(f"; #{o.fault.number} {o.note}" for o in unrecovered),
            )
        )
        return checks

    @property
    def passed(self) -> bool:
        return self.verification is not None and all(c.passed is not False for c in self.checks)

    @property
    def failover_s(self) -> list[float]:
        return [o.recovery_s for o in self.outcomes if o.killed and o.recovery_s is not None]


def campaign_settings(stack: PrivateStack, config: CampaignConfig) -> Settings:
    tag = f"s{config.seed}x{int(time.time())}"
    return Settings(
        kafka_bootstrap=stack.kafka_bootstrap,
        database_url=stack.database_url,
        topics=Topics(f"chaos.{tag}"),
        partitions=config.partitions,
        group_id=f"chaos-{tag}",
        snapshot_every=config.snapshot_every,
        session_timeout_ms=config.session_ms,
    )


def engine_env(settings: Settings, config: CampaignConfig) -> dict[str, str]:
    """The environment of an engine process: TECHX_* from the campaign only, never from the
    caller's shell (which may name the shared development stack)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TECHX_")}
    env.update(
        TECHX_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        TECHX_DATABASE_URL=settings.database_url,
        TECHX_TOPIC_PREFIX=settings.topics.prefix,
        TECHX_GROUP_ID=settings.group_id,
        TECHX_PARTITIONS=str(settings.partitions),
        TECHX_SESSION_TIMEOUT_MS=str(settings.session_timeout_ms),
        TECHX_SNAPSHOT_EVERY=str(settings.snapshot_every),
        TECHX_TICK_INTERVAL_MS=str(settings.tick_interval_ms),
        TECHX_LOG_FORMAT="json",
        TECHX_LOG_LEVEL="info",
    )
    if config.output_guarantee is not None:
        env["TECHX_OUTPUT_GUARANTEE"] = config.output_guarantee
    return env


class Campaign:
    """One run: private stack up, engines and load on, the schedule, wind-down, verdict."""

    def __init__(self, config: CampaignConfig, say: Say = print) -> None:
        self.config = config
        self._say = say
        self._started = time.monotonic()
        run_dir = config.run_dir or Path(tempfile.mkdtemp(prefix=f"techx-chaos-s{config.seed}-"))
        run_dir.mkdir(parents=True, exist_ok=True)
        self.result = CampaignResult(
            config, plan(config.seed, config.counts, config.session_ms), run_dir
        )

    def say(self, text: str) -> None:
        self._say(f"[{time.monotonic() - self._started:7.1f} s] {text}")

    async def run(self) -> CampaignResult:
        result, config = self.result, self.config
        self.say(
            f"chaos campaign seed {config.seed}: {len(result.schedule)} faults, "
            f"{config.engines} engines, session {config.session_ms} ms, "
            f"{config.rate} commands/s; logs in {result.run_dir}"
        )
        for fault in result.schedule:
            self._say(f"    {fault.describe()}")
        stack = PrivateStack.under(
            result.run_dir / "stack", config.kafka_port, config.postgres_port
        )
        try:
            result.stack_start_s = await asyncio.to_thread(stack.start)
            self.say(
                f"private stack up in {result.stack_start_s:.1f} s: kafka "
                f"{stack.kafka_bootstrap}, postgres {stack.database_url}"
            )
            settings = campaign_settings(stack, config)
            await setup(settings)
            await self._run_on(stack, settings)
        finally:
            await asyncio.to_thread(stack.destroy, result.run_dir)
            result.wall_s = time.monotonic() - self._started
        return result

    async def _run_on(self, stack: PrivateStack, settings: Settings) -> None:
        result, config = self.result, self.config
        logs = result.run_dir / "engines"
        logs.mkdir(exist_ok=True)
        fleet = Fleet(engine_env(settings, config), logs, config.restart_delay_s)
        load = OrderLoad(
            settings, config.seed, config.rate, config.listings, config.junk_ratio, self.say
        )
        probe = Probe(settings)
        stop_load = asyncio.Event()
        load_task = asyncio.create_task(load.run(stop_load))
        try:
            await fleet.scale(config.engines)
            async with deadline(_SEND_TIMEOUT_S, "the load listing its technologies"):
                await load.listed.wait()
            await probe.wait_group(config.engines, config.recovery_timeout_s)
            targets = await probe.targets()
            await probe.wait_caught_up(targets, config.recovery_timeout_s, "engines starting")
            self.say(f"{config.engines} engines live, load running")
            runner = _FaultRunner(self, fleet, probe, stack)
            started = time.monotonic()
            try:
                for fault in result.schedule:
                    await asyncio.sleep(fault.wait_s)
                    outcome = await runner.run(fault)
                    result.outcomes.append(outcome)
            except ChaosError as e:  # a wait timed out: verify what there is, say why
                result.anomalies.append(f"campaign stopped early: {e}")
                self.say(f"  STOPPED EARLY: {e}")
            result.faults_s = time.monotonic() - started
            stop_load.set()
            async with deadline(_SEND_TIMEOUT_S + 30, "the load stopping"):
                await load_task
            await self._wind_down(fleet, probe, settings)
        finally:
            stop_load.set()
            if not load_task.done():
                load_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ChaosError, KafkaError):
                await load_task
            await fleet.kill_all()
            await probe.close()
            result.exits += fleet.exits
            result.joins_and_leaves += fleet.joins_and_leaves
            result.anomalies.extend(fleet.anomalies)
            result.load = load.stats
        started = time.monotonic()
        self.say("verifying against a pure replay of the command log")
        result.verification = await verify(settings)
        result.verify_s = time.monotonic() - started

    async def _wind_down(self, fleet: Fleet, probe: Probe, settings: Settings) -> None:
        """Let the engines settle everything and stop them gracefully; then let a fresh
        engine recover every partition and snapshot its market at the log end (the books
        the verdict compares with the replay's)."""
        timeout = self.config.recovery_timeout_s
        try:
            ends = await probe.log_ends()
            await probe.wait_caught_up(ends, timeout, "the load stopped")
        except ChaosTimeoutError as e:
            self.result.anomalies.append(f"wind-down: {e}")
        await fleet.close()
        self.say("engines stopped gracefully; a fresh engine recovers and snapshots the books")
        auditor_env = engine_env(
            replace(settings, tick_interval_ms=0, snapshot_every=1), self.config
        )
        auditor = Fleet(
            auditor_env, self.result.run_dir / "engines", self.config.restart_delay_s, "auditor"
        )
        try:
            await auditor.scale(1)
            ends = await probe.log_ends()
            await probe.wait_caught_up(ends, timeout, "the auditor recovering")
            await _tick_every_partition(settings)
            ends = await probe.log_ends()
            await probe.wait_caught_up(ends, timeout, "the auditor snapshotting")
            await auditor.close()
        except ChaosTimeoutError as e:
            self.result.anomalies.append(f"auditor: {e}")
        finally:
            await auditor.kill_all()
            self.result.auditor_exits += auditor.exits
            self.result.anomalies.extend(auditor.anomalies)


async def _tick_every_partition(settings: Settings) -> None:
    """One tick per command partition: a batch that makes a snapshot-every-1 engine save its
    market, and changes nothing else a continuous book holds."""
    producer = make_producer(settings, client_id="chaos-auditor")
    await producer.start()
    try:
        for partition in range(settings.partitions):
            await producer.send_and_wait(
                settings.topics.commands, TICK_RECORD, key=b"tick", partition=partition
            )
    finally:
        await producer.stop()


class _FaultRunner:
    """Carries out one fault and measures how long until everything is settled again."""

    def __init__(self, campaign: Campaign, fleet: Fleet, probe: Probe, stack: PrivateStack) -> None:
        self._campaign = campaign
        self._config = campaign.config
        self._fleet = fleet
        self._probe = probe
        self._stack = stack

    async def run(self, fault: Fault) -> FaultOutcome:
        runners = {
            FaultKind.KILL: self._kill,
            FaultKind.KILL_AFTER_COMMIT: self._kill_after_commit,
            FaultKind.ZOMBIE: self._zombie,
            FaultKind.GROW_SHRINK: self._grow_shrink,
            FaultKind.BROKER_RESTART: self._broker_restart,
            FaultKind.POSTGRES_RESTART: self._postgres_restart,
        }
        outcome = await runners[fault.kind](fault)
        took = f"{outcome.recovery_s:.2f} s" if outcome.recovery_s is not None else "n/a"
        self._campaign.say(
            f"fault {fault.number}/{len(self._campaign.result.schedule)} {fault.kind}: "
            f"recovered in {took}{'; ' + outcome.note if outcome.note else ''}"
        )
        return outcome

    def _pick(self, fault: Fault) -> EngineProcess:
        candidates = [e for e in self._fleet.running if not e.frozen]
        if not candidates:
            raise ChaosError("no running engine to hit")
        return candidates[fault.target % len(candidates)]

    async def _recovered_since(
        self, instant: float, targets: Mapping[int, int], what: str
    ) -> float:
        reached = await self._probe.wait_caught_up(targets, self._config.recovery_timeout_s, what)
        return reached - instant

    async def _kill(self, fault: Fault) -> FaultOutcome:
        victim = await self._running_engine(fault)
        killed_at = time.monotonic()
        victim.signal(signal.SIGKILL)
        targets = await self._probe.targets()
        took = await self._recovered_since(killed_at, targets, f"after killing {victim.name()}")
        return FaultOutcome(fault, took, f"{victim.name()} killed", killed=True)

    async def _running_engine(self, fault: Fault) -> EngineProcess:
        """The fault's target; waits (briefly) for the supervisor when none runs right now."""
        async with deadline(30.0, "a running engine to hit"):
            while True:
                if any(not e.frozen for e in self._fleet.running):
                    return self._pick(fault)
                await asyncio.sleep(POLL_S)

    async def _kill_after_commit(self, fault: Fault) -> FaultOutcome:
        """Replace an engine by one armed to die right after its N-th PostgreSQL commit,
        before the publish: the next owner must publish that batch's events, once.

        An armed engine that ends otherwise first (fenced in a rebalance, say) is followed by
        another armed one, a few times, so the campaign gets the kills it promised."""
        victim = await self._running_engine(fault)
        slot, after = victim.slot, victim.serial
        self._fleet.arm(slot, fault.settles)
        victim.signal(signal.SIGKILL)
        notes = [f"{victim.name()} killed to make room"]
        for _ in range(_ARMED_ATTEMPTS):
            armed = await self._fleet.next_engine(slot, after, 30.0)
            after = armed.serial
            try:
                async with asyncio.timeout(_ARMED_TIMEOUT_S):
                    await armed.exited.wait()
            except TimeoutError:
                armed.signal(signal.SIGKILL)
                await armed.exited.wait()
                notes.append(f"{armed.name()} did not settle {fault.settles} times: killed")
                return FaultOutcome(fault, None, "; ".join(notes))
            targets = await self._probe.targets()
            if armed.cause == ARMED_DEATH:
                took = await self._recovered_since(armed.exited_at, targets, "after an armed death")
                committed = committed_unpublished(armed.log_file) or {}
                where = ", ".join(f"p{p} below {offset}" for p, offset in committed.items())
                notes.append(
                    f"{armed.name()} died right after settlement {fault.settles} "
                    f"(committed, not published: {where or 'unknown'})"
                )
                return FaultOutcome(fault, took, "; ".join(notes), killed=True)
            notes.append(f"{armed.name()} (armed) ended otherwise: {armed.cause}")
            self._fleet.arm(slot, fault.settles)
        took = await self._recovered_since(armed.exited_at, targets, "after armed engines")
        return FaultOutcome(fault, took, "; ".join(notes))

    async def _zombie(self, fault: Fault) -> FaultOutcome:
        """Freeze an engine past its session timeout: the group moves its partitions; when
        it wakes it must find itself fenced (and stop, or rejoin), never double anything."""
        zombie = await self._running_engine(fault)
        frozen_at = time.monotonic()
        zombie.frozen = True
        zombie.signal(signal.SIGSTOP)
        targets = await self._probe.targets()
        await asyncio.sleep(fault.hold_s)
        zombie.signal(signal.SIGCONT)
        zombie.frozen = False
        took = await self._recovered_since(frozen_at, targets, f"after freezing {zombie.name()}")
        try:
            async with asyncio.timeout(2 * self._config.session_ms / 1000):
                await zombie.exited.wait()
        except TimeoutError:
            fate = "still running (rejoined the group)"
        else:
            fate = zombie.cause or "exited"
        return FaultOutcome(fault, took, f"{zombie.name()} frozen {fault.hold_s:.1f} s: {fate}")

    async def _grow_shrink(self, fault: Fault) -> FaultOutcome:
        """1 -> 3 -> 1 engines (graceful stops), each step waited out; then back to normal."""
        fleet, probe, timeout = self._fleet, self._probe, self._config.recovery_timeout_s
        started = time.monotonic()
        for size in (1, 3, 1):
            await fleet.scale(size)
            await probe.wait_group(size, timeout)
            ends = await probe.log_ends()
            await probe.wait_caught_up(ends, timeout, f"the group at {size} engines")
            self._campaign.say(f"    group stable at {size} engine(s), caught up")
        await fleet.scale(self._config.engines)
        return FaultOutcome(fault, time.monotonic() - started, "1 -> 3 -> 1 engines")

    async def _broker_restart(self, fault: Fault) -> FaultOutcome:
        return await self._server_restart(
            fault, "kafka", self._stack.stop_kafka, self._stack.start_kafka
        )

    async def _postgres_restart(self, fault: Fault) -> FaultOutcome:
        return await self._server_restart(
            fault, "postgres", self._stack.stop_postgres, self._stack.start_postgres
        )

    async def _server_restart(
        self, fault: Fault, name: str, stop: Callable[[], None], start: Callable[[], None]
    ) -> FaultOutcome:
        targets = await self._probe.targets()
        stopped_at = time.monotonic()
        await asyncio.to_thread(stop)
        await asyncio.sleep(fault.hold_s)
        await asyncio.to_thread(start)
        down = time.monotonic() - stopped_at
        took = await self._recovered_since(stopped_at, targets, f"after restarting {name}")
        return FaultOutcome(fault, took, f"{name} down {down:.1f} s")


# -- the table ---------------------------------------------------------------------------------


def _seconds(values: list[float]) -> str:
    """Median and maximum, in two 10-character columns."""
    if not values:
        return f"{'-':>10}{'-':>10}"
    return f"{statistics.median(values):>8.2f} s{max(values):>8.2f} s"


def _row(name: str, value: object, rest: str = "") -> str:
    return f"  {name:<38}{value!s:>12}{rest}"


def render(result: CampaignResult) -> str:
    """The campaign's table: faults, exits, volumes, duplicates, failover, checks."""
    lines = [
        f"TechX chaos campaign, seed {result.config.seed}: "
        f"{'PASS' if result.passed else 'FAIL'}  (wall {result.wall_s:.1f} s: stack up "
        f"{result.stack_start_s:.1f} s, faults {result.faults_s:.1f} s, verification "
        f"{result.verify_s:.1f} s)",
        "",
        f"{'faults by kind':<40}{'count':>12}{'median':>10}{'max':>10}   (recovery)",
        *_fault_rows(result),
        "",
        "engine exits by cause",
        *[_row(cause, n) for cause, n in result.exits.most_common()],
        *[_row(f"auditor: {cause}", n) for cause, n in result.auditor_exits.items()],
        _row("group joins + leaves", result.joins_and_leaves),
        "",
        "volumes and duplicates",
        *_volume_rows(result),
        "",
        "checks",
    ]
    for check in result.checks:
        verdict = {True: "PASS", False: "FAIL", None: "INFO"}[check.passed]
        lines.append(f"  {verdict}  {check.name:<36}{check.detail}")
    if result.anomalies:
        lines += ["", "anomalies (engine processes that crashed, harness waits that ran out)"]
        lines += [f"  - {anomaly}" for anomaly in result.anomalies]
    lines += ["", f"logs: {result.run_dir}"]
    return "\n".join(lines)


def _fault_rows(result: CampaignResult) -> list[str]:
    rows = []
    for kind in FaultKind:
        done = [o for o in result.outcomes if o.fault.kind is kind]
        planned = sum(1 for f in result.schedule if f.kind is kind)
        times = [o.recovery_s for o in done if o.recovery_s is not None]
        count = f"{len(done)}" if len(done) == planned else f"{len(done)} of {planned}"
        if kind is FaultKind.KILL_AFTER_COMMIT:
            count = f"{sum(1 for o in done if o.killed)} fired/{count}"
        rows.append(_row(kind.value, count, _seconds(times)))
    failover = result.failover_s
    rows.append(
        _row("failover after a kill (all kills)", len(failover), _seconds(failover))
        + f"   (session {result.config.session_ms} ms)"
    )
    return rows


def _volume_rows(result: CampaignResult) -> list[str]:
    load = result.load
    rows = [
        _row("commands sent", f"{load.commands:,}", f"   + {load.junk:,} junk records"),
        _row("commands sent again (send retried)", f"{load.resent:,}"),
    ]
    verification = result.verification
    if verification is None:
        return rows
    committed, uncommitted = verification.committed, verification.uncommitted
    return [
        *rows,
        _row("command log records", f"{verification.log_records:,}")
        + f"   ({verification.ticks:,} ticks)",
        _row("deals (pure replay)", f"{verification.deals:,}"),
        _row("output messages (pure replay)", f"{committed.expected:,}"),
        _row("duplicates, read_committed", f"{committed.duplicates:,}"),
        _row("missing, read_committed", f"{committed.missing:,}"),
        _row("duplicates, read_uncommitted (info)", f"{uncommitted.duplicates:,}"),
        _row(
            "snapshots equal / stored",
            f"{verification.snapshots_equal} / {verification.snapshots_stored}",
        ),
    ]


async def run_campaign(config: CampaignConfig, say: Say = print) -> CampaignResult:
    return await Campaign(config, say).run()
