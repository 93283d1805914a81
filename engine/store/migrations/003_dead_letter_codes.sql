-- Dead letters carry a stable reason code (schemas.common.DeadLetterReason) in `reason` and
-- the human explanation in `detail`, as the dead-letter topic does in its two headers.
-- Rows written before this migration keep their free-text reason and an empty detail.
ALTER TABLE dead_letters ADD COLUMN detail text NOT NULL DEFAULT '';
