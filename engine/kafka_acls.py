"""Who may do what on the Kafka cluster, as one table (printed by ``techx acls``).

TechX's processes run as five principals, each allowed what its job needs and nothing else:

- ``engine`` (``techx run``) reads commands and alone writes results (deals, executions,
  dead letters, market data), in transactions fenced per command partition; it also
  appends ticks to the command topic, which is why it may write there;
- ``gateway`` (front-ends) and ``operator`` (``techx setup``, ``techx order``,
  ``techx replay``, ``techx dlq``) write commands; only the operator creates topics and reads
  the command log back (and the dead letters, and the engines' group offsets: ``techx lag``),
  and it reads the results too (``techx order`` waits for its command's answer);
- ``subscriber`` (trading screens, statistics) reads deals and executions, never commands
  or dead letters;
- ``backoffice`` (settlement, surveillance) reads executions, deals and dead letters;
- market data is public: every authenticated principal may read it.

The same table is applied by the local stack when it runs locked down
(``python -m devstack up --secure``), printed as ``kafka-acls`` commands for a managed Kafka
(``techx acls``), or applied there with an administrator's credentials
(``techx acls --apply``). A broker with ``allow.everyone.if.no.acl.found=false`` then refuses
the rest: a command written by a principal without WRITE is never on the log.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import structlog
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from aiokafka.protocol.admin import CreateAclsRequest

from engine.errors import ConfigError, TechXError
from engine.kafka_security import kafka_error
from engine.producers.transactions import outputs_group, transactional_id_prefix
from engine.settings import Settings, Topics

log = structlog.get_logger()

#: The roles a TechX installation gives principals to; ``*`` is every authenticated one.
ROLES = ("engine", "gateway", "operator", "subscriber", "backoffice")
EVERYONE = "*"

ResourceType = Literal["topic", "group", "transactional-id", "cluster"]
PatternType = Literal["literal", "prefixed"]
Operation = Literal[
    "Read",
    "Write",
    "Create",
    "Describe",
    "DescribeConfigs",
    "AlterConfigs",
    "IdempotentWrite",
    "All",
]

#: Kafka's wire codes (org.apache.kafka.common.acl / resource enums), for CreateAcls.
_RESOURCE_CODES: dict[ResourceType, int] = {
    "topic": 2,
    "group": 3,
    "cluster": 4,
    "transactional-id": 5,
}
_PATTERN_CODES: dict[PatternType, int] = {"literal": 3, "prefixed": 4}
_OPERATION_CODES: dict[Operation, int] = {
    "All": 2,
    "Read": 3,
    "Write": 4,
    "Create": 5,
    "Describe": 8,
    "DescribeConfigs": 10,
    "AlterConfigs": 11,
    "IdempotentWrite": 12,
}
_ALLOW = 3
_ANY_HOST = "*"
#: The one resource name of the cluster resource.
CLUSTER = "kafka-cluster"


class AclError(TechXError):
    """The broker refused to create an ACL (the principal applying them is not an admin)."""


@dataclass(frozen=True, slots=True)
class AclRule:
    """One ALLOW rule: ``role`` may do ``operation`` on a resource, from any host."""

    role: str
    resource_type: ResourceType
    name: str
    pattern: PatternType
    operation: Operation
    #: Why the role needs it: the README's table and ``techx acls`` say it.
    why: str


def acl_rules(topics: Topics, group_id: str) -> list[AclRule]:
    """Every ACL TechX's roles need for one topic prefix and engine group, nothing more."""
    outputs = (topics.deals, topics.executions, topics.dead_letters, topics.market_data)
    rules: list[AclRule] = []

    def allow(
        role: str,
        resource_type: ResourceType,
        names: tuple[str, ...],
        operations: tuple[Operation, ...],
        why: str,
        pattern: PatternType = "literal",
    ) -> None:
        rules.extend(
            AclRule(role, resource_type, name, pattern, operation, why)
            for name in names
            for operation in operations
        )

    # engine: techx run
    allow("engine", "topic", (topics.commands,), ("Read",), "consume commands")
    allow("engine", "topic", (topics.commands,), ("Write",), "the ticker appends ticks")
    allow("engine", "topic", outputs, ("Write",), "publish settled results")
    allow(
        "engine",
        "group",
        (group_id, outputs_group(group_id)),
        ("Read",),
        "its consumer group; committed-outputs offsets inside transactions",
    )
    allow(
        "engine",
        "transactional-id",
        (transactional_id_prefix(group_id, topics),),
        ("Write", "Describe"),
        "one transactional producer per command partition",
        pattern="prefixed",
    )
    allow("engine", "cluster", (CLUSTER,), ("IdempotentWrite",), "idempotent producers")
    # gateway: front-ends
    allow("gateway", "topic", (topics.commands,), ("Write",), "publish commands")
    allow("gateway", "cluster", (CLUSTER,), ("IdempotentWrite",), "idempotent producer")
    # operator: techx setup, order, replay, dlq, lag
    allow(
        "operator",
        "topic",
        topics.all(),
        ("Create", "Describe", "DescribeConfigs", "AlterConfigs"),
        "techx setup creates and checks topics (and sets min.insync.replicas)",
    )
    allow("operator", "topic", (topics.commands,), ("Write",), "techx order")
    allow("operator", "topic", (topics.commands,), ("Read",), "techx replay reads the log")
    allow(
        "operator",
        "topic",
        (topics.executions, topics.deals, topics.dead_letters),
        ("Read",),
        "techx order waits for its command's answer; techx dlq --source topic",
    )
    allow("operator", "cluster", (CLUSTER,), ("IdempotentWrite",), "idempotent producer")
    allow(
        "operator",
        "group",
        (group_id, outputs_group(group_id)),
        ("Describe",),
        "techx lag reads the groups' committed offsets",
    )
    # subscriber: screens, statistics
    allow("subscriber", "topic", (topics.deals, topics.executions), ("Read",), "outcomes")
    allow("subscriber", "group", ("subscriber.",), ("Read",), "its groups", pattern="prefixed")
    # backoffice: settlement, surveillance
    allow(
        "backoffice",
        "topic",
        (topics.deals, topics.executions, topics.dead_letters),
        ("Read",),
        "settle, audit, chase dead letters",
    )
    allow("backoffice", "group", ("backoffice.",), ("Read",), "its groups", pattern="prefixed")
    # market data is public
    allow(EVERYONE, "topic", (topics.market_data,), ("Read",), "public market data")
    return rules


