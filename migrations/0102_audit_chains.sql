-- The audit log without one global lock: 16 hash chains instead of one.
--
-- Each record joins the chain chosen by a stable hash of its request id and subject, and locks only
-- that chain's head row (bff.audit_heads) until its transaction ends; records of different chains
-- are written in parallel. Within a chain every record's hash covers the previous one's and its own
-- position (chain, chain_seq), so an edited, deleted, inserted or re-ordered record breaks its chain.
-- Chain heads are anchored outside the table (bff.audit_anchors rows signed with a key the database
-- does not hold, and the same anchor in the log stream), so even a truncated tail is detected.
-- Records written before this migration (chain IS NULL) keep their single chain and are verified as
-- before.
ALTER TABLE bff.audit_log ADD COLUMN chain smallint, ADD COLUMN chain_seq bigint;
CREATE UNIQUE INDEX audit_log_chain_position ON bff.audit_log (chain, chain_seq) WHERE chain IS NOT NULL;

CREATE TABLE bff.audit_heads (
    chain smallint PRIMARY KEY,
    chain_seq bigint NOT NULL DEFAULT 0,
    hash bytea NOT NULL DEFAULT '\x'::bytea
);
INSERT INTO bff.audit_heads (chain) SELECT generate_series(0, 15);

CREATE TABLE bff.audit_anchors (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    heads jsonb NOT NULL,
    signature bytea NOT NULL
);
CREATE TRIGGER audit_anchors_append_only BEFORE UPDATE OR DELETE ON bff.audit_anchors
    FOR EACH ROW EXECUTE FUNCTION bff.audit_append_only();

CREATE OR REPLACE FUNCTION bff.audit_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last_hash bytea;
BEGIN
    NEW.chain := hashtext(NEW.request_id || chr(31) || NEW.subject) & 15;
    -- The head row's lock is this chain's (and only this chain's) serialisation point.
    UPDATE bff.audit_heads SET chain_seq = chain_seq + 1 WHERE chain = NEW.chain
        RETURNING chain_seq, hash INTO NEW.chain_seq, last_hash;
    NEW.seq := nextval('bff.audit_log_seq');
    NEW.at := date_trunc('milliseconds', clock_timestamp());
    NEW.prev_hash := last_hash;
    NEW.hash := sha256(
        NEW.prev_hash || convert_to(
            concat_ws(chr(31), NEW.chain::text, NEW.chain_seq::text, NEW.seq::text,
                      to_char(NEW.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                      NEW.subject, NEW.action, NEW.object, NEW.result, NEW.channel, NEW.request_id),
            'UTF8'));
    UPDATE bff.audit_heads SET hash = NEW.hash WHERE chain = NEW.chain;
    RETURN NEW;
END;
$$;
