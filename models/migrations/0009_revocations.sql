-- pulsegraph 0009: revoked tokens and ingestion keys, which every API process learns of
-- within a second (app/revocation.py), and when an ingestion key was last used.
--
-- revoked_credentials is a GLOBAL table, not a tenant table: a platform admin's token has
-- no organization, and every API process reads all of it. With Citus it is a reference
-- table. One row per revoked credential:
--   kind 'token': credential_id is the JWT's `jti` (for tokens minted before they had one, a
--     hash of the token); expires_at its `exp`, after which the row may be deleted (the token
--     is refused as expired anyway). Revoked by id alone, the expiry is unknown: NULL, kept.
--   kind 'ingestion_key': credential_id is ingestion_keys.id. That row's revoked_at refuses
--     the key for good; this row makes processes drop it from their key caches, and expires
--     once no cache can hold the key any more.
-- Writers take SHARE ROW EXCLUSIVE on the table until they commit, so ids become visible in
-- increasing order: a process that has read id N has read every row below it, and polls
-- `id > N`. Revocations are rare; serialising them costs nothing.
--
-- ingestion_keys.last_used_at: set when a process looks a key up, which it does at most
-- once per key cache period; `pulsegraph key list` shows it.

CREATE TABLE revoked_credentials (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('token', 'ingestion_key')),
    credential_id text NOT NULL,
    expires_at    timestamptz,
    revoked_at    timestamptz NOT NULL DEFAULT now(),
    revoked_by    text NOT NULL,
    UNIQUE (kind, credential_id)
);
CREATE INDEX revoked_credentials_expiry ON revoked_credentials (expires_at) WHERE expires_at IS NOT NULL;

ALTER TABLE ingestion_keys ADD COLUMN last_used_at timestamptz;
