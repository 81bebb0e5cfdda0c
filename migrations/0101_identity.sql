-- Identity: persons and their channel bindings, kiosks, sessions (refresh-token families) and the
-- hash-chained audit log. ID numbers and phones are stored only encrypted, with a keyed blind index
-- (HMAC) for look-up: a dump of this schema holds no plaintext personal data.
CREATE TABLE bff.persons (
    id uuid PRIMARY KEY,
    idp_subject text UNIQUE,
    name_enc bytea NOT NULL,
    id_number_enc bytea,
    id_number_bidx bytea UNIQUE,
    phone_enc bytea,
    phone_bidx bytea,
    level smallint NOT NULL CHECK (level BETWEEN 1 AND 3),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX persons_phone_bidx ON bff.persons (phone_bidx);

CREATE TABLE bff.wechat_bindings (
    openid text PRIMARY KEY,
    unionid text,
    person_id uuid NOT NULL REFERENCES bff.persons (id),
    -- Kept only encrypted, for decrypting wx data later; it never leaves the server.
    session_key_enc bytea,
    bound_at timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX wechat_bindings_person ON bff.wechat_bindings (person_id);
CREATE INDEX wechat_bindings_unionid ON bff.wechat_bindings (unionid);

CREATE TABLE bff.kiosks (
    id text PRIMARY KEY,
    name text NOT NULL,
    hall_id text NOT NULL,
    algorithm text NOT NULL,
    public_key bytea NOT NULL,
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    registered_by text NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    revoked_by text,
    revoked_at timestamptz
);

-- A session is one refresh-token family. Only hashes of refresh tokens are stored; the session row
-- holds the current and the previous one (the grace window covers a response lost on the way).
CREATE TABLE bff.sessions (
    id uuid PRIMARY KEY,
    person_id uuid NOT NULL REFERENCES bff.persons (id),
    channel text NOT NULL CHECK (channel IN ('app', 'miniprogram', 'kiosk')),
    level smallint NOT NULL CHECK (level BETWEEN 1 AND 3),
    openid text,
    kiosk_id text REFERENCES bff.kiosks (id),
    device text,
    current_hash bytea NOT NULL,
    previous_hash bytea,
    rotated_at timestamptz,
    generation integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL,
    last_used_at timestamptz NOT NULL,
    idle_expires_at timestamptz NOT NULL,
    absolute_expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    revoke_reason text
);
CREATE INDEX sessions_person ON bff.sessions (person_id) WHERE revoked_at IS NULL;
CREATE INDEX sessions_kiosk ON bff.sessions (kiosk_id) WHERE revoked_at IS NULL;

-- Every refresh token ever issued, by hash, so that presenting an old one finds its family.
CREATE TABLE bff.refresh_tokens (
    token_hash bytea PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES bff.sessions (id) ON DELETE CASCADE,
    issued_at timestamptz NOT NULL
);
CREATE INDEX refresh_tokens_session ON bff.refresh_tokens (session_id);

-- The audit log: append-only, each row's hash covers the previous row's hash and its own fields.
-- The trigger serialises writers (advisory transaction lock) so the chain has no forks, and numbers
-- rows after taking the lock so `seq` order is chain order.
CREATE SEQUENCE bff.audit_log_seq;
CREATE TABLE bff.audit_log (
    seq bigint PRIMARY KEY,
    at timestamptz NOT NULL,
    subject text NOT NULL,
    action text NOT NULL,
    object text NOT NULL,
    result text NOT NULL,
    channel text NOT NULL,
    request_id text NOT NULL,
    prev_hash bytea NOT NULL,
    hash bytea NOT NULL
);

CREATE FUNCTION bff.audit_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last_hash bytea;
BEGIN
    PERFORM pg_advisory_xact_lock(5920348751);
    NEW.seq := nextval('bff.audit_log_seq');
    NEW.at := date_trunc('milliseconds', clock_timestamp());
    SELECT hash INTO last_hash FROM bff.audit_log ORDER BY seq DESC LIMIT 1;
    NEW.prev_hash := coalesce(last_hash, '\x'::bytea);
    NEW.hash := sha256(
        NEW.prev_hash || convert_to(
            concat_ws(chr(31), NEW.seq::text,
                      to_char(NEW.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                      NEW.subject, NEW.action, NEW.object, NEW.result, NEW.channel, NEW.request_id),
            'UTF8'));
    RETURN NEW;
END;
$$;
CREATE TRIGGER audit_chain BEFORE INSERT ON bff.audit_log FOR EACH ROW EXECUTE FUNCTION bff.audit_chain();

CREATE FUNCTION bff.audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'bff.audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON bff.audit_log
    FOR EACH ROW EXECUTE FUNCTION bff.audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON bff.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION bff.audit_append_only();
