-- The command topic is part of every settlement table's key, as it already is of
-- partition_state and market_snapshots: several topic prefixes (tenants, test runs) can then
-- share one database. Rows written before this migration belong to the one topic whose
-- partition_state exists (two topics could not have settled side by side before: their keys
-- collided).

ALTER TABLE deals ADD COLUMN topic text;
ALTER TABLE command_outcomes ADD COLUMN topic text;
ALTER TABLE dead_letters ADD COLUMN topic text;

UPDATE deals SET topic = coalesce((SELECT min(topic) FROM partition_state), 'techx.commands.v1');
UPDATE command_outcomes
    SET topic = coalesce((SELECT min(topic) FROM partition_state), 'techx.commands.v1');
UPDATE dead_letters
    SET topic = coalesce((SELECT min(topic) FROM partition_state), 'techx.commands.v1');

ALTER TABLE deals ALTER COLUMN topic SET NOT NULL;
ALTER TABLE command_outcomes ALTER COLUMN topic SET NOT NULL;
ALTER TABLE dead_letters ALTER COLUMN topic SET NOT NULL;

ALTER TABLE deals DROP CONSTRAINT deals_pkey;
ALTER TABLE deals ADD PRIMARY KEY (topic, technology_id, deal_number);
DROP INDEX deals_by_source;
CREATE INDEX deals_by_source ON deals (topic, source_partition, source_offset);

ALTER TABLE command_outcomes DROP CONSTRAINT command_outcomes_pkey;
ALTER TABLE command_outcomes ADD PRIMARY KEY (topic, source_partition, source_offset);

ALTER TABLE dead_letters DROP CONSTRAINT dead_letters_pkey;
ALTER TABLE dead_letters ADD PRIMARY KEY (topic, source_partition, source_offset);
