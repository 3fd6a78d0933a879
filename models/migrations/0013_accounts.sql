-- pulsegraph 0013: accounts. People sign in with a password, hold a role in each organization
-- they belong to, invite each other, and manage keys; every such act is audited.
--
-- users is global (a person may belong to several organizations); it was created in 0001 but
-- never read, so its per-organization columns go: memberships replace them. Emails are stored
-- lowercased. password_hash is an argon2id hash (app/services/accounts/passwords.py).
--
-- Global tables (reference tables with Citus, listed in models/tables.py): users, auth_sessions
-- and refresh_tokens (a sign-in is found by its token before any tenant is known),
-- password_resets (per user), audit_log (a failed sign-in may name no tenant at all).
-- Tenant tables: memberships, invitations, api_keys. Invitation and key tokens carry their
-- row's id, which a plain index on id finds before the tenant is known.
--
-- Sessions are refresh-token families: each refresh marks its token used and adds the next
-- one; a used token presented again revokes the whole session. A revoked session refuses
-- every access token minted for it (their `sid` claim) on every API process within a second
-- (revoked_credentials kind 'session'); a revoked personal API key or service token likewise
-- (kind 'api_key').

ALTER TABLE users DROP COLUMN organization_id;
ALTER TABLE users DROP COLUMN role;
ALTER TABLE users DROP COLUMN profile_id;
ALTER TABLE users ADD COLUMN password_hash text;
ALTER TABLE users ADD COLUMN is_platform_admin boolean NOT NULL DEFAULT false;
ALTER TABLE users ADD COLUMN password_changed_at timestamptz;
ALTER TABLE users ADD COLUMN last_sign_in_at timestamptz;
ALTER TABLE users ADD CONSTRAINT users_email_lowercase CHECK (email = lower(email));

CREATE TABLE memberships (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role            text NOT NULL CHECK (role IN ('org_admin', 'provider', 'viewer')),
    profile_id      uuid,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, user_id),
    CHECK ((role = 'provider') = (profile_id IS NOT NULL))
);
CREATE INDEX memberships_user ON memberships (user_id);

CREATE TABLE auth_sessions (
    id              uuid PRIMARY KEY,
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    organization_id uuid REFERENCES organizations (id) ON DELETE CASCADE,  -- null: platform admin
    kind            text NOT NULL CHECK (kind IN ('token', 'cookie')),
    secret_hash     text,  -- cookie sessions: the SHA-256 of the cookie's secret
    address         text,
    user_agent      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_used_at    timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    revoked_at      timestamptz,
    revoked_reason  text
);
CREATE INDEX sessions_user ON auth_sessions (user_id) WHERE revoked_at IS NULL;

CREATE TABLE refresh_tokens (
    token_hash  text PRIMARY KEY,
    session_id  uuid NOT NULL REFERENCES auth_sessions (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    used_at     timestamptz
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE invitations (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id              uuid NOT NULL,
    email           text NOT NULL CHECK (email = lower(email)),
    role            text NOT NULL CHECK (role IN ('org_admin', 'provider', 'viewer')),
    profile_id      uuid,
    token_hash      text NOT NULL,
    invited_by      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    accepted_at     timestamptz,
    accepted_by     uuid REFERENCES users (id) ON DELETE SET NULL,
    revoked_at      timestamptz,
    PRIMARY KEY (organization_id, id),
    CHECK ((role = 'provider') = (profile_id IS NOT NULL))
);
CREATE INDEX invitations_id ON invitations (id);

CREATE TABLE password_resets (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash  text NOT NULL,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);

CREATE TABLE api_keys (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id              uuid NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('personal', 'service')),
    name            text NOT NULL,
    key_hash        text NOT NULL,
    user_id         uuid REFERENCES users (id) ON DELETE CASCADE,  -- personal keys: whose
    role            text NOT NULL CHECK (role IN ('org_admin', 'provider', 'viewer', 'service')),
    profile_id      uuid,
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_used_at    timestamptz,
    revoked_at      timestamptz,
    PRIMARY KEY (organization_id, id),
    CHECK ((kind = 'personal') = (user_id IS NOT NULL)),
    CHECK ((kind = 'service') = (role = 'service'))
);
CREATE INDEX api_keys_id ON api_keys (id);

CREATE TABLE audit_log (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    organization_id uuid REFERENCES organizations (id) ON DELETE CASCADE,  -- null: no tenant
    actor           text NOT NULL,  -- the credential's subject, or the email tried
    actor_user_id   uuid,
    address         text,
    action          text NOT NULL,
    target          text,
    details         jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_organization ON audit_log (organization_id, at DESC, id DESC);
CREATE INDEX audit_log_at ON audit_log (at DESC, id DESC);
-- what the sign-in limiter counts: recent failures per email and per address
CREATE INDEX audit_log_failed_by_email ON audit_log (target, at) WHERE action = 'sign_in.failed';
CREATE INDEX audit_log_failed_by_address ON audit_log (address, at) WHERE action = 'sign_in.failed';

ALTER TABLE revoked_credentials DROP CONSTRAINT revoked_credentials_kind_check;
ALTER TABLE revoked_credentials ADD CONSTRAINT revoked_credentials_kind_check
    CHECK (kind IN ('token', 'ingestion_key', 'session', 'api_key'));
