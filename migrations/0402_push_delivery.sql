-- push/: from the outbox to the resident. The outbox stays the truth: `published_at` says a row was
-- put on the Redis stream, `delivered_at` that a consumer finished it (its notification exists and
-- its channels were run). A row published but not finished after a while is published again (Redis
-- may have lost the stream); consumers are idempotent by the keys below.
ALTER TABLE bff.outbox ADD COLUMN IF NOT EXISTS delivered_at timestamptz;
CREATE INDEX IF NOT EXISTS outbox_unfinished ON bff.outbox (published_at) WHERE delivered_at IS NULL;

-- A wake-up for the relay (NOTIFY arrives after commit; the relay drains with SKIP LOCKED).
CREATE OR REPLACE FUNCTION bff.outbox_wake() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sx_outbox', '');
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS outbox_wake ON bff.outbox;
CREATE TRIGGER outbox_wake AFTER INSERT ON bff.outbox FOR EACH STATEMENT EXECUTE FUNCTION bff.outbox_wake();

-- One notification per (event, resident): the texts as rendered (template + version + language),
-- the deep link, its overall delivery state (GOV.UK Notify's vocabulary) and whether it was read.
CREATE TABLE IF NOT EXISTS bff.notifications (
    id uuid PRIMARY KEY,
    seq bigserial UNIQUE,
    outbox_id bigint NOT NULL REFERENCES bff.outbox (id),
    person_id text NOT NULL,
    topic text NOT NULL,
    category text NOT NULL,
    urgent boolean NOT NULL,
    template text NOT NULL,
    template_version integer NOT NULL,
    lang text NOT NULL,
    title text NOT NULL,
    body text NOT NULL,
    link text NOT NULL,
    in_inbox boolean NOT NULL,
    status text NOT NULL CHECK (status IN ('created', 'sending', 'delivered', 'permanent-failure',
                                            'temporary-failure', 'technical-failure')),
    next_at timestamptz,
    read_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (outbox_id, person_id)
);
CREATE INDEX IF NOT EXISTS notifications_inbox ON bff.notifications (person_id, seq DESC) WHERE in_inbox;
CREATE INDEX IF NOT EXISTS notifications_due ON bff.notifications (next_at) WHERE next_at IS NOT NULL;

-- Each channel tried for a notification, with the send key the provider de-duplicates by.
CREATE TABLE IF NOT EXISTS bff.notification_attempts (
    id bigserial PRIMARY KEY,
    notification_id uuid NOT NULL REFERENCES bff.notifications (id),
    channel text NOT NULL CHECK (channel IN ('inbox', 'wechat', 'app', 'sms')),
    send_key text NOT NULL UNIQUE,
    status text NOT NULL CHECK (status IN ('created', 'sending', 'delivered', 'permanent-failure',
                                            'temporary-failure', 'technical-failure')),
    tries integer NOT NULL DEFAULT 0,
    provider_ref text,
    target text,
    reason text,
    started_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz,
    finished_at timestamptz,
    UNIQUE (notification_id, channel)
);
CREATE INDEX IF NOT EXISTS notification_attempts_ref ON bff.notification_attempts (provider_ref);

-- App installations' push tokens; a token the gateway calls unregistered is pruned.
CREATE TABLE IF NOT EXISTS bff.push_devices (
    token text PRIMARY KEY,
    person_id text NOT NULL,
    platform text NOT NULL CHECK (platform IN ('ios', 'android', 'harmony')),
    app_version text,
    registered_at timestamptz NOT NULL DEFAULT now(),
    pruned_at timestamptz,
    pruned_reason text
);
CREATE INDEX IF NOT EXISTS push_devices_person ON bff.push_devices (person_id) WHERE pruned_at IS NULL;

-- The subscribe-message consent ledger: per (openid, template), what the resident last chose and
-- how many one-time messages are left (long-term templates allow many).
CREATE TABLE IF NOT EXISTS bff.wechat_consents (
    openid text NOT NULL,
    template_id text NOT NULL,
    person_id text NOT NULL,
    last_result text NOT NULL CHECK (last_result IN ('accept', 'reject', 'ban', 'filter')),
    long_term boolean NOT NULL,
    remaining integer NOT NULL CHECK (remaining >= 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (openid, template_id)
);

-- Preferences: a row per switched (category, channel); absent rows are the defaults.
CREATE TABLE IF NOT EXISTS bff.notification_preferences (
    person_id text NOT NULL,
    category text NOT NULL,
    channel text NOT NULL,
    enabled boolean NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_id, category, channel)
);
CREATE TABLE IF NOT EXISTS bff.notification_settings (
    person_id text PRIMARY KEY,
    lang text NOT NULL DEFAULT 'zh' CHECK (lang IN ('zh', 'en')),
    quiet_start time,
    quiet_end time,
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- Every consent change (preferences, subscribe choices, devices), append-only, with time and channel.
CREATE TABLE IF NOT EXISTS bff.consent_log (
    id bigserial PRIMARY KEY,
    person_id text NOT NULL,
    kind text NOT NULL,
    subject text NOT NULL,
    value text NOT NULL,
    channel text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS consent_log_person ON bff.consent_log (person_id, at);
