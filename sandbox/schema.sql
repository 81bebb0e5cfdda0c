-- The sandbox's own tables (schema `sandbox`). Idempotent: applied at every sandbox start.
CREATE SCHEMA IF NOT EXISTS sandbox;

CREATE TABLE IF NOT EXISTS sandbox.catalogue_entries (
    catalog_code text NOT NULL,
    region_code text NOT NULL,
    task_code text NOT NULL,
    task_version integer NOT NULL,
    status text NOT NULL DEFAULT 'active',
    updated_at timestamptz NOT NULL DEFAULT now(),
    body jsonb NOT NULL,
    PRIMARY KEY (catalog_code, region_code)
);
CREATE INDEX IF NOT EXISTS catalogue_entries_updated ON sandbox.catalogue_entries (updated_at, catalog_code, region_code);

-- Booking system (sandbox/booking). Halls and bookable items are read from the item library's
-- entries; the booking system keeps its own plans, holidays, slots, holds and bookings.
CREATE TABLE IF NOT EXISTS sandbox.booking_holidays (
    day date PRIMARY KEY,
    kind text NOT NULL
);
CREATE TABLE IF NOT EXISTS sandbox.booking_slots (
    slot_id text PRIMARY KEY,
    hall_id text NOT NULL,
    item_code text NOT NULL,
    starts_at timestamptz NOT NULL,
    ends_at timestamptz NOT NULL,
    capacity integer NOT NULL
);
CREATE TABLE IF NOT EXISTS sandbox.booking_holds (
    hold_id text PRIMARY KEY,
    request_id text NOT NULL UNIQUE,
    slot_id text NOT NULL,
    person_ref text NOT NULL,
    expires_at timestamptz NOT NULL,
    released boolean NOT NULL DEFAULT false
);
CREATE TABLE IF NOT EXISTS sandbox.bookings (
    booking_no text PRIMARY KEY,
    request_id text NOT NULL UNIQUE,
    slot_id text NOT NULL,
    person_ref text NOT NULL,
    status text NOT NULL,
    ticket_no text,
    replaced_by text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS bookings_slot ON sandbox.bookings (slot_id, status);
CREATE INDEX IF NOT EXISTS bookings_person ON sandbox.bookings (person_ref, status);
-- Answers already given to a mutating request id: the booking system de-duplicates retries.
CREATE TABLE IF NOT EXISTS sandbox.booking_requests (
    request_id text PRIMARY KEY,
    status integer NOT NULL,
    body jsonb NOT NULL
);
CREATE TABLE IF NOT EXISTS sandbox.booking_settings (
    name text PRIMARY KEY,
    value jsonb NOT NULL
);

-- Case system (sandbox/cases).
CREATE TABLE IF NOT EXISTS sandbox.case_applications (
    project_no text PRIMARY KEY,
    request_id text NOT NULL UNIQUE,
    catalog_code text NOT NULL,
    task_code text NOT NULL,
    region_code text NOT NULL,
    applicant_ref text NOT NULL,
    channel text NOT NULL,
    form jsonb NOT NULL,
    materials jsonb NOT NULL,
    notify_url text,
    status text NOT NULL,
    status_code text NOT NULL,
    case_seq integer NOT NULL DEFAULT 0,
    open_supplement text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS sandbox.case_events (
    seq bigserial PRIMARY KEY,
    event_id text NOT NULL UNIQUE,
    project_no text NOT NULL,
    request_id text NOT NULL,
    case_seq integer NOT NULL,
    type text NOT NULL,
    occurred_at timestamptz NOT NULL,
    status text NOT NULL,
    status_code text NOT NULL,
    data jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS case_events_project ON sandbox.case_events (project_no, case_seq);
CREATE TABLE IF NOT EXISTS sandbox.case_requests (
    request_id text PRIMARY KEY,
    status integer NOT NULL,
    body jsonb NOT NULL
);
CREATE TABLE IF NOT EXISTS sandbox.case_deliveries (
    id bigserial PRIMARY KEY,
    event_id text NOT NULL,
    attempt integer NOT NULL,
    outcome text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);

-- Rating system (好差评, sandbox/ratings).
CREATE TABLE IF NOT EXISTS sandbox.ratings (
    rating_id text PRIMARY KEY,
    request_id text NOT NULL UNIQUE,
    service_instance_id text NOT NULL UNIQUE,
    channel text NOT NULL,
    level integer NOT NULL,
    indicators jsonb NOT NULL,
    comment text NOT NULL,
    rater_ref text NOT NULL,
    follow_up jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Catalogue at provincial scale: a change feed ordered by `seq` (every insert or change takes the
-- next number), handling items under their main item, regions and halls.
CREATE SEQUENCE IF NOT EXISTS sandbox.catalogue_seq;
ALTER TABLE sandbox.catalogue_entries ADD COLUMN IF NOT EXISTS parent_code text;
ALTER TABLE sandbox.catalogue_entries ADD COLUMN IF NOT EXISTS seq bigint NOT NULL DEFAULT nextval('sandbox.catalogue_seq');
CREATE INDEX IF NOT EXISTS catalogue_entries_seq ON sandbox.catalogue_entries (seq);
CREATE TABLE IF NOT EXISTS sandbox.catalogue_regions (
    code text PRIMARY KEY,
    body jsonb NOT NULL
);
CREATE TABLE IF NOT EXISTS sandbox.catalogue_halls (
    id text PRIMARY KEY,
    region_code text NOT NULL,
    body jsonb NOT NULL
);
CREATE TABLE IF NOT EXISTS sandbox.catalogue_seeded (
    scale text PRIMARY KEY,
    entries integer NOT NULL,
    seeded_at timestamptz NOT NULL DEFAULT now()
);

-- WeChat (sandbox/wechat): users, single-use login and phone codes, access tokens, face checks.
CREATE TABLE IF NOT EXISTS sandbox.wechat_users (
    openid text PRIMARY KEY,
    unionid text,
    session_key text NOT NULL,
    risky boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS sandbox.wechat_codes (
    code text PRIMARY KEY,
    openid text NOT NULL REFERENCES sandbox.wechat_users (openid),
    expires_at timestamptz NOT NULL,
    used_at timestamptz
);
CREATE TABLE IF NOT EXISTS sandbox.wechat_phone_codes (
    code text PRIMARY KEY,
    phone_number text NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at timestamptz
);
CREATE TABLE IF NOT EXISTS sandbox.wechat_tokens (
    appid text PRIMARY KEY,
    token text NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS sandbox.wechat_face (
    verify_id text PRIMARY KEY,
    openid text NOT NULL,
    out_seq_no text NOT NULL,
    cert_hash text NOT NULL,
    expires_at timestamptz NOT NULL,
    verify_ret integer
);

-- The provincial identity provider (sandbox/idp): residents, authorisation codes, access tokens.
CREATE TABLE IF NOT EXISTS sandbox.idp_residents (
    sub text PRIMARY KEY,
    name text NOT NULL,
    id_card_number text NOT NULL UNIQUE,
    phone_number text NOT NULL,
    level smallint NOT NULL CHECK (level BETWEEN 1 AND 3),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idp_residents_phone ON sandbox.idp_residents (phone_number);
CREATE TABLE IF NOT EXISTS sandbox.idp_codes (
    code text PRIMARY KEY,
    sub text NOT NULL REFERENCES sandbox.idp_residents (sub),
    client_id text NOT NULL,
    redirect_uri text NOT NULL,
    code_challenge text NOT NULL,
    nonce text,
    expires_at timestamptz NOT NULL,
    used_at timestamptz
);
CREATE TABLE IF NOT EXISTS sandbox.idp_tokens (
    token text PRIMARY KEY,
    sub text NOT NULL REFERENCES sandbox.idp_residents (sub),
    expires_at timestamptz NOT NULL
);

-- WeChat Pay API v3 (sandbox/wechatpay): merchants, platform keys, orders, refunds, notifications.
CREATE TABLE IF NOT EXISTS sandbox.wechatpay_merchants (
    mchid text PRIMARY KEY,
    serial_no text NOT NULL,
    cert_pem text NOT NULL,
    apiv3_key text NOT NULL,
    appids text[] NOT NULL
);
-- The platform's own keys survive a restart, so a notification queued before it is signed by a
-- certificate the merchant already knows.
CREATE TABLE IF NOT EXISTS sandbox.wechatpay_platform_certs (
    serial_no text PRIMARY KEY,
    key_pem text NOT NULL,
    cert_pem text NOT NULL,
    effective_time timestamptz NOT NULL,
    expire_time timestamptz NOT NULL,
    retire_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS sandbox.wechatpay_settings (
    name text PRIMARY KEY,
    value jsonb NOT NULL
);
CREATE TABLE IF NOT EXISTS sandbox.wechatpay_orders (
    mchid text NOT NULL,
    out_trade_no text NOT NULL,
    appid text NOT NULL,
    trade_type text NOT NULL,
    description text NOT NULL,
    notify_url text NOT NULL,
    total bigint NOT NULL,
    currency text NOT NULL,
    payer_openid text,
    time_expire timestamptz,
    request jsonb NOT NULL,
    prepay_id text,
    code_url text,
    transaction_id text UNIQUE,
    trade_state text NOT NULL,
    trade_state_desc text NOT NULL,
    success_time timestamptz,
    payer_total bigint,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mchid, out_trade_no)
);
-- 合单支付: one payment sheet for 2-10 sub-orders; each sub-order is an order above (its own
-- transaction id, refunds and bill line) that names its combine.
CREATE TABLE IF NOT EXISTS sandbox.wechatpay_combines (
    combine_mchid text NOT NULL,
    combine_out_trade_no text NOT NULL,
    combine_appid text NOT NULL,
    trade_type text NOT NULL,
    notify_url text NOT NULL,
    payer_openid text,
    time_expire timestamptz,
    request jsonb NOT NULL,
    prepay_id text,
    code_url text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (combine_mchid, combine_out_trade_no)
);
ALTER TABLE sandbox.wechatpay_orders ADD COLUMN IF NOT EXISTS combine_out_trade_no text;
CREATE TABLE IF NOT EXISTS sandbox.wechatpay_refunds (
    mchid text NOT NULL,
    out_refund_no text NOT NULL,
    refund_id text NOT NULL UNIQUE,
    out_trade_no text NOT NULL,
    transaction_id text NOT NULL,
    reason text,
    notify_url text,
    refund bigint NOT NULL,
    total bigint NOT NULL,
    status text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    success_time timestamptz,
    PRIMARY KEY (mchid, out_refund_no)
);
CREATE INDEX IF NOT EXISTS wechatpay_refunds_order ON sandbox.wechatpay_refunds (mchid, out_trade_no);
-- A notification is kept with its exact body (the same id and ciphertext on every retry) and the
-- next attempt's time, so that a restarted sandbox goes on delivering.
CREATE TABLE IF NOT EXISTS sandbox.wechatpay_notifications (
    id text PRIMARY KEY,
    seq bigserial UNIQUE,
    mchid text NOT NULL,
    out_trade_no text NOT NULL,
    out_refund_no text,
    event_type text NOT NULL,
    notify_url text NOT NULL,
    body text NOT NULL,
    state text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    next_delay_ms bigint,
    first_headers jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS wechatpay_notifications_due ON sandbox.wechatpay_notifications (next_attempt_at)
    WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS sandbox.wechatpay_attempts (
    id bigserial PRIMARY KEY,
    notification_id text NOT NULL,
    attempt integer NOT NULL,
    kind text NOT NULL,
    outcome text NOT NULL,
    status integer,
    scheduled_delay_ms bigint,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS wechatpay_attempts_notification ON sandbox.wechatpay_attempts (notification_id, id);

-- Fees issued by the case system (缴费通知, sandbox/cases).
CREATE TABLE IF NOT EXISTS sandbox.case_fees (
    fee_id text PRIMARY KEY,
    project_no text NOT NULL,
    lines jsonb NOT NULL,
    total_fen bigint NOT NULL,
    payable_by date NOT NULL,
    payment_code text NOT NULL UNIQUE,
    issuing_department text NOT NULL,
    status text NOT NULL,
    paid jsonb,
    receipt_no text,
    refunds jsonb NOT NULL DEFAULT '[]',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS case_fees_project ON sandbox.case_fees (project_no);

-- Courier (EMS-like, sandbox/courier). Event seq comes from a one-row counter updated in the
-- event's own transaction: the row lock is held to commit, so seq order is commit order and a
-- reader of the feed cannot pass over a number that commits later.
CREATE TABLE IF NOT EXISTS sandbox.courier_counter (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    seq bigint NOT NULL
);
INSERT INTO sandbox.courier_counter (id, seq) VALUES (true, 0) ON CONFLICT (id) DO NOTHING;
CREATE TABLE IF NOT EXISTS sandbox.courier_shipments (
    waybill_no text PRIMARY KEY,
    request_id text NOT NULL UNIQUE,
    request jsonb NOT NULL,
    project_no text NOT NULL,
    notify_url text,
    status text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS sandbox.courier_events (
    seq bigint PRIMARY KEY,
    event_id text NOT NULL UNIQUE,
    waybill_no text NOT NULL,
    status text NOT NULL,
    at timestamptz NOT NULL,
    place text NOT NULL,
    description text NOT NULL
);
CREATE INDEX IF NOT EXISTS courier_events_waybill ON sandbox.courier_events (waybill_no, seq);
CREATE TABLE IF NOT EXISTS sandbox.courier_deliveries (
    id bigserial PRIMARY KEY,
    event_id text NOT NULL,
    attempt integer NOT NULL,
    outcome text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- WeChat subscribe messages (sandbox/wechat): the sandbox's own view of what each user chose in
-- wx.requestSubscribeMessage, every send request received and every message accepted.
CREATE TABLE IF NOT EXISTS sandbox.wechat_sub_consents (
    openid text NOT NULL,
    template_id text NOT NULL,
    last_result text NOT NULL,
    remaining integer NOT NULL DEFAULT 0,
    long_term boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (openid, template_id)
);
CREATE TABLE IF NOT EXISTS sandbox.wechat_sub_choices (
    id bigserial PRIMARY KEY,
    openid text NOT NULL,
    template_id text NOT NULL,
    result text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
-- Real msgids are beyond int32: start there so a client that truncates them breaks in tests.
CREATE SEQUENCE IF NOT EXISTS sandbox.wechat_sub_msgid START 3000000001;
CREATE TABLE IF NOT EXISTS sandbox.wechat_sub_requests (
    id bigserial PRIMARY KEY,
    openid text,
    template_id text,
    body jsonb NOT NULL,
    errcode integer NOT NULL,
    msgid bigint,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS wechat_sub_requests_openid ON sandbox.wechat_sub_requests (openid, id);
CREATE TABLE IF NOT EXISTS sandbox.wechat_sub_messages (
    msgid bigint PRIMARY KEY,
    openid text NOT NULL,
    template_id text NOT NULL,
    page text,
    miniprogram_state text NOT NULL,
    lang text NOT NULL,
    data jsonb NOT NULL,
    consent text NOT NULL,
    event_status text,
    sent_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS sandbox.wechat_sub_events (
    id bigserial PRIMARY KEY,
    msgid bigint NOT NULL,
    attempt integer NOT NULL,
    outcome text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS wechat_sub_messages_openid ON sandbox.wechat_sub_messages (openid, msgid);

-- App push gateway (sandbox/pushgw): installed device tokens, every request received, every message
-- accepted (one per request_id) and every receipt callback attempt.
CREATE TABLE IF NOT EXISTS sandbox.pushgw_devices (
    token text PRIMARY KEY,
    platform text NOT NULL,
    person_ref text NOT NULL,
    app_version text,
    installed_at timestamptz NOT NULL DEFAULT now(),
    unregistered_at timestamptz
);
CREATE TABLE IF NOT EXISTS sandbox.pushgw_requests (
    id bigserial PRIMARY KEY,
    request_id text,
    token text,
    status integer NOT NULL,
    code text,
    message_id text,
    duplicate boolean NOT NULL DEFAULT false,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS pushgw_requests_request ON sandbox.pushgw_requests (request_id);
CREATE TABLE IF NOT EXISTS sandbox.pushgw_messages (
    message_id text PRIMARY KEY,
    request_id text NOT NULL UNIQUE,
    token text NOT NULL,
    platform text NOT NULL,
    title text NOT NULL,
    body text NOT NULL,
    data jsonb NOT NULL,
    callback_url text,
    status text NOT NULL DEFAULT 'accepted',
    reason text,
    accepted_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX IF NOT EXISTS pushgw_messages_token ON sandbox.pushgw_messages (token, accepted_at);
CREATE TABLE IF NOT EXISTS sandbox.pushgw_receipts (
    id bigserial PRIMARY KEY,
    message_id text NOT NULL,
    attempt integer NOT NULL,
    outcome text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS pushgw_receipts_message ON sandbox.pushgw_receipts (message_id, id);

-- SMS gateway (sandbox/sms): every request received, every message accepted (one per out_id),
-- per-phone limit resets and every delivery report attempt.
CREATE TABLE IF NOT EXISTS sandbox.sms_requests (
    id bigserial PRIMARY KEY,
    phone text,
    out_id text,
    code text NOT NULL,
    biz_id text,
    duplicate boolean NOT NULL DEFAULT false,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS sms_requests_phone ON sandbox.sms_requests (phone, id);
CREATE TABLE IF NOT EXISTS sandbox.sms_messages (
    biz_id text PRIMARY KEY,
    out_id text UNIQUE,
    phone text NOT NULL,
    sign_name text NOT NULL,
    template_code text NOT NULL,
    params jsonb NOT NULL,
    text text NOT NULL,
    segments integer NOT NULL,
    status text NOT NULL DEFAULT 'sent',
    err_code text,
    sent_at timestamptz NOT NULL DEFAULT now(),
    reported_at timestamptz
);
CREATE INDEX IF NOT EXISTS sms_messages_phone ON sandbox.sms_messages (phone, sent_at);
CREATE TABLE IF NOT EXISTS sandbox.sms_limit_resets (
    phone text PRIMARY KEY,
    reset_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS sandbox.sms_reports (
    id bigserial PRIMARY KEY,
    biz_id text NOT NULL,
    attempt integer NOT NULL,
    outcome text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS sms_reports_biz ON sandbox.sms_reports (biz_id, id);

-- The e-licence library (电子证照库, sandbox/elicence): licences per holder, usage authorisation
-- codes (用证授权码), and every use of a licence. A use's seq comes from a one-row counter updated in
-- the use's own transaction (as the courier's), so seq order is commit order.
CREATE TABLE IF NOT EXISTS sandbox.elicence_licences (
    licence_id text PRIMARY KEY,
    type_code text NOT NULL,
    type_name text NOT NULL,
    licence_no text NOT NULL,
    holder_name text NOT NULL,
    holder_code text NOT NULL,
    holder_type text NOT NULL CHECK (holder_type IN ('111', '001')),
    represented_by text,
    issuer_name text NOT NULL,
    issuer_code text NOT NULL,
    issue_date date NOT NULL,
    valid_from date NOT NULL,
    valid_to date,
    area_code text NOT NULL,
    source_id text NOT NULL,
    trust_grade text NOT NULL CHECK (trust_grade IN ('A', 'B', 'C', 'D')),
    data jsonb NOT NULL DEFAULT '{}',
    revoked_at timestamptz,
    revoke_reason text,
    seeded boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS elicence_licences_holder ON sandbox.elicence_licences (holder_code);
CREATE INDEX IF NOT EXISTS elicence_licences_rep ON sandbox.elicence_licences (represented_by);
CREATE INDEX IF NOT EXISTS elicence_licences_no ON sandbox.elicence_licences (licence_no);
CREATE TABLE IF NOT EXISTS sandbox.elicence_auth_codes (
    auth_code text PRIMARY KEY,
    licence_id text NOT NULL REFERENCES sandbox.elicence_licences (licence_id),
    holder_code text NOT NULL,
    department_code text,
    purpose text NOT NULL,
    single_use boolean NOT NULL,
    expires_at timestamptz NOT NULL,
    uses integer NOT NULL DEFAULT 0,
    client_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS sandbox.elicence_counter (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    seq bigint NOT NULL
);
INSERT INTO sandbox.elicence_counter (id, seq) VALUES (true, 0) ON CONFLICT (id) DO NOTHING;
CREATE TABLE IF NOT EXISTS sandbox.elicence_usages (
    seq bigint PRIMARY KEY,
    usage_id text NOT NULL UNIQUE,
    licence_id text NOT NULL,
    holder_code text NOT NULL,
    action text NOT NULL,
    result text NOT NULL,
    refusal text,
    department_code text NOT NULL,
    department_name text NOT NULL,
    purpose text NOT NULL,
    channel text NOT NULL,
    auth_code text,
    client_id text NOT NULL,
    used_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS elicence_usages_holder ON sandbox.elicence_usages (holder_code, seq);
CREATE TABLE IF NOT EXISTS sandbox.elicence_requests (
    client_id text NOT NULL,
    request_id text NOT NULL,
    fingerprint text NOT NULL,
    status integer NOT NULL,
    body jsonb NOT NULL,
    PRIMARY KEY (client_id, request_id)
);

-- The 12345 hotline (sandbox/hotline): tickets, their events (seq from a one-row counter, commit
-- order), webhook deliveries, the filing requests (idempotency) and the knowledge base.
CREATE TABLE IF NOT EXISTS sandbox.hotline_counter (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    seq bigint NOT NULL
);
INSERT INTO sandbox.hotline_counter (id, seq) VALUES (true, 0) ON CONFLICT (id) DO NOTHING;
CREATE SEQUENCE IF NOT EXISTS sandbox.hotline_ticket_serial;
CREATE TABLE IF NOT EXISTS sandbox.hotline_tickets (
    ticket_no text PRIMARY KEY,
    request_id text NOT NULL UNIQUE,
    fingerprint text NOT NULL,
    follow_code text NOT NULL,
    kind text NOT NULL,
    title text NOT NULL,
    content text NOT NULL,
    channel text NOT NULL,
    caller jsonb NOT NULL,
    anonymous boolean NOT NULL,
    location jsonb,
    related jsonb NOT NULL DEFAULT '{}',
    attachments jsonb NOT NULL DEFAULT '[]',
    notify_url text,
    status text NOT NULL,
    status_code text NOT NULL,
    ticket_seq integer NOT NULL DEFAULT 0,
    category text,
    department_code text,
    department_name text,
    urgency text,
    deadline_at timestamptz,
    paused_at timestamptz,
    resume_status text,
    open_info_request jsonb,
    rating jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS hotline_tickets_caller ON sandbox.hotline_tickets ((caller ->> 'ref'));
CREATE INDEX IF NOT EXISTS hotline_tickets_dept ON sandbox.hotline_tickets (department_code);
CREATE TABLE IF NOT EXISTS sandbox.hotline_events (
    seq bigint PRIMARY KEY,
    event_id text NOT NULL UNIQUE,
    ticket_no text NOT NULL,
    ticket_seq integer NOT NULL,
    type text NOT NULL,
    status text NOT NULL,
    status_code text NOT NULL,
    occurred_at timestamptz NOT NULL,
    data jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS hotline_events_ticket ON sandbox.hotline_events (ticket_no, ticket_seq);
CREATE TABLE IF NOT EXISTS sandbox.hotline_requests (
    request_id text PRIMARY KEY,
    fingerprint text NOT NULL,
    status integer NOT NULL,
    body jsonb NOT NULL
);
CREATE TABLE IF NOT EXISTS sandbox.hotline_deliveries (
    id bigserial PRIMARY KEY,
    event_id text NOT NULL,
    attempt integer NOT NULL,
    outcome text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS sandbox.hotline_kb (
    kb_id text PRIMARY KEY,
    category text NOT NULL,
    question text NOT NULL,
    answer text NOT NULL,
    keywords text[] NOT NULL,
    department text NOT NULL,
    updated_at date NOT NULL
);
