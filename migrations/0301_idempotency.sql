-- Idempotency records (API.md: Idempotency-Key). Scoped per subject (the person, or the kiosk
-- device): two residents may pick the same key. `fingerprint` is method + route + canonical body;
-- a second request with the same key and another fingerprint is refused. While `state` is
-- 'in_flight' the lease says until when the first request owns the key; a crashed owner's lease
-- runs out and a retry takes the key over. Rows are kept at least 24 h (`expires_at`).
CREATE TABLE IF NOT EXISTS bff.idempotency_keys (
    subject text NOT NULL,
    key text NOT NULL,
    fingerprint bytea NOT NULL,
    state text NOT NULL CHECK (state IN ('in_flight', 'done')),
    lease_until timestamptz NOT NULL,
    response_status integer,
    response_media_type text,
    response_body bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    expires_at timestamptz NOT NULL DEFAULT now() + interval '48 hours',
    PRIMARY KEY (subject, key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_expiry ON bff.idempotency_keys (expires_at);
