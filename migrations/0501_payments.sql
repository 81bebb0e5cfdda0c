-- Payments (WeChat Pay v3) for case fees: our orders, an append-only ledger of money events in
-- integer fen, refunds, and the daily bill checks. The platform is the upstream of record for
-- what was paid; the ledger is what we recorded, compared with the platform's bill every day.
CREATE TABLE bff.payment_orders (
    id uuid PRIMARY KEY,
    case_id uuid NOT NULL REFERENCES bff.cases (id),
    person_id text NOT NULL,
    fee_id text NOT NULL,
    -- Derived from the idempotency request id: a re-run sends the same number.
    out_trade_no text NOT NULL UNIQUE CHECK (length(out_trade_no) BETWEEN 6 AND 32),
    trade_type text NOT NULL CHECK (trade_type IN ('JSAPI', 'APP', 'NATIVE')),
    appid text NOT NULL,
    mchid text NOT NULL,
    amount_fen bigint NOT NULL CHECK (amount_fen > 0),
    currency text NOT NULL DEFAULT 'CNY',
    description text NOT NULL,
    payer_openid text,
    time_expire timestamptz NOT NULL,
    status text NOT NULL CHECK (status IN ('created', 'paying', 'paid', 'closed', 'failed', 'refunding',
                                           'refunded', 'partially_refunded')),
    trade_state text,
    prepay_id text,
    code_url text,
    transaction_id text UNIQUE,
    paid_fen bigint NOT NULL DEFAULT 0 CHECK (paid_fen >= 0),
    refunded_fen bigint NOT NULL DEFAULT 0 CHECK (refunded_fen >= 0 AND refunded_fen <= paid_fen),
    paid_at timestamptz,
    -- Paid but not yet told to the case system: the report job's queue (a crash loses nothing).
    report_pending boolean NOT NULL DEFAULT false,
    reported_at timestamptz,
    -- The reconciler's schedule for orders that heard nothing.
    next_check_at timestamptz,
    checks integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- One live order per fee: open (created/paying) or paid (and its refund states).
CREATE UNIQUE INDEX payment_orders_one_per_fee ON bff.payment_orders (fee_id)
    WHERE status NOT IN ('closed', 'failed');
CREATE INDEX payment_orders_case ON bff.payment_orders (case_id, created_at);
CREATE INDEX payment_orders_due ON bff.payment_orders (next_check_at) WHERE status IN ('created', 'paying');
CREATE INDEX payment_orders_report ON bff.payment_orders (paid_at) WHERE report_pending;

CREATE TABLE bff.payment_refunds (
    id uuid PRIMARY KEY,
    order_id uuid NOT NULL REFERENCES bff.payment_orders (id),
    -- The case system's refund request number: one refund per request, whatever path brings it.
    request_ref text NOT NULL UNIQUE,
    out_refund_no text NOT NULL UNIQUE CHECK (length(out_refund_no) BETWEEN 1 AND 64),
    amount_fen bigint NOT NULL CHECK (amount_fen > 0),
    reason text NOT NULL,
    status text NOT NULL CHECK (status IN ('requested', 'processing', 'success', 'abnormal', 'closed')),
    refund_id text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payment_refunds_order ON bff.payment_refunds (order_id);
CREATE INDEX payment_refunds_open ON bff.payment_refunds (updated_at) WHERE status IN ('requested', 'processing');

-- Money that moved, as we recorded it: one row per platform transaction or refund, never changed.
CREATE TABLE bff.payment_ledger (
    seq bigserial PRIMARY KEY,
    order_id uuid NOT NULL REFERENCES bff.payment_orders (id),
    kind text NOT NULL CHECK (kind IN ('payment', 'refund')),
    amount_fen bigint NOT NULL CHECK (amount_fen > 0),
    -- transaction_id for a payment, out_refund_no for a refund: the unique key of the movement.
    external_ref text NOT NULL,
    out_trade_no text NOT NULL,
    via text NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kind, external_ref)
);
CREATE INDEX payment_ledger_order ON bff.payment_ledger (order_id);

CREATE FUNCTION bff.payment_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'bff.payment_ledger is append-only';
END;
$$;
CREATE TRIGGER payment_ledger_append_only BEFORE UPDATE OR DELETE ON bff.payment_ledger
    FOR EACH ROW EXECUTE FUNCTION bff.payment_ledger_append_only();
CREATE TRIGGER payment_ledger_no_truncate BEFORE TRUNCATE ON bff.payment_ledger
    FOR EACH STATEMENT EXECUTE FUNCTION bff.payment_ledger_append_only();

-- The daily bill comparison: one row per China day checked; differences are also audited.
CREATE TABLE bff.payment_bill_checks (
    bill_date date PRIMARY KEY,
    differences integer NOT NULL,
    detail jsonb NOT NULL,
    checked_at timestamptz NOT NULL DEFAULT now()
);
