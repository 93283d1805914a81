"""TechX on a locked-down stack: SASL/SCRAM principals, ACLs, TLS, and PostgreSQL's runtime role.

The module starts a private stack of its own (``devstack.up`` with ``secure=True``: free
ports, a state dir under pytest's temporary folder, the development stack's Kafka jars
hard-linked), grants each test's topic prefix and engine group the ACLs of
``engine.kafka_acls``, and takes the stack down at the end. Nothing here touches the shared
development stack, whose PostgreSQL roles and Kafka listeners other tests rely on.

It is skipped, saying so, only when Java, Maven or PostgreSQL are not installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import os
import random
import re
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import asyncpg
import pytest
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)

import devstack
from devstack import MissingToolError, StackSettings
from devstack.kafka import KafkaPaths
from devstack.postgres import cluster_home, running_as_root
from devstack.security import ca_file, read_password
from devstack.security import client_security as stack_security
from engine.commands.dlq import dlq_list
from engine.commands.lag import group_lags
from engine.commands.outcome import OutcomeWatcher
from engine.commands.setup import setup, setup_database
from engine.core.codec import TICK_RECORD, decode_event
from engine.core.partitioning import partition_for
from engine.errors import BrokerUnavailableError, KafkaAccessDeniedError
from engine.kafka_security import KafkaSecurity
from engine.producers.client import TradingClient
from engine.producers.simulation import OrderFlow, generated_listings
from engine.producers.transactions import outputs_group
from engine.settings import Settings, Topics
from engine.store.connection import connected
from schemas.commands import TechnologyCommand
from schemas.events import Deal
from tests.chaos.stack import seed_kafka_jars
from tests.chaos.verify import wait_transactions_closed
from tests.integration.harness import (
    assert_settled_and_published_once,
    command_end_offsets,
    read_topic,
    running_engine,
    wait_until_settled,
)
from tests.polling import eventually

pytestmark = pytest.mark.integration

_counter = itertools.count()
#: librdkafka fixed its SCRAM for Kafka 4 brokers in 2.6.1 (confluentinc/librdkafka#4895).
_SCRAM_FIXED_IN = (2, 6, 1)
KCAT_TIMEOUT_S = 30.0


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port(span: int, avoid: range = range(0)) -> int:
    """A port with the ``span - 1`` ports above it free too (broker, controller, TLS).

    Below Linux's ephemeral range (32768 and up): a port found free there can be taken as
    the local end of an outgoing connection before the broker binds it.
    """
    draw = random.Random()
    for _ in range(200):
        port = draw.randrange(20_000, 32_000 - span)
        ports = range(port, port + span)
        if not set(ports) & set(avoid) and all(map(_bindable, ports)):
            return port
    raise AssertionError("no free ports for the locked-down stack")


@pytest.fixture(scope="module")
def secure_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackSettings]:
    """A locked-down Kafka (SCRAM users, ACLs, a TLS listener) and a PostgreSQL of this
    module's own; module-scoped so it is down again before the next module runs."""
    state = tmp_path_factory.mktemp("locked-down")
    kafka_port = _free_port(3)
    # Built field by field: TECHX_* in the environment name the shared stack.
    stack = StackSettings(
        state_dir=state.resolve(),
        kafka_port=kafka_port,
        postgres_port=_free_port(1, avoid=range(kafka_port, kafka_port + 3)),
        pg_bin=Path(os.environ.get("TECHX_PG_BIN") or StackSettings().pg_bin),
        secure=True,
    )
    seed_kafka_jars(stack.state_dir)
    try:
        devstack.up(stack)
        yield stack
    except MissingToolError as e:
        pytest.skip(f"the locked-down stack needs Java, Maven and PostgreSQL: {e}")
    finally:
        # Also after a failed `up`: PostgreSQL may be running while the broker is not.
        devstack.down(stack)
        shutil.rmtree(cluster_home(stack, as_root=running_as_root()), ignore_errors=True)
        shutil.rmtree(KafkaPaths.of(stack).root, ignore_errors=True)


