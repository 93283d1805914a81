-- techx_gateway: the role `techx gateway` needs, and no more. It reads API keys to check a
-- request's key (by key_id, then the salted hash), and nothing else in this database: the
-- gateway reaches the engine only through Kafka. Creating, rotating and revoking keys
-- (`techx keys`) is an operator's job, run as the migrating user or an operator's role.
--
--   table     | techx_gateway may | because the gateway
--   api_keys  | SELECT            | checks every request's key
--
-- A NOLOGIN group role, like techx_engine (006): a gateway logs in as a member, e.g.
--   CREATE ROLE techx_gateway_a LOGIN PASSWORD '...' IN ROLE techx_gateway;
-- A migrating user who may not create roles gets a NOTICE (logged by `techx setup`), and a
-- DBA runs `CREATE ROLE techx_gateway NOLOGIN;` and this file again (it is idempotent).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'techx_gateway') THEN
        IF NOT (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user) THEN
            RAISE NOTICE 'role techx_gateway not created: % may neither create roles nor is a '
                'superuser. A DBA runs CREATE ROLE techx_gateway NOLOGIN, then '
                'engine/store/migrations/007_gateway_role.sql again (it is idempotent)',
                current_user;
            RETURN;
        END IF;
        BEGIN
            CREATE ROLE techx_gateway NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- another database's migration on this cluster created it meanwhile
        END;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO techx_gateway', current_schema());
    GRANT SELECT ON api_keys TO techx_gateway;
END
$$;
