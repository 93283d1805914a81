-- API keys of the gateway (`techx keys`). A key is `techx_<key_id>_<secret>`: the gateway
-- finds the row by key_id and checks the secret against its salted scrypt hash. The secret
-- itself is never stored; it is shown once, when the key is created or rotated.
-- Keys belong to one command topic (one exchange), as every settlement row does, so tenants
-- sharing this database cannot use each other's keys.

CREATE TABLE api_keys (
    key_id text PRIMARY KEY,
    topic text NOT NULL,
    participant_id text NOT NULL,
    -- How the hash was made ('scrypt:n=16384,r=8,p=1'): the cost can rise for new keys
    -- without breaking old ones.
    hash_scheme text NOT NULL,
    salt bytea NOT NULL,
    secret_hash bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    rotated_at timestamptz,
    revoked_at timestamptz
);

CREATE INDEX api_keys_by_participant ON api_keys (topic, participant_id);