@dataclass(frozen=True, slots=True)
class Locked:
    """One test's topics, group and database on the locked-down stack, as any principal."""

    stack: StackSettings
    base: Settings

    def as_(self, principal: str, *, tls: bool = False) -> Settings:
        """The test's settings, connecting as ``principal`` (over TLS on the TLS port)."""
        security = stack_security(self.stack, principal, tls=tls)
        if tls:
            return replace(
                self.base,
                kafka_bootstrap=f"127.0.0.1:{self.stack.tls_port}",
                kafka_security=security,
            )
        return replace(self.base, kafka_security=security)


@pytest.fixture
async def locked(secure_stack: StackSettings) -> AsyncIterator[Locked]:
    """Fresh topics (created by ``operator``), engine group, ACLs and database for one test."""
    tag = f"s{os.getpid()}x{next(_counter)}"
    database = f"techx_{tag}"
    admin_url = secure_stack.database_url
    async with connected(admin_url) as connection:
        await connection.execute(f'CREATE DATABASE "{database}"')
    base = Settings(
        kafka_bootstrap=secure_stack.kafka_bootstrap,
        database_url=f"{admin_url.rpartition('/')[0]}/{database}",
        topics=Topics(f"sec.{tag}"),
        group_id=f"sec-{tag}",
        batch_max_records=500,
        tick_interval_ms=0,
        session_timeout_ms=3000,
    )
    await asyncio.to_thread(devstack.grant_acls, secure_stack, base.topics, base.group_id)
    locked = Locked(secure_stack, base)
    await setup(locked.as_("operator"))
    yield locked
    async with connected(admin_url) as connection:
        await connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


async def _transactions_closed(locked: Locked) -> None:
    """Wait until the last transactions' commit markers are written: the engine's commit
    returns before the broker has written them, and read_committed readers see up to them.
    Read as backoffice, which may read every output topic (market data is public)."""
    still_open = await wait_transactions_closed(locked.as_("backoffice"), timeout_s=30)
    assert still_open is None, f"transactions still open on {still_open}"


def _stream(seed: int, orders: int) -> list[TechnologyCommand]:
    flow = OrderFlow(seed, generated_listings(4), invalid_ratio=0.05)
    return flow.listing_commands() + flow.next_commands(orders)


async def _refused_to_read(settings: Settings, topic: str) -> bool:
    """Whether the broker refuses ``settings``' principal the records of ``topic``.

    A principal that may not even describe the topic is refused its metadata, which a
    subscribing consumer asks for first (a consumer assigned partitions would only time
    out). One that may describe it (a writer) but has no consumer group is refused the
    fetch of a consumer without a group.
    """
    principal = settings.kafka_security.username
    consumer = AIOKafkaConsumer(topic, **settings.kafka_options(), group_id=f"{principal}.probe")
    try:
        await consumer.start()
    except TopicAuthorizationFailedError:
        return True
    except GroupAuthorizationFailedError:
        pass
    finally:
        await asyncio.sleep(0)  # as log_reader: let the consumer's tasks start before stopping
        await consumer.stop()
    try:
        await read_topic(settings, topic)
    except TopicAuthorizationFailedError:
        return True
    return False


