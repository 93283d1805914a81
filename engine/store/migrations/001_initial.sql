-- Settlement store: deals, order history, dead letters and each partition's position.

CREATE TABLE partition_state (
    topic            text    NOT NULL,
    partition        integer NOT NULL,
    -- First command offset not yet applied: the commit point of the engine.
    next_offset      bigint  NOT NULL DEFAULT 0,
    -- Events of commands below this offset are known to be on the output topics.
    published_offset bigint  NOT NULL DEFAULT 0,
    -- Bumped by every engine that takes the partition over; a stale owner's write fails.
    owner_epoch      bigint  NOT NULL DEFAULT 0,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition),
    CHECK (published_offset <= next_offset)
);

CREATE TABLE deals (
    deal_id               text    PRIMARY KEY,
    technology_id         text    NOT NULL,
    deal_number           bigint  NOT NULL,
    seq                   bigint  NOT NULL,
    price                 bigint  NOT NULL CHECK (price > 0),
    quantity              bigint  NOT NULL CHECK (quantity > 0),
    buyer_id              text    NOT NULL,
    seller_id             text    NOT NULL,
    bid_order_id          text    NOT NULL,
    offer_order_id        text    NOT NULL,
    aggressor_side        text    NOT NULL,
    traded_at_ms          bigint  NOT NULL,
    source_partition      integer NOT NULL,
    source_offset         bigint  NOT NULL,
    UNIQUE (technology_id, deal_number)
);
CREATE INDEX deals_by_source ON deals (source_partition, source_offset);

CREATE TABLE order_events (
    source_partition integer NOT NULL,
    source_offset    bigint  NOT NULL,
    position         integer NOT NULL,  -- index of the event among its command's events
    technology_id    text    NOT NULL,
    seq              bigint  NOT NULL,
    event_type       text    NOT NULL,
    participant_id   text    NOT NULL,
    client_order_id  text    NOT NULL,
    body             jsonb   NOT NULL,
    PRIMARY KEY (source_partition, source_offset, position)
);
CREATE INDEX order_events_by_participant ON order_events (participant_id, client_order_id);

CREATE TABLE dead_letters (
    source_partition integer NOT NULL,
    source_offset    bigint  NOT NULL,
    reason           text    NOT NULL,
    record_key       bytea,
    record_value     bytea,
    timestamp_ms     bigint  NOT NULL,
    PRIMARY KEY (source_partition, source_offset)
);
