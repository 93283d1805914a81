-- techx_engine: the role `techx run` needs, and no more. Deals, command outcomes and dead
-- letters are written once and never changed, so it may INSERT and SELECT them but not
-- UPDATE, DELETE or TRUNCATE them: an engine, or whoever holds its password, cannot rewrite
-- what was settled. Schema changes stay with the user who migrates (`techx setup`).
--
--   table             | techx_engine may              | because the engine
--   partition_state   | SELECT, INSERT, UPDATE        | claims partitions (epoch), moves offsets
--   deals             | SELECT, INSERT                | settles deals; recovery totals them
--   command_outcomes  | SELECT, INSERT                | settles every command's events
--   dead_letters      | SELECT, INSERT                | settles dead letters
--   market_snapshots  | SELECT, INSERT, DELETE        | writes, loads and prunes snapshots
--
-- It is a NOLOGIN group role: the engine logs in as a user of its own that is a member, e.g.
--   CREATE ROLE techx_engine_a LOGIN PASSWORD '...' IN ROLE techx_engine;
-- and runs with TECHX_DATABASE_URL=postgresql://techx_engine_a:...@host/techx.
--
-- Numbered 006: 005 was left to a migration written in parallel. A migration that adds a
-- table must grant techx_engine what the engine does with it (a test checks every table).
--
-- Roles belong to the PostgreSQL cluster, not to one database, so several TechX databases on
-- one cluster share this role. A migrating user who may not create roles (neither superuser
-- nor CREATEROLE) gets a NOTICE, which `techx setup` logs, and no role: then a DBA runs
-- `CREATE ROLE techx_engine NOLOGIN;` and this file again (it is idempotent):
--   psql "$TECHX_DATABASE_URL" -f engine/store/migrations/006_runtime_role.sql
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'techx_engine') THEN
        IF NOT (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user) THEN
            RAISE NOTICE 'role techx_engine not created: % may neither create roles nor is a '
                'superuser; the engine keeps running as the migrating user. A DBA runs CREATE '
                'ROLE techx_engine NOLOGIN, then engine/store/migrations/006_runtime_role.sql '
                'again (it is idempotent)', current_user;
            RETURN;
        END IF;
        BEGIN
            CREATE ROLE techx_engine NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- another database's migration on this cluster created it meanwhile
        END;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO techx_engine', current_schema());
    GRANT SELECT, INSERT, UPDATE ON partition_state TO techx_engine;
    GRANT SELECT, INSERT ON deals, command_outcomes, dead_letters TO techx_engine;
    GRANT SELECT, INSERT, DELETE ON market_snapshots TO techx_engine;
END
$$;
