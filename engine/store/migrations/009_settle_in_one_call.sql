-- techx_settle: a whole settlement in one call, for what the engine settles under steady order
-- flow (small batches, no dead letters, no snapshot). The same work as the engine's
-- transaction (move each partition's offset under its owner epoch, then insert the deals and
-- the command outcomes) in one round trip instead of seven (BEGIN, UPDATE, two COPYs of two
-- round trips each, COMMIT): measured with 25 commands a settlement on 2 shared cores, 2.3 ms
-- instead of 5.0 ms (p50), and 18-43% less of the engine's CPU. Settlements of more than 128
-- rows still COPY, which costs the engine less CPU per row.
--
-- All or nothing, as one statement is: an offset that is not where the engine expects it
-- (another engine claimed the partition, or a retry of a commit whose answer was lost)
-- raises SQLSTATE TXF01, with the item's position (from 0) as the DETAIL, and writes nothing.
-- SECURITY INVOKER (the default): it writes with the caller's own grants (006), so
-- techx_engine needs EXECUTE and nothing more.
CREATE FUNCTION techx_settle(
    p_topic text,
    p_partitions integer[], p_next_offsets bigint[], p_published bigint[],
    p_epochs bigint[], p_expected bigint[],
    d_deal_id text[], d_technology_id text[], d_deal_number bigint[], d_seq bigint[],
    d_price bigint[], d_quantity bigint[], d_buyer_id text[], d_seller_id text[],
    d_bid_order_id text[], d_offer_order_id text[], d_aggressor_side text[],
    d_traded_at_ms bigint[], d_source_partition integer[], d_source_offset bigint[],
    o_source_partition integer[], o_source_offset bigint[], o_technology_id text[],
    o_command_type text[], o_participant_id text[], o_client_order_id text[], o_events json[]
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. cardinality(p_partitions) LOOP
        UPDATE partition_state
        SET next_offset = p_next_offsets[i],
            published_offset = GREATEST(published_offset, p_published[i]),
            updated_at = now()
        WHERE topic = p_topic AND partition = p_partitions[i]
            AND owner_epoch = p_epochs[i] AND next_offset = p_expected[i];
        IF NOT FOUND THEN
            RAISE EXCEPTION 'partition % is not at offset % under epoch %',
                p_partitions[i], p_expected[i], p_epochs[i]
                USING ERRCODE = 'TXF01', DETAIL = (i - 1)::text;
        END IF;
    END LOOP;
    INSERT INTO deals (topic, deal_id, technology_id, deal_number, seq, price, quantity,
        buyer_id, seller_id, bid_order_id, offer_order_id, aggressor_side, traded_at_ms,
        source_partition, source_offset)
    SELECT p_topic, * FROM unnest(d_deal_id, d_technology_id, d_deal_number, d_seq, d_price,
        d_quantity, d_buyer_id, d_seller_id, d_bid_order_id, d_offer_order_id, d_aggressor_side,
        d_traded_at_ms, d_source_partition, d_source_offset);
    INSERT INTO command_outcomes (topic, source_partition, source_offset, technology_id,
        command_type, participant_id, client_order_id, events)
    SELECT p_topic, * FROM unnest(o_source_partition, o_source_offset, o_technology_id,
        o_command_type, o_participant_id, o_client_order_id, o_events);
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'techx_engine') THEN
        GRANT EXECUTE ON FUNCTION techx_settle(text, integer[], bigint[], bigint[], bigint[],
            bigint[], text[], text[], bigint[], bigint[], bigint[], bigint[], text[], text[],
            text[], text[], text[], bigint[], integer[], bigint[], integer[], bigint[], text[],
            text[], text[], text[], json[]) TO techx_engine;
    END IF;
END
$$;
