-- techx_settle_rows: techx_settle (009) with the deals and the command outcomes passed as
-- arrays of rows, in their tables' column order, instead of one array per column. asyncpg
-- asks collections.abc of every element of an array parameter whether it is a sub-array, a
-- Python call each: with one array per column that was 27 calls a command, about 40% of the
-- engine's CPU for a settlement of 50 commands; an array of rows costs three a row, and the
-- engine no longer turns its rows into columns. techx_settle stays for engines of earlier
-- versions. The rows' own topic is not trusted: every row goes in under p_topic, the topic
-- whose partitions the same call fences.
CREATE TYPE techx_deal_row AS (
    topic text, deal_id text, technology_id text, deal_number bigint, seq bigint,
    price bigint, quantity bigint, buyer_id text, seller_id text, bid_order_id text,
    offer_order_id text, aggressor_side text, traded_at_ms bigint, source_partition integer,
    source_offset bigint
);
CREATE TYPE techx_outcome_row AS (
    topic text, source_partition integer, source_offset bigint, technology_id text,
    command_type text, participant_id text, client_order_id text, events json
);

CREATE FUNCTION techx_settle_rows(
    p_topic text,
    p_partitions integer[], p_next_offsets bigint[], p_published bigint[],
    p_epochs bigint[], p_expected bigint[],
    p_deals techx_deal_row[], p_outcomes techx_outcome_row[]
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- The fenced offset moves are 009's, run by techx_settle with no rows (it raises TXF01
    -- as before): the fencing rule is written once, for this engine and earlier ones alike.
    PERFORM techx_settle(p_topic, p_partitions, p_next_offsets, p_published, p_epochs,
        p_expected, '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}',
        '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}');
    INSERT INTO deals (topic, deal_id, technology_id, deal_number, seq, price, quantity,
        buyer_id, seller_id, bid_order_id, offer_order_id, aggressor_side, traded_at_ms,
        source_partition, source_offset)
    SELECT p_topic, d.deal_id, d.technology_id, d.deal_number, d.seq, d.price, d.quantity,
        d.buyer_id, d.seller_id, d.bid_order_id, d.offer_order_id, d.aggressor_side,
        d.traded_at_ms, d.source_partition, d.source_offset
    FROM unnest(p_deals) AS d;
    INSERT INTO command_outcomes (topic, source_partition, source_offset, technology_id,
        command_type, participant_id, client_order_id, events)
    SELECT p_topic, o.source_partition, o.source_offset, o.technology_id, o.command_type,
        o.participant_id, o.client_order_id, o.events
    FROM unnest(p_outcomes) AS o;
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'techx_engine') THEN
        GRANT EXECUTE ON FUNCTION techx_settle_rows(text, integer[], bigint[], bigint[],
            bigint[], bigint[], techx_deal_row[], techx_outcome_row[]) TO techx_engine;
    END IF;
END
$$;
