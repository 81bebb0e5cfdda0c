-- One payment per fee-issuing department across a life-event bundle: WeChat Pay 合单支付 over the
-- department's fee orders. Each fee keeps its own order (its own transaction id, refunds, report to
-- the case system and bill line); the combine is the one sheet the resident confirms.
CREATE TABLE bff.payment_combines (
    id uuid PRIMARY KEY,
    -- Derived from the idempotency request id: a re-run sends the platform the same combine.
    combine_out_trade_no text NOT NULL UNIQUE CHECK (length(combine_out_trade_no) BETWEEN 6 AND 32),
    person_id text NOT NULL,
    application_id uuid NOT NULL REFERENCES bff.life_applications (id),
    department text NOT NULL,
    trade_type text NOT NULL CHECK (trade_type IN ('JSAPI', 'APP', 'NATIVE')),
    amount_fen bigint NOT NULL CHECK (amount_fen > 0),
    time_expire timestamptz NOT NULL,
    prepay_id text,
    code_url text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payment_combines_application ON bff.payment_combines (application_id, created_at);

ALTER TABLE bff.payment_orders ADD COLUMN combine_id uuid REFERENCES bff.payment_combines (id);
CREATE INDEX payment_orders_combine ON bff.payment_orders (combine_id) WHERE combine_id IS NOT NULL;
