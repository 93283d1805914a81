-- Snapshots of each partition's market, written in the settlement transaction of the batch
-- they follow: recovery loads the newest one at or below the published offset and replays
-- only the commands after it.
CREATE TABLE market_snapshots (
    topic        text    NOT NULL,
    partition    integer NOT NULL,
    next_offset  bigint  NOT NULL,  -- the snapshot is the market after offsets below this
    state        bytea   NOT NULL,  -- msgpack, engine/snapshot.py
    digest       text    NOT NULL,  -- sha256 of state: checked again after loading
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition, next_offset)
);