def principal_of(role: str, principals: Mapping[str, str]) -> str:
    """``User:<role>`` unless the installation maps the role to another principal."""
    if role == EVERYONE:
        return "User:*"
    return principals.get(role, f"User:{role}")


def parse_principals(pairs: list[str]) -> dict[str, str]:
    """``role=User:name`` pairs from the command line (a managed Kafka's service accounts)."""
    principals: dict[str, str] = {}
    for pair in pairs:
        role, equals, principal = pair.partition("=")
        if not equals or role not in ROLES or ":" not in principal:
            raise ConfigError(
                f"--principal takes ROLE=User:NAME with ROLE one of {', '.join(ROLES)}, "
                f'not "{pair[:80]}"'
            )
        principals[role] = principal
    return principals


def kafka_acls_commands(
    rules: list[AclRule],
    principals: Mapping[str, str] | None = None,
    bootstrap: str = "$BOOTSTRAP",
    command_config: str = "admin.properties",
) -> list[str]:
    """The rules as ``kafka-acls.sh --add`` commands, one per role and resource, in the
    table's order."""
    principals = principals or {}
    operations: dict[tuple[str, ResourceType, str, PatternType], list[Operation]] = {}
    for rule in rules:
        key = (rule.role, rule.resource_type, rule.name, rule.pattern)
        operations.setdefault(key, []).append(rule.operation)
    commands = []
    for (role, resource_type, name, pattern), granted in operations.items():
        words = [
            "kafka-acls.sh",
            "--bootstrap-server",
            bootstrap,
            "--command-config",
            command_config,
            "--add",
            "--allow-principal",
            principal_of(role, principals),
        ]
        for operation in granted:
            words += ["--operation", operation]
        words += ["--cluster"] if resource_type == "cluster" else [f"--{resource_type}", name]
        if pattern == "prefixed":
            words += ["--resource-pattern-type", "prefixed"]
        commands.append(" ".join(w if w.startswith("$") else shlex.quote(w) for w in words))
    return commands


async def apply_acls(
    settings: Settings, rules: list[AclRule], principals: Mapping[str, str] | None = None
) -> int:
    """Create the rules on the broker ``settings`` points at, connecting as ``settings``'
    principal (an administrator). Creating an ACL that exists already changes nothing, so
    this is idempotent. Returns how many rules were sent.

    aiokafka 0.14 has no ``create_acls``; its protocol layer has CreateAcls (v1, which every
    broker since 2.0 answers), sent here over its client like its own admin requests.
    """
    principals = principals or {}
    client = AIOKafkaClient(**settings.kafka_options(), client_id="techx-acls")
    try:
        await client.bootstrap()
        node = client.get_random_node()
        # All at once: the broker answers each after a metadata commit (~30 ms); side by side
        # they share the wait.
        answers = await asyncio.gather(
            *(client.send(node, _create_request(rule, principals)) for rule in rules),
            return_exceptions=True,
        )
        responses = []
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer
            responses.append(answer)
    except KafkaError as e:
        raise kafka_error(
            e, f"applying ACLs on {settings.kafka_bootstrap}", settings.kafka_security
        ) from e
    finally:
        await client.close()
    for rule, response in zip(rules, responses, strict=True):
        for code, message in response.creation_responses:
            if code != 0:
                raise AclError(
                    f"the broker refused ACL {describe_rule(rule, principals)} "
                    f"(error {code}): {message}; apply ACLs as a super user"
                )
    log.info("acls_applied", acls=len(rules), bootstrap=settings.kafka_bootstrap)
    return len(rules)


def _create_request(rule: AclRule, principals: Mapping[str, str]) -> CreateAclsRequest:
    return CreateAclsRequest(
        _RESOURCE_CODES[rule.resource_type],
        rule.name,
        _PATTERN_CODES[rule.pattern],
        principal_of(rule.role, principals),
        _ANY_HOST,
        _OPERATION_CODES[rule.operation],
        _ALLOW,
    )


def describe_rule(rule: AclRule, principals: Mapping[str, str] | None = None) -> str:
    """``User:engine Read topic techx.commands.v1`` (prefixed patterns end in ``*``)."""
    name = f"{rule.name}*" if rule.pattern == "prefixed" else rule.name
    return (
        f"{principal_of(rule.role, principals or {})} {rule.operation} {rule.resource_type} {name}"
    )


def print_acls(settings: Settings, principals: Mapping[str, str]) -> None:
    """What ``techx acls`` prints: a shell script of ``kafka-acls.sh`` commands."""
    rules = acl_rules(settings.topics, settings.group_id)
    print(
        f"# TechX ACLs: topics {settings.topics.prefix}.*, engine group {settings.group_id}.\n"
        "# BOOTSTRAP: the brokers; admin.properties: an administrator's security.protocol,\n"
        "# sasl.* and ssl.* client settings. Creating an ACL twice changes nothing."
    )
    for command in kafka_acls_commands(rules, principals):
        print(command)
