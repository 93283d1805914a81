"""One root error type for the engine.

The consumer loop decides between retry, dead-letter and stop by reading ``retriable``
instead of matching on class names (the aiokafka habit).
"""

from __future__ import annotations

from schemas.common import DeadLetterReason


class TechXError(Exception):
    """Root of every error the engine raises on purpose."""

    retriable: bool = False


class ConfigError(TechXError):
    """A ``TECHX_*`` setting is missing or malformed; fix the environment and restart."""


class SchemaMissingError(ConfigError):
    """The database at ``TECHX_DATABASE_URL`` lacks TechX's tables: ``techx setup`` never ran
    there (or the URL names another database). Not a malformed variable, so its own hint."""


class DemoError(TechXError):
    """``techx demo`` cannot run: a server does not answer, or a demo task never got ready."""


class OperatorCommandError(TechXError):
    """An operator command (``techx dlq``, ``export``, ``book``, ``lag``) cannot do what was
    asked: an unknown dead letter, a corrected command that would be dead-lettered again, a
    re-drive already done, a missing optional dependency. Nothing was changed."""


class DecodeError(TechXError):
    """A command record is not valid JSON of a known command type: it is dead-lettered.

    ``reason`` is the stable code a front-end can switch on; the message is for people.
    """

    def __init__(self, reason: DeadLetterReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class FencedError(TechXError):
    """Another engine process took over a partition (its owner_epoch moved on): stop it."""

    def __init__(self, message: str, partition: int) -> None:
        super().__init__(message)
        self.partition = partition


class StoreUnavailableError(TechXError):
    """PostgreSQL could not be reached or the transaction failed transiently; retry the batch."""

    retriable = True


class StoreRefusedError(TechXError):
    """PostgreSQL refused a write for a reason retrying cannot mend (a bug or a bad schema)."""


class BrokerUnavailableError(TechXError):
    """Kafka could not be reached or refused a publish transiently; retry."""

    retriable = True


class KafkaAccessDeniedError(TechXError):
    """Kafka refused this process's principal: a wrong password, or an ACL it lacks. Retrying
    cannot mend it; the credentials (``TECHX_KAFKA_*``) or the ACLs (``techx acls``) must."""


class DeterminismError(TechXError):
    """Replaying the command log produced different results from what was settled."""


class OutputsAheadError(TechXError):
    """The output topics hold events of commands PostgreSQL never settled: the database and
    the topics come from different installations (say, a database restored from an older
    backup). The engine stops rather than publish those events a second time."""


class LogTruncatedError(TechXError):
    """Commands needed to rebuild a market are not in the log: deleted by retention, or
    the topic was recreated (or lost records) after PostgreSQL settled them."""


class PublishFailedError(TechXError):
    """The broker refused or lost a settled batch's events after the producer's own retries.

    The engine stops rather than publish later batches first: a restart re-derives every
    unpublished event from the command log and publishes them in order.
    """


class PipelineBrokenError(TechXError):
    """A stage of the engine failed; work waiting on it (a rebalance drain) gives up."""


class SnapshotError(TechXError):
    """A stored market snapshot cannot be read back (unknown version, crossed book)."""


class ApiKeyError(TechXError):
    """A ``techx keys`` command cannot be done: an unknown or revoked key, a bad participant."""


class CommandLineError(TechXError):
    """An operator's argument names what does not exist (a partition beyond the topic's
    count, a topic never set up): the command stops before doing anything, exit status 2."""
