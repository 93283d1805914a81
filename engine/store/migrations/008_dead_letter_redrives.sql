-- Re-drives of dead letters (`techx dlq redrive`): an operator publishes a corrected command
-- for a dead letter, and this table remembers who did it, when, and where it went, so the
-- same dead letter is not re-driven twice by accident. Attempt 1 is the re-drive; a later
-- attempt exists only when the operator insisted (--force). A row is written (claimed)
-- before the corrected command is published and completed with its offset afterwards.
-- An operator's table: the engine never reads or writes it, so techx_engine gets no grant.
CREATE TABLE dead_letter_redrives (
    topic             text    NOT NULL,
    source_partition  integer NOT NULL,
    source_offset     bigint  NOT NULL,
    attempt           integer NOT NULL CHECK (attempt > 0),
    redriven_by       text    NOT NULL,
    redriven_at       timestamptz NOT NULL DEFAULT now(),
    -- Where the corrected command landed on the command topic (NULL while publishing).
    new_partition     integer,
    new_offset        bigint,
    command           bytea   NOT NULL,
    PRIMARY KEY (topic, source_partition, source_offset, attempt)
);