async def test_gateway_trades_engine_settles_exactly_once_and_each_reader_sees_its_topics(
    locked: Locked,
) -> None:
    """Under its ACLs alone the engine consumes, settles and publishes in transactions (and
    its ticker ticks); the gateway's commands trade; subscribers read deals, executions and
    market data but never commands or dead letters; the back office reads dead letters."""
    engine = replace(locked.as_("engine"), tick_interval_ms=200)
    commands = _stream(41, 600)
    async with running_engine(engine):
        async with TradingClient(locked.as_("gateway")) as gateway:
            assert await gateway.send_many(commands) == len(commands)
            for technology in ("NOT-JSON-1", "NOT-JSON-2"):
                await gateway.send_raw(technology, b"{not json")  # dead letters
        await wait_until_settled(locked.as_("operator"))

    subscriber = locked.as_("subscriber")
    await _transactions_closed(locked)
    deal_ids = await assert_settled_and_published_once(subscriber, commands)
    assert len(deal_ids) > 50, "the stream should trade"
    # Exactly once: the committed-outputs group, moved inside the transactions, reached past
    # every command that had outputs (batches of ticks alone commit no transaction).
    log = await read_topic(locked.as_("operator"), engine.topics.commands)
    assert any(r.value == TICK_RECORD for rs in log.values() for r in rs), "the ticker ticked"
    last_command = {
        p: max(offsets)
        for p, rs in log.items()
        if (offsets := [r.offset for r in rs if r.value != TICK_RECORD])
    }
    admin = AIOKafkaAdminClient(**locked.as_("admin").kafka_options())
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(outputs_group(engine.group_id))
    finally:
        await admin.close()
    reached = {tp.partition: m.offset for tp, m in committed.items()}
    assert set(reached) == set(last_command)
    assert all(reached[p] > offset for p, offset in last_command.items()), reached

    topics = engine.topics
    executions = await read_topic(subscriber, topics.executions)
    assert sum(map(len, executions.values())) > len(commands) // 2
    assert sum(map(len, (await read_topic(subscriber, topics.market_data)).values())) > 0
    assert await _refused_to_read(subscriber, topics.commands)
    assert await _refused_to_read(subscriber, topics.dead_letters)
    assert await _refused_to_read(locked.as_("gateway"), topics.commands)
    backoffice = locked.as_("backoffice")
    dead = await read_topic(backoffice, topics.dead_letters)
    assert sum(map(len, dead.values())) == 2
    deals = await read_topic(backoffice, topics.deals)
    assert (
        sorted(
            e.deal_id
            for rs in deals.values()
            for r in rs
            if isinstance(e := decode_event(r.value), Deal)
        )
        == deal_ids
    )
    assert await _refused_to_read(backoffice, topics.commands)


async def test_a_principal_without_write_on_commands_is_refused(locked: Locked) -> None:
    """A command written straight to Kafka by subscriber or back office (no WRITE on the
    command topic) is refused by the broker and never reaches the log."""
    topic = locked.base.topics.commands
    for principal in ("subscriber", "backoffice"):
        producer = AIOKafkaProducer(
            **locked.as_(principal).kafka_options(), enable_idempotence=False, acks="all"
        )
        await producer.start()
        try:
            with pytest.raises(TopicAuthorizationFailedError):
                await producer.send_and_wait(topic, b'{"type":"tick"}', key=b"X", partition=0)
        finally:
            await producer.stop()
        # TechX's own client is idempotent: the broker refuses it a producer id already.
        with pytest.raises(KafkaAccessDeniedError, match=f"User:{principal}"):
            async with TradingClient(locked.as_(principal)) as client:
                await client.list_technology("T-1", "exchange-ops", "refused", 1, 1)
    assert await command_end_offsets(locked.as_("operator")) == dict.fromkeys(
        range(locked.base.partitions), 0
    )


async def test_the_operator_may_read_dead_letters_and_group_lag_and_a_subscriber_may_not(
    locked: Locked,
) -> None:
    """`techx dlq --source topic` and `techx lag` work under the operator's ACLs alone; a
    subscriber is refused the engines' group offsets."""
    async with running_engine(locked.as_("engine")):
        async with TradingClient(locked.as_("operator")) as client:
            bad_offset = await client.send_raw("NOT-JSON-OPS", b"{not json")
        await wait_until_settled(locked.as_("operator"))
    await _transactions_closed(locked)
    operator = locked.as_("operator")
    listed = io.StringIO()
    await dlq_list(operator, source="topic", as_json=True, out=listed)
    (dead,) = [json.loads(line) for line in listed.getvalue().splitlines()]
    assert (dead["offset"], dead["reason"]) == (bad_offset, "malformed_json")

    async def engines_caught_up() -> bool:
        lags = [lag for lag in await group_lags(operator) if lag.group == operator.group_id]
        assert sum(lag.log_end for lag in lags) == 1
        return sum(lag.lag for lag in lags) == 0

    await eventually(engines_caught_up, 30, "the engines' group committing the dead letter")
    with pytest.raises(KafkaAccessDeniedError):
        await group_lags(locked.as_("subscriber"))


async def test_a_wrong_password_or_an_untrusted_broker_certificate_stops_the_client(
    locked: Locked,
) -> None:
    """A wrong SCRAM password, or a TLS broker whose certificate the client does not trust,
    fails at start with an error that says why; the right CA makes TLS work."""
    wrong = replace(locked.base, kafka_security=KafkaSecurity.sasl("gateway", "not-the-password"))
    with pytest.raises(BrokerUnavailableError, match="wrong password"):
        async with TradingClient(wrong):
            pass
    over_tls = locked.as_("gateway", tls=True)
    untrusted = replace(
        over_tls,
        kafka_security=replace(
            over_tls.kafka_security,
            ca_file=None,
            ssl_context=KafkaSecurity.from_env(
                {"TECHX_KAFKA_SECURITY_PROTOCOL": "SSL"}
            ).ssl_context,  # the system's trust store: it knows no local certificate
        ),
    )
    with pytest.raises(BrokerUnavailableError, match=re.escape(KafkaConnectionError.__name__)):
        async with TradingClient(untrusted):
            pass
    async with TradingClient(over_tls) as client:
        offset = await client.list_technology("TLS-1", "exchange-ops", "over TLS", 1, 1)
    assert offset == 0


# -- kcat, the front-end of the schemas/README.md guide --------------------------------------


def _librdkafka_version() -> tuple[int, ...]:
    import subprocess  # noqa: PLC0415 - only this helper runs a tool synchronously

    banner = subprocess.run(["kcat", "-V"], capture_output=True, text=True, check=False).stdout
    found = re.search(r"librdkafka (\d+)\.(\d+)\.(\d+)", banner)
    assert found, f"kcat -V does not name its librdkafka: {banner!r}"
    return tuple(int(part) for part in found.groups())


def _kcat_security(stack: StackSettings, principal: str) -> tuple[str, list[str]]:
    """kcat's bootstrap and ``-X`` settings to act as ``principal``.

    SCRAM-SHA-512 on the SASL_PLAINTEXT port when kcat's librdkafka is 2.6.1 or newer;
    older ones (Debian 12's kcat has 2.0.2) fail SCRAM against Kafka 4 brokers, so they log
    in with PLAIN, inside TLS, on the TLS port, as the same principal with the same password.
    """
    password = read_password(stack, principal)
    if _librdkafka_version() >= _SCRAM_FIXED_IN:
        return stack.kafka_bootstrap, [
            "security.protocol=SASL_PLAINTEXT",
            "sasl.mechanisms=SCRAM-SHA-512",
            f"sasl.username={principal}",
            f"sasl.password={password}",
        ]
    return f"127.0.0.1:{stack.tls_port}", [
        "security.protocol=SASL_SSL",
        f"ssl.ca.location={ca_file(stack)}",
        "sasl.mechanisms=PLAIN",
        f"sasl.username={principal}",
        f"sasl.password={password}",
    ]


async def _kcat_produce(
    stack: StackSettings, principal: str, topic: str, records: list[tuple[str, bytes]]
) -> tuple[int, str]:
    """Produce ``key|value`` lines with kcat as ``principal``; (exit status, stderr)."""
    assert shutil.which("kcat"), "kcat is missing: deploy/local/bootstrap.sh installs it"
    bootstrap, settings = _kcat_security(stack, principal)
    options = [x for setting in settings for x in ("-X", setting)]
    process = await asyncio.create_subprocess_exec(
        "kcat",
        "-b",
        bootstrap,
        *options,
        "-X",
        "partitioner=murmur2_random",
        "-X",
        "enable.idempotence=true",
        "-P",
        "-t",
        topic,
        "-K",
        "|",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    lines = b"".join(key.encode() + b"|" + value + b"\n" for key, value in records)
    _, err = await asyncio.wait_for(process.communicate(lines), KCAT_TIMEOUT_S)
    assert process.returncode is not None
    return process.returncode, err.decode(errors="replace")


async def test_kcat_as_gateway_trades_and_kcat_as_subscriber_is_refused(locked: Locked) -> None:
    """kcat, logged in as gateway, produces a listing and two orders that trade; the same
    records from kcat logged in as subscriber are refused (Topic authorization failed)."""
    technology = "KCAT-SEC-1"
    records = [
        (
            technology,
            b'{"type":"list_technology","technology_id":"KCAT-SEC-1","participant_id":'
            b'"exchange-ops","name":"kcat over SASL","tick_size":1000,"lot_size":1}',
        ),
        (
            technology,
            b'{"type":"place_order","technology_id":"KCAT-SEC-1","participant_id":"seller-1",'
            b'"client_order_id":"s-1","side":"offer","order_type":"limit","quantity":2,'
            b'"price":52000}',
        ),
        (
            technology,
            b'{"type":"place_order","technology_id":"KCAT-SEC-1","participant_id":"buyer-05",'
            b'"client_order_id":"b-1","side":"bid","order_type":"limit","quantity":2,'
            b'"price":52000}',
        ),
    ]
    topic = locked.base.topics.commands
    code, err = await _kcat_produce(locked.stack, "subscriber", topic, records)
    assert code != 0
    assert "Topic authorization failed" in err

    async with running_engine(locked.as_("engine")):
        code, err = await _kcat_produce(locked.stack, "gateway", topic, records)
        assert code == 0, err

        async def traded() -> bool:
            async with connected(locked.base.database_url) as connection:
                found = await connection.fetch("SELECT deal_id, quantity, buyer_id FROM deals")
            return [tuple(row) for row in found] == [(f"{technology}:d1", 2, "buyer-05")]

        await eventually(traded, what="the kcat orders' deal settled")
    assert sum((await command_end_offsets(locked.as_("operator"))).values()) == 3


# -- PostgreSQL: the engine's runtime role ---------------------------------------------------


async def test_the_runtime_role_settles_and_recovers_but_cannot_rewrite_deals(
    locked: Locked,
) -> None:
    """An engine logged in as a member of techx_engine settles, snapshots (and prunes old
    snapshots) and recovers after a restart; the same login may not UPDATE, DELETE or
    TRUNCATE a settled deal, nor any command outcome or dead letter."""
    login = f"engine_{locked.base.group_id.replace('-', '_')}"
    async with connected(locked.stack.database_url) as connection:
        await connection.execute(f"CREATE ROLE {login} LOGIN IN ROLE techx_engine")
    try:
        database = locked.base.database_url.rpartition("/")[2]
        as_role = replace(
            locked.as_("engine"),
            database_url=f"postgresql://{login}@127.0.0.1:{locked.stack.postgres_port}/{database}",
            snapshot_every=20,
            batch_max_records=10,  # batches small enough for a snapshot every 20 commands
        )
        first, second = _stream(7, 300), _stream(8, 300)[4:]  # the same 4 listings
        for commands in (first, second):
            async with running_engine(as_role):
                async with TradingClient(locked.as_("gateway")) as gateway:
                    await gateway.send_many(commands)
                await wait_until_settled(as_role)
        traded = {p: end for p, end in (await command_end_offsets(as_role)).items() if end}
        assert max(traded.values()) > 8 * 20, "enough commands for old snapshots to go"
        async with connected(as_role.database_url) as connection:
            snapshots = await connection.fetch(
                "SELECT partition, count(*) AS kept FROM market_snapshots GROUP BY partition"
            )
            assert {row["partition"] for row in snapshots} == set(traded)
            # Statistics of this database, flushed when the engine's sessions ended.
            deleted = await connection.fetchval(
                "SELECT n_tup_del FROM pg_stat_user_tables WHERE relname = 'market_snapshots'"
            )
            assert deleted > 0, "the engine deleted old snapshots"
            assert await connection.fetchval("SELECT count(*) FROM deals") > 0
            for statement in (
                "UPDATE deals SET price = price + 1",
                "DELETE FROM deals",
                "TRUNCATE deals",
                "UPDATE command_outcomes SET events = '[]'",
                "DELETE FROM command_outcomes",
                "DELETE FROM dead_letters",
                "DROP TABLE deals",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await connection.execute(statement)
        await _transactions_closed(locked)
        await assert_settled_and_published_once(locked.as_("subscriber"), first + second)
    finally:
        async with connected(locked.stack.database_url) as connection:
            with contextlib.suppress(asyncpg.PostgresError):
                await connection.execute(f"DROP OWNED BY {login}")
            await connection.execute(f"DROP ROLE IF EXISTS {login}")


async def _grants(connection: asyncpg.Connection, role: str) -> dict[str, list[str]]:
    rows = await connection.fetch(
        "SELECT table_name, array_agg(privilege_type::text ORDER BY privilege_type)"
        " AS privileges FROM information_schema.role_table_grants"
        " WHERE grantee = $1 AND table_schema = current_schema()"
        " GROUP BY table_name",
        role,
    )
    return {row["table_name"]: row["privileges"] for row in rows}


async def test_every_table_is_granted_to_the_runtime_role(locked: Locked) -> None:
    """Each table has its runtime role's grants (the engine's, or the gateway's API keys),
    and the settled record tables only INSERT and SELECT (a new migration's table without
    grants fails here)."""
    async with connected(locked.base.database_url) as connection:
        granted = await _grants(connection, "techx_engine")
        gateway = await _grants(connection, "techx_gateway")
        tables = await connection.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        )
    assert gateway == {"api_keys": ["SELECT"]}, "the gateway reads keys and nothing else"
    assert "api_keys" not in granted, "the engine never reads API keys"
    everything = {row["tablename"] for row in tables}
    # Operators' own tables (re-drives of dead letters) are no runtime role's business.
    operators = {"dead_letter_redrives"}
    assert everything - set(granted) - set(gateway) == {"schema_migrations", *operators}
    for table in ("deals", "command_outcomes", "dead_letters"):
        assert granted[table] == ["INSERT", "SELECT"], table
    assert granted["partition_state"] == ["INSERT", "SELECT", "UPDATE"]
    assert granted["market_snapshots"] == ["DELETE", "INSERT", "SELECT"]


async def test_a_migrating_user_who_may_not_create_roles_is_told_and_not_stopped(
    secure_stack: StackSettings,
) -> None:
    """Without superuser or CREATEROLE and with no techx_engine role yet, `techx setup`
    applies every migration, and logs a notice saying what a DBA must do."""
    admin_url = secure_stack.database_url
    owner, database = f"owner_{os.getpid()}", f"techx_plain_{os.getpid()}"
    async with connected(admin_url) as connection:
        await _drop_runtime_role(connection, secure_stack)
        await connection.execute(f"CREATE ROLE {owner} LOGIN")
        await connection.execute(f'CREATE DATABASE "{database}" OWNER {owner}')
    try:
        url = f"postgresql://{owner}@127.0.0.1:{secure_stack.postgres_port}/{database}"
        with structlog.testing.capture_logs() as logs:
            applied = await setup_database(Settings(database_url=url))
        assert {6, 7} <= set(applied)
        notices = [e["notice"] for e in logs if e["event"] == "migration_notice"]
        assert len(notices) == 2
        assert "CREATE ROLE techx_engine NOLOGIN" in notices[0]
        assert "CREATE ROLE techx_gateway NOLOGIN" in notices[1]
        async with connected(admin_url) as connection:
            assert not await connection.fetchval(
                "SELECT count(*) FROM pg_roles WHERE rolname IN ('techx_engine', 'techx_gateway')"
            )
    finally:
        async with connected(admin_url) as connection:
            await connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            await connection.execute(f"DROP ROLE IF EXISTS {owner}")


async def _drop_runtime_role(connection: asyncpg.Connection, stack: StackSettings) -> None:
    """Remove the runtime roles from this private cluster: their grants in every database
    first."""
    names = await connection.fetch("SELECT datname FROM pg_database WHERE datallowconn")
    base = stack.database_url.rpartition("/")[0]
    for role in ("techx_engine", "techx_gateway"):
        for row in names:
            async with connected(f"{base}/{row['datname']}") as other:
                with contextlib.suppress(asyncpg.UndefinedObjectError):
                    await other.execute(f"DROP OWNED BY {role}")
        await connection.execute(f"DROP ROLE IF EXISTS {role}")


async def test_the_operator_reads_the_answer_to_its_own_command(locked: Locked) -> None:
    """`techx order` runs as operator and waits for the engine's answer: the ACLs let it read
    the results on its command's partition (executions, deals, dead letters)."""
    operator = locked.as_("operator")
    async with running_engine(locked.as_("engine")):
        partition = partition_for("OPS-SEC-1", operator.partitions)
        async with OutcomeWatcher(operator, partition) as watcher:
            async with TradingClient(operator) as client:
                offset = await client.list_technology("OPS-SEC-1", "exchange-ops", "x", 1, 1)
            outcome = await watcher.wait(offset, 30)
    assert outcome is not None
    assert outcome.verdict == "accepted"
    assert [type(event).__name__ for event in outcome.events] == ["TechnologyListed"]
